"""Recipes: a tiny set of biased, control and scratch bases; resume; disjoint caches; CLI."""

import argparse
import copy
import json
import shutil

import numpy as np
import pytest

from extract.backbones import create_backbone
from extract.cli.pretrain import register
from extract.datasets.avatars import AvatarAdapter, RenderSpec, render_dataset
from extract.errors import UserError
from extract.pretrain.recipe import check_recipe, load_recipe, run_recipe, shared_images

RECIPE_FILE = "data/recipes/avatars-bases.toml"
TINY = {
    "data": {"dataset": "avatars", "cache": "pretrain-tiny.h5", "n": 120, "size": 32, "seed": 11,
             "preset": "independent", "signal_sample": 1, "disjoint_from": ["avatars-*.h5"]},
    "model": {"arch": "smallcnn", "arch_kwargs": {"width": 4}, "image_size": 32},
    "train": {"epochs": 1, "batch_size": 32, "lr": 0.05, "weight_decay": 5e-4, "val_fraction": 0.2, "seed": 0,
              "max_control_phi": 0.25},
    "bases": [
        {"name": "tiny-biased-dark_skin", "role": "biased", "attributes": ["dark_skin"]},
        {"name": "tiny-control-hat", "role": "control", "attributes": ["hat"]},
        {"name": "tiny-scratch", "role": "scratch"},
    ],
}


pytestmark = pytest.mark.usefixtures("one_torch_thread_per_module")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cache_dir = tmp_path_factory.mktemp("caches")
    finetune = render_dataset(cache_dir / "avatars-40-32px-seed12.h5", spec=RenderSpec(n=40, size=32, seed=12, signal_sample=1), workers=1, progress=False)
    out_dir = tmp_path_factory.mktemp("bases")
    paths = run_recipe(TINY, out_dir=out_dir, cache_dir=cache_dir, workers=1, device="cpu", progress=False)
    return {"paths": paths, "out_dir": out_dir, "cache_dir": cache_dir, "finetune": finetune}


def test_the_shipped_recipe_defines_biased_controls_and_scratch():
    recipe = load_recipe(RECIPE_FILE)
    roles = [b["role"] for b in recipe["bases"]]
    assert roles.count("biased") == 1 and roles.count("control") >= 2 and roles.count("scratch") == 1
    biased = next(b for b in recipe["bases"] if b["role"] == "biased")
    assert biased["attributes"] == ["dark_skin"]
    assert recipe["data"]["cache"].startswith("pretrain-") and recipe["data"]["seed"] != 0
    assert recipe["data"]["preset"] == "independent" and recipe["data"]["disjoint_from"] == ["avatars-*.h5"]


def test_recipe_writes_loadable_bases_sharing_data_and_init(built):
    paths = built["paths"]
    assert list(paths) == ["tiny-biased-dark_skin", "tiny-control-hat", "tiny-scratch"]
    metas = {name: create_backbone(path).extra["checkpoint_meta"] for name, path in paths.items()}
    biased, control, scratch = metas.values()
    assert biased["role"] == "biased" and biased["attributes"] == ["dark_skin"]
    assert control["role"] == "control" and control["attributes"] == ["hat"]
    assert scratch["kind"] == "scratch" and scratch["seed"] == 0
    # same data, architecture and recipe; only the label differs
    assert biased["data_hash"] == control["data_hash"]
    strip = lambda c: {k: v for k, v in c.items() if k != "attributes"}  # noqa: E731
    assert strip(biased["config"]) == strip(control["config"])
    pretraining = AvatarAdapter(built["cache_dir"] / "pretrain-tiny.h5")
    assert biased["pretraining_cache"]["manifest_hash"] == pretraining.manifest_hash() == biased["data"]["manifest_hash"]
    finetune = AvatarAdapter(built["finetune"])
    assert biased["disjoint_from"] == [{"path": str(built["finetune"]), "manifest_hash": finetune.manifest_hash(),
                                        "shared_images": 0}]
    summary = json.loads((built["out_dir"] / "bases.json").read_text())
    assert [b["name"] for b in summary["bases"]] == list(paths) and not any(b["skipped"] for b in summary["bases"])


def test_rerun_skips_existing_and_detects_a_changed_recipe(built):
    before = {name: path.stat().st_mtime_ns for name, path in built["paths"].items()}
    run_recipe(TINY, out_dir=built["out_dir"], cache_dir=built["cache_dir"], device="cpu", progress=False)
    assert {name: path.stat().st_mtime_ns for name, path in built["paths"].items()} == before
    summary = json.loads((built["out_dir"] / "bases.json").read_text())
    assert all(b["skipped"] for b in summary["bases"])
    changed = copy.deepcopy(TINY)
    changed["train"]["lr"] = 0.01
    with pytest.raises(UserError, match="different recipe entry"):
        run_recipe(changed, out_dir=built["out_dir"], cache_dir=built["cache_dir"], device="cpu", progress=False)
    other = copy.deepcopy(TINY)
    other["data"]["n"] = 100
    with pytest.raises(UserError, match="other settings"):
        run_recipe(other, out_dir=built["out_dir"], cache_dir=built["cache_dir"], device="cpu", progress=False)


def test_shared_images_are_found_and_refused(built, tmp_path):
    pretraining = built["cache_dir"] / "pretrain-tiny.h5"
    assert shared_images(pretraining, built["finetune"]) == 0
    assert shared_images(pretraining, pretraining) == 120
    cache_dir = tmp_path / "caches"
    cache_dir.mkdir()
    shutil.copy(pretraining, cache_dir / "pretrain-tiny.h5")
    shutil.copy(pretraining, cache_dir / "avatars-same-seed.h5")  # a finetuning cache with the pretraining images
    with pytest.raises(UserError, match="shares 120 image"):
        run_recipe(TINY, out_dir=tmp_path / "bases", cache_dir=cache_dir, device="cpu", progress=False)


