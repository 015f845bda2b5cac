"""Finetune cells in a sweep: records with the annotation, and resume by condition."""

import pytest

from analyze.results.collect import collect
from analyze.subsets import Correlation
from analyze.sweep.grid import build_grid
from analyze.sweep.run import sweep
from analyze.sweep.units import FinetuneUnit, ProbeUnit, pending_part

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _grid(cache, **finetune):
    return build_grid({
        "grid": {"name": "ft", "targets": ["hat"], "sensitive": "dark_skin", "runners": ["finetune"]},
        "data": {"dataset": "avatars", "root": str(cache)},
        "backbones": [{"name": "scratch", "base_kind": "scratch", "base": "smallcnn.scratch"}],
        "subsets": [{"kind": "correlation", "levels": [0.0, 1.0], "n": [40], "seeds": [0, 1]}],
        "finetune": {"lrs": [0.05], "weight_decays": [0.0001], "epochs": 1, "batch_size": 32,
                     "conditions_per_task": 2, **finetune},
    })


def test_finetune_sweep_writes_annotated_records_and_resumes_by_condition(avatar_cache, tmp_path):
    summary = sweep(_grid(avatar_cache), out=tmp_path, progress=False)
    assert list(summary["status"]) == ["written"] * 4
    table = collect(tmp_path)
    assert (table["runner"] == "finetune").all() and (table["base_kind"] == "scratch").all()
    assert (table["lr"] == 0.05).all() and table["C"].isna().all() and (table["n_train"] == 40).all()
    assert table["natural_level"].notna().all() and table["auc"].between(0, 1).all()
    level_one = sorted(tmp_path.glob("*level1.0*seed1*.json"))
    assert len(level_one) == 1
    level_one[0].unlink()
    summary = sweep(_grid(avatar_cache), out=tmp_path, progress=False)
    written = summary[summary["status"] == "written"]
    assert len(written) == 2 and all("level1.0" in c for c in written["cell_id"])  # only that condition reran
    assert len(collect(tmp_path)) == 4


def test_pending_part():
    specs = tuple(Correlation("hat", "s", lv, n=8, seed=s).to_dict() for lv in (0.0, 1.0) for s in (0, 1))
    ids = ("a0", "a1", "b0", "b1")
    unit = FinetuneUnit(dataset="d", root="r", adapter_options={}, base="b", weights=None, specs=specs, cell_ids=ids)
    assert pending_part(unit, [True] * 4) is None
    assert pending_part(unit, [True, True, False, True]).cell_ids == ("b0", "b1")
    first = FinetuneUnit(**{**vars(unit), "options": {"search": "first"}})
    assert pending_part(first, [True, True, False, True]) is first
    probe = ProbeUnit(store="x", specs=specs, cell_ids=ids)
    assert pending_part(probe, [True, False, True, True]) is probe
