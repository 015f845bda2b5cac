"""The console script: help, listings, and one-sentence errors with exit status 2."""

import re
import subprocess
import sys

import pytest

from analyze.cli import main


def test_help_lists_verbs(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for verb in ("extract", "avatars", "backbones", "datasets", "store", "demo"):
        assert verb in out


def test_verb_table_matches_what_the_modules_register():
    import importlib

    from analyze.cli import VERBS
    from extract.cli.parser import OneLineParser

    registered = {}
    for module in dict.fromkeys(m for m, _ in VERBS.values()):
        sub = OneLineParser(prog="biastransfer").add_subparsers(dest="command")
        importlib.import_module(module).register(sub)
        registered.update({a.dest: (module, a.help) for a in sub._choices_actions})
    assert registered == VERBS


def test_help_imports_no_command_module():
    code = ("import sys; from analyze.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'statsmodels', 'seaborn', 'analyze.report.build') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out and "associate-experiment" in out


def test_backbones_lists_registry(capsys):
    assert main(["backbones"]) == 0
    assert "smallcnn.scratch" in capsys.readouterr().out


def test_datasets_lists_adapters(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in ("avatars", "celeba", "coco", "fairface", "waterbirds", "manifest", "folder"):
        assert name in out


def test_no_verb_prints_help_and_fails(capsys):
    assert main([]) == 2


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["extract", "--dataset", "nosuch", "--root", ".", "--backbone", "smallcnn.scratch"], "unknown dataset"),
        (["store", "does-not-exist.h5"], "does-not-exist.h5"),
    ],
)
def test_bad_input_is_one_sentence_exit_2(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1


def test_unknown_backbone_via_console_script(tmp_path):
    # Through a real subprocess: exit status and stderr as a user sees them.
    proc = subprocess.run(
        [sys.executable, "-m", "analyze.cli", "extract", "--dataset", "folder", "--root", str(tmp_path),
         "--backbone", "nosuch.net"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr



@pytest.mark.parametrize(
    "argv, prog, pattern",
    [
        (["extract", "--dataset", "folder"], "biastransfer extract", r"the following arguments are required: --root, --backbone"),
        (["probe", "--store", "s.h5", "--target", "hat", "--sensitive", "dark_skin", "--kind", "nope"], "biastransfer probe",
         r"argument --kind: invalid choice: 'nope'"),
        (["probe", "--store", "s.h5", "--target", "hat", "--sensitive", "dark_skin", "--levels", "a,b"], "biastransfer probe",
         r"argument --levels: expected comma-separated numbers, got 'a,b'"),
        (["store", "s.h5", "--colour", "red"], "biastransfer store", r"unrecognized arguments: --colour red"),
        (["avatars", "render", "--n", "many"], "biastransfer avatars render", r"argument --n: invalid int value: 'many'"),
        (["avatars"], "biastransfer avatars", r"the following arguments are required: VERB"),
        (["nosuch"], "biastransfer", r"argument COMMAND: invalid choice: 'nosuch' \(choose from .*'extract'"),
    ],
    ids=["missing required", "invalid choice", "bad value type", "unknown option", "nested verb", "missing verb", "unknown verb"],
)
def test_usage_error_is_one_line_exit_2(argv, prog, pattern, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err  # no usage block
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    assert lines[0].endswith(f"; see `{prog} --help`."), lines[0]
    assert re.search(pattern, lines[0]), lines[0]


def test_usage_error_via_console_script():
    proc = subprocess.run([sys.executable, "-m", "analyze.cli", "extract", "--dataset", "folder", "--no-such-option"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "biastransfer extract: error: the following arguments are required: --root, --backbone; "
        "see `biastransfer extract --help`."]


def test_no_help_text_shows_a_doubled_percent_sign():
    """argparse %-formats argument help but not a description, so ``95%%`` there printed as is."""
    from analyze.cli import VERBS, build_parser

    helps = {}
    for verb in VERBS:
        helps[verb] = next(a for a in build_parser(verb)._actions if a.dest == "command").choices[verb].format_help()
        assert "%%" not in helps[verb], f"`biastransfer {verb} --help` prints '%%'"
    assert "95% intervals" in " ".join(helps["report"].split())
    assert "95% interval" in " ".join(helps["reproduce"].split())


def test_the_command_sets_a_passive_openmp_wait_policy_unless_the_user_chose_one():
    """OpenMP reads its wait policy when torch loads: the command sets it first, and importing it loads no torch."""
    import subprocess
    import sys

    from analyze.cli import configure_environment

    env = {}
    configure_environment(env)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    chosen = {"OMP_WAIT_POLICY": "ACTIVE"}
    configure_environment(chosen)
    assert chosen == {"OMP_WAIT_POLICY": "ACTIVE"}
    code = "import sys, analyze.cli; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
