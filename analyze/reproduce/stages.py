"""The stage functions of the avatar pipeline, shared by ``biastransfer reproduce`` and ``demo``.

Every stage takes the :class:`PipelineRun` (the output folder, the
:class:`~analyze.reproduce.run.ReproduceConfig` and what earlier stages produced) and
fills in its own part; each reuses what already exists under ``out``, so a rerun only does
what is missing. A preset lists its stages (:data:`analyze.reproduce.run.PIPELINES`); the
demo and the findings run are two presets of one pipeline, not two copies of it.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analyze.reproduce.sources import RECIPE, config_bases, recipe_path, source_of
from analyze.runners import RUNNERS
from extract.errors import UserError

IMAGENET = "efficientnet_lite0.imagenet"


@dataclass
class PipelineRun:
    """The state one run carries from stage to stage (``out`` and ``config`` given, the rest filled in)."""

    out: Path
    config: object
    geography: object = None
    write_report: bool = True
    cache: Path | None = None
    bases: dict = field(default_factory=dict)
    roles: dict = field(default_factory=dict)
    stores: dict = field(default_factory=dict)
    salience: Path | None = None
    results: Path | None = None
    underrep: Path | None = None
    table: pd.DataFrame | None = None
    coefficients: pd.DataFrame | None = None
    plan: Path | None = None
    findings: object = None
    findings_csv: Path | None = None
    report: Path | None = None
    times: dict = field(default_factory=dict)
    cells: dict = field(default_factory=dict)
    extra_findings: list = field(default_factory=list)  # rows that stages add to the findings table (e.g. ranjit)


class Stage:
    """Prints where the run is and how long each stage took."""

    def __init__(self, number: int, total: int, title: str):
        self.label = f"[{number}/{total}] {title}"

    def __enter__(self):
        self.began = time.perf_counter()
        print(f"{self.label} ...", flush=True)
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.began
        if exc[0] is None:
            print(f"{self.label}: done in {self.seconds:.1f} s", flush=True)


def base_kinds(bases: dict[str, Path]) -> dict[str, str]:
    """Backbone name -> base kind label used by the effects and plots."""
    kinds = {}
    for name, path in bases.items():
        kind = "biased" if "biased" in name else "control" if "control" in name else "scratch"
        kinds[name] = kinds[str(path)] = kind  # probes record the name, finetunes the checkpoint path
    kinds[IMAGENET] = "imagenet"
    return kinds


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


# -- 1. avatars, 2. bases, 3. stores ----------------------------------------------------------


def render_avatars(out: Path, *, n: int, size: int, seed: int, workers) -> Path:
    """Render (or reuse) the finetuning avatars and their contact sheet under ``out/avatars``."""
    from extract.datasets.avatars import RenderSpec, contact_sheet, render_dataset

    cache = out / "avatars" / f"avatars-{n}-{size}px-seed{seed}.h5"
    if not cache.exists():
        render_dataset(cache, spec=RenderSpec(n=n, size=size, seed=seed), workers=workers)
    sheet = cache.with_suffix(".sheet.png")
    if not sheet.exists():
        contact_sheet(cache, sheet, n=32, seed=seed)
    print(f"  dataset {cache}\n  contact sheet {sheet}")
    return cache


def render(run: PipelineRun) -> None:
    """Stage: the finetuning dataset, from the config's source (the avatars rendered, or a given dataset checked)."""
    run.cache = source_of(run.config).prepare(run.out, run.config, render=render_avatars)


def _adapter(run: PipelineRun):
    """The finetuning images' adapter (the source's, over what :func:`render` prepared)."""
    return source_of(run.config).adapter(run.cache)


