"""REST routes of schedules under /jupyter-ext/api/schedules (openapi.yaml documents them).

Authenticated and authorized like every route (handlers._Base); a user only ever sees their own
schedules: another user's schedule id answers 404. The work is the Scheduler's (schedules.py).
app.py registers `schedule_handlers` before handlers.py's table (whose catch-all comes last).
"""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from .handlers import API, _Base


class SchedulesHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        """Your schedules, newest first, each with its next run and its last runs."""
        self.finish({"schedules": await self.ext.scheduler.list(self.owner)})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        """Make a schedule: the notebook is checked as a job submission would be, then snapshotted."""
        schedule = await self.ext.scheduler.create(self.body(), self.owner)
        self.set_status(201)
        self.set_header("Location", f"{self.base_url.rstrip('/')}{API}/schedules/{schedule['id']}")
        self.finish(schedule)


class ScheduleHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self, schedule_id: str) -> None:
        """One schedule."""
        self.finish(await self.ext.scheduler.get(schedule_id, self.owner))

    @web.authenticated
    @authorized
    async def patch(self, schedule_id: str) -> None:
        """Pause or resume it, change its cron, time zone or parameters, or take a new snapshot."""
        self.finish(await self.ext.scheduler.update(schedule_id, self.body(), self.owner))

    @web.authenticated
    @authorized
    async def delete(self, schedule_id: str) -> None:
        """Delete it and its snapshot; the jobs it fired stay."""
        await self.ext.scheduler.delete(schedule_id, self.owner)
        self.set_status(204)
        self.finish()


_SCHEDULE = r"(?P<schedule_id>[A-Za-z0-9_-]{1,64})"

schedule_handlers: list[tuple[str, type]] = [
    (rf"{API}/schedules", SchedulesHandler),
    (rf"{API}/schedules/{_SCHEDULE}", ScheduleHandler),
]
