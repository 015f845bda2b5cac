"""The dataset adapter registry: each adapter's name, its class, and building one by name."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from extract.datasets.base import Adapter
from extract.errors import UserError

# name -> "module:Class"; imported lazily so a missing optional dependency of one adapter
# never breaks the others.
ADAPTERS = {
    "avatars": "extract.datasets.avatars:AvatarAdapter",
    "celeba": "extract.datasets.celeba:CelebAAdapter",
    "coco": "extract.datasets.coco:COCOAdapter",
    "dollarstreet": "extract.datasets.dollarstreet:DollarStreetAdapter",
    "fairface": "extract.datasets.fairface:FairFaceAdapter",
    "geode": "extract.datasets.geode:GeodeAdapter",
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
    cls = adapter_class(name)
    params = inspect.signature(cls.__init__).parameters
    unknown = sorted(set(options) - set(params))
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        allowed = sorted(k for k in params if k not in {"self", "root"})
        raise UserError(f"the {name} adapter has no option {unknown[0]!r}; its options are {allowed}.")
    return cls(root, **options)
