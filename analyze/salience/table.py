"""Salience of many targets at once, and the ``biastransfer salience`` verb.

:func:`salience_table` decodes (or embeds) the rows every target needs once, then
estimates each target's salience with the chosen method (:mod:`analyze.salience.fit`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from extract.errors import UserError

METHODS = ("scratch", "probe")
DEFAULT_BASE = "smallcnn.scratch"


def salience_table(targets: Sequence[str], sensitive: str, *, adapter=None, store=None, method: str = "probe",
                   base: str = DEFAULT_BASE, replicates: int = 3, seed: int = 0, n: int | None = None,
                   image_size: int | None = None, device: str = "auto", config=None, Cs=None,
                   progress: bool = False, auc_floor: float | None = None) -> pd.DataFrame:
    """One salience estimate per target (columns :data:`analyze.salience.estimate.TABLE_COLUMNS` plus
    ``selected``, the hyperparameters chosen per arrangement as JSON, and the estimate's
    diagnosis: ``flag_<name>`` per flag, ``flagged`` and ``diagnosis``, from
    :func:`analyze.metrics.diagnosis.diagnose_salience`).

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
    image_size : int, optional
        Resize images to this side. Default: an avatar cache's own size; for image files the
        base's size, except that ``"scratch"`` trains at
        :data:`analyze.salience.fit.SCRATCH_IMAGE_SIZE` px (32), which keeps it to about a
        minute per target on a 1,800-image dataset on CPU.
    config : FinetuneConfig, optional
        Training protocol of ``"scratch"`` (default :data:`analyze.salience.fit.SCRATCH_CONFIG`:
        lr 0.05, at most 6 epochs, stopping after 2 without a lower validation loss).
    Cs : sequence of float, optional
        Probe regularisation grid (default :data:`analyze.salience.fit.DEFAULT_CS`).
    auc_floor : float, optional
        ``weak_task`` when the models' mean ``max(A_y, A_s)`` is below it (default
        :data:`analyze.metrics.diagnosis.DEFAULT_AUC_FLOOR`).
    """
    from analyze.metrics.diagnosis import DEFAULT_AUC_FLOOR, FLAG_COLUMNS, diagnose_salience
    from analyze.salience.estimate import TABLE_COLUMNS, salience_from_scores
    from analyze.salience.fit import DEFAULT_CS, SCRATCH_CONFIG, rows_needed

    if method not in METHODS:
        raise UserError(f"method must be one of {METHODS}, got {method!r}.")
    if not targets:
        raise UserError("no targets given; pass at least one target attribute.")
    if store is None and adapter is None:
        raise UserError("salience needs images (an adapter) or, for the probe method, a feature store.")
    if method == "scratch" and adapter is None:
        raise UserError("the scratch method trains on images; give them with `adapter`.")
    meta = store.metadata if (store is not None and method == "probe") else adapter.metadata()
    rows = rows_needed(meta, targets, sensitive, replicates=replicates, seed=seed, n=n)
    config, Cs = config or SCRATCH_CONFIG, tuple(Cs or DEFAULT_CS)
    floor = DEFAULT_AUC_FLOOR if auc_floor is None else auc_floor
    scorer = _scorer(method, meta, rows, sensitive, replicates=replicates, adapter=adapter, store=store, base=base,
                     image_size=image_size, device=device, config=config, Cs=Cs, seed=seed)
    estimates = []
    for target in tqdm(targets, desc=f"salience ({method})", unit="target", disable=not progress):
        scores, arrangements, test, details = scorer(target, replicates=replicates, seed=seed, n=n)
        y, s = meta[target].to_numpy()[test], meta[sensitive].to_numpy()[test]
        estimate = salience_from_scores(y, s, scores, arrangements, target=target, sensitive=sensitive,
                                        method=method, seed=seed, details=details)
        grids = (dict(Cs=Cs) if method == "probe" else dict(lrs=config.lrs, epochs=config.epochs))
        diagnosis = diagnose_salience(estimate.per_model["A_y"], estimate.per_model["A_s"], details, **grids,
                                      not_converged=sum(int(d.get("not_converged", 0)) for d in details.values()),
                                      auc_floor=floor)
        estimates.append({**estimate.to_row(), "selected": json.dumps(details, sort_keys=True), **diagnosis.columns()})
    return pd.DataFrame(estimates, columns=[*TABLE_COLUMNS, "selected", *FLAG_COLUMNS, "flagged", "diagnosis"])


def _scorer(method, meta, rows, sensitive, *, replicates, adapter, store, base, image_size, device, config, Cs, seed):
    """``scorer(target, replicates=, seed=, n=)``, closing over rows decoded (or embedded) once."""
    from analyze.finetune.data import ImageBank, is_random_init, load_base
    from analyze.finetune.runner import base_factory
    from analyze.salience.fit import SCRATCH_IMAGE_SIZE, embed, probe_scores, scratch_scores
    from extract.devices import resolve_device

    dev = resolve_device(device)
    if method == "probe" and store is not None:
        def store_scorer(target, **kw):
            return probe_scores(lambda pos, r: store.rows(pos, dtype=np.float32), meta, target, sensitive, Cs=Cs, **kw)
        return store_scorer
    native = getattr(adapter, "image_shape", (None,))[0]
    if method == "scratch" and image_size is None and native is None:
        image_size = SCRATCH_IMAGE_SIZE  # files of any size: train at a size the work fits (fit.py)
    backbone = load_base(base, seed=seed, image_size=image_size, native_size=native)
    bank = ImageBank.from_adapter(adapter, backbone.preprocess, rows)
    if dev.type == "cuda":
        bank.to(dev)
    if method == "scratch":
        if not is_random_init(backbone):
            raise UserError(f"the scratch method trains from random initialisation, but base {base} has loaded weights; "
                            "pass a *.scratch base or use `method='probe'`.")
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


