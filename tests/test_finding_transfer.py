"""The paper's first finding on the embedded avatar dataset, end to end (W&R; docs/science.md section 1, finding a).

A base pretrained to see the sensitive attribute (``dark_skin``) passes more bias into the
models finetuned from it than control bases pretrained on the same images, architecture and
recipe to see an unrelated attribute: at a strong, stereotype-consistent finetuning
correlation its stereotype-direction FPR gap is larger than every control's (the difference's
95% interval over 5 seeds above zero), for linear probes on frozen features and for full
finetuning; and the gap shrinks as the finetuning correlation moves toward balance.

Everything is built here from scratch, small enough for a 2-core CPU (32 px avatars, the
from-scratch small-CNN recipe ``data/recipes/avatars-bases-smallcnn.toml`` with 3 pretraining
epochs; the demo's EfficientNet-Lite0 recipe is too slow for a test): a pretraining cache disjoint from the finetuning
cache, the bases, their feature stores, 5-seed probe cells and 5-seed finetune cells.
"""

import math

import numpy as np
import pandas as pd
import pytest

from analyze.demo import RECIPE
from analyze.config import RunContext
from analyze.finetune.runner import FinetuneConfig, FinetuneOptions, finetune_cells
from analyze.probe import ProbeConfig
from analyze.probe.cells import run_probe_cells
from analyze.results.collect import collect
from analyze.subsets import Correlation, level_toward_stereotype
from extract.backbones import create_backbone
from extract.datasets.avatars import AvatarAdapter, RenderSpec, render_dataset
from extract.extraction import ExtractOptions, extract_features
from extract.pretrain.recipe import load_recipe, run_recipe
from extract.store.reader import FeatureStore

SENSITIVE = "dark_skin"
SEEDS = (0, 1, 2, 3, 4)
CONTROLS = ("avatars-control-hat", "avatars-control-blazer")
BIASED = "avatars-biased-dark_skin"
PROBE_TARGETS = ("eyewear", "raised_eyebrows", "long_hair", "facial_hair")  # two of each natural direction
FINETUNE_TARGET = "long_hair"  # stereotypical group s=0: its strong level is P(s=1 | y=1) = 0


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("finding")
    cache = render_dataset(root / "avatars" / "avatars-1500-32px-seed0.h5", spec=RenderSpec(n=1500, size=32, seed=0, signal_sample=4), workers=2, progress=False)
    recipe = load_recipe(RECIPE.with_name("avatars-bases-smallcnn.toml"))
    recipe["bases"] = [b for b in recipe["bases"] if b["role"] == "biased" or b["name"] in CONTROLS]
    recipe["data"].update(size=32, n=1500, cache="pretrain-avatars-1500-32px-seed1000.h5")
    recipe["model"]["image_size"] = 32
    bases = run_recipe(recipe, out_dir=root / "bases", cache_dir=root / "avatars", workers=2, progress=False)
    adapter = AvatarAdapter(cache)
    stores = {name: FeatureStore.open(extract_features(adapter, create_backbone(path), root / f"{name}.h5", options=ExtractOptions(device="cpu", progress=False)))
              for name, path in bases.items()}
    return {"root": root, "adapter": adapter, "bases": bases, "stores": stores}


def specs(meta, targets, stereotype_levels, *, n):
    return [Correlation(t, SENSITIVE, level_toward_stereotype(meta, t, SENSITIVE, s), n=n, seed=seed)
            for t in targets for s in stereotype_levels for seed in SEEDS]


def per_seed(table: pd.DataFrame) -> pd.DataFrame:
    """fpr_gap_stereotype per (base, stereotype level, seed), averaged over targets."""
    return (table.groupby(["backbone", "stereotype_level", "seed"])["fpr_gap_stereotype"].mean()
            .unstack("seed"))


def interval(values: np.ndarray) -> tuple[float, float]:
    half = 1.96 * values.std(ddof=1) / math.sqrt(len(values))
    return values.mean() - half, values.mean() + half


def check_finding(table: pd.DataFrame, *, biased: str, controls) -> None:
    gaps = per_seed(table)
    strong, balanced = gaps.xs(1.0, level="stereotype_level"), gaps.xs(0.5, level="stereotype_level")
    for control in controls:  # unpaired interval over the 5 seeds of each base
        g, c = strong.loc[biased].to_numpy(), strong.loc[control].to_numpy()
        d = g.mean() - c.mean()
        half = 1.96 * math.sqrt(g.var(ddof=1) / len(g) + c.var(ddof=1) / len(c))
        print(f"level 1: biased {g.mean():.3f} vs {control} {c.mean():.3f}: difference {d:.3f} "
              f"[{d - half:.3f}, {d + half:.3f}]")
        assert d - half > 0, f"biased {g.mean():.3f} vs {control} {c.mean():.3f}: difference {d:.3f} ± {half:.3f}"
    for base in (biased, *controls):  # the gap shrinks toward balance, for every base
        low, high = interval(strong.loc[base].to_numpy() - balanced.loc[base].to_numpy())
        print(f"{base}: level 1 {strong.loc[base].mean():.3f}, level 0.5 {balanced.loc[base].mean():.3f}, "
              f"paired drop [{low:.3f}, {high:.3f}]")
        assert low > 0, f"{base}: gap at level 1 {strong.loc[base].mean():.3f}, at 0.5 {balanced.loc[base].mean():.3f}"


def test_probes_on_the_biased_base_inherit_more_bias_than_on_every_control(world):
    meta = world["adapter"].metadata()
    cells = specs(meta, PROBE_TARGETS, (1.0, 0.5), n=128)
    out = world["root"] / "probe-results"
    for store in world["stores"].values():
        run_probe_cells(store, cells, context=RunContext(out=out, progress=False), config=ProbeConfig(Cs=(0.01, 0.1, 1.0)))
    table = collect(out)
    assert set(table["stereotype_level"].round(6)) == {0.5, 1.0} and len(table) == 3 * len(cells)
    backbone = {name: store.provenance["backbone_name"] for name, store in world["stores"].items()}
    check_finding(table, biased=backbone[BIASED], controls=[backbone[c] for c in CONTROLS])


def test_full_finetuning_of_the_biased_base_keeps_more_bias_than_every_control(world):
    meta = world["adapter"].metadata()
    cells = specs(meta, (FINETUNE_TARGET,), (1.0, 0.5), n=192)
    assert {c.level for c in cells} == {0.0, 0.5}  # long_hair's stereotypical group is s=0
    out = world["root"] / "finetune-results"
    config = FinetuneConfig(lrs=(0.02,), weight_decays=(1e-4,), epochs=3, batch_size=64)
    for name in (BIASED, *CONTROLS):
        finetune_cells(cells, adapter=world["adapter"], base=str(world["bases"][name]), config=config,
                       context=RunContext(out=out, progress=False), options=FinetuneOptions(device="cpu"))
    table = collect(out)
    assert (table["runner"] == "finetune").all() and len(table) == 3 * len(cells)
    assert set(table["base_checkpoint"]) == {str(world["bases"][name]) for name in (BIASED, *CONTROLS)}
    check_finding(table, biased=BIASED, controls=CONTROLS)  # finetune rows are named by their base