def _recipe(config, out: Path) -> tuple[dict, dict[str, str]]:
    """The recipe at the config's size and sizes, its data from the config's source, its controls
    cut to ``controls`` (and the pair's)."""
    from extract.pretrain import load_recipe

    recipe = load_recipe(recipe_path(config))
    recipe["model"]["image_size"] = config.size
    if config.pretrain_epochs is not None:
        recipe["train"]["epochs"] = config.pretrain_epochs
    recipe["data"] = source_of(config).pretrain_data(recipe["data"], config, out)
    roles = {b["name"]: b["role"] for b in recipe["bases"]}
    labels = {a: b["name"] for b in recipe["bases"] if b["role"] == "control" for a in b.get("attributes", ())}
    missing = [a for a in config.pair if a not in labels]
    if missing:
        raise UserError(f"the pairs experiment needs a control base pretrained on {missing[0]!r}, and the recipe "
                        f"{recipe_path(config).name} has controls on {sorted(labels)}; choose a pair among those.")
    if config.controls is not None:
        controls = {labels.get(c, c) for c in config.controls}  # a control's name or its pretraining attribute
        keep = {*controls, *(labels[a] for a in config.pair)}
        unknown = sorted(controls - set(roles))
        if unknown:
            raise UserError(f"control {unknown[0]!r} is not a base of {recipe_path(config).name}; choose among "
                            f"{sorted(n for n, r in roles.items() if r == 'control')}.")
        recipe["bases"] = [b for b in recipe["bases"] if b["role"] != "control" or b["name"] in keep]
    return recipe, roles


def pretrain(run: PipelineRun) -> None:
    """Stage: build (or reuse) the recipe's bases at the config's size."""
    from extract.pretrain import run_recipe

    if run.config.bases:  # given checkpoints (analyze.reproduce.sources.given_bases)
        entries = config_bases(run.config)
        run.bases, run.roles = {b["name"]: Path(b["path"]) for b in entries}, {b["name"]: b["role"] for b in entries}
        for name, path in run.bases.items():
            print(f"  base {name} (given): {path}")
        return
    recipe, run.roles = _recipe(run.config, run.out)
    run.bases = run_recipe(recipe, out_dir=run.out / "bases", cache_dir=run.out / "avatars",
                           workers=run.config.workers, progress=run.config.progress)
    for name, path in run.bases.items():
        print(f"  base {name}: {path}")


def extract(run: PipelineRun) -> None:
    """Stage: a feature store per base (reused when it matches), plus ImageNet when asked and installed."""
    from extract.backbones import create_backbone
    from extract.extraction import ExtractOptions, extract_features

    adapter, options = _adapter(run), ExtractOptions(device="cpu", progress=run.config.progress)
    folder, label = run.out / "stores", source_of(run.config).name
    for name, checkpoint in run.bases.items():
        run.stores[name] = extract_features(adapter, create_backbone(checkpoint), folder / f"{label}__{name}.h5",
                                            options=options)
    if not run.config.imagenet:
        return
    try:
        # at the bases' size: the ImageNet base is the trained bases' common starting point
        backbone = create_backbone(IMAGENET, image_size=run.config.size)
    except UserError as exc:
        print(f"  skipping {IMAGENET}: {exc}")
    else:
        run.stores[IMAGENET] = extract_features(adapter, backbone, folder / f"{label}__{IMAGENET}.h5",
                                                options=options)


# -- 4. salience, 5. probes, 6. finetunes, 7. pairs ---------------------------------------------


