"""Safe loading: no pickle, torch.load only with weights_only=True, no download calls, and a
checkpoint that carries a malicious pickle payload is refused without running it.

The source scan parses every module of ``extract/`` and ``analyze/`` (``ast``), so words in
docstrings and comments do not count, but every call does, however it is spelled.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from extract.backbones import create_backbone, load_checkpoint, load_state_file
from extract.errors import UserError

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("extract", "analyze")
# Modules that deserialise arbitrary Python objects (code execution on load).
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "marshal", "joblib.numpy_pickle"}
UNSAFE_CALLS = {"read_pickle", "pickle.load", "pickle.loads", "joblib.load", "torch.jit.load", "jit.load"}
# Calls that fetch files from the internet.
DOWNLOAD_CALLS = {"urlretrieve", "urlopen", "load_state_dict_from_url", "download_url_to_file", "hf_hub_download",
                  "snapshot_download", "requests.get", "requests.post", "httpx.get", "torch.hub.load", "hub.load",
                  "download_url", "wget.download"}


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` for a Name/Attribute chain, else ''."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_calls(source: str, filename: str = "<source>") -> list[str]:
    """Every unsafe import or call in ``source``, as ``file:line: what``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            names += [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) else []
            bad = [n for n in names if n.split(".")[0] in UNSAFE_MODULES or n in UNSAFE_MODULES]
            found += [f"{where}: imports {n}" for n in bad]
            continue
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        short = name.rsplit(".", 1)[-1]
        keywords = {k.arg: k.value for k in node.keywords}
        if name in UNSAFE_CALLS or short == "read_pickle":
            found.append(f"{where}: calls {name}")
        if name in DOWNLOAD_CALLS or short in DOWNLOAD_CALLS:
            found.append(f"{where}: downloads with {name}")
        if _is_true(keywords.get("download")):
            found.append(f"{where}: passes download=True to {name}")
        if name == "torch.load" and not _is_true(keywords.get("weights_only")):
            found.append(f"{where}: torch.load without weights_only=True")
        if short == "load" and name.split(".")[0] in {"np", "numpy"} and _is_true(keywords.get("allow_pickle")):
            found.append(f"{where}: np.load with allow_pickle=True")
    return found


def test_the_scanner_finds_what_it_looks_for():
    source = """
import pickle
from dill import loads
import torch, numpy as np, urllib.request, pandas as pd
torch.load(p)
torch.load(p, weights_only=False)
torch.load(p, weights_only=flag)
torch.load(p, map_location="cpu", weights_only=True)   # fine
np.load(p, allow_pickle=True)
np.load(p)                                              # fine
pd.read_pickle(p)
urllib.request.urlretrieve(u, p)
torch.hub.load_state_dict_from_url(u)
torchvision.datasets.CIFAR10(root, download=True)
requests.get(u)
'torch.load(p) in a string is fine'
"""
    found = unsafe_calls(source)
    lines = sorted({int(f.split(":")[1]) for f in found})
    assert lines == [2, 3, 5, 6, 7, 9, 11, 12, 13, 14, 15], found


def test_no_pickle_no_unsafe_torch_load_no_downloads_in_the_packages():
    files = [p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))]
    assert len(files) > 20
    found = [f for path in files for f in unsafe_calls(path.read_text(), str(path.relative_to(REPO)))]
    assert not found, "\n".join(found)


# -- a checkpoint with a malicious pickle payload --------------------------------------------
class Payload:
    """Unpickling this object would run ``os.system('touch MARKER')``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def evil(tmp_path):
    """A checkpoint whose payload creates a marker file when unpickled, and the marker path."""
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    state = {"format": "biastransfer-checkpoint-v1", "arch": "smallcnn", "arch_kwargs_json": "{}",
             "preprocess_json": "{}", "meta_json": "{}", "state_dict": {"stem.0.weight": torch.zeros(1)},
             "payload": Payload(marker)}
    torch.save(state, path)
    return path, marker


def test_the_payload_is_real(evil):
    # Proof that the file would run code under a plain pickle load (in a throwaway process).
    path, marker = evil
    code = f"import torch; torch.load({str(path)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                   timeout=120, cwd=str(Path(__file__).parent))
    assert marker.exists()


@pytest.mark.parametrize("load", [
    lambda path: create_backbone("smallcnn.scratch", weights=path),
    lambda path: create_backbone(path),
    lambda path: create_backbone(str(path)),
    lambda path: load_checkpoint(path),
    lambda path: load_state_file(path),
], ids=["create_backbone(weights=)", "create_backbone(path)", "create_backbone(str)", "load_checkpoint", "load_state_file"])
def test_malicious_checkpoint_is_refused_without_running(evil, load):
    path, marker = evil
    with pytest.raises(UserError, match=r"cannot be loaded safely \(UnpicklingError\)") as info:
        load(path)
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_malicious_checkpoint_through_the_cli(evil, capsys, tmp_path):
    from analyze.cli import main

    path, marker = evil
    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    Image.new("RGB", (16, 16)).save(tmp_path / "imgs" / "cat" / "a.png")
    argv = ["extract", "--dataset", "folder", "--root", str(tmp_path / "imgs"), "--backbone", str(path),
            "--out", str(tmp_path / "out.h5")]
    assert main(argv) == 2
    assert not marker.exists()
    err = capsys.readouterr().err
    assert "cannot be loaded safely" in err and "Traceback" not in err
