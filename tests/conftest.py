"""Shared, session-scoped fixtures: one small avatar cache and one feature store.

Rendering and extraction take a few seconds, so tests that only need *a* realistic
cache or store share these instead of building their own.
"""

import pytest

from extract.backbones import create_backbone
from extract.datasets.avatars import AvatarAdapter, render_dataset
from extract.extraction import extract_features
from extract.store import FeatureStore


@pytest.fixture(scope="session")
def avatar_cache(tmp_path_factory):
    """600 avatars at 32 px (celeba-like preset, seed 0)."""
    path = tmp_path_factory.mktemp("avatars") / "avatars-600-32px-seed0.h5"
    return render_dataset(path, n=600, size=32, seed=0, workers=1, progress=False, signal_sample=4)


@pytest.fixture(scope="session")
def avatar_store(avatar_cache, tmp_path_factory):
    """A complete feature store of the cache with ``smallcnn.scratch`` at 32 px."""
    out = tmp_path_factory.mktemp("stores") / "avatars__smallcnn.scratch.h5"
    backbone = create_backbone("smallcnn.scratch", image_size=32)
    extract_features(AvatarAdapter(avatar_cache), backbone, out, batch_size=128, device="cpu", progress=False)
    return FeatureStore.open(out)
