"""Embedding association measures before and after finetuning (Ranjit et al. 2023) [R].

How much closer the embeddings of a concept lie to one group than to another, measured with
cosine similarity on a backbone's penultimate features (docs/science.md section
11). Pure numpy over embedding arrays, one image per
row, float16 / float32 accepted, computed in float64. Sign convention everywhere: positive
means "closer to ``A``".

Measures
--------
* :func:`association` — per-image ``s(w, A, B) = mean_a cos(w, a) - mean_b cos(w, b)``.
* :func:`effect_size`, :func:`permutation_pvalue`, :func:`association_test` — the WEAT / iEAT
  test of target sets ``X, Y`` on attribute sets ``A, B`` (reference: ``ryansteed/weat``
  ``Test``; sample standard deviation, one-sided permutation p with ties counted as
  exceedances, exact enumeration when feasible, else sampled with a +1 pseudo-count).
* :func:`concept_association` — one target set ``W`` against two group sets: ``mean_w
  s(w, A, B)`` with a bootstrap interval and a permutation p for "``A`` and ``B`` are
  exchangeable" (labels of ``A u B`` re-partitioned at their sizes).
* :func:`pair_association` — the paper's concept-pair measure, see its docstring.
* :func:`set_bootstrap_ci`, :func:`bootstrap_replicates`, :func:`paired_change` — within-set
  bootstrap intervals and the before/after-finetuning change paired over the same images.

The paper averaged p-values over trials; do not: pool permutations or combine p-values
(Fisher / Stouffer) instead. Random features can show large spurious associations, so read
an effect against random-init backbones through the same pipeline.
"""

from __future__ import annotations

from analyze.association.bootstrap import (
    MEASURE_SETS,
    BootstrapInterval,
    PairedChange,
    set_bootstrap_ci,
    bootstrap_replicates,
    paired_change,
)
from analyze.association.measures import (
    MIN_SET_SIZE,
    association,
    cosine_matrix,
    effect_size,
    mean_cosine,
    mean_within_cosine,
    unit_sets,
)
from analyze.association.permutation import (
    ALTERNATIVES,
    PermutationResult,
    check_test_options,
    partition_pvalue,
    permutation_pvalue,
)
from analyze.association.significance import (
    AssociationTest,
    ConceptAssociation,
    association_test,
    concept_association,
    pair_association,
)

__all__ = [
    "ALTERNATIVES", "MEASURE_SETS", "MIN_SET_SIZE", "AssociationTest", "BootstrapInterval",
    "ConceptAssociation", "PairedChange", "PermutationResult", "association",
    "association_test", "set_bootstrap_ci", "bootstrap_replicates", "concept_association",
    "cosine_matrix", "effect_size", "mean_cosine", "mean_within_cosine", "pair_association",
    "paired_change", "permutation_pvalue",
]
