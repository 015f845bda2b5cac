"""Every subset kind by its ``kind`` name, and :func:`spec_from_dict`, which rebuilds any spec."""

from __future__ import annotations

from analyze.subsets.balanced import Correlation, SubSelection, TestResample
from analyze.subsets.mix import DomainMix
from analyze.subsets.proportion import Natural, Skew, Underrepresentation
from analyze.subsets.salience import SalienceSets
from extract.errors import UserError

# Kinds whose methods take one metadata table.
SPEC_KINDS = {
    cls.kind: cls
    for cls in (Correlation, SubSelection, Skew, Natural, Underrepresentation, SalienceSets, TestResample)
}
# Kinds whose methods take one metadata table per source.
MULTI_SOURCE_KINDS = {DomainMix.kind: DomainMix}


def spec_from_dict(d: dict):
    """Rebuild any spec from its ``to_dict()`` output (dispatch on ``d["kind"]``)."""
    kinds = SPEC_KINDS | MULTI_SOURCE_KINDS
    if not isinstance(d, dict) or d.get("kind") not in kinds:
        kind = d.get("kind") if isinstance(d, dict) else None
        raise UserError(f"subset spec kind {kind!r} is unknown; use one of {sorted(kinds)}.")
    return kinds[d["kind"]].from_dict(d)
