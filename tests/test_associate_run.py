"""run_association: tidy rows, measures equal to direct calls, the random-init null, change."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from analyze.association import association_test, concept_association, paired_change
from analyze.association.concepts import avatar_concept_sets
from analyze.association.options import AssociationOptions, EmbedOptions
from analyze.association.models import describe_model, embed_images
from analyze.association.report import summarize_change
from analyze.association.run import COLUMNS, null_summary, run_association
from analyze.association.spec import parse_tests
from extract.backbones import create_backbone, save_checkpoint
from extract.datasets.avatars import RenderSpec, render_dataset
from extract.errors import UserError

SIZE = 32
NAMES = ["hat", "no_hat", "dark", "light", "hat+dark", "hat+light"]
SPEC = {"defaults": {"n_permutations": 200, "n_bootstrap": 100, "seed": 1}, "tests": [
    {"name": "weat", "kind": "weat", "X": "hat", "Y": "no_hat", "A": "dark", "B": "light"},
    {"name": "concept", "kind": "concept", "W": "hat", "A": "dark", "B": "light"},
    {"name": "pair", "kind": "pair", "object": "hat", "object_with_a": "hat+dark",
     "object_with_b": "hat+light"},
]}
TESTS = parse_tests(SPEC)
BASE = "smallcnn.scratch"


pytestmark = pytest.mark.usefixtures("one_torch_thread_per_module")


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    cache = render_dataset(tmp_path_factory.mktemp("avatars") / "avatars.h5", spec=RenderSpec(n=300, size=SIZE, seed=0, signal_sample=4), workers=1, progress=False)
    return avatar_concept_sets(cache, NAMES, per_set=8, split=None, seed=0)


def _finetuned(folder, seed: int, *, meta_extra=None):
    """A stand-in for a finetuned checkpoint: the base's weights, perturbed with a seed."""
    backbone = create_backbone(BASE)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in backbone.model.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    meta = {"name": f"ft{seed}", "base": BASE, "condition": "corr0.9", "seed": seed,
            **(meta_extra or {})}
    return str(save_checkpoint(folder / f"ft{seed}.pt", backbone.model, arch="smallcnn",
                               arch_kwargs={"width": 16}, preprocess=backbone.preprocess, meta=meta))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoints")
    return [_finetuned(folder, seed) for seed in (1, 2)]


@pytest.fixture(scope="module")
def table(sets, checkpoints):
    return run_association([BASE, *checkpoints], sets, TESTS, null_seeds=(3, 4, 5),
                           embed=EmbedOptions(image_size=SIZE))


def _embed(name, sets, **options):
    backbone = create_backbone(name, image_size=SIZE, **options)
    return {n: embed_images(backbone, sets[n]) for n in NAMES}


