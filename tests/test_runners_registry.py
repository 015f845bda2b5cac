"""The runner registry: lookup, the unknown-name error, and no module outside it branching on a runner's name."""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd
import pytest

from analyze.runners import RUNNERS, get_runner, register_runner, runner_names
from analyze.runners.registry import RunnerRegistry
from extract.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
RUNNER_NAMES = {"probe", "finetune", "domain_mix"}


def test_lookup_gives_each_built_in_runner():
    assert runner_names() == ["probe", "finetune", "domain_mix"]
    for name in RUNNER_NAMES:
        runner = get_runner(name)
        assert runner is RUNNERS[name] and runner.name == name
        for method in ("source", "run", "pending", "stores"):
            assert callable(getattr(runner, method))
    assert RUNNERS["domain_mix"].records_as == "probe"  # a domain mix is a probe cell of another kind
    assert [n for n in RUNNERS if RUNNERS[n].cell_grid] == ["probe", "finetune"]


def test_unknown_runner_names_the_choices():
    with pytest.raises(UserError) as info:
        get_runner("lora")
    assert str(info.value) == "runner 'lora' is unknown; choose one of ['probe', 'finetune', 'domain_mix']."
    with pytest.raises(UserError, match="unknown; choose one of"):
        RUNNERS.rows(pd.DataFrame({"runner": ["probe"]}), "prob")  # a typo is an error, not an empty selection


def test_rows_selects_a_runners_records():
    table = pd.DataFrame({"runner": ["probe", "finetune", "probe"]})
    assert RUNNERS.rows(table, "probe").tolist() == [True, False, True]
    assert RUNNERS.rows(table, "finetune").tolist() == [False, True, False]


def test_register_adds_a_runner_and_refuses_a_second_of_one_name():
    registry = RunnerRegistry()
    registry._loaded = True  # no built-ins: a registry of its own

    class Lora:
        name = "lora"

    registry.add(Lora())
    assert list(registry) == ["lora"] and isinstance(registry["lora"], Lora)

    class Other:
        name = "lora"

    with pytest.raises(ValueError, match="already registered"):
        registry.add(Other())
    assert callable(register_runner)


def test_units_name_their_runner():
    from analyze.runners.domain_mix import DomainMixUnit
    from analyze.runners.finetune import FinetuneUnit
    from analyze.runners.probe import ProbeUnit

    for unit, name in ((ProbeUnit, "probe"), (FinetuneUnit, "finetune"), (DomainMixUnit, "domain_mix")):
        assert unit.runner == name and RUNNERS[unit.runner].name == name
        assert "runner" not in unit.__dataclass_fields__  # a class attribute, not a field to ship


# -- no branch on a runner's name outside the registry ------------------------------------------


def _runnerish(node: ast.AST) -> bool:
    """An expression that holds a runner's name: ``runner``, ``x.runner``, ``x["runner"]``, ``x.get("runner")``."""
    if isinstance(node, ast.Name):
        return "runner" in node.id.lower()
    if isinstance(node, ast.Attribute):
        return "runner" in node.attr.lower()
    if isinstance(node, ast.Subscript):
        key = node.slice
        return isinstance(key, ast.Constant) and key.value == "runner"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
        return bool(node.args) and isinstance(node.args[0], ast.Constant) and node.args[0].value == "runner"
    return False


def _names_a_runner(node: ast.AST) -> bool:
    """A runner-name literal, or a tuple/list/set of literals holding one."""
    if isinstance(node, ast.Constant):
        return node.value in RUNNER_NAMES
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_names_a_runner(e) for e in node.elts)
    return False


def runner_name_branches(source: str, filename: str = "<string>") -> list[str]:
    """``file:line`` of every comparison of a runner-name expression with a runner-name literal."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        for a, b in zip(operands, operands[1:]):
            if (_runnerish(a) and _names_a_runner(b)) or (_runnerish(b) and _names_a_runner(a)):
                found.append(f"{filename}:{node.lineno}")
    return found


@pytest.mark.parametrize("snippet", [
    'if runner == "probe": pass',
    'x = cell.runner != "finetune"',
    'ok = record.get("runner") == "probe"',
    'rows = table[table["runner"] == "finetune"]',
    'if runner_name in ("probe", "finetune"): pass',
    'if "domain_mix" == self.runner: pass',
    'y = 0 < n and grid.runner == "probe"',
])
def test_the_scan_finds_every_shape_of_branch(snippet):
    assert runner_name_branches(snippet) == ["<string>:1"]


@pytest.mark.parametrize("snippet", [
    'cell_id(runner="probe", backbone=b, spec=s)',  # naming a runner, not branching on one
    'if method == "probe": pass',                  # a salience method, not a runner
    'if spec.kind == "domain_mix": pass',          # a subset kind
    'rows = table[RUNNERS.rows(table, "probe")]',  # the registry's lookup
])
def test_the_scan_leaves_other_comparisons(snippet):
    assert runner_name_branches(snippet) == []


def test_no_module_outside_the_registry_branches_on_a_runner_name():
    files = [p for folder in ("analyze", "extract") for p in sorted((ROOT / folder).rglob("*.py"))
             if "runners" not in p.relative_to(ROOT).parts]
    assert len(files) > 150  # the scan reads the whole package, not an empty folder
    found = [hit for p in files for hit in runner_name_branches(p.read_text(), str(p.relative_to(ROOT)))]
    assert found == []


def test_the_sweep_dispatches_units_through_the_registry():
    """No ``isinstance`` on a unit type in the sweep: a unit names its runner."""
    for name in ("execute.py", "units.py", "run.py"):
        tree = ast.parse((ROOT / "analyze" / "sweep" / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance":
                assert "Unit" not in ast.unparse(node.args[1]), f"{name}:{node.lineno} {ast.unparse(node)}"
