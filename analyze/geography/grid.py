"""Geography grids: bases x domain-mix shares x seeds, read from TOML (preset ``wr-geography``).

A sweep grid (:mod:`analyze.sweep.grid`) gives each backbone one feature store; a cell of
the geographic experiment mixes two sources (Dollar Street and COCO), so each base needs
one store per source. A geography grid is a TOML file whose ``[grid]`` table says
``kind = "geography"``; ``biastransfer sweep`` runs it with :func:`run_geography_grid`
(format: ``data/grids/README.md``)::

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
naming it). Overrides use the sweep's dotted keys (:func:`analyze.sweep.grid.apply_overrides`)
plus ``backbones.NAME.stores.SOURCE=PATH`` for one store; ``{work}`` is the work folder.
"""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from analyze.geography.experiment import DEFAULT_SHARES
from analyze.probe.multilabel import DEFAULT_GROUP_PREFIXES, check_test_modes
from analyze.subsets import DomainMix
from analyze.sweep.grid import apply_overrides, check_keys, grid_path
from extract.datasets.targets import TARGET_SET_FILES, target_set
from extract.errors import UserError
from extract.io import write_text
from extract.paths import work_dir

KIND = "geography"
GRID_KEYS = {"kind", "name", "description", "sources", "classes", "groups", "k", "test", "reference", "at_share"}
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

    def specs(self) -> list[DomainMix]:
        """The cells of one base: shares (outer) x seeds (inner)."""
        return [DomainMix(self.sources, share, n=self.n, seed=seed, targets=self.classes, size=self.size,
                          pool=self.pool, val_fraction=self.val_fraction)
                for share in self.shares for seed in self.seeds]

    def to_dict(self) -> dict:
        """JSON-serialisable form (written beside the results as provenance)."""
        d = asdict(self)
        return d | {"kind": KIND, "classes": list(self.classes) if self.class_set is None else self.class_set}


# -- reading ---------------------------------------------------------------------------------


def read_document(source: str | Path) -> tuple[Path, dict]:
    """The grid file of ``source`` (a path or a preset name) and its parsed TOML."""
    path = grid_path(source)
    try:
        return path, tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"grid {path} is not valid TOML ({exc}); fix the file.") from None


def is_geography_grid(source: str | Path) -> bool:
    """Whether ``source`` (a path or a preset name) is a grid with ``kind = "geography"``."""
    _, document = read_document(source)
    head = document.get("grid")
    return isinstance(head, dict) and head.get("kind") == KIND


def apply_store_overrides(document: dict, overrides) -> dict:
    """``document`` with the overrides applied; ``backbones.NAME.stores.SOURCE`` sets one store."""
    document, rest = copy.deepcopy(document), []
    for item in overrides:
        key, value = item if not isinstance(item, str) else (item.split("=", 1) + [None])[:2]
        parts = str(key).strip().split(".")
        if len(parts) == 4 and parts[0] == "backbones" and parts[2] == "stores":
            if value is None:
                raise UserError(f"override {item!r} is not KEY=VALUE; write e.g. backbones.geode.stores.coco=PATH.")
            entries = document.setdefault("backbones", [])
            match = [b for b in entries if isinstance(b, dict) and b.get("name") == parts[1]]
            if not match:
                match = [{"name": parts[1]}]
                entries.append(match[0])
            stores = match[0].setdefault("stores", {})
            if not isinstance(stores, dict):
                raise UserError(f"backbone {parts[1]!r} has stores = {stores!r}; it must be a table source -> path.")
            stores[parts[3]] = str(value).strip()
        else:
            rest.append(item)
    return apply_overrides(document, rest)


