"""Recipes on any dataset: a manifest dataset by ``root``, and the control check on the recipe's ``sensitive``."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from PIL import Image

import extract.pretrain.recipe as recipe_module
from extract.backbones import create_backbone
from extract.errors import UserError
from extract.pretrain.recipe import check_recipe, load_recipe, run_recipe

pytestmark = pytest.mark.usefixtures("one_torch_thread_per_module")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """48 images; ``a`` is independent of ``s`` (phi 0), ``b`` follows ``s`` in 5 of 6 rows (phi 0.707)."""
    root = tmp_path_factory.mktemp("manifest_tree")
    (root / "imgs").mkdir()
    rng = np.random.default_rng(0)
    lines = ["path,s,a,b"]
    for i in range(48):
        s, a = i % 2, (i // 2) % 2
        b = s if i % 6 else 1 - s
        Image.fromarray(rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)).save(root / "imgs" / f"{i}.png")
        lines.append(f"imgs/{i}.png,{s},{a},{b}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root


def _recipe(root, *, control="a", sensitive="s", **data):
    recipe = {
        "data": {"dataset": "manifest", "root": str(root), **({"sensitive": sensitive} if sensitive else {}), **data},
        "model": {"arch": "smallcnn", "arch_kwargs": {"width": 4}, "image_size": 16},
        "train": {"epochs": 1, "batch_size": 16, "lr": 0.05, "val_fraction": 0.25, "seed": 0, "max_control_phi": 0.1},
        "bases": [{"name": "m-biased", "role": "biased", "attributes": ["s"]},
                  {"name": f"m-control-{control}", "role": "control", "attributes": [control]},
                  {"name": "m-scratch", "role": "scratch"}],
    }
    return recipe


@pytest.fixture
def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        pytest.fail("a base was trained before the recipe's checks ran")

    monkeypatch.setattr(recipe_module, "pretrain_base", refuse)


def test_a_manifest_recipe_with_root_builds_every_base(tree, tmp_path):
    paths = run_recipe(_recipe(tree), out_dir=tmp_path, device="cpu", progress=False)
    assert list(paths) == ["m-biased", "m-control-a", "m-scratch"]
    metas = {name: create_backbone(path).extra["checkpoint_meta"] for name, path in paths.items()}
    assert [m["role"] for m in metas.values()] == ["biased", "control", "scratch"]
    assert metas["m-control-a"]["pretraining_cache"]["path"] == str(tree)
    assert metas["m-control-a"]["control_phi"] == {"a": 0.0}  # the measured check is recorded


def test_a_correlated_control_is_refused_with_its_phi_before_training(tree, tmp_path, no_training):
    with pytest.raises(UserError) as info:
        run_recipe(_recipe(tree, control="b"), out_dir=tmp_path, device="cpu", progress=False)
    message = str(info.value)
    assert "\n" not in message and message.endswith(".")
    assert "control attribute 'b' has phi 0.707 with the sensitive attribute 's'" in message and "limit 0.1" in message
    # a manifest has no presets: the advice is about this data, not about re-rendering avatars
    assert "preset" not in message and "avatar" not in message, message
    assert message.endswith("; pick another control attribute, one nearly independent of 's' in these images, or "
                            "raise [train] max_control_phi if this dependence is intended."), message
    assert not list(tmp_path.glob("*.pt"))


def test_controls_need_a_sensitive_attribute(tree, tmp_path, no_training):
    with pytest.raises(UserError, match=r"has control bases but no sensitive attribute; set \[data\] sensitive"):
        run_recipe(_recipe(tree, sensitive=None), out_dir=tmp_path, device="cpu", progress=False)


def test_a_biased_base_must_learn_the_sensitive_attribute(tree, tmp_path, no_training):
    recipe = _recipe(tree)
    recipe["bases"][0]["attributes"] = ["a"]
    with pytest.raises(UserError, match=r"biased base 'm-biased' does not pretrain on the sensitive attribute 's'"):
        run_recipe(recipe, out_dir=tmp_path, device="cpu", progress=False)


def test_an_unknown_sensitive_attribute_is_named(tree, tmp_path, no_training):
    with pytest.raises(UserError, match=r"sensitive attribute 'gender' is not a column of the manifest dataset"):
        run_recipe(_recipe(tree, sensitive="gender"), out_dir=tmp_path, device="cpu", progress=False)


def test_root_and_cache_are_exclusive(tree):
    with pytest.raises(UserError, match=r"\[data\] sets both 'root' and 'cache'"):
        check_recipe(_recipe(tree, cache="x.h5"))
    with pytest.raises(UserError, match=r"\[data\] lacks 'root'"):
        check_recipe({**_recipe(tree), "data": {"dataset": "manifest"}})


def test_the_shipped_manifest_recipe_reads():
    recipe = load_recipe("data/recipes/manifest-bases.toml")
    assert recipe["data"]["dataset"] == "manifest" and "root" in recipe["data"] and recipe["data"]["sensitive"]
    assert {b["role"] for b in recipe["bases"]} == {"biased", "control", "scratch"}


def test_the_avatar_recipe_still_takes_its_sensitive_attribute_from_the_cache():
    recipe = copy.deepcopy(load_recipe("data/recipes/avatars-bases.toml"))
    assert "sensitive" not in recipe["data"]
    check_recipe(recipe)


def test_pretraining_on_image_files_warns_nothing(tree):
    """Images decoded by PIL are read-only arrays, and ``torch.from_numpy`` of one printed PyTorch's
    "The given NumPy array is not writable" warning. PyTorch warns once per process, so a fresh one runs it."""
    import subprocess
    import sys

    code = ("import sys, numpy as np, torch; torch.set_num_threads(1)\n"
            "from extract.datasets import get_adapter\n"
            "from extract.pretrain.config import PretrainConfig, PretrainModel\n"
            "from extract.pretrain.train import pretrain_base\n"
            f"adapter = get_adapter('manifest', {str(tree)!r})\n"
            "pretrain_base(adapter, attributes=['s'], model=PretrainModel(arch_kwargs={'width': 4}),"
            " config=PretrainConfig(epochs=1, batch_size=16, lr=0.05, seed=0), device='cpu', progress=False)\n"
            "print('trained')\n")
    run = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "trained", run.stderr
    assert "not writable" not in run.stderr, run.stderr
    assert "Warning" not in run.stderr, run.stderr
