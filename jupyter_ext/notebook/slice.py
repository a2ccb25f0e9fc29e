"""One notebook per step: what the runner executes with papermill.

A step's notebook holds, in this order:

1. the parameters cells and the ``imports``/``functions`` cells, in notebook order (the
   order the user ran them in; papermill injects the run's parameters after the last
   parameters cell, which carries the ``parameters`` tag in the slice);
2. a hand-off cell loading the variables the step needs from earlier steps, if any;
3. the step's own cells;
4. a hand-off cell saving the variables later steps need, if any.

A notebook without step tags (`Plan.single`) keeps its cells in notebook order. A `%%remote`
cell is a one-step job of its own (`cell_notebook`): a version check, its inputs loaded, the
cell, its outputs saved.

Markdown and raw cells are kept, unexecuted, as papermill keeps them, so the executed
notebook and its HTML read like the user's notebook: in a notebook without step tags, all
of them; otherwise each goes with the code cell below it (a heading introduces what follows),
or with the last code cell when none follows, into whichever part of the step's notebook
that code cell is in.

The contract with the runner (jupyter_ext/runner/engine.py) and the UI:

- every cell copied from the user's notebook keeps its ``id`` and carries
  ``metadata["jupyter_ext"]["source_index"]``, its index in the ORIGINAL notebook, so events
  land in the cell that produced them;
- the hand-off cells carry ``metadata["jupyter_ext"]["internal"]`` = ``"handoff-load"`` or
  ``"handoff-save"`` and no ``source_index``;
- outputs and execution counts are cleared; notebook metadata (kernelspec, language_info)
  is kept.
"""

from __future__ import annotations

import copy
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from .handoff_io import handoff_load_source, handoff_save_source
from .plan import Plan

LOAD = "handoff-load"
SAVE = "handoff-save"
CHECK = "check"
_PARAMETERS_TAG = "parameters"
#: Where a %%remote cell's outputs are saved: the attempt's artifacts, kept with the job.
_CELL_OUTPUTS = "__import__('os').path.join(__import__('os').environ['JUPYTER_EXT_ARTIFACTS_DIR'], 'outputs')"
_PYTHON3 = {"name": "python3", "display_name": "Python 3", "language": "python"}


def slice_step(nb: nbformat.NotebookNode, plan: Plan, step_name: str) -> nbformat.NotebookNode:
    """The notebook that runs step `step_name` of `plan` (made from `nb`, which is not changed)."""
    step = plan.step(step_name)
    cells = nb.get("cells", [])
    shared = sorted(set(plan.parameters_cells) | set(plan.prelude_cells))
    prose = _prose_owners(cells, set(plan.skipped_cells))
    if plan.single:
        head: list[int] = []
        body = sorted(set(shared) | set(step.cells) | set(prose))
    else:
        mine = set(step.cells)
        head = sorted(set(shared) | {i for i, owner in prose.items() if owner in shared})
        body = sorted(mine | {i for i, owner in prose.items() if owner in mine})
    last_parameters = max((i for i in head + body if i in plan.parameters_cells), default=None)

    out: list[Any] = [_copy(cells[i], i, i == last_parameters) for i in head]
    if step.inputs:
        out.append(_internal(LOAD, handoff_load_source(step.inputs)))
    out.extend(_copy(cells[i], i, i == last_parameters) for i in body)
    if step.outputs:
        out.append(_internal(SAVE, handoff_save_source(step.outputs, step.name, origins=step.origins)))

    # Cell ids exist from nbformat 4.5 on; cells of older notebooks get one here.
    taken = {c.get("id") for c in out}
    for cell in out:
        if not cell.get("id"):
            index = cell.metadata["jupyter_ext"]["source_index"]
            cell["id"] = _free_id(f"jupyter-ext-cell-{index}", taken)
    sliced = new_notebook(cells=out, metadata=copy.deepcopy(dict(nb.get("metadata", {}))))
    sliced.nbformat_minor = max(int(nb.get("nbformat_minor", 5) or 0), 5)
    return sliced


def cell_notebook(
    source: str, step_name: str, *, inputs: list[str], outputs: list[str], versions: dict[str, Any] | None = None
) -> tuple[nbformat.NotebookNode, nbformat.NotebookNode]:
    """The notebook that runs one %%remote cell as step `step_name`, and the notebook of that cell
    alone (the job's `notebook.ipynb`). The cell is `source_index` 0; the others are internal."""
    user_cell = new_code_cell(source, metadata={"jupyter_ext": {"source_index": 0}})
    cells = []
    if versions:
        check = f"from jupyter_ext.magics import check_versions\ncheck_versions({versions!r})\n"
        cells.append(new_code_cell(check, metadata={"jupyter_ext": {"internal": CHECK}}))
    if inputs:
        cells.append(new_code_cell(handoff_load_source(inputs), metadata={"jupyter_ext": {"internal": LOAD}}))
    cells.append(user_cell)
    if outputs:
        save = handoff_save_source(outputs, step_name, _CELL_OUTPUTS, origins={n: 0 for n in outputs})
        cells.append(new_code_cell(save, metadata={"jupyter_ext": {"internal": SAVE}}))
    return new_notebook(cells=cells, metadata={"kernelspec": dict(_PYTHON3)}), new_notebook(cells=[user_cell])


def _prose_owners(cells: list[Any], skipped: set[int]) -> dict[int, int | None]:
    """Each markdown/raw cell -> the code cell it goes with: the next one that runs, else the last."""
    code = [i for i, c in enumerate(cells) if c.get("cell_type") == "code" and i not in skipped]
    owners: dict[int, int | None] = {}
    for index, cell in enumerate(cells):
        if cell.get("cell_type") == "code":
            continue
        following = [i for i in code if i > index]
        owners[index] = following[0] if following else (code[-1] if code else None)
    return owners


def _copy(cell: Any, index: int, parameters: bool) -> Any:
    new = nbformat.from_dict(copy.deepcopy(dict(cell)))
    metadata = new.setdefault("metadata", nbformat.NotebookNode())
    ours = metadata.get("jupyter_ext")
    ours = dict(ours) if isinstance(ours, dict) else {}
    ours.pop("internal", None)
    ours["source_index"] = index
    metadata["jupyter_ext"] = ours
    tags = [t for t in metadata.get("tags", []) or [] if t != _PARAMETERS_TAG]
    if parameters:
        tags.append(_PARAMETERS_TAG)  # papermill injects after the first cell with this tag
    if tags or "tags" in metadata:
        metadata["tags"] = tags
    if new.get("cell_type") == "code":
        new["outputs"] = []
        new["execution_count"] = None
    return new


def _internal(kind: str, source: str) -> Any:
    cell = new_code_cell(source, metadata={"jupyter_ext": {"internal": kind}})
    cell["id"] = f"jupyter-ext-{kind}"
    return cell


def _free_id(wanted: str, taken: set[Any]) -> str:
    candidate, n = wanted, 1
    while candidate in taken:
        n += 1
        candidate = f"{wanted}-{n}"
    taken.add(candidate)
    return candidate
