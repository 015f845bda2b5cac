"""Test helper: a small learnable image bank and SmallCNN finetune nets that share one base.

The engine and training-rule tests train the same tiny networks on the same synthetic images.
"""

from __future__ import annotations

import numpy as np
import torch

from analyze.finetune.data import ImageBank
from analyze.finetune.train import FinetuneNet
from extract.backbones import Preprocess
from extract.models.smallcnn import SmallCNN

SIDE = 16
PRE = Preprocess(resize=SIDE, crop=SIDE, mean=(0.5,) * 3, std=(0.5,) * 3)


def synthetic(n=96, seed=1):
    """``(bank, labels)``: ``n`` random images, half of them with a darker red channel (the label)."""
    g = torch.Generator().manual_seed(seed)
    labels = (torch.arange(n) % 2).float()
    images = torch.randint(0, 256, (n, 3, SIDE, SIDE), generator=g, dtype=torch.uint8)
    images[labels == 1, 0] //= 2  # a learnable cue
    return ImageBank(images, np.arange(n)), labels


def small_net(seed, freeze_bn=True):
    """A width-4 SmallCNN finetune net; every net starts from one base (torch seed 123), ``seed`` draws its head."""
    torch.manual_seed(123)  # one base for every net
    return FinetuneNet(SmallCNN(width=4), 32, PRE, freeze_bn=freeze_bn, seed=seed)
