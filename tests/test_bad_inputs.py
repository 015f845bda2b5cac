"""The bad-input catalogue: every case exits non-zero with one sentence that names the problem.

CLI cases go through ``analyze.cli.main`` (exit status 2, one line ``biastransfer <verb>:
error: ...`` on stderr, no traceback); Python API cases raise :class:`UserError` with a
one-line message. The table in docs/troubleshooting.md lists the same cases and fixes.
Nothing may touch the network: every test runs with downloads and internet sockets
patched to fail.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import urllib.request
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from analyze.cli import main
from extract.backbones import (
    Preprocess,
    create_backbone,
    load_checkpoint,
    save_checkpoint,
)
from extract.errors import UserError
from extract.models.smallcnn import SmallCNN
from extract.store.reader import FeatureStore

PROGRESS = re.compile(r"\d+%\||it/s|img/s|cell/s")


def one_sentence(text: str, pattern: str) -> str:
    """Assert ``text`` is one line, no traceback, ends like a sentence and matches ``pattern``."""
    line = text.strip()
    assert line and "\n" not in line and "Traceback" not in line, text
    assert line.endswith((".", "?")), line
    assert re.search(pattern, line), f"{pattern!r} not in {line!r}"
    return line


def cli_error(capsys, argv: list[str], pattern: str) -> str:
    """Run the CLI; assert exit 2 and exactly one non-progress stderr line naming the problem."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [seg for seg in re.split(r"[\r\n]", err) if seg.strip() and not PROGRESS.search(seg)]
    assert len(lines) == 1, err
    prefix = f"biastransfer {argv[0]}: error: "
    assert lines[0].startswith(prefix), lines[0]
    return one_sentence(lines[0][len(prefix):], pattern)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fail the test if anything tries to download or open an internet connection."""
    def refuse(*args, **kwargs):
        pytest.fail(f"a download was attempted: {args!r:.200}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(urllib.request, "urlretrieve", refuse)
    connect = socket.socket.connect

    def local_only(sock, address):  # DataLoader workers use AF_UNIX sockets: allowed
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            refuse(address)
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", local_only)


# -- fixtures: a tiny manifest dataset, checkpoints and damaged copies of a store -------------
@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """``imgs/0..5.png``, a corrupt ``bad.png`` and one manifest per kind of damage."""
    root = tmp_path_factory.mktemp("tree")
    (root / "imgs").mkdir()
    for i in range(6):
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(root / "imgs" / f"{i}.png")
    (root / "imgs" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (root.parent / "outside.png").write_bytes((root / "imgs" / "0.png").read_bytes())
    rows = [f"imgs/{i}.png,{'train' if i < 4 else 'test'},{i % 2}" for i in range(6)]
    manifests = {
        "manifest.csv": rows,
        "corrupt.csv": rows[:2] + ["imgs/bad.png,train,1"],
        "missing.csv": rows[:2] + ["imgs/nope.png,train,1"],
        "escape.csv": rows[:2] + ["../outside.png,train,1"],
        "empty.csv": [],
        "empty_path.csv": rows[:2] + [",train,1"],
        "link.csv": rows[:2] + ["imgs/link.png,train,1"],
    }
    (root / "imgs" / "link.png").symlink_to(root.parent / "outside.png")
    for name, lines in manifests.items():
        (root / name).write_text("\n".join(["path,split,y", *lines]) + "\n")
    (root / "twin.csv").write_text("path,split,y,y2\n" + "".join(f"imgs/{i}.png,train,{i % 2},{i % 2}\n" for i in range(6)))
    (root / "nonbinary.csv").write_text("path,split,age\n" + "".join(f"imgs/{i}.png,train,{20 + i}\n" for i in range(6)))
    return root


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Checkpoints (good, extra key, truncated), a regular file, and an empty TORCH_HOME."""
    folder = tmp_path_factory.mktemp("files")
    model = SmallCNN(width=16)
    good = save_checkpoint(folder / "good.pt", model, arch="smallcnn", arch_kwargs={"width": 16},
                           preprocess=Preprocess(resize=16, crop=16))
    state = dict(model.state_dict(), **{"head.weight": torch.zeros(2, 128)})
    torch.save(state, folder / "extra_key.pt")
    data = good.read_bytes()
    (folder / "truncated.pt").write_bytes(data[: len(data) // 2])
    torch.save(model.state_dict(), folder / "plain_state.pt")
    (folder / "a_file").write_text("a regular file, not a folder")
    (folder / "torch_home").mkdir()
    return folder


def _variant(src: Path, dst: Path, edit) -> Path:
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as h5:
        edit(h5)
    return dst


@pytest.fixture(scope="module")
def stores(avatar_store, tmp_path_factory):
    """Damaged copies of the shared avatar store (600 rows), by kind of damage."""
    folder, src = tmp_path_factory.mktemp("bad_stores"), avatar_store.path
    data = src.read_bytes()
    (folder / "truncated.h5").write_bytes(data[: len(data) * 3 // 4])

    def poison(h5):
        h5["features"][5, 3] = np.nan

    def set_attr(name, value, **more):
        def edit(h5):
            for key, val in {name: value, **more}.items():
                h5.attrs[key] = val
        return edit

    def attribute(name, values):
        def edit(h5):
            h5["attributes"][name][...] = values(h5)
        return edit

    def reorder(h5):
        h5["image_id"][...] = h5["image_id"].asstr()[...][::-1].astype(object)

    def cut_width(h5):  # half the feature columns, feature_dim edited to match; backbone_config untouched
        kept = h5["features"][:, :64]
        del h5["features"]
        h5.create_dataset("features", data=kept)
        h5.attrs["feature_dim"] = np.int64(64)

    return {
        "ok": src,
        "cut": _variant(src, folder / "cut.h5", cut_width),
        "renamed": _variant(src, folder / "renamed.h5", set_attr("backbone_name", "resnet18.tv_in1k")),
        "truncated": folder / "truncated.h5",
        "nan": _variant(src, folder / "nan.h5", poison),
        "incomplete": _variant(src, folder / "incomplete.h5", set_attr("complete", np.False_, rows_written=np.int64(300))),
        "other_dataset": _variant(src, folder / "other.h5", set_attr("dataset_name", "faces")),
        "reordered": _variant(src, folder / "reordered.h5", reorder),
        "constant": _variant(src, folder / "constant.h5", attribute("hat", lambda h5: 0)),
        "nonbinary": _variant(src, folder / "nonbinary.h5", attribute("hat", lambda h5: 2 * h5["attributes/hat"][...])),
        # every hat wearer is dark: the (hat=1, dark_skin=0) group is empty
        "empty_group": _variant(src, folder / "coupled.h5",
                                attribute("hat", lambda h5: h5["attributes/hat"][...] * h5["attributes/dark_skin"][...])),
    }


def _paths(tree, files, stores, tmp_path, avatar_cache) -> dict:
    return {"tree": tree, "files": files, "tmp": tmp_path, "cache": avatar_cache,
            **{f"store_{k}": v for k, v in stores.items()}}


def _extract(*extra, manifest="manifest.csv"):
    return ["extract", "--dataset", "manifest", "--root", "{tree}", "--option", f"manifest={manifest}",
            "--backbone", "smallcnn.scratch", "--image-size", "16", "--workers", "0", "--device", "cpu",
            "--out", "{tmp}/out.h5", *extra]


def _probe(store="ok", *extra, target="hat", levels="0.5", n="40"):
    return ["probe", "--store", f"{{store_{store}}}", "--target", target, "--sensitive", "dark_skin",
            "--levels", levels, "--n", n, "--seeds", "0", "--out", "{tmp}/results", *extra]


GRID = """
[grid]
targets = ["hat"]
sensitive = "dark_skin"

[[backbones]]
name = "a"
base_kind = "biased"
store = "{store}"

[[subsets]]
kind = "correlation"
levels = [0.5]
n = [40]
"""

CLI_CASES = [
    # images and datasets
    ("corrupt image", _extract(manifest="corrupt.csv"), r"image file \S*bad\.png is corrupt or not an image"),
    ("missing image", _extract(manifest="missing.csv"), r"image file \S*nope\.png is missing"),
    ("non-binary attribute column", _extract(manifest="nonbinary.csv"), r"attribute column 'age' of manifest is not binary"),
    ("manifest path escapes root", _extract(manifest="escape.csv"), r"'\.\./outside\.png' escapes the dataset root \S*tree"),
    ("empty dataset", _extract(manifest="empty.csv"), r"the manifest dataset has no images"),
    ("empty path cell in a manifest", _extract(manifest="empty_path.csv"),
     r"the manifest \S*empty_path\.csv has an empty 'path' cell in row 3 after the header; fill in the image path"),
    ("symbolic link out of the root", _extract(manifest="link.csv"),
     r"image path 'imgs/link\.png' leads outside the dataset root \S*tree\d* through a symbolic link"),
    ("unknown dataset", ["extract", "--dataset", "imagenet", "--root", "{tree}", "--backbone", "smallcnn.scratch"],
     r"unknown dataset 'imagenet'; choose one of"),
    ("missing dataset root", ["extract", "--dataset", "manifest", "--root", "{tmp}/nowhere", "--backbone", "smallcnn.scratch"],
     r"dataset root \S*nowhere does not exist; the manifest adapter expects"),
    ("avatar cache is not a cache", ["extract", "--dataset", "avatars", "--root", "{store_ok}", "--backbone", "smallcnn.scratch"],
     r"is not a complete avatar cache"),
    ("unknown adapter option", _extract("--option", "colour=red"), r"the manifest adapter has no option 'colour'"),
    ("malformed adapter option", _extract("--option", "seed"), r"adapter option 'seed' is not KEY=VALUE"),
    # backbones and weights
    ("unknown backbone", _extract("--backbone", "resnet51.tv_in1k"), r"unknown backbone 'resnet51\.tv_in1k'; did you mean"),
    ("missing weights file", _extract("--backbone", "resnet18.tv_in1k", "--weights", "{tmp}/nope.pth"),
     r"weights file \S*nope\.pth does not exist.*nothing is downloaded"),
    ("weights not in the torch cache", _extract("--backbone", "resnet18.tv_in1k"),
     r"needs its weights file resnet18-f37072fd\.pth.*nothing is downloaded"),
    ("checkpoint with unexpected keys", _extract("--weights", "{files}/extra_key.pt"), r"unexpected keys: \['head\.weight'\]"),
    ("checkpoint of another architecture", _extract("--backbone", "smallcnn_w32.scratch", "--weights", "{files}/good.pt"),
     r"has tensor '[\w.]+' of shape \(16, .* expects \(32, "),
    ("truncated checkpoint", _extract("--backbone", "{files}/truncated.pt"), r"cannot be loaded safely .*truncated"),
    # run options and outputs
    ("unwritable output folder", _extract("--out", "{files}/a_file/out.h5"), r"cannot write to the output folder \S*a_file"),
    ("output is a folder", _extract("--out", "{tmp}"), r"is a folder; pass a file path"),
    ("too little free space for a store", _extract("--out", "{tmp}/tiny_disk/out.h5"),
     r"the feature store \S*out\.h5 needs about [\d.]+ kB more but \S*tiny_disk has 0\.1 kB free"),
    ("bad --device", _extract("--device", "tpu"), r"unknown device 'tpu'"),
    ("device decode of an in-memory dataset", ["extract", "--dataset", "avatars", "--root", "{cache}", "--backbone",
                                               "smallcnn.scratch", "--decode", "device", "--out", "{tmp}/out.h5"],
     r"the avatars dataset holds decoded images in memory.*use --decode host\."),
    ("bad --batch-size", _extract("--batch-size", "0"), r"--batch-size must be at least 1"),
    ("too small --image-size", _extract("--image-size", "4"), r"image size 4 is too small"),
    ("usage: missing argument", ["extract", "--dataset", "manifest"],
     r"the following arguments are required: --root, --backbone; see `biastransfer extract --help`"),
    ("usage: unknown option", ["store", "{tmp}/x.h5", "--colour", "red"],
     r"unrecognized arguments: --colour red; see `biastransfer store --help`"),
    # feature stores
    ("store path missing", ["store", "{tmp}/none.h5"], r"none\.h5 does not exist; run `biastransfer extract` first"),
    ("store path is a folder", ["store", "{tmp}"], r"is a folder, not a feature store"),
    ("truncated HDF5 store", ["store", "{store_truncated}"], r"truncated\.h5 is not a readable HDF5 feature store \(truncated"),
    ("interrupted store", ["store", "{store_incomplete}"], r"is incomplete \(300 of 600 rows\); rerun `biastransfer extract`"),
    ("not a feature store", _probe("ok")[:2] + ["{cache}"] + _probe("ok")[3:], r"is not a biastransfer feature store"),
    ("NaN features in a store", _probe("nan"), r"holds NaN or infinite features \(first at image 'avatar_000005', row 5\)"),
    ("store cut to another width", ["store", "{store_cut}"],
     r"has 64 features per image, but its backbone_config records smallcnn\.scratch with 128"),
    ("probe on a store cut to another width", _probe("cut"), r"has 64 features per image, but its backbone_config"),
    ("store with a renamed backbone", _probe("renamed"),
     r"names backbone 'resnet18\.tv_in1k' but its backbone_config records 'smallcnn\.scratch'"),
    # subsets and probes
    ("unknown attribute", _probe(target="moustache"), r"the metadata has no column 'moustache'; choose one of"),
    ("non-binary store column", _probe("nonbinary"), r"column 'hat' is not binary"),
    ("constant target", _probe("constant"), r"column 'hat' is constant \(only 0\)"),
    ("empty group", _probe("empty_group"), r"cell \(hat=1, dark_skin=0\) has 0 rows in the train pool"),
    ("infeasible n", _probe(n="100000"), r"n=100000 is infeasible.*the largest feasible n is \d+"),
    ("infeasible correlation level", _probe(levels="1.5"), r"level=1\.5 is outside \[0, 1\]"),
    ("target equals sensitive", _probe(target="dark_skin"), r"uses the column 'dark_skin' twice"),
    ("bad probe --device", _probe("ok", "--device", "tpu"), r"unknown device 'tpu'; use auto, cpu, cuda or cuda:N"),
    ("unwritable results folder", _probe("ok")[:-1] + ["{files}/a_file/results"], r"cannot write results into \S*a_file"),
    # other verbs
    ("avatar size out of range", ["avatars", "render", "--n", "4", "--size", "16", "--out", "{tmp}/a.h5"],
     r"size must be an integer between 32 and 128"),
    ("unknown avatar preset", ["avatars", "render", "--n", "4", "--preset", "cartoon", "--out", "{tmp}/a.h5"],
     r"unknown avatar preset 'cartoon'"),
    ("association spec with an unknown key", ["associate", "--backbone", "smallcnn.scratch", "--concepts", "avatars:{cache}",
                                              "--tests", "{tmp}/unknown_key.toml", "--out", "{tmp}/a.csv"],
     r"unknown key 'test'"),
    ("unparsable association spec", ["associate", "--backbone", "smallcnn.scratch", "--concepts", "avatars:{cache}",
                                     "--tests", "{tmp}/broken.toml", "--out", "{tmp}/a.csv"], r"cannot be parsed .*fix its syntax"),
    ("grid seeds that are not numbers", ["sweep", "{tmp}/grid.toml", "--seeds", "abc", "--dry-run"],
     r"seeds = 'abc' in subset block 0 \(correlation\) is not a count or a list of whole-number seeds"),
    ("fractional grid seeds", ["sweep", "{tmp}/grid.toml", "--seeds", "2.5", "--dry-run"],
     r"seeds = 2\.5 in subset block 0 \(correlation\) is not a count"),
    ("empty grid levels", ["sweep", "{tmp}/grid.toml", "--set", "subsets.correlation.levels=[]", "--dry-run"],
     r"levels = \[\] in subset block 0 \(correlation\) is empty"),
    ("a list of sensitive attributes", ["sweep", "{tmp}/grid.toml", "--set", 'grid.sensitive=["dark_skin"]', "--dry-run"],
     r"grid\.sensitive = \['dark_skin'\] must be one attribute name"),
    ("effects on a table without a target column", ["effects", "{tmp}/no_target.csv", "--salience", "{tmp}/salience.csv",
                                                    "--model", "general", "--out", "{tmp}/effects"],
     r"the table has no 'target' column, which joining salience needs"),
    ("collect with a bad result file", ["collect", "{tmp}/bad_results", "--out", "{tmp}/table.csv"],
     r"result file \S*zz_bad\.json is unreadable or truncated \(JSONDecodeError\); delete it and rerun the sweep "
     r"\(it redoes those cells\); no other record there is readable\."),
    ("recipe with controls but no sensitive attribute", ["pretrain", "--recipe", "{tmp}/no_sensitive.toml",
                                                         "--out-dir", "{tmp}/bases"],
     r"no_sensitive\.toml has control bases but no sensitive attribute; set \[data\] sensitive"),
    ("recipe whose control follows the sensitive attribute", ["pretrain", "--recipe", "{tmp}/correlated.toml",
                                                              "--out-dir", "{tmp}/bases"],
     r"control attribute 'y' has phi 1\.000 with the sensitive attribute 'y2' in the pretraining data \(limit 0\.1\)"),
    ("salience without inputs", ["salience", "--targets", "hat", "--sensitive", "dark_skin", "--method", "probe"],
     r"pass --dataset and --root .* or --store"),
]


@pytest.mark.parametrize("argv, pattern", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input(argv, pattern, capsys, monkeypatch, tree, files, stores, tmp_path, avatar_cache):
    monkeypatch.setenv("TORCH_HOME", str(files / "torch_home"))  # no weight file is ever cached here
    (tmp_path / "unknown_key.toml").write_text('[[test]]\nname = "x"\n')
    (tmp_path / "broken.toml").write_text("[[tests]\nname = \n")
    (tmp_path / "grid.toml").write_text(GRID.format(store=stores["ok"]))
    (tmp_path / "no_target.csv").write_text("backbone,base_kind,level,fpr_gap_stereotype\nb,biased,0.5,0.1\n")
    (tmp_path / "salience.csv").write_text("target,salience\nhat,0.2\n")
    recipe = ('[data]\ndataset = "manifest"\nroot = "{root}"\noptions = {{ manifest = "{manifest}" }}\n{extra}'
              '[[bases]]\nname = "c"\nrole = "control"\nattributes = ["y"]\n')
    (tmp_path / "no_sensitive.toml").write_text(recipe.format(root=tree, manifest="manifest.csv", extra=""))
    (tmp_path / "correlated.toml").write_text(recipe.format(root=tree, manifest="twin.csv", extra='sensitive = "y2"\n'))
    (tmp_path / "bad_results").mkdir()
    (tmp_path / "bad_results" / "zz_bad.json").write_text('{"schema": "biastransfer-result-v1", "cell')
    usage = shutil.disk_usage(tmp_path)
    real_usage = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage",  # a folder named tiny_disk has 100 bytes free
                        lambda p: usage._replace(free=100) if "tiny_disk" in str(p) else real_usage(p))
    paths = _paths(tree, files, stores, tmp_path, avatar_cache)
    cli_error(capsys, [arg.format(**paths) for arg in argv], pattern)
    assert not (tmp_path / "out.h5").exists()  # nothing reads as a finished store


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cli_cuda_without_cuda(capsys, tree, tmp_path):
    argv = [a.format(tree=tree, tmp=tmp_path) for a in _extract("--device", "cuda")]
    cli_error(capsys, argv, r"device 'cuda' was requested but CUDA is not available")


def test_probe_checks_its_output_folder_before_any_work(capsys, monkeypatch, files, stores):
    def too_late(*args, **kwargs):
        pytest.fail("the store was opened or probes were fitted before --out was checked")

    monkeypatch.setattr(FeatureStore, "open", too_late)
    monkeypatch.setattr("analyze.probe.cells.run_probe_cells", too_late)
    argv = [a.format(store_ok=stores["ok"], tmp="unused") for a in _probe("ok")[:-1]] + [f"{files}/a_file/results"]
    cli_error(capsys, argv, r"cannot write results into \S*a_file/results \(Not a directory\); choose a writable --out")


# -- Python API --------------------------------------------------------------------------------
def test_stores_with_different_row_orders(stores):
    with pytest.raises(UserError) as info:
        FeatureStore.open(stores["ok"]).check_same_rows(FeatureStore.open(stores["reordered"]))
    one_sentence(str(info.value), r"list the same images in different orders \(row 0 is 'avatar_000000' vs 'avatar_000599'\)")


def test_store_from_another_dataset(stores):
    with pytest.raises(UserError) as info:
        FeatureStore.open(stores["ok"]).check_same_rows(FeatureStore.open(stores["other_dataset"]))
    one_sentence(str(info.value), r"holds dataset 'avatars' but \S+ holds 'faces'")


def test_infinite_features_in_a_probe():
    from analyze.probe import ProbeConfig, ProbeTask, fit_probes

    X = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
    X[7, 2] = np.inf
    task = ProbeTask(train=np.arange(40), val=np.arange(40, 50), labels=np.arange(60) % 2, test=np.arange(50, 60))
    with pytest.raises(UserError) as info:
        fit_probes(X, [task], config=ProbeConfig(Cs=[1.0]))
    one_sentence(str(info.value), r"NaN or inf in training rows of task 0")


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["NaN", "inf"])
def test_non_finite_features_in_a_linear_probe(bad):
    from analyze.probe import LinearProbe, ProbeInputError

    X = np.random.default_rng(0).normal(size=(40, 3))
    X[7, 2] = bad
    with pytest.raises(ProbeInputError) as info:
        LinearProbe().fit(X, np.arange(40) % 2)
    assert isinstance(info.value, ValueError)  # what scikit-learn's estimator checks expect
    one_sentence(str(info.value), r"X contains NaN or infinite values \(first at row 7, column 2: (nan|inf)\); "
                                  r"drop or impute those values before fitting")


def test_constant_target_in_a_probe():
    from analyze.probe import ProbeConfig, ProbeTask, fit_probes

    X = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
    task = ProbeTask(train=np.arange(40), val=np.arange(40, 50), labels=np.zeros(60, int), test=np.arange(50, 60))
    with pytest.raises(UserError) as info:
        fit_probes(X, [task], config=ProbeConfig(Cs=[1.0]))
    one_sentence(str(info.value), r"only one class")


@pytest.mark.parametrize("y_true, scores, pattern", [
    ([0, 1, 1, 0], [0.1, np.nan, 0.3, 0.2], r"`scores` contains NaN"),
    ([0, 2, 1, 0], [0.1, 0.2, 0.3, 0.4], r"`y_true` must contain only 0 and 1"),
], ids=["NaN scores", "non-binary labels"])
def test_metric_inputs(y_true, scores, pattern):
    from analyze.metrics import evaluate_runs

    with pytest.raises(UserError) as info:
        evaluate_runs(np.array(y_true), np.array(scores), np.array([0, 0, 1, 1]))
    one_sentence(str(info.value), pattern)


def test_empty_group_in_a_subset(avatar_store):
    from analyze.subsets import Correlation

    meta = avatar_store.metadata.copy()
    meta.loc[meta["hat"] == 1, "dark_skin"] = 1
    with pytest.raises(UserError) as info:
        Correlation("hat", "dark_skin", 0.5, n=40, seed=0).indices(meta)
    one_sentence(str(info.value), r"cell \(hat=1, dark_skin=0\) has 0 rows in the train pool")


@pytest.mark.parametrize("spec, pattern", [
    ({"kind": "correlation", "target": "hat"}, r"the 'correlation' spec lacks the field\(s\) \['sensitive', 'level'\]"),
    ({"kind": "stratified"}, r"subset spec kind 'stratified' is unknown"),
    ({"kind": "natural", "target": "hat", "sensitive": "dark_skin", "colour": 1}, r"unknown field\(s\) \['colour'\]"),
], ids=["missing field", "unknown kind", "unknown field"])
def test_subset_spec_files(spec, pattern):
    from analyze.subsets import spec_from_dict

    with pytest.raises(UserError) as info:
        spec_from_dict(json.loads(json.dumps(spec)))
    one_sentence(str(info.value), pattern)


@pytest.mark.parametrize("content, pattern", [
    ('{"schema": "biastransfer-result-v1", "cell_id": "probe__x", "met', r"unreadable or truncated \(JSONDecodeError\)"),
    ("", r"unreadable or truncated"),
    ('{"schema": "something-else", "metrics": {}}', r"is not a biastransfer-result-v1 record"),
], ids=["truncated", "empty", "foreign"])
def test_bad_result_files_are_refused_and_redone(tmp_path, content, pattern):
    from analyze.results.records import read_record, record_exists

    (tmp_path / "cell.json").write_text(content)
    with pytest.raises(UserError) as info:
        read_record(tmp_path / "cell.json")
    one_sentence(str(info.value), pattern)
    assert not record_exists(tmp_path, "cell")  # --skip-existing redoes the cell


def test_missing_weights_never_download(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for name, weights in (("resnet50.tv2_in1k", None), ("resnet50.moco_v3", tmp_path / "r-50.pth.tar")):
        with pytest.raises(UserError) as info:
            create_backbone(name, weights=weights)
        one_sentence(str(info.value), r"nothing is downloaded")


def test_plain_state_dict_is_not_a_toolkit_checkpoint(files):
    with pytest.raises(UserError) as info:
        load_checkpoint(files / "plain_state.pt")
    one_sentence(str(info.value), r"is not a biastransfer checkpoint; pass a registered backbone name and this file as `weights`")


def test_unknown_adapter_option_from_python(tree):
    from extract.datasets import get_adapter

    with pytest.raises(UserError) as info:
        get_adapter("manifest", tree, colour="red")
    one_sentence(str(info.value), r"has no option 'colour'; its options are \[")
