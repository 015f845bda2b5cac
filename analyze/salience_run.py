"""Salience of many targets at once, and the ``biastransfer salience`` verb.

:func:`salience_table` decodes (or embeds) the rows every target needs once, then
estimates each target's salience with the chosen method (:mod:`analyze.salience_fit`).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from extract.errors import UserError

METHODS = ("scratch", "probe")
DEFAULT_BASE = "smallcnn.scratch"


def salience_table(targets: Sequence[str], sensitive: str, *, adapter=None, store=None, method: str = "probe",
                   base: str = DEFAULT_BASE, replicates: int = 3, seed: int = 0, n: int | None = None,
                   image_size: int | None = None, device: str = "auto", config=None, Cs=None,
                   progress: bool = False) -> pd.DataFrame:
    """One salience estimate per target (columns :data:`analyze.salience.TABLE_COLUMNS` plus
    ``selected``, the hyperparameters chosen per arrangement as JSON).

    Parameters
    ----------
    targets : sequence of str
        Target attributes ``y``; ``sensitive`` is ``s``.
    adapter : dataset adapter, optional
        Images for ``"scratch"``, and for ``"probe"`` without a store.
    store : FeatureStore, optional
        Fixed features for ``"probe"`` (its metadata gives the rows).
    method : {"scratch", "probe"}
    base : str
        ``"scratch"``: the architecture trained from random init (seeded per replicate);
        ``"probe"`` without a store: the base whose features are probed (a random-init base
        is re-initialised per replicate, from ``seed + r``).
    replicates, seed, n
        Models per arrangement, first seed, training rows per model (None: all).
    config : FinetuneConfig, optional
        Training protocol of ``"scratch"`` (default :data:`analyze.salience_fit.SCRATCH_CONFIG`).
    Cs : sequence of float, optional
        Probe regularisation grid (default :data:`analyze.salience_fit.DEFAULT_CS`).
    """
    from analyze.salience import TABLE_COLUMNS, salience_from_scores
    from analyze.salience_fit import DEFAULT_CS, SCRATCH_CONFIG, rows_needed

    if method not in METHODS:
        raise UserError(f"method must be one of {METHODS}, got {method!r}.")
    if not targets:
        raise UserError("no targets given; pass at least one target attribute.")
    if store is None and adapter is None:
        raise UserError("salience needs images (an adapter) or, for the probe method, a feature store.")
    if method == "scratch" and adapter is None:
        raise UserError("the scratch method trains on images; pass the dataset (--dataset/--root).")
    meta = store.metadata if (store is not None and method == "probe") else adapter.metadata()
    rows = rows_needed(meta, targets, sensitive, replicates=replicates, seed=seed, n=n)
    scorer = _scorer(method, meta, rows, sensitive, replicates=replicates, adapter=adapter, store=store, base=base,
                     image_size=image_size, device=device, config=config or SCRATCH_CONFIG, Cs=Cs or DEFAULT_CS, seed=seed)
    estimates = []
    for target in tqdm(targets, desc=f"salience ({method})", unit="target", disable=not progress):
        scores, arrangements, test, details = scorer(target, replicates=replicates, seed=seed, n=n)
        y, s = meta[target].to_numpy()[test], meta[sensitive].to_numpy()[test]
        estimate = salience_from_scores(y, s, scores, arrangements, target=target, sensitive=sensitive,
                                        method=method, seed=seed, details=details)
        estimates.append({**estimate.to_row(), "selected": json.dumps(details, sort_keys=True)})
    return pd.DataFrame(estimates, columns=[*TABLE_COLUMNS, "selected"])


def _scorer(method, meta, rows, sensitive, *, replicates, adapter, store, base, image_size, device, config, Cs, seed):
    """``scorer(target, replicates=, seed=, n=)``, closing over rows decoded (or embedded) once."""
    from analyze.finetune import base_factory
    from analyze.finetune_data import ImageBank, is_random_init, load_base
    from analyze.salience_fit import embed, probe_scores, scratch_scores
    from extract.extraction import resolve_device

    dev = resolve_device(device)
    if method == "probe" and store is not None:
        def store_scorer(target, **kw):
            return probe_scores(lambda pos, r: store.rows(pos, dtype=np.float32), meta, target, sensitive, Cs=Cs, **kw)
        return store_scorer
    native = getattr(adapter, "image_shape", (None,))[0]
    backbone = load_base(base, seed=seed, image_size=image_size, native_size=native)
    bank = ImageBank.from_adapter(adapter, backbone.preprocess, rows)
    if dev.type == "cuda":
        bank.to(dev)
    if method == "scratch":
        if not is_random_init(backbone):
            raise UserError(f"the scratch method trains from random initialisation, but base {base} has loaded weights; "
                            "pass a *.scratch base or use --method probe.")
        make_base = base_factory(backbone, str(base))

        def train_scorer(target, **kw):
            return scratch_scores(meta, bank, target, sensitive, make_base=make_base, config=config, device=dev, **kw)
        return train_scorer
    # a random-init base is re-initialised per replicate (seed + r); a pretrained one is shared
    bases = ([base_factory(backbone, str(base))(seed + r) for r in range(replicates)]
             if is_random_init(backbone) else [backbone])
    features = [embed(b, bank, device=dev) for b in bases]

    def probe_scorer(target, **kw):
        return probe_scores(lambda pos, r: features[r % len(features)][bank.positions(pos).numpy()], meta, target,
                            sensitive, Cs=Cs, **kw)
    return probe_scorer


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``salience`` verb."""
    p = sub.add_parser("salience", help="estimate how much easier the sensitive attribute is to learn than each target")
    p.add_argument("--dataset", default=None, help="adapter name (see `biastransfer datasets`)")
    p.add_argument("--root", type=Path, default=None, help="local copy of the dataset (avatars: the cache .h5)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="adapter option, repeatable")
    p.add_argument("--store", type=Path, default=None, help="feature store to probe (method probe) instead of embedding")
    p.add_argument("--targets", required=True, help="target attributes, comma-separated")
    p.add_argument("--sensitive", required=True, help="sensitive attribute s")
    p.add_argument("--method", default="probe", choices=METHODS,
                   help="scratch: networks trained from random init (the paper's); probe: linear probes (fast)")
    p.add_argument("--base", default=DEFAULT_BASE, help=f"architecture (scratch) or base to probe (default {DEFAULT_BASE})")
    p.add_argument("--replicates", type=int, default=3, help="models per arrangement (default 3)")
    p.add_argument("--n", type=int, default=None, help="training rows per model (default: the whole set)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="scratch: maximum epochs (default 6)")
    p.add_argument("--lrs", default=None, help="scratch: learning-rate grid searched on validation loss (default 0.05)")
    p.add_argument("--weight-decays", default=None, help="scratch: weight-decay grid (default 5e-4)")
    p.add_argument("--image-size", type=int, default=None, help="resize images to this side")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--out", type=Path, default=None, help="CSV path (default work/salience.csv)")
    p.set_defaults(func=cmd_salience)


def _scratch_config(args):
    """The scratch method's protocol with the command line's overrides."""
    from dataclasses import replace

    from analyze.finetune_cli import parse_list
    from analyze.salience_fit import SCRATCH_CONFIG

    config = SCRATCH_CONFIG
    if args.epochs is not None:
        config = replace(config, epochs=args.epochs)
    if args.lrs is not None:
        config = replace(config, lrs=parse_list(args.lrs, float, name="--lrs"))
    if args.weight_decays is not None:
        config = replace(config, weight_decays=parse_list(args.weight_decays, float, name="--weight-decays"))
    return config


def cmd_salience(args) -> int:
    from analyze.finetune_cli import parse_list
    from analyze.salience import validate_salience
    from extract.cli import parse_options
    from extract.datasets import get_adapter
    from extract.paths import work_dir
    from extract.store import FeatureStore

    targets = list(parse_list(args.targets, str, name="--targets"))
    if args.store is None and (args.dataset is None or args.root is None):
        raise UserError("pass --dataset and --root (the images), or --store with --method probe.")
    adapter = get_adapter(args.dataset, args.root, **parse_options(args.option)) if args.root is not None else None
    store = FeatureStore.open(args.store) if args.store is not None else None
    config = _scratch_config(args)
    began = time.perf_counter()
    table = salience_table(targets, args.sensitive, adapter=adapter, store=store, method=args.method, base=args.base,
                           replicates=args.replicates, seed=args.seed, n=args.n, image_size=args.image_size,
                           device=args.device, config=config, progress=True)
    truth = getattr(adapter, "signal_strength", None)
    if truth is not None and len(targets) >= 3:
        check = validate_salience(table, truth, sensitive=args.sensitive)
        table = check.table
    out = args.out or work_dir() / "salience.csv"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(out, index=False)
    except OSError as exc:
        raise UserError(f"cannot write {out} ({exc.strerror}); choose a writable --out path.") from None
    shown = [c for c in ("target", "salience", "ci_low", "ci_high", "A_y", "A_s", "n_models", "strength_target",
                         "true_log_ratio") if c in table.columns]
    print(table[shown].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if truth is not None and len(targets) >= 3:
        print(f"Spearman(salience, true log strength ratio {args.sensitive}/target) = {check.spearman:.3f} "
              f"(p = {check.pvalue:.2g}, {len(targets)} targets)")
    print(f"wrote {out} ({time.perf_counter() - began:.1f} s)")
    return 0
