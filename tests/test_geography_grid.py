"""The wr-geography preset: read, validated, and run end to end by `biastransfer sweep` on small stores."""

import json

import numpy as np
import pandas as pd
import pytest

from analyze.cli import main
from analyze.geography.grid import (
    build_geography_grid,
    is_geography_grid,
    load_geography_grid,
)
from analyze.reproduce.findings import geography_finding
from analyze.results import collect
from analyze.sweep.grid import load_grid
from extract.datasets.targets import coco_classes
from extract.errors import UserError
from tests.test_probe_multilabel import CLASSES, domain_data, write_store


def test_preset_is_the_papers_grid(monkeypatch, tmp_path):
    monkeypatch.setenv("BIASTRANSFER_WORK", str(tmp_path))
    assert is_geography_grid("wr-geography") and not is_geography_grid("wr-correlation")
    grid = load_geography_grid("wr-geography")
    assert grid.sources == ("dollarstreet", "coco") and list(grid.classes) == coco_classes() and grid.k == 5
    assert grid.groups == ("income_bucket_", "region_") and grid.test == {"dollarstreet": "unused", "coco": "split"}
    assert grid.shares == tuple(i / 10 for i in range(11)) and grid.n == 128 and grid.size == 165
    assert grid.seeds == (0, 1, 2, 3, 4) and [b.name for b in grid.backbones] == ["geode", "imagenet-det"]
    assert grid.backbones[0].stores["coco"] == str(tmp_path / "stores" / "coco__geode.h5")
    specs = grid.specs()
    assert len(specs) == 55 and {s.pool for s in specs} == {"train"}
    assert grid.reference == "geode" and grid.at_share == 0.1
    swept = load_grid("wr-geography")  # the sweep's loader reads it: a grid whose runner is the domain mix
    assert swept.runners == ("domain_mix",) and swept.experiment == grid
    assert [b.stores for b in swept.backbones] == [b.stores for b in grid.backbones]


@pytest.fixture(scope="module")
def store_paths(tmp_path_factory):
    """Two bases x (dollarstreet, coco): 'near' sees Dollar Street's classes directly, 'far' through a rotation."""
    folder = tmp_path_factory.mktemp("geogrid")
    paths = {}
    for base in ("near", "far"):
        for source, seed, income in (("dollarstreet", 1, True), ("coco", 2, False)):
            x, meta = domain_data(400, seed=seed, shift=0 if source == "dollarstreet" else 4, income=income)
            if base == "far":
                x = (x.astype(np.float32) @ np.random.default_rng(5).normal(size=(x.shape[1],) * 2) * 0.3
                     ).astype(np.float16)
            paths[base, source] = write_store(folder / f"{base}-{source}.h5", x, meta, dataset=source).path
    return paths


def preset_argv(paths, out):
    """The shipped preset with its data-dependent values overridden for the small stores."""
    argv = ["sweep", "wr-geography", "--out", str(out), "--set", f"grid.classes={','.join(CLASSES)}",
            "--set", "grid.k=2", "--set", "subsets.0.shares=0,0.1,0.5,0.9,1", "--set", "subsets.0.size=60",
            "--n", "40", "--seeds", "2", "--set", "probe.Cs=0.1,1"]
    for base, name in (("near", "geode"), ("far", "imagenet-det")):  # the preset's reference base is geode
        argv += ["--set", f"backbones.{name}.base_kind={base}"]
        argv += ["--store", f"{name}.dollarstreet={paths[base, 'dollarstreet']}",
                 "--store", f"{name}.coco={paths[base, 'coco']}"]
    return argv


def test_preset_runs_end_to_end(store_paths, tmp_path, capsys):
    out = tmp_path / "results"
    assert main(preset_argv(store_paths, out) + ["--dry-run"]) == 0
    assert "20 cells (2 bases x 5 shares x 2 seeds at n = 40) checked" in capsys.readouterr().out
    assert not list(out.glob("*.json"))
    assert main(preset_argv(store_paths, out)) == 0
    printed = capsys.readouterr().out
    assert "top2_accuracy_dollarstreet: geode with a share of 0.10 reaches" in printed
    assert f"next: biastransfer reproduce --geography {out}" in printed
    records = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert len(records) == 20 and len(list((out / "_grids").glob("wr-geography-*.json"))) == 1
    dollarstreet = pd.DataFrame(domain_data(400, seed=1, shift=0, income=True)[1])
    coco_test = int((domain_data(400, seed=2, shift=4)[1]["split"] == "test").sum())
    for record in records:
        assert record["test_rows"] == {"dollarstreet": "unused", "coco": "split"}
        rows = record["rows"]
        drawn = rows["dollarstreet"]["train"] + rows["dollarstreet"]["val"]
        # every Dollar Street row the cell did not draw is scored, whatever its split
        assert rows["dollarstreet"]["test"] == len(dollarstreet) - drawn and rows["coco"]["test"] == coco_test
        assert record["sizes"]["n_test"] == len(dollarstreet) - drawn + coco_test
    table = collect(out)
    assert set(zip(table["backbone"], table["base_kind"])) == {("geode", "near"), ("imagenet-det", "far")}
    assert set(table["grid"]) == {"wr-geography"} and (table["n_val"] == 12).all()
    findings = pd.read_csv(out / "findings.csv")
    assert list(findings["metric"]) == ["top2_accuracy_dollarstreet", "macro_ap_coco"]
    assert list(findings["base"]) == ["geode", "imagenet-det"]
    summary = pd.read_csv(out / "summary.csv")
    assert "top2_accuracy_dollarstreet_income_bucket_2" in set(summary["metric"]) and (summary["seeds"] == 2).all()
    # `biastransfer reproduce --geography <the results folder>` reads this folder's findings.csv
    row = geography_finding(out)
    assert row["verdict"] in ("reproduced", "contradicted", "inconclusive") and "top2_accuracy_dollarstreet" in row["reason"]
    # a rerun keeps every record; one scored on other test rows is refitted, never silently kept
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*.json")}
    assert main(preset_argv(store_paths, out)) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.json")} == stamps
    capsys.readouterr()
    assert main(preset_argv(store_paths, out) + ["--set", 'grid.test="split"']) == 0
    assert "20 cells refit: domain_mix.test changed" in capsys.readouterr().out
    assert {json.loads(p.read_text())["test_rows"]["dollarstreet"] for p in out.glob("*.json")} == {"split"}
    assert main(preset_argv(store_paths, out) + ["--backbones", "geode"]) == 0
    assert pd.read_csv(out / "findings.csv").empty
    assert geography_finding(out)["verdict"] == "inconclusive"


