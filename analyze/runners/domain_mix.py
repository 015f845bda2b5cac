"""The domain-mix runner: multi-label probes on two feature stores of one base (the geography grid).

A base of a geography grid (:mod:`analyze.geography.grid`) has one feature store per source
(``backbones.NAME.stores``); its cells are :class:`analyze.subsets.DomainMix` specs (shares x
seeds) fitted by :func:`analyze.probe.multilabel.run_domain_mix_cells`. A unit is the seeds of
one share (one engine call, so the test scores of its seeds stay small, and a resumed or
parallel run fits the same batches). The records carry ``runner = "probe"`` (a domain mix is
a probe cell of another kind) and the grid's base name as their backbone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from analyze.runners.base import Source
from analyze.runners.registry import register_runner
from extract.errors import UserError


@dataclass(frozen=True)
class DomainMixUnit:
    """The domain-mix cells of one base at one share (plain values: cheap to ship)."""

    runner = "domain_mix"
    backbone: str
    stores: dict
    specs: tuple[dict, ...]
    cell_ids: tuple[str, ...]
    options: dict = field(default_factory=dict)


def open_stores(backbone) -> dict:
    """The base's store of each source, opened; a missing file is one sentence naming it."""
    from extract.store.reader import FeatureStore

    opened = {}
    for source, path in (backbone.stores or {}).items():
        if not Path(path).is_file():
            raise UserError(f"the {source} store of base {backbone.name!r} ({path}) does not exist; extract the "
                            f"{source} dataset into it with `biastransfer extract` or point "
                            f"`backbones.{backbone.name}.stores.{source}` at an existing store.")
        opened[source] = FeatureStore.open(path)
    return opened


def mix_options(experiment) -> dict:
    """The :class:`~analyze.probe.multilabel.DomainMixConfig` fields of a geography grid, as plain values."""
    from analyze.probe.engine import DEFAULT_CS

    probe = experiment.probe
    return {"classes": list(experiment.classes), "k": experiment.k, "group_prefixes": list(experiment.groups),
            "test": dict(experiment.test), "Cs": [float(c) for c in probe.get("Cs", DEFAULT_CS)],
            "select": probe.get("select", "val_loss"), "device": probe.get("device", "cpu")}


def _settings(stores: dict, options: dict) -> dict:
    """What decides a cell's numbers besides its spec: each store's identity and the fit's options."""
    from analyze.sweep.settings import IDENTITY_KEYS, SETTINGS_VERSION, _canonical

    identity = {s: {k: store.provenance[k] for k in IDENTITY_KEYS if k in store.provenance}
                for s, store in stores.items()}
    return _canonical({"version": SETTINGS_VERSION, "runner": "domain_mix", "stores": identity,
                       "domain_mix": {k: v for k, v in options.items() if k != "device"}})


@register_runner
class DomainMixRunner:
    """Multi-label probes on domain mixes of two sources (``backbones.NAME.stores``)."""

    name = "domain_mix"
    records_as = "probe"
    proxy = True  # linear probes stand in for the papers' full finetunes
    records_base_path = False
    cell_grid = False  # its grids are geography grids
    grid_kind = "geography"

    def build_grid(self, document: dict, *, source: str = "", only=None):
        """The sweep grid of a raw geography grid document (:mod:`analyze.geography.grid`)."""
        from analyze.geography.grid import build_geography_grid, sweep_grid

        return sweep_grid(build_geography_grid(document, source=source, only=only))

    def source(self, grid, backbone, specs: list, shared: dict) -> Source:
        from analyze.sweep.settings import with_spec

        stores = open_stores(backbone)
        metas = {s: store.metadata for s, store in stores.items()}
        for spec in specs:
            try:
                spec.split_indices(metas)
            except UserError as exc:
                raise UserError(f"base {backbone.name!r}, share {spec.share}, seed {spec.seed}: {exc}") from None
        options = mix_options(grid.experiment)
        paths = {s: str(store.path) for s, store in stores.items()}
        key = tuple("+".join(str(store.provenance[k]) for store in stores.values())
                    for k in ("dataset_name", "manifest_hash"))

        def units(cells):
            by_share = {}
            for cell in cells:
                by_share.setdefault(cell.spec.share, []).append(cell)
            return [DomainMixUnit(backbone=backbone.name, stores=paths, specs=tuple(c.spec.to_dict() for c in group),
                                  cell_ids=tuple(c.cell_id for c in group), options=options)
                    for group in by_share.values()]

        common = _settings(stores, options)
        return Source(meta=metas, key=key, where=f"the stores of base {backbone.name!r}",
                      location=", ".join(paths.values()), what=f"the stores of base {backbone.name!r}",
                      recorded=backbone.name, units=units, settings_of=lambda spec: with_spec(common, spec),
                      describe=False)

    def run(self, unit: DomainMixUnit, *, in_pool: bool = False) -> list[dict]:
        from analyze.probe.multilabel import DomainMixConfig, run_domain_mix_cells
        from analyze.runners.probe import open_store
        from analyze.subsets import spec_from_dict

        stores = {s: open_store(path, os.stat(path).st_mtime_ns) for s, path in unit.stores.items()}
        options = unit.options
        config = DomainMixConfig(classes=tuple(options["classes"]), k=options["k"],
                                 group_prefixes=tuple(options["group_prefixes"]), test=options["test"],
                                 Cs=tuple(options["Cs"]), select=options["select"], device=options["device"])
        specs = [spec_from_dict(d) for d in unit.specs]
        return run_domain_mix_cells(stores, specs, config, skip_existing=False, backbone=unit.backbone)

    def pending(self, unit: DomainMixUnit, done: list[bool]):
        return None if all(done) else unit  # the seeds of a share are fitted together: the same batch

    def stores(self, unit: DomainMixUnit) -> tuple[str, ...]:
        return tuple(unit.stores.values())

    def check_fit(self, record: dict, flag) -> None:
        """Its records are probe records (``records_as``): the probe runner diagnoses them."""


__all__ = ["DomainMixRunner", "DomainMixUnit", "mix_options", "open_stores"]
