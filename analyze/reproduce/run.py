"""``biastransfer reproduce``: run the grids the papers' findings need on the avatars, then the findings table.

Stages (each reuses what exists under ``out``, so a rerun only does what is missing):

1. **avatars**: render the finetuning dataset (``celeba-like`` preset);
2. **bases**: the biased base, the control bases and scratch from ``data/recipes/avatars-bases.toml``
   (:func:`extract.pretrain.run_recipe`; existing checkpoints are kept);
3. **stores**: features of every base (and of the ImageNet EfficientNet-Lite0 when asked and installed);
4. **salience**: estimates per target and their check against the generator's truth;
5. **probes**: per target and seed, the correlation grid (stereotype levels), the natural set
   over an n-sweep, the skewed set (80% stereotypical) and the curation sub-selection sets;
6. **finetunes**: full finetuning at the natural level and the strongest stereotype level,
   biased base and every control;
7. **pairs**: W&R's underrepresentation experiment with probes: label "A or B", the share of
   A-only positives falling, on the base pretrained on A and on the one pretrained on B;
   scored by the AUC on A-positives (A-only test positives against the test negatives);
8. **findings and report**: collect, the findings table (:mod:`analyze.reproduce.findings`),
   and the report, which leads with it.

:class:`ReproduceConfig` sets every size; :data:`PRESETS` holds ``full`` (the default) and
``tiny`` (the end-to-end test's sizes, 32 px). A run first removes the temporary files that a
killed run left in its output folders (:func:`remove_stale_outputs`, the sweep's cleanup).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analyze.demo import IMAGENET, RECIPE, SENSITIVE, Stage, base_kinds, render_avatars
from analyze.metrics.diagnosis import COMPETENCE_FLOORS
from extract.errors import UserError

STEREOTYPE_LEVELS = (0.0, 0.25, 0.5, 0.7, 0.8, 1.0)  # 0.8 and 0.7: the curation pair (20% -> 30% counter)


@dataclass(frozen=True)
class ReproduceConfig:
    """Sizes of every grid of ``biastransfer reproduce`` (keyword-only; see :data:`PRESETS`).

    Parameters
    ----------
    n, size, seed : int
        Avatars rendered for finetuning and testing, their side in pixels, the render seed.
    recipe : str, optional
        The bases' recipe: a file name in ``data/recipes`` or a path (None:
        ``avatars-bases.toml``, EfficientNet-Lite0 bases started from ImageNet; the tiny
        preset uses the from-scratch ``avatars-bases-smallcnn.toml`` for speed).
    pretrain_n, pretrain_epochs : int, optional
        Override the recipe's pretraining images and epochs (None: the recipe's).
    targets : tuple of str
        Finetuning targets (each with the sensitive attribute ``dark_skin``).
    levels : tuple of float
        Stereotype levels P(stereotypical group | y=1) of the correlation grid.
    probe_n : int
        Training rows of the correlation, natural and skewed probe cells.
    sizes : tuple of int
        The natural n-sweep (finding 3).
    subselection_n : int
        Training rows of the sub-selection base set (20% counter-stereotypical positives).
    seeds : tuple of int
        Replicate seeds of the probe cells.
    finetune_target, finetune_n, finetune_seeds, finetune_epochs
        The full-finetuning cells.
    finetune_lrs, finetune_freeze_bn
        Their learning-rate grid and whether the bases' BatchNorm statistics are kept (the
        EfficientNet-Lite0 bases: yes, lr 0.003 with the best of 10 epochs at n = 512).
    controls : tuple of str, optional
        The recipe's control bases to build and compare (names; None: every control). The
        pair's two controls are always kept.
    finetune_bases : tuple of str, optional
        Bases to finetune (names; None: the biased base and every control).
    pair : (str, str)
        Attributes A and B of the pairs experiment; each must be a control base's label.
    pair_shares, pair_n : tuple of float, int
        Shares of A-only positives and training rows of the pairs experiment.
    salience_targets : tuple of str, optional
        Targets whose salience is estimated and checked against the generator (finding 6;
        None: ``targets``). Spearman's interval needs at least four; by default the three
        probe targets plus three faint ones (raised_eyebrows, smiling, closed_eyes), so the
        ranking is tested over a wide range of signal strengths.
    salience_replicates : int
        Models per arrangement of the salience estimate.
    imagenet : bool
        Also extract and probe the ImageNet EfficientNet-Lite0 (when its weights are installed).
    workers : int, optional
        Rendering processes (default all cores).
    progress : bool
        Progress bars (stderr) inside the stages; each stage prints its time either way.
    """

    n: int = 9000  # the natural n = 4096 cell needs 5120 rows of the 60% train split
    size: int = 64
    seed: int = 0
    recipe: str | None = None
    pretrain_n: int | None = None
    pretrain_epochs: int | None = None
    # the demo's targets: learnable by every base (smiling, raised_eyebrows and closed_eyes change
    # 0.2-0.3% of the pixels and stay near chance), none a pretraining label of a compared base
    targets: tuple = ("eyewear", "facial_hair", "long_hair")
    levels: tuple = STEREOTYPE_LEVELS
    probe_n: int = 128
    sizes: tuple = (64, 128, 256, 512, 1024, 2048, 4096)
    subselection_n: int = 512
    seeds: tuple = (0, 1, 2, 3, 4)
    finetune_target: str = "long_hair"
    finetune_n: int = 512
    finetune_seeds: tuple = (0, 1, 2)  # three, the fewest a finding is stated from: a Lite0 finetune at n = 512 is ~30 s
    finetune_epochs: int = 10
    finetune_lrs: tuple = (0.003,)
    finetune_freeze_bn: bool = True
    # the long_hair control is left out: long_hair is a finetuning target, and no pretraining
    # label may determine a target
    controls: tuple | None = ("avatars-control-hat", "avatars-control-blazer")
    finetune_bases: tuple | None = None
    pair: tuple = ("hat", "blazer")
    pair_shares: tuple = (1.0, 0.5, 0.2, 0.1)
    pair_n: int = 256
    salience_targets: tuple | None = ("eyewear", "facial_hair", "long_hair", "raised_eyebrows", "smiling",
                                      "closed_eyes")
    salience_replicates: int = 3
    imagenet: bool = True
    workers: int | None = None
    progress: bool = True


PRESETS = {
    "full": ReproduceConfig(),
    "tiny": ReproduceConfig(n=700, size=32, recipe="avatars-bases-smallcnn.toml", pretrain_n=300, pretrain_epochs=1,
                            targets=("eyewear", "long_hair", "facial_hair", "smiling"), levels=(0.5, 0.7, 0.8, 1.0),
                            probe_n=48, sizes=(32, 64), subselection_n=40, seeds=(0, 1, 2), finetune_target="eyewear",
                            finetune_n=48, finetune_seeds=(0, 1, 2), finetune_epochs=1, finetune_lrs=(0.01,),
                            finetune_freeze_bn=False, pair_shares=(1.0, 0.2), pair_n=48, salience_targets=None,
                            imagenet=False, workers=1, progress=False),
}


def recipe_path(config: ReproduceConfig) -> Path:
    """The recipe file of ``config`` (a name in ``data/recipes`` or a path)."""
    if config.recipe is None:
        return RECIPE
    path = Path(config.recipe).expanduser()
    return path if path.parent != Path(".") or path.exists() else RECIPE.with_name(config.recipe)


def pretrain_bases(out: Path, config: ReproduceConfig) -> tuple[dict[str, Path], dict[str, str]]:
    """Build (or reuse) the recipe's bases at the config's size; return paths and each base's role."""
    from extract.pretrain import load_recipe, run_recipe

    recipe = load_recipe(recipe_path(config))
    data = recipe["data"]
    data["size"] = recipe["model"]["image_size"] = config.size
    if config.pretrain_n is not None:
        data["n"] = config.pretrain_n
    if config.pretrain_epochs is not None:
        recipe["train"]["epochs"] = config.pretrain_epochs
    data["cache"] = f"pretrain-avatars-{data['n']}-{config.size}px-seed{data['seed']}.h5"
    roles = {b["name"]: b["role"] for b in recipe["bases"]}
    labels = {a: b["name"] for b in recipe["bases"] if b["role"] == "control" for a in b.get("attributes", ())}
    missing = [a for a in config.pair if a not in labels]
    if missing:
        raise UserError(f"the pairs experiment needs a control base pretrained on {missing[0]!r}, and the recipe "
                        f"{recipe_path(config).name} has controls on {sorted(labels)}; choose a pair among those.")
    if config.controls is not None:
        keep = {*config.controls, *(labels[a] for a in config.pair)}
        unknown = sorted(set(config.controls) - set(roles))
        if unknown:
            raise UserError(f"control {unknown[0]!r} is not a base of {recipe_path(config).name}; choose among "
                            f"{sorted(n for n, r in roles.items() if r == 'control')}.")
        recipe["bases"] = [b for b in recipe["bases"] if b["role"] != "control" or b["name"] in keep]
    bases = run_recipe(recipe, out_dir=out / "bases", cache_dir=out / "avatars", workers=config.workers,
                       progress=config.progress)
    return bases, roles


