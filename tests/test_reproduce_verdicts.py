"""Verdict rules of `biastransfer reproduce` on constructed tables: reproduced, contradicted, inconclusive."""

import numpy as np
import pandas as pd
import pytest

from analyze.metrics.diagnosis import FLAGS
from analyze.reproduce.claims import build_findings
from analyze.reproduce.findings import (
    curation_findings,
    findings_markdown,
    geography_finding,
    salience_finding,
    size_finding,
    spearman_interval,
    transfer_findings,
    underrep_finding,
    write_findings,
)
from analyze.reproduce.verdicts import (
    CONTRADICTED,
    INCONCLUSIVE,
    REPRODUCED,
    VERDICTS,
    all_above_zero,
    at_least,
    cut_rule,
    shrink_rule,
    sign_rule,
)

SEEDS = (0, 1, 2, 3, 4)
TARGETS = ("eyewear", "long_hair")
NOISE = np.array([0.01, -0.01, 0.005, -0.005, 0.0])


def cells(gaps: dict, *, runner="probe", spec_kind="natural", n=128, level=np.nan, auc=0.9, flag=None):
    """Cells of several bases: ``gaps`` maps backbone -> (kind, mean gap); per-seed noise, same rows per seed."""
    rows = []
    for backbone, (kind, gap) in gaps.items():
        for t in TARGETS:
            for s, e in zip(SEEDS, NOISE):
                row = {"runner": runner, "backbone": backbone, "base_kind": kind, "spec_kind": spec_kind,
                       "target": t, "n": n, "seed": s, "level": level, "stereotype_level": level, "auc": auc,
                       "fpr_gap_stereotype": gap + e, "rows_digest": f"{spec_kind}-{t}-{n}-{level}-{s}"}
                row.update({f"flag_{f}": False for f in FLAGS})
                if flag:
                    row[f"flag_{flag}"] = True
                rows.append(row)
    return pd.DataFrame(rows)


def bases(biased, *controls):
    return {"biased": ("biased", biased), **{f"control-{i}": ("control", g) for i, g in enumerate(controls)}}


# -- the rules on numbers ----------------------------------------------------------------------


def test_all_above_zero_rule():
    assert all_above_zero([("a", 0.2, 0.1, 0.3), ("b", 0.1, 0.02, 0.2)]).verdict == REPRODUCED
    covers = all_above_zero([("a", 0.2, 0.1, 0.3), ("b", 0.05, -0.01, 0.1)])
    assert covers.verdict == INCONCLUSIVE and "covers 0" in covers.reason  # never a refutation
    below = all_above_zero([("a", 0.2, 0.1, 0.3), ("b", -0.05, -0.1, -0.01)])
    assert below.verdict == CONTRADICTED and "b:" in below.reason
    assert all_above_zero([("a", 0.2, np.nan, np.nan)]).verdict == INCONCLUSIVE
    assert all_above_zero([]).verdict == INCONCLUSIVE


def test_sign_rule():
    assert sign_rule(0.3, 0.1, 0.5, expected=1, term="x").verdict == REPRODUCED
    assert sign_rule(-0.3, -0.5, -0.1, expected=-1, term="x").verdict == REPRODUCED
    assert sign_rule(0.3, -0.1, 0.7, expected=1, term="x").verdict == INCONCLUSIVE
    assert sign_rule(-0.3, -0.5, -0.1, expected=1, term="x").verdict == CONTRADICTED
    assert sign_rule(0.3, 0.1, 0.5, expected=-1, term="x").verdict == CONTRADICTED
    assert sign_rule(np.nan, np.nan, np.nan, expected=1, term="x").verdict == INCONCLUSIVE


