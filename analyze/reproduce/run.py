"""``biastransfer reproduce``: run the grids the papers' findings need on the avatars, then the findings table.

Stages (each reuses what exists under ``out``, so a rerun only does what is missing; the
functions are in :mod:`analyze.reproduce.stages`):

1. **avatars**: render the finetuning dataset (``celeba-like`` preset);
2. **bases**: the biased base, the control bases and scratch from ``data/recipes/avatars-bases.toml``
   (:func:`extract.pretrain.run_recipe`; existing checkpoints are kept);
3. **stores**: features of every base (and of the ImageNet EfficientNet-Lite0 when asked and installed);
4. **salience**: estimates per target and their check against the generator's truth;
5. **probes**: per target and seed, the correlation grid (stereotype levels), the natural set
   over an n-sweep, the skewed set (80% stereotypical) and the curation sub-selection sets;
6. **finetunes**: full finetuning at the natural level and the strongest stereotype level,
   biased base and every control;
7. **pairs**: W&R's underrepresentation experiment with probes: label "A or B", the share of
   A-only positives falling, on the base pretrained on A and on the one pretrained on B;
   scored by the AUC on A-positives (A-only test positives against the test negatives);
8. **findings and report**: collect, the findings table (:mod:`analyze.reproduce.findings`),
   and the report, which leads with it.

:class:`ReproduceConfig` sets every size and names the cells' grids and the stages;
:data:`PRESETS` holds ``full`` (the default), ``tiny`` (the end-to-end test's sizes, 32 px)
and ``demo`` (``biastransfer demo``: the same first six stages on a smaller grid, then
effects, figures, the curation plan and the report, :data:`PIPELINES`). A run first removes
the temporary files that a killed run left in its output folders
(:func:`remove_stale_outputs`, the sweep's cleanup).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from analyze.reproduce import stages
from analyze.reproduce.grids import (
    demo_finetune_specs,
    demo_probe_specs,
    findings_finetune_specs,
    findings_probe_specs,
)
from analyze.reproduce.stages import (  # noqa: F401  (re-exported: the stage helpers' old home)
    IMAGENET,
    RECIPE,
    Stage,
    auc_table,
    base_kinds,
    feasible,
    recipe_path,
    underrep_table,
)

STEREOTYPE_LEVELS = (0.0, 0.25, 0.5, 0.7, 0.8, 1.0)  # 0.8 and 0.7: the curation pair (20% -> 30% counter)


@dataclass(frozen=True)
class ReproduceConfig:
    """Sizes of every grid of ``biastransfer reproduce`` (keyword-only; see :data:`PRESETS`).

    Parameters
    ----------
    n, size, seed : int
        Avatars rendered for finetuning and testing, their side in pixels, the render seed.
    recipe : str, optional
        The bases' recipe: a file name in ``data/recipes`` or a path (None:
        ``avatars-bases.toml``, EfficientNet-Lite0 bases started from ImageNet; the tiny
        preset uses the from-scratch ``avatars-bases-smallcnn.toml`` for speed).
    pretrain_n, pretrain_epochs : int, optional
        Override the recipe's pretraining images and epochs (None: the recipe's).
    targets : tuple of str
        Finetuning targets (each with the sensitive attribute ``dark_skin``).
    levels : tuple of float
        Stereotype levels P(stereotypical group | y=1) of the correlation grid.
    probe_n : int
        Training rows of the correlation, natural and skewed probe cells.
    sizes : tuple of int
        The natural n-sweep (finding 3).
    subselection_n : int
        Training rows of the sub-selection base set (20% counter-stereotypical positives).
    seeds : tuple of int
        Replicate seeds of the probe cells.
    finetune_target, finetune_n, finetune_seeds, finetune_epochs
        The full-finetuning cells.
    finetune_lrs, finetune_freeze_bn
        Their learning-rate grid and whether the bases' BatchNorm statistics are kept (the
        EfficientNet-Lite0 bases: yes, lr 0.003 with the best of 10 epochs at n = 512).
    controls : tuple of str, optional
        The recipe's control bases to build and compare (names; None: every control). The
        pair's two controls are always kept.
    finetune_bases : tuple of str, optional
        Bases to finetune (names; None: the biased base and every control).
    pair : (str, str)
        Attributes A and B of the pairs experiment; each must be a control base's label.
    pair_shares, pair_n : tuple of float, int
        Shares of A-only positives and training rows of the pairs experiment.
    salience_targets : tuple of str, optional
        Targets whose salience is estimated and checked against the generator (finding 6;
        None: ``targets``). Spearman's interval needs at least four; by default the three
        probe targets plus three faint ones (raised_eyebrows, smiling, closed_eyes), so the
        ranking is tested over a wide range of signal strengths.
    salience_replicates : int
        Models per arrangement of the salience estimate.
    imagenet : bool
        Also extract and probe the ImageNet EfficientNet-Lite0 (when its weights are installed).
    workers : int, optional
        Rendering processes (default all cores).
    progress : bool
        Progress bars (stderr) inside the stages; each stage prints its time either way.
    probe_grid, finetune_grid : callable
        ``(metadata, config) -> specs``: the probe and finetune cells
        (:mod:`analyze.reproduce.grids`).
    pipeline : str
        The stages run, a key of :data:`PIPELINES` (``reproduce``: the findings table;
        ``demo``: effects, figures and the curation plan).
    title : str
        The report's title.
    """

    n: int = 9000  # the natural n = 4096 cell needs 5120 rows of the 60% train split
    size: int = 64
    seed: int = 0
    recipe: str | None = None
    pretrain_n: int | None = None
    pretrain_epochs: int | None = None
    # the demo's targets: learnable by every base (smiling, raised_eyebrows and closed_eyes change
    # 0.2-0.3% of the pixels and stay near chance), none a pretraining label of a compared base
    targets: tuple = ("eyewear", "facial_hair", "long_hair")
    levels: tuple = STEREOTYPE_LEVELS
    probe_n: int = 128
    sizes: tuple = (64, 128, 256, 512, 1024, 2048, 4096)
    subselection_n: int = 512
    seeds: tuple = (0, 1, 2, 3, 4)
    finetune_target: str = "long_hair"
    finetune_n: int = 512
    finetune_seeds: tuple = (0, 1, 2)  # three, the fewest a finding is stated from: a Lite0 finetune at n = 512 is ~30 s
    finetune_epochs: int = 10
    finetune_lrs: tuple = (0.003,)
    finetune_freeze_bn: bool = True
    # the long_hair control is left out: long_hair is a finetuning target, and no pretraining
    # label may determine a target
    controls: tuple | None = ("avatars-control-hat", "avatars-control-blazer")
    finetune_bases: tuple | None = None
    pair: tuple = ("hat", "blazer")
    pair_shares: tuple = (1.0, 0.5, 0.2, 0.1)
    pair_n: int = 256
    salience_targets: tuple | None = ("eyewear", "facial_hair", "long_hair", "raised_eyebrows", "smiling",
                                      "closed_eyes")
    salience_replicates: int = 3
    imagenet: bool = True
    workers: int | None = None
    progress: bool = True
    probe_grid: Callable = findings_probe_specs
    finetune_grid: Callable = findings_finetune_specs
    pipeline: str = "reproduce"
    title: str = "biastransfer reproduce: the papers' findings on procedural avatars"


PRESETS = {
    "full": ReproduceConfig(),
    "tiny": ReproduceConfig(n=700, size=32, recipe="avatars-bases-smallcnn.toml", pretrain_n=300, pretrain_epochs=1,
                            targets=("eyewear", "long_hair", "facial_hair", "smiling"), levels=(0.5, 0.7, 0.8, 1.0),
                            probe_n=48, sizes=(32, 64), subselection_n=40, seeds=(0, 1, 2), finetune_target="eyewear",
                            finetune_n=48, finetune_seeds=(0, 1, 2), finetune_epochs=1, finetune_lrs=(0.01,),
                            finetune_freeze_bn=False, pair_shares=(1.0, 0.2), pair_n=48, salience_targets=None,
                            imagenet=False, workers=1, progress=False),
    # the quick-start of `biastransfer demo` (analyze.demo): three targets, the correlation grid at
    # P(s=1 | y=1) levels, the natural and skewed sets at n = 128, a small finetune grid on the
    # biased base and one control, then effects, figures, the curation plan and the report
    "demo": ReproduceConfig(n=3000, size=64, levels=(0.0, 0.25, 0.5, 0.75, 1.0), sizes=(), seeds=(0, 1, 2, 3, 4),
                            finetune_target="eyewear", finetune_n=128, finetune_seeds=(0, 1, 2), finetune_epochs=12,
                            finetune_lrs=(0.01,), finetune_freeze_bn=True,
                            finetune_bases=("avatars-biased-dark_skin", "avatars-control-hat"),
                            salience_targets=None, probe_grid=demo_probe_specs, finetune_grid=demo_finetune_specs,
                            pipeline="demo", title="biastransfer demo: bias transfer on procedural avatars"),
}


#: Each pipeline's stages in order: (title, steps); a step is a function of the
#: :class:`~analyze.reproduce.stages.PipelineRun` from :mod:`analyze.reproduce.stages`.
PIPELINES = {
    "reproduce": (
        ("render the avatar dataset", ("render",)),
        ("pretrain the biased, control and scratch bases", ("pretrain",)),
        ("extract features of every base", ("extract",)),
        ("estimate salience and check it against the generator", ("salience",)),
        ("linear probes: correlation grid, n-sweep, skewed and curation sets", ("probes",)),
        ("full finetuning at the natural and the strongest stereotype level", ("finetunes",)),
        ("pairs experiment (underrepresentation) with probes", ("pairs",)),
        ("collect, findings table and report", ("collect", "aucs", "findings", "report")),
    ),
    "demo": (
        ("render the avatar dataset", ("render",)),
        ("pretrain biased, control and scratch bases", ("pretrain",)),
        ("extract features of every base", ("extract",)),
        ("estimate salience and check it against the generator's truth", ("salience",)),
        ("linear probes: correlation grid, natural and skewed sets", ("probes",)),
        ("full finetuning on a smaller grid", ("finetunes",)),
        ("collect, effects, plots, plan and report", ("collect", "competence", "effects", "figures", "plan",
                                                      "report")),
    ),
}


#: The folders under ``out`` that ``reproduce`` writes into (through :func:`extract.io.atomic_write`).
OUTPUT_FOLDERS = (".", "avatars", "bases", "stores", "results", "findings", "report", "report/figures",
                  "report/effects", "figures", "effects/general-probe", "effects/moderation-probe")


def remove_stale_outputs(out) -> int:
    """Delete the temporary files that killed runs left in ``out``'s :data:`OUTPUT_FOLDERS`; return how many.

    The sweep's cleanup (:func:`extract.io.remove_stale_temporaries`), folder by folder: only
    temporaries named by the toolkit's writer whose process is gone (a run still writing keeps
    its own), never another file.
    """
    from extract.io import remove_stale_temporaries

    return sum(remove_stale_temporaries(Path(out) / folder) for folder in OUTPUT_FOLDERS)


def run_pipeline(out, config: ReproduceConfig, *, geography=None, report: bool = True) -> stages.PipelineRun:
    """Run (or resume) the stages of ``config.pipeline`` under ``out``; return the run's state.

    Temporary files of an earlier run that was killed mid-write (an avatar render, a
    checkpoint, a record) are removed first (:func:`remove_stale_outputs`).
    """
    if config.pipeline not in PIPELINES:
        from extract.errors import UserError

        raise UserError(f"pipeline {config.pipeline!r} is unknown; choose one of {sorted(PIPELINES)}.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    removed = remove_stale_outputs(out)
    if removed:
        print(f"  removed {removed} temporary file(s) that an interrupted run left under {out}")
    began = time.perf_counter()
    run = stages.PipelineRun(out=out, config=config, geography=geography, write_report=report)
    pipeline = PIPELINES[config.pipeline]
    for number, (title, steps) in enumerate(pipeline, start=1):
        with Stage(number, len(pipeline), title):
            for step in steps:
                getattr(stages, step)(run)
    print(f"{config.pipeline} finished in {time.perf_counter() - began:.0f} s; outputs under {out}")
    return run


def run_reproduce(*, out, config: ReproduceConfig = PRESETS["full"], geography=None, report: bool = True) -> Path:
    """Run (or resume) every stage of ``config``'s pipeline under ``out``; return the findings CSV's path."""
    return run_pipeline(out, config, geography=geography, report=report).findings_csv


def probe_specs(meta, config: ReproduceConfig) -> list:
    """The probe cells of ``config`` (its ``probe_grid``) on the metadata ``meta``."""
    return config.probe_grid(meta, config)


__all__ = ["OUTPUT_FOLDERS", "PIPELINES", "PRESETS", "ReproduceConfig", "probe_specs", "remove_stale_outputs",
           "run_pipeline", "run_reproduce", "underrep_table"]