def extract_stores(out: Path, cache: Path, bases: dict[str, Path], config: ReproduceConfig) -> dict[str, Path]:
    """A feature store per base (reused when it matches), plus ImageNet when asked and installed."""
    from extract.backbones import create_backbone
    from extract.datasets.avatars import AvatarAdapter
    from extract.extraction import extract_features

    adapter = AvatarAdapter(cache)
    stores = {}
    for name, checkpoint in bases.items():
        stores[name] = extract_features(adapter, create_backbone(checkpoint), out / "stores" / f"avatars__{name}.h5",
                                        device="cpu", progress=config.progress)
    if config.imagenet:
        try:
            # at the bases' size: the trained bases' common starting point
            backbone = create_backbone(IMAGENET, image_size=config.size)
        except UserError as exc:
            print(f"  skipping {IMAGENET}: {exc}")
        else:
            stores[IMAGENET] = extract_features(adapter, backbone, out / "stores" / f"avatars__{IMAGENET}.h5",
                                                device="cpu", progress=config.progress)
    return stores


def estimate_salience(out: Path, cache: Path, config: ReproduceConfig) -> Path:
    """Salience per target checked against the generator (``salience.csv``, reused when present)."""
    from analyze.salience.estimate import validate_salience
    from analyze.salience.table import salience_table
    from extract.datasets.avatars import AvatarAdapter
    from extract.io import write_text

    path = out / "salience.csv"
    if not path.exists():
        adapter = AvatarAdapter(cache)
        targets = list(dict.fromkeys([*config.targets, *(config.salience_targets or ())]))
        table = salience_table(targets, SENSITIVE, adapter=adapter, method="probe",
                               replicates=config.salience_replicates,
                               seed=config.seed, progress=config.progress)
        table = validate_salience(table, adapter.signal_strength, sensitive=SENSITIVE).table
        write_text(path, table.to_csv(index=False))
    return path


