"""In-process orchestrator + local backend for tests that do not need the HTTP layer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from jupyter_ext.backends.local import LocalBackend
from jupyter_ext.models import JobSpec
from jupyter_ext.orchestrator import Orchestrator
from jupyter_ext.store import AsyncStore, Store

KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def notebook(root: Path, name: str, *sources: str) -> str:
    nbformat.write(new_notebook(cells=[new_code_cell(s) for s in sources], metadata=KERNEL), root / name)
    return name


class Harness:
    def __init__(self, root: Path, data: Path, **backend: Any) -> None:
        self.backend = LocalBackend(**backend)
        self.store = AsyncStore(Store(data / "jobs.db"))
        self.orch = Orchestrator(
            store=self.store, backends={"local": self.backend}, default_backend="local", root_dir=root, data_dir=data
        )

    async def run(self, nb: str, **spec: Any) -> str:
        job, _ = await self.orch.submit(JobSpec(notebook=nb, **spec), "tester")
        return str(job["id"])

    async def events(self, job_id: str) -> list[dict[str, Any]]:
        await self.orch.wait(job_id)
        events: list[dict[str, Any]] = []
        while True:  # every event, however many (the store answers at most 10,000 per read)
            page = await self.store.events(job_id, events[-1]["seq"] if events else 0)
            if not page:
                return events
            events.extend(page)


def stdout(events: list[dict[str, Any]]) -> str:
    return "".join(e["output"].get("text", "") for e in events if e["type"] == "cell.output")


def span(events: list[dict[str, Any]]) -> tuple[float, float]:
    cells = [e["ts"] for e in events if e["type"] in ("cell.start", "cell.end")]
    return min(cells), max(cells)


def process_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie has finished: only its parent's wait() remains)."""
    from jupyter_ext.backends.local import _alive

    return _alive(pid, None)


async def until(what: str, check: Callable[[], Awaitable[Any]], timeout: float = 120) -> Any:
    """Await `check` until it answers something truthy (its answer), or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
