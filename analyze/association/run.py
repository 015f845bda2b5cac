"""``biastransfer associate``: embedding association tests over backbones, with a null [R].

:func:`run_association` embeds each concept set once per backbone (a base and the checkpoints
finetuned from it, see :mod:`analyze.association.models` for the checkpoint meta keys read),
runs every test of a specification (:mod:`analyze.association.spec`) and returns one tidy
table, one row per (backbone, stage, condition, model, test):

================  ==========================================================================
column            meaning
================  ==========================================================================
backbone          the base: a before-stage model's name; for an after-stage model, its base
model             the name or checkpoint path given (identifies the finetuned model)
stage             ``"before"`` (a base), ``"after"`` (finetuned), ``"change"`` (after - before)
condition         ``"base"`` for bases; the finetuning condition from the checkpoint meta
finetune_seed     the finetuning seed from the checkpoint meta (empty for bases)
test, kind        the test's name and kind (``weat``, ``concept``, ``pair``)
measure           ``effect_size`` (WEAT d) or ``association`` (a difference of mean cosines)
effect_size       the measure's value (for stage ``change``: after - before, same images)
p_value           permutation p (``alternative``-sided); empty for ``change`` rows
ci_low, ci_high   percentile bootstrap interval at ``confidence`` (paired for ``change``)
n_x, n_y          target set sizes (weat: X, Y; concept / pair: W or object, and empty n_y)
n_a, n_b          attribute / group set sizes (pair: object_with_a, object_with_b)
n_partitions      p-value denominator; ``exact``: whether all partitions were enumerated
null_*            the observed value against random-init backbones (below)
================  ==========================================================================

**Null baseline.** Random features can show large, "significant" spurious associations: a
randomly initialised network already maps images of similar colour or layout to similar
embeddings, so concept sets that differ in low-level statistics differ in cosine similarity
with no learned bias at all, and the permutation p-value (which only shuffles images between
sets) does not guard against that. So each observed value is also placed in the null
distribution of the same measure on the same images under the same architecture and
preprocessing at random initialisation, one network per seed in ``null_seeds``: ``null_mean``,
``null_sd`` (ddof=1), ``null_z = (value - null_mean) / null_sd``, ``null_percentile`` (share
of null values below the value, ties counted half, in percent) and ``null_n`` (networks used).
With a handful of seeds the percentile is coarse; read ``null_z`` alongside it. A random-init
*observed* backbone whose seed is in ``null_seeds`` meets an identical network in its null.
"""

from __future__ import annotations

import ast
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from analyze.association.bootstrap import paired_change
from analyze.association.concepts import ConceptSets
from analyze.association.measures import association, effect_size
from analyze.association.models import (
    DEFAULT_BATCH_SIZE,
    ModelInfo,
    describe_model,
    embed_images,
    find_base,
    random_twin,
)
from analyze.association.options import AssociationOptions, EmbedOptions
from analyze.association.significance import association_test, concept_association, pair_association
from analyze.association.spec import (
    MEASURES,
    ROLES,
    AssociationSpec,
    check_sets_exist,
    set_names,
)
from extract.errors import UserError

STAGES = ("before", "after", "change")
COLUMNS = [
    "backbone", "model", "stage", "condition", "finetune_seed", "test", "kind", "measure",
    "effect_size", "p_value", "ci_low", "ci_high", "confidence", "alternative", "n_x", "n_y",
    "n_a", "n_b", "n_partitions", "exact", "n_permutations", "n_bootstrap", "seed",
    "null_mean", "null_sd", "null_z", "null_percentile", "null_n",
]
_COUNT_COLUMNS = ["finetune_seed", "n_x", "n_y", "n_a", "n_b", "n_partitions", "n_permutations",
                  "n_bootstrap", "seed", "null_n"]


def embed_sets(backbone, sets: ConceptSets, names: Sequence[str], *, batch_size: int,
               device) -> dict[str, np.ndarray]:
    """``{name: (k, d) float32}`` embeddings of the named concept sets under ``backbone``."""
    return {name: embed_images(backbone, sets[name], batch_size=batch_size, device=device)
            for name in names}


def _measure_sets(test: AssociationSpec, embeddings: dict) -> dict[str, np.ndarray]:
    """The test's embedding sets under the keys its measure takes (X, Y, A, B or W, A, B)."""
    arrays = [embeddings[test.sets[role]] for role in ROLES[test.kind]]
    keys = ("X", "Y", "A", "B") if test.kind == "weat" else ("W", "A", "B")
    return dict(zip(keys, arrays, strict=True))


