"""Association test specifications: which concept sets each test compares, read from TOML.

A specification file (presets in ``data/association/``) holds a list of tests and optional
defaults for their options::

    description = "Accessories vs skin tone on the avatar dataset"

    [defaults]             # optional; every key is a test option below
    n_permutations = 10000
    n_bootstrap = 2000
    seed = 0

    [[tests]]
    name = "hat~dark (WEAT)"
    kind = "weat"          # X, Y targets; A, B attributes
    X = "hat"
    Y = "no_hat"
    A = "dark"
    B = "light"

    [[tests]]
    name = "hat~dark (concept)"
    kind = "concept"       # one target W against groups A, B
    W = "hat"
    A = "dark"
    B = "light"

    [[tests]]
    name = "hat~dark (pair)"
    kind = "pair"          # object vs object-with-group-a / object-with-group-b
    object = "hat"
    object_with_a = "hat+dark"
    object_with_b = "hat+light"

Test options: ``n_permutations`` (10000), ``n_bootstrap`` (2000; 0 skips intervals), ``seed``
(0), ``confidence`` (0.95), ``exact`` ("auto", true, false) and ``alternative`` ("greater",
"less", "two-sided"); see :func:`analyze.association.association_test`. A ``.yaml`` / ``.yml``
file with the same structure is read as well. Unknown keys are an error that names the key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from analyze.association.permutation import check_test_options
from extract.errors import UserError

try:  # standard library from Python 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: Set roles of each kind of test, in the order the measure takes them.
ROLES = {
    "weat": ("X", "Y", "A", "B"),
    "concept": ("W", "A", "B"),
    "pair": ("object", "object_with_a", "object_with_b"),
}
#: Measure of each kind: the WEAT effect size d, or the association (a cosine difference).
MEASURES = {"weat": "effect_size", "concept": "association", "pair": "association"}
DEFAULT_OPTIONS = {"n_permutations": 10000, "n_bootstrap": 2000, "seed": 0, "confidence": 0.95,
                   "exact": "auto", "alternative": "greater"}
_TOP_KEYS = ("description", "defaults", "tests")


@dataclass(frozen=True)
class AssociationSpec:
    """One test: its ``name``, ``kind`` (a key of :data:`ROLES`), the concept set of each role
    (``sets``: role -> set name) and the options passed to the measure."""

    name: str
    kind: str
    sets: dict
    options: dict = field(default_factory=lambda: dict(DEFAULT_OPTIONS))

    @property
    def measure(self) -> str:
        """``"effect_size"`` for WEAT tests, ``"association"`` for concept and pair tests."""
        return MEASURES[self.kind]

    def to_dict(self) -> dict:
        """Plain-Python dict for JSON."""
        return asdict(self)


def _check_options(options: Mapping, where: str) -> dict:
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise UserError(f"{where} has the unknown option {unknown[0]!r}; the options are "
                        f"{sorted(DEFAULT_OPTIONS)}.")
    merged = {**DEFAULT_OPTIONS, **options}
    check_test_options(n_permutations=merged["n_permutations"], seed=merged["seed"],
                       exact=merged["exact"], alternative=merged["alternative"])
    n_bootstrap, confidence = merged["n_bootstrap"], merged["confidence"]
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 0:
        raise UserError(f"{where} has n_bootstrap={n_bootstrap!r}; pass a non-negative integer.")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) \
            or not 0 < confidence < 1:
        raise UserError(f"{where} has confidence={confidence!r}; pass a level in (0, 1).")
    return dict(options)


def _parse_test(entry, index: int, defaults: dict) -> AssociationSpec:
    where = f"test {index + 1}"
    if not isinstance(entry, Mapping):
        raise UserError(f"{where} is not a table; write each test as a [[tests]] table.")
    name, kind = entry.get("name"), entry.get("kind")
    if not isinstance(name, str) or not name.strip():
        raise UserError(f"{where} has no name; give it name = \"...\".")
    where = f"test {name!r}"
    if kind not in ROLES:
        raise UserError(f"{where} has kind={kind!r}; use one of {sorted(ROLES)}.")
    roles = ROLES[kind]
    unknown = sorted(set(entry) - {"name", "kind", *roles, *DEFAULT_OPTIONS})
    if unknown:
        raise UserError(f"{where} has the unknown key {unknown[0]!r}; a {kind} test takes "
                        f"name, kind, {', '.join(roles)} and the options {sorted(DEFAULT_OPTIONS)}.")
    missing = [role for role in roles if role not in entry]
    if missing:
        raise UserError(f"{where} lacks the set {missing[0]!r}; a {kind} test names the sets "
                        f"{', '.join(roles)}.")
    sets = {role: entry[role] for role in roles}
    bad = [role for role, value in sets.items() if not isinstance(value, str) or not value]
    if bad:
        raise UserError(f"{where} gives {bad[0]} = {sets[bad[0]]!r}; name a concept set there.")
    options = {**defaults, **{key: entry[key] for key in DEFAULT_OPTIONS if key in entry}}
    _check_options(options, where)
    return AssociationSpec(name=name, kind=kind, sets=sets, options={**DEFAULT_OPTIONS, **options})


def parse_tests(document: Mapping) -> list[AssociationSpec]:
    """Tests from a parsed specification (the structure in the module docstring).

    Returns
    -------
    list of AssociationSpec
        In file order; names are unique.
    """
    if not isinstance(document, Mapping):
        raise UserError("the test specification is not a table; see data/association/ for "
                        "an example.")
    unknown = sorted(set(document) - set(_TOP_KEYS))
    if unknown:
        raise UserError(f"the test specification has the unknown key {unknown[0]!r}; the keys "
                        f"are {list(_TOP_KEYS)}.")
    defaults = document.get("defaults", {})
    if not isinstance(defaults, Mapping):
        raise UserError("[defaults] of the test specification is not a table of options.")
    _check_options(defaults, "[defaults]")
    entries = document.get("tests")
    if not isinstance(entries, list) or not entries:
        raise UserError("the test specification has no tests; add at least one [[tests]] table.")
    tests = [_parse_test(entry, i, dict(defaults)) for i, entry in enumerate(entries)]
    names = [test.name for test in tests]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UserError(f"the test name {repeated[0]!r} is used twice; give each test its own "
                        "name.")
    return tests


def load_tests(path: str | Path) -> list[AssociationSpec]:
    """Read a TOML (or YAML) test specification file; see the module docstring."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"the test specification {path} does not exist; pass a .toml file such "
                        "as data/association/avatars-accessories.toml.")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            document = yaml.safe_load(text)
        else:
            document = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise UserError(f"the test specification {path} cannot be parsed ({first_line}); fix "
                        "its syntax.") from None
    return parse_tests(document)


def set_names(tests: Iterable[AssociationSpec]) -> list[str]:
    """Every concept set the tests use, in first-use order."""
    return list(dict.fromkeys(name for test in tests for name in test.sets.values()))


def check_sets_exist(tests: Iterable[AssociationSpec], available: Iterable[str]) -> None:
    """Raise a :class:`UserError` naming the first test that uses a set not in ``available``."""
    available = set(available)
    for test in tests:
        for role, name in test.sets.items():
            if name not in available:
                raise UserError(f"test {test.name!r} uses the concept set {name!r} as {role}, "
                                f"which does not exist; the sets are {sorted(available)}.")
