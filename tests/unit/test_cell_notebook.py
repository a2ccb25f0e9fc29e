"""notebook.slice.cell_notebook: a %%remote cell as the notebook of a one-step job."""

from __future__ import annotations

from typing import Any

from jupyter_ext.notebook.slice import cell_notebook


def _kinds(nb: Any) -> list[Any]:
    return [c.metadata["jupyter_ext"].get("internal", c.metadata["jupyter_ext"].get("source_index")) for c in nb.cells]


def test_check_load_cell_save_in_that_order() -> None:
    step, submitted = cell_notebook("y = x + 1", "cell", inputs=["x"], outputs=["y"], versions={"numpy": "2.0"})
    assert _kinds(step) == ["check", "handoff-load", 0, "handoff-save"]
    assert "check_versions({'numpy': '2.0'})" in step.cells[0].source
    assert "'x'" in step.cells[1].source and step.cells[2].source == "y = x + 1"
    assert "JUPYTER_EXT_ARTIFACTS_DIR" in step.cells[3].source  # outputs are kept with the job
    assert step.metadata["kernelspec"]["name"] == "python3"
    assert [c.source for c in submitted.cells] == ["y = x + 1"]


def test_a_bare_cell_is_just_the_cell() -> None:
    step, _ = cell_notebook("print(1)", "cell", inputs=[], outputs=[])
    assert _kinds(step) == [0]
