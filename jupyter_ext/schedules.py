"""Schedules: a notebook run on a cron schedule, from a snapshot taken when the schedule was made.

    POST /jupyter-ext/api/schedules {"notebook": "train.ipynb", "cron": "0 2 * * *", "timezone": "Europe/Berlin"}
    jupyter-ext schedule add train.ipynb --cron "0 2 * * *" --tz Europe/Berlin

- The cron expression and the time zone are checked at the edge (cron.py: croniter, zoneinfo),
  errors naming `cron` / `timezone`; runs are computed in the schedule's zone, DST included, and
  `next_run` is stored as epoch seconds.
- The notebook is checked as a submission would be (under the root, plans, parameters, kernel,
  resources), then its bytes are kept at <data_dir>/schedules/<id>/notebook.ipynb: every run runs
  that snapshot (in the original notebook's folder), until `PATCH {"snapshot": true}` takes a new one.
- `Scheduler` is both the schedules' API (the handlers and the in-process session call it) and, in
  the server only (`start()`), the loop that fires them: it sleeps until the earliest next run or a
  change (`wake()`), then for each due schedule takes the run (`store.claim_schedule_run`: the run's
  row and the schedule's next run in one transaction; the row's PRIMARY KEY (schedule, due) is what
  keeps two servers on one database from firing a run twice), submits the job from the snapshot and
  records its id or the error. Several slots missed in a row fire once, never once per slot.
- At start-up, runs that fell due while no server ran fire once (`catch_up="once"`) or are recorded
  as skipped (`"skip"`). Paused schedules have no next run; resuming computes it from now.
- The clock (`now`) is injectable, and `wake()` makes the loop look again, so tests drive time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .cron import check_cron, local_iso, next_run, zone_named
from .errors import JupyterExtError, ValidationError, cut
from .models import JobSpec, check_parameters, notebook_path, parse
from .views import iso

if TYPE_CHECKING:
    from .orchestrator import Orchestrator
    from .store import AsyncStore

log = logging.getLogger("jupyter_ext")

CATCH_UP = ("once", "skip")
RUNS_SHOWN = 10
#: Taken runs that have neither a job nor an error this long after being taken were lost with
#: their server (it stopped between taking the run and submitting its job).
LOST_AFTER = 600.0


# -- the API's bodies -----------------------------------------------------------------------------------------------
class _Body(BaseModel):
    # strict: what the schema (openapi.yaml) refuses is refused here too ("5" is not a number, 1 not true)
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)


class ScheduleSpec(_Body):
    """`POST schedules`: what to run, and when."""

    notebook: str = Field(..., description="Path of the notebook, relative to the server root")
    cron: str = Field(..., max_length=200, description="Five cron fields, or @daily etc.")
    timezone: str = Field("UTC", max_length=64, description="IANA time zone the cron fields are read in")
    name: str | None = Field(None, max_length=200)
    parameters: dict[str, Any] = Field(default_factory=dict)
    sweep: dict[str, list[Any]] | None = None
    sweep_mode: Literal["grid", "zip"] = "grid"
    sweep_parallel: int | None = None
    backend: str | None = Field(None, max_length=200)
    kernel: str | None = Field(None, max_length=200)
    fresh: bool = Field(False, description="true: every run ignores cached results (its steps all run)")

    @field_validator("notebook")
    @classmethod
    def _notebook(cls, v: str) -> str:
        return notebook_path(v)

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        return check_cron(v)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str) -> str:
        zone_named(v)
        return v

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, v: dict[str, Any]) -> dict[str, Any]:
        check_parameters(v)
        return v


class SchedulePatch(_Body):
    """`PATCH schedules/{id}`: pause or resume, change when or with what it runs (`fresh`: whether its
    runs ignore cached results), or retake the snapshot."""

    paused: bool | None = None
    cron: str | None = Field(None, max_length=200)
    timezone: str | None = Field(None, max_length=64)
    name: str | None = Field(None, max_length=200)
    parameters: dict[str, Any] | None = None
    fresh: bool | None = Field(None, description="true: every run ignores cached results (its steps all run)")
    snapshot: bool | None = Field(None, description="true: take a new snapshot of the notebook now")

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        return None if v is None else check_cron(v)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str | None) -> str | None:
        if v is not None:
            zone_named(v)
        return v

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            check_parameters(v)
        return v


def schedule_view(row: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Store row (+ its newest runs) -> the API's `Schedule`."""
    spec = row["spec"]
    return {
        "id": row["id"],
        "name": row["name"],
        "notebook": row["notebook"],
        "cron": row["cron"],
        "timezone": row["timezone"],
        "paused": bool(row["paused"]),
        "parameters": spec.get("parameters") or {},
        "sweep": spec.get("sweep"),
        "sweep_mode": spec.get("sweep_mode") or "grid",
        "backend": spec.get("backend"),
        "kernel": spec.get("kernel"),
        "fresh": bool(spec.get("fresh")),
        "created": iso(row["created"]),
        "updated": iso(row["updated"]),
        "snapshot_taken": iso(spec.get("snapshot_taken")),
        "next_run": None if row["paused"] else row["next_run"],
        "next_run_iso": None if row["paused"] else local_iso(row["next_run"], row["timezone"]),
        "runs": [
            {
                "due": iso(r["due"]),
                "fired": iso(r["fired"]),
                "job": r["job_id"],
                "status": r.get("status"),
                "error": r["error"],
            }
            for r in runs
        ],
    }


