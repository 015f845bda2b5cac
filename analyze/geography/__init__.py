"""The geographic-representation experiment (Wang & Russakovsky's third experiment).

A base pretrained on geographically diverse images (GeoDE) and a size-matched ImageNet base
are finetuned on mixes of Dollar Street and COCO (:class:`analyze.subsets.DomainMix`) and
scored by top-k accuracy on Dollar Street (overall and per income bucket) and macro AP on
COCO (:mod:`analyze.metrics.multilabel`). :mod:`analyze.geography.experiment` runs the cells
on feature stores and states the finding; :mod:`analyze.geography.grid` reads geography grids
(the ``wr-geography`` preset: a store per source per base) and runs them for ``biastransfer
sweep``; :mod:`analyze.geography.avatars` runs the whole experiment offline on two rendered
avatar domains.
"""

from analyze.geography.experiment import (
    DEFAULT_SHARES,
    finding_sentence,
    run_cells,
    share_to_match,
    summarize,
    write_summary,
)
from analyze.geography.grid import (
    GeographyGrid,
    load_geography_grid,
    run_geography_grid,
)

__all__ = ["DEFAULT_SHARES", "GeographyGrid", "finding_sentence", "load_geography_grid", "run_cells",
           "run_geography_grid", "share_to_match", "summarize", "write_summary"]
