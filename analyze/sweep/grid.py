"""Grid specs: TOML files (presets in ``data/grids/``) that expand into subset specs.

A grid names the backbones (each with a ``base_kind`` label and a feature store for the
probe runner and/or a base for the finetune runner), the targets and the sensitive
attribute, one or more blocks of subset specs, the runners and their options. The format
is documented in ``data/grids/README.md``; every key is checked, so a misspelt key is a
:class:`~extract.errors.UserError` naming it, never a silently ignored setting.

Values that depend on the user's data are overridden with dotted keys
(:func:`apply_overrides`): ``grid.targets=hat,eyewear``, ``backbones.biased.store=PATH``,
``subsets.correlation.levels=0,0.5,1`` (every block of that kind), ``subsets.0.n=64``
(block 0), ``subsets.*.seeds=3`` (every block). ``{work}`` in a path is the work folder
(:func:`extract.paths.work_dir`).
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from analyze.subsets import (
    Correlation,
    Natural,
    Skew,
    SubSelection,
    Underrepresentation,
)
from analyze.runners import RUNNERS
from extract.errors import UserError
from extract.parsing import split_list
from extract.paths import work_dir

PRESET_DIR = Path(__file__).resolve().parents[2] / "data" / "grids"
DEFAULT_CHUNK_SIZE = 64
# the runners a grid of cells takes (a domain-mix grid is a geography grid, analyze.geography.grid)
CELL_RUNNERS = tuple(name for name in RUNNERS if RUNNERS[name].cell_grid)
SECTION_KEYS = {
    "grid": {"name", "description", "targets", "sensitive", "runners", "chunk_size", "cross_dataset"},
    "data": {"dataset", "root", "options"},
    "probe": {"Cs", "select", "policy", "test_resample", "device"},
    "finetune": {"lrs", "weight_decays", "epochs", "batch_size", "momentum", "flip", "freeze", "freeze_bn", "search",
                 "policy",
                 "image_size", "device", "test", "save_backbones", "sensitive", "conditions_per_task"},
}
TOP_LEVEL = set(SECTION_KEYS) | {"backbones", "subsets"}
BACKBONE_KEYS = {"name", "base_kind", "store", "base", "weights"}
# keys each subset kind accepts (besides kind, targets, seeds, pool, val_fraction)
KIND_KEYS = {
    "correlation": {"levels", "n", "size"},
    "subselection": {"levels", "base_n", "base_level"},
    "natural": {"n"},
    "skew": {"p", "n"},
    "underrepresentation": {"pairs", "shares", "n", "pos_prop"},
}
COMMON_SUBSET_KEYS = {"kind", "targets", "seeds", "pool", "val_fraction", "backbones"}
PATH_KEYS = {"root", "store", "base", "weights", "save_backbones"}


@dataclass(frozen=True)
class GridBackbone:
    """One backbone of a grid: its label, kind, store (probes), base (finetunes) or stores per source (domain mix)."""

    name: str
    base_kind: str
    store: str | None = None
    base: str | None = None
    weights: str | None = None
    stores: dict | None = None


@dataclass(frozen=True)
class Grid:
    """A resolved grid (after overrides); build it with :func:`load_grid`."""

    name: str
    description: str
    targets: tuple[str, ...]
    sensitive: str | None
    runners: tuple[str, ...]
    chunk_size: int
    data: dict
    backbones: tuple[GridBackbone, ...]
    subsets: tuple[dict, ...]
    probe: dict = field(default_factory=dict)
    finetune: dict = field(default_factory=dict)
    source: str = ""
    cross_dataset: bool = False
    experiment: object = None  # a grid of one experiment's own kind (a GeographyGrid), resolved

    def to_dict(self) -> dict:
        """JSON-serialisable form (written beside the results as provenance)."""
        if self.experiment is not None:
            return self.experiment.to_dict()
        return {"name": self.name, "description": self.description, "targets": list(self.targets),
                "sensitive": self.sensitive, "runners": list(self.runners), "chunk_size": self.chunk_size,
                "data": self.data, "backbones": [vars(b) for b in self.backbones], "subsets": list(self.subsets),
                "probe": self.probe, "finetune": self.finetune, "source": self.source,
                "cross_dataset": self.cross_dataset}


# -- reading and overriding ----------------------------------------------------------------


def preset_names() -> list[str]:
    """Names of the grid presets shipped in ``data/grids/``."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def grid_path(source: str | Path) -> Path:
    """A grid file: ``source`` itself when it is a file, else the preset of that name."""
    path = Path(source)
    if path.is_file():
        return path
    preset = PRESET_DIR / f"{source}.toml"
    if preset.is_file():
        return preset
    raise UserError(f"grid {str(source)!r} is neither a TOML file nor a preset; "
                    f"pass a path or one of {preset_names()}.")


