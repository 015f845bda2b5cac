"""The answer first, and every sentence true of the cells it names: constructed tables where each defect arises.

Each test builds a small table (3 bases, 3 targets, 4 seeds, 5 levels; no fitting) in which one
situation of issue 28 happens — every cell of the strongest level flagged, one base's cells
flagged at a level, different kept cells per base, too few clusters, flagged salience
estimates, a plan row with its own reason, a 2-value grid — and checks the report says so.
"""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analyze.effects.models import without_flagged
from analyze.metrics.diagnosis import FLAGS, diagnose_record, edge_summary
from analyze.report.answer import competence_table, runner_comparisons, short_method
from analyze.report.build import build_report, plan_summary
from analyze.report.findings import FindingOptions, base_comparisons, pooled_summary
from analyze.report.sections import bias_by_level_table, coefficient_rows, fit_models, term_meaning, unidentifiable
from tests.test_effects_table import synthetic_results
from tests.test_report_findings import sweep

METRIC = "fpr_gap_stereotype"


def flagged_sweep(**kwargs) -> pd.DataFrame:
    """:func:`tests.test_report_findings.sweep` with diagnosis columns (nothing flagged) and row digests
    shared by every base at the same (target, seed, level): the bases were fitted on the same rows."""
    table = sweep(biased_slope=0.6, control_slope=0.2, **kwargs)
    table = table.assign(**{f"flag_{name}": False for name in FLAGS},
                         rows_digest=[f"{t}-{s}-{lv}" for t, s, lv in zip(table["target"], table["seed"],
                                                                          table["level"])])
    table["base_kind"] = table["backbone"].map({"big": "biased", "c1": "control", "c2": "scratch"})
    return table


def flag(table: pd.DataFrame, mask, name: str = "c_at_edge") -> pd.DataFrame:
    table = table.copy()
    table.loc[mask, f"flag_{name}"] = True
    return table


def t_interval(values) -> tuple[float, float, float]:
    values = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return values.mean(), values.mean() - half, values.mean() + half


def test_the_headline_names_the_level_it_reports_when_the_strongest_was_left_out():
    table = flag(flagged_sweep(), lambda t: t["level"] == 1.0)
    rows, notes = runner_comparisons(table, runner="probe", metric=METRIC)
    stated = [r for r in rows if r.finding.startswith("biased vs") and r.method]
    # the strongest level kept is 0 (as far from balance as 1): the rows say so, and that 1 was left out
    assert stated and all(r.setting == "level 0, n = 128 (level 1 left out)" for r in stated)
    left = [r for r in rows if r.setting == "level 1, n = 128"]
    assert {r.second for r in left} == {"c1", "c2"} and all(r.verdict == "left out" for r in left)
    assert all(r.flags.startswith("all 12 cells of big here flagged (c_at_edge 12); all 12 cells of c")
               for r in left)  # 3 targets x 4 seeds per base
    assert len(notes) == 1 and "1, is left out" in notes[0] and "(c_at_edge 36)" in notes[0]


def test_the_intended_level_is_reported_as_such_when_nothing_was_left_out():
    rows, notes = runner_comparisons(flagged_sweep(), runner="probe", metric=METRIC)
    assert not notes and {r.setting for r in rows if r.finding == "biased vs control"} == {"level 1, n = 128"}


def test_an_omitted_comparison_is_listed_with_its_reason_and_the_level_table_says_left_out():
    table = flag(flagged_sweep(), (lambda t: (t["backbone"] == "c2") & (t["level"] == 1.0)))
    rows, _ = runner_comparisons(table, runner="probe", metric=METRIC)
    at_one = {r.second: r for r in rows if r.setting == "level 1, n = 128" and r.finding.startswith("biased vs")}
    assert at_one["c1"].method and at_one["c2"].verdict == "left out"
    assert at_one["c2"].flags == "all 12 cells of c2 here flagged (c_at_edge 12)"
    assert at_one["c2"].second_value == "left out" and math.isnan(at_one["c2"].estimate)
    clean, _ = without_flagged(table)
    level_table = bias_by_level_table(clean, metric=METRIC, every=table)
    column = level_table.header.index("c2 (scratch)")
    by_level = {row[0]: row[column] for row in level_table.rows}
    assert by_level["1"] == "left out (flags)" and by_level["0.5"].startswith("0.0")
    never = table[~((table["backbone"] == "c2") & (table["level"] == 1.0))]
    assert {row[0]: row[column] for row in bias_by_level_table(clean, metric=METRIC, every=never).rows}["1"] == \
        "not run"


