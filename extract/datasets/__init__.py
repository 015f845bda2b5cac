"""Dataset adapters: local copies of datasets as metadata tables plus images.

``get_adapter(name, root, **options)`` builds an adapter by name; ``ADAPTERS`` lists the
names. See :mod:`extract.datasets.base` for the contract and :mod:`extract.datasets.registry`
for the registry.
"""

from __future__ import annotations

from extract.datasets.base import Adapter
from extract.datasets.registry import ADAPTERS, adapter_class, get_adapter

__all__ = ["ADAPTERS", "Adapter", "adapter_class", "get_adapter"]
