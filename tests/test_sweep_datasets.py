"""One dataset per comparison: a sweep whose stores hold different datasets for the same cells is refused.

Stores of avatars seed 0 and seed 1 (the same 600 ids, other images and labels), or of a
dataset whose rows were shuffled, carry different manifest hashes; comparing bases on them
would measure the data as much as the pretraining. Unless the grid says so
(``grid.cross_dataset = true``, then the report states it), the sweep refuses before it fits.
"""

import shutil

import h5py
import numpy as np
import pytest

import analyze.cli
from analyze.report.build import cross_dataset_note, sweep_summary
from analyze.results.collect import collect
from analyze.sweep.grid import build_grid
from analyze.sweep.run import sweep
from extract.backbones import create_backbone
from extract.datasets.avatars import AvatarAdapter, RenderSpec, render_dataset
from extract.errors import UserError
from extract.extraction import ExtractOptions, extract_features
from extract.store.reader import FeatureStore

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _extract(cache, out, name="smallcnn_w32.scratch"):
    extract_features(AvatarAdapter(cache), create_backbone(name, image_size=32), out, options=ExtractOptions(batch_size=128, device="cpu", progress=False))
    return FeatureStore.open(out)


@pytest.fixture(scope="module")
def same_data_store(avatar_cache, tmp_path_factory):
    """The session's avatars (seed 0) through another backbone: the same dataset as ``avatar_store``."""
    return _extract(avatar_cache, tmp_path_factory.mktemp("same") / "avatars__w32.h5")


@pytest.fixture(scope="module")
def seed1_store(tmp_path_factory):
    """600 avatars of seed 1: the same image ids as the session's cache, other images and labels."""
    folder = tmp_path_factory.mktemp("seed1")
    cache = render_dataset(folder / "avatars-600-32px-seed1.h5", spec=RenderSpec(n=600, size=32, seed=1, signal_sample=4), workers=1, progress=False)
    return _extract(cache, folder / "avatars-seed1__w32.h5")


@pytest.fixture(scope="module")
def shuffled_store(same_data_store, tmp_path_factory):
    """``same_data_store`` as a store of the dataset with its rows shuffled would be: every row
    array permuted, and the manifest hash (which covers the row order) of the shuffled table."""
    from extract.datasets.base import hash_frame

    out = tmp_path_factory.mktemp("shuffled") / "shuffled__w32.h5"
    shutil.copyfile(same_data_store.path, out)
    order = np.random.default_rng(0).permutation(same_data_store.n_rows)
    with h5py.File(out, "r+") as h5:
        for key in ["features", "image_id", "split", *(f"attributes/{a}" for a in same_data_store.attributes)]:
            h5[key][...] = h5[key][...][order]
        h5.attrs["manifest_hash"] = hash_frame(same_data_store.metadata.iloc[order].reset_index(drop=True))
    return FeatureStore.open(out)


def _grid(first, second, **head):
    return build_grid({
        "grid": {"name": "two", "targets": ["hat"], "sensitive": "dark_skin", "runners": ["probe"], **head},
        "backbones": [{"name": "biased", "base_kind": "biased", "store": str(first)},
                      {"name": "control", "base_kind": "control", "store": str(second)}],
        "subsets": [{"kind": "correlation", "levels": [0.0, 1.0], "n": [40], "seeds": [0]}],
        "probe": {"Cs": [0.1, 1.0]},
    })


def _short(store) -> str:
    return f"avatars {store.provenance['manifest_hash'][:12]}"


def test_stores_of_two_datasets_with_the_same_ids_are_refused(avatar_store, seed1_store, tmp_path):
    assert list(seed1_store.metadata["image_id"]) == list(avatar_store.metadata["image_id"])  # same ids
    with pytest.raises(UserError) as info:
        sweep(_grid(avatar_store.path, seed1_store.path), out=tmp_path, progress=False)
    message = str(info.value)
    assert message.startswith(f"the store of backbone 'biased' ({avatar_store.path}) holds {_short(avatar_store)} "
                              f"but the store of backbone 'control' ({seed1_store.path}) holds {_short(seed1_store)}")
    assert "the same image ids with different labels" in message and "grid.cross_dataset = true" in message
    assert "\n" not in message and message.endswith(".")
    assert not tmp_path.exists() or not list(tmp_path.glob("*.json"))  # refused before anything was fitted


