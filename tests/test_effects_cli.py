"""``biastransfer effects``: Markdown, CSV and LaTeX written from a table; errors as UserError."""

import argparse

import numpy as np
import pandas as pd
import pytest

import analyze.cli.effects as effects_cli
import analyze.effects.models as effects
from analyze.effects.format import latex_escape, to_latex, to_markdown
from analyze.results.tables import read_table
from extract.errors import UserError
from tests.test_effects_table import synthetic_results


def _run(argv):
    parser = argparse.ArgumentParser()
    effects_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def table_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("effects") / "results.csv"
    synthetic_results(n_targets=6, seeds=2).to_csv(path, index=False)
    return path


def test_paper_model_writes_three_formats_and_rows(table_path, tmp_path, capsys):
    out = tmp_path / "effects" / "paper"
    assert _run(["effects", str(table_path), "--model", "paper", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "### paper · mixed: `Value ~ Saliency + Skew`" in printed and "R² marginal" in printed
    written = pd.read_csv(out.with_name("paper.csv"))
    assert list(written["term"]) == ["Intercept", "Saliency", "Skew"] * 2
    assert set(written["estimator"]) == {"mixed", "ols"} and (written["n_groups"] == 6).all()
    expected, rows = effects.run_effects(effects.with_base_kind(read_table(table_path)), model="paper")
    np.testing.assert_allclose(written["coef"], expected["coef"], rtol=1e-9)
    assert len(pd.read_csv(out.with_name("paper_rows.csv"))) == len(rows) == 12
    markdown = out.with_name("paper.md").read_text()
    assert markdown.count("| Saliency |") == 2
    tex = out.with_name("paper.tex").read_text()
    assert tex.count("\\begin{tabular}") == 2 and "95\\% CI" in tex


def test_formula_and_general_models_from_the_cli(table_path, tmp_path, capsys):
    out = tmp_path / "formula"
    assert _run(["effects", str(table_path), "--model", "formula", "--formula",
                 "fpr_gap_stereotype ~ level * C(backbone)", "--groups", "target", "--fit", "both",
                 "--out", str(out)]) == 0
    written = pd.read_csv(out.with_name("formula.csv"))
    assert set(written["estimator"]) == {"ols", "mixed"}
    assert not out.with_name("formula_rows.csv").exists()
    assert _run(["effects", str(table_path), "--model", "general", "--fit", "ols", "--query",
                 "spec_kind == 'correlation'", "--out", str(tmp_path / "general")]) == 0
    general = pd.read_csv(tmp_path / "general.csv")
    assert "base[T.biased]:correlation_strength" in set(general["term"])
    assert general["n_obs"].iloc[0] == 6 * 4 * 5 * 2 * 2


def test_cli_errors_are_user_errors(table_path, tmp_path):
    with pytest.raises(UserError, match="no_such"):
        _run(["effects", str(table_path), "--model", "formula", "--formula", "auc ~ no_such",
              "--out", str(tmp_path / "x")])
    with pytest.raises(UserError, match="BACKBONE=KIND"):
        _run(["effects", str(table_path), "--base-kind", "oops", "--out", str(tmp_path / "x")])
    with pytest.raises(UserError, match="`query` 'nonsense =='"):
        _run(["effects", str(table_path), "--query", "nonsense ==", "--out", str(tmp_path / "x")])
    bare = tmp_path / "bare.csv"
    synthetic_results(n_targets=3).drop(columns=["salience"]).to_csv(bare, index=False)
    with pytest.raises(UserError, match="'salience'"):
        _run(["effects", str(bare), "--out", str(tmp_path / "x")])
    salience = tmp_path / "salience.csv"
    pd.DataFrame({"target": ["attr00", "attr01", "attr02"], "salience": [0.1, 0.3, 0.2]}).to_csv(salience, index=False)
    assert _run(["effects", str(bare), "--salience", str(salience), "--fit", "ols", "--out", str(tmp_path / "y")]) == 0


def test_formatters_escape_and_show_missing_values():
    table = pd.DataFrame({"model": "m", "estimator": "ols", "response": "y", "term": ["a_b", "c"],
                          "coef": [1.23456, 2.0], "se": [0.1, np.nan], "ci_low": [1.0, np.nan],
                          "ci_high": [1.4, np.nan], "p_value": [0.0001, 0.5], "n_obs": 10, "n_groups": np.nan,
                          "groups": "", "errors": "HC3 robust (t)", "r2": 0.5, "r2_marginal": np.nan,
                          "r2_conditional": np.nan, "group_var": np.nan, "formula": "y ~ a_b + c", "note": ""})
    markdown = to_markdown(table)
    assert "| a_b | 1.235 | 0.1 | [1, 1.4] | <0.001 |" in markdown and "| c | 2 |  | [, ] | 0.500 |" in markdown
    assert "a\\_b" in to_latex(table) and latex_escape("50% & $x_1$") == "50\\% \\& \\$x\\_1\\$"