def probe_specs(meta: pd.DataFrame, config: ReproduceConfig) -> list:
    """Every probe cell of the findings (module docstring, stage 5)."""
    from analyze.subsets import (
        Correlation,
        Natural,
        Skew,
        SubSelection,
        level_toward_stereotype,
    )

    specs = []
    for t in config.targets:
        toward = {lvl: level_toward_stereotype(meta, t, SENSITIVE, lvl) for lvl in (*config.levels, 0.8, 0.7)}
        for s in config.seeds:
            specs += [Correlation(t, SENSITIVE, toward[lvl], n=config.probe_n, seed=s) for lvl in config.levels]
            specs += [Natural(t, SENSITIVE, n=n, seed=s) for n in sorted({*config.sizes, config.probe_n})]
            specs.append(Skew(t, SENSITIVE, toward[0.8], n=config.probe_n, seed=s))
            specs += [SubSelection(t, SENSITIVE, toward[lvl], base_n=config.subselection_n, base_level=toward[0.8],
                                   seed=s) for lvl in (0.8, 0.7)]
    return specs


def feasible(specs, meta: pd.DataFrame) -> tuple[list, list[str]]:
    """The specs whose rows can be drawn from ``meta``, and one line per kind left out (with the first reason)."""
    kept, dropped = [], {}
    for spec in specs:
        try:
            spec.split_indices(meta)
        except UserError as exc:
            count, reason = dropped.get(spec.kind, (0, str(exc)))
            dropped[spec.kind] = (count + 1, reason)
        else:
            kept.append(spec)
    return kept, [f"{kind}: {count} cell(s) left out as infeasible, e.g. {reason}"
                  for kind, (count, reason) in dropped.items()]


