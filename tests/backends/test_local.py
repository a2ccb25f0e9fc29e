"""The local backend and orchestrator in one process: GPU pool, concurrency, retries, timeouts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.harness import notebook, span, stdout

pytestmark = pytest.mark.slow


async def test_gpu_pool_hands_out_distinct_devices_and_steps_wait_for_them(make: Any, tmp_path: Path) -> None:
    # Fake GPU ids (no GPU here): what is tested is the hand-out through CUDA_VISIBLE_DEVICES.
    h = await make(gpus=["fake-gpu-0", "fake-gpu-1"], max_concurrent=4)
    nb = notebook(tmp_path, "gpu.ipynb", "import os, time\nprint(os.environ['CUDA_VISIBLE_DEVICES'])\ntime.sleep(1.5)")
    ids = [await h.run(nb, resources={"gpu": 1}) for _ in range(3)]
    runs = [await h.events(i) for i in ids]
    devices = [stdout(r).strip() for r in runs]
    assert all(d in ("fake-gpu-0", "fake-gpu-1") for d in devices)
    spans = [span(r) for r in runs]
    first_two_overlap = spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1]
    assert first_two_overlap and devices[0] != devices[1], "two 1-GPU steps share a 2-GPU pool at once"
    assert spans[2][0] >= min(spans[0][1], spans[1][1]) - 0.05, "the third waits until a GPU is free"
    cpu = notebook(tmp_path, "cpu.ipynb", "import os\nprint(repr(os.environ['CUDA_VISIBLE_DEVICES']))")
    assert stdout(await h.events(await h.run(cpu))).strip() == "''", "a CPU step sees no GPU"
    two = notebook(tmp_path, "two.ipynb", "import os\nprint(os.environ['CUDA_VISIBLE_DEVICES'])")
    assert stdout(await h.events(await h.run(two, resources={"gpu": 2}))).strip() in (
        "fake-gpu-0,fake-gpu-1",
        "fake-gpu-1,fake-gpu-0",
    )


async def test_concurrency_limit(make: Any, tmp_path: Path) -> None:
    h = await make(max_concurrent=1, gpus=[])
    nb = notebook(tmp_path, "sleep.ipynb", "import time\ntime.sleep(1)")
    a, b = await h.run(nb), await h.run(nb)
    ea, eb = await h.events(a), await h.events(b)
    assert span(eb)[0] >= span(ea)[1] - 0.05, "with max_concurrent=1 the second job waits"


async def test_retry_then_success(make: Any, tmp_path: Path) -> None:
    h = await make(gpus=[])
    nb = notebook(
        tmp_path,
        "flaky.ipynb",
        "from pathlib import Path\nmark = Path('flaky.mark')\nfirst = not mark.exists()\nmark.touch()\n"
        "if first:\n    raise RuntimeError('transient failure')\nprint('ok on retry')",
    )
    job_id = await h.run(nb, retries=1)
    events = await h.events(job_id)
    job = await h.store.get_job(job_id)
    assert job["status"] == "succeeded" and job["steps"][0]["attempt"] == 2
    retry = [e for e in events if e["type"] == "step.retry"]
    assert len(retry) == 1 and "transient failure" in retry[0]["error"]["message"]
    assert "ok on retry" in stdout(events)
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1))


async def test_timeout_stops_the_step_and_says_what_to_change(make: Any, tmp_path: Path) -> None:
    h = await make(gpus=[], cancel_grace=1.0)
    nb = notebook(tmp_path, "forever.ipynb", "import time\nprint('start', flush=True)\ntime.sleep(300)")
    job_id = await h.run(nb, timeout="2s")
    events = await asyncio.wait_for(h.events(job_id), 60)
    job = await h.store.get_job(job_id)
    assert job["status"] == "failed"
    assert "timed out after 2s; raise `timeout:` on step 'main'" in job["error"]["message"]
    assert events[-1]["type"] == "job.end"


async def test_cancel_while_waiting_for_capacity(make: Any, tmp_path: Path) -> None:
    h = await make(max_concurrent=1, gpus=[], cancel_grace=1.0)
    nb = notebook(tmp_path, "long.ipynb", "import time\ntime.sleep(30)")
    running = await h.run(nb)
    waiting = await h.run(nb)
    await asyncio.sleep(1.0)
    assert (await h.store.get_job(waiting))["steps"][0]["status"] == "queued"
    await h.orch.cancel(waiting, "tester")
    job = await h.orch.wait(waiting)
    assert job["status"] == "cancelled" and job["steps"][0]["status"] == "cancelled"
    assert not [e for e in await h.store.events(waiting) if e["type"] == "step.start"], "it never started"
    await h.orch.cancel(running, "tester")
    assert (await h.orch.wait(running))["status"] == "cancelled"
