"""Avatar concept sets: balanced over the groups, pairwise disjoint, seeded, checked."""

import numpy as np
import pytest

from analyze.association.concepts import (
    ConceptSets,
    avatar_concept_sets,
    avatar_set_names,
)
from extract.datasets.avatars import AvatarAdapter, RenderSpec, render_dataset
from extract.errors import UserError

NAMES = avatar_set_names(["hat"])  # dark, light, hat, no_hat, hat+dark, hat+light
PER_SET = 10


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return render_dataset(tmp_path_factory.mktemp("avatars") / "avatars.h5", spec=RenderSpec(n=300, size=32, seed=0, signal_sample=4), workers=1, progress=False)


@pytest.fixture(scope="module")
def meta(cache):
    return AvatarAdapter(cache).metadata().set_index("image_id")


@pytest.fixture(scope="module")
def sets(cache):
    return avatar_concept_sets(cache, NAMES, per_set=PER_SET, split=None, seed=0)


def _rows(meta, sets, name):
    return meta.loc[list(sets.ids[name])]


def test_sets_have_the_documented_members(sets, meta):
    assert sets.names == sorted(NAMES) and sets.sizes() == {name: PER_SET for name in NAMES}
    expected = {  # name -> (hat value or None, dark_skin values)
        "hat": (1, {0: 5, 1: 5}), "no_hat": (0, {0: 5, 1: 5}), "hat+dark": (1, {1: 10}),
        "hat+light": (1, {0: 10}), "dark": (0, {1: 10}), "light": (0, {0: 10}),
    }
    for name, (hat, groups) in expected.items():
        rows = _rows(meta, sets, name)
        assert (rows["hat"] == hat).all(), name
        assert rows["dark_skin"].value_counts().to_dict() == groups, name


def test_sets_are_pairwise_disjoint_and_images_match_ids(sets, cache):
    all_ids = [image_id for name in sets.names for image_id in sets.ids[name]]
    assert len(all_ids) == len(set(all_ids)) == len(NAMES) * PER_SET
    adapter = AvatarAdapter(cache)
    positions = {image_id: i for i, image_id in enumerate(adapter.metadata()["image_id"])}
    for name in sets.names:
        image = sets[name]
        assert image.dtype == np.uint8 and image.shape == (PER_SET, 32, 32, 3)
        rows = [positions[i] for i in sets.ids[name]]
        np.testing.assert_array_equal(image, adapter.read_images(rows))
        assert rows == sorted(rows)


def test_group_sets_exclude_every_requested_target(cache, meta):
    sets = avatar_concept_sets(cache, ["dark", "light", "hat", "eyewear"], per_set=8, split=None)
    for name in ("dark", "light"):
        rows = _rows(meta, sets, name)
        assert (rows["hat"] == 0).all() and (rows["eyewear"] == 0).all()


def test_selection_is_deterministic_for_a_seed(cache, sets):
    again = avatar_concept_sets(cache, list(reversed(NAMES)), per_set=PER_SET, split=None, seed=0)
    assert again.ids == sets.ids  # the order of the names does not matter
    other = avatar_concept_sets(cache, NAMES, per_set=PER_SET, split=None, seed=1)
    assert other.ids != sets.ids


def test_split_restricts_the_pool(cache, meta):
    sets = avatar_concept_sets(cache, ["hat", "no_hat"], per_set=4, split="test", seed=0)
    for name in sets.names:
        assert (_rows(meta, sets, name)["split"] == "test").all()
    assert sets.source == {"kind": "avatars", "cache": str(cache), "per_set": 4, "split": "test",
                           "seed": 0}


def test_infeasible_size_names_the_largest_feasible(cache):
    with pytest.raises(UserError, match=r"needs .* avatars .*use per_set=\d+"):
        avatar_concept_sets(cache, NAMES, per_set=200, split=None)
    message = ""
    try:
        avatar_concept_sets(cache, NAMES, per_set=200, split=None)
    except UserError as exc:
        message = str(exc)
    largest = int(message.rsplit("per_set=", 1)[1].split(" ")[0])
    assert avatar_concept_sets(cache, NAMES, per_set=largest, split=None).sizes()["hat"] == largest
    with pytest.raises(UserError):
        avatar_concept_sets(cache, NAMES, per_set=largest + 2, split=None)


@pytest.mark.parametrize("names, options, pattern", [
    (["hat", "sunglasses"], {}, "'sunglasses' is unknown"),
    (["hat+purple"], {}, "unknown"),
    (["hat"], {"per_set": 5}, "per_set=5 is invalid"),
    (["hat"], {"split": "holdout"}, "split='holdout' is unknown"),
    ([], {}, "no avatar concept set"),
])
def test_bad_requests_are_user_errors(cache, names, options, pattern):
    with pytest.raises(UserError, match=pattern):
        avatar_concept_sets(cache, names, **options)


def test_missing_cache_and_inconsistent_values_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="avatar cache"):
        avatar_concept_sets(tmp_path / "none.h5", ["hat"])
    images = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    with pytest.raises(UserError, match="2 images but 1 ids"):
        ConceptSets(images={"a": images}, ids={"a": ("x",)})
    with pytest.raises(UserError, match="uint8"):
        ConceptSets(images={"a": images.astype(float)}, ids={"a": ("x", "y")})
    with pytest.raises(UserError, match="does not exist"):
        ConceptSets(images={"a": images}, ids={"a": ("x", "y")})["b"]


def test_reference_sets_neutral_and_random(cache, meta, sets):
    with_references = avatar_concept_sets(cache, [*NAMES, "neutral", "random"], per_set=PER_SET,
                                          split=None, seed=0)
    for name in NAMES:  # drawn last: the other sets are unchanged
        assert with_references.ids[name] == sets.ids[name]
    neutral = _rows(meta, with_references, "neutral")
    assert (neutral["hat"] == 0).all()
    assert neutral["dark_skin"].value_counts().to_dict() == {0: 5, 1: 5}
    random = _rows(meta, with_references, "random")
    assert random["dark_skin"].value_counts().to_dict() == {0: 5, 1: 5}
    all_ids = [i for name in with_references.names for i in with_references.ids[name]]
    assert len(all_ids) == len(set(all_ids))
