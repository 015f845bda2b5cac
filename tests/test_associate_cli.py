"""``biastransfer associate`` end to end: CSV, change summary and plot written; errors exit 2."""


import pandas as pd
import pytest
import torch

from analyze import cli
from analyze.association.report import plot_association
from analyze.association.run import COLUMNS
from extract.backbones import create_backbone, save_checkpoint
from extract.datasets.avatars import RenderSpec, render_dataset
from tests.fake_trees import write_image

SPEC = """
[defaults]
n_permutations = 100
n_bootstrap = 50

[[tests]]
name = "hat ~ dark vs light"
kind = "concept"
W = "hat"
A = "dark"
B = "light"

[[tests]]
name = "hat: pairs"
kind = "pair"
object = "hat"
object_with_a = "hat+dark"
object_with_b = "hat+light"
"""


pytestmark = pytest.mark.usefixtures("one_torch_thread_per_module")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("associate")
    cache = render_dataset(root / "avatars.h5", spec=RenderSpec(n=300, size=32, seed=0, signal_sample=4), workers=1, progress=False)
    (root / "tests.toml").write_text(SPEC)
    backbone = create_backbone("smallcnn.scratch")
    with torch.no_grad():
        for parameter in backbone.model.parameters():
            parameter.mul_(1.1)
    save_checkpoint(root / "ft.pt", backbone.model, arch="smallcnn", arch_kwargs={"width": 16},
                    preprocess=backbone.preprocess,
                    meta={"base": "smallcnn.scratch", "condition": "balanced", "seed": 0})
    return root, cache


def test_cli_writes_table_summary_and_plot(workspace, capsys):
    root, cache = workspace
    out = root / "out" / "table.csv"
    status = cli.main(["associate", "--backbone", "smallcnn.scratch", "--backbone",
                       str(root / "ft.pt"), "--concepts", f"avatars:{cache}", "--tests",
                       str(root / "tests.toml"), "--out", str(out), "--null-seeds", "2",
                       "--image-size", "32", "--per-set", "8", "--split", "all",
                       "--device", "cpu"])
    assert status == 0
    table = pd.read_csv(out)
    assert list(table.columns) == COLUMNS and len(table) == 6
    assert sorted(table["stage"].unique()) == ["after", "before", "change"]
    assert (table.loc[table["stage"] != "change", "null_n"] == 2).all()
    assert set(table["n_x"]) == {8}
    summary = pd.read_csv(root / "out" / "table_change.csv")
    assert list(summary["condition"]) == ["balanced", "balanced"]
    for suffix in (".png", ".svg"):
        assert (root / "out" / f"table{suffix}").stat().st_size > 1000
    assert (root / "out" / "table.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((root / "out").glob(".*partial"))
    assert "wrote" in capsys.readouterr().out


def test_plot_without_change_rows(workspace):
    root, _ = workspace
    table = pd.DataFrame({"backbone": ["b", "b"], "model": ["b", "b"], "stage": ["before"] * 2,
                          "test": ["t1", "t2"], "effect_size": [0.2, -0.1], "ci_low": [0.0, -0.3],
                          "ci_high": [0.4, 0.1], "null_mean": [0.05, 0.0]})
    paths = plot_association(table, root / "plots" / "values")
    assert [p.name for p in paths] == ["values.png", "values.svg"]


@pytest.mark.parametrize("change, pattern", [
    ({"--concepts": "folder:{root}/no-such-folder"}, "is not a folder"),
    ({"--concepts": "zip:{root}"}, "--concepts 'zip:"),  # the library's `source`, in the verb's words
    ({"--tests": "{root}/bad.toml"}, "unknown key 'W'"),
    ({"--tests": "{root}/unknown-set.toml"}, "avatar concept set 'cap' is unknown"),
    ({"--backbone": "resnet9.scratch"}, "unknown backbone"),
    ({"--out": "{root}/table.txt"}, "not a .csv"),
])
def test_bad_inputs_exit_2_with_one_sentence(workspace, capsys, change, pattern):
    root, cache = workspace
    (root / "bad.toml").write_text(SPEC.replace('name = "hat: pairs"', 'name = "p"\nW = "x"'))
    (root / "unknown-set.toml").write_text(SPEC.replace('W = "hat"', 'W = "cap"'))
    args = {"--backbone": "smallcnn.scratch", "--concepts": f"avatars:{cache}",
            "--tests": str(root / "tests.toml"), "--out": str(root / "x.csv")}
    args.update({key: value.format(root=root) for key, value in change.items()})
    argv = ["associate", *[item for pair in args.items() for item in pair], "--null-seeds", "0",
            "--per-set", "8", "--split", "all", "--image-size", "32", "--device", "cpu"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert pattern in err and "Traceback" not in err and err.count("\n") == 1
    assert not (root / "x.csv").exists()


def test_folder_concepts_end_to_end(tmp_path):
    for c, concept in enumerate(("hat", "dark", "light")):
        for i in range(3):
            write_image(tmp_path / "concepts" / concept / f"{i}.png", seed=10 * c + i, size=20)
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.split("[[tests]]\nname = \"hat: pairs\"")[0])
    out = tmp_path / "t.csv"
    status = cli.main(["associate", "--backbone", "smallcnn.scratch", "--concepts",
                       f"folder:{tmp_path / 'concepts'}", "--tests", str(spec), "--out", str(out),
                       "--null-seeds", "2", "--image-size", "16", "--folder-size", "20",
                       "--no-plot", "--device", "cpu"])
    assert status == 0
    table = pd.read_csv(out)
    assert len(table) == 1 and table["n_x"].iat[0] == 3 and table["null_n"].iat[0] == 2
    assert not (tmp_path / "t.png").exists()
