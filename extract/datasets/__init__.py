"""Dataset adapters: local copies of datasets as metadata tables plus images.

``get_adapter(name, root, **options)`` builds an adapter by name; ``ADAPTERS`` lists the
names. See :mod:`extract.datasets.base` for the contract.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from extract.datasets.base import Adapter
from extract.errors import UserError

# name -> "module:Class"; imported lazily so a missing optional dependency of one adapter
# never breaks the others.
ADAPTERS = {
    "avatars": "extract.datasets.avatars:AvatarAdapter",
    "celeba": "extract.datasets.celeba:CelebAAdapter",
    "coco": "extract.datasets.coco:COCOAdapter",
    "fairface": "extract.datasets.fairface:FairFaceAdapter",
    "waterbirds": "extract.datasets.waterbirds:WaterbirdsAdapter",
    "manifest": "extract.datasets.manifest:ManifestAdapter",
    "folder": "extract.datasets.folder:ImageFolderAdapter",
}


def adapter_class(name: str) -> type[Adapter]:
    """The adapter class registered under ``name``."""
    if name not in ADAPTERS:
        raise UserError(f"unknown dataset {name!r}; choose one of {sorted(ADAPTERS)}.")
    module, cls = ADAPTERS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def get_adapter(name: str, root: str | Path, **options) -> Adapter:
    """Build the adapter ``name`` over the local copy at ``root``."""
    return adapter_class(name)(root, **options)


__all__ = ["ADAPTERS", "Adapter", "adapter_class", "get_adapter"]