def test_both_values_are_means_over_the_matched_target_seed_cells():
    table = flagged_sweep()
    # the biased base lost two targets at seeds 0 and 1: the control keeps all 12 cells
    lost = (table["backbone"] == "big") & table["target"].isin(["t1", "t2"]) & table["seed"].isin([0, 1])
    clean, _ = without_flagged(flag(table, lost))
    cells = clean[clean["level"] == 1.0]
    summary = pooled_summary(cells, by=["backbone", "base_kind", "level"], value=METRIC)
    row = next(r for r in base_comparisons(summary, setting="level 1") if r.second == "c1")
    matched = cells[~(cells["target"].isin(["t1", "t2"]) & cells["seed"].isin([0, 1]))]
    for backbone, shown in (("big", row.first_value), ("c1", row.second_value)):
        per_seed = matched[matched["backbone"] == backbone].groupby("seed")[METRIC].mean()
        mean, low, high = t_interval(per_seed)
        assert shown == f"{mean:.3f} [{low:.3f}, {high:.3f}]"
    assert row.flags == "8 matched cells (of 8 and 12)"
    pooled_control = summary[summary["backbone"] == "c1"].iloc[0]
    assert row.second_value != f"{pooled_control['mean']:.3f} [{pooled_control['ci_low']:.3f}, " \
                               f"{pooled_control['ci_high']:.3f}]"  # the pooled mean over 12 cells is not shown
    differences = (matched[matched["backbone"] == "big"].set_index(["seed", "target"])[METRIC]
                   - matched[matched["backbone"] == "c1"].set_index(["seed", "target"])[METRIC])
    mean, low, high = t_interval(differences.groupby("seed").mean())
    assert (row.estimate, row.low, row.high) == pytest.approx((mean, low, high))
    assert short_method(row.method) == "paired t, 4 seeds, 8 matched cells"


def test_values_over_cells_that_cannot_be_matched_say_so():
    table = flagged_sweep()
    lost = (table["backbone"] == "big") & (table["seed"] != 0)
    clean, _ = without_flagged(flag(table, lost))
    summary = pooled_summary(clean[clean["level"] == 1.0], by=["backbone", "base_kind", "level"], value=METRIC)
    row = next(r for r in base_comparisons(summary, setting="level 1") if r.second == "c1")
    assert row.flags.startswith("values over different cells (3 vs 12") and "not stated" in row.verdict


def test_effect_terms_from_few_clusters_or_a_flat_predictor_are_not_identifiable():
    few = {r.key: r for r in fit_models(synthetic_results(n_targets=3, seeds=2, sizes=(1024,)), metric=METRIC)}
    fit = few["general"].coefficients.query("estimator == 'ols'")
    shown = coefficient_rows(fit, few["general"].data)
    assert all(row[1] == "not identifiable here" and row[4] == "(only 3 clusters (target); at least 6 are needed for "
               "cluster-robust errors)" for row in shown[1:])
    assert shown[0][0] == "Intercept" and shown[0][1] != "not identifiable here"
    # the mixed model: salience is constant within each target, so only 3 clusters inform it; the
    # base and correlation-strength terms vary within targets and stay
    mixed = {row[0]: row for row in coefficient_rows(few["general"].coefficients.query("estimator == 'mixed'"),
                                                     few["general"].data)}
    assert mixed["salience"][1] == "not identifiable here" and "salience varies only between them" in mixed["salience"][4]
    assert mixed["base[T.biased]:salience"][1] == "not identifiable here"
    assert mixed["correlation_strength"][1] != "not identifiable here"
    assert mixed["base[T.biased]"][4] == f"the biased base has a higher {METRIC} than the reference base"
    many = synthetic_results(n_targets=8, seeds=2, sizes=(1024,))
    fitted = {r.key: r for r in fit_models(many, metric=METRIC)}["general"]
    fit = fitted.coefficients.query("estimator == 'ols'")
    rows = {row[0]: row for row in coefficient_rows(fit, fitted.data)}
    salience = fit.set_index("term").loc["salience"]
    assert rows["salience"][1] == f"{salience['coef']:.4g}" or rows["salience"][1].startswith(
        f"{salience['coef']:.3f}"[:5])
    assert rows["salience"][4] == f"{METRIC} rises with salience"
    flat = many.assign(salience=0.938 + 0.018 * many["salience"] / many["salience"].max())
    flat_fit = {r.key: r for r in fit_models(flat, metric=METRIC)}["general"]
    reason = unidentifiable("salience", flat_fit.coefficients.query("estimator == 'ols'"), flat_fit.data)
    assert reason.startswith("salience barely varies (0.938 to 0.956")
    assert unidentifiable("correlation_strength", flat_fit.coefficients.query("estimator == 'ols'"),
                          flat_fit.data) is None
    # base[T.biased] is the biased base's effect at salience 0, far below the data: an extrapolation
    assert unidentifiable("base[T.biased]", flat_fit.coefficients.query("estimator == 'ols'"), flat_fit.data) == (
        "it is the effect at salience = 0, far outside the data (0.938 to 0.956)")