def estimate(test: AssociationSpec, embeddings: dict) -> float:
    """Point estimate of the test's measure (no p-value, no interval): used for the null."""
    sets = _measure_sets(test, embeddings)
    if test.kind == "weat":
        return effect_size(**sets)
    return float(association(sets["W"], sets["A"], sets["B"]).mean())


def run_test(test: AssociationSpec, embeddings: dict) -> dict:
    """The test's measure, p-value, interval and sizes as one row of the table."""
    sets = _measure_sets(test, embeddings)
    options = test.options
    if test.kind == "weat":
        result = association_test(**sets, options=AssociationOptions(**options)).to_dict()
    else:
        measure = concept_association if test.kind == "concept" else pair_association
        result = measure(*sets.values(), options=AssociationOptions(**options)).to_dict()
        result["effect_size"], result["n_x"], result["n_y"] = result["association"], \
            result["n_w"], pd.NA
    row = {key: result[key] for key in ("effect_size", "p_value", "ci_low", "ci_high", "n_x",
                                        "n_y", "n_a", "n_b", "n_partitions", "exact")}
    return {**row, "confidence": options["confidence"], "alternative": options["alternative"],
            "n_permutations": options["n_permutations"], "n_bootstrap": options["n_bootstrap"],
            "seed": options["seed"]}


def change_row(test: AssociationSpec, before: dict, after: dict) -> dict:
    """After - before of the test's measure on the same images, with its paired interval."""
    options = test.options
    sets_before, sets_after = _measure_sets(test, before), _measure_sets(test, after)
    sizes = {f"n_{key.lower()}": len(value) for key, value in sets_before.items()}
    if "n_w" in sizes:
        sizes["n_x"], sizes["n_y"] = sizes.pop("n_w"), pd.NA
    if options["n_bootstrap"] == 0:
        value, low, high = estimate(test, after) - estimate(test, before), np.nan, np.nan
    else:
        change = paired_change(sets_before, sets_after, measure=test.measure,
                               n_bootstrap=options["n_bootstrap"],
                               confidence=options["confidence"], seed=options["seed"])
        value, low, high = change.change, change.ci_low, change.ci_high
    return {"effect_size": value, "p_value": np.nan, "ci_low": low, "ci_high": high, **sizes,
            "n_partitions": pd.NA, "exact": pd.NA, "confidence": options["confidence"],
            "alternative": pd.NA, "n_permutations": pd.NA,
            "n_bootstrap": options["n_bootstrap"], "seed": options["seed"]}


def null_distribution(model: ModelInfo, sets: ConceptSets, tests: Sequence[AssociationSpec], *,
                      seeds: Sequence[int], batch_size: int = DEFAULT_BATCH_SIZE,
                      device="cpu") -> pd.DataFrame:
    """Each test's measure under ``model``'s architecture at random init, one row per seed.

    Returns
    -------
    DataFrame with columns ``seed``, ``test``, ``effect_size``; ``len(seeds) * len(tests)`` rows.
    """
    names = set_names(tests)
    rows = []
    for seed in seeds:
        twin = random_twin(model, int(seed))
        embeddings = embed_sets(twin, sets, names, batch_size=batch_size, device=device)
        rows += [{"seed": int(seed), "test": test.name,
                  "effect_size": estimate(test, embeddings)} for test in tests]
    return pd.DataFrame(rows, columns=["seed", "test", "effect_size"])


def null_summary(value: float, null_values: np.ndarray) -> dict:
    """Where ``value`` falls among ``null_values`` (see the module docstring)."""
    null_values = np.asarray(null_values, dtype=float)
    null_values = null_values[np.isfinite(null_values)]
    n = len(null_values)
    if n == 0:
        return {"null_mean": np.nan, "null_sd": np.nan, "null_z": np.nan,
                "null_percentile": np.nan, "null_n": 0}
    mean = float(null_values.mean())
    sd = float(null_values.std(ddof=1)) if n > 1 else np.nan
    below = (null_values < value).sum() + 0.5 * (null_values == value).sum()
    return {"null_mean": mean, "null_sd": sd,
            "null_z": (value - mean) / sd if n > 1 and sd > 0 else np.nan,
            "null_percentile": float(100.0 * below / n) if np.isfinite(value) else np.nan,
            "null_n": n}


def _check_stages(stages) -> tuple[str, ...]:
    if stages is None:
        return STAGES
    stages = tuple(stages)
    unknown = [stage for stage in stages if stage not in STAGES]
    if unknown or not stages:
        raise UserError(f"stages={stages!r} is invalid; pass a subset of {list(STAGES)}.")
    return stages


