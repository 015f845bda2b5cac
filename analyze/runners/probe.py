"""The probe runner: linear probes on one feature store, fitted in fixed chunks of cells.

A unit is ``grid.chunk_size`` cells of one store (one batched
:func:`analyze.probe.cells.run_probe_cells` call). The chunks are fixed by the grid, not by
the worker count or by what is already done, so a run with 1 or 8 workers, or a resumed
run, fits exactly the same batches and writes the same numbers; a chunk with any record
missing is refitted whole.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

from analyze.runners.base import Source, chunks
from analyze.runners.registry import register_runner
from extract.errors import UserError

POLICIES = ("top_p", "top_p_reference", "fixed")
SELECT = ("val_loss", "auc")


@dataclass(frozen=True)
class ProbeUnit:
    """Probe cells of one store, fitted in one batched call (plain values: cheap to ship)."""

    runner = "probe"
    store: str
    specs: tuple[dict, ...]
    cell_ids: tuple[str, ...]
    options: dict = field(default_factory=dict)


@functools.lru_cache(maxsize=2)
def open_store(path: str, stamp: int):
    """A store opened once per worker process (``stamp``: its mtime, so a rebuilt store reloads)."""
    from extract.store.reader import FeatureStore

    return FeatureStore.open(path)


def probe_options(table: dict) -> dict:
    """The grid's ``[probe]`` options, checked once and returned as the unit's plain dict (``Cs`` as floats).

    Every key and value is checked by the probe's configuration objects
    (:func:`analyze.probe.cells.probe_options`, which the unit's run parses them with), so a bad
    grid fails when it is loaded, with the same sentence; probes take the threshold policies of
    :data:`POLICIES` only.
    """
    from analyze.probe.cells import probe_options as parse

    probe = dict(table)
    cs = probe.get("Cs")
    if isinstance(cs, bool) or (isinstance(cs, list) and any(isinstance(c, bool) for c in cs)):
        raise UserError(f"grid.toml [probe]: `Cs` must be a non-empty list of positive finite numbers, got {cs!r}.")
    _, evaluation, _ = parse(probe, "grid.toml [probe]")
    if evaluation.policy not in POLICIES:
        raise UserError(f"grid.toml [probe]: `policy` must be one of {POLICIES} for probes, got {evaluation.policy!r}.")
    if "Cs" in probe:
        probe["Cs"] = [float(c) for c in (cs if isinstance(cs, list) else [cs])]
    return probe


@register_runner
class ProbeRunner:
    """Linear probes on a backbone's feature store (``backbones.NAME.store``)."""

    name = "probe"
    records_as = "probe"
    proxy = True  # linear probes stand in for the papers' full finetunes
    records_base_path = False  # its records name the store's backbone
    cell_grid = True  # a grid of cells (grid.runners) takes it

    def source(self, grid, backbone, specs: list, shared: dict) -> Source:
        from analyze.sweep.settings import probe_settings, with_spec
        from extract.store.reader import FeatureStore

        if not backbone.store:
            raise UserError(f"backbone {backbone.name!r} has no store for the probe runner; "
                            f"give `backbones.{backbone.name}.store` (or drop 'probe' from `grid.runners`).")
        if any(spec.kind == "underrepresentation" for spec in specs):
            raise UserError("the probe runner cannot evaluate underrepresentation cells (they have no sensitive "
                            "column); run them with grid.runners = ['finetune'].")
        if not Path(backbone.store).expanduser().exists():
            raise UserError(f"the feature store {backbone.store} of backbone {backbone.name!r} does not exist; "
                            f"extract it with `biastransfer extract` or give another `backbones.{backbone.name}.store`.")
        options = probe_options(grid.probe)
        store = FeatureStore.open(backbone.store)
        key = (store.provenance["dataset_name"], store.provenance["manifest_hash"])

        def units(cells):
            return [ProbeUnit(store=str(store.path), specs=tuple(c.spec.to_dict() for c in chunk),
                              cell_ids=tuple(c.cell_id for c in chunk), options=options)
                    for chunk in chunks(cells, grid.chunk_size)]

        common = probe_settings(dict(store.provenance), None, options)
        return Source(meta=store.metadata, key=key, where=f"{key[0]} (store {backbone.store})",
                      location=str(backbone.store), what=f"the store of backbone {backbone.name!r}",
                      recorded=store.provenance["backbone_name"], units=units,
                      settings_of=lambda spec: with_spec(common, spec), group=grid.sensitive)

    def run(self, unit: ProbeUnit, *, in_pool: bool = False) -> list[dict]:
        from analyze.config import RunContext
        from analyze.probe.cells import probe_options as probe_configs
        from analyze.probe.cells import run_probe_cells
        from analyze.subsets import spec_from_dict

        store = open_store(unit.store, os.stat(unit.store).st_mtime_ns)
        specs = [spec_from_dict(d) for d in unit.specs]
        config, evaluation, test_resample = probe_configs(unit.options, "grid [probe]")
        return run_probe_cells(store, specs, config=config.with_(n_jobs=1), evaluation=evaluation,
                               context=RunContext(out=None, overwrite=True, progress=False), test_resample=test_resample)

    def pending(self, unit: ProbeUnit, done: list[bool]):
        return None if all(done) else unit  # a chunk is refitted whole: the same batch, the same numbers

    def stores(self, unit: ProbeUnit) -> tuple[str, ...]:
        return (unit.store,)

    def check_fit(self, record: dict, flag) -> None:
        """Diagnosis flags of how a probe was fitted (:func:`analyze.metrics.diagnosis.diagnose_record`):
        the chosen C at an edge of its grid, a solver that did not converge."""
        from analyze.metrics.diagnosis import at_edge, edge_reason

        hyper = record.get("hyperparameters") or {}
        edge = at_edge(hyper.get("C"), hyper.get("Cs"))
        flag("c_at_edge", edge_reason("C", hyper.get("C"), edge, hyper.get("Cs")))
        if hyper.get("converged") is False:
            flag("not_converged", f"the solver did not converge for C = {hyper.get('C'):g} "
                                  f"({hyper.get('n_iter')} iterations)")


__all__ = ["POLICIES", "SELECT", "ProbeRunner", "ProbeUnit", "open_store", "probe_options"]
