"""timm backbones in finetuning and association: a tiny ViT finetuned at 224 px on CPU,
saved with --save-backbones, rebuilt from the checkpoint, and compared before/after by
``biastransfer associate`` with a timm random-init null."""

import pandas as pd
import pytest
import torch

timm = pytest.importorskip("timm")
from safetensors.torch import save_file  # noqa: E402

from analyze import cli  # noqa: E402
from analyze.config import RunContext  # noqa: E402
from analyze.finetune.runner import FinetuneConfig, FinetuneOptions, finetune_cells  # noqa: E402
from analyze.subsets import Correlation  # noqa: E402
from extract.backbones import create_backbone, load_checkpoint  # noqa: E402
from extract.datasets.avatars import AvatarAdapter, RenderSpec, render_dataset  # noqa: E402
from extract.models.timm_bridge import TimmFeatures  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread_per_module")
TINY_VIT = "timm/test_vit.r160_in1k"  # timm's 64-d test ViT (patch 16), built here at 224 px
SPEC = """
[defaults]
n_permutations = 50
n_bootstrap = 20

[[tests]]
name = "hat ~ dark vs light"
kind = "concept"
W = "hat"
A = "dark"
B = "light"
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("timm_finetune")
    cache = render_dataset(root / "avatars.h5", spec=RenderSpec(n=400, size=32, seed=1, preset="balanced", signal_sample=2), workers=1, progress=False)
    torch.manual_seed(0)
    weights = root / "test_vit.safetensors"
    save_file(dict(timm.create_model("test_vit.r160_in1k", pretrained=False).state_dict()), str(weights))
    (root / "tests.toml").write_text(SPEC)
    return root, cache, weights


@pytest.fixture(scope="module")
def finetuned(workspace):
    """One cell finetuned from the tiny ViT at 224 px, its backbone saved (--save-backbones)."""
    root, cache, weights = workspace
    saved = root / "saved"
    config = FinetuneConfig(lrs=(0.01,), weight_decays=(0.0,), epochs=1, batch_size=16)
    table = finetune_cells([Correlation("hat", "dark_skin", 0.5, n=32, seed=0)], adapter=AvatarAdapter(cache),
                           base=TINY_VIT, config=config, context=RunContext(out=root / "records", progress=False),
                           options=FinetuneOptions(weights=weights, image_size=224, save_backbones=saved, device="cpu"))
    return table, sorted(saved.glob("*.pt"))


def test_vit_finetunes_at_224_and_the_saved_backbone_rebuilds(workspace, finetuned):
    _, _, weights = workspace
    table, checkpoints = finetuned
    assert list(table["status"]) == ["written"] and len(checkpoints) == 1
    rebuilt = load_checkpoint(checkpoints[0])
    assert isinstance(rebuilt.model, TimmFeatures) and rebuilt.preprocess.crop == 224
    assert rebuilt.model.timm_spec.model_kwargs == {"img_size": 224}  # what the rebuild needs
    assert rebuilt.extra["checkpoint_meta"]["base"] == TINY_VIT
    base = create_backbone(TINY_VIT, weights=weights, image_size=224)
    assert (base.arch, base.arch_kwargs) == ("timm", base.model.timm_spec.to_dict())
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        moved = (rebuilt.model(x) - base.model(x)).abs().max()
    assert 0 < float(moved) < 10  # finetuned: the weights changed, and the checkpoint loads them


def test_associate_compares_the_timm_base_and_its_finetuned_checkpoint(workspace, finetuned):
    root, cache, weights = workspace
    _, checkpoints = finetuned
    out = root / "assoc" / "table.csv"
    status = cli.main(["associate", "--backbone", f"{TINY_VIT}={weights}", "--backbone", str(checkpoints[0]),
                       "--concepts", f"avatars:{cache}", "--tests", str(root / "tests.toml"), "--out", str(out),
                       "--null-seeds", "2", "--image-size", "224", "--per-set", "8", "--split", "all",
                       "--device", "cpu", "--no-plot"])
    assert status == 0
    table = pd.read_csv(out)
    assert sorted(table["stage"].unique()) == ["after", "before", "change"]  # the checkpoint found its base
    assert (table.loc[table["stage"] != "change", "null_n"] == 2).all()


def test_random_init_timm_base_is_reinitialised_per_seed(workspace, tmp_path):
    """``--base timm/<model>=scratch``: each replicate starts from its own seeded init (the null base)."""
    _, cache, _ = workspace
    config = FinetuneConfig(lrs=(0.01,), weight_decays=(0.0,), epochs=1, batch_size=16)
    specs = [Correlation("hat", "dark_skin", 0.5, n=32, seed=s) for s in (0, 1)]
    table = finetune_cells(specs, adapter=AvatarAdapter(cache), base=f"{TINY_VIT}=scratch", config=config,
                           context=RunContext(out=tmp_path, progress=False),
                           options=FinetuneOptions(save_backbones=tmp_path / "saved", device="cpu"))
    assert list(table["status"]) == ["written", "written"]
    by_seed = {b.extra["checkpoint_meta"]["seed"]: b for b in map(load_checkpoint, (tmp_path / "saved").glob("*.pt"))}
    first, second = by_seed[0], by_seed[1]
    assert first.preprocess.crop == 32  # a random-init base adopts the avatars' native size
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert not torch.allclose(first.model(x), second.model(x))
    inits = [create_backbone(TINY_VIT, weights="scratch", seed=s, image_size=32).model for s in (0, 1)]

    def distance(m, n):
        return sum(float((p - q).norm()) for p, q in zip(m.state_dict().values(), n.state_dict().values()))

    # each finetuned model is nearer its own seed's init than the other seed's
    assert distance(first.model, inits[0]) < distance(first.model, inits[1])
    assert distance(second.model, inits[1]) < distance(second.model, inits[0])
