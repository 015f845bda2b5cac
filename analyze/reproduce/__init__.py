"""Reproduce the papers' findings on the embedded avatars, each with a computed verdict.

:mod:`~analyze.reproduce.verdicts` holds the rules (reproduced / not reproduced /
inconclusive), :mod:`~analyze.reproduce.findings` builds the findings table from collected
results, and :mod:`~analyze.reproduce.run` runs the grids (``biastransfer reproduce``).
"""

from analyze.reproduce.findings import (
    COLUMNS,
    build_findings,
    findings_markdown,
    write_findings,
)
from analyze.reproduce.verdicts import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    VERDICTS,
    Verdict,
)

__all__ = ["COLUMNS", "INCONCLUSIVE", "NOT_REPRODUCED", "REPRODUCED", "VERDICTS", "Verdict", "build_findings",
           "findings_markdown", "write_findings"]
