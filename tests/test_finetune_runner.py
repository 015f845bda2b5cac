"""The full-finetune runner on a tiny avatar cache: records, determinism, skipping, saved
backbones, bad input, and the CLI verb."""

import argparse
import json

import numpy as np
import pytest
import torch

from analyze.cli.finetune import register
from analyze.finetune.data import check_forward
from analyze.config import RunContext
from analyze.finetune.runner import FinetuneConfig, FinetuneOptions, finetune_cells, group_conditions
from analyze.probe.cells import natural_direction
from analyze.results.records import cell_id, read_record
from analyze.subsets import Correlation, Natural, TestResample, Underrepresentation
from extract.backbones import Backbone, Preprocess, create_backbone, save_checkpoint
from extract.datasets.avatars import AvatarAdapter, RenderSpec, render_dataset
from extract.errors import UserError
from extract.models.smallcnn import SmallCNN

N, SIZE = 400, 32
TINY = FinetuneConfig(lrs=(0.05, 0.01), weight_decays=(1e-4,), epochs=2, batch_size=32)
QUIET = RunContext(progress=False)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    path = render_dataset(tmp_path_factory.mktemp("avatars") / "a.h5", spec=RenderSpec(n=N, size=SIZE, seed=1, preset="balanced", signal_sample=2), workers=1, progress=False)
    return AvatarAdapter(path)


def _tiny_base(folder, *, size=SIZE, seed=0):
    """A 'pretrained' checkpoint: a width-4 SmallCNN (fast) saved like `biastransfer pretrain` would."""
    torch.manual_seed(seed)
    pre = Preprocess(resize=size, crop=size, mean=(0.5,) * 3, std=(0.5,) * 3)
    return save_checkpoint(folder / f"tiny{size}.pt", SmallCNN(width=4), arch="smallcnn", arch_kwargs={"width": 4},
                           preprocess=pre, meta={"name": "tiny", "seed": seed})


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return _tiny_base(tmp_path_factory.mktemp("base"))


def _specs(levels=(0.0, 1.0), seeds=(0, 1), n=60):
    return [Correlation("hat", "dark_skin", c, n=n, seed=s) for c in levels for s in seeds]


def test_records_are_written_readable_and_skipped_on_rerun(adapter, base, tmp_path):
    table = finetune_cells(_specs(), adapter=adapter, base=base, config=TINY, context=RunContext(out=tmp_path, progress=False))
    assert list(table["status"]) == ["written"] * 4
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == 4
    record = read_record(tmp_path / f"{table['cell_id'][0]}.json")
    assert record["runner"] == "finetune" and record["spec"] == _specs()[0].to_dict()
    assert record["cell_id"] == cell_id(runner="finetune", backbone=str(base), spec=_specs()[0].to_dict())
    metrics = record["metrics"]
    assert 0 <= metrics["auc"] <= 1 and "fpr_gap_stereotype" in metrics and "fpr_group1" in metrics
    hyper = record["hyperparameters"]
    assert (hyper["lr"], hyper["weight_decay"]) in {(0.05, 1e-4), (0.01, 1e-4)}
    assert 1 <= hyper["best_epoch"] <= 2 and len(hyper["grid_summary"]) == 2
    # the chosen setting is the grid point with the lowest mean validation loss
    best = min(hyper["grid_summary"], key=lambda row: row["mean_val_loss"])
    assert (best["lr"], best["weight_decay"]) == (hyper["lr"], hyper["weight_decay"])
    assert record["sizes"]["n_train"] == 60
    assert record["sizes"]["n_test"] == int((adapter.metadata()["split"] == "test").sum())
    # the sign follows the target's natural direction on the train split (as the probe runner's), not the level
    natural = natural_direction(adapter.metadata(), "hat", "dark_skin")[1]
    assert record["finetune"]["over_represented_group"] == natural
    assert record["finetune"]["direction_source"] == "natural (train split)"
    timings = record["timings"]
    assert timings["overhead_s"] >= 0 and timings["search_train_s"] >= timings["train_s"] > 0
    again = finetune_cells(_specs(), adapter=adapter, base=base, config=TINY, context=RunContext(out=tmp_path, progress=False))
    assert list(again["status"]) == ["skipped"] * 4
    redo = finetune_cells(_specs()[:2], adapter=adapter, base=base, config=TINY,
                          context=RunContext(out=tmp_path, progress=False, overwrite=True))
    assert list(redo["status"]) == ["written"] * 2


def test_same_seed_same_results_other_seed_differs(adapter, base):
    specs = [Correlation("hat", "dark_skin", 1.0, n=60, seed=s) for s in (0, 1)]
    config = FinetuneConfig(lrs=(0.05,), weight_decays=(1e-4,), epochs=2, batch_size=32)
    first = finetune_cells(specs, adapter=adapter, base=base, config=config, context=QUIET)
    second = finetune_cells(specs, adapter=adapter, base=base, config=config, context=QUIET)
    columns = ["auc", "fpr_gap_stereotype", "best_epoch"]
    assert first[columns].equals(second[columns])
    assert first["auc"][0] != first["auc"][1]


def test_balanced_level_uses_the_natural_direction(adapter, base, tmp_path):
    finetune_cells([Correlation("hat", "dark_skin", 0.5, n=60, seed=0)], adapter=adapter, base=base,
                   config=FinetuneConfig(lrs=(0.05,), weight_decays=(0.0,), epochs=1),
                   context=RunContext(out=tmp_path, progress=False),
                   options=FinetuneOptions(test=TestResample("hat", "dark_skin", level=0.5)))
    record = read_record(next(tmp_path.glob("*.json")))
    assert record["finetune"]["direction_source"] in ("natural (train split)", "none")
    assert record["sizes"]["n_test"] == len(TestResample("hat", "dark_skin", level=0.5).indices(adapter.metadata()))


