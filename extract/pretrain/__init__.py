"""Pretraining bases: supervised training, contrastive (SimCLR) training, data, and recipes of biased,
control, self-supervised and scratch bases."""

from __future__ import annotations

from extract.pretrain.config import PretrainConfig, PretrainModel
from extract.pretrain.augment import AUGMENTS, AugmentSpec, augment_batch
from extract.pretrain.contrastive import nt_xent, pretrain_contrastive
from extract.pretrain.recipe import (
    check_disjoint,
    check_recipe,
    ensure_cache,
    entry_fingerprint,
    image_digests,
    load_recipe,
    run_recipe,
    shared_images,
)
from extract.pretrain.train import (
    base_preprocess,
    build_model,
    evaluate,
    pretrain_base,
    resolve_arch,
    write_base,
    write_scratch_base,
)

__all__ = ['AUGMENTS', 'AugmentSpec', 'augment_batch', 'nt_xent', 'pretrain_contrastive', 'PretrainConfig', 'PretrainModel', 'base_preprocess', 'build_model', 'check_disjoint', 'check_recipe', 'ensure_cache', 'entry_fingerprint', 'evaluate', 'image_digests', 'load_recipe', 'pretrain_base', 'resolve_arch', 'run_recipe', 'shared_images', 'write_base', 'write_scratch_base']
