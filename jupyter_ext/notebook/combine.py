"""A job of several steps as one executed notebook: the user's notebook with each code cell's
outputs from the step that ran it (the orchestrator writes it when the job ends)."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import nbformat

log = logging.getLogger("jupyter_ext")


def combine_executed(original: Path, executed: list[str], out_dir: Path) -> list[tuple[Path, int, str]]:
    """Write `out_dir`/executed.ipynb (its .html is made on demand): `original` with the outputs of each code cell
    from the first of the step notebooks `executed` (in run order) that ran it (thread)."""
    nb = nbformat.read(original, as_version=4)
    ran: dict[int, Any] = {}
    injected: tuple[Any, int | None] | None = None
    papermill: Any = None
    for path in executed:
        try:
            step_nb = nbformat.read(path, as_version=4)
        except (OSError, ValueError) as exc:
            log.warning("jupyter-ext: skipping executed notebook %s: %s", path, exc)
            continue
        papermill = papermill or step_nb.metadata.get("papermill")
        previous: int | None = None
        for cell in step_nb.cells:
            index = (cell.metadata.get("jupyter_ext") or {}).get("source_index")
            if index is None:
                if injected is None and "injected-parameters" in (cell.metadata.get("tags") or []):
                    injected = (cell, previous)
                continue
            previous = index
            if cell.cell_type != "code":
                continue
            done = cell.get("execution_count") is not None or bool(cell.get("outputs"))
            if index not in ran or (done and ran[index].get("execution_count") is None and not ran[index].outputs):
                ran[index] = cell
    cells: list[Any] = []
    for index, cell in enumerate(nb.cells):
        if "injected-parameters" in (cell.metadata.get("tags") or []):
            continue  # an earlier run's: this run's own comes from the steps
        cell = copy.deepcopy(cell)
        if cell.cell_type == "code":
            source = ran.get(index)
            cell.outputs = copy.deepcopy(source.outputs) if source is not None else []
            cell.execution_count = source.execution_count if source is not None else None
            for key in ("papermill", "execution"):
                if source is not None and key in source.metadata:
                    cell.metadata[key] = copy.deepcopy(source.metadata[key])
        cells.append(cell)
        if injected is not None and injected[1] == index:
            extra = copy.deepcopy(injected[0])
            extra.metadata.pop("jupyter_ext", None)
            cells.append(extra)
    nb.cells = cells
    if papermill is not None:
        nb.metadata["papermill"] = copy.deepcopy(papermill)
    target = out_dir / "executed.ipynb"
    nbformat.write(nb, target)
    # The HTML copy is listed, and made when first downloaded (executed_html.py).
    (out_dir / "executed.html").unlink(missing_ok=True)  # an earlier one would show other outputs
    return [(target, target.stat().st_size, "application/x-ipynb+json"), (out_dir / "executed.html", 0, "text/html")]
