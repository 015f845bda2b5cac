"""Synthetic features for testing and benchmarking probes (no store needed).

``kind="cnn"`` imitates pooled CNN features: a Gaussian with a power-law spectrum in random
directions, shifted and passed through ReLU (non-negative, sparse, a large shared mean),
then scaled per channel by log-normal gains. Such matrices are ill-conditioned like real
penultimate-layer features. ``kind="isotropic"`` is i.i.d. standard normal: well
conditioned. Labels follow a logistic model on a random direction.
"""

from __future__ import annotations

import numpy as np

from analyze.probe.checks import ProbeInputError

KINDS = ("cnn", "isotropic")


def make_probe_features(n_samples, n_features, *, kind="cnn", spectrum_decay=1.0, offset=0.3,
                        channel_spread=0.5, signal=3.0, random_state=None):
    """Draw a feature matrix and binary labels.

    Parameters
    ----------
    n_samples, n_features : int
    kind : {"cnn", "isotropic"}, default="cnn"
    spectrum_decay : float, default=1.0
        Covariance eigenvalues fall as ``k ** -spectrum_decay`` before the ReLU ("cnn").
    offset : float, default=0.3
        Shift before the ReLU; larger means denser features and a larger mean ("cnn").
    channel_spread : float, default=0.5
        Standard deviation of the log of per-channel gains ("cnn").
    signal : float, default=3.0
        Scale of the true log-odds; larger means easier labels.
    random_state : int or numpy Generator, optional

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float32
    y : ndarray of shape (n_samples,), int64 in {0, 1}
    """
    if kind not in KINDS:
        raise ProbeInputError(f"kind must be one of {KINDS}, got {kind!r}.")
    rng = np.random.default_rng(random_state)
    gaussian = rng.standard_normal((n_samples, n_features))
    if kind == "isotropic":
        features = gaussian
    else:
        spectrum = np.arange(1, n_features + 1) ** (-spectrum_decay / 2)
        rotation, _ = np.linalg.qr(rng.standard_normal((n_features, n_features)))
        mixed = (gaussian * spectrum) @ rotation.T * np.sqrt(n_features) / np.linalg.norm(spectrum)
        gains = np.exp(channel_spread * rng.standard_normal(n_features))
        features = np.maximum(mixed + offset, 0.0) * gains
    direction = rng.standard_normal(n_features)
    centred = features - features.mean(0)
    logits = centred @ direction
    logits *= signal / max(float(logits.std()), np.finfo(float).tiny)
    labels = (rng.random(n_samples) < 1.0 / (1.0 + np.exp(-logits))).astype(np.int64)
    return features.astype(np.float32), labels
