"""Effect-size regressions on the collected results table (models, fitting, formatting)."""

from __future__ import annotations

from analyze.effects.fit import EffectFit, coefficient_table, fit_model
from analyze.effects.format import to_markdown, write_tables
from analyze.effects.models import (
    COEFFICIENT_COLUMNS,
    EffectsModel,
    attach_salience,
    filter_rows,
    fit_general,
    fit_moderation,
    fit_paper,
    paper_rows,
    paper_value,
    require_columns,
    run_effects,
    with_base_kind,
    with_derived_columns,
)

__all__ = ['COEFFICIENT_COLUMNS', 'EffectsModel', 'EffectFit', 'attach_salience', 'coefficient_table', 'filter_rows', 'fit_general', 'fit_model', 'fit_moderation', 'fit_paper', 'paper_rows', 'paper_value', 'require_columns', 'run_effects', 'to_markdown', 'with_base_kind', 'with_derived_columns', 'write_tables']
