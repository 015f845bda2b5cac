"""Directional bias amplification: hand-computed cases and an independent loop implementation."""

import warnings
from fractions import Fraction

import numpy as np
import pytest

from analyze import metrics as M
from extract.errors import UserError


def loop_biasamp(tasks, attrs, preds, direction, tasks_train=None, attrs_train=None,
                 rows="any_label"):
    """Straightforward reading of the reference: exact fractions, sets of row indices."""
    if tasks_train is None:
        tasks_train, attrs_train = tasks, attrs
    n_rows, n_t = tasks_train.shape
    n_a = attrs_train.shape[1]
    keep = [i for i in range(n_rows)
            if rows == "all"
            or tasks_train[i].sum() > 0
            or (rows == "any_label" and attrs_train[i].sum() > 0)]
    n = len(keep)
    values = []
    for a in range(n_a):
        for t in range(n_t):
            has_t = {i for i in keep if tasks_train[i, t] == 1}
            has_a = {i for i in keep if attrs_train[i, a] == 1}
            p_t, p_a = Fraction(len(has_t), n), Fraction(len(has_a), n)
            diff = Fraction(len(has_t & has_a), n) - p_t * p_a
            y_at = (diff > 0) - (diff < 0)
            if direction == "A->T":
                cond = [i for i in range(len(tasks)) if attrs[i, a] == 1]
                predicted, actual = preds[cond, t], tasks[cond, t]
            else:
                cond = [i for i in range(len(tasks)) if tasks[i, t] == 1]
                predicted, actual = preds[cond, a], attrs[cond, a]
            if not cond:
                values.append(np.nan)
                continue
            values.append(y_at * (np.mean(predicted) - np.mean(actual)))
    return np.nanmean(values)


def small_case():
    # 4 women (y = 1,1,0,0) and 4 men (y = 1,0,0,0); task = y, attributes one-hot (w, m).
    y = np.array([1, 1, 0, 0, 1, 0, 0, 0])
    woman = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    tasks = y[:, None]
    attrs = np.stack([woman, 1 - woman], axis=1)
    return y, woman, tasks, attrs


def test_hand_computed_attribute_to_task():
    _, _, tasks, attrs = small_case()
    # P(w,t)=2/8 > P(w)P(t)=3/16 -> y_w=+1; men: y_m=-1.
    # women predicted 1,1,1,0: Δ_w = 3/4 - 1/2 = 1/4; men predicted all 0: Δ_m = 0 - 1/4.
    t_hat = np.array([1, 1, 1, 0, 0, 0, 0, 0])[:, None]
    value = M.directional_bias_amplification(tasks, attrs, t_hat, direction="A->T")
    assert value == pytest.approx(0.25, abs=1e-15)
    # predicting the labels exactly amplifies nothing
    assert M.directional_bias_amplification(tasks, attrs, tasks, direction="A->T") == 0.0


def test_hand_computed_task_to_attribute():
    _, _, tasks, attrs = small_case()
    # Positives: rows 0, 1 (women), 4 (man): P(w|t)=2/3. Predict "woman" for all three.
    a_hat = attrs.copy()
    a_hat[4] = [1, 0]
    value = M.directional_bias_amplification(tasks, attrs, a_hat, direction="T->A")
    assert value == pytest.approx(1 / 3, abs=1e-15)  # mean of (+1)(1/3) and (-1)(-1/3)


def test_independent_pair_counts_as_zero_and_empty_condition_drops_out():
    _, _, tasks, attrs = small_case()
    # An attribute every row has: P(i,t) = 3/8 = P(i)P(t) exactly, so its indicator is 0.
    independent = np.ones(8, dtype=int)
    never = np.zeros(8, dtype=int)  # empty conditioning set for A->T: drops out
    attrs3 = np.column_stack([attrs, independent, never])
    t_hat = np.array([1, 1, 1, 0, 0, 0, 0, 0])[:, None]
    pairs = M.directional_bias_amplification_pairs(tasks, attrs3, t_hat, direction="A->T")
    assert pairs.shape == (4, 1)
    assert pairs[2, 0] == 0.0 and np.isnan(pairs[3, 0])
    value = M.directional_bias_amplification(tasks, attrs3, t_hat, direction="A->T")
    assert value == pytest.approx((0.25 + 0.25 + 0.0) / 3, abs=1e-15)


@pytest.mark.parametrize("rows, expected", [("any_label", -1.0), ("task_label", 0.0), ("all", 1.0)])
def test_indicator_rows_follow_the_documented_filters(rows, expected):
    # Training rows (t, a): [1,1], [0,1], [1,0], [0,0], [0,0]
    # any_label keeps 3 rows: 1/3 - (2/3)(2/3) < 0; task_label keeps 2: 1/2 - (1)(1/2) = 0;
    # all 5 rows: 1/5 - (2/5)(2/5) > 0.
    tasks_train = np.array([[1], [0], [1], [0], [0]])
    attrs_train = np.array([[1], [1], [0], [0], [0]])
    tasks, attrs, t_hat = np.array([[0]]), np.array([[1]]), np.array([[1]])  # Δ = 1
    value = M.directional_bias_amplification(
        tasks, attrs, t_hat, direction="A->T",
        indicator=M.Indicator(task_labels=tasks_train, attribute_labels=attrs_train, rows=rows))
    assert value == expected
    assert loop_biasamp(tasks, attrs, t_hat, "A->T", tasks_train, attrs_train, rows) == expected