def test_shrink_rule_each_outcome():
    first = (0.2, 0.1, 0.3)
    # shrinks, and the remainder is equivalent to 0 within the controls' spread
    assert shrink_rule(first, (0.18, 0.08, 0.28), (0.02, -0.01, 0.05), margin=0.06).verdict == REPRODUCED
    # shrinks, but a difference remains at n_max: not a contradiction
    row = shrink_rule(first, (0.1, 0.02, 0.18), (0.1, 0.07, 0.13), margin=0.06)
    assert row.verdict == INCONCLUSIVE and "130k" in row.reason
    # the shrink's interval covers 0
    assert shrink_rule(first, (0.02, -0.05, 0.09), (0.0, -0.02, 0.02), margin=0.06).verdict == INCONCLUSIVE
    # no shrinking at all
    assert shrink_rule(first, (-0.05, -0.1, -0.01), (0.25, 0.2, 0.3), margin=0.06).verdict == CONTRADICTED
    assert shrink_rule(first, (-0.05, -0.1, 0.0), (0.25, 0.2, 0.3), margin=0.06).verdict == CONTRADICTED  # at 0
    # no difference at n_min: nothing to shrink
    row = shrink_rule((0.01, -0.02, 0.04), (0.0, -0.05, 0.05), (0.0, -0.01, 0.01), margin=0.06)
    assert row.verdict == INCONCLUSIVE and "nothing to shrink" in row.reason
    assert shrink_rule(first, (0.1, np.nan, np.nan), (0, -0.01, 0.01), margin=0.06).verdict == INCONCLUSIVE


def test_cut_rule_each_outcome():
    gap = (0.2, 0.15, 0.25)
    assert cut_rule(gap, (0.45, 0.3, 0.6), (0.0, -0.01, 0.015)).verdict == REPRODUCED
    assert cut_rule(gap, (0.3, 0.26, 0.34), (0.0, -0.01, 0.01)).verdict == INCONCLUSIVE  # point < 0.35
    assert cut_rule(gap, (0.45, 0.2, 0.7), (0.0, -0.01, 0.01)).verdict == INCONCLUSIVE  # covers 0.25
    assert cut_rule(gap, (0.45, 0.3, 0.6), (-0.02, -0.03, -0.01)).verdict == INCONCLUSIVE  # AUC may fall 0.03
    assert cut_rule(gap, (0.1, 0.0, 0.2), (0.0, -0.01, 0.01)).verdict == CONTRADICTED  # cut below 0.25
    assert cut_rule(gap, (0.45, 0.3, 0.6), (-0.05, -0.07, -0.03)).verdict == CONTRADICTED  # AUC falls
    assert cut_rule((0.02, -0.01, 0.05), (0.5, 0.3, 0.7), (0, -0.01, 0.01)).verdict == INCONCLUSIVE  # no gap
    assert cut_rule(gap, (0.45, np.nan, np.nan), (0, -0.01, 0.01)).verdict == INCONCLUSIVE


def test_at_least_rule():
    assert at_least(0.95, 0.6, 0.99, floor=0.9, what="rho").verdict == REPRODUCED
    assert at_least(0.6, -0.2, 0.85, floor=0.9, what="rho").verdict == CONTRADICTED
    assert at_least(0.6, -0.2, 0.95, floor=0.9, what="rho").verdict == INCONCLUSIVE
    assert at_least(0.95, np.nan, np.nan, floor=0.9, what="rho").verdict == INCONCLUSIVE


def test_there_are_three_words():
    assert VERDICTS == (REPRODUCED, CONTRADICTED, INCONCLUSIVE)


# -- the findings on constructed tables --------------------------------------------------------


def _finding(rows, fid):
    return next(r for r in rows if r["id"] == fid)


def test_finding_1_on_tables():
    reproduced = transfer_findings(cells(bases(0.3, 0.1, 0.12)), metric="fpr_gap_stereotype", method="t",
                                   auc_floor=0.65)
    row = _finding(reproduced, "1a")
    assert row["verdict"] == REPRODUCED
    assert row["number"] == pytest.approx(0.18) and row["ci_low"] > 0  # the smallest difference, paired by seed
    assert "paired" in row["interval"]
    assert "AUC biased 0.900, control-1 0.900" in row["reason"] and row["runner"] == "probe (proxy)"
    # the largest control as biased as the biased base: the interval covers 0, inconclusive
    row = _finding(transfer_findings(cells(bases(0.3, 0.1, 0.3)), metric="fpr_gap_stereotype", method="t",
                                     auc_floor=0.65), "1a")
    assert row["verdict"] == INCONCLUSIVE and "control-1" in row["setting"] and "covers 0" in row["reason"]
    # a control more biased than the biased base: contradicted
    row = _finding(transfer_findings(cells(bases(0.1, 0.05, 0.3)), metric="fpr_gap_stereotype", method="t",
                                     auc_floor=0.65), "1a")
    assert row["verdict"] == CONTRADICTED and row["number"] == pytest.approx(-0.2)
    # models below the AUC floor, flagged cells, and a missing runner: inconclusive, with the reason
    row = _finding(transfer_findings(cells(bases(0.3, 0.1), auc=0.55), metric="fpr_gap_stereotype", method="t",
                                     auc_floor=0.65), "1a")
    assert row["verdict"] == INCONCLUSIVE and "did not learn" in row["reason"]
    row = _finding(transfer_findings(cells(bases(0.3, 0.1), flag="degenerate"), metric="fpr_gap_stereotype",
                                     method="t", auc_floor=0.65), "1a")
    assert row["verdict"] == INCONCLUSIVE and "diagnosis" in row["reason"]
    assert _finding(reproduced, "1c")["verdict"] == INCONCLUSIVE  # no finetune cells


