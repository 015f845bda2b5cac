"""Registry behaviour: hub-cache lookup, no downloads, clear errors, safe loading, checkpoints."""

import json
import importlib.util
import socket
import urllib.request

import pytest
import torch
import torchvision

from extract import backbones
from extract.backbones import (
    REGISTRY,
    create_backbone,
    describe_backbones,
    load_checkpoint,
    save_checkpoint,
)
from extract.errors import UserError

torch.set_num_threads(1)
X = torch.randn(2, 3, 40, 40, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def no_network(monkeypatch):
    """Any download attempt raises (and would fail the test)."""
    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def _tv_resnet18(seed: int):
    torch.manual_seed(seed)
    return torchvision.models.resnet18(weights=None).eval()


def test_torch_hub_cache_lookup(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    ref = _tv_resnet18(seed=7)
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(ref.state_dict(), cache / "resnet18-f37072fd.pth")  # the V1 file as torchvision saves it
    backbone = create_backbone("resnet18.tv_in1k")
    assert backbone.weights_path == str(cache / "resnet18-f37072fd.pth")
    assert backbone.weights_sha256 == backbones.sha256_file(cache / "resnet18-f37072fd.pth")
    assert backbone.feature_dim == 512
    assert (backbone.preprocess.resize, backbone.preprocess.crop) == (256, 224)
    ref.fc = torch.nn.Identity()
    with torch.no_grad():
        torch.testing.assert_close(backbone.model(X), ref(X), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["resnet18.tv_in1k", "resnet50.tv2_in1k", "resnet50.moco_v3"])
def test_missing_weights_names_the_parameter_and_downloads_nothing(name, tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(UserError, match="pass `weights=PATH`") as info:
        create_backbone(name)
    assert REGISTRY[name].default_filename in str(info.value)
    with pytest.raises(UserError, match="does not exist"):
        create_backbone(name, weights=tmp_path / "nope.pth")


def test_unknown_name_suggests_close_ones():
    with pytest.raises(UserError, match="resnet50.tv2_in1k"):
        create_backbone("resnet50.tv2")
    with pytest.raises(UserError, match="unknown backbone"):
        create_backbone("vit_b16.dino")


def test_unexpected_and_missing_keys_are_user_errors(tmp_path):
    sd = _tv_resnet18(seed=1).state_dict()
    sd["layer5.0.conv1.weight"] = torch.zeros(3)
    torch.save(sd, tmp_path / "extra.pth")
    with pytest.raises(UserError, match="unexpected keys: \\['layer5"):
        create_backbone("resnet18.tv_in1k", weights=tmp_path / "extra.pth")
    del sd["layer5.0.conv1.weight"], sd["conv1.weight"]
    torch.save(sd, tmp_path / "short.pth")
    with pytest.raises(UserError, match="missing keys: \\['conv1.weight'\\]"):
        create_backbone("resnet18.tv_in1k", weights=tmp_path / "short.pth")
    # ResNet-18 weights for a ResNet-50 entry: same keys in part, wrong shapes or names.
    with pytest.raises(UserError, match="does not match|of shape"):
        create_backbone("resnet50.tv_in1k", weights=tmp_path / "short.pth")


class _Malicious:
    """Unpickling calls open(marker, 'w'), which creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "payload": _Malicious(marker)}, path)
    with pytest.raises(UserError, match="cannot be loaded safely"):
        create_backbone("resnet18.tv_in1k", weights=path)
    with pytest.raises(UserError, match="cannot be loaded safely"):
        create_backbone(path)  # as a toolkit checkpoint path
    assert not marker.exists()
    # The file really is malicious: an unsafe load would have run the payload.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_corrupt_file_is_a_user_error(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError):
        create_backbone("resnet18.tv_in1k", weights=path)


@pytest.mark.parametrize("name, arch, kwargs", [
    ("smallcnn.scratch", "smallcnn", {"width": 16}),
    ("resnet18.scratch", "resnet18", {}),
])
def test_checkpoint_round_trip(name, arch, kwargs, tmp_path):
    original = create_backbone(name, seed=5)
    path = save_checkpoint(tmp_path / "base.pt", original.model, arch=arch, arch_kwargs=kwargs,
                           preprocess=original.preprocess, meta={"name": "my-base", "seed": 5})
    assert not (tmp_path / "base.pt.tmp").exists()
    for loaded in (load_checkpoint(path), create_backbone(path), create_backbone(name, weights=path, seed=99)):
        assert loaded.preprocess == original.preprocess
        assert loaded.feature_dim == original.feature_dim
        with torch.no_grad():
            torch.testing.assert_close(loaded.model(X), original.model(X), rtol=0, atol=0)
    assert create_backbone(path).name == "my-base"
    with torch.no_grad():  # the seed matters when nothing is loaded
        assert not torch.allclose(create_backbone(name, seed=6).model(X), original.model(X))


def test_lite0_checkpoint_without_classifier_round_trip(tmp_path):
    model = backbones.ARCHITECTURES["efficientnet_lite0"](num_classes=0).eval()
    prep = backbones.Preprocess(resize=64, crop=64)
    path = save_checkpoint(tmp_path / "lite.pt", model, arch="efficientnet_lite0", arch_kwargs={"num_classes": 0}, preprocess=prep)
    loaded = create_backbone(path)
    assert loaded.feature_dim == 1280 and loaded.preprocess == prep
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(X), model(X), rtol=0, atol=0)


def test_image_size_override():
    backbone = create_backbone("resnet18.scratch", image_size=64)
    assert (backbone.preprocess.resize, backbone.preprocess.crop) == (64, 64)
    assert backbone.preprocess.mean == REGISTRY["resnet18.scratch"].preprocess.mean
    assert backbone.config()["preprocess"]["crop"] == 64
    with torch.no_grad():
        assert backbone.model(torch.zeros(1, 3, 64, 64)).shape == (1, 512)
    with pytest.raises(UserError, match="too small"):
        create_backbone("resnet18.scratch", image_size=4)


def test_lite0_without_package_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == backbones.LITE0_PACKAGE else real(name, *a))
    with pytest.raises(UserError, match=r"biastransfer\[lite0\]"):
        create_backbone("efficientnet_lite0.imagenet")
    assert {r["name"]: r["available"] for r in describe_backbones()}["efficientnet_lite0.imagenet"] is False


def test_describe_backbones_declares_true_feature_dims(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    rows = describe_backbones()
    assert [r["name"] for r in rows] == sorted(REGISTRY)
    assert {"resnet50.tv2_in1k", "resnet50.moco_v3", "resnet50.simclr", "resnet50.places365",
            "resnet50.scratch", "resnet18.scratch", "efficientnet_lite0.imagenet"} <= set(REGISTRY)
    has_lite0 = importlib.util.find_spec(backbones.LITE0_PACKAGE) is not None
    built = {}
    for row in rows:
        spec = REGISTRY[row["name"]]
        if spec.arch not in built:  # build each architecture once
            built[spec.arch] = spec.build_model().feature_dim
        assert row["feature_dim"] == built[spec.arch], row["name"]
        assert row["available"] == (spec.weights == "none" or (spec.weights == "package" and has_lite0)), row["name"]
        assert row["description"] and row["crop"] <= row["resize"]


def test_lite0_checkpoint_of_the_former_architecture_loads(tmp_path):
    """A finetuned EfficientNet-Lite0 saved before the architecture became timm's (stem/stages/head
    names) loads into timm's tf_efficientnet_lite0 with the same tensors."""
    model = backbones.ARCHITECTURES["efficientnet_lite0"](num_classes=0).eval()
    top = {"net.conv_stem.": "stem.conv.", "net.bn1.": "stem.bn.", "net.conv_head.": "head.conv.", "net.bn2.": "head.bn."}
    first = {"conv_dw.": "depthwise.conv.", "bn1.": "depthwise.bn.", "conv_pw.": "project.conv.", "bn2.": "project.bn."}
    rest = {"conv_pw.": "expand.conv.", "bn1.": "expand.bn.", "conv_dw.": "depthwise.conv.", "bn2.": "depthwise.bn.",
            "conv_pwl.": "project.conv.", "bn3.": "project.bn."}
    old = {}
    for key, value in model.state_dict().items():
        if key.startswith("net.blocks."):
            stage, pos, rest_key = key.split(".", 4)[2:5]
            table = first if stage == "0" else rest
            sub = next(k for k in table if rest_key.startswith(k))
            key = f"stages.{stage}.{pos}.{table[sub]}{rest_key[len(sub):]}"
        else:
            sub = next(k for k in top if key.startswith(k))
            key = top[sub] + key[len(sub):]
        old[key] = value.clone()
    assert "stages.1.0.expand.conv.weight" in old and "stem.conv.weight" in old
    prep = backbones.Preprocess(resize=64, crop=64)
    payload = {"format": backbones.CHECKPOINT_FORMAT, "arch": "efficientnet_lite0",
               "arch_kwargs_json": json.dumps({"num_classes": 0}), "preprocess_json": json.dumps(prep.to_dict()),
               "meta_json": "{}", "state_dict": old}
    torch.save(payload, tmp_path / "old_lite.pt")
    loaded = load_checkpoint(tmp_path / "old_lite.pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(X), model(X), rtol=0, atol=0)
