"""Multi-label probes in the batched engine, and domain-mix cells on two small real stores."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from analyze.metrics.intervals import replicate_ci
from analyze.probe.multilabel import (
    fit_multilabel_probes,
    DomainMixConfig,
    one_hot_groups,
    run_domain_mix_cells,
    source_metrics,
    summarize_over_seeds,
)
from analyze.results import collect
from analyze.results.records import read_record
from analyze.subsets import DomainMix
from analyze.subsets.core import SubsetSplit
from extract.errors import UserError
from extract.store.reader import FeatureStore
from extract.store.writer import StoreWriter, make_provenance

CLASSES = ["bed", "cup", "tv", "toaster"]
D = 12


def domain_data(n, *, seed, shift, income=False):
    """One class per row (toaster never), features = class signal + a domain-specific offset."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 3, size=n)
    centres = np.random.default_rng(100).normal(size=(3, D)) * 2.0
    # The domain moves class evidence to other directions, so the other domain's rows teach less.
    rotate = np.roll(np.eye(D), shift, axis=1)
    x = centres[label] @ rotate + rng.normal(size=(n, D))
    meta = {"image_id": [f"{seed}-{i}" for i in range(n)],
            "split": np.where(rng.random(n) < 0.3, "test", "train")}
    for j, c in enumerate(CLASSES):
        meta[c] = (label == j).astype(np.int8)
    if income:
        bucket = rng.integers(1, 3, size=n)
        meta["income_bucket_1"] = (bucket == 1).astype(np.int8)
        meta["income_bucket_2"] = (bucket == 2).astype(np.int8)
        meta["income_bucket_2"][:5] = meta["income_bucket_1"][:5] = -1
    return x.astype(np.float16), pd.DataFrame(meta)


def write_store(path, features, meta, *, dataset, backbone="smallcnn.scratch"):
    config = {"name": backbone, "feature_dim": D, "seed": 0, "weights_path": None, "weights_sha256": None,
              "preprocess": {"resize": 32, "crop": 32, "mean": [0.5] * 3, "std": [0.5] * 3,
                             "interpolation": "bilinear"}}
    provenance = make_provenance(dataset_name=dataset, manifest_hash="0" * 8, n_rows=len(features),
                                 backbone_config=config, extraction={"precision": "float32"})
    attributes = [c for c in meta.columns if c not in ("image_id", "split")]
    with StoreWriter.start(path, metadata=meta, attributes=attributes, provenance=provenance) as writer:
        writer.write(0, features)
        writer.finalize()
    return FeatureStore.open(path)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mix")
    return {"street": write_store(folder / "street.h5", *domain_data(500, seed=1, shift=0, income=True),
                                  dataset="dollarstreet"),
            "coco": write_store(folder / "coco.h5", *domain_data(700, seed=2, shift=4), dataset="coco")}


def test_probes_match_sklearn_and_unfitted_classes_are_constant():
    x, meta = domain_data(300, seed=3, shift=0)
    labels = meta[CLASSES].to_numpy()
    splits = [SubsetSplit(train=np.arange(0, 120), val=np.arange(120, 180)),
              SubsetSplit(train=np.arange(60, 200), val=np.arange(200, 240))]
    test = np.arange(240, 300)
    fit = fit_multilabel_probes(x.astype(np.float32), labels, splits, test=test, Cs=[0.1, 1.0])
    assert fit.scores.shape == (2, 60, 4) and fit.fitted.tolist() == [[True, True, True, False]] * 2
    assert np.isnan(fit.C[:, 3]).all() and np.isin(fit.C[:, :3], [0.1, 1.0]).all()
    for r, split in enumerate(splits):
        n = len(split.train)
        np.testing.assert_allclose(fit.scores[r, :, 3], np.log(0.5 / (n + 0.5)), rtol=1e-6)
        for c in range(3):
            ref = LogisticRegression(C=fit.C[r, c], tol=1e-10, max_iter=10000).fit(
                x[split.train].astype(np.float64), labels[split.train, c])
            np.testing.assert_allclose(fit.scores[r, :, c], ref.decision_function(x[test].astype(np.float64)),
                                       atol=2e-3)
    with pytest.raises(UserError, match="unknown"):
        fit_multilabel_probes(x, np.where(labels == 1, -1, labels), splits, test=test)


def test_one_hot_groups():
    meta = pd.DataFrame({"income_bucket_1": [1, 0, -1, 0], "income_bucket_3": [0, 1, -1, 0], "cup": [1, 1, 1, 1]})
    assert one_hot_groups(meta, "income_bucket_").tolist() == ["1", "3", None, None]
    assert one_hot_groups(meta, "region_") is None