# -- the schedules, and the loop that fires them -------------------------------------------------------------------
class Scheduler:
    """The schedules of one job database (see the module docstring). `now` is the clock."""

    def __init__(
        self,
        *,
        store: AsyncStore,
        orchestrator: Orchestrator,
        catch_up: str = "once",
        now: Callable[[], float] = time.time,
        max_sleep: float = 60.0,
    ) -> None:
        if catch_up not in CATCH_UP:
            raise ValueError(f"catch_up: {catch_up!r}; one of {', '.join(CATCH_UP)}")
        self.store = store
        self.orchestrator = orchestrator
        self.catch_up_policy = catch_up
        self.now = now
        self.max_sleep = max_sleep  # a look at the store at least this often (another server's changes)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- paths ----------------------------------------------------------------------------------------------
    def snapshot_path(self, schedule_id: str) -> Path:
        return self.orchestrator.layout.schedule_snapshot(schedule_id)

    # -- the API ------------------------------------------------------------------------------------------
    async def list(self, user: str) -> list[dict[str, Any]]:
        rows = await self.store.list_schedules(user)
        runs = await self.store.schedule_runs([r["id"] for r in rows], RUNS_SHOWN)
        return [schedule_view(r, runs[r["id"]]) for r in rows]

    async def get(self, schedule_id: str, user: str | None) -> dict[str, Any]:
        return await self._view(await self.store.get_schedule(schedule_id, user))

    async def _view(self, row: dict[str, Any]) -> dict[str, Any]:
        runs = await self.store.schedule_runs([row["id"]], RUNS_SHOWN)
        return schedule_view(row, runs[row["id"]])

    async def create(self, body: Any, user: str) -> dict[str, Any]:
        """Check and store a schedule (`ScheduleSpec` as JSON) with its snapshot; answers the view."""
        spec = parse(ScheduleSpec, body)
        job = self._job_spec(spec.notebook, spec.model_dump(), spec.name)
        backend_name, _ = self.orchestrator.backend_named(spec.backend)
        schedule_id = uuid.uuid4().hex[:12]
        target = self.snapshot_path(schedule_id)
        await asyncio.to_thread(self._take_snapshot, job, backend_name, target)
        now = self.now()
        row = {
            "id": schedule_id,
            "user": user,
            "name": spec.name or Path(spec.notebook).stem,
            "notebook": spec.notebook,
            "cron": spec.cron,
            "timezone": spec.timezone,
            "spec": {
                "parameters": spec.parameters,
                "sweep": spec.sweep,
                "sweep_mode": spec.sweep_mode,
                "sweep_parallel": spec.sweep_parallel,
                "backend": spec.backend,
                "kernel": spec.kernel,
                "fresh": spec.fresh,
                "snapshot_taken": now,
            },
            "paused": False,
            "created": now,
            "updated": now,
            "next_run": next_run(spec.cron, spec.timezone, now),
        }
        try:
            stored = await self.store.create_schedule(row)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, target.parent, True)
            raise
        self.wake()
        return await self._view(stored)

    async def update(self, schedule_id: str, body: Any, user: str) -> dict[str, Any]:
        """Pause, resume, change cron/timezone/parameters/name/fresh, or retake the snapshot."""
        patch = parse(SchedulePatch, body)
        row = await self.store.get_schedule(schedule_id, user)
        spec = dict(row["spec"])
        fields: dict[str, Any] = {}
        cron = patch.cron or row["cron"]
        timezone = patch.timezone or row["timezone"]
        if patch.cron is not None or patch.timezone is not None:
            fields["cron"], fields["timezone"] = cron, timezone
        if patch.name is not None:
            fields["name"] = patch.name or Path(row["notebook"]).stem
        paused = bool(row["paused"]) if patch.paused is None else patch.paused
        if patch.parameters is not None:
            spec["parameters"] = patch.parameters
        if patch.fresh is not None:
            spec["fresh"] = patch.fresh
        now = self.now()
        if patch.snapshot or patch.parameters is not None:  # checked as a run would be (pausing never is)
            job = self._job_spec(row["notebook"], spec, row["name"])  # the new parameters with the sweep
            backend_name, _ = self.orchestrator.backend_named(spec.get("backend"))
            if patch.snapshot:
                await asyncio.to_thread(self._take_snapshot, job, backend_name, self.snapshot_path(schedule_id))
                spec["snapshot_taken"] = now
            else:
                await asyncio.to_thread(self._check_snapshot, job, backend_name, self.snapshot_path(schedule_id))
        if paused:
            fields["next_run"] = None
        elif row["paused"] or "cron" in fields:
            fields["next_run"] = next_run(cron, timezone, now)  # resumed, or a new time: from now on
        fields.update(spec=spec, paused=paused, updated=now)
        stored = await self.store.update_schedule(schedule_id, **fields)
        self.wake()
        return await self._view(stored)

    async def delete(self, schedule_id: str, user: str) -> None:
        """Delete a schedule and its snapshot; the jobs it fired stay."""
        await self.store.delete_schedule(schedule_id, user)
        await asyncio.to_thread(shutil.rmtree, self.snapshot_path(schedule_id).parent, True)
        self.wake()

    # -- checks and snapshots (blocking: in a thread) ----------------------------------------------------------
    def _job_spec(self, notebook: str, spec: dict[str, Any], name: str | None, **extra: Any) -> JobSpec:
        """The job a run submits (JobSpec's own checks: parameters, sweep, kernel name)."""
        body: dict[str, Any] = {"notebook": notebook, "parameters": spec.get("parameters") or {}, **extra}
        for key in ("backend", "kernel", "sweep_parallel"):
            if spec.get(key) is not None:
                body[key] = spec[key]
        if name:
            body["name"] = name
        if spec.get("fresh"):
            body["fresh"] = True
        if spec.get("sweep"):
            body["sweep"] = spec["sweep"]
            body["sweep_mode"] = spec.get("sweep_mode") or "grid"
        return parse(JobSpec, body)

    def _take_snapshot(self, job: JobSpec, backend_name: str, target: Path) -> None:
        """Read the notebook under the root once, check it as a submission, keep those bytes."""
        assert job.notebook is not None
        source = self.orchestrator.builder.layout.resolve_notebook(job.notebook)
        data = source.read_bytes()
        self._check(job, backend_name, data)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
        partial.write_bytes(data)
        os.replace(partial, target)

    def _check_snapshot(self, job: JobSpec, backend_name: str, snapshot: Path) -> None:
        try:
            data = snapshot.read_bytes()
        except FileNotFoundError:
            raise ValidationError(
                'snapshot: this schedule\'s snapshot is gone; take a new one with {"snapshot": true}', field="snapshot"
            ) from None
        self._check(job, backend_name, data)

    def _check(self, job: JobSpec, backend_name: str, data: bytes) -> None:
        """What a submission of `job` with this notebook would be refused for: plan, parameters
        (the swept ones too), kernel, each step's resources."""
        import nbformat

        from .notebook import plan_notebook
        from .notebook.parameters import check_parameters as check_declared

        assert job.notebook is not None
        try:
            nb = nbformat.reads(data.decode("utf-8"), as_version=4)
        except Exception as exc:  # noqa: BLE001 - nbformat raises many types for bad files
            raise ValidationError(
                f"notebook: {job.notebook!r} is not a valid notebook: {cut(str(exc), 300)}", field="notebook"
            ) from None
        orchestrator = self.orchestrator
        plan = plan_notebook(nb, defaults=job.resources)
        swept = {name: values[0] for name, values in (job.sweep or {}).items()}
        check_declared(nb, {**job.parameters, **swept}, repr(job.notebook))
        orchestrator.check_kernel(nb, backend_name, job.kernel)
        backend = orchestrator.backends[backend_name]
        for planned in plan.steps:
            orchestrator.check_resources(backend, planned.name, planned.resources, planned.asked)

    # -- firing ---------------------------------------------------------------------------------------------
    async def fire_due(self, *, skip: bool = False) -> int:
        """Take every run due now; submit each (or, with `skip`, record it as skipped). Answers how
        many runs this process took."""
        now = self.now()
        taken = 0
        for row in await self.store.due_schedules(now):
            due = float(row["next_run"])
            try:
                following = next_run(row["cron"], row["timezone"], max(now, due))
            except Exception:  # noqa: BLE001 - a stored cron this version cannot read: stop, say why
                log.exception("jupyter-ext: schedule %s (cron %r) cannot be computed; paused", row["id"], row["cron"])
                await self.store.update_schedule(row["id"], paused=True, next_run=None)
                continue
            if not await self.store.claim_schedule_run(row["id"], due, now, following):
                continue  # another server took it, or the schedule changed meanwhile
            taken += 1
            if skip:
                words = local_iso(due, row["timezone"])
                await self.store.finish_schedule_run(
                    row["id"],
                    due,
                    error=f"skipped: no server was running at {words} (c.JupyterExt.schedule_catch_up = 'skip')",
                )
                log.info("jupyter-ext: schedule %s: skipped the run due at %s (server was down)", row["id"], words)
                continue
            await self._fire(row, due)
        return taken

    async def _fire(self, row: dict[str, Any], due: float) -> None:
        """Submit the taken run's job from the snapshot; record the job or why there is none."""
        job_id: str | None = None
        error: str | None = None
        try:
            spec = self._job_spec(
                row["notebook"], row["spec"], row["name"], idempotency_key=f"schedule:{row['id']}:{due:.0f}"
            )
            snapshot = self.snapshot_path(row["id"])
            job, _ = await self.orchestrator.submit(spec, row["user"], snapshot=snapshot, schedule=row["id"])
            job_id = job["id"]
            log.info("jupyter-ext: schedule %s fired job %s (due %s)", row["id"], job_id, iso(due))
        except JupyterExtError as exc:
            error = cut(exc.message, 2000)
            log.warning("jupyter-ext: schedule %s could not run: %s", row["id"], error)
        except Exception as exc:  # noqa: BLE001 - one schedule's failure never stops the others
            log.exception("jupyter-ext: schedule %s failed to fire", row["id"])
            error = cut(f"internal error: {type(exc).__name__}: {exc}", 2000)
        await self.store.finish_schedule_run(row["id"], due, job_id=job_id, error=error)

    # -- the loop (server only) -----------------------------------------------------------------------------
    def wake(self) -> None:
        """Look at the schedules again now (one was added or changed, or the clock moved)."""
        self._wake.set()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Catch up on runs missed while no server ran, then fire schedules until `stop()`."""
        if self.running:
            return
        await self.store.abandon_schedule_runs(
            self.now() - LOST_AFTER, "lost: the server stopped between taking this run and submitting its job"
        )
        if self.catch_up_policy == "skip":
            await self.fire_due(skip=True)
        self._wake.clear()
        self._task = asyncio.create_task(self._loop(), name="jupyter-ext schedules")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        while True:
            self._wake.clear()  # before reading the store: a change made meanwhile wakes the next wait
            try:
                await self.fire_due()
                due = await self.store.next_schedule_run()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the loop outlives one bad round
                log.exception("jupyter-ext: firing schedules failed; trying again")
                due = None
            delay = self.max_sleep if due is None else min(self.max_sleep, max(0.0, due - self.now()))
            if delay <= 0:
                await asyncio.sleep(0)
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except asyncio.TimeoutError:  # noqa: UP041 - Python 3.10's wait_for raises this one
                pass
