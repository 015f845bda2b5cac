"""A small residual CNN for 32-128 px inputs, fast enough to train on a 2-core CPU.

ResNet-style: a 3x3 stem, then four stages of one basic block each (strides 1, 2, 2, 2),
then global average pooling. ``forward`` returns the pooled penultimate features
(``feature_dim`` = 8 * width); ``stages`` is exposed so finetuning can freeze the first k.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (projection when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class SmallCNN(nn.Module):
    """Residual CNN with widths (w, 2w, 4w, 8w); output: pooled features of size 8w.

    Parameters
    ----------
    width : int
        Channels of the first stage (default 16 gives 128-d features, ~0.7 M parameters).
    """

    def __init__(self, width: int = 16):
        super().__init__()
        self.width = width
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        widths = [width, 2 * width, 4 * width, 8 * width]
        strides = [1, 2, 2, 2]
        blocks, c_in = [], width
        for c_out, stride in zip(widths, strides):
            blocks.append(BasicBlock(c_in, c_out, stride))
            c_in = c_out
        self.stages = nn.ModuleList(blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = widths[-1]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Spatial feature map of the last stage, (N, 8w, H/8, W/8)."""
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features, (N, feature_dim)."""
        return torch.flatten(self.pool(self.forward_features(x)), 1)
