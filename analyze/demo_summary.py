"""The demo's last stage: collect the records, fit effects, draw figures, plan, report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def _collect(out: Path, results: Path, salience: Path, kinds: dict[str, str]) -> pd.DataFrame:
    from analyze.collect import collect
    from analyze.effects import attach_salience, with_base_kind

    table = collect(results)
    table = with_base_kind(table, {k: v for k, v in kinds.items() if k in set(table["backbone"])})
    table = attach_salience(table, pd.read_csv(salience))
    table.to_csv(out / "table.csv", index=False)
    print(f"  table {out / 'table.csv'}: {len(table)} cells ({', '.join(sorted(table['runner'].unique()))})")
    return table


def _effects(out: Path, table: pd.DataFrame) -> pd.DataFrame:
    from analyze.effects import run_effects
    from analyze.effects_format import write_tables

    coefs, _ = run_effects(table, model="general", runner="probe")
    paths = write_tables(coefs, out / "effects" / "general-probe", title="bias ~ base * (correlation strength + salience)")
    print(f"  effects {paths[0]}")
    moderation, _ = run_effects(table, model="moderation", runner="probe")
    paths = write_tables(moderation, out / "effects" / "moderation-probe",
                         title="bias ~ base * correlation strength + correlation strength : salience")
    print(f"  effects {paths[0]}")
    return pd.concat([coefs, moderation], ignore_index=True)


def _figures(out: Path, table: pd.DataFrame, coefs: pd.DataFrame, salience: Path) -> None:
    from analyze.plots import plot_coefficients, plot_correlation, plot_salience, plot_tradeoff

    figures = out / "figures"
    for runner in sorted(table["runner"].unique()):
        rows = table[table["runner"] == runner]
        plot_correlation(rows, figures / f"correlation-{runner}")
        plot_tradeoff(rows, figures / f"tradeoff-{runner}")
    plot_coefficients(coefs, figures / "coefficients-probe")
    plot_salience(pd.read_csv(salience), figures / "salience", truth="true_log_ratio")
    print(f"  figures {figures}")


def _plan(out: Path, table: pd.DataFrame) -> Path:
    from analyze.plan import plan_curation

    plan = plan_curation(table[table["runner"] == "probe"])
    path = out / "plan.csv"
    plan.to_csv(path, index=False)
    print(f"  curation plan {path}")
    return path


def summarise(out: Path, results: Path, salience: Path, kinds: dict[str, str]) -> Path:
    """Collect, effects, figures, plan and report; return the HTML report's path."""
    from analyze.report import build_report

    table = _collect(out, results, salience, kinds)
    coefs = _effects(out, table)
    _figures(out, table, coefs, salience)
    plan = _plan(out, table)
    md, html = build_report(out / "table.csv", out_dir=out / "report", salience=salience, plan=plan,
                            title="biastransfer demo: bias transfer on procedural avatars")
    print(f"  report {md}\n  report {html}")
    return html
