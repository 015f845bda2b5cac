"""Grid specs: presets expand to the paper's cell counts; keys are checked; overrides work."""

import pytest

from analyze.subsets import Correlation, Natural, Skew, Underrepresentation
from analyze.sweep.grid import (
    apply_overrides,
    expand_specs,
    load_grid,
    parse_value,
    preset_names,
)
from extract.errors import UserError

TINY = """
[grid]
name = "tiny"
targets = ["hat", "long_hair"]
sensitive = "dark_skin"

[[backbones]]
name = "a"
base_kind = "biased"
store = "{work}/stores/a.h5"

[[subsets]]
kind = "correlation"
levels = [0.0, 0.5, 1.0]
n = [32, 64]
seeds = 2
"""


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def test_presets_are_shipped():
    expected = {"demo", "demo-finetune", "wr-correlation", "wr-trainnum", "wr-regression", "wr-underrep"}
    assert expected <= set(preset_names())


@pytest.mark.parametrize("name, per_backbone", [
    ("wr-correlation", 4 * 11 * 2 * 5),   # targets x levels x n x seeds
    ("wr-trainnum", 4 * 11 * 5),          # targets x n (16 ... 8192, all) x seeds
    ("wr-regression", 11 * 2 * 5),        # attributes x {natural, skew} x seeds
    ("demo", 6 * 9 * 5 + 6 * 5 + 6 * 5),  # correlation + natural + skew, n = 128, 5 seeds
])
def test_paper_grids_expand_to_the_papers_counts(name, per_backbone):
    grid = load_grid(name)
    specs = expand_specs(grid)
    assert len(specs) == per_backbone
    assert len(set(specs)) == len(specs)
    assert all(grid.backbones) and all(b.base_kind for b in grid.backbones)


def test_correlation_grid_values():
    specs = expand_specs(load_grid("wr-correlation"))
    assert {s.level for s in specs} == {k / 10 for k in range(11)}
    assert {s.n for s in specs} == {128, 1024}
    assert {s.seed for s in specs} == set(range(5))
    assert all(isinstance(s, Correlation) and s.sensitive == "Male" for s in specs)


def test_trainnum_all_means_the_whole_training_part():
    specs = expand_specs(load_grid("wr-trainnum"))
    assert all(isinstance(s, Natural) for s in specs)
    assert sorted({s.n for s in specs if s.n is not None}) == [2 ** k for k in range(4, 14)]
    assert sum(s.n is None for s in specs) == 4 * 5


def test_regression_grid_skews_toward_female_positives():
    specs = expand_specs(load_grid("wr-regression"))
    skews = [s for s in specs if isinstance(s, Skew)]
    assert {s.p for s in skews} == {0.2} and {s.n for s in specs} == {1024}


def test_underrep_blocks_apply_to_their_own_bases():
    grid = load_grid("wr-underrep")
    per_pair = 11 * 2 * 5  # shares x n x seeds
    hat = expand_specs(grid, "on-Wearing_Hat")
    assert len(hat) == per_pair and {(s.attr_a, s.attr_b) for s in hat} == {("Wearing_Hat", "Eyeglasses")}
    assert len(expand_specs(grid, "on-Bags_Under_Eyes")) == 2 * per_pair  # in two pairs
    assert len(expand_specs(grid, "on-Brown_Hair")) == 2 * per_pair
    assert all(isinstance(s, Underrepresentation) for s in expand_specs(grid))
    total = sum(len(expand_specs(grid, b.name)) for b in grid.backbones)
    assert total == 6 * 2 * per_pair  # 6 pairs, each finetuned from its two bases


def test_counts_follow_overrides(tiny):
    grid = load_grid(tiny)
    assert len(expand_specs(grid)) == 2 * 3 * 2 * 2
    grid = load_grid(tiny, overrides=["grid.targets=hat", "subsets.*.seeds=0,1,2", "subsets.correlation.n=all"])
    specs = expand_specs(grid)
    assert len(specs) == 1 * 3 * 1 * 3 and {s.n for s in specs} == {None}


def test_work_placeholder_and_backbone_overrides(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("BIASTRANSFER_WORK", str(tmp_path / "w"))
    grid = load_grid(tiny)
    assert grid.backbones[0].store == f"{tmp_path / 'w'}/stores/a.h5"
    grid = load_grid(tiny, overrides=[("backbones.a.store", "/x/y.h5"), "backbones.b.base_kind=control",
                                      "backbones.b.store=/x/b.h5"])
    assert [(b.name, b.base_kind, b.store) for b in grid.backbones] == [("a", "biased", "/x/y.h5"),
                                                                        ("b", "control", "/x/b.h5")]
    only_b = load_grid(tiny, overrides=["backbones.b.base_kind=control"], backbones=["b"])
    assert [b.name for b in only_b.backbones] == ["b"]


@pytest.mark.parametrize("text, key", [
    (TINY.replace('name = "tiny"', 'nmae = "tiny"'), "nmae"),
    (TINY + "[probe]\nCss = [1.0]\n", "Css"),
    (TINY + "[oops]\na = 1\n", "oops"),
    (TINY + "[[subsets]]\nkind = 'correlation'\nlevel = [0.5]\n", "level"),
    (TINY + "[[backbones]]\nname = 'c'\nbase_kind = 'control'\nstroe = 'x'\n", "stroe"),
])
def test_unknown_keys_in_the_file_are_named(tmp_path, text, key):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UserError, match=f"'{key}'"):
        load_grid(path)


@pytest.mark.parametrize("override, fragment", [
    ("probe.Csss=1", "'Csss'"),
    ("nope.x=1", "'nope.x'"),
    ("subsets.skew.p=0.2", "matches no subset block"),
    ("subsets.0.levelz=0.5", "'levelz'"),
    ("grid.targets", "KEY=VALUE"),
    ("backbones.new.store=/x.h5", "base_kind"),
])
def test_bad_overrides_are_one_clear_error(tiny, override, fragment):
    with pytest.raises(UserError, match=fragment):
        load_grid(tiny, overrides=[override])


def test_bad_values_and_names(tiny):
    with pytest.raises(UserError, match="level=1.5"):
        expand_specs(load_grid(tiny, overrides=["subsets.0.levels=0.5,1.5"]))
    with pytest.raises(UserError, match="neither a TOML file nor a preset"):
        load_grid("no-such-grid")
    with pytest.raises(UserError, match="not in the grid"):
        load_grid(tiny, backbones=["zzz"])
    with pytest.raises(UserError, match="runner 'svm'"):
        load_grid(tiny, overrides=["grid.runners=svm"])


def test_parse_value():
    assert parse_value("3") == 3 and parse_value("0.5") == 0.5 and parse_value("true") is True
    assert parse_value("0,0.5,1") == [0, 0.5, 1]
    assert parse_value("hat,eyewear") == ["hat", "eyewear"]
    assert parse_value('["a", "b"]') == ["a", "b"]
    assert parse_value("work/stores/x.h5") == "work/stores/x.h5"
    doc = apply_overrides({"grid": {"targets": ["a"]}}, ["grid.targets=b,c"])
    assert doc == {"grid": {"targets": ["b", "c"]}}
