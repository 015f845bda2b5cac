"""Shared fixtures: one small avatar cache and one feature store (session-scoped), and torch on one thread.

Rendering and extraction take a few seconds, so tests that only need *a* realistic
cache or store share these instead of building their own.

A module opts in to one torch thread with
``pytestmark = pytest.mark.usefixtures("one_torch_thread")`` (each test) or
``"one_torch_thread_per_module"`` (its module-scoped fixtures too).
"""

import pytest
import torch

from extract.backbones import create_backbone
from extract.datasets.avatars import AvatarAdapter, RenderSpec, render_dataset
from extract.extraction import ExtractOptions, extract_features
from extract.store.reader import FeatureStore


def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def one_torch_thread():
    """Torch on one thread during the test, its thread count restored after.

    Steady on a shared machine, and CPU arithmetic is bit-repeatable only at a fixed thread count.
    """
    yield from _one_torch_thread()


@pytest.fixture(scope="module")
def one_torch_thread_per_module():
    """As ``one_torch_thread``, from before the module's first fixture to after its last test."""
    yield from _one_torch_thread()


@pytest.fixture(scope="session")
def avatar_cache(tmp_path_factory):
    """600 avatars at 32 px (celeba-like preset, seed 0)."""
    path = tmp_path_factory.mktemp("avatars") / "avatars-600-32px-seed0.h5"
    return render_dataset(path, spec=RenderSpec(n=600, size=32, seed=0, signal_sample=4), workers=1, progress=False)


@pytest.fixture(scope="session")
def avatar_store(avatar_cache, tmp_path_factory):
    """A complete feature store of the cache with ``smallcnn.scratch`` at 32 px."""
    out = tmp_path_factory.mktemp("stores") / "avatars__smallcnn.scratch.h5"
    backbone = create_backbone("smallcnn.scratch", image_size=32)
    extract_features(AvatarAdapter(avatar_cache), backbone, out, options=ExtractOptions(batch_size=128, device="cpu", progress=False))
    return FeatureStore.open(out)
