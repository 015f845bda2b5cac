"""Test helper: call :func:`extract.pretrain.train.pretrain_base` with flat keyword options.

The tests vary one option at a time; this sorts each into the :class:`PretrainModel` or the
:class:`PretrainConfig` it belongs to (construction errors surface as they would for a caller).
"""

from __future__ import annotations

import dataclasses

from extract.pretrain.config import PretrainConfig, PretrainModel
from extract.pretrain.train import pretrain_base


def pretrain(adapter, **options):
    """``pretrain_base(adapter, ...)`` with model and training keys taken from ``options``."""
    groups = {}
    for cls in (PretrainModel, PretrainConfig):
        names = {f.name for f in dataclasses.fields(cls)}
        groups[cls] = cls(**{k: options.pop(k) for k in list(options) if k in names})
    return pretrain_base(adapter, model=groups[PretrainModel], config=groups[PretrainConfig], **options)
