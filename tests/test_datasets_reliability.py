"""Dataset reading that must not go silently wrong: 16-bit images, links out of the root, empty paths."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from extract.datasets import get_adapter
from extract.datasets.base import load_rgb
from extract.errors import UserError
from tests.fake_trees import write_csv, write_image

symlinks = pytest.mark.skipif(not hasattr(os, "symlink") or os.name == "nt", reason="needs POSIX symbolic links")


# -- image modes -------------------------------------------------------------------------------
def test_16_bit_grayscale_png_keeps_its_contrast(tmp_path):
    wide = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1040)  # 0 .. 65520, a ramp
    Image.fromarray(wide).save(tmp_path / "gray16.png")
    assert Image.open(tmp_path / "gray16.png").mode.startswith("I")  # really read as 16-bit
    rgb = np.asarray(load_rgb(tmp_path / "gray16.png"))
    assert rgb.dtype == np.uint8 and rgb.shape == (8, 8, 3)
    expected = np.rint(wide / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(rgb[..., 0], expected)  # not all 255 (Pillow's clipping)
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])
    assert rgb.min() == 0 and rgb.max() == 255 and (rgb == 255).mean() < 0.05


def test_16_bit_grayscale_matches_its_8_bit_version(tmp_path):
    eight = np.random.default_rng(0).integers(0, 256, size=(8, 8), dtype=np.uint8)
    Image.fromarray(eight.astype(np.uint16) * 257).save(tmp_path / "wide.png")
    Image.fromarray(eight).save(tmp_path / "narrow.png")
    np.testing.assert_array_equal(np.asarray(load_rgb(tmp_path / "wide.png")),
                                  np.asarray(load_rgb(tmp_path / "narrow.png")))


@pytest.mark.parametrize("mode", ["L", "P", "1", "LA", "RGBA"])
def test_other_modes_still_use_pillow_conversion(tmp_path, mode):
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)).convert(mode)
    image.save(tmp_path / "x.png")
    with Image.open(tmp_path / "x.png") as reread:
        expected = np.asarray(reread.convert("RGB"))
    np.testing.assert_array_equal(np.asarray(load_rgb(tmp_path / "x.png")), expected)


# -- symbolic links ----------------------------------------------------------------------------
@pytest.fixture
def linked_tree(tmp_path):
    """A manifest root with an inside image, links to a file and a folder outside it, and an inside link."""
    root, outside = tmp_path / "root", tmp_path / "secret"
    write_image(root / "imgs" / "a.png", seed=0)
    write_image(outside / "b.png", seed=1)
    (root / "imgs" / "file_link.png").symlink_to(outside / "b.png")
    (root / "folder_link").symlink_to(outside, target_is_directory=True)
    (root / "imgs" / "inside_link.png").symlink_to(root / "imgs" / "a.png")
    return root


@symlinks
@pytest.mark.parametrize("rel", ["imgs/file_link.png", "folder_link/b.png"], ids=["file link", "folder link"])
def test_links_leading_out_of_the_root_are_refused(linked_tree, rel):
    write_csv(linked_tree / "manifest.csv", ["path", "y"], [["imgs/a.png", 0], [rel, 1]])
    adapter = get_adapter("manifest", linked_tree)
    assert adapter.open_image(0).size == (8, 8)
    with pytest.raises(UserError) as info:
        adapter.open_image(1)
    message = str(info.value)
    assert "\n" not in message and message.endswith(".")
    assert f"image path '{rel}' leads outside the dataset root" in message and "symbolic link" in message
    with pytest.raises(UserError, match="leads outside the dataset root"):
        adapter.image_path(1)


@symlinks
def test_links_inside_the_root_are_followed(linked_tree):
    write_csv(linked_tree / "manifest.csv", ["path", "y"], [["imgs/a.png", 0], ["imgs/inside_link.png", 1]])
    adapter = get_adapter("manifest", linked_tree)
    np.testing.assert_array_equal(np.asarray(adapter.open_image(1)), np.asarray(adapter.open_image(0)))


@symlinks
def test_root_reached_through_a_link_still_works(linked_tree, tmp_path):
    (tmp_path / "alias").symlink_to(linked_tree, target_is_directory=True)
    write_csv(linked_tree / "manifest.csv", ["path", "y"], [["imgs/a.png", 0]])
    assert get_adapter("manifest", tmp_path / "alias").open_image(0).size == (8, 8)


@symlinks
def test_folder_adapter_refuses_a_class_folder_linked_from_outside(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "elsewhere"
    write_image(root / "cat" / "a.png", seed=0)
    write_image(outside / "b.png", seed=1)
    (root / "dog").symlink_to(outside, target_is_directory=True)
    adapter = get_adapter("folder", root)
    rows = adapter.metadata()["path"].tolist()
    assert "cat/a.png" in rows and "dog/b.png" in rows
    with pytest.raises(UserError, match=r"image path 'dog/b\.png' leads outside the dataset root"):
        adapter.open_image(rows.index("dog/b.png"))


# -- empty path cells --------------------------------------------------------------------------
def test_empty_path_cell_names_the_row(tmp_path):
    write_image(tmp_path / "imgs" / "a.png")
    write_csv(tmp_path / "manifest.csv", ["path", "image_id", "y"], [["imgs/a.png", "a", 0], ["", "b", 1]])
    with pytest.raises(UserError) as info:
        get_adapter("manifest", tmp_path).metadata()
    message = str(info.value)
    assert "\n" not in message and "IsADirectoryError" not in message
    assert "has an empty 'path' cell in row 2 after the header (image_id 'b')" in message


def test_blank_path_cell_without_image_ids(tmp_path):
    write_image(tmp_path / "imgs" / "a.png")
    write_image(tmp_path / "imgs" / "b.png")
    write_csv(tmp_path / "manifest.csv", ["path", "y"], [["imgs/a.png", 0], ["imgs/b.png", 1], ["  ", 0]])
    with pytest.raises(UserError, match=r"empty 'path' cell in row 3 after the header; fill in the image path"):
        get_adapter("manifest", tmp_path).metadata()
