"""Warm runners with real kernels (issue 14): each step gets a fresh interpreter, however many
runners wait ready, and a chain's steps all start on runners made ready before they are asked for."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tests.harness import notebook, stdout, until

pytestmark = pytest.mark.slow
KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}

LEAVE = """
import os, sys
sys.path.insert(0, os.getcwd())
import leakmod
secret = 42
os.environ["JE_LEAK"] = "1"
sys.je_marker = 1
import json
print(json.dumps({"pid": os.getpid(), "leakmod": "leakmod" in sys.modules}))
"""
LOOK = """
import json, os, sys
print(json.dumps({
    "pid": os.getpid(),
    "secret": "secret" in globals(),
    "leakmod": "leakmod" in sys.modules,
    "env": os.environ.get("JE_LEAK"),
    "marker": hasattr(sys, "je_marker"),
}))
"""


async def test_two_jobs_in_a_row_on_warm_runners_share_nothing(make: Any, tmp_path: Path) -> None:
    (tmp_path / "leakmod.py").write_text("VALUE = 1\n")
    h = await make(gpus=[], max_concurrent=2, warm_pool=2)
    pool = h.backend._pool
    await until("two warm runners", lambda: _async(pool.ready_count() >= 2), timeout=180)
    seen = []
    for name, source in (("leave.ipynb", LEAVE), ("look.ipynb", LOOK)):
        job_id = await h.run(notebook(tmp_path, name, source))
        events = await h.events(job_id)
        job = await h.store.get_job(job_id)
        assert job["status"] == "succeeded", job["error"]
        assert job["steps"][0]["handle"]["warm"], "the step ran on a standby runner"
        seen.append(json.loads(stdout(events).strip().splitlines()[-1]))
    left, looked = seen
    assert left["leakmod"], "the first job did import its module"
    assert looked["pid"] != left["pid"], "a fresh kernel"
    assert looked == {"pid": looked["pid"], "secret": False, "leakmod": False, "env": None, "marker": False}
    # The pool refills to its size after the two takes.
    await until("the pool refilled", lambda: _async(pool.ready_count() >= 2), timeout=180)


WAIT_FOR_READY = """
import glob, time
deadline = time.monotonic() + 120
while len(glob.glob({pattern!r})) < 2:
    assert time.monotonic() < deadline, "the pool did not grow for the chain's later steps"
    time.sleep(0.05)
x = 1
"""


async def test_a_chain_finds_its_later_steps_runners_ready(make: Any, tmp_path: Path) -> None:
    # A pool of ONE: the later steps' runners are there because the job said they were coming.
    h = await make(gpus=[], max_concurrent=2, warm_pool=1)
    pool = h.backend._pool
    await until("a warm runner", lambda: _async(pool.ready_count() >= 1), timeout=180)
    assert pool.folder is not None
    # Step a ends only once two runners are ready (the pool folder's ready-PID files), so b and c
    # must find theirs ready, whatever this machine's speed.
    nb = new_notebook(metadata=KERNEL)
    for tags, source in (
        (["step:a"], WAIT_FOR_READY.format(pattern=str(pool.folder / "ready-*"))),
        (["step:b", "prev:a"], "y = x + 1"),
        (["step:c", "prev:b"], "print(y + 1)"),
    ):
        nb.cells.append(new_code_cell(source, metadata={"tags": tags}))
    nbformat.write(nb, tmp_path / "chain.ipynb")
    job_id = await h.run("chain.ipynb")
    events = await h.events(job_id)
    job = await h.store.get_job(job_id)
    assert job["status"] == "succeeded", job["error"]
    assert stdout(events) == "3\n"
    assert [s["handle"]["warm"] for s in job["steps"]] == [True, True, True]
    assert pool.taken == {"ready": 3, "starting": 0}
    assert h.backend._expected == {}, "the finished job expects nothing more"


async def _async(value: Any) -> Any:
    return value


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
            out.append(int(stat.parent.name))
    return out


async def test_a_standby_kernel_that_died_while_waiting_is_replaced(make: Any, tmp_path: Path) -> None:
    """A ready runner whose kernel died while it waited (the OOM killer, a stray kill) starts a fresh
    kernel for its step: before, the step hung for ever in the kernel_info handshake."""
    import os
    import signal

    h = await make(gpus=[], max_concurrent=1, warm_pool=1)
    pool = h.backend._pool
    await until("a warm runner", lambda: _async(pool.ready_count() >= 1), timeout=180)
    (runner,) = [p for p in pool.procs if p.poll() is None]
    kernels = _children(runner.pid)
    assert kernels, "the ready runner has its kernel"
    for pid in kernels:
        os.kill(pid, signal.SIGKILL)
    job_id = await h.run(notebook(tmp_path, "after.ipynb", "print('ran', 6 * 7)"))
    events = await asyncio.wait_for(h.events(job_id), 240)  # it hung for ever before
    job = await h.store.get_job(job_id)
    assert job["status"] == "succeeded", job["error"]
    assert "ran 42" in stdout(events)


def test_a_warm_kernel_that_dies_after_the_check_is_replaced(tmp_path: Path, monkeypatch: Any) -> None:
    """The pool's kernel dies between the runner's alive check and the step's first cell (a kill
    racing the hand-over; under load the check can still see a dying kernel as alive): the step
    runs in a fresh kernel instead of failing with DeadKernelError (it did, under load)."""
    import json
    import os
    import signal
    import time

    from jupyter_client.manager import KernelManager

    from jupyter_ext.runner import main as runner_main

    km = KernelManager(kernel_name="python3")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    pid = km.provisioner.pid  # type: ignore[union-attr]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while km.is_alive() and time.monotonic() < deadline:  # dead for certain before the step begins
        time.sleep(0.05)
    assert not km.is_alive()
    monkeypatch.setattr(runner_main, "_alive", lambda _km: True)  # the check saw it alive
    nb_path = tmp_path / notebook(tmp_path, "race.ipynb", "print('ran', 6 * 7)")
    attempt = tmp_path / "attempt"
    args = runner_main.parse_args(
        ["--notebook", str(nb_path), "--attempt-dir", str(attempt), "--job", "j", "--no-html"]
    )
    monkeypatch.setenv("JUPYTER_EXT_KERNEL_PID_FILE", str(attempt / "kernel.pid"))
    code = runner_main.run(args, km=km, kc=kc)
    events = [json.loads(line) for line in (attempt / "events.jsonl").read_text().splitlines()]
    end = [e for e in events if e["type"] == "step.end"][-1]
    assert (code, end["status"]) == (0, "succeeded"), end["error"]
    assert "ran 42" in "".join(e["output"].get("text", "") for e in events if e["type"] == "cell.output")