def parse_value(text: str):
    """A ``--set`` value: a TOML literal (``3``, ``0.5``, ``true``, ``["a", "b"]``), else a
    comma-separated list of such values (``0,0.5,1``, ``hat,eyewear``), else the text itself."""
    text = str(text).strip()
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    if "," in text:
        return [parse_value(part) for part in split_list(text)]
    return text


def apply_overrides(document: dict, overrides) -> dict:
    """A copy of the raw grid ``document`` with ``overrides`` applied.

    ``overrides``: ``"key=value"`` strings or ``(key, value)`` pairs with dotted keys (see
    the module docstring). Strings go through :func:`parse_value`.
    """
    document = copy.deepcopy(document)
    for item in overrides:
        if isinstance(item, str):
            if "=" not in item:
                raise UserError(f"override {item!r} is not KEY=VALUE; write e.g. grid.targets=hat,eyewear.")
            key, text = item.split("=", 1)
            item = (key.strip(), parse_value(text))
        key, value = item
        _set_dotted(document, key, value)
    return document


def _set_dotted(document: dict, key: str, value) -> None:
    parts = key.split(".")
    head = parts[0]
    if head not in TOP_LEVEL:
        raise UserError(f"grid key {key!r} is unknown; keys start with one of {sorted(TOP_LEVEL)}.")
    if head == "backbones" and len(parts) == 4 and parts[2] == "stores":  # backbones.NAME.stores.SOURCE
        _backbone_entry(document, parts[1]).setdefault("stores", {})
        stores = _backbone_entry(document, parts[1])["stores"]
        if not isinstance(stores, dict):
            raise UserError(f"backbone {parts[1]!r} has stores = {stores!r}; it must be a table source -> path.")
        stores[parts[3]] = str(value).strip()
        return
    if head == "backbones":
        if len(parts) != 3:
            raise UserError(f"grid key {key!r} must read backbones.NAME.KEY, e.g. backbones.biased.store=PATH.")
        _backbone_entry(document, parts[1])[parts[2]] = value
        return
    if head == "subsets":
        if len(parts) != 3:
            raise UserError(f"grid key {key!r} must read subsets.WHICH.KEY (WHICH: an index, a kind or *).")
        blocks = document.get("subsets", [])
        chosen = [b for i, b in enumerate(blocks) if parts[1] in ("*", str(i), b.get("kind"))]
        if not chosen:
            raise UserError(f"grid key {key!r} matches no subset block; the blocks are "
                            f"{[b.get('kind') for b in blocks]} (address them by index, kind or *).")
        for block in chosen:
            block[parts[2]] = value
        return
    target = document.setdefault(head, {})
    for part in parts[1:-1]:
        target = target.setdefault(part, {})
    if len(parts) < 2:
        raise UserError(f"grid key {key!r} names a whole section; set one of its keys, e.g. {head}.KEY=VALUE.")
    target[parts[-1]] = value


def _backbone_entry(document: dict, name: str) -> dict:
    """The ``[[backbones]]`` entry called ``name`` (added when the grid has none)."""
    entries = document.setdefault("backbones", [])
    match = [b for b in entries if isinstance(b, dict) and b.get("name") == name]
    if not match:
        match = [{"name": name}]
        entries.append(match[0])
    return match[0]


def load_grid(source: str | Path, *, overrides=(), backbones=None) -> Grid:
    """Read a grid (preset name or TOML path), apply ``overrides``, validate every key.

    Parameters
    ----------
    source : str or path
        A preset name (``demo``, ``wr-correlation``, ...) or a TOML file.
    overrides : iterable of ``"key=value"`` or ``(key, value)``
        Dotted-key overrides (module docstring).
    backbones : iterable of str, optional
        Keep only these backbone names (in the grid's order).
    """
    path, document = read_document(source)
    return build_grid(apply_overrides(document, overrides), source=str(path), only=backbones)


