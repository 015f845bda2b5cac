"""Images decoded once: the bank's two decode paths agree, rows map to positions, bases load."""

import numpy as np
import pytest
import torch

from analyze.finetune.data import ImageBank, load_base
from extract.backbones import Preprocess, create_backbone
from extract.datasets.avatars import AvatarAdapter, RenderSpec, render_dataset
from extract.errors import UserError


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    path = render_dataset(tmp_path_factory.mktemp("avatars") / "a.h5", spec=RenderSpec(n=24, size=32, seed=0, preset="balanced", signal_sample=1), workers=1, progress=False)
    return AvatarAdapter(path)


class _OnlyOpenImage:
    """The same dataset without the in-memory fast path (like a JPEG folder)."""

    name = "slow"

    def __init__(self, inner):
        self.inner = inner

    def __len__(self):
        return len(self.inner)

    def open_image(self, i):
        return self.inner.open_image(i)


def test_both_decode_paths_give_the_same_images(adapter):
    pre = Preprocess(resize=16, crop=16)
    rows = np.array([20, 3, 7, 3])
    fast = ImageBank.from_adapter(adapter, pre, rows)
    slow = ImageBank.from_adapter(_OnlyOpenImage(adapter), pre, rows, num_workers=0)
    assert fast.images.shape == (3, 3, 16, 16) and fast.images.dtype == torch.uint8
    assert list(fast.rows) == [3, 7, 20] and torch.equal(fast.images, slow.images)


def test_take_gathers_by_dataset_position(adapter):
    pre = Preprocess(resize=32, crop=32)
    bank = ImageBank.from_adapter(adapter, pre, [5, 1, 9])
    expected = torch.from_numpy(adapter.read_images([9, 1])).permute(0, 3, 1, 2)
    assert torch.equal(bank.take([9, 1]), expected)
    assert bank.take([]).shape == (0, 3, 32, 32)
    for missing in ([2], [100], [-1]):
        with pytest.raises(UserError, match="not decoded"):
            bank.take(missing)


def test_load_base_sizes_and_architecture(adapter, tmp_path):
    scratch = load_base("smallcnn.scratch", native_size=32)
    assert scratch.preprocess.crop == 32  # a random-init base adopts the dataset's size
    assert (scratch.arch, scratch.arch_kwargs) == ("smallcnn", {"width": 16})
    wide, resnet = create_backbone("smallcnn_w32.scratch"), create_backbone("resnet18.scratch")
    assert (wide.arch, wide.arch_kwargs) == ("smallcnn", {"width": 32})
    assert (resnet.arch, resnet.arch_kwargs) == ("resnet18", {})
    assert load_base("smallcnn.scratch", image_size=24, native_size=32).preprocess.crop == 24
