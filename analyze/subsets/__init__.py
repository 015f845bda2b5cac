"""Seeded finetuning subsets: which rows of a metadata table a model is trained on.

A subset is a small frozen *spec* (a dataclass of plain values). Its methods are pure
functions of the metadata table (columns ``split`` in {train, val, test} and binary int8
attributes, -1 = unknown; rows with -1 in the columns a spec uses are left out):

- ``indices(meta) -> np.ndarray``: sorted ``np.int64`` *positions* (not ids) of the
  training rows;
- ``split_indices(meta) -> SubsetSplit(train, val)``: the same training rows plus the
  disjoint validation rows (used to choose hyperparameters);
- ``labels(meta) -> np.ndarray``: the finetuning label of every row (``np.int8``);
- ``to_dict()`` / :func:`spec_from_dict`: a JSON-serialisable round trip with a ``kind``
  field, so every result records the spec that reproduces its rows.

Same spec, same rows (each cell is drawn by ``np.random.default_rng`` seeded from
``seed``; the global RNG is never used); another seed, other rows. Within one seed the
``n`` training rows are nested: the rows for n = 128 lie inside those for n = 1024.

Sign convention for ``target`` = y and ``sensitive`` = s: a correlation **level** ``c`` is
``P(s=1 | y=1) = P(s=0 | y=0)``; ``c = 0`` means ``y <=> s=0``, ``0.5`` independence,
``1`` means ``y <=> s=1``. With s = Male this is the paper's "share of positives that are
male" (docs/science.md section 3: cells F+ and M- take (1-c)L rows, F- and M+ take cL).

Kinds: :class:`Correlation`, :class:`SubSelection`, :class:`Skew`, :class:`Natural`
(the sample-size grid), :class:`Underrepresentation`, :class:`SalienceSets`,
:class:`TestResample`, and :class:`DomainMix` (two sources in a given share; its methods
take one metadata table per source and return positions per source). An infeasible
request raises :class:`extract.errors.UserError` naming the limiting cell (or source) and
the largest feasible value.

Example
-------
>>> spec = Correlation("Wearing_Earrings", "Male", 0.2, n=1024, seed=3)   # doctest: +SKIP
>>> rows = spec.split_indices(meta)                                        # doctest: +SKIP
>>> spec_from_dict(json.loads(json.dumps(spec.to_dict()))) == spec         # doctest: +SKIP
True
"""

from __future__ import annotations

from analyze.subsets.balanced import (
    Correlation,
    SubSelection,
    TestResample,
    test_rows_option,
)
from analyze.subsets.core import SubsetSplit, level_toward_stereotype, natural_level
from analyze.subsets.kinds import MULTI_SOURCE_KINDS, SPEC_KINDS, spec_from_dict
from analyze.subsets.mix import DomainMix
from analyze.subsets.proportion import Natural, Skew, Underrepresentation
from analyze.subsets.salience import SalienceSets

__all__ = [
    "Correlation",
    "DomainMix",
    "MULTI_SOURCE_KINDS",
    "Natural",
    "SPEC_KINDS",
    "SalienceSets",
    "Skew",
    "SubSelection",
    "SubsetSplit",
    "TestResample",
    "test_rows_option",
    "Underrepresentation",
    "level_toward_stereotype",
    "natural_level",
    "spec_from_dict",
]
