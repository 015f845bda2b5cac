"""A set of bases from one recipe file: biased, control and scratch bases that share data,
architecture and training recipe and differ only in the pretraining label.

The recipe is TOML (see ``data/recipes/avatars-bases.toml``)::

    [data]    dataset, and either root (the dataset folder, or an avatar cache file; any dataset)
              or cache (avatars: file name inside cache_dir, rendered when missing), options
              (adapter options, e.g. { manifest = "labels.csv" }), sensitive (the sensitive
              attribute; avatar caches name their own), n, size, seed, preset, signal_sample,
              disjoint_from (globs inside cache_dir of caches that must share no image)
    [model]   arch, arch_kwargs, image_size, init (a registry backbone whose local weights every
              trained base starts from, e.g. "efficientnet_lite0.imagenet"; the scratch base
              stays a seeded random init of the same architecture)
    [train]   epochs, batch_size, lr, weight_decay, schedule, val_fraction, seed,
              max_control_phi (largest |phi| allowed between a control label and the
              sensitive attribute in the pretraining rows), factors and factor_weight (avatars:
              a shared generalist task of nuisance factors, see extract.datasets.avatars.factors),
              max_factor_dependence (largest bias-corrected Cramer's V allowed between a
              factor label and any attribute of the pretraining rows), freeze_bn (keep
              BatchNorm statistics fixed while training; see extract.pretrain.train),
              temperature and projection_dim (contrastive bases: NT-Xent temperature,
              default 0.5, and projection head size, default 128)
    [[bases]] name, role ("biased" | "control" | "scratch" | "selfsupervised"),
              attributes (biased and control only), objective ("supervised", the default of
              biased and control bases, or "simclr", the only objective of a self-supervised
              base; see extract.pretrain.contrastive), augment (simclr only: "color", the
              default, or "no_color"; see extract.pretrain.augment)

A self-supervised base shares the data, model, starting point and [train] settings (epochs,
batch size, learning rate, schedule, freeze_bn, seed) of the supervised bases of its recipe and
learns no label: two augmented views of each image, a projection head and the NT-Xent loss.
Every checkpoint records ``role``, ``objective`` (None for scratch) and ``augment`` ("hflip"
for supervised bases, the named set for contrastive ones, None for scratch).

Keeping pretraining images apart: :func:`run_recipe` renders the pretraining cache itself
(its own seed, its own file, e.g. ``work/avatars/pretrain-avatars-...-seed1000.h5``) and,
before training, checks with :func:`shared_images` that no image of it occurs in any cache
matched by ``disjoint_from`` (by default every ``avatars-*.h5``, the names
``biastransfer avatars render`` gives finetuning caches). Every checkpoint records the
pretraining cache's manifest hash, the sha256 of its rows and the result of that check.

Roles are checked for every dataset before any base is trained: a biased base must pretrain
on the sensitive attribute, and each control label must be nearly independent of it
(``|phi| <= max_control_phi`` over the pretraining rows where both are known); the measured
phi of each control is recorded in its checkpoint (``control_phi``). With generalist
``factors``, every base (biased and controls alike) also learns the same many-class factor
task; before training, :func:`check_factors` measures each factor label's dependence on
every attribute of the pretraining rows (independent by construction; a larger value than
``max_factor_dependence`` is an error) and each checkpoint records it (``factor_dependence``),
so no pretraining label can determine a finetuning target.

Bases whose checkpoint exists are skipped (resume-friendly) when the checkpoint was made
from the same recipe entry; a checkpoint from a different entry is an error unless
``overwrite``.
"""

from __future__ import annotations

import glob
import hashlib
import json
import re
import time
from pathlib import Path

import numpy as np

from extract.datasets import get_adapter
from extract.errors import UserError
from extract.io import write_text
from extract.paths import work_dir
from extract.pretrain.augment import DEFAULT_AUGMENT, resolve_augment
from extract.pretrain.config import PretrainConfig, PretrainModel
from extract.pretrain.contrastive import OBJECTIVES, pretrain_contrastive
from extract.pretrain.train import pretrain_base, write_base, write_scratch_base
from extract.store.reader import check_output_writable

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    tomllib = None