def test_finding_1_strongest_level():
    table = pd.concat([cells(bases(0.05, 0.04), spec_kind="correlation", level=0.5),
                       cells(bases(0.4, 0.1), spec_kind="correlation", level=1.0)])
    row = _finding(transfer_findings(table, metric="fpr_gap_stereotype", method="t", auc_floor=0.65), "1b")
    assert row["verdict"] == REPRODUCED and "level 1" in row["setting"]


def test_finding_3_on_tables():
    def sweep(large_gap):
        return pd.concat([cells(bases(0.3, 0.1, 0.14), n=64), cells(bases(large_gap, 0.1, 0.14), n=1024)])

    kw = {"metric": "fpr_gap_stereotype", "method": "t", "auc_floor": 0.65}
    row = size_finding(sweep(0.1), **kw)  # shrinks to 0, within the controls' spread 0.04
    assert row["verdict"] == REPRODUCED and row["number"] == pytest.approx(0.2) and "margin 0.040" in row["setting"]
    row = size_finding(sweep(0.25), **kw)  # shrinks, but 0.15 remains: not a contradiction
    assert row["verdict"] == INCONCLUSIVE and "130k" in row["reason"]
    row = size_finding(sweep(0.35), **kw)  # grows with n: contradicted
    assert row["verdict"] == CONTRADICTED and row["number"] == pytest.approx(-0.05)
    assert size_finding(cells(bases(0.3, 0.1), n=64), **kw)["verdict"] == INCONCLUSIVE  # no sweep
    one = pd.concat([cells(bases(0.3, 0.1), n=64), cells(bases(0.1, 0.1), n=1024)])
    assert "one control" in size_finding(one, **kw)["reason"]  # no margin without a spread of controls


def test_finding_4_on_tables():
    kw = {"metric": "fpr_gap_stereotype", "method": "t", "auc_floor": 0.65}

    def curation(before, after, auc_after=0.9):
        a = cells({"biased": ("biased", before)}, spec_kind="correlation", level=0.8)
        b = cells({"biased": ("biased", after)}, spec_kind="correlation", level=0.7, auc=auc_after)
        return pd.concat([a, b])

    row = _finding(curation_findings(curation(0.3, 0.1), **kw), "4a")
    assert row["verdict"] == REPRODUCED and row["ci_low"] > 0.25 and "bootstrap over targets (2)" in row["interval"]
    row = _finding(curation_findings(curation(0.3, 0.25), **kw), "4a")
    assert row["verdict"] == CONTRADICTED and row["number"] == pytest.approx(1 / 6, abs=0.01)
    assert _finding(curation_findings(curation(0.3, 0.1, auc_after=0.8), **kw), "4a")["verdict"] == CONTRADICTED
    assert _finding(curation_findings(curation(0.3, 0.2), **kw), "4a")["verdict"] == INCONCLUSIVE  # a third, < 0.35
    assert _finding(curation_findings(curation(0.0, 0.0), **kw), "4a")["verdict"] == INCONCLUSIVE  # no gap
    assert _finding(curation_findings(curation(0.3, 0.1), **kw), "4b")["verdict"] == INCONCLUSIVE  # no sub-selection