def test_a_store_of_shuffled_rows_is_refused(avatar_store, shuffled_store, tmp_path):
    with pytest.raises(UserError, match=r"holds avatars \w{12}, the same image ids in another row order"):
        sweep(_grid(avatar_store.path, shuffled_store.path), out=tmp_path, progress=False, dry_run=True)


def test_stores_of_one_dataset_pass(avatar_store, same_data_store, tmp_path):
    summary = sweep(_grid(avatar_store.path, same_data_store.path), out=tmp_path, progress=False)
    assert set(summary["status"]) == {"written"}
    table = collect(tmp_path)
    assert table["dataset_hash"].nunique() == 1 and not table["cross_dataset"].any()
    rows = dict(sweep_summary(table).rows)
    assert rows["datasets (manifest digest)"] == f"avatars ({avatar_store.provenance['manifest_hash'][:12]})"
    assert "compared across datasets" not in rows and cross_dataset_note(table) is None


def test_probe_stores_and_finetune_data_of_two_datasets_are_refused(avatar_cache, seed1_store, tmp_path):
    grid = build_grid({
        "grid": {"name": "both", "targets": ["hat"], "sensitive": "dark_skin", "runners": ["probe", "finetune"]},
        "data": {"dataset": "avatars", "root": str(avatar_cache)},
        "backbones": [{"name": "scratch", "base_kind": "scratch", "store": str(seed1_store.path),
                       "base": "smallcnn_w32.scratch"}],
        "subsets": [{"kind": "correlation", "levels": [1.0], "n": [40], "seeds": [0]}],
        "finetune": {"epochs": 1},
    })
    with pytest.raises(UserError, match=r"^the store of backbone 'scratch' .* but the finetune data of backbone "
                                        r"'scratch' \(.*\) holds avatars \w{12}, the same image ids"):
        sweep(grid, out=tmp_path, progress=False, dry_run=True)


def test_a_grid_that_says_so_compares_across_datasets(avatar_store, seed1_store, tmp_path, capsys):
    summary = sweep(_grid(avatar_store.path, seed1_store.path, cross_dataset=True), out=tmp_path, progress=False)
    assert set(summary["status"]) == {"written"}
    table = collect(tmp_path)
    assert table["cross_dataset"].all() and table["dataset_hash"].nunique() == 2
    rows = dict(sweep_summary(table).rows)
    listed = rows["datasets (manifest digest)"]
    assert f"avatars ({avatar_store.provenance['manifest_hash'][:12]})" in listed
    assert f"avatars ({seed1_store.provenance['manifest_hash'][:12]})" in listed
    assert rows["compared across datasets"] == "yes (grid.cross_dataset = true)"
    assert cross_dataset_note(table).startswith("The bases are compared across datasets (avatars (")
    # a table that mixes datasets without a grid saying so is flagged, not passed off as one dataset
    table["cross_dataset"] = False
    assert dict(sweep_summary(table).rows)["compared across datasets"] == "mixed datasets, not declared by a grid"


def test_the_cli_refuses_and_accepts_the_grid_key(avatar_store, seed1_store, tmp_path, capsys):
    grid = tmp_path / "two.toml"
    grid.write_text(f"""
[grid]
name = "two"
targets = ["hat"]
sensitive = "dark_skin"

[[backbones]]
name = "biased"
base_kind = "biased"
store = "{avatar_store.path}"

[[backbones]]
name = "control"
base_kind = "control"
store = "{seed1_store.path}"

[[subsets]]
kind = "correlation"
levels = [1.0]
n = [40]
""")
    main = analyze.cli.main
    assert main(["sweep", str(grid), "--out", str(tmp_path / "r"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("holds avatars") == 2 and "grid.cross_dataset = true" in err
    assert main(["sweep", str(grid), "--out", str(tmp_path / "r"), "--dry-run", "--set", "grid.cross_dataset=true"]) == 0
    assert "the bases are compared across datasets" in capsys.readouterr().out
    assert main(["sweep", str(grid), "--dry-run", "--set", "grid.cross_dataset=yes"]) == 2
    assert "grid.cross_dataset must be true or false" in capsys.readouterr().err
