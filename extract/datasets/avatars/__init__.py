"""The embedded default dataset: procedural avatars with known attributes and known salience.

Faces come from ``python_avatars`` rasterised by ``resvg_py`` on an opaque background.
Each avatar carries a sensitive attribute (``dark_skin``: skin tone BROWN, DARK_BROWN or
BLACK vs PALE, LIGHT or YELLOW) and fourteen binary targets of graded visual salience
(:data:`TARGETS`; :data:`PAPER_TARGETS` are those every pretrained base of the shipped recipe
can learn, :data:`PAPER_CONTROLS` the recipe's control labels). A preset fixes every target's ``(P(t=1|s=1), P(t=1|s=0))``, so the
natural correlation with the sensitive attribute is known exactly; everything else
(part within class, colours, background, a few pixels of jitter) is a random nuisance.

Everything is a function of the seed: attributes, splits and each image's nuisances come
from separate streams (``np.random.default_rng([seed, stream, index])`` per image), so
the same seed and parameters give byte-identical images in any worker count or order.

The cache file is written by :mod:`extract.datasets.avatars.cache` (its layout is described
there) and read by :class:`~extract.datasets.avatars.adapter.AvatarAdapter`; rendering runs
in parallel through :mod:`extract.datasets.avatars.workers`.
"""

from __future__ import annotations

from extract.datasets.avatars.adapter import AvatarAdapter, contact_sheet
from extract.datasets.avatars.cache import (
    FORMAT,
    FORMAT_VERSION,
    MAX_SIZE,
    MIN_SIZE,
    SIGNAL_SAMPLE,
    RenderSpec,
    measure_signal_strength,
    render_dataset,
)
from extract.datasets.avatars.render import ATTRIBUTES, PAPER_CONTROLS, PAPER_TARGETS, SENSITIVE, TARGETS
from extract.datasets.avatars.spec import DEFAULT_PRESET, PRESETS, expected_rates, sample_attributes

__all__ = [
    "ATTRIBUTES", "PAPER_CONTROLS", "PAPER_TARGETS", "PRESETS", "SENSITIVE", "TARGETS", "AvatarAdapter", "RenderSpec", "contact_sheet",
    "expected_rates", "measure_signal_strength", "render_dataset", "sample_attributes",
]
