"""Geography grids: bases x domain-mix shares x seeds, read from TOML (preset ``wr-geography``).

A sweep grid (:mod:`analyze.sweep.grid`) gives each backbone one feature store; a cell of
the geographic experiment mixes two sources (Dollar Street and COCO), so each base needs
one store per source. A geography grid is a TOML file whose ``[grid]`` table says
``kind = "geography"``; ``biastransfer sweep`` runs it (:func:`run_geography_grid`: the sweep,
then the summary and the finding; format: ``data/grids/README.md``)::

    [grid]
    kind = "geography"
    name = "wr-geography"
    sources = ["dollarstreet", "coco"]    # shares count the first
    classes = "coco-objects"              # a target set name or a list of class columns
    groups = ["income_bucket_", "region_"]
    k = 5
    test = { dollarstreet = "unused" }    # per source: "split" (default) or "unused"
    reference = "geode"                   # the base expected to need less of the first source
    at_share = 0.1

    [[backbones]]
    name = "geode"
    base_kind = "geode"
    stores = { dollarstreet = "{work}/stores/dollarstreet__geode.h5", coco = "{work}/stores/coco__geode.h5" }

    [[subsets]]
    kind = "domain_mix"
    shares = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    n = 128
    size = 165
    seeds = 5

    [probe]
    Cs = [0.01, 0.1, 1.0]

Every key is checked (an unknown or ill-typed one is a :class:`~extract.errors.UserError`
naming it). The sweep's loader reads it (:func:`analyze.sweep.grid.load_grid`, which hands a
``kind = "geography"`` document to :func:`build_geography_grid`) and the sweep runs it with the
``domain_mix`` runner (:func:`sweep_grid`, :mod:`analyze.runners.domain_mix`). Overrides use the
sweep's dotted keys (:func:`analyze.sweep.grid.apply_overrides`), ``backbones.NAME.stores.SOURCE=PATH``
setting one store; ``{work}`` is the work folder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from analyze.geography.experiment import DEFAULT_SHARES
from analyze.probe.multilabel import DEFAULT_GROUP_PREFIXES, check_test_modes
from analyze.subsets import DomainMix
from analyze.sweep.grid import (
    DEFAULT_CHUNK_SIZE,
    Grid,
    GridBackbone,
    check_keys,
    expand_path,
    grid_kind,
    is_number,
    is_whole,
    load_grid,
    read_document,
)
from extract.datasets.targets import TARGET_SET_FILES, target_set
from extract.errors import UserError
from extract.paths import work_dir

KIND = "geography"
GRID_KEYS = {"kind", "name", "description", "sources", "classes", "groups", "k", "test", "reference", "at_share",
             "metrics", "shown"}
BACKBONE_KEYS = {"name", "base_kind", "stores"}
SUBSET_KEYS = {"kind", "shares", "n", "size", "seeds", "pool", "val_fraction"}
PROBE_KEYS = {"Cs", "select", "device"}
TOP_LEVEL = {"grid", "backbones", "subsets", "probe"}


@dataclass(frozen=True)
class GeographyBase:
    """One base of a geography grid: its label, kind and feature store per source."""

    name: str
    base_kind: str
    stores: dict[str, str]


@dataclass(frozen=True)
class GeographyGrid:
    """A resolved geography grid (after overrides); build it with :func:`load_geography_grid`."""

    name: str
    description: str
    sources: tuple[str, str]
    classes: tuple[str, ...]
    class_set: str | None
    groups: tuple[str, ...]
    k: int
    test: dict[str, str]
    reference: str | None
    at_share: float
    backbones: tuple[GeographyBase, ...]
    shares: tuple[float, ...]
    n: int
    size: int | None
    seeds: tuple[int, ...]
    pool: str = "train"
    val_fraction: float = 0.2
    probe: dict = field(default_factory=dict)
    source: str = ""
    metrics: tuple[str, ...] = ()  # the findings' two metrics; () = top-k on the first source, macro AP on the second
    shown: tuple[str, ...] = ()  # the metrics tabulated in summary.md; () = the findings' metrics

    def finding_metrics(self) -> tuple[str, str]:
        """The metric of each finding: the first source's (reference base) and the second's."""
        first, second = self.sources
        return self.metrics or (f"top{self.k}_accuracy_{first}", f"macro_ap_{second}")

    def specs(self) -> list[DomainMix]:
        """The cells of one base: shares (outer) x seeds (inner)."""
        return [DomainMix(self.sources, share, n=self.n, seed=seed, targets=self.classes, size=self.size,
                          pool=self.pool, val_fraction=self.val_fraction)
                for share in self.shares for seed in self.seeds]

    def to_dict(self) -> dict:
        """JSON-serialisable form (written beside the results as provenance)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("metrics", "shown") or v}
        return d | {"kind": KIND, "classes": list(self.classes) if self.class_set is None else self.class_set}


