"""The planner: cell tags -> a DAG of steps, one notebook per step, variables handed between them.

- tags.py: the cell-tag grammar (one cell's tags -> what the cell is and asks for)
- plan.py: `plan_notebook` -> `Plan` of `PlannedStep` (Kale's rules for which cell goes where)
- handoff.py: which variables travel between steps (static analysis)
- handoff_io.py: the code that moves them, in the job's kernel
- slice.py: `slice_step` -> the notebook the runner executes for one step

The names below are imported lazily: job kernels import `jupyter_ext.notebook.handoff_io`
to move variables, and should not pay for pydantic and nbformat to do so.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .plan import Plan, PlannedStep, plan_notebook
    from .slice import slice_step

__all__ = ["Plan", "PlannedStep", "plan_notebook", "slice_step"]

_HOME = {"Plan": "plan", "PlannedStep": "plan", "plan_notebook": "plan", "slice_step": "slice"}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