def read_document(source: str | Path) -> tuple[Path, dict]:
    """The grid file of ``source`` (a path or a preset name) and its parsed TOML."""
    path = grid_path(source)
    try:
        return path, tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"grid {path} is not valid TOML ({exc}); fix the file.") from None


def grid_kind(document: dict) -> str | None:
    """``grid.kind`` of a raw document (None: a grid of cells; ``"geography"``: bases with a store per source)."""
    head = document.get("grid")
    return head.get("kind") if isinstance(head, dict) else None


def build_grid(document: dict, *, source: str = "", only=None) -> Grid:
    """Validate a raw grid document and build the :class:`Grid`.

    A document whose ``[grid]`` table has a ``kind`` is read by the runner registered for that
    kind (``kind = "geography"``: the domain-mix runner, :mod:`analyze.geography.grid`).
    """
    kind = grid_kind(document)
    if kind is not None:  # a grid of one experiment's own kind, read by the runner that runs it
        readers = {RUNNERS[n].grid_kind: RUNNERS[n] for n in RUNNERS if getattr(RUNNERS[n], "grid_kind", None)}
        if kind not in readers:
            raise UserError(f"grid.kind = {kind!r} is unknown; leave it out for a grid of cells or write one of "
                            f"{sorted(readers)}.")
        return readers[kind].build_grid(document, source=source, only=only)
    check_keys(document, TOP_LEVEL, "the grid file")
    for section, keys in SECTION_KEYS.items():
        check_keys(document.get(section, {}), keys, f"[{section}]")
    head = document.get("grid", {})
    runners = tuple(_as_list(head.get("runners", ["probe"])))
    for runner in runners:
        if runner not in CELL_RUNNERS:
            raise UserError(f"runner {runner!r} is unknown; grid.runners takes {list(CELL_RUNNERS)}.")
    chunk = head.get("chunk_size", DEFAULT_CHUNK_SIZE)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise UserError(f"grid.chunk_size must be a positive integer, got {chunk!r}.")
    targets, sensitive = _check_attributes(head)
    cross_dataset = head.get("cross_dataset", False)
    if not isinstance(cross_dataset, bool):
        raise UserError(f"grid.cross_dataset must be true or false, got {cross_dataset!r}; set it to true only when "
                        "the bases are meant to be compared across datasets.")
    grid = Grid(
        name=str(head.get("name", Path(source).stem or "grid")), description=str(head.get("description", "")),
        targets=targets, sensitive=sensitive,
        runners=runners, chunk_size=chunk, data=_expand_paths(dict(document.get("data", {}))),
        backbones=_backbones(document.get("backbones", []), only),
        subsets=_subsets(document.get("subsets", []), {b.get("name") for b in document.get("backbones", [])}),
        probe=dict(document.get("probe", {})), finetune=_expand_paths(dict(document.get("finetune", {}))),
        source=source, cross_dataset=cross_dataset)
    if not grid.runners:
        raise UserError(f"grid.runners is empty; list at least one of {list(CELL_RUNNERS)}.")
    if not expand_specs(grid):
        raise UserError("the grid expands to no cells; check its [[subsets]] blocks and their backbones lists.")
    return grid


def _check_attributes(head: dict) -> tuple[tuple[str, ...], str | None]:
    """``grid.targets`` (attribute names) and ``grid.sensitive`` (one name), type-checked."""
    sensitive = head.get("sensitive")
    if sensitive is not None and (not isinstance(sensitive, str) or not sensitive.strip()):
        raise UserError(f"grid.sensitive = {sensitive!r} must be one attribute name, e.g. sensitive = \"dark_skin\" "
                        "(a grid compares groups of one sensitive attribute).")
    if "targets" not in head:
        return (), sensitive
    targets = _as_list(head["targets"])
    if not targets:
        raise UserError("grid.targets is empty; list at least one target attribute, e.g. targets = [\"hat\"].")
    if not all(isinstance(t, str) and t.strip() for t in targets):
        raise UserError(f"grid.targets must list attribute names, got {head['targets']!r}; "
                        "write e.g. targets = [\"hat\", \"eyewear\"].")
    return tuple(targets), sensitive