def test_finding_4_on_an_off_the_shelf_base_with_the_tpr_gap():
    kw = {"metric": "fpr_gap_stereotype", "method": "t", "auc_floor": 0.65}
    a = cells({"lite0": ("imagenet", 0.0)}, spec_kind="correlation", level=0.8)
    b = cells({"lite0": ("imagenet", 0.0)}, spec_kind="correlation", level=0.7)
    # the TPR gap (vary_corr.py's measure) is primary: 0.4 -> 0.2, stereotype-signed by the natural group
    a, b = (part.assign(tpr_gap=-gap + part["fpr_gap_stereotype"], natural_over_represented_group=0)
            for part, gap in ((a, 0.4), (b, 0.2)))
    row = _finding(curation_findings(pd.concat([a, b]), base_kind="imagenet", **kw), "4a")
    assert row["verdict"] == REPRODUCED and row["number"] == pytest.approx(0.5, abs=0.02)
    assert "tpr_gap_stereotype" in row["setting"] and "extra row" not in row["deviation"]
    biased = _finding(curation_findings(pd.concat([a, b]), **kw), "4a")
    assert biased["verdict"] == INCONCLUSIVE and "extra row" in biased["deviation"]  # no biased cells


def _pairs(delta, auc_full=0.9):
    rows = []
    for role, shift in (("A", delta), ("B", 0.0)):
        for share, base in ((1.0, auc_full), (0.1, 0.7)):
            for s, e in zip(SEEDS, NOISE):
                rows.append({"role": role, "backbone": f"on-{role}", "attr_a": "hat", "attr_b": "blazer",
                             "share_a": share, "n": 64, "seed": s, "auc_a": base + (shift + e if share < 1 else 0),
                             "auc": 0.8, "rows_digest": f"{share}-{s}"})
    return pd.DataFrame(rows)


def test_finding_5_on_tables():
    row = underrep_finding(_pairs(0.1), method="t", auc_floor=0.65)
    assert row["verdict"] == REPRODUCED and "paired" in row["interval"] and row["number"] == pytest.approx(0.1)
    assert underrep_finding(_pairs(0.0), method="t", auc_floor=0.65)["verdict"] == INCONCLUSIVE
    assert underrep_finding(_pairs(-0.1), method="t", auc_floor=0.65)["verdict"] == CONTRADICTED
    assert underrep_finding(_pairs(0.1, auc_full=0.55), method="t", auc_floor=0.65)["verdict"] == INCONCLUSIVE
    assert underrep_finding(None, method="t", auc_floor=0.65)["verdict"] == INCONCLUSIVE


def test_finding_6_on_tables():
    truth = np.arange(8, dtype=float)
    table = pd.DataFrame({"target": list("abcdefgh"), "salience": truth + 0.1, "true_log_ratio": truth})
    assert salience_finding(table)["verdict"] == REPRODUCED
    shuffled = table.assign(salience=[3, 1, 7, 0, 5, 2, 6, 4])
    assert salience_finding(shuffled)["verdict"] == CONTRADICTED  # the whole interval below 0.9
    assert salience_finding(table.head(3))["verdict"] == INCONCLUSIVE
    rho, low, high = spearman_interval(truth, truth[::-1])
    assert rho == pytest.approx(-1) and low < high < 0


def test_geography_finding(tmp_path):
    assert geography_finding(None)["verdict"] == INCONCLUSIVE
    assert geography_finding(tmp_path)["verdict"] == INCONCLUSIVE
    row = {"metric": "top5", "base": "diverse", "other": "imagenet", "at_share": 0.1, "reference": 0.8,
           "reference_low": 0.75, "reference_high": 0.85, "other_at_same_share": 0.6, "other_low": 0.55,
           "other_high": 0.65, "share_needed": 0.5, "status": "holds"}
    pd.DataFrame([row]).to_csv(tmp_path / "findings.csv", index=False)
    assert geography_finding(tmp_path)["verdict"] == REPRODUCED
    pd.DataFrame([{**row, "status": "does not hold"}]).to_csv(tmp_path / "findings.csv", index=False)
    assert geography_finding(tmp_path)["verdict"] == CONTRADICTED


def _paper_table():
    from test_reproduce_claims import _constant, _table, _targets

    table = pd.concat([_table(_constant(0.3)), _table(_constant(0.3), runner="probe")], ignore_index=True)
    return table, _targets()


