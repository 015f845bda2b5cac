"""Each checkpoint layout, saved from a random model, loads through the registry unchanged.

A reference torchvision ResNet (seeded differently from the registry's init, with
randomised batch-norm statistics) is saved in each source's key layout; the registry's
model must then give exactly the reference's pooled features. Decoy tensors (momentum
encoder, projector, 365-class head) are zeros or junk, so keeping the wrong ones fails.
"""

import pytest
import torch
import torchvision

from extract.backbones import create_backbone
from extract.errors import UserError
from extract.models import remaps

torch.set_num_threads(1)


def _reference(depth: int, seed: int):
    """(torchvision model, its state dict, a 2-image batch, its pooled features)."""
    torch.manual_seed(seed)
    model = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    with torch.no_grad():  # non-trivial BN statistics, so buffers must load too
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    model.eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        feats = torch.flatten(torch.nn.Sequential(*list(model.children())[:-1])(x), 1)
    return model, model.state_dict(), x, feats


@pytest.fixture(scope="module")
def ref50():
    return _reference(50, seed=123)


def _backbone_only(sd: dict) -> dict:
    return {k: v for k, v in sd.items() if not k.startswith("fc.")}


def _zeros_like(v: torch.Tensor) -> torch.Tensor:
    # A stride-0 view: full shape on disk for one element, so decoys cost no space.
    return torch.zeros((), dtype=v.dtype).expand(v.shape)


def _check(name: str, payload, ref, tmp_path) -> None:
    _, _, x, feats = ref
    path = tmp_path / "weights.pth"
    torch.save(payload, path)
    backbone = create_backbone(name, weights=path)
    assert backbone.feature_dim == feats.shape[1]
    assert backbone.weights_path == str(path)
    with torch.no_grad():
        out = backbone.model(x)
    assert out.shape == feats.shape
    torch.testing.assert_close(out, feats, rtol=0, atol=1e-5)


def test_torchvision_v2_file_as_is(ref50, tmp_path):
    _, sd, _, _ = ref50
    _check("resnet50.tv2_in1k", dict(sd), ref50, tmp_path)


def test_moco_v3_layout(ref50, tmp_path):
    _, sd, _, _ = ref50
    state = {f"module.base_encoder.{k}": v for k, v in _backbone_only(sd).items()}
    state.update({f"module.momentum_encoder.{k}": _zeros_like(v) for k, v in _backbone_only(sd).items()})
    state.update({  # the projection MLP lives in base_encoder.fc; the predictor is separate
        "module.base_encoder.fc.0.weight": torch.randn(16, 2048),
        "module.base_encoder.fc.1.running_mean": torch.randn(16),
        "module.base_encoder.fc.3.weight": torch.randn(8, 16),
        "module.momentum_encoder.fc.0.weight": torch.randn(16, 2048),
        "module.predictor.0.weight": torch.randn(16, 8),
    })
    payload = {"epoch": 1000, "arch": "resnet50", "state_dict": state,
               "optimizer": {"state": {}, "param_groups": [{"lr": 0.6, "params": [0, 1]}]}, "scaler": {"scale": 1024.0}}
    _check("resnet50.moco_v3", payload, ref50, tmp_path)


def test_simclr_spijkervet_layout(ref50, tmp_path):
    _, sd, _, _ = ref50
    state = {f"encoder.{k}": v for k, v in _backbone_only(sd).items()}
    state.update({"projector.0.weight": torch.randn(16, 2048), "projector.2.weight": torch.randn(64, 16)})
    _check("resnet50.simclr", state, ref50, tmp_path)


def test_places365_layout(ref50, tmp_path):
    _, sd, _, _ = ref50
    state = {f"module.{k}": v for k, v in _backbone_only(sd).items()}
    state.update({"module.fc.weight": torch.randn(365, 2048), "module.fc.bias": torch.randn(365)})
    _check("resnet50.places365", {"epoch": 90, "arch": "resnet50", "best_prec1": 54.7, "state_dict": state}, ref50, tmp_path)


