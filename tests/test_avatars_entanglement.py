"""Pixel-level entanglement of the avatar targets with skin tone (skin-tone classifiers' logit shift
when only one attribute flips)."""

import pytest

from extract.datasets.avatars import AvatarAdapter, RenderSpec, render_dataset
from extract.errors import UserError


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    path = render_dataset(tmp_path_factory.mktemp("ent") / "reference.h5", spec=RenderSpec(n=120, size=32, seed=5, preset="independent", signal_sample=2), workers=1, progress=False)
    return AvatarAdapter(path)


def test_entanglement_scores_skin_one_and_darkening_hair_above_face_details(adapter):
    from extract.datasets.avatars.entanglement import measure_entanglement

    table = measure_entanglement(adapter, n=6, seed=3)
    assert table["dark_skin"]["mean_rgb"] == pytest.approx(1.0) and table["dark_skin"]["pixels"] == pytest.approx(1.0)
    # dark clothes darken the whole image; the eyes change a few pixels only. (long_hair no longer
    # darkens it on average: with grey hair, over 40% of the hair in the independent preset is light.)
    assert table["dark_clothes"]["mean_rgb"] > 0.2 > abs(table["closed_eyes"]["mean_rgb"])
    assert table["blond_hair"]["mean_rgb"] < -0.2 and table["gray_hair"]["mean_rgb"] < -0.2
    assert table["dark_skin"]["pixels_accuracy"] > 0.9
    with pytest.raises(UserError, match="at least 2"):
        measure_entanglement(adapter, n=1)