def run_probes(out: Path, stores: dict[str, Path], config: ReproduceConfig) -> Path:
    """Fit (or reuse) every probe cell on every store; records under ``out/results``."""
    from analyze.probe.cells import run_probe_cells
    from extract.store.reader import FeatureStore

    results = out / "results"
    for name, path in stores.items():
        store = FeatureStore.open(path)
        specs, notes = feasible(probe_specs(store.metadata, config), store.metadata)
        for note in notes if name == next(iter(stores)) else ():
            print(f"  {note}")
        began = time.perf_counter()
        records = run_probe_cells(store, specs, out=results, progress=config.progress)
        print(f"  {name}: {len(records)} probe cells fitted, {len(specs) - len(records)} reused "
              f"({time.perf_counter() - began:.1f} s)", flush=True)
    return results


def run_finetunes(out: Path, cache: Path, bases: dict[str, Path], roles: dict[str, str],
                  config: ReproduceConfig) -> Path:
    """Full finetunes at the natural and the strongest stereotype level, biased base and every control."""
    from analyze.config import RunContext
    from analyze.finetune.runner import FinetuneConfig, FinetuneOptions, finetune_cells
    from analyze.subsets import Correlation, Natural, level_toward_stereotype
    from extract.datasets.avatars import AvatarAdapter

    results = out / "results"
    adapter = AvatarAdapter(cache)
    meta = adapter.metadata()
    t = config.finetune_target
    strongest = level_toward_stereotype(meta, t, SENSITIVE, 1.0)
    specs = [Natural(t, SENSITIVE, n=config.finetune_n, seed=s) for s in config.finetune_seeds]
    specs += [Correlation(t, SENSITIVE, strongest, n=config.finetune_n, seed=s) for s in config.finetune_seeds]
    specs, notes = feasible(specs, meta)
    for note in notes:
        print(f"  {note}")
    finetune = FinetuneConfig(lrs=tuple(config.finetune_lrs), weight_decays=(1e-4,), epochs=config.finetune_epochs,
                              freeze_bn=config.finetune_freeze_bn)
    for name, path in bases.items():
        chosen = name in config.finetune_bases if config.finetune_bases is not None else \
            roles.get(name) in ("biased", "control")
        if not chosen:
            continue
        began = time.perf_counter()
        finetune_cells(specs, adapter=adapter, base=str(path), config=finetune,
                       context=RunContext(out=results, progress=config.progress), options=FinetuneOptions(device="cpu"))
        print(f"  {name}: {len(specs)} finetune cells ({time.perf_counter() - began:.1f} s)", flush=True)
    return results


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def underrep_table(stores: dict[str, Path], bases_on: dict[str, str], config: ReproduceConfig) -> pd.DataFrame:
    """The pairs experiment with probes: one row per (base role, share of A-only positives, seed).

    Parameters
    ----------
    stores : {base name: store path}
    bases_on : {"A": base name, "B": base name}
        The base pretrained on A and the one pretrained on B.
    config : ReproduceConfig
        ``pair``, ``pair_shares``, ``pair_n`` and ``seeds``.

    Returns
    -------
    DataFrame with ``role, backbone, attr_a, attr_b, share_a, n, seed, auc_a, auc, rows_digest``:
    ``auc_a`` is the AUC of the "A or B" probe on the test rows that are A-only positives or
    negatives (neither A nor B); ``auc`` on every test row with a defined label.
    """
    from analyze.metrics import roc_auc
    from analyze.probe import ProbeTask, fit_probes
    from analyze.subsets import Underrepresentation
    from extract.store.reader import FeatureStore

    a, b = config.pair
    rows = []
    for role, name in bases_on.items():
        store = FeatureStore.open(stores[name])
        meta = store.metadata
        test = np.flatnonzero(meta["split"].astype(str).to_numpy() == "test")
        specs = [Underrepresentation(a, b, share, n=config.pair_n, seed=s)
                 for share in config.pair_shares for s in config.seeds]
        labels = specs[0].labels(meta)
        test = test[labels[test] >= 0]
        in_a = (meta[a].to_numpy()[test] == 1) & (meta[b].to_numpy()[test] == 0)
        negative = labels[test] == 0
        tasks, digests = [], []
        for spec in specs:
            split = spec.split_indices(meta)
            tasks.append(ProbeTask(train=split.train, val=split.val))
            digests.append(_digest(split.train, split.val))
        fitted = fit_probes(store.features, tasks, labels=np.where(labels < 0, 0, labels), test=test)
        for spec, scores, digest in zip(specs, fitted.test_scores, digests):
            keep = in_a | negative
            rows.append({"role": role, "backbone": name, "attr_a": a, "attr_b": b, "share_a": spec.share_a,
                         "n": spec.n, "seed": spec.seed,
                         "auc_a": float(roc_auc(in_a[keep].astype(int), np.asarray(scores)[keep])),
                         "auc": float(roc_auc(labels[test].astype(int), np.asarray(scores))), "rows_digest": digest})
    return pd.DataFrame(rows)


