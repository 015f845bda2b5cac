"""Ground-truth signal strength and the visibility of every attribute in the renderer."""

import numpy as np
import pytest

import extract.datasets.avatars.render as render
from extract.datasets.avatars import ATTRIBUTES, TARGETS, measure_signal_strength

SIZE = 32


@pytest.fixture(scope="module")
def strength():
    return measure_signal_strength(size=SIZE, n=24, seed=0, workers=1)


def test_every_attribute_has_positive_signal(strength):
    assert list(strength) == list(ATTRIBUTES)
    assert all(value > 0 for value in strength.values()), strength


def test_signal_ordering_is_sane(strength):
    # Large regions beat small ones: headwear and skin tone change far more pixels than
    # an eyebrow shape, the mouth or the eyelids.
    for big in ("hat", "dark_skin", "long_hair", "blazer"):
        for small in ("raised_eyebrows", "closed_eyes", "smiling"):
            assert strength[big] > 3 * strength[small], (big, small, strength)
    assert strength["eyewear"] > strength["raised_eyebrows"]


def test_signal_equals_hand_computed_toggle_difference():
    # n=1: the strength is exactly the mean |difference| of the two renders of avatar 0.
    from extract.datasets.avatars.spec import (
        STREAM_SIGNAL_ATTRIBUTES,
        STREAM_SIGNAL_IMAGES,
        sample_attributes,
    )

    one = measure_signal_strength(size=SIZE, n=1, seed=7, workers=1)
    row = sample_attributes(1, seed=7, stream=STREAM_SIGNAL_ATTRIBUTES)[0]
    attributes = dict(zip(ATTRIBUTES, map(int, row)))
    nuisance = render.draw_nuisance(render.nuisance_rng(7, STREAM_SIGNAL_IMAGES, 0))
    on = render.render_avatar({**attributes, "hat": 1}, nuisance, size=SIZE).astype(float)
    off = render.render_avatar({**attributes, "hat": 0}, nuisance, size=SIZE).astype(float)
    assert one["hat"] == pytest.approx(np.abs(on - off).mean() / 255)


def test_signal_is_deterministic_and_worker_independent(strength):
    again = measure_signal_strength(size=SIZE, n=24, seed=0, workers=2)
    assert again == strength


def _all_zero():
    return dict.fromkeys(ATTRIBUTES, 0)


def _fixed_draw(**fields):
    draw = np.full(len(render.NUISANCE_FIELDS), 0.5)
    for name, value in fields.items():
        draw[render.NUISANCE_FIELDS.index(name)] = value
    return draw


def _differs(attributes, draw, name):
    on = render.render_avatar({**attributes, name: 1}, draw, size=SIZE)
    off = render.render_avatar({**attributes, name: 0}, draw, size=SIZE)
    return not np.array_equal(on, off)


@pytest.mark.parametrize("pool", ["HATS", "LONG_HAIR", "SHORT_HAIR"])
def test_glasses_and_facial_hair_show_on_every_top(pool):
    # Some python_avatars tops lack the slots for glasses or facial hair; such tops must
    # stay out of the pools or those targets would silently vanish.
    options = getattr(render, pool)
    field = "hat" if pool == "HATS" else "hair"
    for k in range(len(options)):
        draw = _fixed_draw(**{field: (k + 0.5) / len(options)})
        attributes = {**_all_zero(), "hat": int(pool == "HATS"), "long_hair": int(pool == "LONG_HAIR")}
        assert _differs(attributes, draw, "eyewear"), (pool, options[k])
        assert _differs(attributes, draw, "facial_hair"), (pool, options[k])
        if pool != "HATS":
            assert _differs(attributes, draw, "blond_hair"), (pool, options[k])


@pytest.mark.parametrize("name", TARGETS + ("dark_skin",))
def test_each_attribute_toggle_changes_the_render(name):
    for u in (0.1, 0.5, 0.9):
        assert _differs(_all_zero(), _fixed_draw(**dict.fromkeys(render.NUISANCE_FIELDS[:13], u)), name), name


def test_dark_skin_is_darker():
    # Toggling skin tone with all else fixed lowers the mean brightness of the face.
    for k in range(3):
        draw = _fixed_draw(skin=(k + 0.5) / 3)
        dark = render.render_avatar({**_all_zero(), "dark_skin": 1}, draw, size=SIZE).astype(float)
        light = render.render_avatar({**_all_zero(), "dark_skin": 0}, draw, size=SIZE).astype(float)
        changed = np.abs(dark - light).sum(axis=2) > 0
        assert dark[changed].mean() < light[changed].mean() - 30