ROLES = ("biased", "control", "scratch", "selfsupervised")
SUPERVISED_ROLES = ("biased", "control")
SECTIONS = {
    "data": {"dataset", "cache", "root", "options", "sensitive", "n", "size", "seed", "preset", "signal_sample",
             "disjoint_from"},
    "model": {"arch", "arch_kwargs", "image_size", "init"},
    "train": {"epochs", "batch_size", "lr", "weight_decay", "schedule", "val_fraction", "seed", "max_control_phi",
              "factors", "factor_weight", "max_factor_dependence", "freeze_bn", "temperature", "projection_dim"},
}
BASE_KEYS = {"name", "role", "attributes", "description", "objective", "augment"}
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
SUMMARY_FILE = "bases.json"
MAX_FACTOR_DEPENDENCE = 0.1  # default limit of a generalist factor's Cramer's V with any attribute


# -- the recipe file --------------------------------------------------------------------------
def load_recipe(path: str | Path) -> dict:
    """Read and check a recipe file; return it as a dict (sections ``data``, ``model``,
    ``train`` and the list ``bases``)."""
    path = Path(path).expanduser()
    if tomllib is None:
        raise UserError("reading a TOML recipe needs Python 3.11 or newer (tomllib); upgrade Python.")
    try:
        with open(path, "rb") as fh:
            recipe = tomllib.load(fh)
    except FileNotFoundError:
        raise UserError(f"recipe file {path} does not exist; pass e.g. data/recipes/avatars-bases.toml.") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"recipe file {path} is not valid TOML ({exc}); fix the syntax.") from None
    return check_recipe(recipe, source=str(path))


def check_recipe(recipe: dict, *, source: str = "the recipe") -> dict:
    """Validate the sections, keys, roles and base names of a recipe dict."""
    unknown = sorted(set(recipe) - set(SECTIONS) - {"bases", "recipe"})
    if unknown:
        raise UserError(f"{source} has unknown section(s) {unknown}; use {sorted(SECTIONS)} and [[bases]].")
    for section, keys in SECTIONS.items():
        extra = sorted(set(recipe.get(section, {})) - keys)
        if extra:
            raise UserError(f"{source} [{section}] has unknown key(s) {extra}; allowed: {sorted(keys)}.")
    data = recipe.get("data", {})
    if "dataset" not in data:
        raise UserError(f"{source} [data] lacks 'dataset'; name the dataset adapter, e.g. dataset = \"manifest\".")
    if "root" in data and "cache" in data:
        raise UserError(f"{source} [data] sets both 'root' and 'cache'; keep root (the dataset folder or cache file) "
                        "or cache (an avatar cache rendered into the cache folder).")
    if "root" not in data and "cache" not in data:
        raise UserError(f"{source} [data] lacks 'root' (the dataset folder) or 'cache' (an avatar cache file name); "
                        "name the pretraining data.")
    if "sensitive" in data and not (isinstance(data["sensitive"], str) and data["sensitive"].strip()):
        raise UserError(f"{source} [data] sensitive = {data['sensitive']!r} must be one attribute name, "
                        "e.g. sensitive = \"Male\".")
    if not isinstance(data.get("options", {}), dict):
        raise UserError(f"{source} [data] options must be a table of adapter options, e.g. "
                        "options = { manifest = \"labels.csv\" }.")
    bases = recipe.get("bases") or []
    if not bases:
        raise UserError(f"{source} defines no [[bases]]; add at least one base with name, role and attributes.")
    names = [b.get("name") for b in bases]
    for base in bases:
        _check_base_entry(base, source)
    if len(set(names)) != len(names):
        raise UserError(f"{source} repeats a base name among {names}; give each base its own name.")
    return recipe


def _check_base_entry(base: dict, source: str) -> None:
    extra = sorted(set(base) - BASE_KEYS)
    name = base.get("name")
    if extra:
        raise UserError(f"{source} base {name!r} has unknown key(s) {extra}; allowed: {sorted(BASE_KEYS)}.")
    if not isinstance(name, str) or not SAFE_NAME.match(name):
        raise UserError(f"{source} has a base name {name!r} that is not a plain file name; use letters, digits, - _ . +.")
    if base.get("role") not in ROLES:
        raise UserError(f"{source} base {name!r} has role {base.get('role')!r}; choose one of {list(ROLES)}.")
    attributes = base.get("attributes", [])
    if base["role"] == "scratch" and attributes:
        raise UserError(f"{source} scratch base {name!r} lists attributes; a scratch base is not trained, drop them.")
    if base["role"] == "selfsupervised" and "attributes" in base:
        raise UserError(f"{source} self-supervised base {name!r} lists `attributes`; a contrastive base learns no label, "
                        "drop them.")
    if base["role"] in SUPERVISED_ROLES and not (isinstance(attributes, list) and attributes):
        raise UserError(f"{source} base {name!r} needs a non-empty list of attributes to pretrain on.")
    _check_objective(base, source)


