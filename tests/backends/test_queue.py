"""Under load: a job whose steps wait for a slot is `queued`, with its place in line (issue 12)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jupyter_ext.views import job_view
from tests.harness import notebook, until

pytestmark = pytest.mark.slow


async def test_jobs_waiting_for_a_slot_are_queued_in_order_until_a_step_starts(make: Any, tmp_path: Path) -> None:
    h = await make(max_concurrent=1, gpus=[])
    busy = notebook(tmp_path, "busy.ipynb", "import time\nwhile True:\n    time.sleep(0.05)")
    quick = notebook(tmp_path, "quick.ipynb", "print('ran')")

    async def view(job_id: str) -> dict[str, Any]:
        return job_view(await h.store.get_job(job_id))

    async def types(job_id: str) -> list[str]:
        return [e["type"] for e in await h.store.events(job_id)]

    a = await h.run(busy)
    await until("the busy job's step to start", lambda: _has(h, a, "step.start"))
    b, c, d = await h.run(quick), await h.run(quick), await h.run(quick)

    async def lined_up() -> bool:
        views = [await view(j) for j in (b, c, d)]
        return [v["queue_position"] for v in views] == [1, 2, 3]

    await until("b, c, d in line", lined_up)
    for job_id, place in ((b, 1), (c, 2), (d, 3)):
        shown = await view(job_id)
        assert shown["status"] == "queued" and shown["started"] is None, shown
        assert shown["steps"][0]["status"] == "queued" and shown["steps"][0]["queue_position"] == place
        assert "job.start" not in await types(job_id), "a job waiting for a slot has not started"
    running = await view(a)
    assert running["status"] == "running" and running["queue_position"] is None
    assert running["steps"][0]["queue_position"] is None
    assert h.backend.capacity()["queued"] == 3

    await h.orch.cancel(d, None)  # leaving the line moves nobody ahead of it
    assert (await h.orch.wait(d))["status"] == "cancelled"
    assert "job.start" not in await types(d) and (await view(d))["queue_position"] is None
    await until("d out of line", lambda: _positions(h, b, c, expect=[1, 2]))

    await h.orch.cancel(a, None)  # the slot frees: b starts, c moves up
    assert (await h.orch.wait(b))["status"] == "succeeded"
    events = await types(b)
    assert events.index("job.queued") < events.index("job.start") < events.index("step.start")
    assert (await view(b))["queue_position"] is None
    assert (await h.orch.wait(c))["status"] == "succeeded"
    assert (await view(c))["queue_position"] is None and (await view(c))["started"] is not None


async def _has(h: Any, job_id: str, kind: str) -> bool:
    return any(e["type"] == kind for e in await h.store.events(job_id))


async def _positions(h: Any, *ids: str, expect: list[int]) -> bool:
    return [job_view(await h.store.get_job(j))["queue_position"] for j in ids] == expect
