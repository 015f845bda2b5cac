"""Probe results of a toolkit checkpoint get its role as base_kind, so effects needs no --base-kind."""

from __future__ import annotations

import pytest

from analyze.effects.models import with_base_kind
from analyze.config import RunContext
from analyze.probe import ProbeConfig
from analyze.probe.cells import run_probe_cells
from analyze.results.collect import collect
from analyze.results.records import read_record
from analyze.subsets import Correlation
from extract.backbones import create_backbone
from extract.datasets.avatars import AvatarAdapter
from extract.extraction import ExtractOptions, extract_features
from extract.pretrain.train import write_scratch_base
from extract.store.reader import FeatureStore

pytestmark = pytest.mark.usefixtures("one_torch_thread_per_module")


@pytest.fixture(scope="module")
def control_store(avatar_cache, tmp_path_factory):
    folder = tmp_path_factory.mktemp("role_store")
    base = write_scratch_base(folder / "ctrl.pt", arch="smallcnn", arch_kwargs={"width": 4}, image_size=32, seed=3,
                              name="ctrl", meta={"role": "control"})
    out = folder / "avatars__ctrl.h5"
    extract_features(AvatarAdapter(avatar_cache), create_backbone(base), out, options=ExtractOptions(batch_size=200, device="cpu", progress=False))
    return FeatureStore.open(out)


def test_probe_records_and_the_table_name_the_checkpoint_role(control_store, tmp_path):
    specs = [Correlation("hat", "dark_skin", level, n=40, seed=0) for level in (0.0, 1.0)]
    run_probe_cells(control_store, specs, context=RunContext(out=tmp_path, progress=False), config=ProbeConfig(Cs=[1.0]))
    records = [read_record(p) for p in sorted(tmp_path.glob("*.json"))]
    assert [r["backbone_config"]["checkpoint_meta"]["role"] for r in records] == ["control", "control"]
    table = collect(tmp_path)
    assert list(table["base_kind"]) == ["control", "control"]
    assert list(with_base_kind(table)["base_kind"]) == ["control", "control"]  # effects asks for no --base-kind


def test_a_registered_backbone_has_no_role(avatar_store, tmp_path):
    run_probe_cells(avatar_store, [Correlation("hat", "dark_skin", 0.5, n=40, seed=0)], context=RunContext(out=tmp_path, progress=False), config=ProbeConfig(Cs=[1.0]))
    record = read_record(next(tmp_path.glob("*.json")))
    assert "checkpoint_meta" not in record["backbone_config"]
    assert collect(tmp_path)["base_kind"].isna().all()