def base_objective(base: dict) -> str | None:
    """The training objective of a recipe entry: "simclr" for a self-supervised base,
    "supervised" (default) for biased and control bases, None for a scratch base."""
    if base.get("role") == "scratch":
        return None
    return base.get("objective", "simclr" if base.get("role") == "selfsupervised" else "supervised")


def base_augment(base: dict) -> str | None:
    """The augmentation of a trained base: the named set of a contrastive base (default
    :data:`extract.pretrain.augment.DEFAULT_AUGMENT`), "hflip" for a supervised one, None for scratch."""
    objective = base_objective(base)
    if objective == "simclr":
        return base.get("augment", DEFAULT_AUGMENT)
    return None if objective is None else "hflip"


def _check_objective(base: dict, source: str) -> None:
    name, role = base.get("name"), base["role"]
    if "objective" in base and base["objective"] not in OBJECTIVES:
        raise UserError(f"{source} base {name!r} has `objective` = {base['objective']!r}; choose one of {list(OBJECTIVES)}.")
    if role == "scratch" and ("objective" in base or "augment" in base):
        raise UserError(f"{source} scratch base {name!r} sets `objective` or `augment`; a scratch base is not trained, "
                        "drop them.")
    objective = base_objective(base)
    if role == "selfsupervised" and objective != "simclr":
        raise UserError(f"{source} self-supervised base {name!r} has `objective` = {objective!r}; set objective = "
                        "\"simclr\".")
    if role in SUPERVISED_ROLES and objective != "supervised":
        raise UserError(f"{source} {role} base {name!r} has `objective` = {objective!r}, but a {role} base learns its "
                        "attributes; drop objective, or use role = \"selfsupervised\" for a contrastive base.")
    if "augment" in base:
        if objective != "simclr":
            raise UserError(f"{source} base {name!r} sets `augment`, which only a contrastive (objective = \"simclr\") "
                            "base uses; drop it.")
        resolve_augment(base["augment"])


def entry_fingerprint(recipe: dict, base: dict) -> str:
    """sha256 of everything that determines one base: data, model, train and its entry."""
    entry = {k: v for k, v in base.items() if k != "description"}
    if entry.get("objective") == "supervised":
        del entry["objective"]  # the default, so that older recipes keep their fingerprints
    if base_objective(base) == "simclr":  # the settings in force, defaults included
        train = recipe.get("train", {})
        entry.update(objective="simclr", augment=base_augment(base),
                     temperature=train.get("temperature", PretrainConfig.temperature),
                     projection_dim=train.get("projection_dim", PretrainConfig.projection_dim))
    parts = {k: recipe.get(k, {}) for k in SECTIONS} | {"base": entry}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


# -- keeping pretraining images apart ---------------------------------------------------------
def image_digests(adapter) -> set[bytes]:
    """sha1 digests of every image's pixels (the adapter needs ``read_images``)."""
    images = adapter.read_images()
    return {hashlib.sha1(np.ascontiguousarray(img).tobytes()).digest() for img in images}


def shared_images(a, b) -> int:
    """Number of distinct images (identical pixels) that two avatar caches have in common.

    ``a`` and ``b`` are cache paths or adapters with ``read_images``. Caches of different
    image sizes share none by construction.
    """
    a = get_adapter("avatars", a) if isinstance(a, (str, Path)) else a
    b = get_adapter("avatars", b) if isinstance(b, (str, Path)) else b
    if tuple(a.read_images().shape[1:]) != tuple(b.read_images().shape[1:]):
        return 0
    return len(image_digests(a) & image_digests(b))