def load_geography_grid(source: str | Path, *, overrides=(), backbones=None) -> GeographyGrid:
    """Read a geography grid (preset name or TOML path), apply ``overrides``, validate every key.

    Parameters
    ----------
    source : str or path
        ``wr-geography`` or a TOML file with ``kind = "geography"``.
    overrides : iterable of ``"key=value"`` or ``(key, value)``
        Dotted-key overrides (module docstring).
    backbones : iterable of str, optional
        Keep only these bases (in the grid's order).
    """
    path, document = read_document(source)
    return build_geography_grid(apply_store_overrides(document, overrides), source=str(path), only=backbones)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _expand(path) -> str:
    return str(path).replace("{work}", str(work_dir()))


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
    if not _whole(k) or not 1 <= k < len(classes):
        raise UserError(f"grid.k = {k!r} must be a whole number from 1 to {len(classes) - 1} "
                        f"(there are {len(classes)} classes).")
    test = check_test_modes(head.get("test", "split"), sources)
    at_share = head.get("at_share", 0.1)
    if not _number(at_share) or not 0 <= at_share <= 1:
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
        if not Cs or not all(_number(c) and c > 0 for c in Cs):
            raise UserError(f"probe.Cs = {probe['Cs']!r} must list positive numbers, e.g. Cs = [0.01, 0.1, 1.0].")
        probe["Cs"] = [float(c) for c in Cs]
    shares = tuple(float(s) for s in block["shares"])
    if bases and len(bases) >= 2 and not (any(abs(s - at_share) < 1e-9 for s in shares)
                                          and any(abs(s - (1 - at_share)) < 1e-9 for s in shares)):
        raise UserError(f"grid.at_share = {at_share} and 1 - at_share must both be among the shares {list(shares)} "
                        "(the finding compares the bases there).")
    grid = GeographyGrid(
        name=str(head.get("name", Path(source).stem or "geography")), description=str(head.get("description", "")),
        sources=sources, classes=tuple(classes), class_set=class_set, groups=tuple(groups), k=k, test=test,
        reference=reference, at_share=float(at_share), backbones=bases, shares=shares, n=block["n"],
        size=block.get("size"), seeds=tuple(block["seeds"]), pool=block.get("pool", "train"),
        val_fraction=block.get("val_fraction", 0.2), probe=probe, source=source)
    grid.specs()  # every spec field is checked by DomainMix
    return grid


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
                                   stores={s: _expand(stores[s]) for s in sources}))
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
    if not shares or not all(_number(s) and 0 <= s <= 1 for s in shares) or len(set(shares)) != len(shares):
        raise UserError(f"shares = {block.get('shares')!r} must list distinct shares in [0, 1], "
                        "e.g. shares = [0.0, 0.1, 0.5, 1.0].")
    n = block.get("n", 128)
    if isinstance(n, list) and len(n) == 1:
        n = n[0]
    if not _whole(n) or n < 2:
        raise UserError(f"n = {block.get('n')!r} must be one whole number of training rows >= 2, e.g. n = 128 "
                        "(the finding compares the bases at one n).")
    seeds = block.get("seeds", 5)
    if _whole(seeds) and seeds >= 1:
        seeds = list(range(seeds))
    elif not (isinstance(seeds, list) and seeds and all(_whole(s) and s >= 0 for s in seeds)
              and len(set(seeds)) == len(seeds)):
        raise UserError(f"seeds = {seeds!r} is not a count or a list of distinct whole-number seeds; "
                        "write e.g. seeds = 5 (seeds 0 ... 4) or seeds = [0, 7].")
    return block | {"shares": shares, "n": n, "seeds": seeds}


# -- running ---------------------------------------------------------------------------------


def open_stores(grid: GeographyGrid) -> dict[str, dict]:
    """Every base's store of each source, opened; a missing file is one sentence naming it."""
    from extract.store.reader import FeatureStore

    opened = {}
    for base in grid.backbones:
        opened[base.name] = {}
        for source, path in base.stores.items():
            if not Path(path).is_file():
                raise UserError(f"the {source} store of base {base.name!r} ({path}) does not exist; extract the "
                                f"{source} dataset into it with `biastransfer extract` or point "
                                f"`backbones.{base.name}.stores.{source}` at an existing store.")
            opened[base.name][source] = FeatureStore.open(path)
    return opened


def check_cells(grid: GeographyGrid, stores: Mapping[str, Mapping]) -> int:
    """Check every cell against the stores' metadata (feasible counts, label columns); return the cell count."""
    specs = grid.specs()
    for base, by_source in stores.items():
        metas = {s: store.metadata for s, store in by_source.items()}
        for spec in specs:
            try:
                spec.split_indices(metas)
            except UserError as exc:
                raise UserError(f"base {base!r}, share {spec.share}, seed {spec.seed}: {exc}") from None
    return len(specs) * len(stores)


