"""Concept sets for embedding association tests: named sets of images, loaded offline [R].

A :class:`ConceptSets` maps a concept name (``"hat"``, ``"dark"``, ``"car+man"``) to a uint8
image array of shape ``(k, H, W, 3)`` and the ids of those ``k`` images. Two sources:

* :func:`load_concept_folders` — a folder per concept, ``<root>/<concept>/*.png|jpg|jpeg``
  (like the canonical sets of Ranjit et al. 2023, docs/science.md section 11). Files are read
  in sorted order, never downloaded, and must stay inside ``root``.
* :func:`avatar_concept_sets` — sets drawn from the embedded avatar dataset, so everything runs
  offline. Names follow one vocabulary (``t`` is an accessory / target such as ``hat``; the
  groups are the two values of the sensitive attribute ``dark_skin``: ``dark`` = 1,
  ``light`` = 0):

  ==============  =============================================================  ==========
  name            images                                                         size
  ==============  =============================================================  ==========
  ``t``           avatars with ``t``, half dark and half light                   ``per_set``
  ``no_t``        avatars without ``t``, half dark and half light                ``per_set``
  ``t+dark``      dark avatars with ``t`` (concept pair: object with group a)    ``per_set``
  ``t+light``     light avatars with ``t`` (concept pair: object with group b)   ``per_set``
  ``dark``        dark avatars with none of the accessories named in the request ``per_set``
  ``light``       light avatars with none of the accessories named in the request ``per_set``
  ``neutral``     avatars with none of the accessories named in the request, half ``per_set``
                  dark and half light (the reference object, the paper's stop sign)
  ``random``      any avatars, half dark and half light (the paper's random set)  ``per_set``
  ==============  =============================================================  ==========

  All requested sets are pairwise **disjoint** (no avatar is in two sets), and the selection
  is a pure function of (cache, names, ``per_set``, ``split``, ``seed``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from extract.datasets.avatars import TARGETS, AvatarAdapter
from extract.datasets.base import SPLITS, load_rgb, safe_join
from extract.errors import UserError

FOLDER_EXTENSIONS = (".png", ".jpg", ".jpeg")
FOLDER_LAYOUT = "<root>/<concept>/<image>.png|.jpg|.jpeg, one sub-folder per concept"
#: Group set names of the avatar sets, keyed by the value of the sensitive attribute.
GROUPS = {1: "dark", 0: "light"}
SENSITIVE = "dark_skin"
#: Reference sets of Ranjit et al.: a neutral object (their stop sign) and a random set.
REFERENCE_SETS = ("neutral", "random")
DEFAULT_PER_SET = 24
_PAIR = re.compile(r"^(?P<target>[a-z_]+)\+(?P<group>dark|light)$")


@dataclass(frozen=True)
class ConceptSets:
    """Named image sets: ``images[name]`` is uint8 ``(k, H, W, 3)``, ``ids[name]`` its ``k`` ids.

    ``source`` records where the sets came from (JSON-serialisable), for provenance.
    """

    images: Mapping[str, np.ndarray]
    ids: Mapping[str, tuple[str, ...]]
    source: dict = field(default_factory=dict)

    def __post_init__(self):
        if set(self.images) != set(self.ids):
            raise UserError("ConceptSets needs the same names in images and ids; build it with "
                            "load_concept_folders or avatar_concept_sets.")
        for name, array in self.images.items():
            if not (isinstance(array, np.ndarray) and array.dtype == np.uint8 and array.ndim == 4
                    and array.shape[-1] == 3):
                raise UserError(f"concept set {name!r} is not a uint8 (k, H, W, 3) image array; "
                                "convert its images to RGB uint8.")
            if len(array) != len(self.ids[name]):
                raise UserError(f"concept set {name!r} has {len(array)} images but "
                                f"{len(self.ids[name])} ids; give one id per image.")

    @property
    def names(self) -> list[str]:
        """Concept names, sorted."""
        return sorted(self.images)

    def sizes(self) -> dict[str, int]:
        """Number of images per concept."""
        return {name: len(self.images[name]) for name in self.names}

    def __contains__(self, name: object) -> bool:
        return name in self.images

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.images:
            raise UserError(f"concept set {name!r} does not exist; the available sets are "
                            f"{self.names}.")
        return self.images[name]


# -- folder-per-concept layout ---------------------------------------------------------------
def _layout_error(problem: str) -> UserError:
    return UserError(f"{problem}; concept folders must be laid out as {FOLDER_LAYOUT} "
                     "(nothing is downloaded: point at a local copy).")


def _is_visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _concept_files(root: Path, concept: str, extensions: Sequence[str]) -> list[Path]:
    """Sorted image files of one concept folder, each checked to stay inside ``root``."""
    folder = safe_join(root, concept)
    if not folder.is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir() and _is_visible(p))
        raise _layout_error(f"the concept folder {folder} does not exist (found {found})")
    resolved_root = root.resolve()
    files = []
    for path in sorted(folder.iterdir()):
        if not (_is_visible(path) and path.suffix.lower() in extensions and path.is_file()):
            continue
        if not path.resolve().is_relative_to(resolved_root):
            raise UserError(f"the image {path} links outside the concept root {root}; copy the "
                            "file into the root instead of linking to it.")
        files.append(path)
    if not files:
        raise _layout_error(f"the concept folder {folder} holds no {'/'.join(extensions)} image")
    return files


def load_concept_folders(root: str | Path, *, names: Iterable[str] | None = None,
                         image_size: int = 224,
                         extensions: Sequence[str] = FOLDER_EXTENSIONS) -> ConceptSets:
    """Load concept sets from ``<root>/<concept>/*.png|jpg|jpeg`` without downloading anything.

    Every image is resized so that its shorter side is ``image_size`` and centre-cropped to a
    square (PIL ``ImageOps.fit``, bicubic), so one concept's images stack into one array; the
    backbone's own preprocessing runs later, at embedding time.

    Parameters
    ----------
    root : path
        Folder with one sub-folder per concept (hidden entries are skipped).
    names : iterable of str, optional
        Concepts to load; default every sub-folder.
    image_size : int, default 224
        Side of the square images the sets hold.
    extensions : sequence of str
        File endings read as images, case-insensitive.

    Returns
    -------
    ConceptSets
        ``ids`` are ``"<concept>/<file name>"``, in sorted file order.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise _layout_error(f"the concept root {root} is not a folder")
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) \
            or image_size < 8:
        raise UserError(f"image_size={image_size!r} is invalid; pass an integer of at least 8.")
    extensions = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    if names is None:
        names = sorted(p.name for p in root.iterdir() if p.is_dir() and _is_visible(p))
        if not names:
            raise _layout_error(f"the concept root {root} has no concept folder")
    images, ids = {}, {}
    for concept in dict.fromkeys(names):
        files = _concept_files(root, concept, extensions)
        images[concept] = np.stack([
            np.asarray(ImageOps.fit(load_rgb(path), (image_size, image_size),
                                    method=Image.Resampling.BICUBIC), dtype=np.uint8)
            for path in files])
        ids[concept] = tuple(f"{concept}/{path.name}" for path in files)
    return ConceptSets(images=images, ids=ids,
                       source={"kind": "folder", "root": str(root), "image_size": image_size})


# -- sets drawn from the avatar dataset ------------------------------------------------------
@dataclass(frozen=True)
class _AvatarSet:
    """What one avatar set name asks for: rows with ``target == has_target`` (or with none of
    the ``exclude`` targets), from the groups ``groups`` in equal shares."""

    name: str
    target: str | None
    has_target: bool
    groups: tuple[int, ...]
    order: tuple[int, str]
    any_row: bool = False


def avatar_set_names(targets: Iterable[str]) -> list[str]:
    """The avatar set names of the given targets and the two groups (see the module docstring).

    The reference sets :data:`REFERENCE_SETS` (``neutral``, ``random``) are valid names too but
    are not listed here; :func:`analyze.association.groups.comparison_groups` asks for them.
    """
    names = ["dark", "light"]
    for target in targets:
        names += [target, f"no_{target}", f"{target}+dark", f"{target}+light"]
    return names


def _parse_avatar_name(name: str) -> _AvatarSet:
    """Map one set name to its selection rule; unknown names are a :class:`UserError`."""
    group_value = {group: value for value, group in GROUPS.items()}
    pair = _PAIR.match(name)
    if name in group_value:
        return _AvatarSet(name, None, False, (group_value[name],), (0, name))
    if name in REFERENCE_SETS:
        # Drawn after every other set, so adding them never changes the other sets' draws.
        return _AvatarSet(name, None, False, (1, 0), (4 + REFERENCE_SETS.index(name), name),
                          any_row=name == "random")
    if pair and pair["target"] in TARGETS:
        return _AvatarSet(name, pair["target"], True, (group_value[pair["group"]],),
                          (1, name))
    if name.startswith("no_") and name[3:] in TARGETS:
        return _AvatarSet(name, name[3:], False, (1, 0), (3, name))
    if name in TARGETS:
        return _AvatarSet(name, name, True, (1, 0), (2, name))
    raise UserError(f"avatar concept set {name!r} is unknown; use dark, light, neutral, random, "
                    f"or for a target t in {list(TARGETS)}: t, no_t, t+dark, t+light.")


def _check_per_set(per_set) -> int:
    if isinstance(per_set, bool) or not isinstance(per_set, (int, np.integer)) or per_set < 2 \
            or per_set % 2:
        raise UserError(f"per_set={per_set!r} is invalid; pass an even integer of at least 2 "
                        "(balanced sets take half their images from each group).")
    return int(per_set)


class _ShortPool(Exception):
    """A set could not be filled: which set and group, how many were needed and left."""

    def __init__(self, name, group, needed, available):
        super().__init__(name)
        self.name, self.group, self.needed, self.available = name, group, needed, available


def _select_rows(meta, rules: list[_AvatarSet], per_set: int, seed: int) -> dict[str, np.ndarray]:
    """Draw each set's rows without replacement, never reusing a row; raises when short."""
    rng = np.random.default_rng(seed)
    used = np.zeros(len(meta), dtype=bool)
    named_targets = sorted({rule.target for rule in rules if rule.target is not None})
    has_any = (meta[named_targets].to_numpy() == 1).any(axis=1) if named_targets \
        else np.zeros(len(meta), dtype=bool)
    sensitive = meta[SENSITIVE].to_numpy()
    rows = {}
    for rule in sorted(rules, key=lambda r: r.order):  # fixed order: names' order is irrelevant
        if rule.any_row:
            eligible = np.ones(len(meta), dtype=bool)
        elif rule.target is None:
            eligible = ~has_any
        else:
            eligible = (meta[rule.target].to_numpy() == 1) == rule.has_target
        share = per_set // len(rule.groups)
        picked = []
        for group in rule.groups:
            pool = np.flatnonzero(eligible & (sensitive == group) & ~used)
            if len(pool) < share:
                raise _ShortPool(rule.name, GROUPS[group], share, len(pool))
            chosen = np.sort(rng.choice(pool, size=share, replace=False))
            used[chosen] = True
            picked.append(chosen)
        rows[rule.name] = np.sort(np.concatenate(picked))
    return rows


def _largest_feasible(meta, rules, per_set: int, seed: int) -> int:
    """Largest even ``per_set`` below the requested one for which every draw succeeds."""
    for candidate in range(per_set - 2, 1, -2):
        try:
            _select_rows(meta, rules, candidate, seed)
            return candidate
        except _ShortPool:
            continue
    return 0


def avatar_concept_sets(cache: str | Path | AvatarAdapter, names: Iterable[str], *,
                        per_set: int = DEFAULT_PER_SET, split: str | None = "test",
                        seed: int = 0) -> ConceptSets:
    """Draw the named concept sets from an avatar cache (see the module docstring).

    Parameters
    ----------
    cache : path or AvatarAdapter
        An avatar cache written by ``render_dataset``.
    names : iterable of str
        Set names from :func:`avatar_set_names`' vocabulary, e.g. ``["hat", "no_hat", "dark",
        "light", "hat+dark", "hat+light"]``.
    per_set : int, default 24
        Images per set, even; balanced sets take ``per_set / 2`` from each group.
    split : {"train", "val", "test"} or None, default "test"
        Draw only from this split (keeps the sets apart from finetuning images); None = all.
    seed : int, default 0
        Seed of the selection.

    Returns
    -------
    ConceptSets
        ``ids`` are avatar ``image_id`` values, in cache order within each set.
    """
    adapter = cache if isinstance(cache, AvatarAdapter) else AvatarAdapter(cache)
    per_set = _check_per_set(per_set)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed={seed!r} is invalid; pass a non-negative integer.")
    if split is not None and split not in SPLITS:
        raise UserError(f"split={split!r} is unknown; pass one of {list(SPLITS)} or None for all.")
    rules = [_parse_avatar_name(name) for name in dict.fromkeys(names)]
    if not rules:
        raise UserError("no avatar concept set was requested; name at least one set.")
    meta = adapter.metadata()
    positions = np.arange(len(meta)) if split is None else np.flatnonzero(meta["split"] == split)
    local = meta.iloc[positions].reset_index(drop=True)
    try:
        rows = _select_rows(local, rules, per_set, seed)
    except _ShortPool as short:
        largest = _largest_feasible(local, rules, per_set, seed)
        fix = f"use per_set={largest} or render a larger cache" if largest \
            else "render a larger cache or request fewer sets"
        raise UserError(
            f"avatar set {short.name!r} needs {short.needed} {short.group} avatars but only "
            f"{short.available} remain in split {split or 'all'} of {adapter.root}; {fix}.") from None
    images = {name: adapter.read_images(positions[picked]) for name, picked in rows.items()}
    ids = {name: tuple(local["image_id"].iloc[picked]) for name, picked in rows.items()}
    return ConceptSets(images=images, ids=ids, source={
        "kind": "avatars", "cache": str(adapter.root), "per_set": per_set, "split": split,
        "seed": int(seed)})
