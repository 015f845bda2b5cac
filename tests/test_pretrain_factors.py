"""Generalist factors: labels recomputed from the renderer's draws, independent of the attributes,
learned beside the base's one attribute, checked and recorded by the recipe."""

import numpy as np
import pytest
import torch

import extract.datasets.avatars.factors as factors_module
import extract.datasets.avatars.render as render
from extract.datasets.avatars import AvatarAdapter, RenderSpec, render_dataset
from extract.datasets.avatars.factors import FACTOR_BINS, dependence, factor_labels, independence_p, resolve_factors
from extract.datasets.avatars.spec import STREAM_IMAGES
from extract.errors import UserError
from extract.pretrain.recipe import check_factors, check_recipe
from pretraining import pretrain

pytestmark = pytest.mark.usefixtures("one_torch_thread_per_module")


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    path = render_dataset(tmp_path_factory.mktemp("fac") / "pretrain.h5", spec=RenderSpec(n=300, size=32, seed=11, preset="independent", signal_sample=2), workers=1, progress=False)
    return AvatarAdapter(path)


def test_labels_are_the_binned_draws_of_each_image(adapter):
    labels = factor_labels(adapter, ["eyes", "clothing_color", "shift_x"], rows=[0, 5, 299])
    for k, row in enumerate([0, 5, 299]):
        draw = render.draw_nuisance(render.nuisance_rng(11, STREAM_IMAGES, row))
        for j, (name, bins) in enumerate((("eyes", 6), ("clothing_color", 4), ("shift_x", 3))):
            assert labels[k, j] == int(draw[render.NUISANCE_FIELDS.index(name)] * bins)
    assert labels.dtype == np.int64


def test_part_factors_pick_whole_parts_in_both_classes():
    # each bin of these factors maps to exactly one part of either class, so the label names the part
    for field, classes in (("eyes", (render.CLOSED_EYES, render.OPEN_EYES)), ("mouth", (render.SMILING, render.NOT_SMILING)),
                           ("eyebrows", (render.RAISED_EYEBROWS, render.OTHER_EYEBROWS)),
                           ("hair_color", (render.BLOND, render.NOT_BLOND)), ("clothing", (render.BLAZER, render.OTHER_CLOTHES)),
                           ("clothing_color", (render.DARK_CLOTHES, render.LIGHT_CLOTHES)), ("hat", (render.HATS,)), ("eyewear", (render.EYEWEAR,))):
        bins = FACTOR_BINS[field]
        for options in classes:
            edges = np.linspace(0, 1, 8 * bins, endpoint=False)
            parts = {}
            for u in edges:
                parts.setdefault(int(u * bins), set()).add(render._pick(options, u))
            assert all(len(p) == 1 for p in parts.values()), field


def test_labels_are_independent_of_every_attribute_and_dependence_detects_a_leak(adapter):
    meta = adapter.metadata()
    # no error at the default limit although 300 avatars give noisy V values (the test guards them)
    table = check_factors(adapter, list(FACTOR_BINS))
    assert set(table) == set(FACTOR_BINS) and set(table["eyes"]) == set(adapter.attributes)
    assert np.median([v for row in table.values() for v in row.values()]) < 0.1
    assert independence_p(closed := meta["closed_eyes"].to_numpy(), closed, bins=2) < 1e-6
    assert dependence(closed, closed, bins=2) == pytest.approx(1.0, abs=0.02)
    # the full eye type (class and part) would determine closed_eyes
    leak = closed * 3 + factor_labels(adapter, {"eyes": 3})[:, 0]
    assert dependence(leak, closed, bins=6) > 0.9


def test_check_factors_refuses_a_label_that_tells_an_attribute(adapter, monkeypatch):
    def leaky(adapter_, spec, rows=None):
        return np.stack([adapter_.metadata()["smiling"].to_numpy().astype(np.int64)] * len(spec), 1)

    monkeypatch.setattr(factors_module, "factor_labels", leaky)
    with pytest.raises(UserError, match="depends on the attribute 'smiling'"):
        check_factors(adapter, ["mouth"])


def test_bad_factor_lists_get_one_sentence():
    with pytest.raises(UserError, match="sensitive attribute"):
        resolve_factors(["skin"])
    with pytest.raises(UserError, match="unknown generalist factor 'eys'"):
        resolve_factors(["eys"])
    with pytest.raises(UserError, match="repeat"):
        resolve_factors(["eyes", "eyes"])
    with pytest.raises(UserError, match="bins from 2 to 64"):
        resolve_factors({"eyes": 1})


def test_recipe_accepts_the_factor_keys():
    recipe = {"data": {"dataset": "avatars", "cache": "x.h5"},
              "train": {"factors": ["eyes"], "factor_weight": 1.0, "max_factor_dependence": 0.2},
              "bases": [{"name": "b", "role": "biased", "attributes": ["dark_skin"]}]}
    assert check_recipe(recipe) is recipe


def test_pretraining_with_factors_learns_them_and_records_them(adapter):
    options = dict(attributes=["hat"], arch_kwargs={"width": 8}, epochs=3, batch_size=16, lr=0.05, seed=0,
                   device="cpu", progress=False)
    with_f, history = pretrain(adapter, factors=["clothing_color", "bg_hue"], **options)
    without, plain = pretrain(adapter, **options)
    assert history["config"]["factors"] == {"clothing_color": 4, "bg_hue": 6}
    assert plain["config"]["factors"] == {} and "per_factor" not in plain["final"]["train"]
    assert len(history["data"]["factor_labels_sha256"]) == 64
    per = history["final"]["train"]["per_factor"]
    # background hue is a whole-image colour: learned well above its chance in a few epochs
    assert per["bg_hue"]["accuracy"] > per["bg_hue"]["chance"] + 0.15
    assert set(history["final"]["val"]["per_attribute"]) == {"hat"}
    a, b = with_f.state_dict(), without.state_dict()
    assert not all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(UserError, match="teach every base the sensitive attribute"):
        pretrain(adapter, factors=["skin"], **options)