def run_pairs(out: Path, stores: dict[str, Path], bases: dict[str, Path], config: ReproduceConfig) -> Path:
    """Write (or reuse) ``underrep.csv``, the pairs experiment on the bases pretrained on A and on B."""
    from extract.io import write_text
    from extract.pretrain import load_recipe

    path = out / "underrep.csv"
    if path.exists():
        print(f"  reused {path}")
        return path
    recipe = load_recipe(recipe_path(config))
    on = {a: b["name"] for b in recipe["bases"] if b["role"] == "control" for a in b.get("attributes", ())}
    table = underrep_table(stores, {"A": on[config.pair[0]], "B": on[config.pair[1]]}, config)
    write_text(path, table.to_csv(index=False))
    return path


def collect_table(out: Path, results: Path, salience: Path, bases: dict[str, Path]) -> pd.DataFrame:
    """Collect the records with base kinds and salience; write ``table.csv``."""
    from analyze.effects.models import attach_salience, with_base_kind
    from analyze.results.collect import collect
    from extract.io import write_text

    table = collect(results)
    kinds = base_kinds(bases)
    table = with_base_kind(table, {k: v for k, v in kinds.items() if k in set(table["backbone"])})
    table = attach_salience(table, pd.read_csv(salience))
    write_text(out / "table.csv", table.to_csv(index=False))
    return table


def auc_table(table: pd.DataFrame, config: ReproduceConfig, *, kinds: dict[str, str] | None = None) -> pd.DataFrame:
    """Mean test AUC per base and target at the natural level: probes at ``probe_n``, at
    n = 1024 and at the largest n of the sweep, finetunes at ``finetune_n``; with the
    competence floor of each setting (:data:`analyze.metrics.diagnosis.COMPETENCE_FLOORS`) and
    whether the base's mean meets it (``meets_floor``; empty for the scratch base and where no
    floor is set)."""
    natural = table[table["spec_kind"] == "natural"]
    n = pd.to_numeric(natural["n"], errors="coerce")
    probe = natural["runner"] == "probe"
    sizes = [("probe", config.probe_n), ("probe", 1024)]
    if probe.any():
        sizes.append(("probe", int(n[probe].max())))
    sizes.append(("finetune", config.finetune_n))
    frames, seen = [], set()
    for runner, size in sizes:
        if (runner, size) in seen:
            continue
        seen.add((runner, size))
        rows = natural[(natural["runner"] == runner) & (n == size)]
        if not len(rows):
            continue
        means = rows.pivot_table(index="backbone", columns="target", values="auc", aggfunc="mean")
        means["mean"] = means.mean(axis=1)
        means = means.assign(setting=f"{runner} n={size}").reset_index()
        floor = COMPETENCE_FLOORS.get((runner, size))
        means["floor"] = floor
        kind = means["backbone"].map(lambda b: (kinds or {}).get(b, ""))
        means["meets_floor"] = [None if floor is None or k == "scratch" else bool(m >= floor)
                                for m, k in zip(means["mean"], kind)]
        frames.append(means)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


