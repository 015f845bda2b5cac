"""Ranjit et al.'s findings as rows of ``biastransfer reproduce`` [R] (docs/science.md section 11).

The stage :func:`ranjit` (the pipeline step ``"ranjit"``; any pipeline can list it by name)
finetunes avatar bases with the finetune runner (:func:`analyze.finetune.runner.finetune_cells`,
every layer, ``save_backbones``), embeds concept images before and after, and applies the rules
of :mod:`analyze.association.findings`. Its rows join the findings table (``R1`` ... ``R3b``):

* **R1 retention** (avatar proxy): per finetuning set (the natural set of each of
  ``retention_targets``, at least two), the Spearman retention of the *object* comparison group
  (``o vs dark``, ``o vs light``, ``o vs random``, ``neutral vs dark / light``, ``random vs dark
  / light``: the paper's ``o vs man / woman`` analogues) of a supervised base minus that of
  the self-supervised bases of the same architecture, start and budget (one paired bootstrap
  over images, rho on the values averaged over the finetuning seeds, as the paper's trials):
  :func:`~analyze.association.findings.retention_rule`. The bases are those of the objectives
  recipe (``data/recipes/avatars-objectives.toml``) whose checkpoint metadata records
  ``role = "selfsupervised"`` (or a contrastive ``objective``) and ``role = "control"``;
  without a self-supervised base the row is inconclusive and names the recipe and files.
* **R1-faithful**: the same rule on BiT-M (supervised, ImageNet-21k) vs MoCo v3, SimCLR and
  DINOv2 through the registered / timm entries, from local weight files; inconclusive, naming
  the files, when they are absent (and when the preset does not ask for it: ``faithful``).
* **R2 new biases**: the base finetuned on a larger and on a smaller natural set of ``target``
  at matched optimiser steps (the smaller set runs proportionally more epochs); over the
  ``C(k, 2)`` iEAT tests ``X = dark, Y = light, A, B = two objects`` (at least 12: six
  objects), those whose 95% interval includes 0 before and excludes it after; the exact
  one-sided McNemar test (:func:`~analyze.association.findings.new_bias_rule`).
* **R3 transfer** and **R3b amplification**: on the larger natural finetunes (not a correlated
  set), d after (trial-averaged, Bonferroni level ``1 - alpha / k`` over the ``k`` tests) against
  ``null_seeds`` random-init networks of the same architecture finetuned on the same set
  (:func:`~analyze.association.findings.transfer_rule`, ``amplification_rule``).

The concept images come from their own avatar render (``independent`` preset: celeba-like
frequencies, every accessory independent of skin tone, seed ``seed +
CONCEPT_SEED_OFFSET``), so no concept image is a finetuning image. d uses the trial-averaged
effect size: each finetuning seed's d, averaged, with bootstrap replicates that resample the
same images in every trial and before (a paired interval).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analyze.association.findings import (
    FindingRow,
    amplification_rule,
    new_bias_rule,
    retention_estimate,
    retention_rule,
    transfer_rule,
)
from extract.errors import UserError

SENSITIVE = "dark_skin"
SELF_SUPERVISED_ROLE = "selfsupervised"
SUPERVISED_ROLE = "control"
CONTRASTIVE = ("simclr", "moco", "byol", "dino", "contrastive")
OBJECTIVES_RECIPE = "avatars-objectives.toml"
#: The faithful comparison (the paper's BiT-M vs its self-supervised models), registered entries.
FAITHFUL_BASES = {"bit_m_r50x1.in21k": "supervised", "resnet50.moco_v3": "self_supervised",
                  "resnet50.simclr": "self_supervised", "dinov2_vits14.lvd142m": "self_supervised"}
CONCEPT_SEED_OFFSET = 5000
NULL_SEED_OFFSET = 1000
AVATARS = "procedural avatars instead of COCO / Open Images photos; dark vs light skin instead of man vs woman"
OBJECT_GROUP = ("object group: o vs dark, o vs light, o vs random per object o, neutral vs dark / light, "
                "random vs dark / light")
COLUMNS_NULL = ["seed", "test", "effect_size", "estimate"]


@dataclass(frozen=True)
class RanjitConfig:
    """Sizes of the Ranjit stage (see the module docstring; :data:`analyze.reproduce.run.PRESETS`).

    Parameters
    ----------
    objects : tuple of str
        Avatar accessories of the iEAT tests (``C(k, 2)`` tests; six give 15, at least 12 needed).
    group_objects : tuple of str
        Objects of the comparison groups of R1 (``o``, ``o+dark``, ``o+light`` sets).
    retention_targets : tuple of str
        R1's finetuning sets: the natural set of each target at ``n_large`` rows (at least two).
    target : str
        The finetuning target of R2 and R3 (natural sets).
    n_small, n_large : int
        Rows of the smaller and larger finetuning sets (R2); R1 and R3 use ``n_large``.
    epochs : int
        Epochs on the larger set; the smaller runs as many optimiser steps.
    seeds, null_seeds : tuple of int
        Finetuning seeds (the paper's trials) and the random-init finetunes of the null (>= 5).
    lr, batch_size, freeze_bn
        The finetunes' learning rate, batch size and whether BatchNorm statistics are kept.
    per_set, concept_n : int
        Images per concept set and avatars rendered for the concept sets.
    n_bootstrap : int
        Bootstrap replicates over images (retention and effect sizes).
    alpha : float
        Level of every rule (Bonferroni over the tests for R3 / R3b).
    base : str, optional
        The base of R2 / R3 (a recipe base's name; None: the biased base).
    recipe : str, optional
        The objectives recipe of R1 (a name in ``data/recipes`` or a path; None: skip R1).
    faithful : bool
        Run R1-faithful when its weight files are present (ResNet-50 / ViT finetunes: a GPU run).
    """

    objects: tuple = ("hat", "eyewear", "facial_hair", "long_hair", "blond_hair", "blazer")
    group_objects: tuple = ("hat", "eyewear", "blazer")
    retention_targets: tuple = ("eyewear", "long_hair")
    target: str = "long_hair"
    n_small: int = 128
    n_large: int = 512
    epochs: int = 6
    seeds: tuple = (0, 1, 2)
    null_seeds: tuple = (0, 1, 2, 3, 4)
    lr: float = 0.003  # the full preset's EfficientNet-Lite0 finetunes: lr 0.003, BatchNorm statistics kept
    batch_size: int = 32
    freeze_bn: bool = True
    per_set: int = 24
    concept_n: int = 3000
    n_bootstrap: int = 1000
    alpha: float = 0.05
    base: str | None = None
    recipe: str | None = OBJECTIVES_RECIPE
    faithful: bool = False

    def __post_init__(self):
        from extract.datasets.avatars import TARGETS

        for name in ("objects", "group_objects", "retention_targets"):
            unknown = [t for t in getattr(self, name) if t not in TARGETS]
            if unknown or not getattr(self, name):
                raise UserError(f"ranjit {name} {list(getattr(self, name))} is invalid; name avatar targets "
                                f"among {list(TARGETS)}.")
        if self.target not in TARGETS:
            raise UserError(f"ranjit target {self.target!r} is not an avatar target; choose one of {list(TARGETS)}.")
        if not 2 <= self.n_small < self.n_large:
            raise UserError(f"ranjit n_small={self.n_small} and n_large={self.n_large} are invalid; pass "
                            "2 <= n_small < n_large.")
        if not self.seeds or not self.null_seeds or len(set(self.null_seeds)) != len(self.null_seeds):
            raise UserError("ranjit seeds and null_seeds must be non-empty and distinct; pass e.g. (0, 1, 2) "
                            "and (0, 1, 2, 3, 4).")
        if not 0 < self.alpha < 1:
            raise UserError(f"ranjit alpha={self.alpha!r} is invalid; pass a level in (0, 1) such as 0.05.")

    def finetune(self, epochs: int | None = None, *, null: bool = False):
        """The finetunes' :class:`~analyze.finetune.search.FinetuneConfig` (``epochs``: default ``self.epochs``).

        ``null``: a random-init finetune, whose BatchNorm statistics are always updated (a random
        network has no statistics of the data to keep).
        """
        from analyze.finetune.search import FinetuneConfig

        return FinetuneConfig(lrs=(float(self.lr),), weight_decays=(1e-4,), epochs=int(epochs or self.epochs),
                              batch_size=int(self.batch_size), freeze_bn=bool(self.freeze_bn) and not null)


def ieat_tests(objects) -> list[tuple[str, str, str]]:
    """``(name, A, B)`` of every iEAT test ``X = dark, Y = light`` on two objects (the paper's design)."""
    return [(f"dark vs light ~ {a} vs {b}", a, b) for a, b in itertools.combinations(objects, 2)]


def concept_names(config: RanjitConfig) -> list[str]:
    """Every concept set the stage embeds."""
    pairs = [f"{o}+{g}" for o in config.group_objects for g in ("dark", "light")]
    return list(dict.fromkeys([*config.objects, *config.group_objects, *pairs, "dark", "light", "neutral",
                               "random"]))


def concept_sets(out: Path, size: int, config: RanjitConfig, *, seed: int = 0):
    """Render (or reuse) the concept avatars under ``out/avatars`` and draw the named sets."""
    from analyze.association.concepts import avatar_concept_sets
    from extract.datasets.avatars import RenderSpec, render_dataset

    seed = seed + CONCEPT_SEED_OFFSET
    cache = Path(out) / "avatars" / f"ranjit-concepts-{config.concept_n}-{size}px-seed{seed}.h5"
    if not cache.exists():
        render_dataset(cache, spec=RenderSpec(n=config.concept_n, size=size, seed=seed, preset="independent",
                                              signal_sample=8), workers=1)
    return avatar_concept_sets(cache, concept_names(config), per_set=config.per_set, split=None, seed=seed)


def _folder(out: Path, base: str, finetune) -> Path:
    protocol = json.dumps({"base": str(base), "finetune": finetune.to_dict()}, sort_keys=True)
    return Path(out) / "ranjit" / "finetunes" / hashlib.sha256(protocol.encode()).hexdigest()[:12]


def finetune_checkpoints(adapter, base, specs, finetune, out: Path, *, progress: bool = False) -> list[Path]:
    """Finetune ``base`` on ``specs`` (or reuse them): the saved backbone of each spec, in order.

    Records and backbones go to ``out/ranjit/finetunes/<protocol digest>``, so another base,
    grid or epoch count never reuses them.
    """
    from analyze.config import EvalConfig, RunContext
    from analyze.finetune.runner import FinetuneOptions, finetune_cells
    from analyze.results.records import cell_id

    folder = _folder(out, base, finetune)
    backbones = folder / "backbones"
    paths = [backbones / f"{cell_id(runner='finetune', backbone=str(base), spec=s.to_dict())}.pt" for s in specs]
    missing = any(not path.is_file() for path in paths)
    finetune_cells(specs, adapter=adapter, base=str(base), config=finetune,
                   evaluation=EvalConfig(sensitive=SENSITIVE),
                   context=RunContext(out=folder / "records", overwrite=missing, progress=progress),
                   options=FinetuneOptions(device="auto", save_backbones=backbones))
    return paths


def embed(model, sets, names, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Embeddings of the named concept sets under ``model`` (a backbone, a checkpoint or a registered
    name), in one pass over all their images."""
    from analyze.association.models import embed_images
    from extract.backbones import create_backbone
    from extract.devices import resolve_device

    backbone = create_backbone(model, seed=seed) if isinstance(model, (str, Path)) else model
    images = np.concatenate([sets[name] for name in names])
    features = embed_images(backbone, images, batch_size=64, device=resolve_device("auto"))
    bounds = np.cumsum([0, *(len(sets[name]) for name in names)])
    return {name: features[bounds[i]:bounds[i + 1]] for i, name in enumerate(names)}


def natural_specs(target: str, n: int, seeds) -> list:
    """The natural set of ``target`` at ``n`` rows, one spec per seed."""
    from analyze.subsets import Natural

    return [Natural(target, SENSITIVE, n=int(n), seed=int(s)) for s in seeds]


# -- effect sizes: trial-averaged d with paired replicates ----------------------------------------


def _ieat_sets(embeddings: dict, a: str, b: str) -> dict:
    return {"X": embeddings["dark"], "Y": embeddings["light"], "A": embeddings[a], "B": embeddings[b]}


def measure_tests(before: dict, afters: list[dict], tests, *, n_bootstrap: int, seed: int = 0) -> dict:
    """Per test: d before and the trial-averaged d after, each with its replicates.

    The replicates of every stage and trial resample the same images (same set sizes, same
    seed), so ``after - before`` and ``|after| - |before|`` are paired over images.
    """
    from analyze.association.bootstrap import bootstrap_replicates
    from analyze.association.measures import effect_size

    def point_and_replicates(embeddings, a, b):
        sets = _ieat_sets(embeddings, a, b)
        return effect_size(**sets), bootstrap_replicates(sets, measure="effect_size", n_bootstrap=n_bootstrap,
                                                         seed=seed)

    measured = {}
    for name, a, b in tests:
        d_before, r_before = point_and_replicates(before, a, b)
        trials = [point_and_replicates(after, a, b) for after in afters]
        measured[name] = {"before": (d_before, r_before),
                          "after": (float(np.mean([t[0] for t in trials])), np.mean([t[1] for t in trials], axis=0))}
    return measured


def _quantiles(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2
    low, high = np.quantile(finite, [tail, 1 - tail])
    return float(low), float(high)


def effect_table(measured: dict, stage: str, confidence: float) -> pd.DataFrame:
    """``effect_size, ci_low, ci_high, confidence`` per test of one stage (``before`` / ``after``),
    or of ``amplification`` (``estimate`` = ``|d after| - |d before|``)."""
    rows = {}
    for test, values in measured.items():
        if stage == "amplification":
            point = abs(values["after"][0]) - abs(values["before"][0])
            replicates = np.abs(values["after"][1]) - np.abs(values["before"][1])
            key = "estimate"
        else:
            (point, replicates), key = values[stage], "effect_size"
        rows[test] = {key: float(point), **dict(zip(("ci_low", "ci_high"), _quantiles(replicates, confidence))),
                      "confidence": float(confidence)}
    return pd.DataFrame.from_dict(rows, orient="index")


# -- the rows --------------------------------------------------------------------------------------


def table_row(fid: str, row: FindingRow, *, setting: str, deviation: str, interval: str) -> dict:
    """A :class:`FindingRow` as one row of the findings table (``runner = finetune``)."""
    from analyze.reproduce.findings import Estimate, finding_row
    from analyze.reproduce.verdicts import Verdict

    return finding_row(fid, row.finding, Verdict(row.verdict, RULES[fid], row.reason), runner="finetune",
                       setting=setting, estimate=Estimate(row.number, row.ci_low, row.ci_high, interval),
                       deviation="; ".join(x for x in (AVATARS, deviation) if x))


RULES = {
    "R1": "supervised minus mean self-supervised retention rho of the object group: interval above 0 on every "
          "finetuning set (>= 2): reproduced; below 0 on any: contradicted",
    "R1-faithful": "as R1, BiT-M vs MoCo v3 / SimCLR / DINOv2 from local weights",
    "R2": ">= 12 iEAT tests; new = 95% interval includes 0 before, excludes it after; exact one-sided McNemar "
          "on tests new in one set only: p < alpha toward the larger set: reproduced; toward the smaller: "
          "contradicted",
    "R3": "tests with d before away from 0; some d after keeps its sign with its Bonferroni interval beyond the "
          "2.5-97.5 percentiles of >= 5 random-init finetunes: reproduced; all inside: contradicted",
    "R3b": "|d after| - |d before| (paired bootstrap, Bonferroni): some interval above 0 and beyond the "
           "random-init finetunes: reproduced; every interval below 0: contradicted",
}


def _finetune_words(adapter, targets, n: int, epochs: int, seeds) -> str:
    """The finetuning task in words: dataset, target(s), their natural level, n, epochs, seeds."""
    meta = adapter.metadata()
    train = meta[meta["split"] == "train"]
    levels = ", ".join(f"P({SENSITIVE} | {t}) = {train.loc[train[t] == 1, SENSITIVE].mean():.2f}" for t in targets)
    return (f"finetuned on the natural {' / '.join(targets)} set of {Path(str(adapter.root)).name} (target "
            f"{' / '.join(targets)}; natural correlation, {levels} in its train split), n = {n}, {epochs} "
            f"epoch(s), seeds {list(seeds)}")


def retention_row(adapter, bases: dict, sets, config: RanjitConfig, out: Path, *, progress=False) -> FindingRow:
    """R1 on ``bases`` (``{name: (checkpoint or registered name, "supervised" | "self_supervised")}``)."""
    from analyze.association.groups import AVATAR_NAMES, comparison_groups, item_sets
    from analyze.association.retention import RetentionOptions, retention

    items = comparison_groups(config.group_objects, names=AVATAR_NAMES)
    names = item_sets(items)
    options = RetentionOptions(n_bootstrap=config.n_bootstrap, confidence=1 - config.alpha)
    before = {name: embed(base, sets, names) for name, (base, _) in bases.items()}
    by_set = {}
    for target in config.retention_targets:
        specs = natural_specs(target, config.n_large, config.seeds)
        estimates = []
        for name, (base, objective) in bases.items():
            paths = finetune_checkpoints(adapter, base, specs, config.finetune(), out, progress=progress)
            result = retention(before[name], [embed(path, sets, names) for path in paths], items, options=options)
            estimates.append(retention_estimate(result, model=name, objective=objective))
        by_set[f"natural {target} n={config.n_large}"] = estimates
    return retention_rule(by_set, confidence=1 - config.alpha)


def _inconclusive(finding: str, reason: str) -> FindingRow:
    return FindingRow(finding, float("nan"), float("nan"), float("nan"), "inconclusive", reason)


def classify_bases(bases: dict) -> dict:
    """``{name: (path, "supervised" | "self_supervised")}`` of the checkpoints whose metadata records a
    self-supervised role or a contrastive objective, or the control role (supervised)."""
    from extract.backbones import load_checkpoint

    found = {}
    for name, path in bases.items():
        meta = load_checkpoint(path).extra.get("checkpoint_meta", {})
        objective = str(meta.get("objective", "")).lower()
        if meta.get("role") == SELF_SUPERVISED_ROLE or objective.startswith(CONTRASTIVE):
            found[name] = (str(path), "self_supervised")
        elif meta.get("role") == SUPERVISED_ROLE:
            found[name] = (str(path), "supervised")
    return found


def objective_bases(run, config: RanjitConfig) -> tuple[dict, str]:
    """R1's bases from the objectives recipe (built or reused under ``out/bases/objectives``), or ``({}, why)``."""
    from analyze.reproduce.sources import RECIPE
    from extract.pretrain import load_recipe, run_recipe

    if config.recipe is None:
        return {}, "this preset runs no objectives recipe (ranjit recipe = None)"
    path = Path(config.recipe).expanduser()
    path = path if path.parent != Path(".") or path.exists() else RECIPE.with_name(config.recipe)
    needs = (f"R1 needs a self-supervised base (role {SELF_SUPERVISED_ROLE!r}, e.g. objective 'simclr') beside a "
             f"supervised control of the same architecture, start and budget, from the recipe {path}")
    if not path.is_file():
        return {}, f"{needs}, which does not exist"
    try:
        recipe = load_recipe(path)
        recipe["data"]["size"] = recipe["model"]["image_size"] = run.config.size
        for key, value in (("n", run.config.pretrain_n), ("epochs", run.config.pretrain_epochs)):
            if value is not None:
                (recipe["data"] if key == "n" else recipe["train"])[key] = value
        recipe["data"]["cache"] = f"pretrain-avatars-{recipe['data']['n']}-{run.config.size}px-seed" \
                                  f"{recipe['data']['seed']}.h5"
        built = run_recipe(recipe, out_dir=run.out / "bases" / "objectives", cache_dir=run.out / "avatars",
                           workers=run.config.workers, progress=run.config.progress)
    except UserError as exc:
        return {}, f"{needs}, which could not be built: {exc}"
    bases = classify_bases(built)
    kinds = {objective for _, objective in bases.values()}
    if kinds != {"supervised", "self_supervised"}:
        return {}, f"{needs}; its checkpoints {sorted(built)} hold {sorted(kinds) or 'neither'}"
    return bases, ""


def faithful_row(adapter, sets, config: RanjitConfig, out: Path) -> tuple[FindingRow, str]:
    """R1-faithful: BiT-M vs the self-supervised ResNet-50s / DINOv2 (local weights), or why not."""
    from extract.backbones import create_backbone

    finding = "ranjit-1 retention, faithful: BiT-M vs MoCo v3 / SimCLR / DINOv2"
    missing = []
    for name in FAITHFUL_BASES:
        try:
            create_backbone(name)
        except UserError as exc:
            missing.append(str(exc).rstrip("."))
    if missing:
        return _inconclusive(finding, "the local weight files are absent: " + "; ".join(missing) + "."), ""
    if not config.faithful:
        return _inconclusive(finding, "the weights are present but this preset does not run the faithful "
                                      "finetunes (ResNet-50 / ViT-S at 224 px; set ranjit faithful = True, "
                                      "e.g. on a GPU)."), ""
    bases = {name: (name, objective) for name, objective in FAITHFUL_BASES.items()}
    return retention_row(adapter, bases, sets, config, out), "bases pretrained on other data than the paper's"


def _steps(spec, meta, batch_size: int, epochs: int) -> int:
    from analyze.finetune.train import steps_per_epoch

    return steps_per_epoch(len(spec.split_indices(meta).train), batch_size) * int(epochs)


def matched_epochs(meta, config: RanjitConfig) -> tuple[int, tuple[int, int]]:
    """Epochs of the smaller set that match the larger set's optimiser steps, and both step counts."""
    from analyze.finetune.train import steps_per_epoch

    large, small = (natural_specs(config.target, n, config.seeds[:1])[0] for n in (config.n_large, config.n_small))
    steps_large = _steps(large, meta, config.batch_size, config.epochs)
    per_epoch = steps_per_epoch(len(small.split_indices(meta).train), config.batch_size)
    epochs = max(1, round(steps_large / per_epoch))
    return epochs, (steps_large, per_epoch * epochs)


def random_init_bases(run, out: Path, seeds) -> list[Path]:
    """Seeded random-init checkpoints of the recipe's architecture (the null's starting points)."""
    from analyze.reproduce.sources import recipe_path
    from extract.pretrain import load_recipe
    from extract.pretrain.train import write_scratch_base

    model = load_recipe(recipe_path(run.config))["model"]  # the bases' architecture and start
    digest = hashlib.sha256(json.dumps(model, sort_keys=True, default=str).encode()).hexdigest()[:8]
    paths = []
    for seed in seeds:
        path = Path(out) / "ranjit" / "random-init" / f"{model['arch']}-{digest}-{run.config.size}px-seed{seed}.pt"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            # the recipe's start only sets the input normalisation (the bases' pixels); the weights are random
            write_scratch_base(path, arch=model["arch"], arch_kwargs=model.get("arch_kwargs") or {},
                               image_size=run.config.size, seed=NULL_SEED_OFFSET + int(seed),
                               name=f"random-init-{seed}", init=model.get("init"))
        paths.append(path)
    return paths


def null_table(adapter, run, sets, tests, config: RanjitConfig) -> pd.DataFrame:
    """Per random-init finetune and test: d after (``effect_size``) and ``|d after| - |d before|``."""
    from analyze.association.measures import effect_size

    names = concept_names(config)
    rows = []
    for seed, start in zip(config.null_seeds, random_init_bases(run, run.out, config.null_seeds)):
        spec = natural_specs(config.target, config.n_large, (seed,))
        [path] = finetune_checkpoints(adapter, start, spec, config.finetune(null=True), run.out,
                                      progress=run.config.progress)
        before, after = embed(start, sets, names), embed(path, sets, names)
        for name, a, b in tests:
            d_before, d_after = (effect_size(**_ieat_sets(e, a, b)) for e in (before, after))
            rows.append({"seed": int(seed), "test": name, "effect_size": d_after,
                         "estimate": abs(d_after) - abs(d_before)})
    return pd.DataFrame(rows, columns=COLUMNS_NULL)


def bias_rows(adapter, run, base: str, sets, config: RanjitConfig) -> list[dict]:
    """R2, R3 and R3b on ``base`` (a checkpoint): larger vs smaller natural finetunes and the null."""
    tests = ieat_tests(config.objects)
    names, meta = concept_names(config), adapter.metadata()
    small_epochs, steps = matched_epochs(meta, config)
    before = embed(base, sets, names)
    measured = {}
    for n, epochs in ((config.n_large, config.epochs), (config.n_small, small_epochs)):
        paths = finetune_checkpoints(adapter, base, natural_specs(config.target, n, config.seeds),
                                     config.finetune(epochs), run.out, progress=run.config.progress)
        measured[n] = measure_tests(before, [embed(p, sets, names) for p in paths], tests,
                                    n_bootstrap=config.n_bootstrap)
    level, bonferroni = 1 - config.alpha, 1 - config.alpha / len(tests)
    tables = {n: effect_table(m, "after", level) for n, m in measured.items()}
    new = new_bias_rule(effect_table(measured[config.n_large], "before", level), tables[config.n_large],
                        tables[config.n_small], alpha=config.alpha, steps=steps)
    null = null_table(adapter, run, sets, tests, config)
    large = measured[config.n_large]
    transfer = transfer_rule(effect_table(large, "before", level), effect_table(large, "after", bonferroni),
                             null, alpha=config.alpha)
    amplified = amplification_rule(effect_table(large, "amplification", bonferroni), null, alpha=config.alpha)
    base_words = f"base {Path(base).stem}; {len(tests)} iEAT tests X = dark, Y = light, A / B = two of " \
                 f"{list(config.objects)} ({config.per_set} concept images per set, own render)"
    large_words = _finetune_words(adapter, [config.target], config.n_large, config.epochs, config.seeds)
    return [
        table_row("R2", new, setting=f"{base_words}; larger: {large_words}; smaller: n = {config.n_small}, "
                  f"{small_epochs} epoch(s), optimiser steps {steps[0]} vs {steps[1]}",
                  deviation=f"n = {config.n_large} vs {config.n_small} of one avatar dataset (paper: Open Images "
                            "vs COCO, different datasets and label sets); best validation epoch kept",
                  interval=f"share of discordant new biases in the larger set, exact {level:.0%} interval"),
        table_row("R3", transfer, setting=f"{base_words}; {large_words}; null: {len(config.null_seeds)} "
                  "random-init networks of the same architecture finetuned on the same set",
                  deviation="a small natural avatar finetune (paper: COCO / Open Images multi-label finetunes); "
                            "the paper has no random-init null",
                  interval=f"trial-averaged d after, paired bootstrap over images at {bonferroni:.4f} (Bonferroni)"),
        table_row("R3b", amplified, setting=f"{base_words}; {large_words}; null as R3",
                  deviation="amplification read as |d after| - |d before| (the paper compares d side by side)",
                  interval=f"paired bootstrap over images at {bonferroni:.4f} (Bonferroni)"),
    ]


def retention_rows(adapter, run, sets, config: RanjitConfig) -> list[dict]:
    """R1 (avatar proxy, from the objectives recipe) and R1-faithful."""
    finding = "ranjit-1 retention: supervised minus self-supervised rho (avatar proxy)"
    bases, why = objective_bases(run, config)
    words = _finetune_words(adapter, config.retention_targets, config.n_large, config.epochs, config.seeds)
    setting = f"{OBJECT_GROUP}, objects {list(config.group_objects)}; {words} (one finetuning set per target)"
    if bases:
        row = retention_row(adapter, bases, sets, config, run.out, progress=run.config.progress)
        setting += "; bases " + ", ".join(f"{name} ({objective})" for name, (_, objective) in bases.items())
    else:
        row = _inconclusive(finding, why + ".")
    interval = f"paired bootstrap over images, {1 - config.alpha:.0%}, rho on seed-averaged values"
    rows = [table_row("R1", row, setting=setting, interval=interval,
                      deviation="avatar bases pretrained by the toolkit, supervised vs contrastive (paper: BiT-M, "
                                "ImageNet-21k, vs MoCo / SimCLR); small n")]
    faithful, deviation = faithful_row(adapter, sets, config, run.out)
    rows.append(table_row("R1-faithful", faithful, setting=f"{OBJECT_GROUP}; {words}; bases "
                          + ", ".join(f"{n} ({o})" for n, o in FAITHFUL_BASES.items()),
                          deviation=deviation, interval=interval))
    return rows


def _rows_base(run, config: RanjitConfig) -> str:
    roles = getattr(run, "roles", {}) or {}
    name = config.base or next((n for n, role in roles.items() if role == "biased"), None)
    if name is None or name not in run.bases:
        raise UserError(f"the Ranjit stage's base {name!r} is not a base of this run ({sorted(run.bases)}); set "
                        "ranjit base to one of them.")
    return str(run.bases[name])


def ranjit_rows(run) -> list[dict]:
    """The Ranjit rows of a pipeline run (its ``config.ranjit``, its bases and its finetuning cache)."""
    from extract.datasets.avatars import AvatarAdapter

    config = getattr(run.config, "ranjit", None) or RanjitConfig()
    if getattr(run.config, "source", None) is not None:  # a given dataset: no generator to render concept sets
        return given_dataset_rows(run.config.source)
    adapter = AvatarAdapter(run.cache)
    sets = concept_sets(run.out, run.config.size, config, seed=run.config.seed)
    rows = retention_rows(adapter, run, sets, config)
    rows += bias_rows(adapter, run, _rows_base(run, config), sets, config)
    return rows


def given_dataset_rows(source) -> list[dict]:
    """R1-R3b on a given dataset: inconclusive, saying why (the concept sets are rendered avatars)."""
    from analyze.reproduce.findings import finding_row
    from analyze.reproduce.verdicts import inconclusive

    why = (f"not run on the given dataset {getattr(source, 'name', source)!r}: Ranjit et al.'s association tests "
           "need concept image sets (dark / light, objects with and without each group), which reproduce renders "
           "from the avatar generator; measure your own concept folders with `biastransfer associate` instead")
    return [finding_row(fid, f"Ranjit et al. {fid}", inconclusive(rule, why), runner="finetune")
            for fid, rule in RULES.items()]


def ranjit(run) -> None:
    """Pipeline step ``"ranjit"``: compute the rows, write ``out/ranjit/findings.csv`` and hand the rows to
    the findings step (``run.extra_findings``)."""
    from analyze.reproduce.findings import COLUMNS, findings_markdown
    from extract.io import write_text

    rows = pd.DataFrame(ranjit_rows(run), columns=COLUMNS)
    path = write_text(Path(run.out) / "ranjit" / "findings.csv", rows.to_csv(index=False))
    print(findings_markdown(rows))
    print(f"  Ranjit rows {path}")
    run.extra_findings = [*getattr(run, "extra_findings", []), *rows.to_dict("records")]


__all__ = ["FAITHFUL_BASES", "RanjitConfig", "bias_rows", "classify_bases", "concept_sets", "effect_table",
           "given_dataset_rows", "ieat_tests", "measure_tests", "ranjit", "ranjit_rows", "retention_row", "retention_rows"]
