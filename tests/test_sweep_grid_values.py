"""Grid values are checked when the grid is read: a wrong type or an empty list is one sentence, never a traceback."""

import re

import pytest

from analyze.sweep.grid import expand_specs, load_grid
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
levels = [0.0, 1.0]
n = [32]
seeds = 2

[[subsets]]
kind = "skew"
p = [0.8]
"""


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def refused(tiny, overrides, pattern):
    with pytest.raises(UserError) as info:
        load_grid(tiny, overrides=overrides)
    message = str(info.value)
    assert "\n" not in message and message.endswith("."), message
    assert re.search(pattern, message), message
    return message


@pytest.mark.parametrize("value", ["abc", "2.5", "[0, \"x\"]", "[1.5]", "true", "[]", "-1"],
                         ids=["text", "fraction", "list with text", "list with fraction", "boolean", "empty list",
                              "negative"])
def test_bad_seeds_are_refused_at_load(tiny, value):
    refused(tiny, [f"subsets.correlation.seeds={value}"], r"seeds = .* in subset block 0 \(correlation\)")


def test_seed_text_from_the_seeds_flag_form(tiny):
    # --seeds abc becomes ("subsets.*.seeds", parse_value("abc")): every block, the first one named
    refused(tiny, [("subsets.*.seeds", "abc")], r"seeds = 'abc' in subset block 0 \(correlation\) is not a count "
                                                 r"or a list of whole-number seeds; write e\.g\. seeds = 3")


def test_good_seeds_still_expand(tiny):
    assert {s.seed for s in expand_specs(load_grid(tiny, overrides=["subsets.*.seeds=[4, 7]"]))} == {4, 7}
    assert {s.seed for s in expand_specs(load_grid(tiny, overrides=["subsets.*.seeds=3"]))} == {0, 1, 2}


@pytest.mark.parametrize("key, value, pattern", [
    ("subsets.correlation.levels", "[]", r"levels = \[\] in subset block 0 \(correlation\) is empty; list at least one"),
    ("subsets.correlation.levels", "[\"high\"]", r"levels = \['high'\] in subset block 0 \(correlation\) must list numbers"),
    ("subsets.skew.p", "[]", r"p = \[\] in subset block 1 \(skew\) is empty"),
    ("subsets.correlation.n", "[]", r"n = \[\] in subset block 0 \(correlation\) is empty"),
    ("subsets.correlation.n", "2.5", r"n = 2\.5 in subset block 0 \(correlation\) must list whole numbers or 'all'"),
    ("subsets.correlation.n", "many", r"n = 'many' in subset block 0 \(correlation\) must list whole numbers or 'all'"),
], ids=["empty levels", "text levels", "empty p", "empty n", "fractional n", "text n"])
def test_bad_value_lists_are_refused_at_load(tiny, key, value, pattern):
    refused(tiny, [f"{key}={value}"], pattern)


def test_a_list_of_sensitive_attributes_is_refused(tiny):
    refused(tiny, [("grid.sensitive", ["dark_skin"])],
            r"grid\.sensitive = \['dark_skin'\] must be one attribute name, e\.g\. sensitive = \"dark_skin\"")


@pytest.mark.parametrize("value, pattern", [
    ([], r"grid\.targets is empty"), ([["hat"]], r"grid\.targets must list attribute names")])
def test_bad_targets_are_refused(tiny, value, pattern):
    refused(tiny, [("grid.targets", value)], pattern)


def test_a_grid_with_no_cells_is_refused(tmp_path):
    path = tmp_path / "none.toml"
    path.write_text(TINY.replace('targets = ["hat", "long_hair"]\n', "")
                    .replace('kind = "skew"', 'kind = "skew"\ntargets = ["hat"]'))
    with pytest.raises(UserError, match=r"need `grid\.targets` and `grid\.sensitive`; give both"):
        load_grid(path)


@pytest.mark.parametrize("value, size", [("[-32]", -32), ("0", 0), ("[64, -1]", -1)],
                         ids=["negative", "zero", "one of several"])
def test_a_size_below_one_is_refused_as_not_positive(tiny, value, size):
    # -32 is a whole number: the sentence says what is wrong with it (it must be positive)
    message = refused(tiny, [f"subsets.correlation.n={value}"],
                      rf"n = .* in subset block 0 \(correlation\) lists the training size {size}, but a size must be "
                      r"positive \(at least 1\) or 'all'; write e\.g\. n = \[")
    assert "whole numbers" not in message


def test_a_negative_size_in_the_grid_file_is_refused_as_not_positive(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(TINY.replace("n = [32]", "n = [-32]"))
    with pytest.raises(UserError, match=r"lists the training size -32, but a size must be positive \(at least 1\) "
                                        r"or 'all'; write e\.g\. n = \[32\]\.$"):
        load_grid(path)


@pytest.mark.parametrize("value", ["-1", "0", "[0, -7]"], ids=["negative count", "zero count", "negative seed"])
def test_whole_but_out_of_range_seeds_say_the_range(tiny, value):
    message = refused(tiny, [f"subsets.correlation.seeds={value}"], r"is out of range: a count must be at least 1 "
                                                                    r"and a listed seed at least 0")
    assert "whole-number" not in message
