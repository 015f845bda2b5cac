"""Where ``biastransfer reproduce`` gets its finetuning images: the embedded avatars or a given dataset.

The first stage of the pipeline asks the run's source for its data (:func:`source_of`):

- :class:`AvatarSource` (the default, ``config.source = None``) renders the avatars
  (``celeba-like`` preset) and keeps the generator's truth for the salience check (finding 6);
- :class:`DatasetSource` uses a dataset that is already on disk, read by any file-based
  adapter (``manifest``: a CSV of image paths and 0/1/-1 attribute columns; ``celeba``: the
  official annotation files). Before anything is written it checks that the sensitive
  attribute and every target are columns with both classes, and that every probe and finetune
  cell of the preset (and the pairs experiment's) can be drawn from the rows; any failure is
  one :class:`~extract.errors.UserError` sentence naming the fix.

The bases of a given dataset are pretrained on it, as W&R's Gendered and Control bases were
pretrained on CelebA's train partition: :meth:`DatasetSource.pretrain_data` points the recipe's
``[data]`` at a manifest of the dataset's ``train`` rows (written under ``out/bases``), so no
test image is ever seen in pretraining. The generator's salience truth does not exist for a
given dataset, so finding 6 (the toolkit's own salience validation) is inconclusive there,
with that reason. :func:`for_dataset` turns a preset into a run on a dataset: the sensitive
attribute, targets and recipe come from the caller instead of the avatar constants.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from extract.errors import UserError

RECIPE = Path(__file__).resolve().parents[2] / "data" / "recipes" / "avatars-bases.toml"
PRETRAIN_MANIFEST = "pretrain-{dataset}-train.csv"  # under out/bases
ROLE_WORDS = ("biased", "control", "scratch")  # a base's kind is read from its name (stages.base_kinds)


@dataclass(frozen=True)
class AvatarSource:
    """The embedded default: render the avatars at the config's ``n``, ``size`` and ``seed``."""

    name = "avatars"

    def prepare(self, out: Path, config, *, render) -> Path:
        """Render (or reuse) the finetuning avatars with ``render`` (:func:`analyze.reproduce.stages.render_avatars`);
        return the cache file."""
        return render(out, n=config.n, size=config.size, seed=config.seed, workers=config.workers)

    def adapter(self, data: Path):
        from extract.datasets.avatars import AvatarAdapter

        return AvatarAdapter(data)

    def pretrain_data(self, data: dict, config, out: Path) -> dict:
        """The recipe's ``[data]`` at the config's size (and ``pretrain_n``), its cache named by them."""
        data = dict(data)
        data["size"] = config.size
        if config.pretrain_n is not None:
            data["n"] = config.pretrain_n
        data["cache"] = f"pretrain-avatars-{data['n']}-{config.size}px-seed{data['seed']}.h5"
        return data

    def truth(self, adapter):
        """The generator's signal strengths: the truth of the salience check."""
        return adapter.signal_strength


