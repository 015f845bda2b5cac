"""Test specifications: the presets parse; unknown keys, kinds and sets are user errors."""

from pathlib import Path

import pytest

from analyze.association.concepts import avatar_set_names
from analyze.association.spec import (
    DEFAULT_OPTIONS,
    ROLES,
    check_sets_exist,
    load_tests,
    parse_tests,
    set_names,
)
from extract.errors import UserError

PRESETS = sorted((Path(__file__).parents[1] / "data" / "association").glob("*.toml"))
WEAT = {"name": "w", "kind": "weat", "X": "hat", "Y": "no_hat", "A": "dark", "B": "light"}


def test_avatar_preset_uses_only_avatar_sets():
    tests = load_tests(Path(__file__).parents[1] / "data/association/avatars-accessories.toml")
    assert {test.kind for test in tests} == set(ROLES)
    check_sets_exist(tests, avatar_set_names(["hat", "eyewear", "blazer"]))
    assert all(test.options["n_permutations"] == 10000 for test in tests)


@pytest.mark.parametrize("path", PRESETS, ids=[p.name for p in PRESETS])
def test_every_preset_parses(path):
    tests = load_tests(path)
    assert tests and all(set(test.sets) == set(ROLES[test.kind]) for test in tests)


def test_defaults_and_per_test_options_merge():
    tests = parse_tests({"defaults": {"n_bootstrap": 0, "seed": 3},
                         "tests": [WEAT, {**WEAT, "name": "w2", "seed": 9}]})
    assert tests[0].options == {**DEFAULT_OPTIONS, "n_bootstrap": 0, "seed": 3}
    assert tests[1].options["seed"] == 9 and tests[1].measure == "effect_size"
    assert set_names(tests) == ["hat", "no_hat", "dark", "light"]


def test_yaml_files_are_read_too(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("tests:\n  - {name: c, kind: concept, W: hat, A: dark, B: light}\n")
    (test,) = load_tests(path)
    assert test.kind == "concept" and test.sets == {"W": "hat", "A": "dark", "B": "light"}
    assert test.measure == "association"


@pytest.mark.parametrize("document, pattern", [
    ({"tests": [WEAT], "test": []}, "unknown key 'test'"),
    ({"tests": [{**WEAT, "W": "hat"}]}, "unknown key 'W'"),
    ({"tests": [WEAT], "defaults": {"n_perms": 5}}, "unknown option 'n_perms'"),
    ({"tests": [{**WEAT, "kind": "wefat"}]}, "kind='wefat'"),
    ({"tests": [{k: v for k, v in WEAT.items() if k != "B"}]}, "lacks the set 'B'"),
    ({"tests": [{**WEAT, "A": 3}]}, "A = 3"),
    ({"tests": [WEAT, WEAT]}, "used twice"),
    ({"tests": []}, "no tests"),
    ({"tests": [{**WEAT, "name": ""}]}, "has no name"),
    ({"tests": [{**WEAT, "n_bootstrap": -1}]}, "n_bootstrap=-1"),
    ({"tests": [{**WEAT, "alternative": "bigger"}]}, "alternative='bigger'"),
    ({"tests": [{**WEAT, "confidence": 95}]}, "confidence=95"),
])
def test_bad_specifications_are_user_errors(document, pattern):
    with pytest.raises(UserError, match=pattern):
        parse_tests(document)


def test_unknown_set_names_the_test_and_role():
    tests = parse_tests({"tests": [{**WEAT, "Y": "no_hats"}]})
    with pytest.raises(UserError, match="test 'w' uses the concept set 'no_hats' as Y"):
        check_sets_exist(tests, avatar_set_names(["hat"]))


def test_missing_or_broken_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_tests(tmp_path / "none.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[[tests]\nname = 'x'\n")
    with pytest.raises(UserError, match="cannot be parsed"):
        load_tests(broken)