def test_whole_table_and_outputs(tmp_path):
    table, targets = _paper_table()
    pairs = pd.concat([_pairs(0.1).assign(runner="probe"), _pairs(0.1).assign(runner="finetune")])
    from analyze.reproduce.claims import ClaimOptions

    findings = build_findings(table, targets, underrep=pairs, options=ClaimOptions(pair_n=64))
    paper = ["1a", "1a+", "1b", "1b+", "2a", "2b", "3", "4a-imagenet", "4b-imagenet", "4a-scratch", "4b-scratch",
             "4a-biased", "4b-biased", "5"]
    assert list(findings["id"]) == paper + paper + ["6", "7"]  # W&R 1-5 for both runners, then the toolkit's own
    assert list(findings["runner"].iloc[:len(paper)]) == ["finetune"] * len(paper)
    assert set(findings["runner"].iloc[len(paper):2 * len(paper)]) == {"probe (proxy)"}
    assert set(findings["verdict"]) <= set(VERDICTS) and "deviation" in findings.columns
    by = findings.set_index(["runner", "id"])["verdict"]
    assert by[("finetune", "1a")] == by[("finetune", "5")] == by[("probe (proxy)", "5")] == REPRODUCED
    assert "not a paper claim" in findings.set_index("id").loc["6", "deviation"]
    csv, md = write_findings(findings, tmp_path)
    assert pd.read_csv(csv)["verdict"].tolist() == findings["verdict"].tolist()
    assert "| 1a |" in md.read_text() and "**reproduced**" in findings_markdown(findings)
    assert "never count as reproducing a finetune claim" in md.read_text()


def test_report_cli_leads_with_the_findings(tmp_path):
    from analyze.cli import main

    table, targets = _paper_table()
    table.assign(fpr_gap_stereotype=table["fpr_gap"]).to_csv(tmp_path / "table.csv", index=False)
    csv, _ = write_findings(build_findings(table, targets, underrep=_pairs(0.1)), tmp_path / "findings")
    assert main(["report", str(tmp_path / "table.csv"), "--findings", str(csv), "--out", str(tmp_path / "r")]) == 0
    page = (tmp_path / "r" / "report.md").read_text()
    assert page.index("## The papers' findings") < page.index("## The sweep")
    assert "| 1a | natural sets: the biased base's oriented FPR gap > the largest control's | finetune |" in page
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    assert main(["report", str(tmp_path / "table.csv"), "--findings", str(tmp_path / "bad.csv"), "--out",
                 str(tmp_path / "r2")]) != 0


def test_geography_needs_every_part(tmp_path):
    row = {"metric": "top5", "base": "diverse", "other": "imagenet", "at_share": 0.1, "reference": 0.8,
           "reference_low": 0.75, "reference_high": 0.85, "other_at_same_share": 0.6, "other_low": 0.55,
           "other_high": 0.65, "share_needed": 0.5, "status": "holds"}
    pd.DataFrame([row, {**row, "metric": "ap", "status": "holds (overlapping intervals)"}]).to_csv(
        tmp_path / "findings.csv", index=False)
    found = geography_finding(tmp_path / "findings.csv")
    assert found["verdict"] == INCONCLUSIVE and "overlapping" in found["reason"]
    assert found["number"] == pytest.approx(0.2)


def test_auc_table_reads_the_competence_floors_per_base():
    from analyze.reproduce.run import PRESETS, auc_table

    rows = []
    for backbone, kind, aucs in (("biased", "biased", (0.72, 0.83, 0.81)), ("control", "control", (0.66, 0.79, 0.9)),
                                 ("scratch", "scratch", (0.6, 0.7, 0.7))):
        for target in ("a", "b"):
            rows += [{"backbone": backbone, "base_kind": kind, "spec_kind": "natural", "runner": "probe", "n": 128,
                      "target": target, "auc": aucs[0]},
                     {"backbone": backbone, "base_kind": kind, "spec_kind": "natural", "runner": "probe", "n": 1024,
                      "target": target, "auc": aucs[1]},
                     {"backbone": backbone, "base_kind": kind, "spec_kind": "natural", "runner": "finetune", "n": 512,
                      "target": target, "auc": aucs[2]},
                     {"backbone": backbone, "base_kind": kind, "spec_kind": "correlation", "runner": "probe", "n": 128,
                      "target": target, "auc": 0.1}]  # not the natural level: left out
    table = pd.DataFrame(rows)
    kinds = dict(zip(table["backbone"], table["base_kind"]))
    from dataclasses import replace

    config = replace(PRESETS["cpu"], probe_n=128, paper_n=512)  # finetunes at n = 512, where a floor is set
    out = auc_table(table, config, kinds=kinds).set_index(["setting", "backbone"])
    assert out.loc[("probe n=128", "biased"), "mean"] == pytest.approx(0.72)
    assert out.loc[("probe n=128", "biased"), "floor"] == 0.70 and out.loc[("probe n=128", "biased"), "meets_floor"]
    assert not out.loc[("probe n=128", "control"), "meets_floor"]
    assert not out.loc[("probe n=1024", "control"), "meets_floor"] and out.loc[("probe n=1024", "biased"), "meets_floor"]
    assert out.loc[("finetune n=512", "control"), "meets_floor"] and out.loc[("finetune n=512", "biased"), "meets_floor"]
    assert out.loc[("probe n=128", "scratch"), "meets_floor"] is None  # the random reference is not held to it