@dataclass(frozen=True)
class DatasetSource:
    """A labelled dataset on disk, read by the adapter ``dataset`` over ``root``.

    Parameters
    ----------
    dataset : str
        Adapter name (``manifest``, ``celeba``, ...; see ``biastransfer datasets``); its
        metadata needs a ``path`` column of image files relative to ``root``.
    root : path
        The dataset's folder.
    options : tuple of (key, value)
        Adapter options, e.g. ``(("manifest", "labels.csv"),)``.
    """

    dataset: str
    root: Path
    options: tuple = ()

    @property
    def name(self) -> str:
        return self.dataset

    def adapter(self, data=None):
        from extract.datasets import get_adapter

        if self.dataset == "avatars":
            raise UserError("the avatars are the default source of `reproduce`; leave out `dataset` (and `root`) to "
                            "render them.")
        return get_adapter(self.dataset, Path(self.root).expanduser(), **dict(self.options))

    def prepare(self, out: Path, config, *, render=None) -> Path:
        """Check the dataset against ``config`` (nothing is written; ``render`` is not used); return its root."""
        meta = self.adapter().metadata()
        check_dataset(meta, config, dataset=self.dataset)
        counts = meta["split"].value_counts()
        print(f"  dataset {self.dataset} at {self.root}: {len(meta)} images "
              f"({', '.join(f'{counts.get(s, 0)} {s}' for s in ('train', 'val', 'test'))}); sensitive "
              f"{config.sensitive!r}, targets {', '.join(config.targets)}")
        return Path(self.root).expanduser()

    def pretrain_data(self, data: dict, config, out: Path) -> dict:
        """``[data]`` for bases pretrained on this dataset's ``train`` rows (a manifest under ``out/bases``).

        Only the rows whose sensitive attribute and every pretraining label are known are kept;
        ``pretrain_n`` (when set) draws that many of them at random with the recipe's seed.
        """
        from extract.io import write_text

        meta = self.adapter().metadata()
        labels = [config.sensitive, *dict.fromkeys(a for b in config_bases(config) for a in b.get("attributes", ()))]
        missing = [a for a in labels if a not in meta.columns]
        if missing:
            raise UserError(f"the recipe pretrains on {missing[0]!r}, which is not a column of the {self.dataset} "
                            f"dataset; name bases after its attributes ({_columns(meta)}).")
        keep = (meta["split"] == "train").to_numpy() & (meta[labels].to_numpy() >= 0).all(axis=1)
        rows = np.flatnonzero(keep)
        if config.pretrain_n is not None and config.pretrain_n < len(rows):
            rows = np.sort(np.random.default_rng(int(data.get("seed", 0))).choice(rows, config.pretrain_n,
                                                                                  replace=False))
        path = Path(out) / "bases" / PRETRAIN_MANIFEST.format(dataset=self.dataset)
        frame = meta.iloc[rows][["path", "image_id", *labels]].assign(split="train")
        write_text(path, frame.to_csv(index=False))
        return {"dataset": "manifest", "root": str(Path(self.root).expanduser().resolve()),
                "options": {"manifest": str(path.resolve())}, "sensitive": config.sensitive}

    def truth(self, adapter):
        """None: a given dataset has no generator, so no salience truth."""
        return None


def source_of(config):
    """The config's source (None: the avatars)."""
    return getattr(config, "source", None) or AvatarSource()


def recipe_path(config) -> Path:
    """The recipe file of ``config`` (a name in ``data/recipes`` or a path; None: ``avatars-bases.toml``)."""
    if config.recipe is None:
        return RECIPE
    path = Path(config.recipe).expanduser()
    return path if path.parent != Path(".") or path.exists() else RECIPE.with_name(config.recipe)


def config_bases(config) -> list[dict]:
    """The run's bases as ``[[bases]]`` entries: the given checkpoints' (:func:`given_bases`) or the recipe's."""
    from extract.pretrain import load_recipe

    if getattr(config, "bases", ()):
        return given_bases(config.bases)
    return load_recipe(recipe_path(config))["bases"]


def parse_bases(text: str) -> tuple:
    """``"NAME=PATH,NAME=PATH"`` -> ``((NAME, PATH), ...)``; each NAME names its role (biased, control, scratch)."""
    from extract.parsing import split_list

    pairs = []
    for item in split_list(text):
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise UserError(f"`bases` entry {item!r} is not NAME=PATH; write e.g. "
                            "my-biased=bases/b.pt,my-control-hat=bases/h.pt,my-control-bangs=bases/g.pt.")
        pairs.append((name.strip(), str(Path(path.strip()).expanduser())))
    if len({n for n, _ in pairs}) != len(pairs):
        raise UserError(f"`bases` repeats a name among {[n for n, _ in pairs]}; give each base its own name.")
    return tuple(pairs)


