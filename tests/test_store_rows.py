"""Row-order checks between two stores of the same dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from extract.errors import UserError
from extract.store.reader import (
    FeatureStore,
    StoreWriter,
    check_same_rows,
    make_provenance,
)

D = 4


def _store(path, ids, *, dataset="fake", manifest="m1", backbone="smallcnn.scratch"):
    n = len(ids)
    meta = pd.DataFrame({"image_id": ids, "split": ["train"] * n, "a": np.zeros(n, np.int8)})
    config = {"name": backbone, "feature_dim": D, "seed": 0, "weights_sha256": None,
              "preprocess": {"resize": 32, "crop": 32, "mean": [0.5] * 3, "std": [0.5] * 3}}
    prov = make_provenance(dataset_name=dataset, manifest_hash=manifest, n_rows=n, backbone_config=config,
                           extraction={"precision": "float32"})
    with StoreWriter.start(path, metadata=meta, attributes=["a"], provenance=prov) as writer:
        writer.write(0, np.ones((n, D), np.float16))
        return FeatureStore.open(writer.finalize())


IDS = [f"id{i}" for i in range(10)]


def test_same_rows_pass(tmp_path):
    a = _store(tmp_path / "a.h5", IDS, backbone="smallcnn.scratch")
    b = _store(tmp_path / "b.h5", IDS, backbone="smallcnn_w32.scratch")
    check_same_rows(a, b)
    a.check_same_rows(b)


def test_permuted_rows_name_the_first_differing_position(tmp_path):
    permuted = IDS[:3] + [IDS[4], IDS[3]] + IDS[5:]
    a = _store(tmp_path / "a.h5", IDS)
    b = _store(tmp_path / "b.h5", permuted, manifest="m2")
    with pytest.raises(UserError, match=r"different orders \(row 3 is 'id3' vs 'id4'\)"):
        check_same_rows(a, b)


def test_other_dataset_is_refused(tmp_path):
    a = _store(tmp_path / "a.h5", IDS)
    with pytest.raises(UserError, match="holds dataset 'fake' but .* holds 'celeba'"):
        check_same_rows(a, _store(tmp_path / "b.h5", IDS, dataset="celeba"))
    other_copy = _store(tmp_path / "c.h5", IDS[:7] + ["x7", "x8", "x9", "x10"], manifest="m3")
    with pytest.raises(UserError, match=r"different images .*10 vs 11 rows, row 7 is 'id7' vs 'x7'"):
        check_same_rows(a, other_copy)
    shorter = _store(tmp_path / "d.h5", IDS[:8], manifest="m4")
    with pytest.raises(UserError, match="row 8 is 'id8' vs <no row>"):
        check_same_rows(a, shorter)


def test_same_ids_with_a_different_manifest_are_refused(tmp_path):
    a = _store(tmp_path / "a.h5", IDS)
    b = _store(tmp_path / "b.h5", IDS, manifest="relabelled")
    with pytest.raises(UserError, match="same images but different dataset manifests"):
        a.check_same_rows(b)