def salience(run: PipelineRun) -> None:
    """Stage: salience per target, checked against the generator's truth where the source has one
    (``salience.csv``, reused when present)."""
    from analyze.salience.config import SalienceConfig
    from analyze.salience.estimate import validate_salience
    from analyze.salience.table import salience_table
    from extract.io import write_text

    config, path = run.config, run.out / "salience.csv"
    if path.exists():
        table = pd.read_csv(path)
    else:
        adapter = _adapter(run)
        targets = list(dict.fromkeys([*config.targets, *(config.salience_targets or ())]))
        table = salience_table(targets, config.sensitive, adapter=adapter, progress=config.progress,
                               config=SalienceConfig(method=config.salience_method,
                                                     replicates=config.salience_replicates, seed=config.seed))
        truth = source_of(config).truth(adapter)
        if truth is not None:
            table = validate_salience(table, truth, sensitive=config.sensitive).table
        write_text(path, table.to_csv(index=False))
    shown = [c for c in ("target", "salience", "ci_low", "ci_high", "true_log_ratio") if c in table.columns]
    print(table[shown].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    run.salience = path


def probes(run: PipelineRun) -> None:
    """Stage: fit (or reuse) the preset's probe cells on every store; records under ``out/results``."""
    from analyze.config import RunContext
    from analyze.probe.cells import run_probe_cells
    from extract.store.reader import FeatureStore

    run.results = run.out / "results"
    for i, (name, path) in enumerate(run.stores.items()):
        store = FeatureStore.open(path)
        specs, notes = feasible(run.config.probe_grid(store.metadata, run.config), store.metadata)
        for note in notes if i == 0 else ():
            print(f"  {note}")
        began = time.perf_counter()
        records = run_probe_cells(store, specs, context=RunContext(out=run.results, progress=run.config.progress))
        run.cells["probe"] = run.cells.get("probe", 0) + len(specs)
        print(f"  {name}: {len(records)} probe cells fitted, {len(specs) - len(records)} reused "
              f"({time.perf_counter() - began:.1f} s)", flush=True)


def finetune_settings(config, role: str):
    """The finetune protocol of a base of ``role``: the pretrained bases' lr grid and BatchNorm
    setting, or the scratch base's own (W&R's Scratch: random init trained on the finetuning set,
    with its own lr search and its BatchNorm statistics trained)."""
    from analyze.finetune.runner import FinetuneConfig

    if role == "scratch":
        return FinetuneConfig(lrs=tuple(config.scratch_lrs), weight_decays=(1e-4,),
                              epochs=config.scratch_epochs or config.finetune_epochs, freeze_bn=False)
    return FinetuneConfig(lrs=tuple(config.finetune_lrs), weight_decays=(1e-4,), epochs=config.finetune_epochs,
                          freeze_bn=config.finetune_freeze_bn)


def role_bases(run: PipelineRun) -> dict[str, list[tuple[str, str]]]:
    """Role -> [(base name, base to load)] (:data:`~analyze.reproduce.grids.ROLES`; ``best_control``
    is resolved after the groups before it have run)."""
    found = {role: [] for role in ("biased", "control", "scratch", "imagenet", "pair_a", "pair_b")}
    for name, path in run.bases.items():
        if run.roles.get(name) in found:
            found[run.roles[name]].append((name, str(path)))
    on = {a: b["name"] for b in config_bases(run.config) if b["role"] == "control" for a in b.get("attributes", ())}
    for role, attr in zip(("pair_a", "pair_b"), run.config.pair):
        if on.get(attr) in run.bases:
            found[role].append((on[attr], str(run.bases[on[attr]])))
    if run.config.imagenet and IMAGENET in run.stores:  # its weights are installed
        found["imagenet"].append((IMAGENET, IMAGENET))
    return found


def best_control(run: PipelineRun, controls: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The control with the best mean finetune AUC on the natural sets at ``paper_n`` (chosen once)."""
    from analyze.results.collect import collect as collect_records

    table = collect_records(run.results)
    natural = table[RUNNERS.rows(table, "finetune") & (table["spec_kind"] == "natural")
                    & (pd.to_numeric(table["n"], errors="coerce") == run.config.paper_n)]
    auc = natural.groupby("backbone")["auc"].mean()  # records name a checkpoint base by its name or path

    def mean_auc(control):
        return float(auc.get(control[0], auc.get(control[1], float("nan"))))

    ranked = sorted(controls, key=lambda c: -mean_auc(c) if np.isfinite(mean_auc(c)) else np.inf)
    if ranked:
        print(f"  best control (natural sets, n = {run.config.paper_n}): {ranked[0][0]} (AUC {mean_auc(ranked[0]):.3f})")
    return ranked[:1]


def _finetune_group(run: PipelineRun, group, bases: list[tuple[str, str, str]], adapter) -> None:
    """Run one group's feasible cells on each of its ``(name, base, role)``."""
    from analyze.config import EvalConfig, RunContext
    from analyze.finetune.runner import FinetuneOptions, finetune_cells

    specs, notes = feasible(list(group.specs), adapter.metadata())
    for note in notes:
        print(f"  {note}")
    for name, base, role in bases:
        began = time.perf_counter()
        summary = finetune_cells(specs, adapter=adapter, base=base, config=finetune_settings(run.config, role),
                                 evaluation=EvalConfig(sensitive=group.sensitive),
                                 context=RunContext(out=run.results, progress=run.config.progress),
                                 options=FinetuneOptions(device="auto", image_size=run.config.size
                                                         if base == IMAGENET else None))
        trained = int((summary["status"] != "skipped").sum()) if len(summary) else 0
        run.cells["finetune"] = run.cells.get("finetune", 0) + len(specs)
        run.cells["finetune_run"] = run.cells.get("finetune_run", 0) + trained
        print(f"  {group.name} | {name} ({role}): {len(specs)} cells, {trained} trained "
              f"({time.perf_counter() - began:.1f} s)", flush=True)


def finetunes(run: PipelineRun) -> None:
    """Stage: the preset's full finetunes: W&R's groups on the bases of their roles, or a plain
    grid on ``finetune_bases`` (None: the biased base and every control)."""
    from analyze.reproduce.grids import CellGroup

    config = run.config
    run.results = run.out / "results"
    adapter = _adapter(run)
    grid = config.finetune_grid(adapter.metadata(), config)
    if grid and not isinstance(grid[0], CellGroup):
        chosen = [(name, str(path), run.roles.get(name, "")) for name, path in run.bases.items()
                  if (name in config.finetune_bases if config.finetune_bases is not None
                      else run.roles.get(name) in ("biased", "control"))]
        _finetune_group(run, CellGroup("finetunes", ("biased", "control"), tuple(grid)), chosen, adapter)
        return
    roles = role_bases(run)
    for group in grid:
        if config.finetune_groups is not None and group.name.split(":")[0] not in config.finetune_groups:
            continue
        if "best_control" in group.roles and "best_control" not in roles:
            roles["best_control"] = best_control(run, roles["control"])
        bases = [(name, base, role) for role in group.roles for name, base in roles.get(role, [])]
        missing = [r for r in group.roles if not roles.get(r)]
        if missing:
            print(f"  {group.name}: no base of role(s) {', '.join(missing)} (left out)")
        _finetune_group(run, group, list(dict.fromkeys(bases)), adapter)


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def underrep_table(stores: dict[str, Path], bases_on: dict[str, str], config) -> pd.DataFrame:
    """The pairs experiment with probes: one row per (base role, share of A-only positives, seed).

    Parameters
    ----------
    stores : {base name: store path}
    bases_on : {"A": base name, "B": base name}
        The base pretrained on A and the one pretrained on B.
    config : ReproduceConfig
        ``pair``, ``pair_shares``, ``pair_sizes`` and ``seeds``.

    Returns
    -------
    DataFrame with ``runner`` ("probe"), ``role, backbone, attr_a, attr_b, share_a, n, seed, auc_a, auc,
    rows_digest``:
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
        specs = [Underrepresentation(a, b, share, n=n, seed=s)
                 for n in config.pair_sizes for share in config.pair_shares for s in config.seeds]
        labels = specs[0].labels(meta)
        test = test[labels[test] >= 0]
        in_a = (meta[a].to_numpy()[test] == 1) & (meta[b].to_numpy()[test] == 0)
        keep = in_a | (labels[test] == 0)
        splits = [spec.split_indices(meta) for spec in specs]
        fitted = fit_probes(store.features, [ProbeTask(train=s.train, val=s.val) for s in splits],
                            labels=np.where(labels < 0, 0, labels), test=test)
        for spec, scores, split in zip(specs, fitted.test_scores, splits):
            rows.append({"runner": "probe", "role": role, "backbone": name, "attr_a": a, "attr_b": b, "share_a": spec.share_a,
                         "n": spec.n, "seed": spec.seed,
                         "auc_a": float(roc_auc(in_a[keep].astype(int), np.asarray(scores)[keep])),
                         "auc": float(roc_auc(labels[test].astype(int), np.asarray(scores))),
                         "rows_digest": _digest(split.train, split.val)})
    return pd.DataFrame(rows)


def finetune_pairs(table: pd.DataFrame, bases_on: dict[str, str]) -> pd.DataFrame:
    """The pairs experiment's finetune records as :func:`underrep_table`'s rows (``runner`` "finetune").

    ``bases_on``: {"A": (name, path), "B": (name, path)} of the two bases (records name a
    checkpoint base by either). The cells
    were scored with the group column B, so ``auc_group0`` is the AUC of the A-only positives
    against the negatives (neither A nor B): the AUC on A-positives.
    """
    columns = ["runner", "role", "backbone", "attr_a", "attr_b", "share_a", "n", "seed", "auc_a", "auc", "rows_digest"]
    if not {"runner", "spec_kind", "auc_group0"} <= set(table.columns):
        return pd.DataFrame(columns=columns)
    rows = table[RUNNERS.rows(table, "finetune") & (table["spec_kind"] == "underrepresentation")]
    role = rows["backbone"].map({key: r for r, keys in bases_on.items() for key in keys})
    rows = rows.assign(runner="finetune", role=role, auc_a=pd.to_numeric(rows["auc_group0"], errors="coerce"))
    rows = rows[rows["role"].notna()]
    digest = rows["rows_digest"] if "rows_digest" in rows.columns else pd.Series("", index=rows.index)
    return rows.assign(rows_digest=digest)[columns].reset_index(drop=True)


def pairs(run: PipelineRun) -> None:
    """Stage: write (or reuse) ``underrep.csv``, the pairs experiment on the bases pretrained on A and on B."""
    from extract.io import write_text

    run.underrep = path = run.out / "underrep.csv"
    if path.exists():
        print(f"  reused {path}")
        return
    on = {a: b["name"] for b in config_bases(run.config) if b["role"] == "control" for a in b.get("attributes", ())}
    pair = run.config.pair
    write_text(path, underrep_table(run.stores, {"A": on[pair[0]], "B": on[pair[1]]}, run.config).to_csv(index=False))


# -- the last stage: collect, then the demo's effects / figures / plan or the findings table, and the report


def collect_table(out: Path, results: Path, salience_csv: Path, bases: dict[str, Path]) -> pd.DataFrame:
    """Collect the records with base kinds and salience; write ``table.csv``."""
    from analyze.effects.models import attach_salience, with_base_kind
    from analyze.results.collect import collect
    from extract.io import write_text

    table = collect(results)
    kinds = base_kinds(bases)
    table = with_base_kind(table, {k: v for k, v in kinds.items() if k in set(table["backbone"])})
    table = attach_salience(table, pd.read_csv(salience_csv))
    write_text(out / "table.csv", table.to_csv(index=False))
    return table


def collect(run: PipelineRun) -> None:
    """Step: ``table.csv`` and, per runner, the count of each diagnosis flag."""
    from analyze.metrics.diagnosis import flag_counts, format_counts

    run.table = table = collect_table(run.out, run.results, run.salience, run.bases)
    print(f"  table {run.out / 'table.csv'}: {len(table)} cells ({', '.join(sorted(table['runner'].unique()))})")
    for runner, part in table.groupby("runner", sort=True):
        print(f"  {runner}: {format_counts(flag_counts(part))}")


def auc_table(table: pd.DataFrame, config, *, kinds: dict[str, str] | None = None) -> pd.DataFrame:
    """Mean test AUC per base and target at the natural level: probes at ``probe_n``, ``paper_n``,
    n = 1024 and the largest n of the sweep, finetunes at ``paper_n`` and ``finetune_n``; with the
    competence floor of each setting (:data:`analyze.metrics.diagnosis.COMPETENCE_FLOORS`) and
    whether the base's mean meets it (``meets_floor``; empty for the scratch base and where no
    floor is set)."""
    from analyze.metrics.diagnosis import COMPETENCE_FLOORS

    natural = table[table["spec_kind"] == "natural"]
    n = pd.to_numeric(natural["n"], errors="coerce")
    probe = RUNNERS.rows(natural, "probe")
    sizes = [("probe", config.probe_n), ("probe", config.paper_n), ("probe", 1024)]
    if probe.any():
        sizes.append(("probe", int(n[probe].max())))
    sizes += [("finetune", config.paper_n), ("finetune", config.finetune_n)]
    frames = []
    for runner, size in dict.fromkeys(sizes):
        rows = natural[RUNNERS.rows(natural, runner) & (n == size)]
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


def competence(run: PipelineRun) -> None:
    """Step: each base's mean probe test AUC per target on the natural sets at ``probe_n``, against
    the floor every pretrained base must reach (the scratch base is the random reference)."""
    from analyze.metrics.diagnosis import COMPETENCE_FLOORS

    table, n = run.table, run.config.probe_n
    natural = table[RUNNERS.rows(table, "probe") & (table["spec_kind"] == "natural")
                    & (pd.to_numeric(table["n"], errors="coerce") == n)]
    if not len(natural):
        return
    means = natural.pivot_table(index="backbone", columns="target", values="auc", aggfunc="mean")
    means["mean"] = means.mean(axis=1)
    floor = COMPETENCE_FLOORS.get(("probe", n))
    print(f"  mean probe test AUC on the natural sets, n = {n}"
          + (f" (floor {floor:.2f} for every pretrained base; scratch is the random-weight reference):" if floor else ":"))
    print("    " + means.reset_index().to_string(index=False, float_format=lambda v: f"{v:.3f}").replace("\n", "\n    "))


def aucs(run: PipelineRun) -> None:
    """Step: ``aucs.csv`` (:func:`auc_table`), printed per setting."""
    from extract.io import write_text

    table = run.table
    kinds = dict(zip(table["backbone"], table["base_kind"])) if "base_kind" in table.columns else None
    means = auc_table(table, run.config, kinds=kinds)
    if not len(means):
        return
    write_text(run.out / "aucs.csv", means.to_csv(index=False))
    for setting, part in means.groupby("setting", sort=False):
        floor = part["floor"].iloc[0]
        print(f"  mean test AUC per base and target, natural level, {setting}"
              + (f" (floor {floor:.2f} for every pretrained base):" if pd.notna(floor) else ":"))
        print(part.drop(columns=["setting", "floor"]).dropna(axis=1, how="all")
              .to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def effects(run: PipelineRun) -> None:
    """Step: the general and moderation effect tables of the probe cells under ``out/effects``."""
    from analyze.effects.format import write_tables
    from analyze.effects.models import run_effects

    coefs, _ = run_effects(run.table, model="general", runner="probe")
    paths = write_tables(coefs, run.out / "effects" / "general-probe",
                         title="bias ~ base * (correlation strength + salience)")
    print(f"  effects {paths[0]}")
    moderation, _ = run_effects(run.table, model="moderation", runner="probe")
    paths = write_tables(moderation, run.out / "effects" / "moderation-probe",
                         title="bias ~ base * correlation strength + correlation strength : salience")
    print(f"  effects {paths[0]}")
    run.coefficients = pd.concat([coefs, moderation], ignore_index=True)


def figures(run: PipelineRun) -> None:
    """Step: correlation and trade-off figures per runner, the coefficients and salience under ``out/figures``."""
    from analyze.report.plots import plot_coefficients, plot_correlation, plot_salience, plot_tradeoff

    folder, table = run.out / "figures", run.table
    for runner in sorted(table["runner"].unique()):
        rows = table[RUNNERS.rows(table, runner)]
        plot_correlation(rows, folder / f"correlation-{runner}")
        plot_tradeoff(rows, folder / f"tradeoff-{runner}")
    plot_coefficients(run.coefficients, folder / "coefficients-probe")
    plot_salience(pd.read_csv(run.salience), folder / "salience", truth="true_log_ratio")
    print(f"  figures {folder}")


def plan(run: PipelineRun) -> None:
    """Step: the curation plan of the probe cells (``plan.csv``)."""
    from analyze.curation import plan_curation

    run.plan = run.out / "plan.csv"
    plan_curation(run.table[RUNNERS.rows(run.table, "probe")]).to_csv(run.plan, index=False)
    print(f"  curation plan {run.plan}")


def pairs_table(run: PipelineRun) -> pd.DataFrame:
    """The pairs experiment's probe rows (``underrep.csv``) and finetune rows (from the collected records)."""
    on = {a: b["name"] for b in config_bases(run.config) if b["role"] == "control" for a in b.get("attributes", ())}
    paths = {role: (on[attr], str(run.bases[on[attr]])) for role, attr in zip(("A", "B"), run.config.pair)
             if on.get(attr) in run.bases}
    probe = pd.read_csv(run.underrep) if run.underrep is not None and run.underrep.exists() else pd.DataFrame()
    if len(probe) and "runner" not in probe.columns:
        probe = probe.assign(runner="probe")
    return pd.concat([probe, finetune_pairs(run.table, paths)], ignore_index=True)


def findings(run: PipelineRun) -> None:
    """Step: the findings table (``findings/findings.csv`` and ``.md``), printed: W&R's findings 1-5 for
    both runners (:func:`~analyze.reproduce.claims.paper_findings`), the salience validation and geography."""
    from analyze.reproduce.claims import ClaimOptions, build_findings
    from analyze.reproduce.findings import findings_markdown, write_findings
    from analyze.reproduce.measures import target_table

    config = run.config
    salience = pd.read_csv(run.salience)
    targets = target_table(_adapter(run).metadata(), config.targets, config.sensitive,
                           saliency=dict(zip(salience["target"], salience["salience"])))
    deviation = config.deviation
    if config.salience_method != "scratch":
        deviation = "; ".join(x for x in (deviation, f"Saliency from the {config.salience_method} estimator "
                                                     "(paper: models trained from scratch)") if x)
    options = ClaimOptions(n=config.paper_n, deviation=deviation, pair_n=min(config.pair_sizes))
    run.findings = build_findings(run.table, targets, salience=salience, underrep=pairs_table(run),
                                  geography=run.geography, options=options)
    if run.extra_findings:  # rows of stages such as "ranjit", in the same columns
        run.findings = pd.concat([run.findings, pd.DataFrame(run.extra_findings, columns=run.findings.columns)],
                                 ignore_index=True)
    run.findings_csv, md = write_findings(run.findings, run.out / "findings")
    print(findings_markdown(run.findings))
    print(f"  findings {run.findings_csv}\n  findings {md}")


def ranjit(run: PipelineRun) -> None:
    """Stage: Ranjit et al.'s findings R1-R3b (:mod:`analyze.reproduce.ranjit`), added to the findings table."""
    from analyze.reproduce.ranjit import ranjit as ranjit_stage

    ranjit_stage(run)


def report(run: PipelineRun) -> None:
    """Step: the Markdown and HTML report under ``out/report`` (with the plan and findings when made)."""
    from analyze.report.build import build_report

    if not run.write_report:
        return
    md, run.report = build_report(run.out / "table.csv", out_dir=run.out / "report", salience=run.salience,
                                  plan=run.plan, findings=run.findings, title=run.config.title)
    print(f"  report {md}\n  report {run.report}")


__all__ = ["IMAGENET", "RECIPE", "PipelineRun", "Stage", "auc_table", "base_kinds", "collect", "collect_table",
           "competence", "effects", "extract", "feasible", "figures", "findings", "finetune_pairs", "finetune_settings",
           "finetunes", "pairs", "pairs_table", "plan",
           "pretrain", "probes", "ranjit", "recipe_path", "render", "render_avatars", "report", "salience", "underrep_table"]
