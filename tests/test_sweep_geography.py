"""A geography grid runs through the sweep: its loader, the domain-mix runner, the same numbers as a direct fit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analyze.probe.multilabel import DomainMixConfig, run_domain_mix_cells
from analyze.results.records import read_record
from analyze.subsets import spec_from_dict
from analyze.sweep import sweep
from analyze.sweep.grid import build_grid
from analyze.sweep.units import plan_sweep
from extract.store.reader import FeatureStore
from tests.test_probe_multilabel import CLASSES, domain_data, write_store


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweepgeo")
    paths = {}
    for base, turn in (("near", None), ("far", 5)):
        for source, seed, income in (("street", 1, True), ("coco", 2, False)):
            x, meta = domain_data(300, seed=seed, shift=0 if source == "street" else 4, income=income)
            if turn is not None:
                x = (x.astype(np.float32) @ np.random.default_rng(turn).normal(size=(x.shape[1],) * 2) * 0.3
                     ).astype(np.float16)
            paths[base, source] = str(write_store(folder / f"{base}-{source}.h5", x, meta, dataset=source).path)
    return paths


def document(paths) -> dict:
    return {"grid": {"kind": "geography", "name": "mini-geo", "sources": ["street", "coco"], "classes": CLASSES,
                     "k": 2, "test": {"street": "unused"}, "reference": "near"},
            "backbones": [{"name": b, "base_kind": b, "stores": {s: paths[b, s] for s in ("street", "coco")}}
                          for b in ("near", "far")],
            "subsets": [{"kind": "domain_mix", "shares": [0.0, 0.1, 0.9, 1.0], "n": 30, "size": 50, "seeds": 2}],
            "probe": {"Cs": [0.1, 1.0]}}


def test_the_plan_is_the_domain_mix_runners(stores):
    grid = build_grid(document(stores))
    assert grid.runners == ("domain_mix",) and grid.experiment.name == "mini-geo"
    plan = plan_sweep(grid)
    assert len(plan.cells) == 2 * 4 * 2 and {c.runner for c in plan.cells} == {"domain_mix"}
    # one unit per base and share (its seeds fitted in one engine call)
    assert len(plan.units) == 2 * 4 and all(u.runner == "domain_mix" and len(u.specs) == 2 for u in plan.units)
    assert all(plan.settings[c]["domain_mix"]["test"] == {"street": "unused", "coco": "split"} for c in plan.settings)


def test_a_geography_grid_through_sweep_gives_the_direct_fits_numbers(stores, tmp_path):
    grid = build_grid(document(stores))
    summary = sweep(grid, out=tmp_path, progress=False)
    assert len(summary) == 16 and set(summary["status"]) == {"written"} and set(summary["runner"]) == {"domain_mix"}
    assert len(list((tmp_path / "_grids").glob("mini-geo-*.json"))) == 1
    records = {p.stem: read_record(p) for p in tmp_path.glob("*.json")}
    assert len(records) == 16
    config = DomainMixConfig(tuple(CLASSES), k=2, test={"street": "unused"}, Cs=(0.1, 1.0))
    for base in ("near", "far"):
        opened = {s: FeatureStore.open(stores[base, s]) for s in ("street", "coco")}
        mine = [r for r in records.values() if r["backbone"] == base]
        for share in (0.0, 0.1, 0.9, 1.0):  # the sweep's batches: the seeds of one share
            batch = sorted((r for r in mine if r["spec"]["share"] == share), key=lambda r: r["spec"]["seed"])
            direct = run_domain_mix_cells(opened, [spec_from_dict(r["spec"]) for r in batch], config,
                                          skip_existing=False, backbone=base)
            for swept, fitted in zip(batch, direct):
                assert swept["cell_id"] == fitted["cell_id"]
                assert json.dumps(swept["metrics"], sort_keys=True) == json.dumps(fitted["metrics"], sort_keys=True)
                assert swept["sweep"]["base_kind"] == base and swept["settings_digest"]
    again = sweep(grid, out=tmp_path, progress=False)  # resumes: every record is kept
    assert set(again["status"]) == {"skipped"}
