"""The report: findings, per-runner sections, comparisons and figures from a collected table."""

from __future__ import annotations

from analyze.report.build import build_report, plan_table, sweep_summary
from analyze.report.plots import (
    plot_coefficients,
    plot_correlation,
    plot_salience,
    plot_size,
    plot_tradeoff,
)

__all__ = ['build_report', 'plan_table', 'plot_coefficients', 'plot_correlation', 'plot_salience', 'plot_size', 'plot_tradeoff', 'sweep_summary']
