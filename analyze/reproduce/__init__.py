"""Reproduce the papers' findings on the embedded avatars, each with a computed verdict.

:mod:`~analyze.reproduce.verdicts` holds the rules (reproduced / contradicted /
inconclusive), :mod:`~analyze.reproduce.measures` W&R's measurements as the paper's code makes
them (oriented gaps, Skew, Value, the validation threshold on a resampled test set),
:mod:`~analyze.reproduce.inference` the intervals they need (wild cluster bootstrap, a
bootstrap of the cut, pooled over targets), :mod:`~analyze.reproduce.claims` W&R's findings 1-5
as pure functions of per-cell tables and the findings table (``build_findings``),
:mod:`~analyze.reproduce.findings` the table's columns, the toolkit's own rows and its writers, and :mod:`~analyze.reproduce.run` runs the grids
(``biastransfer reproduce``).
"""

from analyze.reproduce.claims import ClaimOptions, build_findings, paper_findings
from analyze.reproduce.findings import (
    COLUMNS,
    findings_markdown,
    write_findings,
)
from analyze.reproduce.verdicts import (
    CONTRADICTED,
    INCONCLUSIVE,
    REPRODUCED,
    VERDICTS,
    Verdict,
)

__all__ = ["COLUMNS", "CONTRADICTED", "INCONCLUSIVE", "REPRODUCED", "VERDICTS", "ClaimOptions", "Verdict",
           "build_findings", "findings_markdown", "paper_findings", "write_findings"]
