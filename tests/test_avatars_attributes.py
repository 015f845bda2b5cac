"""Attribute sampler: base rates and natural correlations match the preset."""

import numpy as np
import pytest

from extract.datasets.avatars import (
    ATTRIBUTES,
    PRESETS,
    SENSITIVE,
    TARGETS,
    expected_rates,
    sample_attributes,
)
from extract.datasets.avatars.spec import assign_splits
from extract.errors import UserError

N = 20_000


def _empirical(rows):
    s = rows[:, 0].astype(bool)
    out = {}
    for col, target in enumerate(TARGETS, start=1):
        t = rows[:, col]
        out[target] = (t[s].mean(), t[~s].mean(), t.mean(), np.corrcoef(s, t)[0, 1])
    return s.mean(), out


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("sensitive_rate", [0.5, 0.3])
def test_rates_and_correlations_match_preset(preset, sensitive_rate):
    rows = sample_attributes(N, seed=11, preset=preset, sensitive_rate=sensitive_rate)
    assert rows.shape == (N, len(ATTRIBUTES)) and rows.dtype == np.int8
    assert ATTRIBUTES[0] == SENSITIVE
    s_rate, emp = _empirical(rows)
    assert abs(s_rate - sensitive_rate) < 4.5 * np.sqrt(sensitive_rate * (1 - sensitive_rate) / N)
    expected = expected_rates(preset, sensitive_rate=sensitive_rate)
    n1, n0 = s_rate * N, (1 - s_rate) * N
    for target, (p1_hat, p0_hat, base_hat, phi_hat) in emp.items():
        p1, p0, base, phi = expected.loc[target, ["p_if_sensitive", "p_if_not", "base_rate", "phi"]]
        assert abs(p1_hat - p1) < 4.5 * np.sqrt(max(p1 * (1 - p1), 1e-4) / n1), target
        assert abs(p0_hat - p0) < 4.5 * np.sqrt(max(p0 * (1 - p0), 1e-4) / n0), target
        assert abs(base_hat - base) < 4.5 * np.sqrt(base * (1 - base) / N), target
        assert abs(phi_hat - phi) < 4.5 / np.sqrt(N), target  # SE of phi is about 1/sqrt(N)


def test_expected_phi_matches_hand_computation():
    # blond_hair in celeba-like: p1 = 0.05, p0 = 0.40, r = 0.5 -> base 0.225,
    # phi = 0.25 * (0.05 - 0.40) / sqrt(0.25 * 0.225 * 0.775) = -0.4186...
    row = expected_rates("celeba-like").loc["blond_hair"]
    assert row["base_rate"] == pytest.approx(0.225)
    assert row["phi"] == pytest.approx(0.25 * -0.35 / np.sqrt(0.25 * 0.225 * 0.775))


def test_celeba_like_has_positive_negative_and_independent_targets():
    phi = expected_rates("celeba-like")["phi"]
    assert (phi > 0.1).sum() >= 2 and (phi < -0.1).sum() >= 2 and (phi == 0).sum() >= 2
    assert (expected_rates("independent")["phi"] == 0).all()
    # independent keeps celeba-like's base rates at the default sensitive rate
    np.testing.assert_allclose(expected_rates("independent")["base_rate"], expected_rates("celeba-like")["base_rate"])


def test_sampler_is_seeded():
    a = sample_attributes(500, seed=3)
    np.testing.assert_array_equal(a, sample_attributes(500, seed=3))
    assert not np.array_equal(a, sample_attributes(500, seed=4))
    np.testing.assert_array_equal(a[:200], sample_attributes(200, seed=3)[:200])


def test_custom_preset_and_its_validation():
    custom = {t: (1.0, 0.0) for t in TARGETS}
    rows = sample_attributes(300, seed=0, preset=custom)
    for col in range(1, len(ATTRIBUTES)):
        np.testing.assert_array_equal(rows[:, col], rows[:, 0])
    with pytest.raises(UserError):
        sample_attributes(10, seed=0, preset={"hat": (0.5, 0.5)})
    with pytest.raises(UserError):
        sample_attributes(10, seed=0, preset={t: (1.5, 0.5) for t in TARGETS})
    with pytest.raises(UserError):
        sample_attributes(10, seed=0, preset="celebA")
    with pytest.raises(UserError):
        sample_attributes(10, seed=0, sensitive_rate=1.0)


def test_splits_are_seeded_60_20_20():
    splits = assign_splits(1000, seed=5)
    counts = {name: int((splits == name).sum()) for name in ("train", "val", "test")}
    assert counts == {"train": 600, "val": 200, "test": 200}
    np.testing.assert_array_equal(splits, assign_splits(1000, seed=5))
    assert not np.array_equal(splits, assign_splits(1000, seed=6))
    assert set(assign_splits(1, seed=0)) == {"train"}
