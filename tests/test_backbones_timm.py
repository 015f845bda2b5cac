"""The timm bridge: named entries load their sources' own weight formats, offline.

For each named entry a model of the same architecture family gets random weights, which
are written in the format its source releases (an OpenAI CLIP state dict, a BiT ``.npz``,
a DINOv2 ``.pth``, a ViT AugReg ``.npz``, a facebookresearch ConvNeXt ``.pth``, timm
safetensors); the file is loaded through the registry (``create_backbone``) and must give
the features of the model it came from. What each test shrinks to stay fast on a CPU is
said in its docstring; the code path (file reading, timm's converter, pooling) is the one
the full-size entry takes; CLIP ViT-B/32 is also checked at its real size against OpenAI's
architecture. A socket guard fails any test that tries to reach the network.
"""

import math
import socket
import warnings
from collections import OrderedDict
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

timm = pytest.importorskip("timm")
from safetensors.torch import save_file  # noqa: E402  (installed with timm)

from extract import backbones  # noqa: E402
from extract.backbones import REGISTRY, create_backbone, load_checkpoint, save_checkpoint  # noqa: E402
from extract.errors import UserError  # noqa: E402
from extract.models import timm_bridge  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
NAMED = ("clip_vit_b32.openai", "bit_m_r50x1.in21k", "dinov2_vits14.lvd142m", "vit_b16.augreg_in21k", "convnext_tiny.fb_in22k")
TINY_VIT = "timm/test_vit.r160_in1k"  # timm's own 64-d test ViT (160 px)


class NetworkAttempt(AssertionError):
    pass


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any DNS lookup or connection fails the test (the bridge must never try one)."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[:2])
        raise NetworkAttempt(f"network access attempted: {args[:2]}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", lambda self, *a: refuse(*a))
    monkeypatch.setattr(socket.socket, "connect_ex", lambda self, *a: refuse(*a))
    yield attempts
    assert attempts == [], attempts


