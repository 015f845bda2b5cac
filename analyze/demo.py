"""The quick-start on the embedded avatar dataset: the ``demo`` preset of ``biastransfer reproduce``.

``biastransfer demo`` (and ``make demo``) runs, under ``work/demo`` by default, the stages
of :mod:`analyze.reproduce.stages` listed by :data:`analyze.reproduce.run.PIPELINES`
``["demo"]`` with the sizes of :data:`analyze.reproduce.run.PRESETS` ``["demo"]``:

1. **avatars**: render the avatar dataset (``celeba-like`` preset) and a contact sheet;
2. **bases**: pretrain a biased base (on ``dark_skin``), two control bases and a scratch
   base from ``data/recipes/avatars-bases.toml`` on a separate pretraining cache (the trained
   bases start from the ImageNet EfficientNet-Lite0 and learn their one label on top);
3. **stores**: extract features of every base (and of the ImageNet EfficientNet-Lite0 when
   its weights package is installed);
4. **salience**: estimate each target's salience (probe method) and compare it with the
   generator's ground-truth signal strengths;
5. **probes**: a correlation grid (5 levels), the natural set and a skewed set (80% of positives
   in the target's stereotypical group) per target, with linear probes on every base;
6. **finetune**: a smaller full-finetune grid (biased vs one control base);
7. **collect / effects / plots / plan / report**: one tidy table, the effect-size tables,
   figures, the curation plan and a Markdown + HTML report.

Every stage reuses its output when it already exists, so a rerun only does what is missing.

Why the preset's settings (:data:`analyze.reproduce.run.PRESETS` ``["demo"]``): the targets
``eyewear``, ``facial_hair`` and ``long_hair`` are every target a probe can learn, none a
control base's pretraining attribute: all three are correlated with ``dark_skin`` in the
celeba-like preset and their salience is graded (signal strength at 64 px: facial_hair 0.009,
eyewear 0.015, blond_hair 0.041, long_hair 0.051). smiling, raised_eyebrows and closed_eyes
change 0.2-0.3% of the pixel intensity, and linear probes on every smallcnn base stay at test
AUC 0.47-0.69 on them even at n = 1024; blond_hair has too few dark-skinned avatars (50 in the
demo's train pool) for its correlation sets at n = 128. The finetune target is ``eyewear``, the
most salient target with little pixel-level entanglement with skin tone; three seeds, the fewest
a finding is stated from, keep ``make demo`` within 10 minutes. Full finetunes of the
EfficientNet-Lite0 bases keep the bases' BatchNorm statistics (128 small images re-estimate
them badly); lr 0.01, the best of 12 epochs kept.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from analyze.reproduce.grids import SENSITIVE  # noqa: F401  (re-exported)
from analyze.reproduce.stages import IMAGENET, RECIPE  # noqa: F401  (re-exported)
from extract.paths import work_dir


def run_demo(*, out=None, n: int = 3000, size: int = 64, seed: int = 0, workers=None) -> Path:
    """Run (or resume) the demo preset under ``out`` (default ``work/demo``); return the HTML report's path."""
    from analyze.reproduce.run import PRESETS, run_pipeline

    config = replace(PRESETS["demo"], n=n, size=size, seed=seed, workers=workers)
    return run_pipeline(Path(out or work_dir() / "demo"), config).report


__all__ = ["run_demo"]
