"""Grid selection: the lowest mean validation loss over replicates, invalid settings, config checks."""

import math

import pandas as pd
import pytest

from analyze.finetune.search import FinetuneConfig, select_setting
from extract.errors import UserError


def _trials(rows):
    return pd.DataFrame(rows, columns=["lr", "weight_decay", "seed", "val_loss"])


def test_lowest_mean_wins_over_best_single_trial():
    # (0.1, 0): the single best trial (0.10) but a bad twin -> mean 0.45.
    # (0.01, 0): never the best trial, lowest mean 0.30. The released code's rank rule and a
    # "best trial" rule both pick (0.1, 0); the intended rule picks (0.01, 0).
    trials = _trials([
        (0.1, 0.0, 0, 0.10), (0.1, 0.0, 1, 0.80),
        (0.01, 0.0, 0, 0.29), (0.01, 0.0, 1, 0.31),
        (0.001, 0.0, 0, 0.50), (0.001, 0.0, 1, 0.40),
    ])
    chosen = select_setting(trials)
    assert (chosen.lr, chosen.weight_decay) == (0.01, 0.0)
    summary = chosen.summary.set_index(["lr", "weight_decay"])
    assert summary.loc[(0.1, 0.0), "mean_val_loss"] == pytest.approx(0.45)
    assert summary.loc[(0.01, 0.0), "sd_val_loss"] == pytest.approx(pd.Series([0.29, 0.31]).std())
    assert list(summary["n_replicates"]) == [2, 2, 2]


def test_weight_decay_is_part_of_the_setting():
    trials = _trials([(0.1, 1e-4, 0, 0.5), (0.1, 1e-4, 1, 0.5), (0.1, 1e-3, 0, 0.4), (0.1, 1e-3, 1, 0.45)])
    assert select_setting(trials).weight_decay == 1e-3


def test_a_diverged_replicate_invalidates_its_setting():
    trials = _trials([(0.5, 0.0, 0, 0.01), (0.5, 0.0, 1, math.inf), (0.05, 0.0, 0, 0.6), (0.05, 0.0, 1, 0.7)])
    chosen = select_setting(trials)
    assert chosen.lr == 0.05
    assert list(chosen.summary["valid"]) == [False, True]


def test_nan_counts_as_diverged_and_ties_go_to_the_first_setting():
    trials = _trials([(0.3, 0.0, 0, float("nan")), (0.2, 0.0, 0, 0.5), (0.1, 0.0, 0, 0.5)])
    assert select_setting(trials).lr == 0.2


def test_no_valid_setting_is_a_clear_error():
    trials = _trials([(1.0, 0.0, 0, math.inf), (2.0, 0.0, 0, float("nan"))])
    with pytest.raises(UserError, match="smaller learning rates"):
        select_setting(trials)
    with pytest.raises(UserError):
        select_setting(_trials([]))


def test_config_grid_and_validation():
    config = FinetuneConfig(lrs=(0.1, 0.01), weight_decays=(0.0, 1e-4), epochs=3)
    grid = [(s.lr, s.weight_decay, s.epochs, s.batch_size, s.momentum) for s in config.settings()]
    assert grid == [(0.1, 0.0, 3, 64, 0.9), (0.1, 1e-4, 3, 64, 0.9), (0.01, 0.0, 3, 64, 0.9), (0.01, 1e-4, 3, 64, 0.9)]
    assert config.to_dict()["lrs"] == [0.1, 0.01]
    for bad in (dict(lrs=()), dict(lrs=(0.0,)), dict(lrs=(-1.0,)), dict(weight_decays=(-1e-4,)),
                dict(epochs=0), dict(batch_size=1), dict(freeze=-1), dict(momentum=1.0), dict(lrs=("x",))):
        with pytest.raises(UserError):
            FinetuneConfig(**bad)