def test_what_a_positive_coefficient_means():
    assert term_meaning("base[T.biased]", "bias") == "the biased base has a higher bias than the reference base"
    assert term_meaning("base[T.biased]:correlation_strength", "bias") == (
        "bias rises faster with correlation strength for the biased base than for the reference")
    assert term_meaning("Skew", "Value") == "Value rises with skew"
    assert term_meaning("correlation_strength:salience", "bias") == (
        "the rise of bias with correlation strength is steeper where salience is higher")


@pytest.fixture(scope="module")
def small_report(tmp_path_factory):
    """A one-runner report on 8 targets (identifiable terms), with a flagged salience estimate and a plan."""
    out = tmp_path_factory.mktemp("answer-report")
    results = synthetic_results(n_targets=8, seeds=3, sizes=(1024,)).assign(**{f"flag_{n}": False for n in FLAGS})
    targets = sorted(results["target"].unique())
    salience = results.drop_duplicates("target")[["target", "salience"]].assign(
        ci_low=lambda s: s["salience"] - 0.05, ci_high=lambda s: s["salience"] + 0.05, flagged=False,
        **{f"flag_{n}": False for n in FLAGS})
    salience.loc[salience["target"] == targets[0], ["flagged", "flag_c_at_edge"]] = True
    plan = pd.DataFrame({"backbone": ["biased_net"] * 3, "target": targets[:3], "move": [0.2, np.nan, np.nan],
                         "status": ["ok", "natural level 0.93 lies outside the swept levels",
                                    "no stereotype-direction gap at the natural level"]})
    md, html = build_report(results.drop(columns=["salience"]), out_dir=out, salience=salience, plan=plan)
    return md.read_text(encoding="utf-8"), html.read_text(encoding="utf-8")


def test_effect_models_are_tables_in_markdown_and_html(small_report):
    markdown, page = small_report
    effects = markdown.split("### Effect sizes")[1]
    assert "| term | estimate | 95% interval | p | a positive value means |" in effects
    assert "| salience |" in effects and f"{METRIC} rises with salience" in effects
    assert "estimator ols, errors cluster-robust by target (t); " in effects and "8 groups (target)" in effects
    assert "<th scope=\"col\">a positive value means</th>" in page
    assert "its interval excludes zero" not in markdown  # no coefficient lists in running text


def test_flagged_salience_estimates_are_flagged_where_used(small_report):
    markdown, _ = small_report
    assert "Salience estimates flagged by their diagnosis: attr00: c_at_edge." in markdown
    answer = markdown.split("## Answer")[1].split("\n## ")[0]
    assert "Salience estimates are flagged (attr00: c_at_edge)" in answer


def test_the_plan_summary_gives_each_rows_own_reason(small_report):
    markdown, _ = small_report
    sentence = ("The curation plan finds a move that halves the gap for 1 of 3 (base, target) rows; the others: "
                "natural level 0.93 lies outside the swept levels (1); no stereotype-direction gap at the natural "
                "level (1).")
    assert sentence in markdown and "it plans only where" not in markdown
    assert plan_summary(pd.DataFrame({"status": ["ok", "ok"]})).endswith("2 of 2 (base, target) rows.")


