"""Diagnosis of a cell: each flag's rule, on records shaped like the runners' (no fitting)."""

import numpy as np
import pandas as pd
import pytest

from analyze.metrics.diagnosis import (
    FLAG_COLUMNS,
    FLAGS,
    at_edge,
    check_floor,
    diagnose_record,
    diagnose_salience,
    flag_counts,
    format_counts,
)
from extract.errors import UserError

HEALTHY = {"auc": 0.82, "fpr_group0": 0.1, "fpr_group1": 0.2, "selection_rate_group0": 0.4,
           "selection_rate_group1": 0.6, "n_predicted_positive": 50.0, "n_evaluated": 100.0, "threshold_miss": 0.0,
           "scores_constant": 0.0}


def probe_record(C=0.1, Cs=(0.01, 0.1, 1.0), converged=True, **metrics):
    return {"runner": "probe", "metrics": {**HEALTHY, **metrics},
            "hyperparameters": {"C": C, "Cs": list(Cs), "converged": converged, "n_iter": 12}}


def finetune_record(lr=0.01, lrs=(0.03, 0.01, 0.003), best_epoch=3, epochs=5, train=(0.7, 0.6, 0.5), **metrics):
    return {"runner": "finetune", "metrics": {**HEALTHY, **metrics},
            "hyperparameters": {"lr": lr, "grid": {"lrs": list(lrs)}, "best_epoch": best_epoch, "epochs": epochs},
            "finetune": {"train_curve": list(train), "val_curve": [0.7, 0.65, 0.6]}}


def test_a_healthy_probe_has_no_flag():
    diagnosis = diagnose_record(probe_record())
    assert not diagnosis.flagged and diagnosis.reasons == ()
    assert set(diagnosis.to_dict()["flags"]) == set(FLAGS)


@pytest.mark.parametrize("C, edge", [(1.0, "largest"), (0.01, "smallest")])
def test_a_grid_edge_C_is_flagged(C, edge):
    diagnosis = diagnose_record(probe_record(C=C))
    assert diagnosis.flags["c_at_edge"] and not diagnosis.flags["degenerate"]
    assert any(edge in r for r in diagnosis.reasons)
    # a one-value grid has no edge to sit at
    assert not diagnose_record(probe_record(C=1.0, Cs=(1.0,))).flags["c_at_edge"]


def test_all_negative_predictions_and_tied_threshold_are_degenerate():
    diagnosis = diagnose_record(probe_record(n_predicted_positive=0.0, fpr_group0=0.0, fpr_group1=0.0))
    assert diagnosis.flags["degenerate"] and "all 100 test predictions negative" in diagnosis.reasons
    tied = diagnose_record(probe_record(threshold_miss=7.0))
    assert tied.flags["degenerate"] and "by 7" in tied.columns()["diagnosis"]
    assert not diagnose_record(probe_record(threshold_miss=1.0)).flagged  # one row left to the tie break is fine


def test_old_records_are_judged_from_selection_rates_and_undefined_rates():
    old = {k: v for k, v in HEALTHY.items() if k not in ("n_predicted_positive", "n_evaluated", "threshold_miss")}
    record = {"runner": "probe", "metrics": {**old, "selection_rate_group0": 0.0, "selection_rate_group1": 0.0},
              "hyperparameters": {"C": 0.1, "Cs": [0.01, 0.1, 1.0]}}
    assert diagnose_record(record).flags["degenerate"]
    assert diagnose_record(probe_record(auc=float("nan"))).flags["degenerate"]
    assert diagnose_record(probe_record(fpr_group1=None)).flags["degenerate"]


def test_weak_task_uses_the_floor():
    assert diagnose_record(probe_record(auc=0.6)).flags["weak_task"]
    assert not diagnose_record(probe_record(auc=0.6), auc_floor=0.55).flags["weak_task"]
    with pytest.raises(UserError, match="AUC floor"):
        check_floor(1.2)


def test_probe_not_converged():
    diagnosis = diagnose_record(probe_record(converged=False))
    assert diagnosis.flags["not_converged"] and "did not converge" in diagnosis.reasons[0]


def test_finetune_edges_and_convergence():
    assert not diagnose_record(finetune_record()).flagged
    diagnosis = diagnose_record(finetune_record(lr=0.03, best_epoch=5))
    assert diagnosis.flags["lr_at_edge"] and diagnosis.flags["epochs_at_edge"] and not diagnosis.flags["c_at_edge"]
    assert diagnose_record(finetune_record(best_epoch=1)).flags["epochs_at_edge"]
    assert diagnose_record(finetune_record(train=(0.5, 0.6, 0.7))).flags["not_converged"]
    assert diagnose_record(finetune_record(train=(0.5, None))).flags["not_converged"]


def test_salience_diagnosis():
    details = {"aligned": {"C": 1.0}, "inverted": {"C": 0.1}}
    good = diagnose_salience([0.9, 0.8], [0.6, 0.7], details, Cs=(0.01, 0.1, 1.0))
    assert good.flags["c_at_edge"] and not good.flags["weak_task"]
    weak = diagnose_salience([0.55, 0.6], [0.52, 0.58], {}, auc_floor=0.65)
    assert weak.flags["weak_task"] and not weak.flags["degenerate"]
    constant = diagnose_salience([0.5, 0.9], [0.5, 0.6], {"aligned": {"lr": 0.05, "best_epochs": [6, 3]}},
                                 lrs=(0.05, 0.01), epochs=6)
    assert constant.flags["degenerate"] and constant.flags["lr_at_edge"] and constant.flags["epochs_at_edge"]


def test_counts_from_records_and_from_a_table():
    records = [{"diagnosis": diagnose_record(probe_record(C=1.0)).to_dict()},
               {"diagnosis": diagnose_record(probe_record(auc=0.6, n_predicted_positive=0.0)).to_dict()},
               {"diagnosis": diagnose_record(probe_record()).to_dict()}]
    counts = flag_counts(records)
    assert counts == {"degenerate": 1, "c_at_edge": 1, "lr_at_edge": 0, "epochs_at_edge": 0, "not_converged": 0,
                      "weak_task": 1, "flagged": 2, "cells": 3}
    table = pd.DataFrame([diagnose_record(probe_record(C=c)).columns() for c in (0.01, 0.1, 1.0)])
    assert list(table.columns[:len(FLAG_COLUMNS)]) == list(FLAG_COLUMNS)
    assert flag_counts(table)["c_at_edge"] == 2
    assert format_counts(flag_counts(table)).endswith("; 2 cells flagged")


def test_at_edge():
    assert at_edge(1e-4, [1e-4, 1e-2, 100.0]) == "smallest"
    assert at_edge(np.float64(100.0), [1e-4, 1e-2, 100.0]) == "largest"
    assert at_edge(1e-2, [1e-4, 1e-2, 100.0]) is None
    assert at_edge(None, [1, 2]) is None
