"""Every function of the two packages stays small: at most 8 parameters and 60 lines.

Options that travel together are one frozen config object (``ProbeConfig``, ``EvalConfig``,
``RunContext``, ``ExtractOptions``, ``PretrainConfig``, ...), so no signature needs more than
eight parameters; ``self``, ``cls`` and a bare ``*`` are not counted, ``*args`` and ``**kwargs``
are. A function's length is counted from its first statement after the docstring to its
last line, so documenting a function never pushes it over the limit.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("extract", "analyze")
MAX_PARAMETERS = 8
MAX_LINES = 60

# Functions allowed over the limits, each with its reason (none today).
ALLOWED: set[str] = set()


def parameter_count(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Named parameters plus ``*args``/``**kwargs``; ``self`` and ``cls`` left out."""
    args = node.args
    named = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs if a.arg not in ("self", "cls")]
    return len(named) + (args.vararg is not None) + (args.kwarg is not None)


def body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the first statement after the docstring to the function's last line."""
    body = node.body
    has_docstring = isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
        and isinstance(body[0].value.value, str)
    if has_docstring and len(body) == 1:
        return 0
    first = body[1] if has_docstring else body[0]
    start = min([first.lineno, *(d.lineno for d in getattr(first, "decorator_list", []))])
    return node.end_lineno - start + 1


def functions(root: Path = ROOT):
    """``(path:name, parameters, lines)`` of every function and method of the two packages."""
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield f"{relative}:{node.name}", parameter_count(node), body_lines(node)


def over_limits(root: Path = ROOT) -> dict[str, str]:
    """``{path:name: why}`` of every function over a limit."""
    found = {}
    for key, parameters, lines in functions(root):
        reasons = ([f"{parameters} parameters"] if parameters > MAX_PARAMETERS else []) + \
                  ([f"{lines} lines"] if lines > MAX_LINES else [])
        if reasons:
            found[key] = ", ".join(reasons)
    return found


def test_no_function_takes_more_than_eight_parameters_or_runs_over_sixty_lines():
    found = over_limits()
    offenders = {key: why for key, why in found.items() if key not in ALLOWED}
    assert not offenders, ("group options into a frozen config object (analyze/config.py) or split the function: "
                           + "; ".join(f"{k} ({v})" for k, v in sorted(offenders.items())))
    stale = sorted(ALLOWED - set(found))
    assert not stale, f"now within the limits, drop from ALLOWED: {stale}"


def test_the_counts_follow_the_documented_rules(tmp_path):
    package = tmp_path / "analyze"
    package.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    (package / "m.py").write_text(
        "class A:\n"
        "    def method(self, a, b, c, d, e, f, g, h, *, i=1):\n"
        "        return a\n"
        "def fine(a, b, c, d, e, f, g, *, h=1):\n"
        '    """A docstring\n\n    of several lines\n    """\n'
        f"{body}\n"
        "def splat(a, *args, **kwargs):\n    return a\n"
        "def wide(a, b, c, d, e, f, g, *rest, h=1):\n    return a\n"
        "def long():\n"
        f"{body}\n    return 0\n")
    found = over_limits(tmp_path)
    assert found == {"analyze/m.py:method": "9 parameters", "analyze/m.py:wide": "9 parameters",
                     "analyze/m.py:long": "61 lines"}
