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
* :func:`comparison_groups`, :func:`similarity_table` — the paper's own comparison groups
  (intra- / inter-class cosine similarity, plot groups indiv / pairs / comps / object) with
  bootstrap intervals; :func:`retention` — Spearman rho of a group before vs after, with a
  paired bootstrap over images; :mod:`~analyze.association.findings` — the paper's three
  findings as rules with a verdict (docs/science.md section 11).

Options travel as :class:`AssociationOptions` (permutations, bootstrap, level, seed, exactness,
alternative) and :class:`EmbedOptions` (image size, batch size, device).

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
    paired_amplification,
    paired_change,
)
from analyze.association.findings import (
    VERDICTS,
    FindingRow,
    RetentionEstimate,
    amplification_rule,
    mcnemar_one_sided,
    new_bias_rule,
    retention_estimate,
    retention_rule,
    stage_rows,
    transfer_rule,
)
from analyze.association.groups import (
    AVATAR_NAMES,
    PAPER_NAMES,
    PLOT_GROUPS,
    ComparisonItem,
    GroupNames,
    comparison_groups,
    inter_random_subsets,
    inter_similarity,
    intra_similarity,
    intra_split_half,
    similarity_table,
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
from analyze.association.options import AssociationOptions, EmbedOptions
from analyze.association.permutation import (
    ALTERNATIVES,
    PermutationResult,
    check_test_options,
    partition_pvalue,
    permutation_pvalue,
)
from analyze.association.retention import RetentionOptions, RetentionResult, retention
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
    # Ranjit et al.'s comparison groups, retention and findings
    "AVATAR_NAMES", "PAPER_NAMES", "PLOT_GROUPS", "VERDICTS", "AssociationOptions",
    "ComparisonItem", "EmbedOptions", "FindingRow", "GroupNames", "RetentionEstimate",
    "RetentionOptions", "RetentionResult", "amplification_rule", "comparison_groups",
    "inter_random_subsets", "inter_similarity", "intra_similarity", "intra_split_half",
    "mcnemar_one_sided", "new_bias_rule", "paired_amplification", "retention", "retention_estimate", "retention_rule",
    "stage_rows",
    "similarity_table", "transfer_rule",
]
