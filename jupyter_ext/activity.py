"""Activity the server reports while it has work, so JupyterHub's idle culler keeps it.

jupyter-server's `web_app.last_activity()` is the newest of its own activity times and of every
`*_last_activity` value in the web app's settings; jupyterhub-singleuser sends that to the hub,
whose idle culler stops servers idle for longer than its timeout. Jobs run outside the server's
kernels and make no requests, so without this a server running a 3-hour job (or waiting to fire
tonight's schedule) looks idle and is culled, killing the job or missing the run.

`ActivityReporter` sets `settings["jupyter_ext_last_activity"]` to now when a job starts or ends
here, and every `interval` seconds while one is queued or running here or, with
`report_activity = "jobs_and_schedules"` (the default), while any schedule is active. "jobs"
reports only jobs; "off" reports nothing. docs/jupyterhub.md says what that costs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime, timezone
from typing import Any

log = logging.getLogger("jupyter_ext")

SETTING = "jupyter_ext_last_activity"
MODES = ("jobs_and_schedules", "jobs", "off")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class ActivityReporter:
    """Keeps `settings[SETTING]` fresh while there is work (see the module docstring)."""

    def __init__(
        self,
        settings: MutableMapping[str, Any],
        *,
        mode: str = "jobs_and_schedules",
        jobs: Callable[[], int],
        schedules: Callable[[], Awaitable[int]] | None = None,
        interval: float = 60.0,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"report_activity: {mode!r}; one of {', '.join(MODES)}")
        self.settings = settings
        self.mode = mode
        self.jobs = jobs
        self.schedules = schedules
        self.interval = interval
        self.now = now
        self._task: asyncio.Task[None] | None = None

    def touch(self) -> None:
        """Activity now (unless reporting is off)."""
        if self.mode != "off":
            self.settings[SETTING] = self.now()

    def job_changed(self) -> None:
        """A job started or ended here (Orchestrator.activity_listeners)."""
        self.touch()

    async def busy(self) -> bool:
        """Whether there is work that should keep the server: a job here, or an active schedule."""
        if self.mode == "off":
            return False
        if self.jobs() > 0:
            return True
        return self.mode == "jobs_and_schedules" and self.schedules is not None and await self.schedules() > 0

    async def check(self) -> None:
        if await self.busy():
            self.touch()

    def start(self) -> None:
        if self.mode != "off" and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="jupyter-ext activity")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - reporting activity never stops the server
                log.exception("jupyter-ext: could not tell whether there is work to report as activity")
            await asyncio.sleep(self.interval)