def check_disjoint(adapter, patterns: list[str], *, cache_dir: Path) -> list[dict]:
    """Compare the pretraining cache with every cache matching ``patterns`` in ``cache_dir``.

    Returns one record per compared cache (path, manifest hash, shared images = 0); any
    shared image is a :class:`UserError`.
    """
    own = Path(adapter.root).resolve()
    records = []
    for pattern in patterns:
        for match in sorted(glob.glob(str(cache_dir / pattern))):
            if Path(match).resolve() == own:
                continue
            other = get_adapter("avatars", match)
            shared = shared_images(adapter, other)
            if shared:
                raise UserError(f"the pretraining cache {own} shares {shared} image(s) with {match}; "
                                "render the pretraining cache with a seed no finetuning cache uses.")
            records.append({"path": str(match), "manifest_hash": other.manifest_hash(), "shared_images": 0})
    return records


def ensure_cache(data: dict, *, cache_dir: Path, workers, progress: bool) -> Path:
    """The pretraining data: ``root`` as given, or the avatar ``cache`` (rendered when missing,
    else checked against the recipe)."""
    if "root" in data or data["dataset"] != "avatars":
        path = Path(data.get("root", data.get("cache"))).expanduser()
        if not path.exists():
            raise UserError(f"the pretraining data {path} does not exist; point [data] root at a local copy "
                            "(only avatar caches named by cache are rendered by a recipe).")
        return path
    from extract.datasets.avatars import RenderSpec, render_dataset

    path = cache_dir / data["cache"]
    wanted = {k: data[k] for k in ("n", "size", "seed", "preset", "signal_sample") if k in data}
    if not path.exists():
        return render_dataset(path, spec=RenderSpec.from_mapping(wanted, where="[data]"), workers=workers,
                              progress=progress)
    have = get_adapter("avatars", path).generator
    differs = {k: (have.get(k), v) for k, v in wanted.items() if have.get(k) != v}
    if differs:
        raise UserError(f"the existing pretraining cache {path} was rendered with other settings {differs} (have, want); "
                        "delete it or name another cache in the recipe.")
    return path


# -- running ----------------------------------------------------------------------------------
def run_recipe(recipe_path: str | Path | dict, *, out_dir: str | Path, cache_dir: str | Path | None = None, workers=None,
               overwrite: bool = False, device: str = "auto", progress: bool = True) -> dict[str, Path]:
    """Build every base of a recipe; return ``{name: checkpoint path}``.

    Parameters
    ----------
    recipe_path : path or dict
        The TOML recipe, or a recipe dict as :func:`load_recipe` returns (e.g. a loaded
        recipe with a smaller ``n`` for a quick test).
    out_dir : path
        Folder of the checkpoints (``<name>.pt``) and of the summary ``bases.json``.
    cache_dir : path, optional
        Folder of the pretraining cache and of the caches it must not overlap;
        default ``work/avatars``.
    workers : int, optional
        Rendering processes when the cache is missing (default: all cores).
    overwrite : bool
        Retrain bases whose checkpoint exists.
    """
    started = time.perf_counter()
    if isinstance(recipe_path, dict):
        recipe = check_recipe(recipe_path)
        source = {"path": None, "sha256": hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()}
    else:
        recipe_path = Path(recipe_path).expanduser()
        recipe = load_recipe(recipe_path)
        source = {"path": str(recipe_path), "sha256": hashlib.sha256(recipe_path.read_bytes()).hexdigest()}
    out_dir = Path(out_dir).expanduser()
    check_output_writable(out_dir / SUMMARY_FILE)
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else work_dir() / "avatars"
    data, train = recipe["data"], dict(recipe.get("train", {}))
    max_phi = float(train.pop("max_control_phi", 0.1))
    max_dependence = float(train.pop("max_factor_dependence", MAX_FACTOR_DEPENDENCE))
    where = source["path"] or "the recipe"
    model = PretrainModel.from_mapping(recipe.get("model", {}), where=f"{where} [model]")
    settings = PretrainConfig.from_mapping(train, where=f"{where} [train]")
    cache = ensure_cache(data, cache_dir=cache_dir, workers=workers, progress=progress)
    adapter = get_adapter(data["dataset"], cache, **dict(data.get("options", {})))
    phis = check_roles(adapter, recipe["bases"], sensitive=data.get("sensitive"), max_phi=max_phi, source=where)
    dependence = check_factors(adapter, train.get("factors"), max_dependence=max_dependence) \
        if train.get("factors") else {}
    disjoint = check_disjoint(adapter, list(data.get("disjoint_from", [])), cache_dir=cache_dir) \
        if data["dataset"] == "avatars" else []
    common = {"recipe": source,
              "pretraining_cache": {"path": str(cache), "manifest_hash": adapter.manifest_hash()},
              "disjoint_from": disjoint, **({"factor_dependence": dependence} if dependence else {})}
    results, summary = {}, []
    for base in recipe["bases"]:
        path = out_dir / f"{base['name']}.pt"
        meta = {**common, "role": base["role"], "objective": base_objective(base), "augment": base_augment(base),
                "recipe_entry_sha256": entry_fingerprint(recipe, base),
                "description": base.get("description", ""),
                **({"control_phi": phis[base["name"]]} if base["name"] in phis else {})}
        t0 = time.perf_counter()
        skipped = not overwrite and _existing_matches(path, meta["recipe_entry_sha256"])
        if not skipped:
            _build_base(adapter, base, path, meta=meta, model=model, train=settings, device=device, progress=progress)
        results[base["name"]] = path
        summary.append(_summarise(path, base, skipped=skipped, seconds=time.perf_counter() - t0))
    _write_summary(out_dir / SUMMARY_FILE, source, summary, seconds=time.perf_counter() - started)
    return results


