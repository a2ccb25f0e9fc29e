"""Every failing `step.end` carries a reason code of contract.REASONS, with its plain words made on
the server; `job.end`'s error and the job view carry the same code. Each code the local backend can
reach is produced here over the API (`oom` needs a memory cgroup: the runner's side is
tests/unit/test_runner_cgroup.py, the server's words tests/unit/test_reasons.py)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from jupyter_ext.contract import REASONS

KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def _notebook(root: Path, name: str, *sources: str) -> str:
    nbformat.write(new_notebook(cells=[new_code_cell(s) for s in sources], metadata=KERNEL), root / name)
    return name


async def _ended(api: Any, job_id: str, timeout: float = 120) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every event of the job (to its job.end) and the job view, once it has ended."""
    job = await api.wait(job_id, timeout=timeout)
    events = (await api.call("GET", "jobs", job_id, "events"))["events"]
    assert events[-1]["type"] == "job.end", events[-1]
    return events, job


def _the_code_everywhere(events: list[dict[str, Any]], job: dict[str, Any], code: str) -> dict[str, Any]:
    """The last step.end, job.end's error, the job's and its step's error all say `code`; returns the step's error."""
    assert code in REASONS
    end = [e for e in events if e["type"] == "step.end"][-1]
    assert end.get("reason") == code and end["error"]["reason"] == code, end
    assert end["error"]["message"], end
    finished = events[-1]
    assert finished["error"]["reason"] == code and finished["error"]["step"] == "main", finished
    assert job["error"]["reason"] == code and job["steps"][0]["error"]["reason"] == code, job
    # The words are made once: the event, the step and the job say the same.
    assert job["steps"][0]["error"]["message"] == end["error"]["message"] == finished["error"]["message"]
    return dict(end["error"])


async def test_a_cell_that_raises_is_exception(api: Any) -> None:
    job = await api.submit("fails.ipynb")
    events, view = await _ended(api, job["id"])
    error = _the_code_everywhere(events, view, "exception")
    assert error["message"] == "cell 2 raised ValueError: bad value in cell one", error


async def test_a_line_magic_error_told_only_on_stderr_is_named(api: Any, notebooks: Path) -> None:
    nb = _notebook(notebooks, "magic.ipynb", "x = 1", "%this_magic_does_not_exist")
    job = await api.submit(nb)
    events, view = await _ended(api, job["id"])
    error = _the_code_everywhere(events, view, "exception")
    assert error["message"].startswith("cell 2 raised UsageError: Line magic function"), error


async def test_a_cancelled_job_is_cancelled(api: Any) -> None:
    job = await api.submit("slow.ipynb", parameters={"ticks": 400, "delay": 0.1})
    await api.stream(job["id"], until="cell.output")
    await api.call("POST", "jobs", job["id"], "cancel")
    events, view = await _ended(api, job["id"])
    assert view["status"] == "cancelled"
    end = [e for e in events if e["type"] == "step.end"][-1]
    assert end["status"] == "cancelled" and end["reason"] == "cancelled" and end["error"]["reason"] == "cancelled"
    assert view["steps"][0]["error"]["reason"] == "cancelled"


async def test_a_step_past_its_timeout_is_timeout(api: Any, notebooks: Path) -> None:
    nb = _notebook(notebooks, "forever.ipynb", "import time\nprint('start', flush=True)\ntime.sleep(300)")
    job = await api.submit(nb, timeout=2)
    events, view = await _ended(api, job["id"])
    error = _the_code_everywhere(events, view, "timeout")
    assert error["message"] == "step 'main' timed out after 2s; raise `timeout:` on step 'main'", error


async def test_a_dead_kernel_is_kernel_died(api: Any, notebooks: Path) -> None:
    nb = _notebook(notebooks, "die.ipynb", "print('alive')", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    job = await api.submit(nb)
    events, view = await _ended(api, job["id"])
    error = _the_code_everywhere(events, view, "kernel_died")
    assert error["message"].startswith("the kernel died (killed by SIGKILL)"), error
    assert error["message"].endswith("(cell 2 was running)"), error


async def test_a_runner_that_vanishes_is_lost(api: Any, data_dir: Path) -> None:
    job = await api.submit("slow.ipynb", parameters={"ticks": 400, "delay": 0.1})
    await api.stream(job["id"], until="cell.output")
    attempt = data_dir / "jobs" / job["id"] / "steps" / "main" / "attempt-1"
    start = json.loads((attempt / "events.jsonl").read_text().splitlines()[0])
    assert start["type"] == "step.start"
    kernel = int((attempt / "kernel.pid").read_text())
    os.kill(start["pid"], signal.SIGKILL)  # the runner dies without a word
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # noqa: ASYNC110 - not our child; nothing to await
        try:
            os.kill(kernel, signal.SIGKILL)  # and its kernel, an orphan now
        except ProcessLookupError:
            break
        await asyncio.sleep(0.1)
    events, view = await _ended(api, job["id"])
    assert view["status"] == "failed"
    error = _the_code_everywhere(events, view, "lost")
    assert error["message"].startswith("step 'main' ended with exit code 137 (killed by signal SIGKILL)"), error
    assert [e for e in events if e["type"] == "step.end"] == [events[-2]], "only the server's step.end"
