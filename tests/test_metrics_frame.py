"""GroupReport against fairlearn's MetricFrame."""

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame
from fairlearn.metrics import false_positive_rate as fl_fpr
from fairlearn.metrics import selection_rate as fl_selection_rate
from fairlearn.metrics import true_positive_rate as fl_tpr
from sklearn.metrics import accuracy_score, roc_auc_score

from analyze import metrics as M
from extract.errors import UserError

OURS = {"fpr": M.false_positive_rate, "tpr": M.true_positive_rate,
        "selection": M.selection_rate, "accuracy": M.accuracy}
THEIRS = {"fpr": fl_fpr, "tpr": fl_tpr, "selection": fl_selection_rate,
          "accuracy": accuracy_score}


def sample(seed, n=120, n_groups=3):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 2, n), rng.integers(0, 2, n),
            rng.choice(["a", "b", "c"][:n_groups], n), rng.integers(0, 2, n))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_metricframe(seed):
    y, y_pred, sf, _ = sample(seed)
    ours = M.GroupReport(metrics=OURS, y_true=y, y_pred=y_pred, sensitive_features=sf)
    theirs = MetricFrame(metrics=THEIRS, y_true=y, y_pred=y_pred, sensitive_features=sf)
    expected_by_group = theirs.by_group.astype(float)
    expected_by_group.columns = list(OURS)
    pd.testing.assert_frame_equal(ours.by_group, expected_by_group, atol=1e-12, rtol=0)
    np.testing.assert_allclose(ours.overall.to_numpy(), theirs.overall.to_numpy(float), atol=1e-12)
    for method in ("between_groups", "to_overall"):
        np.testing.assert_allclose(ours.difference(method=method).to_numpy(),
                                   theirs.difference(method=method).to_numpy(float), atol=1e-12)
        np.testing.assert_allclose(ours.ratio(method=method).to_numpy(),
                                   theirs.ratio(method=method).to_numpy(float), atol=1e-12)
    np.testing.assert_allclose(ours.group_min().to_numpy(), theirs.group_min().to_numpy(float))
    np.testing.assert_allclose(ours.group_max().to_numpy(), theirs.group_max().to_numpy(float))
    assert ours.by_group.index.name == theirs.by_group.index.name == "sensitive_feature_0"
    assert ours.reasons.empty


def test_several_sensitive_features_and_scores():
    y, _, sf, s2 = sample(4, n=200)
    scores = np.random.default_rng(4).normal(size=200) + y
    features = pd.DataFrame({"site": sf, "gender": s2})
    ours = M.GroupReport(metrics={"auc": M.roc_auc}, y_true=y, y_pred=scores,
                         sensitive_features=features)
    theirs = MetricFrame(metrics={"auc": roc_auc_score}, y_true=y, y_pred=scores,
                         sensitive_features=features)
    assert list(ours.by_group.index.names) == ["site", "gender"]
    np.testing.assert_allclose(ours.by_group["auc"].to_numpy(),
                               theirs.by_group["auc"].to_numpy(float), atol=1e-12)
    assert ours.difference()["auc"] == pytest.approx(theirs.difference()["auc"], abs=1e-12)


def test_single_callable_gives_scalars_like_fairlearn():
    y, y_pred, sf, _ = sample(5)
    ours = M.GroupReport(metrics=M.false_positive_rate, y_true=y, y_pred=y_pred,
                         sensitive_features=pd.Series(sf, name="site"))
    theirs = MetricFrame(metrics=fl_fpr, y_true=y, y_pred=y_pred,
                         sensitive_features=pd.Series(sf, name="site"))
    assert np.ndim(ours.overall) == 0
    assert ours.overall == pytest.approx(theirs.overall, abs=1e-12)
    assert isinstance(ours.by_group, pd.Series) and ours.by_group.index.name == "site"
    assert ours.difference() == pytest.approx(theirs.difference(), abs=1e-12)
    assert ours.ratio() == pytest.approx(theirs.ratio(), abs=1e-12)


@pytest.mark.filterwarnings("ignore::analyze.metrics.base.UndefinedMetricWarning")
def test_undefined_group_value_is_nan_with_reason_and_propagates():
    y = np.array([1, 1, 0, 0, 1, 0])
    y_pred = np.array([1, 0, 1, 0, 1, 1])
    sf = np.array([0, 0, 1, 1, 1, 1])  # group 0 has no negatives
    with pytest.warns(M.UndefinedMetricWarning, match="no negatives"):
        report = M.GroupReport(metrics={"fpr": M.false_positive_rate, "auc": M.roc_auc},
                               y_true=y, y_pred=y_pred, sensitive_features=sf)
    assert np.isnan(report.by_group.loc[0, "fpr"])
    assert report.by_group.loc[1, "fpr"] == pytest.approx(2 / 3)
    assert np.isnan(report.difference()["fpr"]) and np.isnan(report.group_min()["fpr"])
    assert set(report.reasons["group"]) == {"sensitive_feature_0=0"}
    assert set(report.reasons["metric"]) == {"fpr", "auc"}  # auc: one class in group 0


def test_a_raising_metric_becomes_nan_with_its_message():
    def strict(y_true, y_pred):
        if len(set(y_true)) < 2:
            raise ValueError("needs both classes")
        return 1.0

    with pytest.warns(M.UndefinedMetricWarning, match="needs both classes"):
        report = M.GroupReport(metrics={"strict": strict}, y_true=[1, 1, 0, 1],
                               y_pred=[1, 1, 0, 0], sensitive_features=[0, 0, 1, 1])
    assert np.isnan(report.by_group.loc[0, "strict"]) and report.by_group.loc[1, "strict"] == 1.0
    assert "needs both classes" in report.reasons["reason"].iloc[0]


def test_bad_inputs_raise_user_errors():
    with pytest.raises(UserError, match="rows"):
        M.GroupReport(metrics=M.accuracy, y_true=[0, 1], y_pred=[0, 1],
                      sensitive_features=[0, 1, 1])
    report = M.GroupReport(metrics=M.accuracy, y_true=[0, 1], y_pred=[0, 1],
                           sensitive_features=[0, 1])
    with pytest.raises(UserError, match="method"):
        report.difference(method="pairwise")