def test_split_test_rows_are_never_drawn(store_paths, tmp_path, capsys):
    argv = preset_argv(store_paths, tmp_path / "split") + ["--set", 'grid.test="split"']
    assert main(argv) == 0
    capsys.readouterr()
    tests = int((domain_data(400, seed=1, shift=0, income=True)[1]["split"] == "test").sum())
    assert {json.loads(p.read_text())["rows"]["dollarstreet"]["test"]
            for p in (tmp_path / "split").glob("*.json")} == {tests}
    # drawing from every row would put test rows into finetuning sets: refused
    assert main(argv + ["--set", 'subsets.0.pool="all"', "--out", str(tmp_path / "all")]) == 2
    assert "from its test split (pool='all')" in capsys.readouterr().err


GOOD = {
    "grid": {"kind": "geography", "sources": ["street", "coco"], "classes": ["a", "b", "c"], "k": 2},
    "backbones": [{"name": "x", "base_kind": "geode", "stores": {"street": "s.h5", "coco": "c.h5"}},
                  {"name": "y", "base_kind": "imagenet", "stores": {"street": "s2.h5", "coco": "c2.h5"}}],
    "subsets": [{"kind": "domain_mix", "shares": [0.0, 0.1, 0.9, 1.0], "n": 16, "seeds": 2}],
}


def _with(section, key, value):
    document = json.loads(json.dumps(GOOD))
    if section == "backbones":
        document["backbones"][0][key] = value
    elif section == "subsets":
        document["subsets"][0][key] = value
    else:
        document.setdefault(section, {})[key] = value
    return document


@pytest.mark.parametrize("document, message", [
    (_with("grid", "sources", ["street"]), "must name two different sources"),
    (_with("grid", "colour", 1), "grid key 'colour' in [grid] is unknown"),
    (_with("grid", "classes", "imagenet-objects"), "is not a target set"),
    (_with("grid", "k", 3), "grid.k = 3 must be a whole number from 1 to 2"),
    (_with("grid", "test", {"street": "all"}), "are 'all'; choose one of ['split', 'unused']"),
    (_with("grid", "test", {"mars": "unused"}), "names the source 'mars'"),
    (_with("grid", "reference", "z"), "grid.reference = 'z' is not one of the bases"),
    (_with("grid", "at_share", 0.2), "must both be among the shares"),
    (_with("backbones", "stores", {"street": "s.h5"}), "needs stores = { street = PATH, coco = PATH }"),
    (_with("backbones", "store", "s.h5"), "grid key 'store' in [[backbones]] 'x' is unknown"),
    (_with("subsets", "kind", "correlation"), "takes kind = \"domain_mix\""),
    (_with("subsets", "n", [16, 32]), "must be one whole number of training rows"),
    (_with("subsets", "shares", [0.1, 1.5]), "must list distinct shares in [0, 1]"),
    (_with("subsets", "seeds", 2.5), "is not a count or a list"),
    ({**GOOD, "subsets": GOOD["subsets"] * 2}, "exactly one [[subsets]] block"),
    (_with("probe", "Cs", [0.0]), "must list positive numbers"),
    (_with("grid", "kind", "cells"), "a geography grid says kind = \"geography\""),
])
def test_bad_geography_grids(document, message):
    build_geography_grid(GOOD)  # the base document is valid
    with pytest.raises(UserError) as info:
        build_geography_grid(document)
    assert message in str(info.value)


@pytest.mark.parametrize("extra, message", [
    (["--targets", "hat"], "--targets does not apply to the geography grid"),
    (["--store", "geode=x.h5"], "--store takes NAME.SOURCE=PATH"),
    (["--store", "geode.dollarstreet=/no/such/store.h5"], "the dollarstreet store of base 'geode' (/no/such"),
    (["--store", "geode.dollarstreet=/no/such/store.h5"], "or point --store geode.dollarstreet=PATH at an existing"),
    (["--backbones", "resnet"], "backbone 'resnet' is not in the grid"),
])
def test_bad_sweep_options_on_the_preset(extra, message, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("BIASTRANSFER_WORK", str(tmp_path))
    assert main(["sweep", "wr-geography", "--dry-run", *extra]) == 2
    assert message in capsys.readouterr().err
