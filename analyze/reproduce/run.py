"""``biastransfer reproduce``: run the grids the papers' findings need on the avatars, then the findings table.

Stages (each reuses what exists under ``out``, so a rerun only does what is missing; the
functions are in :mod:`analyze.reproduce.stages`):

1. **avatars**: render the finetuning dataset (``celeba-like`` preset);
2. **bases**: the biased base, the control bases and scratch from ``data/recipes/avatars-bases.toml``
   (:func:`extract.pretrain.run_recipe`; existing checkpoints are kept);
3. **stores**: features of every base (and of the ImageNet EfficientNet-Lite0 when asked and installed);
4. **salience**: estimates per target (the paper's scratch estimator by default) and their check
   against the generator's truth;
5. **probes**: W&R's design on linear probes, the fast proxy
   (:func:`~analyze.reproduce.grids.paper_probe_specs`);
6. **finetunes**: W&R's design on full finetunes, each group on the bases of its roles
   (:func:`~analyze.reproduce.grids.paper_finetune_groups`): natural and skewz sets on the
   biased base and every control, the natural n-sweep on the biased base and the best control,
   finding 4's sets on the ImageNet Lite0, Scratch (random init with its own lr search) and
   the biased base, the pairs experiment on the bases pretrained on A and on B;
7. **pairs**: the pairs experiment's tables: probes on the bases pretrained on A and on B, and
   the finetunes' records; scored by the AUC on A-positives (A-only test positives against the
   test negatives);
   then **ranjit**: Ranjit et al.'s findings R1-R3b from full finetunes (:mod:`analyze.reproduce.ranjit`,
   sizes in ``ReproduceConfig.ranjit``; the step ``"ranjit"`` can join any pipeline by name);
8. **findings and report**: collect, the findings table (:mod:`analyze.reproduce.findings`:
   W&R's findings 1-5 for both runners from :func:`~analyze.reproduce.claims.paper_findings`,
   the toolkit's salience validation and geography), and the report, which leads with it.

:class:`ReproduceConfig` sets every size and names the cells' grids and the stages;
:data:`PRESETS` holds ``paper`` (the design, for a GPU), ``cpu`` (the default: every finding
on fewer seeds and a smaller n, aimed at 2 hours on 2 cores; ``full`` is its old name),
``quick`` (the probe proxy plus a few finetunes, a look within about 15 minutes once the bases
exist), ``tiny`` (the end-to-end test's sizes, 32 px) and ``demo`` (``biastransfer demo``:
the same first six stages on a smaller grid, then effects, figures, the curation plan and the
report, :data:`PIPELINES`). Each stage prints its time, the run its time per stage, its cell
count and its time against the preset's budget. A run first removes
the temporary files that a killed run left in its output folders
(:func:`remove_stale_outputs`, the sweep's cleanup).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from analyze.reproduce import stages
from analyze.reproduce.grids import (
    SENSITIVE,
    demo_finetune_specs,
    demo_probe_specs,
    paper_finetune_groups,
    paper_probe_specs,
)
from analyze.reproduce.ranjit import RanjitConfig
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

STEREOTYPE_LEVELS = (0.0, 0.25, 0.5, 0.7, 0.8, 1.0)  # the demo's correlation grid


def _paper_targets() -> tuple:
    """The avatar targets W&R's design runs on: ``extract.datasets.avatars.PAPER_TARGETS``, the
    targets whose natural-set probe AUC at n = 128 reaches the floor on every pretrained base
    (four today: backdrop, dark_clothes, long_hair, eyewear; the issue asks for eight)."""
    from extract.datasets.avatars import PAPER_TARGETS

    return tuple(PAPER_TARGETS)


def _paper_controls() -> tuple:
    """The control bases by pretraining attribute: ``extract.datasets.avatars.PAPER_CONTROLS`` (hat,
    blazer, smiling: the recipe's three controls, none a label that determines a target)."""
    from extract.datasets.avatars import PAPER_CONTROLS

    return tuple(PAPER_CONTROLS)


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
        Stereotype levels P(stereotypical group | y=1) of the demo's correlation grid.
    probe_n : int
        Training rows of the demo's probe cells.
    paper_n : int
        Training rows of findings 1 and 2 (natural and skewz sets; the paper: 1024), probes and finetunes.
    sizes, finetune_sizes : tuple of int
        The natural n-sweep of finding 3 for probes and for finetunes.
    curation_n, subselection_n : int
        Finding 4: training rows of the constant-n correlation sets, and of the sub-selection
        base set (20% counter-stereotypical positives).
    seeds : tuple of int
        Replicate seeds of the probe cells.
    finetune_target : str
        The demo's finetune target.
    finetune_targets, sweep_targets, curation_targets : tuple of str, optional
        Targets of the finetunes of findings 1-2, 3 and 4 (None: ``targets``).
    finetune_groups : tuple of str, optional
        The finetune groups run (:func:`~analyze.reproduce.grids.paper_finetune_groups`: "R1/R2",
        "R3", "R4", "R6/R7"; None: every one).
    finetune_n, finetune_seeds, finetune_epochs
        The demo's finetune size; the finetunes' seeds and maximum epochs (the best validation
        epoch is kept).
    finetune_lrs, finetune_freeze_bn
        The pretrained bases' learning-rate grid and whether their BatchNorm statistics are kept
        (the EfficientNet-Lite0 bases: yes, lr 0.003).
    scratch_lrs, scratch_epochs
        The scratch base's own settings (W&R's Scratch: random init trained on the finetuning
        set): its lr grid, searched on validation loss, BatchNorm statistics trained (a random
        network has none worth keeping); epochs (None: ``finetune_epochs``).
    controls : tuple of str, optional
        The recipe's control bases to build and compare (base names or pretraining attributes;
        None: every control). The pair's two controls are always kept.
    finetune_bases : tuple of str, optional
        Bases to finetune in a plain (demo) finetune grid (names; None: the biased base and every control).
    pair : (str, str)
        Attributes A and B of the pairs experiment; each must be a control base's label.
    pair_shares, pair_sizes : tuple of float, tuple of int
        Shares of A-only positives and training sizes of the pairs experiment (finding 5 is
        judged at the smallest size and share).
    salience_targets : tuple of str, optional
        Targets whose salience is estimated and checked against the generator (finding 6;
        None: ``targets``).
    salience_method : {"scratch", "probe"}
        The salience estimator (``scratch``: the paper's, models trained from random init on the
        aligned and inverted sets).
    salience_replicates : int
        Models per arrangement of the salience estimate.
    imagenet : bool
        Also extract, probe and finetune the ImageNet EfficientNet-Lite0 (when its weights are installed).
    workers : int, optional
        Rendering processes (default all cores).
    progress : bool
        Progress bars (stderr) inside the stages; each stage prints its time either way.
    probe_grid, finetune_grid : callable
        ``(metadata, config) -> specs``: the probe cells, and the finetune cells (a list of specs
        or of :class:`~analyze.reproduce.grids.CellGroup`) (:mod:`analyze.reproduce.grids`).
    pipeline : str
        The stages run, a key of :data:`PIPELINES` (``reproduce``: the findings table;
        ``demo``: effects, figures and the curation plan).
    deviation : str
        What the preset changes from the paper's design, written in every finding's ``deviation``.
    budget_s : float, optional
        The preset's time budget; the run prints its time against it (an overrun is said).
    title : str
        The report's title.
    sensitive : str
        The sensitive attribute of every grid (the avatars': ``dark_skin``).
    source : object, optional
        Where the finetuning images come from (:mod:`analyze.reproduce.sources`; None: render
        the avatars, :class:`~analyze.reproduce.sources.AvatarSource`).
    bases : tuple of (name, path)
        Given toolkit checkpoints instead of the recipe's bases (empty: build the recipe's);
        each name contains its role (:func:`analyze.reproduce.sources.given_bases`).
    ranjit : RanjitConfig
        Sizes of the ``ranjit`` stage (Ranjit et al.'s findings R1-R3b, :mod:`analyze.reproduce.ranjit`).
    """

    n: int = 20000  # the natural n = 4096 cell and the 30% curation cells need the rows
    size: int = 64
    seed: int = 0
    recipe: str | None = None
    pretrain_n: int | None = None
    pretrain_epochs: int | None = None
    targets: tuple = field(default_factory=_paper_targets)
    levels: tuple = STEREOTYPE_LEVELS
    probe_n: int = 128
    paper_n: int = 1024
    sizes: tuple = (128, 256, 512, 1024, 2048, 4096)
    finetune_sizes: tuple = (256, 512, 1024, 2048, 4096)
    curation_n: int = 1024
    subselection_n: int = 1024
    seeds: tuple = (0, 1, 2, 3, 4)
    finetune_target: str = "long_hair"
    finetune_targets: tuple | None = None
    sweep_targets: tuple | None = None
    curation_targets: tuple | None = None
    finetune_groups: tuple | None = None
    finetune_n: int = 1024
    finetune_seeds: tuple = (0, 1, 2, 3, 4)  # the paper: 5
    finetune_epochs: int = 10
    finetune_lrs: tuple = (0.003,)
    finetune_freeze_bn: bool = True
    scratch_lrs: tuple = (0.01, 0.03, 0.1)
    scratch_epochs: int | None = None
    controls: tuple | None = field(default_factory=_paper_controls)
    finetune_bases: tuple | None = None
    pair: tuple = ("hat", "blazer")
    pair_shares: tuple = (0.9, 0.5, 0.1)
    pair_sizes: tuple = (128, 1024)
    salience_targets: tuple | None = None
    salience_method: str = "scratch"
    salience_replicates: int = 3
    imagenet: bool = True
    workers: int | None = None
    progress: bool = True
    probe_grid: Callable = paper_probe_specs
    finetune_grid: Callable = paper_finetune_groups
    pipeline: str = "reproduce"
    deviation: str = ""
    budget_s: float | None = None
    title: str = "biastransfer reproduce: the papers' findings on procedural avatars"
    sensitive: str = SENSITIVE
    source: object = None  # None: the avatars (analyze.reproduce.sources)
    bases: tuple = ()  # given (name, checkpoint) pairs instead of the recipe's bases
    ranjit: RanjitConfig = RanjitConfig()


#: Deviations every avatar preset shares (the findings table's ``deviation`` column).
AVATAR_DEVIATIONS = ("procedural avatars with dark_skin as the sensitive attribute and the fixed skewz group "
                     "(paper: CelebA, female); bases start from ImageNet Lite0 (paper: ResNet-50 trained from "
                     "scratch); one lr for the pretrained bases (paper: a search per condition); best epoch kept "
                     "(paper: the last)")
CPU_DEVIATIONS = ("cpu preset: n = 256 (paper: 1024); 3 seeds (paper: 5); n-sweep 128-1024 on one "
                  "target (paper: up to 130,216 on every attribute); finding 4 on two targets at n = 256, Scratch's lr "
                  "grid 0.01 / 0.1; pairs at n = 128 only (paper: 128 and 1024)")

PRESETS = {
    # W&R's design (docs/science.md section 12) for a GPU
    "paper": ReproduceConfig(deviation=AVATAR_DEVIATIONS),
    # every finding and the paper's targets, fewer seeds and smaller n: aimed at 2 hours on 2 cores, estimated at
    # about 5.7 (0.02 s per training image-epoch of a Lite0 at 64 px measured on the quick preset; README). 10
    # epochs: at n = 256 every quick finetune (4 epochs) was still improving at its last epoch (epochs_at_edge)
    "cpu": ReproduceConfig(n=9000, paper_n=256, sizes=(128, 256, 512, 1024, 2048), finetune_sizes=(128, 256, 512, 1024),
                           curation_n=256, subselection_n=256, seeds=(0, 1, 2, 3, 4), finetune_seeds=(0, 1, 2),
                           finetune_epochs=10, sweep_targets=("eyewear",), curation_targets=("eyewear", "long_hair"),
                           scratch_lrs=(0.01, 0.1), pair_sizes=(128,), salience_replicates=2, budget_s=7200.0,
                           deviation=f"{AVATAR_DEVIATIONS}; {CPU_DEVIATIONS}"),
    # the probe proxy of the whole design plus a few finetunes (findings 1-2 on one target): a look, not a test
    "quick": ReproduceConfig(n=4000, paper_n=256, sizes=(128, 256, 512, 1024), finetune_sizes=(256,), curation_n=256,
                             subselection_n=256, seeds=(0, 1, 2), finetune_targets=("eyewear",),
                             finetune_groups=("R1/R2",), finetune_seeds=(0, 1, 2), finetune_epochs=4,
                             pair_sizes=(128,), salience_method="probe", salience_replicates=2, budget_s=900.0,
                             deviation=f"{AVATAR_DEVIATIONS}; quick preset: n = 256 (paper: 1024), finetunes of "
                                       "findings 1-2 on one target only, 4 epochs, probe salience (paper: scratch "
                                       "models)",
                             title="biastransfer reproduce --preset quick: a look at the design, not a reproduction"),
    "tiny": ReproduceConfig(n=700, size=32, recipe="avatars-bases-smallcnn.toml", pretrain_n=300, pretrain_epochs=1,
                            targets=("eyewear", "long_hair", "facial_hair", "smiling"), paper_n=48, sizes=(32, 48),
                            finetune_sizes=(32, 48), curation_n=40, subselection_n=40, seeds=(0, 1, 2),
                            finetune_targets=("eyewear",), sweep_targets=("eyewear",), curation_targets=("eyewear",),
                            finetune_seeds=(0, 1, 2), finetune_epochs=1, finetune_lrs=(0.01,), finetune_freeze_bn=False,
                            scratch_lrs=(0.01,), controls=("avatars-control-hat", "avatars-control-blazer"),
                            pair_shares=(1.0, 0.2), pair_sizes=(48,), salience_method="probe",
                            imagenet=False, workers=1, progress=False, deviation="tiny preset: an end-to-end test",
                            ranjit=RanjitConfig(n_small=16, n_large=64, epochs=1, seeds=(0, 1), batch_size=16, lr=0.01,
                                                freeze_bn=False, per_set=6, concept_n=300, n_bootstrap=200)),
    # the quick-start of `biastransfer demo` (analyze.demo): three targets, the correlation grid at
    # P(s=1 | y=1) levels, the natural and skewed sets at n = 128, a small finetune grid on the
    # biased base and one control, then effects, figures, the curation plan and the report
    "demo": ReproduceConfig(n=3000, size=64, targets=("eyewear", "facial_hair", "long_hair"),
                            levels=(0.0, 0.25, 0.5, 0.75, 1.0), sizes=(), seeds=(0, 1, 2, 3, 4),
                            finetune_target="eyewear", finetune_n=128, finetune_seeds=(0, 1, 2), finetune_epochs=12,
                            finetune_lrs=(0.01,), finetune_freeze_bn=True,
                            controls=("avatars-control-hat", "avatars-control-blazer"),
                            finetune_bases=("avatars-biased-dark_skin", "avatars-control-hat"), salience_method="probe",
                            salience_targets=("eyewear", "facial_hair", "long_hair", "raised_eyebrows", "smiling",
                                              "closed_eyes"),
                            probe_grid=demo_probe_specs, finetune_grid=demo_finetune_specs,
                            pipeline="demo", title="biastransfer demo: bias transfer on procedural avatars"),
}
PRESETS["full"] = PRESETS["cpu"]  # the old default's name: an alias of cpu
DEFAULT_PRESET = "cpu"


#: Each pipeline's stages in order: (title, steps); a step is a function of the
#: :class:`~analyze.reproduce.stages.PipelineRun` from :mod:`analyze.reproduce.stages`.
PIPELINES = {
    "reproduce": (
        ("the dataset: render the avatars, or check the given one", ("render",)),
        ("pretrain the biased, control and scratch bases", ("pretrain",)),
        ("extract features of every base", ("extract",)),
        ("estimate salience and check it against the generator", ("salience",)),
        ("linear probes (the proxy): natural and skewz sets, n-sweep, curation sets", ("probes",)),
        ("full finetunes: W&R's design (findings 1-5)", ("finetunes",)),
        ("pairs experiment (underrepresentation): the probe proxy, and the finetunes' table", ("pairs",)),
        ("Ranjit et al.: retention, new biases, transfer (finetunes)", ("ranjit",)),
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
                  "report/effects", "figures", "effects/general-probe", "effects/moderation-probe",
                  "bases/objectives", "ranjit", "ranjit/random-init")


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
        with Stage(number, len(pipeline), title) as stage:
            for step in steps:
                getattr(stages, step)(run)
        run.times[title] = stage.seconds
    print(time_summary(run, time.perf_counter() - began))
    return run


def time_summary(run: stages.PipelineRun, seconds: float) -> str:
    """The run's time per stage, its cells and, where the preset has a budget, the overrun."""
    config = run.config
    lines = [f"{config.pipeline} finished in {seconds:.0f} s; outputs under {run.out}"]
    lines += [f"  {s:8.1f} s  {title}" for title, s in run.times.items()]
    lines.append(f"  cells: {run.cells.get('probe', 0)} probe, {run.cells.get('finetune', 0)} finetune "
                 f"({run.cells.get('finetune_run', 0)} trained in this run)")
    setup = sum(s for title, s in run.times.items() if title.startswith(("render", "pretrain")))
    if setup:
        lines.append(f"  without rendering the avatars and building the bases ({setup:.0f} s): {seconds - setup:.0f} s")
    if config.budget_s is not None:
        def against(s):
            return f"overran by {s - config.budget_s:.0f} s" if s > config.budget_s else \
                f"{config.budget_s - s:.0f} s to spare"

        lines.append(f"  budget {config.budget_s:.0f} s: {against(seconds)}"
                     + (f" ({against(seconds - setup)} without rendering and the bases)" if setup else ""))
    return "\n".join(lines)


def run_reproduce(*, out, config: ReproduceConfig = PRESETS[DEFAULT_PRESET], geography=None, report: bool = True) -> Path:
    """Run (or resume) every stage of ``config``'s pipeline under ``out``; return the findings CSV's path."""
    return run_pipeline(out, config, geography=geography, report=report).findings_csv


def probe_specs(meta, config: ReproduceConfig) -> list:
    """The probe cells of ``config`` (its ``probe_grid``) on the metadata ``meta``."""
    return config.probe_grid(meta, config)


__all__ = ["DEFAULT_PRESET", "OUTPUT_FOLDERS", "PIPELINES", "PRESETS", "ReproduceConfig", "time_summary", "probe_specs", "remove_stale_outputs",
           "run_pipeline", "run_reproduce", "underrep_table"]