def test_wrong_layout_is_a_user_error(ref50, tmp_path):
    # A MoCo file given to the Places entry: nothing strips base_encoder, so keys mismatch.
    _, sd, _, _ = ref50
    path = tmp_path / "moco.pth"
    torch.save({"state_dict": {f"module.base_encoder.{k}": v for k, v in _backbone_only(sd).items()}}, path)
    with pytest.raises(UserError, match="does not match the architecture"):
        create_backbone("resnet50.places365", weights=path)


# -- the remap functions on small dicts: variants of each layout ---------------------------
T = torch.zeros(1)


def test_moco_single_gpu_prefix_and_unknown_keys_pass_through():
    out = remaps.remap_moco_v3({"state_dict": {"base_encoder.conv1.weight": T, "base_encoder.fc.0.weight": T,
                                               "momentum_encoder.conv1.weight": T, "queue": T}})
    assert set(out) == {"conv1.weight", "queue"}  # unknown "queue" is left for the strict load to reject


def test_simclr_dataparallel_and_converted_layouts():
    dp = remaps.remap_simclr({"module.encoder.conv1.weight": T, "module.encoder.fc.weight": T, "module.projector.0.weight": T})
    assert set(dp) == {"conv1.weight"}
    converted = remaps.remap_simclr({"state_dict": {"conv1.weight": T, "fc.weight": T, "fc.bias": T}})
    assert set(converted) == {"conv1.weight"}


def test_torchvision_remap_keeps_non_fc_keys_named_like_fc():
    out = remaps.remap_torchvision_resnet({"fc.weight": T, "fc.bias": T, "fcx.weight": T, "layer1.0.conv1.weight": T})
    assert set(out) == {"fcx.weight", "layer1.0.conv1.weight"}


def test_lite0_remap_names():
    out = remaps.remap_lukemelas_efficientnet_lite0({
        "_conv_stem.weight": T, "_bn0.running_var": T, "_blocks.0._depthwise_conv.weight": T,
        "_blocks.1._expand_conv.weight": T, "_blocks.1._bn0.bias": T, "_blocks.3._bn2.weight": T,
        "_blocks.15._project_conv.weight": T, "_conv_head.weight": T, "_bn1.weight": T, "_fc.bias": T,
        "_blocks.0._se_reduce.weight": T,
    })
    assert set(out) == {
        "net.conv_stem.weight", "net.bn1.running_var", "net.blocks.0.0.conv_dw.weight",
        "net.blocks.1.0.conv_pw.weight", "net.blocks.1.0.bn1.bias", "net.blocks.2.0.bn3.weight",
        "net.blocks.6.0.conv_pwl.weight", "net.conv_head.weight", "net.bn2.weight", "net.classifier.bias",
        "_blocks.0._se_reduce.weight",  # SE layers (EfficientNet-B0 files) are not Lite: left to fail the load
    }


def test_lite0_toolkit_checkpoint_of_the_former_layout_is_renamed():
    old = {"stem.conv.weight": T, "stem.bn.running_mean": T, "stages.0.0.depthwise.conv.weight": T,
           "stages.0.0.project.bn.bias": T, "stages.3.2.expand.bn.weight": T, "stages.3.2.depthwise.bn.weight": T,
           "stages.5.3.project.conv.weight": T, "head.conv.weight": T, "head.bn.weight": T, "classifier.bias": T}
    assert set(remaps.remap_lite0_checkpoint(old)) == {
        "net.conv_stem.weight", "net.bn1.running_mean", "net.blocks.0.0.conv_dw.weight", "net.blocks.0.0.bn2.bias",
        "net.blocks.3.2.bn1.weight", "net.blocks.3.2.bn2.weight", "net.blocks.5.3.conv_pwl.weight",
        "net.conv_head.weight", "net.bn2.weight", "net.classifier.bias"}
    current = {"net.conv_stem.weight": T, "net.blocks.0.0.conv_dw.weight": T}
    assert remaps.remap_lite0_checkpoint(current) == current
