"""torchvision ResNets as feature extractors: the classifier is removed, keys unchanged.

:class:`ResNetFeatures` is torchvision's ``ResNet`` with ``fc`` replaced by an identity, so
``forward`` returns the pooled penultimate features (512-d for ResNet-18, 2048-d for
ResNet-50) and the state dict holds torchvision's keys (``conv1.weight``,
``layer1.0.bn1.running_mean``, ...) minus ``fc.*``. Weights are never downloaded here:
build with random init, then load a local file (see :mod:`extract.backbones`).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

RESNET_LAYERS = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
}


class ResNetFeatures(ResNet):
    """A torchvision ResNet whose ``forward`` gives pooled features (N, feature_dim).

    Parameters
    ----------
    depth : int
        18, 34, 50 or 101.
    zero_init_residual : bool
        torchvision's option: zero the last BN of each residual branch at init (used
        by some self-supervised recipes; irrelevant once weights are loaded).

    Attributes
    ----------
    feature_dim : int
        512 (ResNet-18/34) or 2048 (ResNet-50/101).
    stem : nn.Sequential
        conv1, bn1, relu, maxpool (a view on the registered modules).
    stages : list of nn.Module
        layer1..layer4, so finetuning can freeze the first k stages.
    """

    def __init__(self, depth: int = 50, *, zero_init_residual: bool = False):
        if depth not in RESNET_LAYERS:
            raise ValueError(f"ResNet depth must be one of {sorted(RESNET_LAYERS)}, got {depth}")
        block, layers = RESNET_LAYERS[depth]
        super().__init__(block, layers, zero_init_residual=zero_init_residual)
        self.depth = depth
        self.feature_dim = 512 * block.expansion
        self.fc = nn.Identity()

    @property
    def stem(self) -> nn.Sequential:
        return nn.Sequential(self.conv1, self.bn1, self.relu, self.maxpool)

    @property
    def stages(self) -> list[nn.Module]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map of layer4, (N, feature_dim, H/32, W/32)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in self.stages:
            x = stage(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features, (N, feature_dim)."""
        return torch.flatten(self.avgpool(self.forward_features(x)), 1)