def test_an_empty_geography_findings_file_is_inconclusive(tmp_path):
    from analyze.reproduce.findings import geography_finding

    (tmp_path / "findings.csv").write_text("")
    row = geography_finding(tmp_path)
    assert row["verdict"] == "inconclusive" and "empty" in row["reason"]
    assert "sweep wr-geography" in geography_finding(tmp_path / "missing")["reason"]


def _effect_cells(levels, gap):
    rng = np.random.default_rng(0)
    rows = []
    for t, sal in (("a", 0.3), ("b", 0.5), ("c", 0.6), ("d", 0.8), ("e", 0.4), ("f", 0.7)):
        for backbone, kind in (("biased", "biased"), ("control-0", "control")):
            for level in levels:
                for n in (64, 256):
                    for s in SEEDS[:3]:
                        row = {"runner": "probe", "backbone": backbone, "base_kind": kind, "spec_kind": "correlation",
                               "target": t, "n": n, "seed": s, "level": level, "stereotype_level": level, "auc": 0.9,
                               "salience": sal,
                               "fpr_gap_stereotype": gap(kind, level - 0.5, sal) + 0.02 * rng.standard_normal()}
                        row.update({f"flag_{f}": False for f in FLAGS})
                        rows.append(row)
    return pd.DataFrame(rows)


def test_finding_2_interactions_use_the_wild_cluster_bootstrap_with_few_targets():
    from analyze.reproduce.findings import effect_findings

    table = _effect_cells((0.5, 0.7, 0.9), lambda kind, strength, sal: (0.6 if kind == "biased" else 0.1) * strength
                          + 0.05 * sal)
    found = {r["id"]: r for r in effect_findings(table, metric="fpr_gap_stereotype", auc_floor=0.65)}
    strength = found["2a"]
    assert strength["verdict"] == REPRODUCED and "wild cluster restricted bootstrap" in strength["interval"]
    assert "6 clusters" in strength["interval"] and strength["runner"] == "probe (proxy)"
    assert "base[T.biased]:salience" in found["2b"]["rule"]  # one side of balance: the additive term


def test_finding_2b_reads_the_term_the_design_identifies_across_balance():
    from analyze.reproduce.findings import effect_findings

    # the biased base's gap per unit of correlation strength grows with salience; its sign flips at balance
    table = _effect_cells((0.1, 0.3, 0.5, 0.7, 0.9), lambda kind, strength, sal: (
        strength * (0.2 + (0.8 * sal if kind == "biased" else 0.0))))
    row = {r["id"]: r for r in effect_findings(table, metric="fpr_gap_stereotype", auc_floor=0.65)}["2b"]
    assert "base[T.biased]:correlation_strength:salience" in row["rule"] and row["verdict"] == REPRODUCED
    assert row["number"] == pytest.approx(0.8, abs=0.1) and "wild cluster" in row["interval"]


def test_finding_5_rows_name_their_runner_on_every_path():
    weak = underrep_finding(_pairs(0.1, auc_full=0.5), method="t", auc_floor=0.65, runner="finetune")
    assert weak["verdict"] == INCONCLUSIVE and weak["runner"] == "finetune" and "did not learn A" in weak["reason"]
    few = underrep_finding(_pairs(0.1).query("seed < 2"), method="t", auc_floor=0.65, runner="finetune")
    assert few["verdict"] == INCONCLUSIVE and few["runner"] == "finetune"
