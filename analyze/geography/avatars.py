"""The geographic-representation experiment on the embedded avatars, offline, end to end.

Two avatar domains that differ in style (:mod:`extract.datasets.avatars.domains`: warm
backgrounds and formal clothes vs cool backgrounds and casual clothes) play Dollar Street
and COCO; the target is the eight-way top type (a multi-class target set scored by top-k
accuracy). The steps:

1. render four caches: a pretraining cache per domain (seed ``pretrain_seed``) and a
   finetuning/evaluation cache per domain (seed ``seed``), so no pretraining image is ever
   a finetuning or test image;
2. pretrain one base per domain (``smallcnn``, multi-label BCE on the top columns), as
   GeoDE's and ImageNet's bases are pretrained on their own images;
3. extract both evaluation caches with both bases;
4. fit multi-label probes on :class:`analyze.subsets.DomainMix` sets of the two domains
   (share of domain ``a`` x seeds, n rows) for each base, and score top-k accuracy and
   macro AP on each domain's test split: a geography grid (:func:`geography_document`) run
   by the sweep (:func:`analyze.geography.grid.run_geography_grid`);
5. summarise over seeds and state the finding: base ``a`` with a small share of domain-``a``
   data reaches a top-k accuracy on ``a`` that base ``b`` needs a larger share to reach, and
   the reverse on ``b``.

Every file is kept under ``work_dir`` and reused when its name matches the settings, so a
second run only redoes what changed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from analyze.geography.grid import run_geography_grid
from analyze.sweep.grid import build_grid
from extract.backbones import create_backbone
from extract.datasets.avatars import AvatarAdapter
from extract.datasets.avatars.domains import DOMAINS, TOP_COLUMNS, render_domain
from extract.errors import UserError
from extract.extraction import ExtractOptions, extract_features
from extract.pretrain.config import PretrainConfig, PretrainModel
from extract.pretrain.train import pretrain_base, write_base

SOURCES = ("a", "b")


@dataclass(frozen=True)
class AvatarGeographyConfig:
    """Settings of :func:`run_avatar_experiment` (defaults: the documented command, ~5 min on 2 CPU cores)."""

    n_pretrain: int = 1500
    n_eval: int = 1000
    size: int = 32
    pretrain_seed: int = 1000
    seed: int = 0
    epochs: int = 12
    lr: float = 0.1
    width: int = 16
    shares: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)
    n: int = 128
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    k: int = 2
    Cs: tuple[float, ...] = (0.01, 0.1, 1.0)
    at_share: float = 0.1

    def __post_init__(self):
        if not 1 <= self.k < len(TOP_COLUMNS):
            raise UserError(f"k={self.k} must be from 1 to {len(TOP_COLUMNS) - 1} (there are {len(TOP_COLUMNS)} tops).")
        if not any(np.isclose(self.at_share, s) for s in self.shares) or not any(
                np.isclose(1 - self.at_share, s) for s in self.shares):
            raise UserError(f"at_share={self.at_share} and 1 - at_share must both be among the shares {self.shares}.")


def _cache(work: Path, domain: str, *, n: int, size: int, seed: int, role: str, progress: bool) -> Path:
    path = work / "avatars" / f"domain-{domain}-{role}-{n}-{size}px-seed{seed}.h5"
    if not path.exists():
        render_domain(path, domain=domain, n=n, size=size, seed=seed, progress=progress)
    return path


def _base(work: Path, domain: str, cache: Path, config: AvatarGeographyConfig, *, device: str, progress: bool) -> Path:
    name = f"domain-{domain}-{config.n_pretrain}-{config.size}px-e{config.epochs}-lr{config.lr}-w{config.width}"
    path = work / "bases" / f"{name}.pt"
    if not path.exists():
        model, history = pretrain_base(
            AvatarAdapter(cache), attributes=list(TOP_COLUMNS), device=device, progress=progress,
            model=PretrainModel(arch="smallcnn", arch_kwargs={"width": config.width}, image_size=config.size),
            config=PretrainConfig(epochs=config.epochs, lr=config.lr, seed=config.pretrain_seed))
        write_base(path, model, history=history, name=name, meta={"domain": domain})
    return path


def run_avatar_experiment(work_dir: str | Path, config: AvatarGeographyConfig = AvatarGeographyConfig(), *,
                          device: str = "cpu", progress: bool = True) -> dict:
    """Run the whole avatar experiment under ``work_dir``; see the module docstring.

    Returns
    -------
    dict
        ``table`` (the collected records), ``summary`` (means and intervals per base and
        share), ``findings`` (two :func:`analyze.geography.experiment.share_to_match`
        results: top-k on ``a`` with base ``a`` as reference, top-k on ``b`` with base
        ``b``), ``paths`` (summary.csv, findings.csv, summary.md) and ``config``.
    """
    work = Path(work_dir).expanduser()
    evaluation = {d: _cache(work, d, n=config.n_eval, size=config.size, seed=config.seed, role="eval",
                            progress=progress) for d in DOMAINS}
    pretraining = {d: _cache(work, d, n=config.n_pretrain, size=config.size, seed=config.pretrain_seed,
                             role="pretrain", progress=progress) for d in DOMAINS}
    bases = {d: _base(work, d, pretraining[d], config, device=device, progress=progress) for d in DOMAINS}
    stores = {}
    for b, checkpoint in bases.items():
        backbone = create_backbone(checkpoint)
        stores[f"base-{b}"] = {d: str(extract_features(AvatarAdapter(cache), backbone,
                                                       work / "stores" / f"{cache.stem}__{checkpoint.stem}.h5",
                                                       options=ExtractOptions(batch_size=256, device=device,
                                                                              num_workers=0, progress=progress)))
                               for d, cache in evaluation.items()}
    grid = build_grid(geography_document(stores, config, device=device), source="geography-avatars")
    result = run_geography_grid(grid, out=work / "results" / f"n{config.n}-k{config.k}")
    return {"table": result["table"], "summary": result["summary"], "findings": result["findings"],
            "paths": result["paths"], "config": asdict(config)}


def geography_document(stores: dict[str, dict[str, str]], config: AvatarGeographyConfig, *, device: str) -> dict:
    """The avatar experiment as a geography grid: each base's store per domain, the top columns as
    classes, no grouping columns; both findings on top-k accuracy (on ``a`` with base ``a`` as the
    reference, on ``b`` with base ``b``)."""
    metric = f"top{config.k}_accuracy"
    head = {"kind": "geography", "name": "geography-avatars", "sources": list(SOURCES), "classes": list(TOP_COLUMNS),
            "groups": [], "k": config.k, "reference": "base-a", "at_share": config.at_share,
            "metrics": [f"{metric}_a", f"{metric}_b"],
            "shown": [f"{metric}_a", f"{metric}_b", "macro_ap_a", "macro_ap_b"]}
    return {"grid": head, "probe": {"Cs": list(config.Cs), "device": device},
            "subsets": [{"kind": "domain_mix", "shares": list(config.shares), "n": config.n,
                         "seeds": list(config.seeds)}],
            "backbones": [{"name": name, "base_kind": name, "stores": paths} for name, paths in stores.items()]}


__all__ = ["SOURCES", "AvatarGeographyConfig", "run_avatar_experiment"]
