"""Full finetuning of a base on many finetuning subsets (runner, data, training, search, evaluation)."""

from __future__ import annotations

from analyze.finetune.runner import (
    DEFAULT_LRS,
    DEFAULT_WEIGHT_DECAYS,
    FinetuneConfig,
    FinetuneOptions,
    base_factory,
    finetune_cells,
    group_conditions,
)

__all__ = ['DEFAULT_LRS', 'DEFAULT_WEIGHT_DECAYS', 'FinetuneConfig', 'FinetuneOptions', 'base_factory', 'finetune_cells', 'group_conditions']