def test_domain_mix_cells_records_and_direction(stores, tmp_path):
    specs = [DomainMix(("street", "coco"), share, n=60, seed=seed, targets=tuple(CLASSES))
             for share in (0.0, 1.0) for seed in (0, 1, 2)]
    records = run_domain_mix_cells(stores, specs, DomainMixConfig(tuple(CLASSES), k=2, Cs=(0.1, 1.0)), out=tmp_path)
    assert len(records) == 6 and len(list(tmp_path.glob("*.json"))) == 6
    record = read_record(next(tmp_path.glob("*.json")))
    assert record["spec"]["kind"] == "domain_mix" and record["sizes"]["n_train"] == 60
    assert record["hyperparameters"]["classes_fitted"] == 3
    metrics = record["metrics"]
    for key in ("top2_accuracy_street", "macro_ap_street", "top2_accuracy_coco", "macro_ap_coco",
                "top2_accuracy_street_income_bucket_1", "macro_ap_street_income_bucket_2"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert not any(k.startswith("top2_accuracy_coco_income") for k in metrics)
    street = stores["street"].metadata
    test = street["split"].to_numpy() == "test"
    assert record["rows"]["street"]["test"] == int(test.sum())
    table = collect(tmp_path)
    assert table["spec_kind"].eq("domain_mix").all() and sorted(table["share"].unique()) == [0.0, 1.0]
    assert table["dataset"].eq("dollarstreet+coco").all() and table["n_train"].eq(60).all()
    mean = table.groupby("share")["top2_accuracy_street"].mean()
    # Rows of the evaluated domain teach more than rows of the other one.
    assert mean[1.0] > mean[0.0] + 0.05
    ap = table.groupby("share")["macro_ap_coco"].mean()
    assert ap[0.0] > ap[1.0]
    summary = summarize_over_seeds(table, ["top2_accuracy_street"], by=["backbone", "share"])
    row = summary[summary["share"] == 1.0].iloc[0]
    assert row["backbone"] == "smallcnn.scratch"
    ci = replicate_ci(table.loc[table["share"] == 1.0, "top2_accuracy_street"].to_numpy())
    assert row["mean"] == pytest.approx(float(ci.estimate)) and row["low"] == pytest.approx(float(ci.low))
    assert row["seeds"] == 3
    assert run_domain_mix_cells(stores, specs, DomainMixConfig(tuple(CLASSES), k=2), out=tmp_path) == []  # all recorded


def test_masked_metrics_equal_the_metrics_of_each_replicates_rows():
    """The "unused" test rows: a per-replicate row mask gives what the replicate's own rows give."""
    rng = np.random.default_rng(4)
    y = np.zeros((60, 5), np.int8)
    y[np.arange(60), rng.integers(0, 4, 60)] = 1  # class 4 has no positive
    scores = rng.normal(size=(3, 60, 5)).astype(np.float32)
    groups = {"income_bucket_": np.array([None, "1", "2"] * 20, dtype=object)}
    mask = rng.random((3, 60)) < 0.7
    masked = source_metrics(y, scores, groups, k=2, name="ds", mask=mask)
    assert {"top2_accuracy_ds", "macro_ap_ds", "top2_accuracy_ds_income_bucket_1", "macro_ap_ds_income_bucket_2"} <= (
        set(masked))
    for r in range(3):
        alone = source_metrics(y[mask[r]], scores[r:r + 1, mask[r]], {p: g[mask[r]] for p, g in groups.items()},
                               k=2, name="ds")
        for name, values in alone.items():
            np.testing.assert_allclose(masked[name][r], values[0], rtol=1e-6)
    assert not np.allclose(masked["top2_accuracy_ds"], source_metrics(y, scores, groups, k=2, name="ds")[
        "top2_accuracy_ds"])


def test_group_metrics_add_up_to_the_overall(stores):
    spec = DomainMix(("street", "coco"), 0.5, n=80, seed=0, targets=tuple(CLASSES))
    (record,) = run_domain_mix_cells(stores, [spec], DomainMixConfig(tuple(CLASSES), k=1, Cs=(1.0,)))
    m = record["metrics"]
    meta = stores["street"].metadata
    test = meta["split"].to_numpy() == "test"
    n1 = int((test & (meta["income_bucket_1"].to_numpy() == 1)).sum())
    n2 = int((test & (meta["income_bucket_2"].to_numpy() == 1)).sum())
    n_unknown = int(test.sum()) - n1 - n2
    assert n1 > 0 and n2 > 0 and n_unknown > 0
    # hits overall = hits in bucket 1 + hits in bucket 2 + hits among rows of unknown bucket
    rest = m["top1_accuracy_street"] * test.sum() - m["top1_accuracy_street_income_bucket_1"] * n1 \
        - m["top1_accuracy_street_income_bucket_2"] * n2
    assert -1e-9 <= rest <= n_unknown + 1e-9 and abs(rest - round(rest)) < 1e-6


def test_bad_inputs(stores, tmp_path):
    spec = DomainMix(("street", "coco"), 0.5, n=40, seed=0)
    with pytest.raises(UserError, match="no feature store for source 'coco'"):
        run_domain_mix_cells({"street": stores["street"]}, [spec], DomainMixConfig(tuple(CLASSES)))
    with pytest.raises(UserError, match="lacks the class column"):
        run_domain_mix_cells(stores, [spec], DomainMixConfig((*CLASSES, "oven")))
    x, meta = domain_data(100, seed=5, shift=0)
    other = write_store(tmp_path / "other.h5", x, meta, dataset="coco", backbone="resnet18.imagenet")
    with pytest.raises(UserError, match="different backbones"):
        run_domain_mix_cells({"street": stores["street"], "coco": other}, [spec], DomainMixConfig(tuple(CLASSES)))
    with pytest.raises(UserError, match="different sources"):
        run_domain_mix_cells(stores, [spec, DomainMix(("coco", "street"), 0.5, n=40)], DomainMixConfig(tuple(CLASSES)))
