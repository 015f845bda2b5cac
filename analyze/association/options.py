"""Option groups of the association tests and of embedding, each one frozen dataclass [R].

:class:`AssociationOptions` holds what every test of :mod:`analyze.association.significance`
takes (the keys of a specification's ``[defaults]``, :data:`analyze.association.spec.DEFAULT_OPTIONS`);
:class:`EmbedOptions` how the stage embeds concept sets. Both are checked once, on creation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from analyze.association.permutation import check_test_options
from extract.errors import UserError


@dataclass(frozen=True)
class AssociationOptions:
    """Permutation and bootstrap settings of one association test.

    ``n_permutations``: exact enumeration when all partitions number at most this, else this
    many in the p-value's denominator; ``n_bootstrap``: bootstrap replicates (0 skips the
    interval); ``confidence``: interval level; ``seed``: seeds the partitions and the
    bootstrap; ``exact``: "auto", True or False; ``alternative``: "greater", "less" or
    "two-sided".
    """

    n_permutations: int = 10000
    n_bootstrap: int = 2000
    confidence: float = 0.95
    seed: int = 0
    exact: bool | str = "auto"
    alternative: str = "greater"

    def __post_init__(self):
        check_test_options(n_permutations=self.n_permutations, seed=self.seed, exact=self.exact,
                           alternative=self.alternative)
        if isinstance(self.n_bootstrap, bool) or not isinstance(self.n_bootstrap, (int, np.integer)) \
                or self.n_bootstrap < 0:
            raise UserError(f"`n_bootstrap` {self.n_bootstrap!r} is invalid; pass a non-negative "
                            "integer such as 2000 (0 skips the interval).")
        if isinstance(self.confidence, bool) \
                or not isinstance(self.confidence, (float, int, np.floating)) \
                or not 0 < self.confidence < 1:
            raise UserError(f"`confidence` {self.confidence!r} is invalid; pass a level in (0, 1) "
                            "such as 0.95.")

    def to_dict(self) -> dict:
        """Plain-Python dict for JSON / tables."""
        return asdict(self)


@dataclass(frozen=True)
class EmbedOptions:
    """How concept sets are embedded: ``image_size`` overrides every backbone's resize and crop
    (None keeps each backbone's own), ``batch_size`` images per forward pass, ``device``."""

    image_size: int | None = None
    batch_size: int = 64  # analyze.association.models.DEFAULT_BATCH_SIZE (not imported: no torch here)
    device: str = "cpu"