def given_bases(pairs) -> list[dict]:
    """``[[bases]]``-like entries (name, role, attributes, path) of given toolkit checkpoints.

    The role is the word of :data:`ROLE_WORDS` the name contains, and the name must be the one
    the checkpoint records (the cells' records name their base by it); a control's pretraining
    labels are the ``attributes`` its checkpoint records (``biastransfer pretrain`` writes them).
    """
    from extract.backbones import load_checkpoint

    entries = []
    for name, path in pairs:
        roles = [r for r in ROLE_WORDS if r in name]
        if len(roles) != 1:
            raise UserError(f"`bases` name {name!r} must contain exactly one of {list(ROLE_WORDS)} (its role), e.g. "
                            f"my-control-hat.")
        if not Path(path).is_file():
            raise UserError(f"the checkpoint {path} of base {name!r} does not exist; pass a file that "
                            "`biastransfer pretrain` wrote.")
        meta = load_checkpoint(path).extra.get("checkpoint_meta", {})
        recorded = meta.get("name", Path(path).stem)
        if recorded != name:  # every cell's record names its base by the checkpoint's own name
            raise UserError(f"the checkpoint {path} records the base name {recorded!r}; pass it as "
                            f"{recorded}={path} (a name that contains its role), or rename the base when pretraining.")
        attributes = list(meta.get("attributes", [])) if roles[0] != "scratch" else []
        if roles[0] == "control" and not attributes:
            raise UserError(f"the control checkpoint {path} records no pretraining attributes; pass a checkpoint "
                            "that `biastransfer pretrain` wrote, or build the bases with `recipe`.")
        entries.append({"name": name, "role": roles[0], "attributes": attributes, "path": path})
    return entries


def _columns(meta: pd.DataFrame) -> str:
    names = [c for c in meta.columns if c not in ("image_id", "path", "split")]
    return ", ".join(names[:20]) + (" ..." if len(names) > 20 else "")


def check_dataset(meta: pd.DataFrame, config, *, dataset: str) -> None:
    """Raise one sentence when ``meta`` cannot carry ``config``'s grids: a missing or one-class
    attribute, a split without rows, or a cell (probe, finetune or pairs) its rows cannot fill."""
    for role, name in (("sensitive attribute", config.sensitive), *(("target", t) for t in config.targets)):
        if name not in meta.columns:
            raise UserError(f"the {role} {name!r} is not a column of the {dataset} dataset; choose among "
                            f"{_columns(meta)}.")
        known = meta[name].to_numpy()
        known = known[known >= 0]
        if len(np.unique(known)) < 2:
            raise UserError(f"the {role} {name!r} of the {dataset} dataset has a single class among its known rows "
                            "(a binary 0/1 column with both values is needed); choose another attribute.")
    for base in config_bases(config):
        missing = [a for a in base.get("attributes", ()) if a not in meta.columns]
        if missing:
            where = "the given checkpoint" if "path" in base else f"the recipe {Path(str(config.recipe)).name}"
            raise UserError(f"{where} pretrains {base['name']!r} on {missing[0]!r}, which is not a column of the "
                            f"{dataset} dataset; pass bases pretrained on its attributes ({_columns(meta)}).")
    for split in ("train", "val", "test"):
        if not (meta["split"] == split).any():
            raise UserError(f"the {dataset} dataset has no {split!r} rows; give the manifest a split column with "
                            "train, val and test rows (or leave it out for a seeded 60/20/20 split).")
    for spec in _cells(meta, config):
        try:
            spec.split_indices(meta)
        except UserError as exc:
            raise UserError(f"the {dataset} dataset has too few rows for the preset's {spec.kind!r} cell of target "
                            f"{getattr(spec, 'target', '?')!r} ({_lower(exc)}); add images or choose a smaller "
                            "preset.") from None


def _lower(exc: Exception) -> str:
    text = str(exc).rstrip(".")
    return text[:1].lower() + text[1:]