#: The folders under ``out`` that ``reproduce`` writes into (through :func:`extract.io.atomic_write`).
OUTPUT_FOLDERS = (".", "avatars", "bases", "stores", "results", "findings", "report", "report/figures",
                  "report/effects")


def remove_stale_outputs(out) -> int:
    """Delete the temporary files that killed runs left in ``out``'s :data:`OUTPUT_FOLDERS`; return how many.

    The sweep's cleanup (:func:`extract.io.remove_stale_temporaries`), folder by folder: only
    temporaries named by the toolkit's writer whose process is gone (a run still writing keeps
    its own), never another file.
    """
    from extract.io import remove_stale_temporaries

    return sum(remove_stale_temporaries(Path(out) / folder) for folder in OUTPUT_FOLDERS)


def run_reproduce(*, out, config: ReproduceConfig = PRESETS["full"], geography=None, report: bool = True) -> Path:
    """Run (or resume) every stage under ``out``; return the findings CSV's path.

    Temporary files of an earlier run that was killed mid-write (an avatar render, a
    checkpoint, a record) are removed first (:func:`remove_stale_outputs`).
    """
    from analyze.reproduce.findings import (
        build_findings,
        findings_markdown,
        write_findings,
    )

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    removed = remove_stale_outputs(out)
    if removed:
        print(f"  removed {removed} temporary file(s) that an interrupted run left under {out}")
    began = time.perf_counter()
    total = 8
    with Stage(1, total, "render the avatar dataset"):
        cache = render_avatars(out, n=config.n, size=config.size, seed=config.seed, workers=config.workers)
    with Stage(2, total, "pretrain the biased, control and scratch bases"):
        bases, roles = pretrain_bases(out, config)
    with Stage(3, total, "extract features of every base"):
        stores = extract_stores(out, cache, bases, config)
    with Stage(4, total, "estimate salience and check it against the generator"):
        salience = estimate_salience(out, cache, config)
    with Stage(5, total, "linear probes: correlation grid, n-sweep, skewed and curation sets"):
        results = run_probes(out, stores, config)
    with Stage(6, total, "full finetuning at the natural and the strongest stereotype level"):
        run_finetunes(out, cache, bases, roles, config)
    with Stage(7, total, "pairs experiment (underrepresentation) with probes"):
        underrep = run_pairs(out, stores, bases, config)
    with Stage(8, total, "collect, findings table and report"):
        table = collect_table(out, results, salience, bases)
        aucs = auc_table(table, config, kinds=dict(zip(table["backbone"], table["base_kind"]))
                         if "base_kind" in table.columns else None)
        if len(aucs):
            from extract.io import write_text

            write_text(out / "aucs.csv", aucs.to_csv(index=False))
            for setting, part in aucs.groupby("setting", sort=False):
                floor = part["floor"].iloc[0]
                print(f"  mean test AUC per base and target, natural level, {setting}"
                      + (f" (floor {floor:.2f} for every pretrained base):" if pd.notna(floor) else ":"))
                print(part.drop(columns=["setting", "floor"]).dropna(axis=1, how="all")
                      .to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        findings = build_findings(table, salience=pd.read_csv(salience), underrep=pd.read_csv(underrep),
                                  geography=geography,
                                  n={"probe": config.probe_n, "finetune": config.finetune_n})
        csv, md = write_findings(findings, out / "findings")
        print(findings_markdown(findings))
        print(f"  findings {csv}\n  findings {md}")
        if report:
            from analyze.report.build import build_report

            md_path, html = build_report(out / "table.csv", out_dir=out / "report", salience=salience,
                                         findings=findings, title="biastransfer reproduce: the papers' findings "
                                                                  "on procedural avatars")
            print(f"  report {md_path}\n  report {html}")
    print(f"reproduce finished in {time.perf_counter() - began:.0f} s; outputs under {out}")
    return csv


__all__ = ["OUTPUT_FOLDERS", "PRESETS", "ReproduceConfig", "probe_specs", "remove_stale_outputs", "run_reproduce",
           "underrep_table"]
