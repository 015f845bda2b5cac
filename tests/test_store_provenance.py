"""A store's width and backbone name must agree with the backbone config it records."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

from extract.errors import UserError
from extract.store.reader import FeatureStore


def _copy(src, dst, edit):
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as h5:
        edit(h5)
    return dst


def cut_width(h5):
    """Keep 64 of the 128 feature columns and edit feature_dim to match (backbone_config untouched)."""
    kept = h5["features"][:, :64]
    del h5["features"]
    h5.create_dataset("features", data=kept)
    h5.attrs["feature_dim"] = np.int64(64)


def rename_backbone(h5):
    h5.attrs["backbone_name"] = "resnet18.tv_in1k"


def test_the_shared_store_is_consistent(avatar_store):
    config = avatar_store.provenance["backbone_config"]
    assert config["feature_dim"] == avatar_store.feature_dim == 128 and config["name"] == "smallcnn.scratch"


def test_a_cut_store_is_refused(avatar_store, tmp_path):
    path = _copy(avatar_store.path, tmp_path / "cut.h5", cut_width)
    with pytest.raises(UserError) as info:
        FeatureStore.open(path)
    message = str(info.value)
    assert "\n" not in message and message.endswith(".")
    assert ("has 64 features per image, but its backbone_config records smallcnn.scratch with 128; "
            "the file was edited or damaged, so re-extract it") in message


def test_a_renamed_backbone_is_refused(avatar_store, tmp_path):
    path = _copy(avatar_store.path, tmp_path / "renamed.h5", rename_backbone)
    with pytest.raises(UserError, match=r"names backbone 'resnet18\.tv_in1k' but its backbone_config records "
                                        r"'smallcnn\.scratch'; the file was edited or damaged, so re-extract it\."):
        FeatureStore.open(path)


def test_a_config_without_width_is_refused(avatar_store, tmp_path):
    def drop_width(h5):
        config = json.loads(h5.attrs["backbone_config"])
        del config["feature_dim"]
        h5.attrs["backbone_config"] = json.dumps(config)

    path = _copy(avatar_store.path, tmp_path / "nowidth.h5", drop_width)
    with pytest.raises(UserError, match=r"its backbone_config lacks feature_dim"):
        FeatureStore.open(path)
