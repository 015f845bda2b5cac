"""The package layout's rules, checked on the source: imports run one way and argparse lives at the edge.

- no import cycle among ``extract`` / ``analyze`` modules (an import of ``a.b.c`` is an edge to
  that module, not to the package ``__init__`` files on its way);
- ``argparse`` is imported only inside ``analyze/cli`` and ``extract/cli``;
- no library module imports a ``cli`` module;
- ``extract`` never imports ``analyze``;
- no module name repeats its package's name as a prefix (``probe/probe_engine.py``);
- ``extract/store`` is HDF5 only: it imports nothing of the extraction loop or its sharded driver;
- a package ``__init__.py`` re-exports; functions and classes live in named modules (the command
  line's entry point ``analyze/cli/__init__.py`` excepted).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("extract", "analyze")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """Modules of the two packages that ``path`` imports (anywhere in the file)."""
    is_package = path.name == "__init__.py"
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                targets.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets.add(base)
            for alias in node.names:
                targets.add(f"{base}.{alias.name}")  # ``from pkg import module``
    return {t for t in targets if t in modules and t != name}


def _graph():
    modules = _modules()
    return modules, {name: _imports(path, name, modules) for name, path in modules.items()}


def _is_cli(name: str) -> bool:
    return name.split(".")[1:2] == ["cli"]


def test_no_import_cycles():
    _, graph = _graph()
    # a module importing its own package's __init__ (``from analyze.probe import x`` inside
    # analyze.probe.cells) is how Python packages work, not a cycle between modules
    edges = {a: {b for b in targets if not a.startswith(b + ".")} for a, targets in graph.items()}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles[:5])


def test_argparse_only_in_the_cli_packages():
    modules, _ = _graph()
    offenders = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        uses = any(isinstance(n, ast.Import) and any(a.name == "argparse" for a in n.names)
                   or isinstance(n, ast.ImportFrom) and n.module == "argparse" for n in ast.walk(tree))
        if uses and not _is_cli(name):
            offenders.append(name)
    assert not offenders, f"argparse imported outside analyze/cli and extract/cli: {offenders}"


def test_library_never_imports_the_command_line():
    _, graph = _graph()
    offenders = sorted(f"{a} -> {b}" for a, targets in graph.items() if not _is_cli(a)
                       for b in targets if _is_cli(b))
    assert not offenders, f"library modules importing cli modules: {offenders}"


def test_extract_never_imports_analyze():
    _, graph = _graph()
    offenders = sorted(f"{a} -> {b}" for a, targets in graph.items() if a.startswith("extract")
                       for b in targets if b.startswith("analyze"))
    assert not offenders, offenders


def test_no_module_repeats_its_package_as_prefix():
    modules, _ = _graph()
    offenders = []
    for name in modules:
        parts = name.split(".")
        if len(parts) >= 3 and parts[-1].startswith(parts[-2] + "_"):
            offenders.append(name)
    assert not offenders, offenders


def test_top_level_of_analyze_is_the_stages_and_the_public_names():
    top = sorted(p.name for p in (ROOT / "analyze").glob("*.py"))
    assert top == ["__init__.py", "api.py", "config.py", "curation.py", "demo.py"], top


def test_store_imports_nothing_of_the_extraction():
    _, graph = _graph()
    offenders = sorted(f"{a} -> {b}" for a, targets in graph.items() if a.startswith("extract.store")
                       for b in targets if b in {"extract.extraction", "extract.sharded"})
    assert not offenders, offenders


# the console script's entry point: the verb table, the parser and main() are its wiring
INIT_WITH_DEFINITIONS = {"analyze.cli"}
# PEP 562 lazy re-exports are re-export machinery, not definitions (analyze.sweep: a loky worker
# imports analyze.sweep.workers at start-up without loading the planner)
REEXPORT_HOOKS = {"__getattr__", "__dir__"}


def test_package_inits_define_no_functions_or_classes():
    modules, _ = _graph()
    offenders = []
    for name, path in modules.items():
        if path.name != "__init__.py" or name in INIT_WITH_DEFINITIONS:
            continue
        tree = ast.parse(path.read_text())
        defined = [n.name for n in tree.body
                   if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                   and n.name not in REEXPORT_HOOKS]
        if defined:
            offenders.append(f"{name}: {defined}")
    assert not offenders, "definitions in package __init__ files (move them to a named module): " + "; ".join(offenders)
