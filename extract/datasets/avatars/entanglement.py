"""Pixel-level entanglement of each avatar target with the sensitive attribute (skin tone).

A target is *entangled* with skin tone when flipping it alone, all else equal, moves a
skin-tone classifier: dark clothes darken the image, blond or grey hair lightens it, so a model that
reads skin tone from overall darkness would call avatars in dark clothes darker. Such a target
confounds a bias-transfer finding (at balance, a base that encodes darkness already ranks one
group higher), so the demo's targets are chosen with this measurement at hand.

Two skin-tone classifiers, logistic regressions of ``dark_skin`` fitted on a reference cache:

- ``mean_rgb``: on the image's mean colour (3 features), a crude darkness detector;
- ``pixels``: on the image average-pooled to 16 x 16 x 3, which finds the skin itself.

For each attribute, ``n`` avatars (independent preset, their own seed streams) are rendered
with the attribute on and off, everything else fixed; the entanglement is the mean logit
shift (on - off) as a share of the shift that flipping ``dark_skin`` itself gives (so
``dark_skin`` scores 1 and an unentangled target 0; the sign tells which way it pushes).
"""

from __future__ import annotations

import numpy as np

from extract.datasets.avatars.render import ATTRIBUTES, SENSITIVE, draw_nuisance, nuisance_rng, render_avatar
from extract.datasets.avatars.spec import sample_attributes
from extract.errors import UserError

STREAM_ENTANGLEMENT_ATTRIBUTES = 5
STREAM_ENTANGLEMENT_IMAGES = 6
POOLED = 16  # side of the pooled image of the pixel classifier


def _pooled(images: np.ndarray) -> np.ndarray:
    n, h, w, c = images.shape
    if h % POOLED or w % POOLED:
        raise UserError(f"entanglement needs images whose side is a multiple of {POOLED} (got {h} x {w}).")
    k = h // POOLED
    return images.reshape(n, POOLED, k, POOLED, k, c).mean((2, 4)).reshape(n, -1) / 255.0


def _mean_rgb(images: np.ndarray) -> np.ndarray:
    return images.mean((1, 2)) / 255.0


def measure_entanglement(adapter, *, n: int = 150, seed: int = 0) -> dict[str, dict[str, float]]:
    """Entanglement of every attribute with the sensitive one, by two skin-tone classifiers.

    Parameters
    ----------
    adapter : AvatarAdapter
        The reference cache the classifiers are fitted on (its images' size is used for the
        toggled renders).
    n : int
        Avatars rendered on and off per attribute.
    seed : int
        Seed of the toggled avatars' attributes and nuisances.

    Returns
    -------
    dict
        ``{attribute: {"mean_rgb": share, "pixels": share, "mean_rgb_accuracy": ...,
        "pixels_accuracy": ...}}``; the share is the mean logit shift when only the attribute
        flips, divided by that of flipping the sensitive attribute (1 for ``dark_skin``).
        The accuracies are the classifiers' accuracy on the reference cache's test split.
    """
    from sklearn.linear_model import LogisticRegression

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise UserError(f"the entanglement sample n must be an integer of at least 2 (got {n!r}).")
    meta = adapter.metadata()
    images = adapter.read_images().astype(np.float32)
    sensitive = meta[SENSITIVE].to_numpy()
    train = (meta["split"] != "test").to_numpy()
    if len(np.unique(sensitive[train])) < 2 or train.all():
        raise UserError("the reference cache needs both skin-tone groups in its train split and a test split.")
    features = {"mean_rgb": _mean_rgb, "pixels": _pooled}
    models, accuracy = {}, {}
    for name, featurise in features.items():
        x = featurise(images)
        models[name] = LogisticRegression(C=1.0, max_iter=2000).fit(x[train], sensitive[train])
        accuracy[name] = float(models[name].score(x[~train], sensitive[~train]))
    size = int(images.shape[1])
    rows = sample_attributes(n, seed=seed, preset="independent", stream=STREAM_ENTANGLEMENT_ATTRIBUTES)
    shifts = {}
    for attribute in ATTRIBUTES:
        on, off = [], []
        for i, row in enumerate(rows):
            values = dict(zip(ATTRIBUTES, map(int, row)))
            nuisance = draw_nuisance(nuisance_rng(seed, STREAM_ENTANGLEMENT_IMAGES, i))
            on.append(render_avatar({**values, attribute: 1}, nuisance, size=size))
            off.append(render_avatar({**values, attribute: 0}, nuisance, size=size))
        on_images, off_images = np.stack(on).astype(np.float32), np.stack(off).astype(np.float32)
        shifts[attribute] = {name: float(np.mean(models[name].decision_function(f(on_images))
                                                 - models[name].decision_function(f(off_images))))
                             for name, f in features.items()}
    return {attribute: {**{name: shifts[attribute][name] / shifts[SENSITIVE][name] for name in features},
                        **{f"{name}_accuracy": accuracy[name] for name in features}}
            for attribute in ATTRIBUTES}


__all__ = ["measure_entanglement"]
