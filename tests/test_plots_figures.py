"""Figures: PNG and SVG written for every kind; the replicate interval; bad input."""

import argparse

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from scipy import stats

import analyze.cli.plot as plots_cli
import analyze.report.plots as plots
from analyze.effects.models import run_effects
from analyze.metrics.intervals import replicate_ci
from extract.errors import UserError
from tests.test_effects_table import synthetic_results



@pytest.fixture(scope="module")
def table():
    return synthetic_results(n_targets=2, seeds=3, sizes=(1024,))


def _check_files(paths, prefix):
    assert [p.name for p in paths] == [prefix.name + ".png", prefix.name + ".svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[0].stat().st_size > 5000
    assert b"<svg" in paths[1].read_bytes()[:2000]
    assert not list(prefix.parent.glob(".*.partial"))  # atomic: no temp files left


def test_replicate_summary_equals_the_formula_and_metrics_ci():
    data = pd.DataFrame({"g": ["a"] * 4 + ["b"] * 3 + ["c"], "v": [1.0, 2.0, 4.0, 7.0, 0.5, 0.25, np.nan, 3.0]})
    summary = plots.replicate_summary(data, ["g"], "v").set_index("g")
    values = np.array([1.0, 2.0, 4.0, 7.0])
    half = stats.t.ppf(0.975, 3) * values.std(ddof=1) / np.sqrt(4)  # t interval with k - 1 df
    assert summary.loc["a", "ci_low"] == pytest.approx(values.mean() - half)
    assert summary.loc["a", "ci_high"] == pytest.approx(values.mean() + half)
    reference = replicate_ci(values)
    assert (summary.loc["a", "ci_low"], summary.loc["a", "ci_high"]) == pytest.approx((reference.low, reference.high))
    assert summary.loc["b", "k"] == 2 and summary.loc["b", "mean"] == pytest.approx(0.375)
    assert np.isnan(summary.loc["c", "ci_low"])  # one replicate: no interval


def test_correlation_size_and_tradeoff_figures(table, tmp_path):
    _check_files(plots.plot_correlation(table, tmp_path / "corr"), tmp_path / "corr")
    sizes = synthetic_results(n_targets=1, seeds=2, sizes=(64, 256, 1024))
    _check_files(plots.plot_size(sizes, tmp_path / "size", spec_kind="correlation"), tmp_path / "size")
    _check_files(plots.plot_tradeoff(table, tmp_path / "trade"), tmp_path / "trade")


def test_coefficient_and_salience_figures(tmp_path):
    effects, _ = run_effects(synthetic_results(n_targets=5, seeds=2), model="paper")
    _check_files(plots.plot_coefficients(effects, tmp_path / "coef"), tmp_path / "coef")
    salience = pd.DataFrame({"target": list("abcde"), "salience": [0.1, 0.3, 0.2, 0.5, 0.4],
                             "true_log_ratio": [-1.0, 0.5, 0.0, 2.0, 1.0]})
    salience = salience.assign(ci_low=salience["salience"] - 0.05, ci_high=salience["salience"] + 0.05)
    _check_files(plots.plot_salience(salience, tmp_path / "sal"), tmp_path / "sal")
    with pytest.raises(UserError, match="at least 3"):
        plots.plot_salience(salience.head(2), tmp_path / "x")


def test_missing_columns_and_empty_selections_are_user_errors(table, tmp_path):
    with pytest.raises(UserError, match="'fpr_gap_stereotype'"):
        plots.plot_correlation(table.drop(columns=["fpr_gap_stereotype"]), tmp_path / "x")
    with pytest.raises(UserError, match="'auc'"):
        plots.plot_tradeoff(table.drop(columns=["auc"]), tmp_path / "x")
    with pytest.raises(UserError, match="'ci_low'"):
        plots.plot_coefficients(pd.DataFrame({"term": ["a"], "coef": [1.0]}), tmp_path / "x")
    with pytest.raises(UserError, match="'true_log_ratio'"):
        plots.plot_salience(pd.DataFrame({"target": ["a"], "salience": [0.1], "ci_low": [0], "ci_high": [1]}),
                            tmp_path / "x")
    with pytest.raises(UserError, match="no rows"):
        plots.plot_size(table, tmp_path / "x", spec_kind="no_such_kind")


def test_plot_cli(table, tmp_path, capsys):
    path = tmp_path / "results.csv"
    table.to_csv(path, index=False)
    parser = argparse.ArgumentParser()
    plots_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["plot", str(path), "--kind", "correlation", "--runner", "probe",
                              "--query", "target == 'attr00'", "--out", str(tmp_path / "fig" / "corr")])
    assert args.func(args) == 0
    assert "corr.png" in capsys.readouterr().out and (tmp_path / "fig" / "corr.svg").stat().st_size > 0
    args = parser.parse_args(["plot", str(path), "--kind", "tradeoff", "--runner", "finetune",
                              "--out", str(tmp_path / "t")])
    with pytest.raises(UserError, match="no rows"):
        args.func(args)


STEREOTYPE_LEVEL = "stereotype-consistent correlation level P(stereotypical group | y=1)"  # the report's level_name


def _drawn_figure(monkeypatch, draw):
    """The figure ``draw`` saves, laid out and drawn as in the PNG."""
    figures, save = [], plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda figure, out: (figures.append(figure), save(figure, out))[1])
    draw()
    (figure,) = figures
    FigureCanvasAgg(figure)  # save_figure closed it, which detaches its Agg canvas
    figure.canvas.draw()
    return figure


def _x_texts(figure):
    """(axis index, what, window extent) of every visible x label and x tick label."""
    renderer = figure.canvas.get_renderer()
    texts = []
    for i, axis in enumerate(a for a in figure.axes if a.get_visible()):
        label = axis.xaxis.label
        if label.get_text():
            texts.append((i, "xlabel", label.get_window_extent(renderer)))
        low, high = sorted(axis.get_xlim())
        for loc, tick in zip(axis.get_xticks(), axis.get_xticklabels()):  # ticks outside the limits are not drawn
            if low <= loc <= high and tick.get_visible() and tick.get_text():
                texts.append((i, f"tick {tick.get_text()}", tick.get_window_extent(renderer)))
    return texts


@pytest.mark.parametrize("level_label", [plots.LEVEL_LABEL, STEREOTYPE_LEVEL], ids=["short", "stereotype"])
def test_correlation_figure_x_labels_do_not_overlap(monkeypatch, tmp_path, level_label):
    # four target panels side by side, as in a report's probe-correlation.png
    table = synthetic_results(n_targets=4, seeds=2, sizes=(1024,))
    figure = _drawn_figure(monkeypatch, lambda: plots.plot_correlation(table, tmp_path / "corr",
                                                                       level_label=level_label))
    texts = _x_texts(figure)
    assert sum(what == "xlabel" for _, what, _ in texts) == 4
    for k, (i, a, box) in enumerate(texts):
        for j, b, other in texts[k + 1:]:
            assert not box.overlaps(other), f"panel {i} {a} overlaps panel {j} {b}"
    labels = [a.get_xlabel() for a in figure.axes if a.get_visible()]
    assert {" ".join(t.split()) for t in labels} == {level_label}  # wrapped, never cut