def test_recipe_checks(tmp_path):
    def bad(edit, fragment):
        recipe = copy.deepcopy(TINY)
        edit(recipe)
        with pytest.raises(UserError, match=fragment):
            check_recipe(recipe)

    bad(lambda r: r["train"].update(momentum=0.5), "unknown key")
    bad(lambda r: r["bases"][0].update(role="gendered"), "role")
    bad(lambda r: r["bases"][1].update(name="../escape"), "plain file name")
    bad(lambda r: r["bases"][2].update(attributes=["hat"]), "scratch base")
    bad(lambda r: r["bases"].append(dict(r["bases"][0])), "repeats a base name")
    bad(lambda r: r.update(extra={}), "unknown section")
    bad(lambda r: r.update(bases=[]), "no")
    (tmp_path / "broken.toml").write_text("[data\n")
    with pytest.raises(UserError, match="not valid TOML"):
        load_recipe(tmp_path / "broken.toml")
    with pytest.raises(UserError, match="does not exist"):
        load_recipe(tmp_path / "missing.toml")


def test_roles_are_checked_against_the_sensitive_attribute(built, tmp_path):
    wrong = copy.deepcopy(TINY)
    wrong["bases"] = [{"name": "b", "role": "biased", "attributes": ["hat"]}]
    with pytest.raises(UserError, match="sensitive attribute"):
        run_recipe(wrong, out_dir=tmp_path, cache_dir=built["cache_dir"], device="cpu", progress=False)
    correlated = copy.deepcopy(TINY)  # celeba-like: blond_hair is strongly (negatively) tied to dark_skin
    correlated["data"].update(cache="pretrain-celeba-like.h5", preset="celeba-like", n=80, disjoint_from=[])
    correlated["bases"] = [{"name": "c", "role": "control", "attributes": ["blond_hair"]}]
    with pytest.raises(UserError, match=r"phi .*; pick another control attribute, or render the avatar cache with "
                                        r"the 'independent' preset"):  # only avatar caches have presets
        run_recipe(correlated, out_dir=tmp_path, cache_dir=tmp_path, device="cpu", progress=False)


def _cli(argv):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_single_base_and_errors(built, tmp_path, capsys):
    cache = built["cache_dir"] / "pretrain-tiny.h5"
    out = tmp_path / "cli.pt"
    assert _cli(["pretrain", "--dataset", "avatars", "--root", str(cache), "--attribute", "dark_skin",
                 "--attribute", "hat", "--out", str(out), "--epochs", "1", "--batch-size", "32",
                 "--arch-kwargs", '{"width": 4}', "--split", "train", "--device", "cpu"]) == 0
    meta = create_backbone(out).extra["checkpoint_meta"]
    train_rows = np.flatnonzero(AvatarAdapter(cache).metadata()["split"].to_numpy() == "train")
    assert meta["attributes"] == ["dark_skin", "hat"] and meta["data"]["n_rows"] == len(train_rows)
    assert meta["name"] == "cli" and "wrote" in capsys.readouterr().out
    with pytest.raises(UserError, match="exists"):
        _cli(["pretrain", "--dataset", "avatars", "--root", str(cache), "--attribute", "hat", "--out", str(out)])
    with pytest.raises(UserError, match="not JSON"):
        _cli(["pretrain", "--scratch", "--out", str(tmp_path / "s.pt"), "--arch-kwargs", "{width: 4}"])
    with pytest.raises(UserError, match="--image-size"):
        _cli(["pretrain", "--scratch", "--out", str(tmp_path / "s.pt")])
    with pytest.raises(UserError, match="--attribute"):
        _cli(["pretrain", "--dataset", "avatars", "--root", str(cache), "--out", str(tmp_path / "x.pt")])
    assert _cli(["pretrain", "--scratch", "--out", str(tmp_path / "s.pt"), "--image-size", "32", "--seed", "2"]) == 0
    assert create_backbone(tmp_path / "s.pt").extra["checkpoint_meta"]["kind"] == "scratch"


def test_cli_recipe_mode_reports_kept_bases(built, capsys):
    recipe = built["out_dir"].parent / "tiny.toml"
    lines = ["[data]", *[f"{k} = {json.dumps(v)}" for k, v in TINY["data"].items()], "[model]",
             'arch = "smallcnn"', "arch_kwargs = { width = 4 }", "image_size = 32", "[train]",
             *[f"{k} = {json.dumps(v)}" for k, v in TINY["train"].items()]]
    for base in TINY["bases"]:
        lines += ["[[bases]]", *[f"{k} = {json.dumps(v)}" for k, v in base.items()]]
    recipe.write_text("\n".join(lines) + "\n")
    assert load_recipe(recipe)["model"] == TINY["model"]
    assert _cli(["pretrain", "--recipe", str(recipe), "--out-dir", str(built["out_dir"]),
                 "--cache-dir", str(built["cache_dir"]), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.count("kept") == 3 and "total" in out


def test_cli_out_naming_a_folder_is_refused(tmp_path, capsys):
    """``--out dir/`` (or an existing folder) is a usage error naming the fix, not a file called ``dir``."""
    for out in (f"{tmp_path / 'bases'}/", str(tmp_path)):
        with pytest.raises(SystemExit) as exit_:
            _cli(["pretrain", "--scratch", "--out", out, "--image-size", "32"])
        assert exit_.value.code == 2
        assert "is a folder; give the checkpoint's file path" in capsys.readouterr().err
    assert not (tmp_path / "bases").exists()
