"""W&R's measurements (analyze.reproduce.measures) against direct computations."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix, roc_auc_score

from analyze.reproduce.measures import (
    competence_note,
    natural_test_rows,
    orientation,
    oriented_column,
    paper_gap,
    paper_skew,
    paper_value,
    skewz_spec,
    validation_threshold_gaps,
)
from extract.errors import UserError


def _data(seed=0, n=4000):
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 2, n)
    y = (rng.random(n) < np.where(s == 1, 0.2, 0.45)).astype(int)  # y associated with s = 0
    scores = y + 0.8 * rng.standard_normal(n) - 0.3 * s
    return y, s, scores


def _rates(y, pred, s, g):
    tn, fp, fn, tp = confusion_matrix(y[s == g], pred[s == g], labels=[0, 1]).ravel()
    return fp / (fp + tn), tp / (tp + fn)


def test_orientation_and_gap_against_confusion_matrices():
    y, s, scores = _data()
    assert orientation(y, s) == -1  # P(s=1 | y=1) < P(s=1)
    assert orientation(y, 1 - s) == 1
    pred = scores > np.median(scores)
    (fpr0, tpr0), (fpr1, tpr1) = _rates(y, pred, s, 0), _rates(y, pred, s, 1)
    oriented, raw = paper_gap(y, pred, s, condition="natural", sign=-1)
    assert raw == pytest.approx(fpr1 - fpr0) and oriented == pytest.approx(fpr0 - fpr1)
    oriented, raw = paper_gap(y, pred, s, condition="skewz", sign=-1)  # skewz: the fixed group, unoriented
    assert oriented == raw == pytest.approx(fpr1 - fpr0)
    assert paper_gap(y, pred, s, condition="natural", sign=-1, rate="tpr")[1] == pytest.approx(tpr1 - tpr0)
    with pytest.raises(UserError, match="`rate`"):
        paper_gap(y, pred, s, condition="natural", sign=1, rate="ppv")


def test_skew_is_the_papers_over_all_images():
    y, s, _ = _data()
    assert paper_skew(y, s, condition="natural") == pytest.approx(abs(s[y == 1].mean() - s.mean()))
    assert paper_skew(y, s, condition="skewz") == pytest.approx(abs(0.8 - s.mean()))
    with pytest.raises(UserError, match="`condition`"):
        paper_skew(y, s, condition="skew")


def test_value_clipping_and_notes():
    assert paper_value(0.3, [0.1, 0.15, -0.2]).value == pytest.approx(2.0)
    assert paper_value(0.3, [0.1, 0.15]).difference == pytest.approx(0.15)
    assert paper_value(-0.1, [0.05, 0.2]).value == 0.0          # v_biased < 0 < v_control
    assert paper_value(0.1, [-0.05, -0.2]).value == 5.0         # v_biased > 0 > v_control
    both = paper_value(-0.2, [-0.1, -0.3])
    assert both.value == pytest.approx(2.0) and "both gaps negative" in both.note and both.difference == pytest.approx(-0.1)
    small = paper_value(0.05, [0.004, -0.1])
    assert small.value == pytest.approx(12.5) and "unstable" in small.note
    from analyze.effects.models import paper_value as effects_value  # the effects model's Value agrees

    for vb, vc in ((0.3, 0.15), (-0.1, 0.2), (0.1, -0.05), (-0.2, -0.1)):
        assert paper_value(vb, [vc]).value == pytest.approx(float(effects_value(vb, vc)))


def test_skewz_spec_puts_the_fixed_group_at_80_percent():
    rng = np.random.default_rng(1)
    meta = pd.DataFrame({"eyewear": rng.integers(0, 2, 3000), "dark_skin": rng.integers(0, 2, 3000),
                         "split": "train"})
    split = skewz_spec("eyewear").split_indices(meta)
    rows = meta.iloc[np.concatenate([split.train, split.val])]
    assert rows.loc[rows["eyewear"] == 1, "dark_skin"].mean() == pytest.approx(0.8, abs=0.01)
    assert rows.loc[rows["eyewear"] == 0, "dark_skin"].mean() == pytest.approx(0.2, abs=0.01)


def test_resampled_test_set_and_validation_threshold():
    y, s, scores = _data(2)
    split = np.where(np.arange(len(y)) % 4 == 0, "test", np.where(np.arange(len(y)) % 4 == 1, "val", "train"))
    meta = pd.DataFrame({"t": y, "g": s, "split": split})
    rows = natural_test_rows(meta, "t", "g", seed=3)
    natural = s[y == 1].mean()  # over every image
    test = meta.iloc[rows]
    assert (test["split"] == "test").all() and test["t"].mean() == pytest.approx(0.5, abs=0.01)
    assert test["g"].mean() == pytest.approx(0.5, abs=0.01)
    assert test.loc[test["t"] == 1, "g"].mean() == pytest.approx(natural, abs=0.01)
    val = split == "val"
    out = validation_threshold_gaps((y[rows], s[rows], scores[rows]), (y[val], scores[val]), sign=-1)
    threshold = np.sort(scores[val])[-(int(y[val].sum()) + 1)]  # vary_corr.py's rule on the validation set
    pred = scores[rows] > threshold
    (fpr0, tpr0), (fpr1, tpr1) = _rates(y[rows], pred, s[rows], 0), _rates(y[rows], pred, s[rows], 1)
    assert out["threshold"] == pytest.approx(threshold)
    assert out["tpr_gap"] == pytest.approx(tpr0 - tpr1) and out["tpr_gap_raw"] == pytest.approx(tpr1 - tpr0)
    assert out["fpr_gap"] == pytest.approx(fpr0 - fpr1)
    assert out["auc"] == pytest.approx(roc_auc_score(y[rows], scores[rows]))


def test_oriented_column_and_competence_note():
    table = pd.DataFrame({"tpr_gap": [0.2, 0.2], "natural_over_represented_group": [1, 0]})
    assert oriented_column(table, "tpr_gap").tolist() == [0.2, -0.2]
    assert competence_note(0.9, 0.88, name_a="biased", name_b="control") == "AUC biased 0.900, control 0.880"
    note = competence_note(0.9, 0.7, name_a="biased", name_b="scratch")
    assert "(scratch) larger gap may be a competence effect" in note


def test_target_table_and_paper_gap_column_over_all_images():
    from analyze.reproduce.measures import paper_condition, paper_gap_column, target_table

    y, s, _ = _data(4)
    meta = pd.DataFrame({"t": y, "g": s, "split": np.where(np.arange(len(y)) % 3, "train", "test")})
    meta.loc[:9, "t"] = -1  # unknown labels are left out
    table = target_table(meta, ["t"], "g", saliency={"t": 0.6})
    known = meta[meta["t"] >= 0]
    assert table.loc["t", "orientation"] == -1
    assert table.loc["t", "skew_natural"] == pytest.approx(abs(known.loc[known["t"] == 1, "g"].mean() - known["g"].mean()))
    assert table.loc["t", "skew_skewz"] == pytest.approx(abs(0.8 - known["g"].mean()))
    assert table.loc["t", "saliency"] == 0.6
    cells = pd.DataFrame({"target": ["t"] * 3, "spec_kind": ["natural", "skew", "correlation"],
                          "p": [np.nan, 0.8, np.nan], "fpr_gap": [0.1, 0.1, 0.1]})
    assert paper_condition(cells).tolist() == ["natural", "skewz", ""]
    gaps = paper_gap_column(cells, table["orientation"])
    assert gaps.iloc[0] == pytest.approx(-0.1) and gaps.iloc[1] == pytest.approx(0.1) and np.isnan(gaps.iloc[2])