def _identity(model: ModelInfo, base: ModelInfo | None) -> dict:
    backbone = model.label if model.stage == "before" else (base.label if base else model.base)
    return {"backbone": backbone, "model": model.given, "condition": model.condition,
            "finetune_seed": model.finetune_seed if model.finetune_seed is not None else pd.NA}


def run_association(backbones: Sequence[str | Path], sets: ConceptSets,
                    tests: Sequence[AssociationSpec], *, stages: Sequence[str] | None = None,
                    null_seeds: Sequence[int] = (0, 1, 2, 3, 4), null_arch: str | None = None,
                    embed: EmbedOptions = EmbedOptions()) -> pd.DataFrame:
    """Run every test on every backbone; one tidy row per (model, stage, test).

    Parameters
    ----------
    backbones : sequence of str or Path
        Registered names or toolkit checkpoints: bases and the models finetuned from them.
    sets : ConceptSets
        Must hold every set the tests name.
    tests : sequence of AssociationSpec
    stages : subset of ("before", "after", "change"), optional
        Which rows to report; default all. ``change`` rows pair each finetuned model with its
        base (which must be among ``backbones``).
    null_seeds : sequence of int, default (0, 1, 2, 3, 4)
        Seeds of the random-init networks of the null; empty skips the null.
    null_arch : str, optional
        A registered name whose architecture every null uses; default each model's own.
    embed : EmbedOptions
        ``image_size`` (override every backbone's resize and crop), ``batch_size``, ``device``.

    Returns
    -------
    DataFrame with the columns :data:`COLUMNS` (see the module docstring).
    """
    stages, tests = _check_stages(stages), list(tests)
    if not backbones:
        raise UserError("no backbone was given; pass at least one in `backbones`.")
    if not tests:
        raise UserError("no association test was given; pass a specification with tests.")
    check_sets_exist(tests, sets.names)
    names = set_names(tests)
    models = [describe_model(name, image_size=embed.image_size, null_arch=null_arch)
              for name in backbones]
    embed_kwargs = dict(batch_size=embed.batch_size, device=embed.device)
    embeddings = [embed_sets(m.backbone, sets, names, **embed_kwargs) for m in models]
    nulls = {}
    rows = []
    for model, observed in zip(models, embeddings):
        base = find_base(model, models) if model.stage == "after" else None
        if model.stage == "after" and base is None and "change" in stages:
            warnings.warn(f"the base {model.base!r} of {model.given} is not among the backbones, "
                          "so its change rows are left out; pass the base too.", UserWarning,
                          stacklevel=2)
        if model.stage in stages:
            if model.null_key not in nulls and null_seeds:
                nulls[model.null_key] = null_distribution(model, sets, tests, seeds=null_seeds,
                                                          **embed_kwargs)
            null = nulls.get(model.null_key)
            for test in tests:
                row = run_test(test, observed)
                values = null.loc[null["test"] == test.name, "effect_size"].to_numpy() \
                    if null is not None else np.array([])
                rows.append({**_identity(model, base), "stage": model.stage, "test": test.name,
                             "kind": test.kind, "measure": MEASURES[test.kind], **row,
                             **null_summary(row["effect_size"], values)})
        if base is not None and "change" in stages:
            before = embeddings[models.index(base)]
            rows += [{**_identity(model, base), "stage": "change", "test": test.name,
                      "kind": test.kind, "measure": MEASURES[test.kind],
                      **change_row(test, before, observed), **null_summary(np.nan, [])}
                     for test in tests]
    return _tidy(rows)


def _tidy(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=COLUMNS)
    for column in _COUNT_COLUMNS:
        table[column] = pd.array(table[column], dtype="Int64")
    table["exact"] = pd.array(table["exact"], dtype="boolean")
    for column in ("effect_size", "p_value", "ci_low", "ci_high", "confidence"):
        table[column] = table[column].astype(float)
    table["null_n"] = table["null_n"].fillna(0)
    return table


def load_concepts(source: str, names: Sequence[str], *, per_set: int = 24,
                  split: str | None = "test", seed: int = 0,
                  folder_size: int = 224) -> ConceptSets:
    """Concept sets from ``avatars:CACHE`` or ``folder:ROOT`` (only the ``names`` needed)."""
    from analyze.association.concepts import avatar_concept_sets, load_concept_folders

    kind, _, location = source.partition(":")
    if kind == "avatars" and location:
        return avatar_concept_sets(location, names, per_set=per_set, split=split, seed=seed)
    if kind == "folder" and location:
        return load_concept_folders(location, names=names, image_size=folder_size)
    raise UserError(f"`source` {source!r} is not understood; pass avatars:CACHE.h5 or "
                    "folder:ROOT (a folder per concept).")