def _randomise(model: nn.Module, seed: int) -> nn.Module:
    """Every parameter and buffer random (norm scales near 1), so a wrong key or transpose shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if not t.is_floating_point():
                continue
            noise = torch.randn(t.shape, generator=gen) * 0.2
            t.copy_(1.0 + noise if name.endswith(("norm.weight", "norm1.weight", "norm2.weight", "norm3.weight", "gamma"))
                    and t.ndim == 1 else noise)
    return model.eval()


def _pre_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.forward_head(model.forward_features(x), pre_logits=True)


def _small_entry(monkeypatch, name: str, **model_kwargs):
    """Register ``name`` with a smaller model of the same timm architecture (same loader, same pooling)."""
    spec = REGISTRY[name]
    tspec = replace(spec.timm, model_kwargs={**spec.timm.model_kwargs, **model_kwargs})
    monkeypatch.setitem(REGISTRY, name, replace(spec, timm=tspec))
    return tspec


def _features(backbone, x):
    with torch.no_grad():
        return backbone.model(x)


# -- OpenAI CLIP: the original architecture (openai/CLIP model.py), written independently ----------
class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict(c_fc=nn.Linear(width, width * 4), gelu=QuickGELU(),
                                             c_proj=nn.Linear(width * 4, width)))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x):
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class OpenAIVisionTransformer(nn.Module):
    """CLIP's image tower as OpenAI wrote it; its state dict has OpenAI's key names."""

    def __init__(self, resolution, patch, width, layers, heads, output_dim):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros((resolution // patch) ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads) for _ in range(layers)])
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.zeros(width, output_dim))

    def forward(self, x, *, project=True):
        x = self.conv1(x).flatten(2).permute(0, 2, 1)
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        x = self.ln_pre(torch.cat([cls, x], dim=1) + self.positional_embedding)
        x = self.transformer.resblocks(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_post(x[:, 0])
        return x @ self.proj if project else x


def _openai_state(ref: nn.Module) -> dict:
    """An OpenAI CLIP state dict: the image tower under ``visual.`` next to (stand-in) text-tower keys."""
    state = {f"visual.{k}": v.clone() for k, v in ref.state_dict().items()}
    state.update({"positional_embedding": torch.zeros(77, 32), "text_projection": torch.zeros(32, 512),
                  "logit_scale": torch.tensor(4.6), "token_embedding.weight": torch.zeros(49408, 8)})
    return state


def _randomise_openai(ref: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            is_scale = isinstance(dict(ref.named_modules()).get(name.rsplit(".", 1)[0]), nn.LayerNorm) and name.endswith("weight")
            p.copy_((1.0 if is_scale else 0.0) + torch.randn(p.shape, generator=gen) * 0.2)
    return ref.eval()


def test_clip_openai_state_dict_gives_openais_embedding(tmp_path, monkeypatch):
    """clip_vit_b32.openai from an OpenAI CLIP state dict equals OpenAI's own forward.

    Covers: timm's OpenAI converter (qkv in_proj, out_proj, c_fc/c_proj, transposed proj,
    class/position embeddings, pre-norm, QuickGELU), the text tower being ignored, and
    the 512-d projected embedding (default) and the class token (@token). Shrunk: width
    64, 2 layers, 2 heads (ViT-B/32 has 768, 12, 12); patch 32 at 224 px as the entry.
    """
    _small_entry(monkeypatch, "clip_vit_b32.openai", embed_dim=64, depth=2, num_heads=2)
    ref = _randomise_openai(OpenAIVisionTransformer(224, 32, 64, 2, 2, 512), seed=1)
    path = tmp_path / "ViT-B-32.state_dict.pt"
    torch.save(_openai_state(ref), path)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want_proj, want_token = ref(x), ref(x, project=False)
    backbone = create_backbone("clip_vit_b32.openai", weights=path)
    assert backbone.feature_dim == 512 and backbone.extra["timm"]["weights_format"] == "openai_clip"
    torch.testing.assert_close(_features(backbone, x), want_proj, rtol=0, atol=2e-5)
    token = create_backbone("clip_vit_b32.openai@token", weights=path)
    assert token.feature_dim == 64 and token.name == "clip_vit_b32.openai@token"
    torch.testing.assert_close(_features(token, x), want_token, rtol=0, atol=2e-5)
    # OpenAI's clip.load preprocessing: bicubic 224 -> centre crop 224, CLIP mean/std.
    assert (backbone.preprocess.resize, backbone.preprocess.crop, backbone.preprocess.interpolation) == (224, 224, "bicubic")
    assert backbone.preprocess.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))


def test_clip_timm_safetensors_equal_the_timm_model(tmp_path, monkeypatch):
    """clip_vit_b32.openai from timm's own safetensors layout (the default file's format).

    Shrunk as above; the default file name is looked up in the torch hub folder.
    """
    tspec = _small_entry(monkeypatch, "clip_vit_b32.openai", embed_dim=64, depth=2, num_heads=2)
    source = _randomise(timm.create_model(tspec.model, pretrained=False, **tspec.model_kwargs), seed=2)
    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()},
              str(hub / "checkpoints" / REGISTRY["clip_vit_b32.openai"].default_filename))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    assert {r["name"]: r["available"] for r in backbones.describe_backbones()}["clip_vit_b32.openai"] is True
    backbone = create_backbone("clip_vit_b32.openai")
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = source(x)
    torch.testing.assert_close(_features(backbone, x), want, rtol=0, atol=1e-5)
    assert backbone.extra["timm"]["weights_format"] == "safetensors"


def _bit_npz(model: nn.Module, path) -> None:
    """Write ``model`` (timm ResNetV2) as BiT's original ``.npz`` (TF names, HWIO kernels)."""
    hwio = lambda t: t.detach().numpy().transpose(2, 3, 1, 0)  # noqa: E731
    p = "resnet/"
    arrays = {f"{p}root_block/standardized_conv2d/kernel": hwio(model.stem.conv.weight),
              f"{p}group_norm/gamma": model.norm.weight.detach().numpy(),
              f"{p}group_norm/beta": model.norm.bias.detach().numpy(),
              f"{p}head/conv2d/kernel": hwio(model.head.fc.weight),
              f"{p}head/conv2d/bias": model.head.fc.bias.detach().numpy()}
    for i, stage in enumerate(model.stages):
        for j, block in enumerate(stage.blocks):
            b = f"{p}block{i + 1}/unit{j + 1:02d}/"
            for letter, n in zip("abc", (1, 2, 3)):
                arrays[f"{b}{letter}/standardized_conv2d/kernel"] = hwio(getattr(block, f"conv{n}").weight)
                arrays[f"{b}{letter}/group_norm/gamma"] = getattr(block, f"norm{n}").weight.detach().numpy()
                arrays[f"{b}{letter}/group_norm/beta"] = getattr(block, f"norm{n}").bias.detach().numpy()
            if block.downsample is not None:
                arrays[f"{b}a/proj/standardized_conv2d/kernel"] = hwio(block.downsample.conv.weight)
    np.savez(path, **arrays)


