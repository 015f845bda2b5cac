"""biastransfer.extract: images -> HDF5 feature stores.

Datasets (``extract.datasets``), the backbone registry (``extract.backbones``), feature
stores (``extract.store.reader``) and the extraction loop (``extract.extraction``). This package
never imports ``analyze``.
"""

__version__ = "0.1.0"