def random_labels(rng, n, k, p=0.4):
    return (rng.random((n, k)) < p).astype(int)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("direction", ["A->T", "T->A"])
@pytest.mark.parametrize("rows", ["any_label", "task_label", "all"])
def test_matches_loop_implementation_on_random_multilabel_data(seed, direction, rows):
    rng = np.random.default_rng(seed)
    n_t, n_a = 3, 4
    tasks, attrs = random_labels(rng, 30, n_t, 0.2), random_labels(rng, 30, n_a, 0.15)
    train_t, train_a = random_labels(rng, 50, n_t, 0.2), random_labels(rng, 50, n_a, 0.15)
    preds = random_labels(rng, 30, n_t if direction == "A->T" else n_a, 0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the loop's empty means
        for train in [(None, None), (train_t, train_a)]:
            ours = M.directional_bias_amplification(
                tasks, attrs, preds, direction=direction,
                indicator=M.Indicator(task_labels=train[0], attribute_labels=train[1], rows=rows))
            expected = loop_biasamp(tasks, attrs, preds, direction, *train, rows=rows)
            assert ours == pytest.approx(expected, abs=1e-12)


def test_vectorized_over_runs_with_masks_equals_loop():
    rng = np.random.default_rng(11)
    runs, n, m = 5, 40, 60
    y, s = rng.integers(0, 2, n), rng.integers(0, 2, n)
    y_pred = rng.integers(0, 2, (runs, n))
    y_train, s_train = rng.integers(0, 2, (runs, m)), rng.integers(0, 2, (runs, m))
    mask, train_mask = rng.random((runs, n)) < 0.8, rng.random((runs, m)) < 0.7
    ours = M.binary_bias_amplification(y, s, y_pred, direction="A->T", mask=mask,
                                       training=M.TrainingRows(y_true=y_train, group=s_train, mask=train_mask))
    assert ours.shape == (runs,)
    one_hot = lambda v: np.stack([1 - v, v], axis=1)  # noqa: E731
    for r in range(runs):
        keep, keep_train = mask[r], train_mask[r]
        expected = loop_biasamp(one_hot(y[keep]), one_hot(s[keep]), one_hot(y_pred[r, keep]),
                                "A->T", one_hot(y_train[r, keep_train]),
                                one_hot(s_train[r, keep_train]))
        assert ours[r] == pytest.approx(expected, abs=1e-12)


def test_binary_one_hot_equals_positive_columns():
    rng = np.random.default_rng(4)
    y, s = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    y = np.where(rng.random(200) < 0.3, s, y)  # associate y with s so no indicator is 0
    y_pred = np.where(rng.random(200) < 0.5, s, y)  # a model that amplifies
    binary = M.binary_bias_amplification(y, s, y_pred, direction="A->T")
    attrs = np.stack([1 - s, s], axis=1)
    positive_only = M.directional_bias_amplification(y[:, None], attrs, y_pred[:, None],
                                                     direction="A->T")
    assert binary == pytest.approx(positive_only, abs=1e-12)
    assert binary > 0


@pytest.mark.filterwarnings("ignore::analyze.metrics.base.UndefinedMetricWarning")
def test_degenerate_inputs_give_nan_with_reason():
    tasks, attrs, preds = np.array([[0], [0]]), np.array([[0], [0]]), np.array([[1], [0]])
    with pytest.warns(M.UndefinedMetricWarning, match="every \\(a, t\\) pair undefined"):
        assert np.isnan(M.directional_bias_amplification(tasks, attrs, preds, direction="A->T"))
    with pytest.warns(M.UndefinedMetricWarning, match="no training row"):
        value = M.directional_bias_amplification(
            np.array([[1]]), np.array([[1]]), np.array([[1]]), direction="A->T",
            indicator=M.Indicator(task_labels=np.zeros((3, 1), int), attribute_labels=np.zeros((3, 1), int)))
    assert np.isnan(value)


def test_bad_inputs_raise_user_error():
    with pytest.raises(UserError, match="one-hot"):
        M.directional_bias_amplification(np.zeros(3), np.zeros((3, 1)), np.zeros((3, 1)),
                                         direction="A->T")
    with pytest.raises(UserError, match="direction"):
        M.directional_bias_amplification(np.zeros((3, 1)), np.zeros((3, 1)), np.zeros((3, 1)),
                                         direction="sideways")
    with pytest.raises(UserError, match="both"):
        M.binary_bias_amplification([0, 1], [0, 1], [0, 1], direction="A->T", training=M.TrainingRows(y_true=[0, 1]))