def test_every_report_has_the_competence_table(small_report):
    markdown, _ = small_report
    section = markdown.split("## Competence of the bases")[1].split("\n## ")[0]
    assert "natural finetuning sets" in section and "| base | kind | attr00 |" in section


def test_competence_numbers_and_left_out_cells():
    table = flagged_sweep().assign(spec_kind="natural", level=np.nan)
    table = flag(table, (table["backbone"] == "c2") & (table["target"] == "t0"))
    shown, means = competence_table(table, runner_name="probes")
    rows = {row[0]: row for row in shown.rows}
    cells = table[(table["backbone"] == "big") & (table["target"] == "t1")].groupby("seed")["auc"].mean()
    mean, low, high = t_interval(cells)
    assert rows["big"][1] == "biased" and rows["big"][3] == f"{mean:.3f} [{low:.3f}, {high:.3f}]"
    assert rows["c2"][2] == "left out (flags)" and shown.header == ("base", "kind", "t0", "t1", "t2")
    assert means["big"][0] == "biased" and means["big"][1] == pytest.approx(table.loc[
        table["backbone"] == "big"].groupby(["target", "seed"])["auc"].mean().groupby("target").mean().mean())


def test_effects_and_report_leave_out_the_same_cells_by_default(tmp_path, capsys):
    import argparse

    import analyze.cli.effects as effects_cli

    results = synthetic_results(n_targets=6, seeds=2, sizes=(1024,)).assign(**{f"flag_{n}": False for n in FLAGS})
    flagged = results.index[results["spec_kind"] == "correlation"][:30]
    results.loc[flagged, "flag_c_at_edge"] = True
    path = tmp_path / "results.csv"
    results.to_csv(path, index=False)
    build_report(path, out_dir=tmp_path / "report")
    report_rows = pd.read_csv(tmp_path / "report" / "effects" / "probe-general.csv")["n_obs"].iloc[0]

    def run(*extra):
        parser = argparse.ArgumentParser()
        effects_cli.register(parser.add_subparsers(dest="command"))
        args = parser.parse_args(["effects", str(path), "--model", "general", "--out", str(tmp_path / "e"), *extra])
        args.func(args)
        return pd.read_csv(tmp_path / "e.csv")["n_obs"].iloc[0]

    assert run() == report_rows == len(results) - 30
    assert "left out 30 cells flagged by the diagnosis" in capsys.readouterr().out
    assert run("--include-flagged") == report_rows + 30
    kept = FindingOptions(include_flagged=True)
    build_report(path, out_dir=tmp_path / "all", options=kept)
    assert pd.read_csv(tmp_path / "all" / "effects" / "probe-general.csv")["n_obs"].iloc[0] == report_rows + 30


def test_a_grid_edge_names_the_side_to_widen():
    record = dict(runner="finetune", metrics={"auc": 0.9},
                  hyperparameters={"lr": 0.001, "grid": {"lrs": [0.001, 0.01]}, "best_epoch": 3, "epochs": 6})
    reason = next(r for r in diagnose_record(record).reasons if r.startswith("lr"))
    assert reason == ("lr = 0.001 is the smallest of the grid [0.001, 0.01]: widen it below 0.001 and add an "
                      "interior value (a 2-value grid has none, so every choice is an edge)")
    probe = dict(runner="probe", metrics={"auc": 0.9}, hyperparameters={"C": 100.0, "Cs": [0.1, 1.0, 100.0]})
    edge = next(r for r in diagnose_record(probe).reasons if r.startswith("C"))
    table = pd.DataFrame({"diagnosis": [edge + "; test AUC 0.5 below the floor"] * 3 + [reason, None]})
    assert edge_summary(table) == [
        "c_at_edge: 3 cells chose C = 100, the largest of the grid [0.1, 1.0, 100.0]: widen it above 100.",
        "lr_at_edge: 1 cells chose lr = 0.001, the smallest of the grid [0.001, 0.01]: widen it below 0.001; a "
        "2-value grid has no interior value, so add one."]


