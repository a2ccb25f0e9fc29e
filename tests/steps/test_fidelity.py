"""What ran is what the job shows (issue 11, "Outputs are never lost" and "Cancel is a user
action"): real kernels and papermill under the local backend, with and without warm runners.

Before the runner fix, 100k lines printed with flush=True lost about 30% between the kernel and
the runner (IOPub high-water marks), and with a warm runner the job then hung (a blocking kernel
client blocked nbclient's loop); SIGTERM was ignored by warm runners, so a cancel was a SIGKILL
at `cancel_grace` ("killed by signal SIGKILL", no step.end of the runner's own, no partial
notebook). Each test below failed then."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest

from tests.harness import notebook, until

pytestmark = pytest.mark.slow

FLOOD = 200_000


def lines_of(events: list[dict[str, Any]], stream: str = "stdout") -> list[str]:
    text = "".join(
        e["output"].get("text", "")
        for e in events
        if e["type"] == "cell.output"
        and e["output"].get("output_type") == "stream"
        and e["output"].get("name") == stream
    )
    return text.splitlines()


def assert_whole(lines: list[str], count: int) -> None:
    """Every line, once, in order; the first gap named if not."""
    numbers = [int(line.split()[1]) for line in lines if line.startswith("line ")]
    if numbers != list(range(count)):
        missing = sorted(set(range(count)) - set(numbers))
        first_bad = next((i for i, n in enumerate(numbers) if n != i), None)
        raise AssertionError(
            f"{len(numbers)} of {count} lines arrived; {len(missing)} missing (first {missing[:5]}); "
            f"first out of order at position {first_bad}"
        )


@pytest.mark.parametrize("warm_pool", [1, 0], ids=["warm", "cold"])
async def test_flushed_flood_arrives_whole_in_order_and_the_job_ends(make: Any, tmp_path: Path, warm_pool: int) -> None:
    h = await make(gpus=[], warm_pool=warm_pool)
    nb = notebook(tmp_path, "flood.ipynb", f"for i in range({FLOOD}):\n    print('line', i, flush=True)")
    job_id = await h.run(nb)
    async with asyncio.timeout(600):  # generous: 2 loaded cores; the bug was a hang, not slowness
        events = await h.events(job_id)
    job = await h.store.get_job(job_id)
    assert job["status"] == "succeeded", job["error"]
    assert_whole(lines_of(events), FLOOD)


async def test_fifty_megabytes_in_one_write_arrive_whole(make: Any, tmp_path: Path) -> None:
    h = await make(gpus=[])
    size = 50_000_000
    nb = notebook(
        tmp_path,
        "big.ipynb",
        f"import sys\nsys.stdout.write('0123456789' * {size // 10} + '\\nend\\n')\nsys.stdout.flush()",
    )
    job_id = await h.run(nb)
    async with asyncio.timeout(600):
        events = await h.events(job_id)
    job = await h.store.get_job(job_id)
    assert job["status"] == "succeeded", job["error"]
    text = "".join(
        e["output"].get("text", "")
        for e in events
        if e["type"] == "cell.output" and e["output"].get("name") == "stdout"
    )
    assert len(text) == size + len("\nend\n"), len(text)
    assert text.startswith("0123456789") and text.endswith("89\nend\n")
    assert text.count("0123456789") == size // 10


def _attempt_dir(h: Any, job_id: str) -> Path:
    return h.orch.data_dir / "jobs" / job_id / "steps" / "main" / "attempt-1"


@pytest.mark.parametrize("warm_pool", [1, 0], ids=["warm", "cold"])
async def test_cancel_interrupts_writes_the_partial_notebook_and_ends_cancelled(
    make: Any, tmp_path: Path, warm_pool: int
) -> None:
    # A grace far longer than any cancel takes: a runner that ignores SIGTERM would be killed only
    # after it, and its job would end "killed by signal SIGKILL" with no step.end of its own.
    h = await make(gpus=[], warm_pool=warm_pool, cancel_grace=120.0)
    nb = notebook(
        tmp_path,
        "ticks.ipynb",
        "print('before', flush=True)",
        "import time\nfor i in range(100000):\n    print('tick', i, flush=True)\n    time.sleep(0.05)",
        "print('never')",
    )
    job_id = await h.run(nb)

    async def ticking() -> bool:
        return any(line.startswith("tick ") for line in lines_of(await h.store.events(job_id)))

    await until("the second cell to print", ticking, 300)
    asked = time.monotonic()
    await h.orch.cancel(job_id, "tester")
    async with asyncio.timeout(100):  # well inside the grace: the runner ends it, nobody kills it
        events = await h.events(job_id)
    took = time.monotonic() - asked
    job = await h.store.get_job(job_id)
    assert job["status"] == "cancelled" and job["steps"][0]["status"] == "cancelled"
    ends = [e for e in events if e["type"] == "step.end"]
    assert len(ends) == 1, ends
    end = ends[0]
    # The runner's own step.end (it carries the runner's duration), in neutral words.
    assert end["status"] == "cancelled" and end.get("reason") == "cancelled" and "duration" in end, end
    words = json.dumps([end, job["error"], job["steps"][0]["error"]])
    assert "SIGKILL" not in words and "signal" not in words and "Traceback" not in words, words
    assert "never" not in lines_of(events)
    # papermill wrote the partial executed notebook: the cells that ran, with what they printed.
    executed = next(a for a in await h.store.artifacts(job_id) if a["name"] == "executed.ipynb")
    nb_out = nbformat.read(executed["path"], as_version=4)
    printed = "".join(
        "".join(o.get("text", "")) for c in nb_out.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "before" in printed and "tick 0" in printed and "never" not in printed
    kernel_pid = int((_attempt_dir(h, job_id) / "kernel.pid").read_text())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(kernel_pid):  # noqa: ASYNC110 - not our child
        await asyncio.sleep(0.1)
    assert not _alive(kernel_pid), "the kernel is shut down"
    print(f"cancel with warm_pool={warm_pool}: {took:.2f} s from the request to the job's end")


async def test_a_dead_kernel_is_said_in_words_naming_the_cell(make: Any, tmp_path: Path) -> None:
    h = await make(gpus=[])
    nb = notebook(tmp_path, "die.ipynb", "print('alive')", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    job_id = await h.run(nb)
    async with asyncio.timeout(300):
        events = await h.events(job_id)
    job = await h.store.get_job(job_id)
    assert job["status"] == "failed"
    end = next(e for e in events if e["type"] == "step.end")
    error = end["error"]
    assert end.get("reason") == "kernel_died" and error["signal"] == "SIGKILL", end
    assert "killed by SIGKILL" in error["message"] and not error.get("traceback"), error
    # The step's error (what its cell and the job view say) names the cell as Lab numbers it.
    said = job["steps"][0]["error"]
    assert said["message"] == "the kernel died (killed by SIGKILL) (cell 2 was running)", said
    assert job["error"]["message"].startswith("the kernel died (killed by SIGKILL)"), job["error"]
    assert "Traceback" not in json.dumps([error, said, job["error"]])


def _alive(pid: int) -> bool:
    from tests.harness import process_alive

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return process_alive(pid)
