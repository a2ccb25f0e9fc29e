"""What the job view's "Re-run from this step" shows: a re-run's reused steps say so in the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from nbformat.v4 import new_code_cell

from tests.conftest import check_response
from tests.notebooks import _write

pytestmark = pytest.mark.slow


def two_steps(root: Path) -> str:
    _write(
        root,
        "two_steps.ipynb",
        [
            new_code_cell("n = 3", metadata={"tags": ["parameters"]}),
            new_code_cell("data = list(range(n))\nprint('loaded', len(data))", metadata={"tags": ["step:load"]}),
            new_code_cell("print('total', sum(data))", metadata={"tags": ["step:train", "after:load"]}),
        ],
    )
    return "two_steps.ipynb"


async def test_rerun_from_a_step_marks_the_steps_it_reuses(api: Any, notebooks: Path) -> None:
    notebook = two_steps(notebooks)
    first = await api.submit(notebook)
    assert (await api.wait(first["id"]))["status"] == "succeeded"
    assert all(s["reused_from"] is None for s in first["steps"])

    second = await api.submit(notebook, from_step="train", rerun_of=first["id"])
    done = await api.wait(second["id"])
    check_response("/jobs/{job_id}", "GET", 200, done)
    steps = {s["name"]: s for s in done["steps"]}
    assert done["status"] == "succeeded"
    assert steps["load"]["reused_from"] == {"job": first["id"], "attempt": 1}
    assert steps["load"]["status"] == "succeeded"
    assert steps["train"]["reused_from"] is None
    listed = await api.call("GET", "jobs")
    check_response("/jobs", "GET", 200, listed)
    again = next(j for j in listed["jobs"] if j["id"] == second["id"])
    assert again["steps"][0]["reused_from"]["job"] == first["id"]