def test_bit_npz_equals_the_timm_model(tmp_path, monkeypatch):
    """bit_m_r50x1.in21k from BiT's original .npz layout.

    Covers the full ResNetV2-50x1 trunk (every stage, unit and projection, group norm,
    weight-standardised convolutions, HWIO kernels). Shrunk: the 21843-class head to 16
    classes (the .npz loader copies a head only when its shape fits; features are pre-logits).
    """
    tspec = _small_entry(monkeypatch, "bit_m_r50x1.in21k", num_classes=16)
    source = _randomise(timm.create_model(tspec.model, pretrained=False, **tspec.model_kwargs), seed=3)
    path = tmp_path / "BiT-M-R50x1.npz"
    _bit_npz(source, path)
    backbone = create_backbone("bit_m_r50x1.in21k", weights=path)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    assert backbone.feature_dim == 2048 and backbone.extra["timm"]["weights_format"] == "npz"
    torch.testing.assert_close(_features(backbone, x), _pre_logits(source, x), rtol=0, atol=1e-5)
    # finetuning can freeze the stem and the first k stages
    assert backbone.model.stem is backbone.model.net.stem and len(backbone.model.stages) == 4


def test_dinov2_original_pth_at_518_and_224(tmp_path, monkeypatch):
    """dinov2_vits14.lvd142m from DINOv2's original ``*_pretrain.pth`` layout (518 px grid, mask_token).

    At 518 px (timm's config) the features equal the source model's; the entry builds at
    224 px, where timm's converter resamples the 37x37 position grid, and must equal
    timm's own file loader at that size. Shrunk: width 48, 2 blocks, 2 heads (ViT-S/14
    has 384, 12, 6); patch 14, layer scale and the 1370-token grid as the release.
    """
    small = dict(embed_dim=48, depth=2, num_heads=2)
    model = "vit_small_patch14_dinov2.lvd142m"
    source = _randomise(timm.create_model(model, pretrained=False, **small), seed=4)
    state = {k: v.clone() for k, v in source.state_dict().items()}
    assert state["pos_embed"].shape == (1, 1370, 48)
    state["mask_token"] = torch.zeros(1, 48)
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(state, path)
    full = timm_bridge.build(timm_bridge.TimmSpec(model, model_kwargs=small), weights=path)
    x518 = torch.randn(1, 3, 518, 518, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(_features(full, x518), _pre_logits(source, x518), rtol=0, atol=1e-5)
    assert full.weights_format == "dinov2" and full.preprocess["crop"] == 518

    _small_entry(monkeypatch, "dinov2_vits14.lvd142m", **small)
    backbone = create_backbone("dinov2_vits14.lvd142m", weights=path)
    timm_own = timm.create_model(model, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, img_size=224, **small)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(_features(backbone, x), _pre_logits(timm_own.eval(), x), rtol=0, atol=1e-5)
    avg = create_backbone("dinov2_vits14.lvd142m@avg", weights=path)
    with torch.no_grad():
        tokens = timm_own.forward_features(x)
    torch.testing.assert_close(_features(avg, x), tokens[:, 1:].mean(1), rtol=0, atol=1e-5)
    assert (backbone.preprocess.resize, backbone.preprocess.crop) == (256, 224)


def _augreg_npz(model: nn.Module, path) -> None:
    """Write ``model`` (timm ViT) as the AugReg ``.npz`` layout (Flax names and kernel shapes)."""
    n = lambda t: t.detach().numpy()  # noqa: E731
    dim, heads = model.embed_dim, model.blocks[0].attn.num_heads
    arrays = {"embedding/kernel": n(model.patch_embed.proj.weight).transpose(2, 3, 1, 0),
              "embedding/bias": n(model.patch_embed.proj.bias), "cls": n(model.cls_token),
              "Transformer/posembed_input/pos_embedding": n(model.pos_embed),
              "Transformer/encoder_norm/scale": n(model.norm.weight), "Transformer/encoder_norm/bias": n(model.norm.bias),
              "head/kernel": n(model.head.weight).T, "head/bias": n(model.head.bias)}
    for i, block in enumerate(model.blocks):
        b = f"Transformer/encoderblock_{i}/"
        mha = b + "MultiHeadDotProductAttention_1/"
        for which, w, bias in zip(("query", "key", "value"), n(block.attn.qkv.weight).reshape(3, dim, dim),
                                  n(block.attn.qkv.bias).reshape(3, dim)):
            arrays[f"{mha}{which}/kernel"] = w.T.reshape(dim, heads, dim // heads)
            arrays[f"{mha}{which}/bias"] = bias.reshape(heads, dim // heads)
        arrays[f"{mha}out/kernel"] = n(block.attn.proj.weight).reshape(dim, heads, dim // heads).transpose(1, 2, 0)
        arrays[f"{mha}out/bias"] = n(block.attn.proj.bias)
        for ln, norm in (("LayerNorm_0", block.norm1), ("LayerNorm_2", block.norm2)):
            arrays[f"{b}{ln}/scale"], arrays[f"{b}{ln}/bias"] = n(norm.weight), n(norm.bias)
        for r, fc in enumerate((block.mlp.fc1, block.mlp.fc2)):
            arrays[f"{b}MlpBlock_3/Dense_{r}/kernel"], arrays[f"{b}MlpBlock_3/Dense_{r}/bias"] = n(fc.weight).T, n(fc.bias)
    np.savez(path, **arrays)


def test_vit_augreg_npz_equals_the_timm_model(tmp_path, monkeypatch):
    """vit_b16.augreg_in21k from the AugReg release's .npz layout.

    Covers the Flax names, per-head query/key/value kernels, the output projection and
    the head. Shrunk: width 64, 2 blocks, 2 heads (ViT-B/16 has 768, 12, 12); patch 16 at
    224 px and the 21843-class head as the release.
    """
    tspec = _small_entry(monkeypatch, "vit_b16.augreg_in21k", embed_dim=64, depth=2, num_heads=2)
    source = _randomise(timm.create_model(tspec.model, pretrained=False, **tspec.model_kwargs), seed=5)
    path = tmp_path / REGISTRY["vit_b16.augreg_in21k"].default_filename
    _augreg_npz(source, path)
    backbone = create_backbone("vit_b16.augreg_in21k", weights=path)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(_features(backbone, x), _pre_logits(source, x), rtol=0, atol=1e-5)
    with torch.no_grad():  # the head came along too: logits equal
        torch.testing.assert_close(backbone.model.forward_logits(x), source(x), rtol=0, atol=1e-4)


def _fb_convnext_state(model: nn.Module) -> dict:
    """``model`` (timm ConvNeXt) in facebookresearch/ConvNeXt's layout, wrapped in {"model": ...}."""
    state = {}
    for k, v in model.state_dict().items():
        k = k.replace("stem.", "downsample_layers.0.")
        k = k.replace("head.norm.", "norm.").replace("head.fc.", "head.")
        for i in range(1, 4):
            k = k.replace(f"stages.{i}.downsample.", f"downsample_layers.{i}.")
        k = k.replace(".blocks.", ".").replace("conv_dw", "dwconv").replace("mlp.fc", "pwconv")
        state[k] = v.clone()
    return {"model": state}


def test_convnext_fb_pth_equals_the_timm_model(tmp_path, monkeypatch):
    """convnext_tiny.fb_in22k from facebookresearch/ConvNeXt's .pth layout ({"model": ...}).

    Covers the stem/downsample renames, depthwise and pointwise names, layer scale and the
    head's norm. Shrunk: depths (1, 1, 2, 1) and widths (16, 32, 48, 64) (ConvNeXt-T has
    (3, 3, 9, 3) and (96, ..., 768)); the 21841-class head as the release.
    """
    tspec = _small_entry(monkeypatch, "convnext_tiny.fb_in22k", depths=(1, 1, 2, 1), dims=(16, 32, 48, 64))
    source = _randomise(timm.create_model(tspec.model, pretrained=False, **tspec.model_kwargs), seed=6)
    state = _fb_convnext_state(source)
    assert "downsample_layers.1.1.weight" in state["model"] and "stages.2.1.dwconv.weight" in state["model"]
    path = tmp_path / "convnext_tiny_22k_224.pth"
    torch.save(state, path)
    backbone = create_backbone("convnext_tiny.fb_in22k", weights=path)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    assert backbone.feature_dim == 64
    torch.testing.assert_close(_features(backbone, x), _pre_logits(source, x), rtol=0, atol=1e-5)


def test_named_entries_declare_timms_preprocessing_and_widths():
    """The literal preprocessing and feature widths of the entries are what the bridge derives.

    Builds nothing big: widths come from each architecture's config (timm's model args).
    """
    for name in NAMED:
        spec = REGISTRY[name]
        fields = timm_bridge.preprocess_fields(timm_bridge.data_config(spec.timm))
        assert backbones.Preprocess(**fields) == spec.preprocess, name
        assert spec.default_filename and spec.source, name
    widths = {"vit_base_patch32_clip_quickgelu_224": 512, "resnetv2_50x1_bit": 2048, "vit_small_patch14_dinov2": 384,
              "vit_base_patch16_224": 768, "convnext_tiny": 768}
    assert {REGISTRY[n].timm.model.split(".")[0]: REGISTRY[n].feature_dim for n in NAMED} == widths


def test_scratch_is_seeded_and_any_timm_name_builds():
    """``--weights scratch``: random init from the seed (the null baseline); the caller's RNG is untouched."""
    x = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(7))
    state = torch.random.get_rng_state()
    a = create_backbone(TINY_VIT, weights="scratch", seed=1)
    b = create_backbone(TINY_VIT, weights="scratch", seed=1)
    c = create_backbone(TINY_VIT, weights="scratch", seed=2)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(_features(a, x), _features(b, x)) and not torch.allclose(_features(a, x), _features(c, x))
    assert a.weights_path is None and a.seed == 1 and a.extra["timm"]["weights_format"] == "scratch"
    assert (a.preprocess.resize, a.preprocess.crop) == (math.floor(160 / 0.95), 160)  # timm: crop_pct 0.95


def test_image_size_rebuilds_a_vit_for_that_size(tmp_path):
    """``image_size`` builds a fixed-size ViT at that size (position grid resampled from the file)."""
    source = _randomise(timm.create_model("test_vit.r160_in1k", pretrained=False), seed=8)
    path = tmp_path / "test_vit.safetensors"
    save_file(dict(source.state_dict()), str(path))
    backbone = create_backbone(TINY_VIT, weights=path, image_size=64)
    assert backbone.model.net.patch_embed.img_size == (64, 64) and backbone.preprocess.crop == 64
    assert _features(backbone, torch.zeros(2, 3, 64, 64)).shape == (2, 64)


@pytest.mark.parametrize("case, message", [
    ("missing", r"does not exist; pass `weights` with the path"),
    ("no weights", r"needs `weights=PATH`, .* nothing is downloaded"),
    ("other architecture", r"does not fit timm model test_vit\.r160_in1k .*check that the backbone name is that of"),
    ("truncated safetensors", r"is not a readable safetensors file"),
    ("npz of another model", r"does not fit timm model test_vit\.r160_in1k"),
    ("torchscript", r"is a TorchScript archive"),
    ("unknown model", r"timm has no model 'test_vitt'; did you mean test_vit"),
    ("unknown tag", r"has no pretrained tag 'nosuch'"),
    ("hub source", r"must be a timm registry name"),
    ("bad pooling", r"unknown feature pooling 'mean'"),
    ("proj on a classifier", r"pooling 'proj' is CLIP's projected image embedding"),
    ("named entry without its file", r"needs its weights file dinov2_vits14_pretrain\.pth.*nothing is downloaded"),
])
def test_bad_files_and_names_are_one_sentence(tmp_path, monkeypatch, case, message):
    name, weights = TINY_VIT, None
    if case == "missing":
        weights = tmp_path / "nosuch.safetensors"
    elif case == "other architecture":
        weights = tmp_path / "convnext.safetensors"
        save_file(dict(timm.create_model("test_convnext.r160_in1k").state_dict()), str(weights))
    elif case == "truncated safetensors":
        weights = tmp_path / "cut.safetensors"
        save_file(dict(timm.create_model("test_vit.r160_in1k").state_dict()), str(weights))
        weights.write_bytes(weights.read_bytes()[:1000])
    elif case == "npz of another model":
        weights = tmp_path / "bit.npz"
        np.savez(weights, **{"resnet/root_block/standardized_conv2d/kernel": np.zeros((7, 7, 3, 64), np.float32)})
    elif case == "torchscript":
        weights = tmp_path / "ViT-B-32.pt"
        with warnings.catch_warnings():  # TorchScript is deprecated, and still what OpenAI released
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.save(torch.jit.script(nn.Linear(2, 2)), str(weights))
    elif case == "unknown model":
        name, weights = "timm/test_vitt", "scratch"
    elif case == "unknown tag":
        name, weights = "timm/test_vit.nosuch", "scratch"
    elif case == "hub source":
        name, weights = "timm/hf-hub:timm/test_vit.r160_in1k", "scratch"
    elif case == "bad pooling":
        name, weights = TINY_VIT + "@mean", "scratch"
    elif case == "proj on a classifier":
        name, weights = TINY_VIT + "@proj", "scratch"
    elif case == "named entry without its file":
        monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
        name = "dinov2_vits14.lvd142m"
    with pytest.raises(UserError, match=message) as info:
        create_backbone(name, weights=weights)
    text = str(info.value)
    assert "\n" not in text and text.count(". ") == 0 and text.endswith("."), text


def test_the_hub_is_offline_and_the_socket_guard_works(no_network):
    """After the bridge imports timm the hub client is offline; the guard itself catches a connection."""
    create_backbone(TINY_VIT, weights="scratch")
    import huggingface_hub.constants

    assert huggingface_hub.constants.HF_HUB_OFFLINE is True
    with pytest.raises(NetworkAttempt):
        socket.create_connection(("huggingface.co", 443), timeout=1)
    no_network.clear()  # the deliberate attempt above; the fixture checks that nothing else tried


def test_toolkit_checkpoint_rebuilds_a_timm_backbone(tmp_path):
    """``save_checkpoint(arch="timm")`` records the TimmSpec; the checkpoint rebuilds the same features."""
    source = create_backbone(TINY_VIT + "@avg", weights="scratch", seed=3)
    spec = timm_bridge.TimmSpec("test_vit.r160_in1k", pool="avg")
    path = save_checkpoint(tmp_path / "vit.pt", source.model, arch="timm", arch_kwargs=spec.to_dict(),
                           preprocess=source.preprocess, meta={"name": "tiny vit"})
    again = load_checkpoint(path)
    x = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(9))
    assert again.feature_dim == 64 and again.preprocess == source.preprocess
    torch.testing.assert_close(_features(again, x), _features(source, x), rtol=0, atol=0)


def test_extract_cli_on_avatars_records_the_timm_config(avatar_cache, tmp_path):
    """``biastransfer extract --backbone timm/<tiny> --weights FILE`` on the avatars; the store keeps the timm config."""
    from analyze.cli import main
    from extract.store import FeatureStore

    source = _randomise(timm.create_model("test_vit.r160_in1k", pretrained=False), seed=10)
    weights = tmp_path / "test_vit.safetensors"
    save_file(dict(source.state_dict()), str(weights))
    out = tmp_path / "avatars__tiny_vit.h5"
    code = main(["extract", "--dataset", "avatars", "--root", str(avatar_cache), "--backbone", TINY_VIT,
                 "--weights", str(weights), "--image-size", "32", "--out", str(out), "--device", "cpu",
                 "--batch-size", "200", "--workers", "0"])
    assert code == 0
    store = FeatureStore.open(out)
    config = store.provenance["backbone_config"]
    assert store.feature_dim == 64 and store.n_rows == 600
    assert config["timm"]["model"] == "test_vit.r160_in1k" and config["timm"]["model_kwargs"] == {"img_size": 32}
    assert config["timm"]["timm_version"] == timm.__version__ and config["weights_sha256"]
    features = store.features_float32()
    assert np.isfinite(features).all() and features.std(0).mean() > 0


def test_gelu_variant_of_a_quickgelu_clip_warns(tmp_path):
    """timm's vit_base_patch32_clip_224.openai uses GELU (its config notes QuickGELU): a file load warns
    and names the QuickGELU variant; the variant itself loads silently. Shrunk as the CLIP tests."""
    small = dict(embed_dim=64, depth=2, num_heads=2)
    path = tmp_path / "clip.safetensors"
    save_file(dict(timm.create_model("vit_base_patch32_clip_224.openai", **small).state_dict()), str(path))
    with pytest.warns(UserWarning, match=r"use timm/vit_base_patch32_clip_quickgelu_224\.openai"):
        timm_bridge.build(timm_bridge.TimmSpec("vit_base_patch32_clip_224.openai", model_kwargs=small), weights=path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        timm_bridge.build(timm_bridge.TimmSpec("vit_base_patch32_clip_quickgelu_224.openai", model_kwargs=small),
                          weights=path)


def test_pickled_objects_are_refused(tmp_path):
    """A .pth holding a pickled object (not tensors) is refused by weights_only=True, in one sentence."""
    path = tmp_path / "evil.pth"
    torch.save({"model": nn.Linear(2, 2)}, path)  # a module object, not a state dict
    with pytest.raises(UserError, match=r"cannot be loaded safely .*weights_only=True"):
        create_backbone(TINY_VIT, weights=path)


def test_clip_vit_b32_full_size_from_openai_state_dict(tmp_path):
    """clip_vit_b32.openai at its real size (width 768, 12 layers, 12 heads, 512-d projection):
    an OpenAI-layout state dict of OpenAI's architecture gives OpenAI's embedding through the registry."""
    ref = _randomise_openai(OpenAIVisionTransformer(224, 32, 768, 12, 12, 512), seed=11)
    path = tmp_path / "ViT-B-32.state_dict.pt"
    torch.save(_openai_state(ref), path)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        want = ref(x)
    del ref
    backbone = create_backbone("clip_vit_b32.openai", weights=path)
    assert backbone.feature_dim == 512
    torch.testing.assert_close(_features(backbone, x), want, rtol=0, atol=1e-4)
