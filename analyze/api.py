"""The curated public names of the analyze stage, in pipeline order.

``from analyze.api import *`` gives a notebook everything it needs: subset specs, the probe
estimator and engine, the runners, metrics, results, effects, the curation planner, the
report and its figures, sweeps, association tests and the demo. Importing this module loads
torch, statsmodels and matplotlib; the command line never imports it (``biastransfer
--help`` stays fast).
"""

from __future__ import annotations

from analyze.association import (
    association,
    association_test,
    concept_association,
    pair_association,
    paired_change,
    permutation_pvalue,
    set_bootstrap_ci,
)
from analyze.config import EvalConfig, RunContext
from analyze.curation import IntervalConfig, plan_curation, plan_markdown
from analyze.demo import run_demo
from analyze.effects import EffectsModel, fit_general, fit_moderation, fit_paper, paper_rows, run_effects, write_tables
from analyze.finetune import FinetuneConfig, finetune_cells
from analyze.metrics import (
    GroupReport,
    TrainingRows,
    ValidationRows,
    bootstrap_ci,
    directional_bias_amplification,
    evaluate_runs,
    fpr_gap,
    predict,
    replicate_ci,
    roc_auc,
    stereotype_fpr_gap,
)
from analyze.probe import LinearProbe, ProbeConfig, ProbeTask, fit_probes
from analyze.probe.cells import run_probe_cells
from analyze.report import (
    build_report,
    plot_coefficients,
    plot_correlation,
    plot_salience,
    plot_size,
    plot_tradeoff,
)
from analyze.results import collect, read_record, read_table, write_table
from analyze.salience import SalienceConfig, salience_table, validate_salience
from analyze.subsets import (
    Correlation,
    Natural,
    SalienceSets,
    Skew,
    SubSelection,
    TestResample,
    Underrepresentation,
    level_toward_stereotype,
    spec_from_dict,
)
from analyze.sweep import load_grid, sweep

__all__ = [
    # option groups
    "EvalConfig", "RunContext", "ProbeConfig", "SalienceConfig", "EffectsModel", "IntervalConfig",
    "TrainingRows", "ValidationRows",
    # subsets
    "Correlation", "Natural", "SalienceSets", "Skew", "SubSelection", "TestResample", "Underrepresentation",
    "level_toward_stereotype", "spec_from_dict",
    # runners
    "LinearProbe", "ProbeTask", "fit_probes", "run_probe_cells", "FinetuneConfig", "finetune_cells",
    "salience_table", "validate_salience",
    # metrics
    "GroupReport", "bootstrap_ci", "directional_bias_amplification", "evaluate_runs", "fpr_gap", "predict",
    "replicate_ci", "roc_auc", "stereotype_fpr_gap",
    # results, effects, planning, report
    "collect", "read_record", "read_table", "write_table", "fit_general", "fit_moderation", "fit_paper",
    "paper_rows", "run_effects", "write_tables", "plan_curation", "plan_markdown", "build_report",
    "plot_coefficients", "plot_correlation", "plot_salience", "plot_size", "plot_tradeoff",
    # sweeps, association, demo
    "load_grid", "sweep", "association", "association_test", "concept_association", "pair_association",
    "paired_change", "permutation_pvalue", "set_bootstrap_ci", "run_demo",
]