def check_keys(table, allowed: set, where: str) -> None:
    """One sentence naming the first unknown key of a grid table (or a table that is not one)."""
    if not isinstance(table, dict):
        raise UserError(f"{where} must be a table of keys, got {type(table).__name__}; check the grid file.")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise UserError(f"grid key {unknown[0]!r} in {where} is unknown; the keys there are {sorted(allowed)}.")


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def expand_path(path) -> str:
    """``{work}`` in a path -> the work folder."""
    return str(path).replace("{work}", str(work_dir()))


def _expand_paths(table: dict) -> dict:
    """``{work}`` in path-valued keys -> the work folder."""
    return {k: expand_path(v) if k in PATH_KEYS and v is not None else v for k, v in table.items()}


def _backbones(entries, only) -> tuple[GridBackbone, ...]:
    if not isinstance(entries, list) or not entries:
        raise UserError("the grid has no [[backbones]]; add at least one with name, base_kind and store or base.")
    built, names = [], set()
    for entry in entries:
        check_keys(entry, BACKBONE_KEYS, f"[[backbones]] {entry.get('name', '?')!r}")
        if "name" not in entry or "base_kind" not in entry:
            name = entry.get("name", "?")
            raise UserError(f"backbone {name!r} needs a name and a base_kind (biased, control, scratch, imagenet, "
                            "...); "
                            f"set e.g. backbones.{name}.base_kind=control.")
        if entry["name"] in names:
            raise UserError(f"backbone name {entry['name']!r} appears twice in the grid; "
                            "give each backbone its own name.")
        names.add(entry["name"])
        built.append(GridBackbone(**_expand_paths({k: (str(v) if v is not None else None) for k, v in entry.items()})))
    if only:
        only = list(only)
        missing = sorted(set(only) - names)
        if missing:
            raise UserError(f"backbone {missing[0]!r} is not in the grid; choose from {sorted(names)}.")
        built = [b for b in built if b.name in only]
    return tuple(built)


def _subsets(blocks, names: set) -> tuple[dict, ...]:
    if not isinstance(blocks, list) or not blocks:
        raise UserError("the grid has no [[subsets]] block; add one with kind = \"correlation\" (or another kind).")
    checked = []
    for i, block in enumerate(blocks):
        kind = block.get("kind") if isinstance(block, dict) else None
        if kind not in KIND_KEYS:
            raise UserError(f"subset block {i} has kind {kind!r}; use one of {sorted(KIND_KEYS)}.")
        check_keys(block, KIND_KEYS[kind] | COMMON_SUBSET_KEYS, f"[[subsets]] block {i} ({kind})")
        unknown = sorted(set(map(str, _as_list(block.get("backbones", [])))) - names)
        if unknown:
            raise UserError(f"subset block {i} names backbone {unknown[0]!r}, which the grid does not define; "
                            f"choose from {sorted(names)}.")
        _check_values(block, i, kind)
        checked.append(dict(block))
    return tuple(checked)


