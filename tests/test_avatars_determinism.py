"""Determinism of the avatar generator: seed and parameters fix every byte."""

import hashlib

import h5py
import numpy as np
import pytest

from extract.datasets.avatars import AvatarAdapter, RenderSpec, render_dataset

N, SIZE = 72, 32  # three chunks of 32, the last one partial


def _render(path, *, seed=0, workers=1, preset="celeba-like"):
    return render_dataset(path, spec=RenderSpec(n=N, size=SIZE, seed=seed, preset=preset, signal_sample=6), workers=workers, progress=False)


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    return _render(tmp_path_factory.mktemp("serial") / "avatars.h5", workers=1)


@pytest.fixture(scope="module")
def parallel(tmp_path_factory):
    return _render(tmp_path_factory.mktemp("parallel") / "avatars.h5", workers=2)


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_parallel_render_is_byte_identical_to_serial(serial, parallel):
    a, b = AvatarAdapter(serial), AvatarAdapter(parallel)
    np.testing.assert_array_equal(a.read_images(), b.read_images())
    assert a.metadata().equals(b.metadata())
    assert a.signal_strength == b.signal_strength
    assert _sha(serial) == _sha(parallel)  # no timestamps or worker traces in the file


def test_same_seed_again_gives_identical_file(serial, tmp_path):
    again = _render(tmp_path / "again.h5", workers=1)
    assert _sha(again) == _sha(serial)


def test_different_seed_gives_different_images_and_attributes(serial, tmp_path):
    other = _render(tmp_path / "other.h5", seed=1, workers=1)
    a, b = AvatarAdapter(serial), AvatarAdapter(other)
    assert not np.array_equal(a.read_images(), b.read_images())
    assert not a.metadata()[a.attributes].equals(b.metadata()[b.attributes])
    assert not a.metadata()["split"].equals(b.metadata()["split"])


def test_image_depends_on_its_index_only(serial, tmp_path):
    # A longer dataset with the same seed starts with the same attributes and pixels.
    longer = render_dataset(tmp_path / "longer.h5", spec=RenderSpec(n=N + 20, size=SIZE, seed=0, signal_sample=2), workers=1, progress=False)
    a, b = AvatarAdapter(serial), AvatarAdapter(longer)
    np.testing.assert_array_equal(a.read_images(), b.read_images(np.arange(N)))
    np.testing.assert_array_equal(a.metadata()[a.attributes].to_numpy(), b.metadata()[b.attributes].to_numpy()[:N])


def test_images_are_opaque_varied_rgb(serial):
    with h5py.File(serial, "r") as h5:
        images = h5["images"][()]
    assert images.shape == (N, SIZE, SIZE, 3) and images.dtype == np.uint8
    flat = images.reshape(N, -1)
    assert len({row.tobytes() for row in flat}) == N  # no two avatars alike
    # Backgrounds are nuisances: the corner pixel takes many colours.
    assert len({tuple(img[0, 0]) for img in images}) > N // 2