# -- reading ---------------------------------------------------------------------------------


def is_geography_grid(source: str | Path) -> bool:
    """Whether ``source`` (a path or a preset name) is a grid with ``kind = "geography"``."""
    return grid_kind(read_document(source)[1]) == KIND


def load_geography_grid(source: str | Path, *, overrides=(), backbones=None) -> GeographyGrid:
    """Read a geography grid with the sweep's loader (:func:`analyze.sweep.grid.load_grid`) and
    return its resolved settings.

    Parameters
    ----------
    source : str or path
        ``wr-geography`` or a TOML file with ``kind = "geography"``.
    overrides : iterable of ``"key=value"`` or ``(key, value)``
        Dotted-key overrides (module docstring).
    backbones : iterable of str, optional
        Keep only these bases (in the grid's order).
    """
    grid = load_grid(source, overrides=overrides, backbones=backbones)
    if grid.experiment is None:
        raise UserError(f"grid {source!r} is not a geography grid; its [grid] table says kind = \"geography\".")
    return grid.experiment


def sweep_grid(grid: GeographyGrid) -> Grid:
    """The sweep grid of a geography grid: every base's store per source, one domain-mix block,
    the ``domain_mix`` runner (:mod:`analyze.runners.domain_mix`)."""
    block = {"kind": "domain_mix", "shares": list(grid.shares), "n": grid.n, "size": grid.size,
             "seeds": list(grid.seeds), "pool": grid.pool, "val_fraction": grid.val_fraction}
    return Grid(name=grid.name, description=grid.description, targets=(), sensitive=None, runners=("domain_mix",),
                chunk_size=DEFAULT_CHUNK_SIZE, data={},
                backbones=tuple(GridBackbone(name=b.name, base_kind=b.base_kind, stores=dict(b.stores))
                                for b in grid.backbones),
                subsets=(block,), probe=dict(grid.probe), source=grid.source, experiment=grid)


def build_geography_grid(document: dict, *, source: str = "", only=None) -> GeographyGrid:
    """Validate a raw geography grid document and build the :class:`GeographyGrid`."""
    check_keys(document, TOP_LEVEL, "the grid file")
    head = document.get("grid", {})
    check_keys(head, GRID_KEYS, "[grid]")
    if head.get("kind") != KIND:
        raise UserError(f"grid.kind = {head.get('kind')!r}; a geography grid says kind = \"geography\".")
    sources = head.get("sources", ["dollarstreet", "coco"])
    if (not isinstance(sources, list) or len(sources) != 2 or not all(isinstance(s, str) and s for s in sources)
            or sources[0] == sources[1]):
        raise UserError(f"grid.sources = {sources!r} must name two different sources, e.g. "
                        "sources = [\"dollarstreet\", \"coco\"].")
    sources = tuple(sources)
    classes, class_set = _classes(head.get("classes", "coco-objects"))
    groups = head.get("groups", list(DEFAULT_GROUP_PREFIXES))
    if not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups):
        raise UserError(f"grid.groups = {groups!r} must list one-hot column prefixes, e.g. "
                        "groups = [\"income_bucket_\", \"region_\"] (or [] for none).")
    k = head.get("k", 5)
    if not is_whole(k) or not 1 <= k < len(classes):
        raise UserError(f"grid.k = {k!r} must be a whole number from 1 to {len(classes) - 1} "
                        f"(there are {len(classes)} classes).")
    test = check_test_modes(head.get("test", "split"), sources)
    at_share = head.get("at_share", 0.1)
    if not is_number(at_share) or not 0 <= at_share <= 1:
        raise UserError(f"grid.at_share = {at_share!r} must be a share in [0, 1], e.g. at_share = 0.1.")
    bases = _bases(document.get("backbones", []), sources, only)
    reference = head.get("reference")
    names = [b.name for b in bases]
    if reference is not None and reference not in names:
        raise UserError(f"grid.reference = {reference!r} is not one of the bases {names}; "
                        "name the base expected to need less of the first source.")
    block = _block(document.get("subsets", []))
    probe = dict(document.get("probe", {}))
    check_keys(probe, PROBE_KEYS, "[probe]")
    if "Cs" in probe:
        Cs = probe["Cs"] if isinstance(probe["Cs"], list) else [probe["Cs"]]
        if not Cs or not all(is_number(c) and c > 0 for c in Cs):
            raise UserError(f"probe.Cs = {probe['Cs']!r} must list positive numbers, e.g. Cs = [0.01, 0.1, 1.0].")
        probe["Cs"] = [float(c) for c in Cs]
    shares = tuple(float(s) for s in block["shares"])
    if bases and len(bases) >= 2 and not (any(abs(s - at_share) < 1e-9 for s in shares)
                                          and any(abs(s - (1 - at_share)) < 1e-9 for s in shares)):
        raise UserError(f"grid.at_share = {at_share} and 1 - at_share must both be among the shares {list(shares)} "
                        "(the finding compares the bases there).")
    metrics, shown = _metric_lists(head)
    grid = GeographyGrid(
        metrics=metrics, shown=shown, name=str(head.get("name", Path(source).stem or "geography")), description=str(head.get("description", "")),
        sources=sources, classes=tuple(classes), class_set=class_set, groups=tuple(groups), k=k, test=test,
        reference=reference, at_share=float(at_share), backbones=bases, shares=shares, n=block["n"],
        size=block.get("size"), seeds=tuple(block["seeds"]), pool=block.get("pool", "train"),
        val_fraction=block.get("val_fraction", 0.2), probe=probe, source=source)
    grid.specs()  # every spec field is checked by DomainMix
    return grid


