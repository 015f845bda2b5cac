"""Infeasible and malformed requests: one sentence naming the limit and the largest feasible value."""

import re

import numpy as np
import pandas as pd
import pytest

from analyze.subsets import (
    Correlation,
    Natural,
    SalienceSets,
    Skew,
    SubSelection,
    TestResample,
    Underrepresentation,
    natural_level,
)
from extract.errors import UserError


def make_frame(cells, *, split="train"):
    parts = [(y, s) for (y, s), k in cells.items() for _ in range(k)]
    y, s = (np.array(v, np.int8) for v in zip(*parts))
    order = np.random.default_rng(0).permutation(len(y))
    return pd.DataFrame({"image_id": [f"i{i}" for i in range(len(y))], "split": split, "y": y[order], "s": s[order]})


META = make_frame({(1, 0): 37, (1, 1): 90, (0, 0): 64, (0, 1): 150})


def one_sentence(message):
    assert message.endswith(".") and "\n" not in message and not re.search(r"\.\s+[A-Z]", message)
    return message


def largest_in(message, name):
    found = re.search(rf"largest feasible {name}(?: at this level)? is (\d+)", message)
    assert found, message
    return int(found.group(1))


SPECS_WITH_N = [
    lambda n: Correlation("y", "s", 0.3, n=n),
    lambda n: Correlation("y", "s", 0.5, n=n, size=60, val_fraction=0.25),
    lambda n: Skew("y", "s", 0.2, n=n),
    lambda n: Natural("y", "s", n=n),
    lambda n: Underrepresentation("y", "s", 0.3, n=n),
    lambda n: SalienceSets("y", "s", arrangement="inverted", n=n),
]


@pytest.mark.parametrize("make", SPECS_WITH_N)
def test_largest_feasible_n_is_feasible_and_one_more_is_not(make):
    with pytest.raises(UserError) as info:
        make(10_000).indices(META)
    message = one_sentence(str(info.value))
    largest = largest_in(message, "n")
    assert message.startswith("n=10000 is infeasible: ")
    assert re.search(r"cell \(y=\d, s=\d\) has \d+ rows in the train pool|train pool has \d+ rows|size=60 makes", message)
    assert len(make(largest).indices(META)) == largest
    with pytest.raises(UserError, match=f"largest feasible n is {largest}"):
        make(largest + 1).indices(META)


def test_correlation_names_the_smallest_cell():
    with pytest.raises(UserError, match=r"cell \(y=1, s=0\) has 37 rows in the train pool.*largest feasible n is 60\."):
        Correlation("y", "s", 0.3, n=61).indices(META)  # L = 37 -> 30 per label in training


def test_largest_feasible_size_is_feasible_and_one_more_is_not():
    with pytest.raises(UserError) as info:
        Correlation("y", "s", 0.7, size=200).indices(META)
    message = one_sentence(str(info.value))
    assert "cell (y=0, s=0) has 64 rows" in message  # 0.7 * 200 = 140 counter rows > 64
    largest = largest_in(message, "size")
    assert largest == 92  # round(0.7 * 92) = round(64.4) = 64 fits, round(0.7 * 93) = 65 does not
    Correlation("y", "s", 0.7, size=largest).indices(META)
    with pytest.raises(UserError):
        Correlation("y", "s", 0.7, size=largest + 1).indices(META)


def test_subselection_base_n_error_names_base_n():
    with pytest.raises(UserError, match=r"base_n=999 is infeasible.*largest feasible base_n is 60\."):
        SubSelection("y", "s", 0.5, base_n=999, base_level=0.3).indices(META)


def test_unreachable_subselection_level_names_the_cell():
    meta = make_frame({(1, 0): 200, (1, 1): 200, (0, 0): 200, (0, 1): 200})
    with pytest.raises(UserError, match=r"cell \(y=1, s=1\) keeps only 0"):
        SubSelection("y", "s", 1.0, base_n=100, base_level=0.0).indices(meta)


def test_empty_cells_and_constant_columns():
    no_counter = make_frame({(1, 0): 50, (1, 1): 0, (0, 0): 0, (0, 1): 50})
    with pytest.raises(UserError, match=r"cell \(y=0, s=0\) has 0 rows"):
        Correlation("y", "s", 0.0).indices(no_counter)
    with pytest.raises(UserError, match=r"cell \(y=1, s=1\) has 0 rows"):
        SalienceSets("y", "s").aligned(no_counter)
    with pytest.raises(UserError, match=r"skewed set gets no rows with y=1"):
        Skew("y", "s", 1.0).indices(no_counter)
    constant = make_frame({(1, 0): 50, (1, 1): 50})
    with pytest.raises(UserError, match=r"column 'y' is constant \(only 1\)"):
        Correlation("y", "s", 0.5).indices(constant)
    with pytest.raises(UserError, match="no rows with y=1"):
        natural_level(make_frame({(0, 0): 5, (0, 1): 5}), "y", "s")


def test_bad_columns():
    bad = META.assign(z=np.where(META.y == 1, 2, 0).astype(np.int8), f=META.y.astype(float))
    with pytest.raises(UserError, match=r"no column 'nope'"):
        Correlation("nope", "s", 0.5).indices(META)
    with pytest.raises(UserError, match=r"column 'z' is not binary"):
        Correlation("y", "z", 0.5).indices(bad)
    with pytest.raises(UserError, match=r"column 'f' is not binary"):
        Natural("f", "s").indices(bad)
    with pytest.raises(UserError, match="twice"):
        Correlation("y", "y", 0.5).indices(META)
    with pytest.raises(UserError, match="'split' column"):
        Correlation("y", "s", 0.5).indices(META.drop(columns="split"))


@pytest.mark.parametrize(
    "build",
    [
        lambda: Correlation("y", "s", 1.5),
        lambda: Correlation("y", "s", -0.1),
        lambda: Correlation("y", "s", float("nan")),
        lambda: Correlation("y", "s", "0.3"),
        lambda: Correlation("y", "s", 0.3, n=1),
        lambda: Correlation("y", "s", 0.3, n=2.5),
        lambda: Correlation("y", "s", 0.3, size=0),
        lambda: Correlation("y", "s", 0.3, seed=-1),
        lambda: Correlation("y", "s", 0.3, pool="training"),
        lambda: Correlation("y", "s", 0.3, val_fraction=1.0),
        lambda: Skew("y", "s", 2.0),
        lambda: Underrepresentation("y", "s", 0.5, pos_prop=1.0),
        lambda: Underrepresentation("y", "s", 0.5, pos_prop=0.0),
        lambda: SalienceSets("y", "s", arrangement="sideways"),
        lambda: TestResample("y", "s", level=1.01),
        lambda: SubSelection("y", "s", 0.5, base_level=7),
    ],
)
def test_invalid_spec_values_fail_at_construction(build):
    with pytest.raises(UserError) as info:
        build()
    one_sentence(str(info.value))
