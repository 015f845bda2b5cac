"""Salience: how much easier the sensitive attribute is to learn than each target (estimate, fit, table)."""

from __future__ import annotations

from analyze.salience.config import SalienceConfig
from analyze.salience.estimate import (
    TABLE_COLUMNS,
    SalienceEstimate,
    SalienceValidation,
    salience_components,
    salience_from_scores,
    true_relative_strength,
    validate_salience,
)
from analyze.salience.table import salience_table

__all__ = ['TABLE_COLUMNS', 'SalienceConfig', 'SalienceEstimate', 'SalienceValidation', 'salience_components', 'salience_from_scores', 'salience_table', 'true_relative_strength', 'validate_salience']
