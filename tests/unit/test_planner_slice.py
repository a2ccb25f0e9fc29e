"""slice_step: one notebook per step, mapped back to the user's cells."""

from __future__ import annotations

from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from jupyter_ext.errors import NotFound
from jupyter_ext.notebook import plan_notebook, slice_step

KERNEL = {
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"},
}


def code(source: str, *tags: str) -> Any:
    return new_code_cell(source, metadata={"tags": list(tags)} if tags else {})


def kale_notebook() -> Any:
    return new_notebook(
        cells=[
            code("import math", "imports"),  # 0
            new_markdown_cell("# Title"),  # 1
            code("n = 3", "pipeline-parameters"),  # 2
            code("def square(v):\n    return v * v", "functions"),  # 3
            code("values = list(range(n))", "step:load"),  # 4
            code("print('noise')", "skip"),  # 5
            code("squares = [square(v) for v in values]", "step:square", "after:load"),  # 6
            code("total = math.fsum(squares)"),  # 7
            code("print(total)", "step:report", "after:square"),  # 8
        ],
        metadata=KERNEL,
    )


def where(cell: Any) -> Any:
    ours = cell.metadata.get("jupyter_ext", {})
    return ours.get("source_index", ours.get("internal"))


def test_slice_layout_and_source_index() -> None:
    nb = kale_notebook()
    plan = plan_notebook(nb)
    square = slice_step(nb, plan, "square")
    # The markdown cell 1 goes with the code below it (the parameters cell, which every step runs).
    assert [where(c) for c in square.cells] == [0, 1, 2, 3, "handoff-load", 6, 7, "handoff-save"]
    for cell in square.cells:
        index = cell.metadata["jupyter_ext"].get("source_index")
        if index is not None:
            assert cell.source == nb.cells[index].source
            assert cell.id == nb.cells[index].id
        else:
            assert "source_index" not in cell.metadata["jupyter_ext"]
    assert square.metadata["kernelspec"] == KERNEL["kernelspec"]
    assert square.metadata["language_info"] == KERNEL["language_info"]
    nbformat.validate(square)


def test_parameters_cell_carries_the_papermill_tag() -> None:
    nb = kale_notebook()
    sliced = slice_step(nb, plan_notebook(nb), "load")
    tagged = [where(c) for c in sliced.cells if "parameters" in c.metadata.get("tags", [])]
    assert tagged == [2]
    assert "pipeline-parameters" in sliced.cells[2].metadata["tags"]


def test_handoff_cells_name_the_right_variables() -> None:
    nb = kale_notebook()
    plan = plan_notebook(nb)
    load, square, report = (slice_step(nb, plan, s) for s in ("load", "square", "report"))
    internal = {
        name: {
            c.metadata["jupyter_ext"]["internal"]: c.source
            for c in sliced.cells
            if where(c) in ("handoff-load", "handoff-save")
        }
        for name, sliced in (("load", load), ("square", square), ("report", report))
    }
    assert set(internal["load"]) == {"handoff-save"}
    assert "['values']" in internal["load"]["handoff-save"] and "step='load'" in internal["load"]["handoff-save"]
    assert "origins={'values': 4}" in internal["load"]["handoff-save"]
    assert "['values']" in internal["square"]["handoff-load"]
    assert "['total']" in internal["square"]["handoff-save"]
    assert set(internal["report"]) == {"handoff-load"}
    assert "['total']" in internal["report"]["handoff-load"]
    for sources in internal.values():
        for source in sources.values():
            compile(source, "<handoff>", "exec")


def test_outputs_are_cleared_and_the_original_is_untouched() -> None:
    nb = kale_notebook()
    nb.cells[4].outputs = [new_output("stream", name="stdout", text="old\n")]
    nb.cells[4].execution_count = 7
    before = nbformat.writes(nb)
    sliced = slice_step(nb, plan_notebook(nb), "load")
    cell = next(c for c in sliced.cells if where(c) == 4)
    assert cell.outputs == [] and cell.execution_count is None
    assert nbformat.writes(nb) == before


def test_untagged_notebook_keeps_notebook_order_with_parameters_in_place() -> None:
    nb = new_notebook(
        cells=[code("import os"), code("path = os.sep", "parameters"), code("print(path)"), code("x", "skip")],
        metadata=KERNEL,
    )
    plan = plan_notebook(nb)
    sliced = slice_step(nb, plan, "main")
    assert [where(c) for c in sliced.cells] == [0, 1, 2]
    assert "parameters" in sliced.cells[1].metadata["tags"]


def test_only_the_last_parameters_cell_keeps_the_tag() -> None:
    nb = new_notebook(
        cells=[code("a = 1", "parameters"), code("b = 2"), code("c = 3", "parameters"), code("print(a, b, c)")],
        metadata=KERNEL,
    )
    sliced = slice_step(nb, plan_notebook(nb), "main")
    assert [("parameters" in c.metadata.get("tags", [])) for c in sliced.cells] == [False, False, True, False]


def test_old_notebooks_without_cell_ids_get_ids() -> None:
    nb = kale_notebook()
    nb.nbformat_minor = 4
    for cell in nb.cells:
        del cell["id"]
    sliced = slice_step(nb, plan_notebook(nb), "square")
    ids = [c.id for c in sliced.cells]
    assert all(ids) and len(set(ids)) == len(ids)
    assert sliced.nbformat_minor >= 5
    nbformat.validate(sliced)


def test_unknown_step() -> None:
    nb = kale_notebook()
    with pytest.raises(NotFound, match="did you mean 'square'"):
        slice_step(nb, plan_notebook(nb), "sqare")


def test_markdown_is_kept_unexecuted_as_papermill_keeps_it() -> None:
    nb = new_notebook(
        cells=[
            new_markdown_cell("# Report"),  # 0
            code("x = 1", "parameters"),  # 1
            code("print(x)"),  # 2
            new_markdown_cell("## The end"),  # 3
        ],
        metadata=KERNEL,
    )
    sliced = slice_step(nb, plan_notebook(nb), "main")
    assert [(c.cell_type, where(c)) for c in sliced.cells] == [
        ("markdown", 0),
        ("code", 1),
        ("code", 2),
        ("markdown", 3),
    ]
    assert sliced.cells[0].source == "# Report"
    nbformat.validate(sliced)


def test_markdown_goes_with_the_step_of_the_code_below_it() -> None:
    nb = new_notebook(
        cells=[
            code("import os", "imports"),  # 0
            new_markdown_cell("## Load"),  # 1
            code("v = 1", "step:load"),  # 2
            new_markdown_cell("## Train"),  # 3
            code("print('noise')", "skip"),  # 4
            code("w = v", "step:train", "after:load"),  # 5
            new_markdown_cell("That was all."),  # 6
        ],
        metadata=KERNEL,
    )
    plan = plan_notebook(nb)
    load, train = (slice_step(nb, plan, s) for s in ("load", "train"))
    assert [where(c) for c in load.cells] == [0, 1, 2, "handoff-save"]
    assert [where(c) for c in train.cells] == [0, "handoff-load", 3, 5, 6]