def test_an_interval_past_the_metrics_bound_is_flagged():
    from analyze.report.findings import matched_values

    high = pd.Series({"mean": 0.977, "ci_low": 0.952, "ci_high": 1.003, "k": 3})
    low = pd.Series({"mean": 0.873, "ci_low": 0.85, "ci_high": 0.9, "k": 3})
    assert matched_values(high, low)[2] == "an interval passes ±1, the bound of the metric (few seeds)"
    assert matched_values(low, low)[2] == ""


def test_the_reproduce_table_follows_the_findings_table_with_any_verdicts(tmp_path):
    results = flagged_sweep()
    findings = pd.DataFrame({"id": ["1a", "1b", "2a"], "finding": ["f1", "f2", "f3"], "number": [0.2, -0.1, np.nan],
                             "ci_low": [0.1, -0.2, np.nan], "ci_high": [0.3, 0.0, np.nan], "rule": ["> 0"] * 3,
                             "verdict": ["reproduced", "contradicted", "inconclusive"], "reason": ["", "", "no data"],
                             "runner": ["probe"] * 3, "deviation": ["", "probe instead of finetune", ""]})
    md, _ = build_report(results, out_dir=tmp_path, findings=findings)
    page = md.read_text(encoding="utf-8")
    assert page.index("| finding | runner | setting | first |") < page.index("### The papers' findings")
    assert "| # | finding | runner | deviation | number [95% CI] | rule | verdict | reason |" in page
    assert all(f"1 {v}" in page for v in ("reproduced", "contradicted", "inconclusive"))
    assert "- Contradicted: f2 (1b)" in page


def test_the_answer_states_one_sentence_per_question_from_the_rows():
    from analyze.report.answer import answer_blocks

    table = flag(flagged_sweep(), lambda t: t["level"] == 1.0)
    rows, notes = runner_comparisons(table, runner="probe", metric=METRIC)
    blocks = answer_blocks(rows, labels={"probe": "Probes"}, notes=[f"Probes: {n}." for n in notes],
                           curation=["The curation plan finds a move that halves the gap for 1 of 3 rows."])
    text = [b.text for b in blocks[1:]]
    assert text[0] == ("Does the biased base transfer more bias than the controls? Probes, level 0, n = 128 (level 1 "
                       "left out): the biased base has more bias than 1 of 1 control and than scratch (AUC 0.852 vs 0.850 "
                       "for scratch). Probes, level "
                       "1, n = 128: no comparison with a control can be stated (left out).")
    change = next(r for r in rows if r.finding == "toward balance: bias")
    assert text[1].startswith("Does a balanced finetuning set remove it, and at what AUC cost? Probes: moving level 0 "
                              f"→ 0.5 changes the biased base's bias by {change.estimate:+.3f}")
    assert text[1].endswith("halves the gap for 1 of 3 rows.")
    assert text[2].startswith("Do not conclude more than this: Probes: the strongest level run, 1, is left out")
    assert "2 comparisons are left out" in text[2]


def test_a_move_toward_balance_from_too_few_replicates_is_not_stated():
    table = flagged_sweep()
    table = flag(table, (table["level"] == 1.0) & (table["seed"] > 0))  # one seed left at level 1
    rows, _ = runner_comparisons(table, runner="probe", metric=METRIC,
                                 options=FindingOptions(level=1.0))
    move = [r for r in rows if r.finding.startswith("toward balance")]
    assert move and all(r.verdict == "not stated: level 1 (1) has fewer than 3 clean replicates" for r in move)
    assert all(math.isnan(r.estimate) for r in move)


def test_the_per_size_table_says_left_out_for_flagged_cells():
    from analyze.report.sections import per_size_table

    table = pd.concat([flagged_sweep().assign(n=n) for n in (128, 512)], ignore_index=True)
    table = flag(table, (table["backbone"] == "c2") & (table["n"] == 512))
    clean, _ = without_flagged(table)
    shown = per_size_table(clean, metric=METRIC, every=table)
    by_n = {row[0]: dict(zip(shown.header, row)) for row in shown.rows}
    assert by_n["512"]["c2"] == "left out (flags)" and by_n["128"]["c2"].startswith("0.")
    assert per_size_table(clean, metric=METRIC).rows[1][shown.header.index("c2")] == "not run"