def _existing_matches(path: Path, fingerprint: str) -> bool:
    if not path.exists():
        return False
    from extract.backbones import load_checkpoint

    meta = load_checkpoint(path).extra.get("checkpoint_meta", {})
    if meta.get("recipe_entry_sha256") != fingerprint:
        raise UserError(f"the checkpoint {path} exists but was made from a different recipe entry; "
                        "pass `overwrite=True` to rebuild it or choose another `out_dir`.")
    return True


def _build_base(adapter, base, path, *, meta, model: PretrainModel, train: PretrainConfig, device, progress) -> None:
    if base["role"] == "scratch":
        image_size = model.image_size or int(min(adapter.open_image(0).size))
        write_scratch_base(path, arch=model.arch, arch_kwargs=model.arch_kwargs, image_size=image_size,
                           seed=train.seed, name=base["name"], meta=meta, init=model.init)
        return
    if base_objective(base) == "simclr":
        backbone, history = pretrain_contrastive(adapter, augment=base_augment(base), model=model, config=train,
                                                 device=device, progress=progress)
    else:
        backbone, history = pretrain_base(adapter, attributes=base["attributes"], model=model, config=train,
                                          device=device, progress=progress)
    write_base(path, backbone, history=history, name=base["name"], meta=meta)


def check_roles(adapter, bases: list[dict], *, sensitive: str | None = None, max_phi: float = 0.1,
                source: str = "the recipe") -> dict[str, dict[str, float]]:
    """Check every base's role against the sensitive attribute, before any base is trained.

    A biased base must pretrain on the sensitive attribute; a control must not, and each of
    its labels must have ``|phi| <= max_phi`` with it over the pretraining rows where both
    are known. ``sensitive`` defaults to the one an avatar cache names. Returns the measured
    phi of every control label, ``{base name: {attribute: phi}}``.
    """
    sensitive = sensitive or getattr(adapter, "sensitive_attribute", None)
    trained = [b for b in bases if b["role"] in SUPERVISED_ROLES]
    if sensitive is None:
        if trained:
            kind = "control" if any(b["role"] == "control" for b in trained) else "biased"
            raise UserError(f"{source} has {kind} bases but no sensitive attribute; set [data] sensitive = \"NAME\" "
                            "(the attribute a biased base learns and controls must be independent of).")
        return {}
    meta = adapter.metadata()
    if sensitive not in meta.columns:
        columns = [c for c in meta.columns if c not in ("image_id", "path", "split")]
        raise UserError(f"the sensitive attribute {sensitive!r} is not a column of the {adapter.name} dataset; "
                        f"choose one of {columns}.")
    phis = {}
    for base in trained:
        if base["role"] == "biased":
            if sensitive not in base["attributes"]:
                raise UserError(f"biased base {base['name']!r} does not pretrain on the sensitive attribute "
                                f"{sensitive!r}; add it.")
            continue
        if sensitive in base["attributes"]:
            raise UserError(f"control base {base['name']!r} pretrains on the sensitive attribute {sensitive!r}; "
                            "remove it.")
        phis[base["name"]] = {}
        for name in base["attributes"]:
            if name not in meta.columns:
                continue  # pretrain_base reports unknown attributes
            phi = _phi(meta[name].to_numpy(), meta[sensitive].to_numpy())
            phis[base["name"]][name] = phi
            if np.isfinite(phi) and abs(phi) > max_phi:
                raise UserError(f"control attribute {name!r} has phi {phi:.3f} with the sensitive attribute "
                                f"{sensitive!r} in the pretraining data (limit {max_phi}); "
                                f"{_independence_advice(adapter, sensitive)}.")
    return phis