def test_saved_backbones_load_and_record_their_condition(adapter, base, tmp_path):
    spec = Correlation("eyewear", "dark_skin", 1.0, n=60, seed=3)
    table = finetune_cells([spec], adapter=adapter, base=base, config=FinetuneConfig(lrs=(0.05,), weight_decays=(0.0,),
                           epochs=1, freeze=1), options=FinetuneOptions(save_backbones=tmp_path / "bb"), context=QUIET)
    path = tmp_path / "bb" / f"{table['cell_id'][0]}.pt"
    loaded = create_backbone(path)
    meta = loaded.extra["checkpoint_meta"]
    assert meta["base"] == str(base) and meta["condition"] == spec.to_dict() and meta["seed"] == 3
    assert meta["hyperparameters"]["lr"] == 0.05 and meta["hyperparameters"]["freeze"] == 1
    original = create_backbone(base)
    x = torch.rand(4, 3, SIZE, SIZE)
    with torch.no_grad():
        assert loaded.model(x).shape == (4, 4 * 8)
        # stem and stage 1 were frozen (identical); the rest was finetuned (changed)
        assert torch.equal(loaded.model.stem[0].weight, original.model.stem[0].weight)
        assert torch.equal(loaded.model.stages[0].bn1.running_mean, original.model.stages[0].bn1.running_mean)
        assert not torch.equal(loaded.model.stages[3].conv1.weight, original.model.stages[3].conv1.weight)


def test_random_init_base_adopts_the_native_size_and_each_seed_inits(adapter):
    table = finetune_cells([Correlation("hat", "dark_skin", 1.0, n=40, seed=s) for s in (0, 1)], adapter=adapter,
                           base="smallcnn.scratch", config=FinetuneConfig(lrs=(0.01,), weight_decays=(0.0,), epochs=1),
                           context=QUIET)
    assert len(table) == 2 and table["auc"].between(0, 1).all()


def test_bad_input_is_one_clear_sentence(adapter, base, tmp_path):
    big = _tiny_base(tmp_path, size=64)
    with pytest.raises(UserError, match="64 px .* 32 px.*pass `image_size`"):
        finetune_cells(_specs(), adapter=adapter, base=big, config=TINY, context=QUIET)
    too_small = Backbone("k16", torch.nn.Sequential(torch.nn.Conv2d(3, 4, 16), torch.nn.Flatten()),
                         Preprocess(resize=8, crop=8), feature_dim=4)
    with pytest.raises(UserError, match="cannot take 8 px"):
        check_forward(too_small)
    no_group = Underrepresentation("hat", "eyewear", 0.5, n=40, seed=0)  # has no sensitive attribute
    with pytest.raises(UserError, match="sensitive"):
        finetune_cells([no_group], adapter=adapter, base=base, config=TINY, context=QUIET)
    with pytest.raises(UserError, match="repeat seed"):
        group_conditions([_specs()[0], _specs()[0]])
    with pytest.raises(UserError, match="no cells"):
        finetune_cells([], adapter=adapter, base=base, config=TINY, context=QUIET)
    with pytest.raises(UserError, match="search"):
        finetune_cells(_specs(), adapter=adapter, base=base, config=TINY, options=FinetuneOptions(search="never"),
                       context=QUIET)


def test_constant_label_is_rejected(adapter, base):
    class ConstantHat(AvatarAdapter):
        def metadata(self):
            meta = super().metadata().copy()
            meta["hat"] = np.int8(1)
            return meta

    with pytest.raises(UserError, match="constant"):
        finetune_cells([Natural("hat", "dark_skin", n=40, seed=0)], adapter=ConstantHat(adapter.root), base=base,
                       config=TINY, context=QUIET)


def test_base_whose_input_size_differs_from_the_images_is_rejected(adapter, tmp_path):
    wide = _tiny_base(tmp_path, size=2 * SIZE)
    with pytest.raises(UserError, match=rf"takes {2 * SIZE} px inputs but the dataset's images are {SIZE} px"):
        finetune_cells(_specs(levels=(0.5,), seeds=(0,)), adapter=adapter, base=wide, config=TINY, context=QUIET)


def test_grid_with_no_valid_setting_is_rejected(adapter, base):
    exploding = FinetuneConfig(lrs=(1e12,), weight_decays=(0.0,), epochs=1, batch_size=32)
    with pytest.raises(UserError, match="no setting of the 1-point learning-rate x weight-decay grid trained"):
        finetune_cells(_specs(levels=(0.5,), seeds=(0,)), adapter=adapter, base=base, config=exploding,
                       context=QUIET)


def test_cli_verb_writes_one_record_per_cell(adapter, base, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["finetune", "--dataset", "avatars", "--root", str(adapter.root), "--base", str(base),
                              "--target", "hat", "--sensitive", "dark_skin", "--levels", "0.0,1.0", "--n", "40",
                              "--seeds", "0", "--epochs", "1", "--lrs", "0.05", "--weight-decays", "0",
                              "--out", str(tmp_path), "--no-progress", "--test", "natural"])
    assert args.func(args) == 0
    assert len(list(tmp_path.glob("*.json"))) == 2
    printed = capsys.readouterr().out
    assert "cells/min" in printed and "overhead" in printed
    record = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert record["hyperparameters"]["epochs"] == 1 and record["runner"] == "finetune"
