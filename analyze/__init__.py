"""biastransfer.analyze: feature stores -> subsets -> probes / finetunes -> metrics -> effects."""

from extract import __version__

__all__ = ["__version__"]