def run_geography_grid(grid: GeographyGrid, *, out: str | Path | None = None, skip_existing: bool = True,
                       n_jobs: int = 1, dry_run: bool = False) -> dict:
    """Run every (base, share, seed) cell of ``grid``, then summarise and state the finding.

    Parameters
    ----------
    grid : GeographyGrid
    out : path, optional
        Results folder (default ``work/results/<grid name>``). It receives one JSON record per
        cell, ``summary.csv``, ``findings.csv`` (what ``biastransfer reproduce --geography``
        reads), ``summary.md`` and the resolved grid under ``_grids/``.
    skip_existing : bool
        Keep cells whose records exist (a killed run resumes).
    n_jobs : int
        Passed to the probe engine.
    dry_run : bool
        Open the stores and check every cell; fit and write nothing.

    Returns
    -------
    dict
        ``out``, ``cells`` and, unless ``dry_run``: ``table``, ``summary``, ``findings``, ``paths``.
    """
    from analyze.geography.experiment import (
        run_cells,
        share_to_match,
        summarize,
        write_summary,
    )
    from analyze.probe.engine import DEFAULT_CS
    from analyze.results.records import check_results_folder
    from extract.io import remove_stale_temporaries

    out = Path(out) if out is not None else work_dir() / "results" / grid.name
    stores = open_stores(grid)
    cells = check_cells(grid, stores)
    if dry_run:
        return {"out": out, "cells": cells}
    out = check_results_folder(out)
    text = json.dumps(grid.to_dict(), indent=1, sort_keys=True)
    write_text(out / "_grids" / f"{grid.name}-{hashlib.sha256(text.encode()).hexdigest()[:10]}.json", text,
               hint="choose a writable `out` folder")
    remove_stale_temporaries(out)
    annotations = {b.name: {"grid": grid.name, "backbone": b.name, "base_kind": b.base_kind} for b in grid.backbones}
    table = run_cells(stores, sources=grid.sources, classes=grid.classes, shares=grid.shares, n=grid.n,
                      seeds=grid.seeds, k=grid.k, out=out, size=grid.size, group_prefixes=grid.groups,
                      Cs=grid.probe.get("Cs", DEFAULT_CS), select=grid.probe.get("select", "val_loss"),
                      device=grid.probe.get("device", "cpu"), n_jobs=n_jobs, test=grid.test,
                      annotations=annotations, skip_existing=skip_existing, pool=grid.pool,
                      val_fraction=grid.val_fraction)
    names = [b.name for b in grid.backbones]
    table = table[(table["n"] == grid.n) & table["backbone"].isin(names)]
    summary = summarize(table)
    findings = []
    first, second = grid.sources
    metrics = [f"top{grid.k}_accuracy_{first}", f"macro_ap_{second}"]
    if len(names) >= 2:
        reference = grid.reference or names[0]
        other = next(n for n in names if n != reference)
        findings = [share_to_match(summary, metric=metrics[0], base=reference, other=other, at_share=grid.at_share),
                    share_to_match(summary, metric=metrics[1], base=other, other=reference, at_share=grid.at_share,
                                   source_index=1)]
    paths = write_summary(summary, findings, out, metrics=metrics)
    return {"out": out, "cells": cells, "table": table, "summary": summary, "findings": findings, "paths": paths}


def parse_store_flag(item: str) -> tuple[str, str]:
    """``--store NAME.SOURCE=PATH`` -> the override ``(backbones.NAME.stores.SOURCE, PATH)``."""
    key, sep, path = str(item).partition("=")
    base, dot, source = key.strip().rpartition(".")
    if not sep or not dot or not base or not source or not path.strip():
        raise UserError(f"`store` takes NAME.SOURCE=PATH for a geography grid (e.g. geode.coco=stores/coco.h5), "
                        f"got {item!r}.")
    return f"backbones.{base}.stores.{source}", path.strip()


__all__ = ["GeographyBase", "GeographyGrid", "apply_store_overrides", "build_geography_grid", "check_cells",
           "is_geography_grid", "load_geography_grid", "open_stores", "parse_store_flag",
           "run_geography_grid"]