def test_embed_images_normalises_like_the_backbone_and_ignores_batching(sets):
    backbone = create_backbone(BASE, image_size=SIZE)
    images = sets["hat"]
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        expected = backbone.model((pixels - 0.5) / 0.5).numpy()
    embedded = embed_images(backbone, images, batch_size=3)
    assert embedded.shape == (8, 128) and embedded.dtype == np.float32
    np.testing.assert_allclose(embedded, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(embedded, embed_images(backbone, images, batch_size=3))
    resized = embed_images(create_backbone(BASE, image_size=16), images)
    assert resized.shape == (8, 128) and not np.allclose(resized, embedded)
    with pytest.raises(UserError, match="cannot be embedded"):
        embed_images(backbone, images.astype(np.float32))


def test_table_has_the_documented_columns_and_one_row_per_model_stage_test(table, checkpoints):
    assert list(table.columns) == COLUMNS
    counts = table.groupby(["model", "stage"]).size().to_dict()
    assert counts == {(BASE, "before"): 3, (checkpoints[0], "after"): 3,
                      (checkpoints[1], "after"): 3, (checkpoints[0], "change"): 3,
                      (checkpoints[1], "change"): 3}
    assert not table.duplicated(["model", "stage", "test"]).any()
    assert set(table["backbone"]) == {BASE}
    after = table[table["stage"] == "after"]
    assert set(after["condition"]) == {"corr0.9"} and set(after["finetune_seed"]) == {1, 2}
    assert (table.loc[table["stage"] == "before", "condition"] == "base").all()
    assert table.loc[table["kind"] == "weat", "measure"].eq("effect_size").all()
    assert table.loc[table["kind"] != "weat", "measure"].eq("association").all()


def test_observed_rows_equal_direct_measures(table, sets):
    embeddings = _embed(BASE, sets)
    options = TESTS[0].options
    weat = association_test(embeddings["hat"], embeddings["no_hat"], embeddings["dark"],
                            embeddings["light"], options=AssociationOptions(**options))
    row = table[(table["stage"] == "before") & (table["test"] == "weat")].iloc[0]
    assert row["effect_size"] == pytest.approx(weat.effect_size, rel=1e-6)
    assert row["p_value"] == pytest.approx(weat.p_value)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((weat.ci_low, weat.ci_high), rel=1e-5)
    assert (row["n_x"], row["n_y"], row["n_a"], row["n_b"]) == (8, 8, 8, 8)
    assert row["n_partitions"] == weat.n_partitions and not row["exact"]
    pair = concept_association(embeddings["hat"], embeddings["hat+dark"],
                               embeddings["hat+light"], options=AssociationOptions(**options))
    row = table[(table["stage"] == "before") & (table["test"] == "pair")].iloc[0]
    assert row["effect_size"] == pytest.approx(pair.association, rel=1e-6)
    assert row["p_value"] == pytest.approx(pair.p_value) and pd.isna(row["n_y"])


def test_null_uses_the_same_architecture_at_each_seed(table, sets):
    """The null of base and finetuned models alike = smallcnn at random init, seeds 3, 4, 5."""
    null = []
    for seed in (3, 4, 5):
        embeddings = _embed(BASE, sets, seed=seed)
        null.append(association_test(embeddings["hat"], embeddings["no_hat"], embeddings["dark"],
                                     embeddings["light"],
                                     options=AssociationOptions(n_bootstrap=0,
                                                                n_permutations=1)).effect_size)
    rows = table[(table["test"] == "weat") & (table["stage"] != "change")]
    assert (rows["null_n"] == 3).all()
    np.testing.assert_allclose(rows["null_mean"], np.mean(null), rtol=1e-5)
    np.testing.assert_allclose(rows["null_sd"], np.std(null, ddof=1), rtol=1e-4)
    expected_z = (rows["effect_size"] - np.mean(null)) / np.std(null, ddof=1)
    np.testing.assert_allclose(rows["null_z"], expected_z, rtol=1e-4)
    change = table[table["stage"] == "change"]
    assert (change["null_n"] == 0).all() and change["null_mean"].isna().all()


def test_null_summary_by_hand():
    summary = null_summary(0.5, np.array([0.0, 0.5, 1.0, 2.0]))
    assert summary["null_percentile"] == pytest.approx(37.5)  # (1 below + half a tie) / 4
    assert summary["null_mean"] == pytest.approx(0.875) and summary["null_n"] == 4
    assert summary["null_sd"] == pytest.approx(np.std([0, 0.5, 1, 2], ddof=1))
    assert null_summary(1.0, np.array([]))["null_n"] == 0


def test_change_rows_equal_paired_change_and_summary_pools_models(table, sets, checkpoints):
    before = _embed(BASE, sets)
    after = {n: embed_images(describe_model(checkpoints[0], image_size=SIZE).backbone, sets[n])
             for n in NAMES}
    keys = ("W", "A", "B")
    change = paired_change(dict(zip(keys, (before["hat"], before["dark"], before["light"]))),
                           dict(zip(keys, (after["hat"], after["dark"], after["light"]))),
                           n_bootstrap=100, seed=1)
    row = table[(table["stage"] == "change") & (table["test"] == "concept")
                & (table["model"] == checkpoints[0])].iloc[0]
    assert row["effect_size"] == pytest.approx(change.change, rel=1e-5, abs=1e-9)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((change.ci_low, change.ci_high),
                                                            rel=1e-4, abs=1e-9)
    observed = table.set_index(["model", "stage", "test"])["effect_size"]
    assert row["effect_size"] == pytest.approx(observed[(checkpoints[0], "after", "concept")]
                                               - observed[(BASE, "before", "concept")], rel=1e-5)
    summary = summarize_change(table).set_index("test")
    pooled = table[(table["stage"] == "change") & (table["test"] == "concept")]["effect_size"]
    half = stats.t.ppf(0.975, 1) * pooled.std(ddof=1) / np.sqrt(2)
    assert summary.loc["concept", "n_models"] == 2 and summary.loc["concept", "interval"] == "t over models"
    assert summary.loc["concept", "ci_low"] == pytest.approx(pooled.mean() - half)


def test_rerun_gives_the_same_table(sets, table, checkpoints):
    again = run_association([BASE, checkpoints[0]], sets, TESTS, null_seeds=(3, 4, 5),
                            embed=EmbedOptions(image_size=SIZE))
    expected = table[table["model"].isin([BASE, checkpoints[0]])].reset_index(drop=True)
    pd.testing.assert_frame_equal(again, expected)


def test_stages_filter_and_missing_base(sets, checkpoints, tmp_path):
    only_after = run_association([checkpoints[0]], sets, TESTS[:1], null_seeds=(),
                                 embed=EmbedOptions(image_size=SIZE), stages=["after"])
    assert list(only_after["stage"]) == ["after"] and only_after["null_n"].iat[0] == 0
    assert pd.isna(only_after["null_mean"].iat[0]) and only_after["backbone"].iat[0] == BASE
    orphan = _finetuned(tmp_path, 7, meta_extra={"base": "resnet18.scratch"})
    with pytest.warns(UserWarning, match="not among the backbones"):
        result = run_association([BASE, orphan], sets, TESTS[:1], null_seeds=(),
                                 embed=EmbedOptions(image_size=SIZE))
    assert list(result["stage"]) == ["before", "after"]


@pytest.mark.parametrize("kwargs, pattern", [
    ({"stages": ["during"]}, "stages="),
    ({"null_arch": "nonet.scratch"}, "null architecture 'nonet.scratch'"),
])
def test_bad_options_are_user_errors(sets, kwargs, pattern):
    with pytest.raises(UserError, match=pattern):
        run_association([BASE], sets, TESTS[:1], null_seeds=(0,), embed=EmbedOptions(image_size=SIZE),
                        **kwargs)


def test_unknown_set_is_a_user_error(sets):
    tests = parse_tests({"tests": [{"name": "t", "kind": "concept", "W": "cap", "A": "dark",
                                    "B": "light"}]})
    with pytest.raises(UserError, match="concept set 'cap' as W"):
        run_association([BASE], sets, tests, null_seeds=())
