"""Association change under correlated vs balanced finetuning: issue 7's experiment [R].

Does finetuning a neutral base on a set where a target accessory comes only with one skin
tone move that accessory's concept towards the correlated group in the embedding, and does a
balanced set do so clearly less? :func:`run_experiment` answers it on an avatar cache:

1. **Finetune** (:func:`analyze.finetune.runner.finetune_cells`, every layer, ``save_backbones``) the
   base on ``Correlation(target, "dark_skin", level)`` sets: the *strong* condition
   (``strong_level``, default 0.9: ``P(dark | target) = P(light | no target) = 0.9``) and the
   *balanced* one (``balanced_level``, default 0.5: target independent of skin tone), one
   finetune per seed, all with the same ``n`` training rows.
2. **Measure** each finetuned backbone and the backbone it started from on the same concept
   images (:func:`analyze.association.concepts.avatar_concept_sets`, drawn from ``concept_split``,
   default ``test``; the finetuning rows come from the ``train`` split, and
   :func:`check_disjoint` refuses any overlap): the *concept* association
   ``mean_w s(w, dark, light)`` of the target images (half dark, half light) and the *WEAT*
   effect size of ``target`` vs ``no_target`` on ``dark`` vs ``light`` (positive = closer to
   dark). The change is ``after - before``, paired over the images, with a paired bootstrap
   interval per seed (:func:`analyze.association.run.change_row`).
3. **Null**: the same measures under the architecture at random initialisation, one network
   per ``null_seeds`` entry (offset from the finetuning seeds, so no null network is a
   random-init base a finetune started from). It is a null of the measure's *level*: read a
   condition's change against its spread, and its mean as the association that image
   statistics alone give (not always zero: see README).

:func:`analyze.association.summary.summarize_experiment` folds the seeds: per
condition the mean change with ``mean +- z sd / sqrt(k)`` (z = 1.96 for 95 %, the issue's
interval; a t interval beside it), the difference strong - balanced (unpaired: the two sets
of seeds are independent finetunes) and the null's mean and sd.

Why the effect appears: in the strong set dark skin predicts the label almost as well as the
accessory does, so the network builds a direction that both the accessory and dark skin push
the same way, and accessory images move towards dark avatars. A balanced set gives skin tone
no predictive value, so nothing ties the two. At level 1.0 skin alone solves the task: the
network then leans on skin (target AUC on the independent test split about 0.63 for blazer
vs 0.78 at 0.9), represents the accessory less, and the change is smaller and noisier; at
0.9 it must learn the accessory too. The base must also be trained enough to learn anything:
at 3 epochs a scratch smallcnn barely learns the target and the change is seed noise.

A base given as a registered random-init name (``smallcnn.scratch``) is re-initialised from
each finetuning seed, as the finetune runner does; the "before" backbone of seed ``s`` is then
that network, so each change is paired with the exact weights its finetune started from.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analyze.association.concepts import SENSITIVE, ConceptSets, avatar_concept_sets
from analyze.association.models import DEFAULT_BATCH_SIZE, describe_model
from analyze.association.run import change_row, embed_sets, estimate, null_distribution
from analyze.association.spec import DEFAULT_OPTIONS, AssociationSpec, set_names
from analyze.finetune.data import load_base
from analyze.config import EvalConfig, RunContext
from analyze.finetune.runner import FinetuneOptions, base_factory, finetune_cells
from analyze.finetune.search import FinetuneConfig
from analyze.results.records import cell_id, read_record
from analyze.subsets import Correlation
from extract.datasets.avatars import TARGETS, AvatarAdapter
from extract.datasets.base import SPLITS
from extract.devices import resolve_device
from extract.errors import UserError

CONDITIONS = ("strong", "balanced")
NULL_SEED_OFFSET = 1000
#: A CPU-sized protocol: one grid point, 8 epochs (the best validation epoch is kept). Fewer
#: epochs leave a scratch smallcnn barely trained (test AUC 0.55-0.8 at 3 epochs), and the
#: change is then mostly seed noise.
DEFAULT_FINETUNE = FinetuneConfig(lrs=(0.01,), weight_decays=(1e-4,), epochs=8, batch_size=32)
TABLE_COLUMNS = ["target", "sensitive", "condition", "level", "seed", "test", "kind", "measure",
                 "before", "after", "change", "change_ci_low", "change_ci_high", "auc",
                 "fpr_gap_stereotype", "best_epoch", "n_train", "base", "checkpoint"]
NULL_COLUMNS = ["target", "seed", "test", "kind", "measure", "value"]


@dataclass(frozen=True)
class ExperimentConfig:
    """What the experiment finetunes and measures (defaults: a 2-core-CPU-sized run).

    Parameters
    ----------
    target : str
        The accessory (an avatar target, e.g. ``"blazer"`` or ``"hat"``); pick one the base can
        learn at the image size (ground-truth signal strength near that of ``dark_skin``).
    strong_level, balanced_level : float in [0, 1]
        ``P(dark | target) = P(light | no target)`` of the two finetuning sets.
    n : int
        Training rows of every finetune (both conditions, every seed).
    seeds : tuple of int
        Finetuning seeds, at least 2 (the summary needs a spread); 5 or more for the claim.
    null_seeds : tuple of int
        Seeds of the random-init networks of the null, at least 2.
    per_set, concept_split, concept_seed
        Images per concept set (even), the split they come from, the selection seed.
    n_bootstrap : int
        Paired bootstrap replicates of each seed's change interval (0: none).
    finetune : FinetuneConfig
        Grid, epochs and batch size of every finetune.
    """

    target: str = "blazer"
    strong_level: float = 0.9
    balanced_level: float = 0.5
    n: int = 256
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    null_seeds: tuple[int, ...] = tuple(range(NULL_SEED_OFFSET, NULL_SEED_OFFSET + 10))
    per_set: int = 40
    concept_split: str = "test"
    concept_seed: int = 0
    n_bootstrap: int = 1000
    finetune: FinetuneConfig = field(default=DEFAULT_FINETUNE)

    def __post_init__(self):
        if self.target not in TARGETS:
            raise UserError(f"target {self.target!r} is not an avatar target; choose one of {list(TARGETS)}.")
        for name in ("strong_level", "balanced_level"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise UserError(f"{name}={value!r} is invalid; pass a level in [0, 1].")
        if self.strong_level == self.balanced_level:
            raise UserError("strong_level equals balanced_level; the two conditions must differ.")
        for name in ("seeds", "null_seeds"):
            seeds = tuple(int(s) for s in getattr(self, name))
            if len(set(seeds)) != len(seeds) or len(seeds) < 2 or min(seeds) < 0:
                raise UserError(f"{name}={list(seeds)} is invalid; pass at least 2 distinct non-negative seeds.")
            object.__setattr__(self, name, seeds)
        if self.concept_split not in SPLITS:
            raise UserError(f"concept_split={self.concept_split!r} is unknown; use one of {list(SPLITS)}.")
        if isinstance(self.n_bootstrap, bool) or not isinstance(self.n_bootstrap, int) or self.n_bootstrap < 0:
            raise UserError(f"n_bootstrap={self.n_bootstrap!r} is invalid; pass a non-negative integer.")

    @property
    def levels(self) -> dict[str, float]:
        """``{condition: level}``."""
        return {"strong": float(self.strong_level), "balanced": float(self.balanced_level)}

    def to_dict(self) -> dict:
        """Plain-Python dict (for provenance in the Markdown summary)."""
        out = asdict(self)
        out["finetune"] = self.finetune.to_dict()
        return out


@dataclass
class ExperimentResult:
    """Per-seed changes (``table``, :data:`TABLE_COLUMNS`), the null (``null``,
    :data:`NULL_COLUMNS`), the config, the base, the cache and the working folder, as run."""

    table: pd.DataFrame
    null: pd.DataFrame
    config: ExperimentConfig
    base: str
    cache: str
    folder: str


def experiment_tests(target: str, *, n_bootstrap: int = 1000, seed: int = 0) -> list[AssociationSpec]:
    """The two measures: concept association of ``target`` and the WEAT of target vs no target,
    both against ``dark`` vs ``light`` (positive = closer to the dark group)."""
    options = {**DEFAULT_OPTIONS, "n_bootstrap": int(n_bootstrap), "seed": int(seed)}
    return [
        AssociationSpec(name=f"{target} ~ dark vs light", kind="concept",
                        sets={"W": target, "A": "dark", "B": "light"}, options=dict(options)),
        AssociationSpec(name=f"{target} vs no_{target} ~ dark vs light", kind="weat",
                        sets={"X": target, "Y": f"no_{target}", "A": "dark", "B": "light"},
                        options=dict(options)),
    ]


def experiment_specs(config: ExperimentConfig) -> dict[str, list[Correlation]]:
    """``{condition: [Correlation spec per seed]}``, every set of ``config.n`` training rows."""
    return {condition: [Correlation(config.target, SENSITIVE, level, n=config.n, seed=seed)
                        for seed in config.seeds]
            for condition, level in config.levels.items()}


def check_disjoint(sets: ConceptSets, specs: Sequence, meta: pd.DataFrame) -> None:
    """Raise a :class:`UserError` when a concept image is a training or validation image of a
    finetune (the association would then be read on images the network was fitted to)."""
    used = np.unique(np.concatenate([np.concatenate(spec.split_indices(meta)) for spec in specs]))
    finetuned = set(meta["image_id"].iloc[used])
    shared = sorted({i for ids in sets.ids.values() for i in ids} & finetuned)
    if shared:
        raise UserError(f"{len(shared)} concept image(s) (e.g. {shared[0]!r}) are also finetuning images; draw "
                        "the concept sets from another split (concept_split='test').")


def check_protocol(folder: Path, base: str, config: ExperimentConfig) -> None:
    """Record the finetuning protocol in ``folder/protocol.json``; a folder holding finetunes of
    another protocol (base, grid, epochs, ...) is a :class:`UserError`, never silently reused."""
    protocol = {"base": base, "finetune": config.finetune.to_dict()}
    path = folder / "protocol.json"
    if path.is_file():
        try:
            found = json.loads(path.read_text())
        except ValueError:
            found = None
        if found != protocol:
            raise UserError(f"{folder} holds finetunes of another protocol ({path}); pass another working "
                            "folder or delete that one.")
        return
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(protocol, indent=2, sort_keys=True))


def run_finetunes(adapter, base: str, config: ExperimentConfig, folder: Path, *, weights=None,
                  device="cpu", progress: bool = False) -> pd.DataFrame:
    """Finetune every (condition, seed) cell, saving each backbone; one row per cell.

    Records go to ``folder/records`` and checkpoints to ``folder/backbones``; a rerun reuses
    both (a condition with a checkpoint missing is finetuned again).
    """
    specs = experiment_specs(config)
    cells = [spec for members in specs.values() for spec in members]
    records, backbones = folder / "records", folder / "backbones"
    check_protocol(folder, base, config)
    ids = [cell_id(runner="finetune", backbone=base, spec=spec.to_dict()) for spec in cells]
    missing = any(not (backbones / f"{cid}.pt").is_file() for cid in ids)
    finetune_cells(cells, adapter=adapter, base=base, config=config.finetune, evaluation=EvalConfig(sensitive=SENSITIVE),
                   context=RunContext(out=records, overwrite=missing, progress=progress),
                   options=FinetuneOptions(weights=weights, device=device, save_backbones=backbones))
    rows = []
    for (condition, members) in specs.items():
        for spec in members:
            cid = cell_id(runner="finetune", backbone=base, spec=spec.to_dict())
            record = read_record(records / f"{cid}.json")
            rows.append({"condition": condition, "level": spec.level, "seed": spec.seed,
                         "auc": record["metrics"].get("auc"),
                         "fpr_gap_stereotype": record["metrics"].get("fpr_gap_stereotype"),
                         "best_epoch": record["hyperparameters"].get("best_epoch"),
                         "n_train": record["sizes"].get("n_train"),
                         "checkpoint": str(backbones / f"{cid}.pt")})
    return pd.DataFrame(rows)


def _measure_rows(tests, before: dict, after: dict) -> list[dict]:
    """Before, after and paired change (with its bootstrap interval) of every test."""
    rows = []
    for test in tests:
        change = change_row(test, before, after)
        rows.append({"test": test.name, "kind": test.kind, "measure": test.measure,
                     "before": estimate(test, before), "after": estimate(test, after),
                     "change": change["effect_size"], "change_ci_low": change["ci_low"],
                     "change_ci_high": change["ci_high"]})
    return rows


def measure_changes(cells: pd.DataFrame, sets: ConceptSets, tests, *, make_base, batch_size: int = DEFAULT_BATCH_SIZE,
                    device="cpu") -> pd.DataFrame:
    """Per cell and test: the measure before (the backbone the finetune started from) and after."""
    names = set_names(tests)
    embed = dict(batch_size=batch_size, device=device)
    starts: dict[int, dict] = {}
    rows = []
    for cell in cells.itertuples(index=False):
        if cell.seed not in starts:  # a pretrained base is one network; a scratch one, one per seed
            starts[cell.seed] = embed_sets(make_base(cell.seed), sets, names, **embed)
        after = embed_sets(describe_model(cell.checkpoint).backbone, sets, names, **embed)
        rows += [{**cell._asdict(), **row} for row in _measure_rows(tests, starts[cell.seed], after)]
    return pd.DataFrame(rows)


def run_experiment(cache: str | Path, folder: str | Path, *, base: str | Path = "smallcnn.scratch",
                   config: ExperimentConfig = ExperimentConfig(), weights: str | Path | None = None,
                   device: str = "cpu", progress: bool = False) -> ExperimentResult:
    """Finetune, measure and build the null (see the module docstring).

    Parameters
    ----------
    cache : path
        An avatar cache (``biastransfer avatars render``); the ``balanced`` preset gives the
        most rows per cell.
    folder : path
        Working folder of the finetune records and checkpoints (reused on a rerun).
    base : str or Path
        The neutral base: a registered random-init name or a checkpoint (e.g. a control base
        from ``biastransfer pretrain``).
    config : ExperimentConfig
    weights : path, optional
        Local weights of a registered base that loads weights.
    device : {"cpu", "auto", "cuda", "cuda:N"}

    Returns
    -------
    ExperimentResult
    """
    adapter = AvatarAdapter(cache)
    base, dev = str(base), resolve_device(device)
    tests = experiment_tests(config.target, n_bootstrap=config.n_bootstrap, seed=config.concept_seed)
    sets = avatar_concept_sets(adapter, set_names(tests), per_set=config.per_set, split=config.concept_split,
                               seed=config.concept_seed)
    meta = adapter.metadata()
    check_disjoint(sets, [s for members in experiment_specs(config).values() for s in members], meta)
    cells = run_finetunes(adapter, base, config, Path(folder), weights=weights, device=dev, progress=progress)
    start = load_base(base, weights=weights, seed=0, native_size=adapter.image_shape[0])
    table = measure_changes(cells, sets, tests, make_base=base_factory(start, base), device=dev)
    table = table.assign(target=config.target, sensitive=SENSITIVE, base=base)[TABLE_COLUMNS]
    model = describe_model(cells["checkpoint"].iloc[0])
    null = null_distribution(model, sets, tests, seeds=config.null_seeds, device=dev)
    kinds = {test.name: (test.kind, test.measure) for test in tests}
    null = null.rename(columns={"effect_size": "value"}).assign(
        target=config.target, kind=[kinds[t][0] for t in null["test"]],
        measure=[kinds[t][1] for t in null["test"]])[NULL_COLUMNS]
    return ExperimentResult(table=table, null=null, config=config, base=base, cache=str(cache), folder=str(folder))


def write_outputs(result: ExperimentResult, out: Path) -> list[Path]:
    """``out`` (per seed), ``<stem>_null.csv``, ``<stem>_summary.csv`` and ``<stem>.md``."""
    from analyze.association.summary import summarize_experiment, summary_markdown
    from analyze.results.tables import write_table

    summary = summarize_experiment(result.table, result.null)
    written = [write_table(result.table, out),
               write_table(result.null, out.with_name(out.stem + "_null.csv")),
               write_table(summary, out.with_name(out.stem + "_summary.csv"))]
    markdown = out.with_suffix(".md")
    markdown.write_text(summary_markdown(summary, config=result.config.to_dict(), base=result.base,
                                         cache=result.cache), encoding="utf-8")
    return [*written, markdown]


