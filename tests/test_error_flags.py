"""Library errors name parameters; the command line writes them as its flags.

The library's messages mark the parameters (grid keys, recipe keys) they name with backticks
and never name a command-line flag (:class:`extract.errors.UserError`); each verb's parser
holds a table ``{parameter: flag}`` through which the CLI prints them.
"""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import pytest

from analyze import cli
from analyze.sweep.grid import preset_names
from analyze.sweep.run import sweep
from extract.cli.parser import OneLineParser, flag_table, map_params
from extract.errors import UserError, with_flags

REPO = Path(__file__).resolve().parents[1]
CLI_PACKAGES = ("analyze/cli/", "extract/cli/")
FLAG = re.compile(r"--[a-z]")


def _message_nodes(tree: ast.AST):
    """The expressions of ``tree`` that become an error's or a warning's text: what a ``raise``
    raises, the arguments of ``warnings.warn`` and of an exception's constructor (``return
    UserError(...)`` included), and the ``hint=`` that :func:`extract.io.atomic_write` ends its
    error with."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            yield node.exc
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "warn" or name.endswith(("Error", "Warning")):
                yield node
            else:
                yield from (k.value for k in node.keywords if k.arg == "hint")


def flags_in_library_messages(root: Path = REPO) -> list[str]:
    """``path:line: text`` of every string constant (f-string parts included) of an error or
    warning message outside the two CLI packages that names a flag (``--[a-z]``)."""
    hits = []
    for package in ("analyze", "extract"):
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            if relative.startswith(CLI_PACKAGES):
                continue
            for expression in _message_nodes(ast.parse(path.read_text(encoding="utf-8"))):
                for node in ast.walk(expression):
                    if isinstance(node, ast.Constant) and isinstance(node.value, str) and FLAG.search(node.value):
                        hits.append(f"{relative}:{node.lineno}: {node.value.strip()[:100]}")
    return list(dict.fromkeys(hits))  # a raised constructor is seen twice


def test_library_errors_and_warnings_name_no_flag():
    hits = flags_in_library_messages()
    assert not hits, ("library messages name command-line flags; name the parameter in backticks instead "
                      "(extract.errors.UserError):\n" + "\n".join(hits))


def test_the_scan_sees_raises_warnings_constructors_and_hints(tmp_path):
    (tmp_path / "analyze" / "cli").mkdir(parents=True)
    (tmp_path / "extract").mkdir()
    (tmp_path / "analyze" / "lib.py").write_text(
        "import warnings\n"
        "def f(n_jobs, out):\n"
        "    if n_jobs < 1:\n"
        "        raise UserError(f'--n-jobs must be positive, got {n_jobs}.')\n"
        "    warnings.warn('pass --keep newest')\n"
        "    write_text(out, '', hint='choose a writable --out')\n"
        "    print('--verbose is fine outside a message')\n"
        "    return OutputError('use --out')\n")
    (tmp_path / "analyze" / "cli" / "verb.py").write_text("raise UserError('--flags belong here')\n")
    hits = flags_in_library_messages(tmp_path)
    assert [hit.split(": ")[0] for hit in hits] == ["analyze/lib.py:4", "analyze/lib.py:5", "analyze/lib.py:6",
                                                    "analyze/lib.py:8"]


def test_with_flags_rewrites_only_marked_names_the_table_holds():
    table = {"n_jobs": "--n-jobs", "keep": "--keep", "overwrite": "--overwrite", "resume": "--no-resume",
             "formula": "--formula", "n": "--n", "backbones.*.store": "--store *=PATH",
             "subsets.*.*": "--set subsets.*.*="}
    assert with_flags("`n_jobs` must be a positive integer, got 0.", table) == "--n-jobs must be a positive integer, got 0."
    assert with_flags("pass `keep='newest'` or `keep='oldest'`.", table) == "pass --keep newest or --keep oldest."
    assert with_flags("pass `overwrite=True` or `resume=False`.", table) == "pass --overwrite or --no-resume."
    assert with_flags('needs `formula="y ~ x"`.', table) == 'needs --formula "y ~ x".'  # the shell needs the quotes
    assert with_flags("give `backbones.control.store`.", table) == "give --store control=PATH."
    assert with_flags("or `subsets.correlation.levels=...`.", table) == "or --set subsets.correlation.levels=...."
    # whole marked names only: n_train, an unmarked n, a name the table lacks and commands stay as written
    text = "`n_train` and n and `n_jobs_max` and `biastransfer extract` and ``n`` and `backbones.a.base`"
    assert with_flags(text, table) == text
    assert UserError("`n` 5 was not run").with_flags(table) == "--n 5 was not run"


def test_flag_table_from_the_options_dest_and_the_verbs_own_entries():
    parser = OneLineParser(prog="x")
    parser.add_argument("--n-jobs", "-j", type=int)
    parser.add_argument("--set", dest="overrides", action="append")
    parser.add_argument("grid")
    map_params(parser, {"num_workers": "--workers"})
    assert flag_table(parser) == {"n_jobs": "--n-jobs", "overrides": "--set", "num_workers": "--workers"}
    plain = argparse.ArgumentParser()  # a test's plain parser takes entries too
    map_params(plain, {"a": "--b"})
    assert flag_table(plain)["a"] == "--b"


def test_a_nested_verb_records_its_own_table():
    args = cli.build_parser("avatars").parse_args(["avatars", "render", "--out", "x.h5"])
    assert args.param_flags["out"] == "--out"
    assert cli.build_parser("sweep").parse_args(["sweep", "g"]).param_flags["grid.targets"] == "--targets"


def test_the_library_names_the_parameter_and_the_cli_the_flag(capsys):
    with pytest.raises(UserError, match=r"^`n_jobs` must be a positive integer, got 0\.$"):
        sweep(preset_names()[0], n_jobs=0, progress=False)
    assert cli.main(["sweep", preset_names()[0], "--n-jobs", "0"]) == 2
    err = capsys.readouterr().err
    assert err == "biastransfer sweep: error: --n-jobs must be a positive integer, got 0.\n"


def test_a_grid_key_reads_as_the_flag_that_sets_it(tmp_path, capsys):
    grid = tmp_path / "grid.toml"
    grid.write_text('[grid]\nname = "g"\nrunners = ["finetune"]\ntargets = ["hat"]\nsensitive = "dark_skin"\n'
                    '[[backbones]]\nname = "b"\nbase_kind = "biased"\nbase = "smallcnn.scratch"\n'
                    '[[subsets]]\nkind = "correlation"\nlevels = [0.5]\nn = [40]\nseeds = [0]\n')
    with pytest.raises(UserError, match="give `data.dataset` and `data.root`"):
        sweep(grid, out=tmp_path / "out", dry_run=True, progress=False)
    assert cli.main(["sweep", str(grid), "--dry-run", "--out", str(tmp_path / "out")]) == 2
    assert "needs a dataset of images; give --dataset and --root." in capsys.readouterr().err
