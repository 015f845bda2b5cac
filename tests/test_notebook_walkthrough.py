"""The walkthrough notebook runs top to bottom on a small collected table.

Executed with ``nbclient`` (a real kernel, as a user would run it) when it is installed
(skipped otherwise), and always with every code cell ``exec``-ed in order in one namespace,
which checks the same code without the kernel's display machinery.
"""

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.test_report_html import report_inputs

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "walkthrough.ipynb"


def _cells() -> list[dict]:
    """The notebook's cells read as plain JSON (no nbformat needed), sources joined into one string."""
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    return [{**cell, "source": "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]}
            for cell in cells]


@pytest.fixture
def fixture_table(tmp_path, monkeypatch):
    results, salience, _ = report_inputs(runners=("probe",))
    table = tmp_path / "table.csv"
    results.merge(salience[["target", "salience"]], on="target").to_csv(table, index=False)
    monkeypatch.setenv("BIASTRANSFER_TABLE", str(table))
    monkeypatch.setenv("BIASTRANSFER_WORK", str(tmp_path / "work"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return table


def test_notebook_is_short_clean_and_explained():
    cells = _cells()
    kinds = [cell["cell_type"] for cell in cells]
    assert 8 <= len(kinds) <= 12 and kinds.count("markdown") >= 4 and kinds.count("code") >= 4
    assert all(not cell.get("outputs") for cell in cells if cell["cell_type"] == "code")  # stored clean
    source = "\n".join(cell["source"] for cell in cells)
    assert 'EffectsModel("formula"' in source and "BIASTRANSFER_TABLE" in source


def _outputs_text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        parts.append(json.dumps(output.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


def _check_written(work: Path) -> None:
    assert (work / "walkthrough" / "correlation.png").is_file()
    assert (work / "walkthrough" / "report" / "report.html").is_file()


def test_notebook_runs_in_a_kernel_on_a_fixture_table(fixture_table, tmp_path):
    nbclient = pytest.importorskip("nbclient", reason="nbclient (and ipykernel) run the notebook as a user would")
    pytest.importorskip("ipykernel", reason="the notebook runs in the python3 kernel ipykernel provides")
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    client = nbclient.NotebookClient(notebook, timeout=240, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on any failing cell
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert not any(output.output_type == "error" for cell in code for output in cell.outputs)
    assert f"read {len(pd.read_csv(fixture_table))} cells from {fixture_table}" in _outputs_text(code[0])
    assert "base[T.biased]:correlation_strength" in _outputs_text(code[2])
    assert any("image/png" in output.get("data", {}) for output in code[3].outputs)
    _check_written(tmp_path / "work")


def test_notebook_code_cells_run_in_order_without_a_kernel(fixture_table, tmp_path, monkeypatch):
    """The fallback where nbclient is not installed: the code cells exec-ed in one namespace."""
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for cell in _cells():
        if cell["cell_type"] == "code":
            exec(compile(cell["source"], str(NOTEBOOK), "exec"), namespace)  # noqa: S102 - the repository's notebook
    assert len(namespace["table"]) == len(pd.read_csv(fixture_table))
    terms = set(namespace["coefficients"]["term"])
    assert {"correlation_strength", "base[T.biased]:correlation_strength"} <= terms
    _check_written(tmp_path / "work")