def _metric_lists(head: dict) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``grid.metrics`` (two metric names, optional) and ``grid.shown`` (metric names, optional)."""
    metrics, shown = head.get("metrics", []), head.get("shown", [])
    if not isinstance(metrics, list) or len(metrics) not in (0, 2) or not all(isinstance(m, str) and m
                                                                              for m in metrics):
        raise UserError(f"grid.metrics = {metrics!r} must name two metrics, the first source's and the second's, "
                        "e.g. metrics = [\"top5_accuracy_dollarstreet\", \"macro_ap_coco\"].")
    if not isinstance(shown, list) or not all(isinstance(m, str) and m for m in shown):
        raise UserError(f"grid.shown = {shown!r} must list metric names, e.g. shown = [\"macro_ap_coco\"].")
    return tuple(metrics), tuple(shown)


def _classes(value) -> tuple[list[str], str | None]:
    if isinstance(value, str):
        if value not in TARGET_SET_FILES:
            raise UserError(f"grid.classes = {value!r} is not a target set; name one of {sorted(TARGET_SET_FILES)} "
                            "or list the class columns.")
        return target_set(value), value
    if (not isinstance(value, list) or len(value) < 2 or not all(isinstance(c, str) and c for c in value)
            or len(set(value)) != len(value)):
        raise UserError(f"grid.classes = {value!r} must be a target set name (\"coco-objects\") or a list of at least "
                        "two distinct class columns.")
    return list(value), None


def _bases(entries, sources: tuple[str, str], only) -> tuple[GeographyBase, ...]:
    if not isinstance(entries, list) or not entries:
        raise UserError("the grid has no [[backbones]]; add at least one with name, base_kind and stores "
                        "(one feature store per source).")
    built, names = [], set()
    for entry in entries:
        name = entry.get("name", "?") if isinstance(entry, dict) else "?"
        check_keys(entry, BACKBONE_KEYS, f"[[backbones]] {name!r}")
        if "name" not in entry or "base_kind" not in entry:
            raise UserError(f"backbone {name!r} needs a name and a base_kind (geode, imagenet, ...); "
                            f"set e.g. backbones.{name}.base_kind=imagenet.")
        if name in names:
            raise UserError(f"backbone name {name!r} appears twice in the grid; give each base its own name.")
        names.add(name)
        stores = entry.get("stores")
        if not isinstance(stores, dict) or set(stores) != set(sources) or not all(
                isinstance(p, str) and p for p in stores.values()):
            given = sorted(stores) if isinstance(stores, dict) else stores
            raise UserError(f"backbone {name!r} needs stores = {{ {sources[0]} = PATH, {sources[1]} = PATH }} "
                            f"(one feature store per source); got {given!r}.")
        built.append(GeographyBase(name=str(name), base_kind=str(entry["base_kind"]),
                                   stores={s: expand_path(stores[s]) for s in sources}))
    if only:
        missing = sorted(set(only) - names)
        if missing:
            raise UserError(f"backbone {missing[0]!r} is not in the grid; choose from {sorted(names)}.")
        built = [b for b in built if b.name in set(only)]
    return tuple(built)


def _block(blocks) -> dict:
    if not isinstance(blocks, list) or len(blocks) != 1 or not isinstance(blocks[0], dict):
        raise UserError("a geography grid has exactly one [[subsets]] block with kind = \"domain_mix\" "
                        "(shares, n, seeds).")
    block = dict(blocks[0])
    check_keys(block, SUBSET_KEYS, "[[subsets]] block 0 (domain_mix)")
    if block.get("kind") != "domain_mix":
        raise UserError(f"the [[subsets]] block has kind {block.get('kind')!r}; a geography grid takes "
                        "kind = \"domain_mix\".")
    shares = block.get("shares", list(DEFAULT_SHARES))
    shares = shares if isinstance(shares, list) else [shares]
    if not shares or not all(is_number(s) and 0 <= s <= 1 for s in shares) or len(set(shares)) != len(shares):
        raise UserError(f"shares = {block.get('shares')!r} must list distinct shares in [0, 1], "
                        "e.g. shares = [0.0, 0.1, 0.5, 1.0].")
    n = block.get("n", 128)
    if isinstance(n, list) and len(n) == 1:
        n = n[0]
    if not is_whole(n) or n < 2:
        raise UserError(f"n = {block.get('n')!r} must be one whole number of training rows >= 2, e.g. n = 128 "
                        "(the finding compares the bases at one n).")
    seeds = block.get("seeds", 5)
    if is_whole(seeds) and seeds >= 1:
        seeds = list(range(seeds))
    elif not (isinstance(seeds, list) and seeds and all(is_whole(s) and s >= 0 for s in seeds)
              and len(set(seeds)) == len(seeds)):
        raise UserError(f"seeds = {seeds!r} is not a count or a list of distinct whole-number seeds; "
                        "write e.g. seeds = 5 (seeds 0 ... 4) or seeds = [0, 7].")
    return block | {"shares": shares, "n": n, "seeds": seeds}


# -- running ---------------------------------------------------------------------------------


def run_geography_grid(grid: Grid | GeographyGrid, *, out: str | Path | None = None, skip_existing: bool = True,
                       n_jobs: int = 1, dry_run: bool = False, progress: bool = False) -> dict:
    """Run every (base, share, seed) cell of ``grid`` with the sweep, then summarise and state the finding.

    Parameters
    ----------
    grid : Grid (of a geography grid) or GeographyGrid
    out : path, optional
        Results folder (default ``work/results/<grid name>``). It receives one JSON record per
        cell, ``summary.csv``, ``findings.csv`` (what ``biastransfer reproduce --geography``
        reads), ``summary.md`` and the resolved grid under ``_grids/``.
    skip_existing, n_jobs, dry_run, progress
        As in :func:`analyze.sweep.sweep` (``dry_run``: open the stores and check every cell;
        fit and write nothing).

    Returns
    -------
    dict
        ``out``, ``cells`` (the sweep's summary) and, unless ``dry_run``: ``table``,
        ``summary``, ``findings``, ``paths`` (:func:`analyze.geography.experiment.conclude`).
    """
    from analyze.geography.experiment import conclude
    from analyze.results import collect
    from analyze.sweep.run import sweep

    grid = sweep_grid(grid) if isinstance(grid, GeographyGrid) else grid
    geo = grid.experiment
    out = Path(out) if out is not None else work_dir() / "results" / grid.name
    cells = sweep(grid, out=out, skip_existing=skip_existing, n_jobs=n_jobs, progress=progress, dry_run=dry_run)
    if dry_run:
        return {"out": out, "cells": cells}
    names = [b.name for b in geo.backbones]
    table = collect(out)
    table = table[(table["n"] == geo.n) & table["backbone"].isin(names)]
    ending = conclude(table, out, names=names, reference=geo.reference, at_share=geo.at_share,
                      metrics=geo.finding_metrics(), shown=geo.shown or None)
    return {"out": out, "cells": cells, "table": table, **ending}


def parse_store_flag(item: str) -> tuple[str, str]:
    """``--store NAME.SOURCE=PATH`` -> the override ``(backbones.NAME.stores.SOURCE, PATH)``."""
    key, sep, path = str(item).partition("=")
    base, dot, source = key.strip().rpartition(".")
    if not sep or not dot or not base or not source or not path.strip():
        raise UserError(f"`store` takes NAME.SOURCE=PATH for a geography grid (e.g. geode.coco=stores/coco.h5), "
                        f"got {item!r}.")
    return f"backbones.{base}.stores.{source}", path.strip()


__all__ = ["GeographyBase", "GeographyGrid", "build_geography_grid", "is_geography_grid", "load_geography_grid",
           "parse_store_flag", "run_geography_grid", "sweep_grid"]
