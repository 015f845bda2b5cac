"""Salience of many targets at once, and the ``biastransfer salience`` verb.

:func:`salience_table` decodes (or embeds) the rows every target needs once, then
estimates each target's salience with the chosen method (:mod:`analyze.salience.fit`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from analyze.config import EvalConfig
from analyze.salience.config import DEFAULT_BASE, METHODS, SalienceConfig  # noqa: F401 (re-exported)
from extract.errors import UserError

def salience_table(targets: Sequence[str], sensitive: str, *, adapter=None, store=None,
                   config: SalienceConfig = SalienceConfig(), probe=None, evaluation: EvalConfig = EvalConfig(),
                   progress: bool = False) -> pd.DataFrame:
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
    config : SalienceConfig, default=SalienceConfig()
        Method, base, replicates, seed, training rows, image size, device and the scratch
        method's training protocol (:class:`analyze.salience.config.SalienceConfig`).
    probe : ProbeConfig, optional
        The probe method's regularisation grid ``Cs`` (default
        :data:`analyze.salience.fit.DEFAULT_CS`); C is chosen per arrangement by the lowest
        mean validation log loss, on features standardised per model (scikit-learn fits,
        so the other fields of the config are not used).
    evaluation : EvalConfig, default=EvalConfig()
        ``auc_floor``: ``weak_task`` when the models' mean ``max(A_y, A_s)`` is below it.
    progress : bool, default=False
        Show a progress bar over the targets.
    """
    from analyze.metrics.diagnosis import FLAG_COLUMNS, diagnose_salience
    from analyze.salience.estimate import TABLE_COLUMNS, salience_from_scores
    from analyze.salience.fit import DEFAULT_CS, SCRATCH_CONFIG, rows_needed

    method = config.method
    if not targets:
        raise UserError("no targets given; pass at least one target attribute.")
    if store is None and adapter is None:
        raise UserError("salience needs images (an adapter) or, for the probe method, a feature store.")
    if method == "scratch" and adapter is None:
        raise UserError("the scratch method trains on images; give them with `adapter`.")
    meta = store.metadata if (store is not None and method == "probe") else adapter.metadata()
    rows = rows_needed(meta, targets, sensitive, replicates=config.replicates, seed=config.seed, n=config.n)
    training, Cs = config.training or SCRATCH_CONFIG, tuple(probe.Cs if probe is not None else DEFAULT_CS)
    config = config.with_(training=training)
    scorer = _scorer(config, meta, rows, sensitive, adapter=adapter, store=store, Cs=Cs)
    estimates = []
    for target in tqdm(targets, desc=f"salience ({method})", unit="target", disable=not progress):
        scores, arrangements, test, details = scorer(target)
        y, s = meta[target].to_numpy()[test], meta[sensitive].to_numpy()[test]
        estimate = replace(salience_from_scores(y, s, scores, arrangements, target=target, sensitive=sensitive,
                                                method=method, seed=config.seed), details=details)
        grids = (dict(Cs=Cs) if method == "probe" else dict(lrs=training.lrs, epochs=training.epochs))
        diagnosis = diagnose_salience(estimate.per_model["A_y"], estimate.per_model["A_s"], details, **grids,
                                      not_converged=sum(int(d.get("not_converged", 0)) for d in details.values()),
                                      auc_floor=evaluation.auc_floor)
        estimates.append({**estimate.to_row(), "selected": json.dumps(details, sort_keys=True), **diagnosis.columns()})
    return pd.DataFrame(estimates, columns=[*TABLE_COLUMNS, "selected", *FLAG_COLUMNS, "flagged", "diagnosis"])


def _scorer(config: SalienceConfig, meta, rows, sensitive, *, adapter, store, Cs):
    """``scorer(target)``, closing over rows decoded (or embedded) once."""
    from analyze.finetune.data import ImageBank, is_random_init, load_base
    from analyze.finetune.runner import base_factory
    from analyze.salience.fit import SCRATCH_IMAGE_SIZE, embed, probe_scores, scratch_scores
    from extract.devices import resolve_device

    dev, base, image_size = resolve_device(config.device), config.base, config.image_size
    draw = dict(replicates=config.replicates, seed=config.seed, n=config.n)
    if config.method == "probe" and store is not None:
        def store_scorer(target):
            return probe_scores(lambda pos, r: store.rows(pos, dtype=np.float32), meta, target, sensitive, Cs=Cs,
                                **draw)
        return store_scorer
    native = getattr(adapter, "image_shape", (None,))[0]
    if config.method == "scratch" and image_size is None and native is None:
        image_size = SCRATCH_IMAGE_SIZE  # files of any size: train at a size the work fits (fit.py)
    backbone = load_base(base, seed=config.seed, image_size=image_size, native_size=native)
    bank = ImageBank.from_adapter(adapter, backbone.preprocess, rows)
    if dev.type == "cuda":
        bank.to(dev)
    if config.method == "scratch":
        if not is_random_init(backbone):
            raise UserError(f"the scratch method trains from random initialisation, but base {base} has loaded weights; "
                            "pass a *.scratch base or use `method='probe'`.")
        make_base = base_factory(backbone, str(base))

        def train_scorer(target):
            return scratch_scores(meta, bank, target, sensitive, make_base=make_base, config=config, device=dev)
        return train_scorer
    # a random-init base is re-initialised per replicate (seed + r); a pretrained one is shared
    bases = ([base_factory(backbone, str(base))(config.seed + r) for r in range(config.replicates)]
             if is_random_init(backbone) else [backbone])
    features = [embed(b, bank, device=dev) for b in bases]

    def probe_scorer(target):
        return probe_scores(lambda pos, r: features[r % len(features)][bank.positions(pos).numpy()], meta, target,
                            sensitive, Cs=Cs, **draw)
    return probe_scorer