# -- Ranjit et al.'s comparison groups and retention -----------------------------------------
GROUP_COLUMNS = ["backbone", "model", "stage", "condition", "finetune_seed", "item", "kind",
                 "object", "plot_groups", "value", "ci_low", "ci_high"]
TRIALS_MODEL = "mean of {k} finetunes"


def _retention_rows(identity: dict, result) -> list[dict]:
    return [{**identity, **row} for row in result.table.to_dict("records")]


def _trial_condition(condition: str) -> str:
    """The condition without its seed: a finetune spec recorded as a dict names its seed too,
    and finetunes differing only in seed are trials of one condition."""
    try:
        spec = ast.literal_eval(condition)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return condition
    if not isinstance(spec, dict):
        return condition
    return str({key: value for key, value in spec.items() if key != "seed"})


def _trial_groups(models: Sequence[ModelInfo]) -> dict:
    """After-stage models with a base among ``models``, grouped by (base, condition less seed)."""
    groups = {}
    for model in models:
        base = find_base(model, models) if model.stage == "after" else None
        if base is not None:
            key = (models.index(base), _trial_condition(model.condition))
            groups.setdefault(key, []).append(model)
    return groups


def run_comparison_groups(backbones: Sequence[str | Path], sets: ConceptSets,
                          items: Sequence, *, options=None,
                          embed: EmbedOptions = EmbedOptions()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ranjit et al.'s comparison groups on every backbone, and each finetune's retention.

    Parameters
    ----------
    backbones : sequence of str or Path
        Bases and the checkpoints finetuned from them (as in :func:`run_association`).
    sets : ConceptSets
        Must hold every set the items use.
    items : sequence of ComparisonItem
        E.g. :func:`analyze.association.groups.comparison_groups`.
    options : RetentionOptions, optional
        Bootstrap settings of the similarity intervals and of retention.
    embed : EmbedOptions
        As in :func:`run_association`.

    Returns
    -------
    (similarities, retention) : (DataFrame, DataFrame)
        ``similarities`` has the columns :data:`GROUP_COLUMNS`, one row per (model, item);
        ``retention`` one row per (finetuned model, scope, group) with the identity columns
        and :data:`analyze.association.retention.RETENTION_COLUMNS`. Finetunes of one base under
        one condition (several seeds; a condition recorded as a finetune spec is compared without
        its ``seed``) also get a row averaged over them as trials, with ``model`` = "mean of k
        finetunes".
    """
    from analyze.association.groups import check_item_sets, item_sets, similarity_table
    from analyze.association.retention import RETENTION_COLUMNS, RetentionOptions, retention

    options = options or RetentionOptions()
    items = list(items)
    if not backbones:
        raise UserError("no backbone was given; pass at least one in `backbones`.")
    check_item_sets(items, sets.names)
    models = [describe_model(name, image_size=embed.image_size) for name in backbones]
    embeddings = [embed_sets(m.backbone, sets, item_sets(items), batch_size=embed.batch_size,
                             device=embed.device) for m in models]
    similarities = []
    for model, observed in zip(models, embeddings):
        base = find_base(model, models) if model.stage == "after" else None
        table = similarity_table(observed, items, n_bootstrap=options.n_bootstrap,
                                 confidence=options.confidence, seed=options.seed)
        similarities.append(table.assign(**_identity(model, base), stage=model.stage))
    rows = []
    for (base_index, condition), finetunes in _trial_groups(models).items():
        base = models[base_index]
        for model in finetunes:
            result = retention(embeddings[base_index], embeddings[models.index(model)], items,
                               options=options)
            rows += _retention_rows(_identity(model, base), result)
        if len(finetunes) > 1:
            result = retention(embeddings[base_index],
                               [embeddings[models.index(m)] for m in finetunes], items,
                               options=options)
            rows += _retention_rows({"backbone": base.label, "condition": condition,
                                     "model": TRIALS_MODEL.format(k=len(finetunes)),
                                     "finetune_seed": pd.NA}, result)
    columns = ["backbone", "model", "condition", "finetune_seed", *RETENTION_COLUMNS]
    return pd.concat(similarities, ignore_index=True)[GROUP_COLUMNS], \
        pd.DataFrame(rows, columns=columns)