def _independence_advice(adapter, sensitive: str) -> str:
    """How to get a control label independent of ``sensitive``: only an avatar cache has presets to re-render."""
    if adapter.name == "avatars":
        return ("pick another control attribute, or render the avatar cache with the 'independent' preset "
                "(attributes drawn independently of the sensitive one)")
    return (f"pick another control attribute, one nearly independent of {sensitive!r} in these images, or raise "
            "[train] max_control_phi if this dependence is intended")


def check_factors(adapter, factors, *, max_dependence: float = MAX_FACTOR_DEPENDENCE) -> dict[str, dict[str, float]]:
    """Dependence of each generalist factor label on each binary attribute of the pretraining rows.

    The factor labels are functions of the renderer's nuisance draws, which never depend
    on the attributes, so each bias-corrected Cramér's V is near 0 up to sampling noise
    (at most 0.08 over 17 factors x 10 attributes on 3,000 avatars), while a label that
    determines an attribute gives 1. A pair is an error when its V exceeds
    ``max_dependence`` *and* the chi-square test rejects independence at 0.001 / pairs
    (Bonferroni), so sampling noise in a small cache never stops a run. Returns
    ``{factor: {attribute: V}}``.
    """
    from extract.datasets.avatars.factors import dependence, factor_labels, independence_p, resolve_factors

    spec = resolve_factors(factors)
    labels = factor_labels(adapter, spec)
    meta = adapter.metadata()
    attributes = [a for a in adapter.attributes if a in meta.columns]
    alpha = 0.001 / max(1, len(spec) * len(attributes))
    out = {}
    for j, (name, bins) in enumerate(spec.items()):
        out[name] = {}
        for attribute in attributes:
            values = meta[attribute].to_numpy()
            known = values >= 0
            v = round(dependence(labels[known, j], values[known], bins=bins), 6)
            out[name][attribute] = v
            if v > max_dependence and independence_p(labels[known, j], values[known], bins=bins) < alpha:
                raise UserError(f"the generalist factor {name!r} depends on the attribute {attribute!r} in the pretraining "
                                f"data (Cramer's V {v:.3f} > {max_dependence}); drop the factor from [train] factors.")
    return out


def _phi(a: np.ndarray, b: np.ndarray) -> float:
    """Phi (Pearson) correlation of two binary columns over the rows where both are known (not -1)."""
    known = (a >= 0) & (b >= 0)
    a, b = a[known].astype(float), b[known].astype(float)
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return round(float(np.corrcoef(a, b)[0, 1]), 6)


def _summarise(path: Path, base: dict, *, skipped: bool, seconds: float) -> dict:
    from extract.backbones import load_checkpoint

    meta = load_checkpoint(path).extra["checkpoint_meta"]
    return {"name": base["name"], "role": base["role"], "objective": meta.get("objective"),
            "augment": meta.get("augment"), "path": str(path), "attributes": meta.get("attributes", []),
            "skipped": skipped, "seconds": seconds, "final": meta.get("final"), "data": meta.get("data")}


def _write_summary(path: Path, source: dict, bases: list[dict], *, seconds: float) -> None:
    # the toolkit's atomic writer: its temporary file names its process, so a killed run's is cleared later
    write_text(path, json.dumps({"recipe": source, "seconds": seconds, "bases": bases}, indent=2),
               hint="choose a writable checkpoint folder")


__all__ = ["base_augment", "base_objective", "check_disjoint", "check_factors", "check_recipe", "check_roles", "ensure_cache", "entry_fingerprint", "image_digests", "load_recipe",
           "run_recipe", "shared_images"]
