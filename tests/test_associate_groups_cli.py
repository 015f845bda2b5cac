"""``biastransfer associate --comparison-groups``: similarities with intervals, retention, plot."""

import pandas as pd
import pytest
import torch

from analyze import cli
from analyze.association.retention import RETENTION_COLUMNS
from analyze.association.run import GROUP_COLUMNS
from extract.backbones import create_backbone, save_checkpoint
from extract.datasets.avatars import RenderSpec, render_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread_per_module")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("associate_groups")
    cache = render_dataset(root / "avatars.h5", spec=RenderSpec(n=300, size=32, seed=0, signal_sample=4), workers=1,
                           progress=False)
    backbone = create_backbone("smallcnn.scratch")
    for seed in (0, 1):
        with torch.no_grad():
            for parameter in backbone.model.parameters():
                parameter.mul_(1.1)
        save_checkpoint(root / f"ft{seed}.pt", backbone.model, arch="smallcnn",
                        arch_kwargs={"width": 16}, preprocess=backbone.preprocess,
                        meta={"base": "smallcnn.scratch", "condition": "balanced", "seed": seed})
    return root, cache


def run(root, cache, out, *extra):
    return cli.main(["associate", "--backbone", "smallcnn.scratch", "--backbone",
                     str(root / "ft0.pt"), "--backbone", str(root / "ft1.pt"), "--concepts",
                     f"avatars:{cache}", "--comparison-groups", "avatars", "--objects", "hat",
                     "--out", str(out), "--image-size", "32", "--per-set", "8", "--split", "all",
                     "--retention-bootstrap", "50", "--device", "cpu", *extra])


def test_groups_and_retention_are_written(workspace, capsys):
    root, cache = workspace
    out = root / "out" / "table.csv"
    assert run(root, cache, out) == 0
    assert not out.exists()  # no --tests: no association table
    groups = pd.read_csv(root / "out" / "table_groups.csv")
    assert list(groups.columns) == GROUP_COLUMNS
    assert len(groups) == 3 * 16  # three models, 16 items for one object
    assert (groups["ci_low"] <= groups["value"] + 1e-9).all()
    assert "neutral vs dark" in set(groups["item"]) and "hat+dark vs hat" in set(groups["item"])
    retention = pd.read_csv(root / "out" / "table_retention.csv")
    assert set(RETENTION_COLUMNS) <= set(retention.columns)
    assert set(retention["model"]) == {str(root / "ft0.pt"), str(root / "ft1.pt"),
                                       "mean of 2 finetunes"}
    assert set(retention["group"]) == {"indiv", "pairs", "comps", "object", "hat"}
    assert retention["rho"].between(-1, 1).all()
    assert (root / "out" / "table_retention.png").stat().st_size > 1000
    assert "table_retention.csv" in capsys.readouterr().out


def test_groups_need_objects_and_something_to_measure(workspace, capsys):
    root, cache = workspace
    status = cli.main(["associate", "--backbone", "smallcnn.scratch", "--concepts",
                       f"avatars:{cache}", "--out", str(root / "x.csv")])
    assert status == 2 and "nothing to measure" in capsys.readouterr().err
    status = cli.main(["associate", "--backbone", "smallcnn.scratch", "--concepts",
                       f"avatars:{cache}", "--comparison-groups", "avatars",
                       "--out", str(root / "x.csv")])
    assert status == 2 and "--objects" in capsys.readouterr().err


def test_finetunes_of_one_condition_are_grouped_as_trials(workspace, tmp_path):
    from analyze.association.groups import comparison_groups
    from analyze.association.options import EmbedOptions
    from analyze.association.retention import RetentionOptions
    from analyze.association.run import load_concepts, run_comparison_groups

    root, cache = workspace
    backbone = create_backbone("smallcnn.scratch")
    condition = {"kind": "correlation", "level": 0.9}
    for seed in (0, 1):  # a finetune spec recorded as the condition names its seed too
        save_checkpoint(tmp_path / f"d{seed}.pt", backbone.model, arch="smallcnn",
                        arch_kwargs={"width": 16}, preprocess=backbone.preprocess,
                        meta={"base": "smallcnn.scratch", "condition": {**condition, "seed": seed},
                              "seed": seed})
    items = comparison_groups(["hat"], names="avatars")
    sets = load_concepts(f"avatars:{cache}", sorted({n for i in items for n in i.sets}),
                         per_set=8, split=None)
    _, retention = run_comparison_groups(
        ["smallcnn.scratch", str(tmp_path / "d0.pt"), str(tmp_path / "d1.pt")], sets, items,
        options=RetentionOptions(n_bootstrap=20), embed=EmbedOptions(image_size=32))
    mean = retention[retention["model"] == "mean of 2 finetunes"]
    assert len(mean) and (mean["rho"] == 1.0).all()  # identical weights: nothing changed
    assert set(mean["condition"]) == {str(condition)}
