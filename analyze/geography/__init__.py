"""The geographic-representation experiment (Wang & Russakovsky's third experiment).

A base pretrained on geographically diverse images (GeoDE) and a size-matched ImageNet base
are finetuned on mixes of Dollar Street and COCO (:class:`analyze.subsets.DomainMix`) and
scored by top-k accuracy on Dollar Street (overall and per income bucket) and macro AP on
COCO (:mod:`analyze.metrics.multilabel`). :mod:`analyze.geography.experiment` summarises the
cells and states the finding; :mod:`analyze.geography.grid` reads geography grids (the
``wr-geography`` preset: a store per source per base) into sweep grids whose runner is the
domain mix (:mod:`analyze.runners.domain_mix`), so ``biastransfer sweep`` runs them; :mod:`analyze.geography.avatars` runs the whole experiment offline on two rendered
avatar domains.
"""

from analyze.geography.experiment import (
    DEFAULT_SHARES,
    conclude,
    finding_sentence,
    share_to_match,
    summarize,
    write_summary,
)
from analyze.geography.grid import (
    GeographyGrid,
    load_geography_grid,
    run_geography_grid,
    sweep_grid,
)

__all__ = ["DEFAULT_SHARES", "GeographyGrid", "conclude", "finding_sentence", "load_geography_grid",
           "run_geography_grid", "share_to_match", "summarize", "sweep_grid", "write_summary"]
