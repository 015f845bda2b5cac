"""Folder-per-concept sets: sorted, resized to one square size, offline, inside the root."""

import numpy as np
import pytest
from PIL import Image, ImageOps

from analyze.association.concepts import load_concept_folders
from extract.errors import UserError
from tests.fake_trees import write_image


@pytest.fixture
def root(tmp_path):
    for i in (2, 0, 1):
        write_image(tmp_path / "car" / f"{i:03d}.png", seed=i, size=12)
    write_image(tmp_path / "car+man" / "b.JPG", seed=5, size=10)
    write_image(tmp_path / "car+man" / "a.jpeg", seed=6, size=16)
    (tmp_path / "car+man" / "notes.txt").write_text("not an image")
    write_image(tmp_path / ".hidden" / "x.png", seed=7)
    return tmp_path


def test_every_concept_folder_in_sorted_order(root):
    sets = load_concept_folders(root, image_size=8)
    assert sets.names == ["car", "car+man"]
    assert sets.ids["car"] == ("car/000.png", "car/001.png", "car/002.png")
    assert sets.ids["car+man"] == ("car+man/a.jpeg", "car+man/b.JPG")
    assert sets["car"].shape == (3, 8, 8, 3) and sets["car"].dtype == np.uint8
    with Image.open(root / "car+man" / "a.jpeg") as image:
        expected = ImageOps.fit(image.convert("RGB"), (8, 8), method=Image.Resampling.BICUBIC)
    np.testing.assert_array_equal(sets["car+man"][0], np.asarray(expected))
    assert sets.source == {"kind": "folder", "root": str(root), "image_size": 8}


def test_only_the_named_concepts_are_read(root):
    sets = load_concept_folders(root, names=["car+man"], image_size=8)
    assert sets.names == ["car+man"]


@pytest.mark.parametrize("names, pattern", [
    (["boat"], r"concept folder .*boat does not exist \(found \['car', 'car\+man'\]\)"),
    (["../car"], "escapes the dataset root"),
])
def test_missing_or_escaping_concepts_are_user_errors(root, names, pattern):
    with pytest.raises(UserError, match=pattern):
        load_concept_folders(root, names=names)


def test_bad_roots_and_empty_folders_are_user_errors(root, tmp_path_factory):
    with pytest.raises(UserError, match=r"is not a folder.*<root>/<concept>/<image>"):
        load_concept_folders(root / "missing")
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(UserError, match="has no concept folder"):
        load_concept_folders(empty)
    (root / "boat").mkdir()
    with pytest.raises(UserError, match="holds no .png/.jpg/.jpeg image"):
        load_concept_folders(root, names=["boat"])
    with pytest.raises(UserError, match="image_size"):
        load_concept_folders(root, image_size=4)


def test_links_out_of_the_root_are_refused(root, tmp_path_factory):
    outside = write_image(tmp_path_factory.mktemp("outside") / "secret.png")
    (root / "car" / "003.png").symlink_to(outside)
    with pytest.raises(UserError, match="links outside the concept root"):
        load_concept_folders(root, names=["car"])


def test_corrupt_image_is_a_user_error(root):
    (root / "car" / "003.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="corrupt or not an image"):
        load_concept_folders(root, names=["car"])