def _cells(meta: pd.DataFrame, config) -> list:
    """Every cell the run draws: the probe and finetune grids and the pairs experiment's sets."""
    from analyze.subsets import Underrepresentation

    from analyze.reproduce.grids import CellGroup

    try:
        finetunes = config.finetune_grid(meta, config)
    except UserError as exc:
        raise UserError(f"the preset's cells cannot be built on this dataset: {_lower(exc)}.") from None
    try:
        specs = [*config.probe_grid(meta, config)]
    except UserError as exc:
        raise UserError(f"the preset's cells cannot be built on this dataset: {_lower(exc)}.") from None
    for item in finetunes:  # a paper preset's groups of cells, or a plain list of cells
        specs += list(item.specs) if isinstance(item, CellGroup) else [item]
    a, b = config.pair
    return specs + [Underrepresentation(a, b, share, n=n, seed=s)
                    for n in config.pair_sizes for share in config.pair_shares for s in config.seeds]


def recipe_pair(bases: list[dict]) -> tuple[str, str]:
    """Attributes A and B of the pairs experiment: the first labels of the recipe's first two controls."""
    controls = [b for b in bases if b["role"] == "control"]
    if len(controls) < 2:
        raise UserError(f"the recipe has {len(controls)} control base(s); the pairs experiment and the control "
                        "comparisons need at least two, add [[bases]] with role = \"control\".")
    for base in bases:
        if base["role"] not in base["name"]:
            raise UserError(f"base {base['name']!r} has role {base['role']!r} but its name does not contain that "
                            "word; name each base after its role (e.g. faces-control-hat), the findings read the "
                            "kind from the name.")
    return controls[0]["attributes"][0], controls[1]["attributes"][0]


def for_dataset(config, source: DatasetSource, *, sensitive: str, targets: tuple, recipe: str | None = None,
                bases: tuple = ()):
    """``config`` (a preset) run on ``source``: its sensitive attribute, targets, and the bases' recipe
    or given checkpoints (``bases``: ``((name, path), ...)``, see :func:`parse_bases`).

    The first target is the finetuned one (the preset's subsets of finetuned, n-swept and curation
    targets take the first as many given targets); salience is estimated on every target; every
    control is compared, and the first two controls' labels are the pairs experiment's A and B.
    """
    if bool(recipe) == bool(bases):
        raise UserError("give the bases either as a recipe `recipe` or as checkpoints `bases`, one of the two.")
    if not targets:
        raise UserError("no targets given; pass `targets` A,B,C (binary attribute columns of the dataset).")
    if sensitive in targets:
        raise UserError(f"the sensitive attribute {sensitive!r} is also a target; leave it out of `targets`.")
    # the preset's target subsets (the finetuned, n-swept and curation targets) become as many of the given targets
    subsets = {name: tuple(targets[:len(chosen)]) for name in ("finetune_targets", "sweep_targets", "curation_targets")
               if (chosen := getattr(config, name, None))}
    config = replace(config, **subsets)
    config = replace(config, source=source, sensitive=sensitive, targets=tuple(targets), finetune_target=targets[0],
                     salience_targets=None, controls=None, recipe=None if recipe is None else str(recipe),
                     bases=tuple(bases), finetune_bases=None,
                     title=f"biastransfer reproduce: the papers' findings on the {source.name} dataset "
                           f"(sensitive attribute {sensitive})")
    bases = config_bases(config)
    shared = sorted({a for b in bases for a in b.get("attributes", ())} & set(targets))
    if shared:
        raise UserError(f"the target {shared[0]!r} is a pretraining label of one of the bases; no pretraining label "
                        "may determine a target, drop it from `targets` or choose other bases.")
    return replace(config, pair=recipe_pair(bases))


__all__ = ["RECIPE", "AvatarSource", "DatasetSource", "check_dataset", "config_bases", "for_dataset", "given_bases",
           "parse_bases", "recipe_pair", "recipe_path", "source_of"]