def is_number(value) -> bool:
    """A real number (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_whole(value) -> bool:
    """A whole number (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


# keys whose values are lists of numbers (levels, shares, ...), checked when a block is read
NUMBER_LISTS = ("levels", "p", "shares")


def _check_values(block: dict, index: int, kind: str) -> None:
    """Type-check the values of subset block ``index``: seeds, sizes and the kind's value lists."""
    where = f"in subset block {index} ({kind})"
    if "seeds" in block:
        seeds = block["seeds"]
        count = is_whole(seeds) and seeds >= 1
        listed = isinstance(seeds, list) and seeds and all(is_whole(s) and s >= 0 for s in seeds)
        if not (count or listed):
            whole = is_whole(seeds) or (isinstance(seeds, list) and seeds and all(is_whole(s) for s in seeds))
            if whole:  # whole numbers, but a count below 1 or a negative seed
                raise UserError(f"seeds = {seeds!r} {where} is out of range: a count must be at least 1 and a "
                                "listed seed at least 0; write e.g. seeds = 3 (seeds 0, 1, 2) or seeds = [0, 7].")
            raise UserError(f"seeds = {seeds!r} {where} is not a count or a list of whole-number seeds; "
                            "write e.g. seeds = 3 (seeds 0, 1, 2) or seeds = [0, 7].")
    for key in NUMBER_LISTS:
        if key in block:
            values = _as_list(block[key])
            if not values:
                raise UserError(f"{key} = {block[key]!r} {where} is empty; list at least one value, "
                                f"e.g. {key} = [0.5].")
            if not all(is_number(v) for v in values):
                raise UserError(f"{key} = {block[key]!r} {where} must list numbers, e.g. {key} = [0.0, 0.5, 1.0].")
    if "n" in block:
        sizes = _as_list(block["n"])
        if not sizes:
            raise UserError(f"n = {block['n']!r} {where} is empty; list at least one training size, e.g. n = [128].")
        if not all(v == "all" or is_whole(v) for v in sizes):
            raise UserError(f"n = {block['n']!r} {where} must list whole numbers or 'all', e.g. n = [128, \"all\"].")
        small = [v for v in sizes if v != "all" and v < 1]
        if small:
            raise UserError(f"n = {block['n']!r} {where} lists the training size {small[0]}, but a size must be "
                            f"positive (at least 1) or 'all'; write e.g. n = [{abs(small[0]) or 128}].")


# -- expansion -----------------------------------------------------------------------------


def _seeds(block: dict) -> list[int]:
    """A count ``k`` means seeds 0 .. k-1; a list is taken as is (values checked by :func:`_check_values`)."""
    seeds = block.get("seeds", [0])
    return list(range(seeds)) if is_whole(seeds) else list(_as_list(seeds))


def _sizes(block: dict, *, default) -> list[int | None]:
    """``n`` values; ``"all"`` means the whole training part (None)."""
    values = _as_list(block.get("n", default))
    return [None if v == "all" else v for v in values]


def _required(block: dict, key: str, kind: str) -> list:
    if key not in block:
        raise UserError(f"a {kind} subset block needs {key!r}; "
                        f"add it to the block (or the override `subsets.{kind}.{key}=...`).")
    return _as_list(block[key])


def expand_block(block: dict, *, targets, sensitive) -> list:
    """Subset specs of one block: n (outer), target, the kind's values, seed (inner)."""
    kind = block["kind"]
    seeds, common = _seeds(block), {k: block[k] for k in ("pool", "val_fraction") if k in block}
    targets = [str(t) for t in _as_list(block.get("targets", targets))]
    if kind != "underrepresentation" and (not targets or not sensitive):
        raise UserError(f"the {kind} subsets need `grid.targets` and `grid.sensitive`; give both.")
    specs = []
    if kind == "correlation":
        extra = {"size": block["size"]} if "size" in block else {}
        for n in _sizes(block, default=None):
            specs += [Correlation(t, sensitive, lv, n=n, seed=s, **extra, **common)
                      for t in targets for lv in _required(block, "levels", kind) for s in seeds]
    elif kind == "subselection":
        extra = {k: block[k] for k in ("base_n", "base_level") if k in block}
        specs += [SubSelection(t, sensitive, lv, seed=s, **extra, **common)
                  for t in targets for lv in _required(block, "levels", kind) for s in seeds]
    elif kind == "natural":
        for n in _sizes(block, default="all"):
            specs += [Natural(t, sensitive, n=n, seed=s, **common) for t in targets for s in seeds]
    elif kind == "skew":
        for n in _sizes(block, default=None):
            specs += [Skew(t, sensitive, p, n=n, seed=s, **common)
                      for t in targets for p in _required(block, "p", kind) for s in seeds]
    else:
        extra = {"pos_prop": block["pos_prop"]} if "pos_prop" in block else {}
        pairs = _required(block, "pairs", kind)
        if not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs):
            raise UserError(f"pairs must be a list of [A, B] attribute pairs, got {pairs!r}.")
        for n in _sizes(block, default=None):
            specs += [Underrepresentation(str(a), str(b), share, n=n, seed=s, **extra, **common)
                      for a, b in pairs for share in _required(block, "shares", kind) for s in seeds]
    return specs


def expand_specs(grid: Grid, backbone: str | None = None) -> list:
    """Every subset spec of the grid, blocks in order, duplicates dropped (first kept).

    With ``backbone``, only the blocks that apply to it (no ``backbones`` list, or one that
    names it).
    """
    if grid.experiment is not None:  # a geography grid: its own cells (shares x seeds), the same for every base
        return grid.experiment.specs()
    seen, specs = set(), []
    for block in grid.subsets:
        if backbone is not None and "backbones" in block and backbone not in _as_list(block["backbones"]):
            continue
        for spec in expand_block(block, targets=grid.targets, sensitive=grid.sensitive):
            if spec not in seen:
                seen.add(spec)
                specs.append(spec)
    return specs
