"""Job and step state machine, persisted in the store, driven by one task per active job.

Desired state lives in the store (what was submitted, which attempt of which step runs with
which backend handle, how many runner events were consumed); the backends report what
actually happens. On start-up `reconcile()` re-drives every unfinished job: running steps
are adopted and their event streams resume after the last stored event; queued steps are
submitted (a step whose process was started just before a crash is found and adopted by the
backend, not started twice).

States: queued -> running -> succeeded | failed | cancelled; a step whose upstream failed is
`not_run`. Retries and timeouts are per step and belong here, not to the backends.

What is not the state machine lives beside it: paths and path checks in layout.py, checking and
writing a submission in prepare.py (notebooks built by notebook/), deleting and pruning in
upkeep.py, queue places in queue_positions.py, the fan-out in fanout.py, wording in reasons.py,
cached steps (key, look-up, replay, single flight) in cache.py.

Why this module is long: it is one state machine (submit, drive, cancel, adopt after a restart,
one step's attempts with retries, timeouts and refusals, ending steps and jobs), and its parts
share the driver's state (`_drivers`, `_waiting`, `_cancelling`); split apart, each piece would
reach into the others' private sets.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any

from . import reasons
from .backends.base import Backend, Handle, Outcome, StepLaunch
from .cache import StepCache
from .contract import HANDOFF_OUT_ENV, TERMINAL
from .errors import NotFound, ValidationError
from .fanout import EventFanout
from .layout import JobLayout
from .models import JobSpec, Resources, Status, StepSpec
from .notebook.combine import combine_executed
from .prepare import JobBuilder
from .queue_positions import QueuePositions
from .records import JobRecord, StepRecord
from .store import AsyncStore, new_job_id
from .upkeep import Upkeep

log = logging.getLogger("jupyter_ext")

COMBINED = "job"  # the `step` of the whole job's executed notebook (a step named so gets another label)


class Orchestrator:
    """Submits, drives, cancels and reconciles jobs. One instance per server (or CLI run)."""

    def __init__(
        self,
        *,
        store: AsyncStore,
        backends: dict[str, Backend],
        default_backend: str,
        root_dir: str | Path,
        data_dir: str | Path,
        allow_hidden: bool = False,
        keep_jobs: tuple[float | None, int | None] = (None, None),
        upload_ttl: float | None = None,
        cleanup_interval: float = 3600.0,
    ) -> None:
        self.store = store
        self.backends = backends
        self.default_backend = default_backend
        self.layout = JobLayout(root_dir, data_dir, allow_hidden=allow_hidden)
        self.root_dir = self.layout.root_dir
        self.data_dir = self.layout.data_dir
        self.builder = JobBuilder(self.layout, store, backends, default_backend)
        self.upkeep = Upkeep(store, self.layout, keep_jobs=keep_jobs, upload_ttl=upload_ttl, interval=cleanup_interval)
        self.fanout = EventFanout()
        self._drivers: dict[str, asyncio.Task[None]] = {}
        self._waiting: dict[tuple[str, str], asyncio.Task[Any]] = {}
        self._cancelling: set[str] = set()
        self._stopping = False
        self._cleaner: asyncio.Task[None] | None = None
        self.queue_positions = QueuePositions(store, backends)
        self.step_cache = StepCache(
            store, self.layout, emit=self._emit, started=self._started, link_handoff=self.builder.link_handoff
        )
        #: Called (no arguments) when a job starts or stops being driven here (activity.py).
        self.activity_listeners: list[Callable[[], None]] = []

    # -- lifecycle ---------------------------------------------------------------------------------------
    async def start(self) -> None:
        for backend in self.backends.values():
            await backend.start()
        await self.reconcile()
        self._cleaner = asyncio.create_task(self.upkeep.run(), name="jupyter-ext cleanup")

    async def stop(self) -> None:
        """Stop driving jobs. Their steps keep running; the next start adopts them."""
        self._stopping = True
        await self.queue_positions.stop()
        if self._cleaner is not None:
            self._cleaner.cancel()
            await asyncio.gather(self._cleaner, return_exceptions=True)
        drivers = list(self._drivers.values())
        for task in drivers:
            task.cancel()
        await asyncio.gather(*drivers, return_exceptions=True)
        await self.queue_positions.clear()
        for backend in self.backends.values():
            await backend.stop()

    async def reconcile(self) -> None:
        """Re-drive every job the store says is unfinished (a sweep's runs are driven by their sweep job's driver)."""
        jobs = await self.store.list_jobs(None, limit=100000, statuses=["queued", "running"])
        unfinished = {job["id"] for job in jobs}
        for job in reversed(jobs):
            if job["cancel_requested"]:
                self._cancelling.add(job["id"])
            if job.get("parent") not in unfinished:
                self._drive_later(job["id"])
        if jobs:
            log.info("jupyter-ext: resumed %d unfinished job(s)", len(jobs))

    async def wait(self, job_id: str) -> JobRecord:
        """Wait until the job's driver is done; return the job."""
        task = self._drivers.get(job_id)
        if task is not None:
            await asyncio.shield(task)
        return await self.store.get_job(job_id)

    # -- for readers: the in-process session, the WebSocket stream (session.py, handlers.py) ---------------
    def drives(self, job_id: str) -> bool:
        """Whether this orchestrator drives the job now (else another process does, or nobody: it ended)."""
        return job_id in self._drivers

    def follow(self, job_id: str, after: int = 0, poll: float = 0.25) -> AsyncGenerator[list[dict[str, Any]], None]:
        """The job's events after `after` in batches, the backlog then live, until it ends (follow.py):
        live from the fan-out while this orchestrator drives the job, else from the store every `poll` s."""
        from .follow import follow

        return follow(self.store, job_id, after, fanout=self.fanout, live=lambda: self.drives(job_id), poll=poll)

    # -- submit --------------------------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        return self.layout.job_dir(job_id)

    def upload_path(self, user: str, upload_id: str) -> Path:
        return self.layout.upload_path(user, upload_id)

    def read_notebook(self, relative: str) -> tuple[Path, Any]:
        return self.builder.read_notebook(relative)

    def backend_named(self, name: str | None) -> tuple[str, Backend]:
        return self.builder.backend_named(name)

    def check_kernel(self, nb: Any, backend_name: str, kernel: str | None = None) -> None:
        self.builder.check_kernel(nb, backend_name, kernel)

    def check_resources(self, backend: Backend, step: str, resources: Resources, asked: Any = None) -> None:
        self.builder.check_resources(backend, step, resources, asked)

    async def submit(
        self,
        spec: JobSpec,
        user: str,
        *,
        drive: bool = True,
        snapshot: Path | None = None,
        schedule: str | None = None,
    ) -> tuple[JobRecord, bool]:
        """Plan and store a job, then start driving it (unless `drive` is false: another process
        will, see `drive()`). Returns (job, created). A schedule's run (schedules.py) passes what no
        client can: `snapshot`, the notebook file to run instead of `spec.notebook` (which the job
        still names, and whose folder it runs in), and `schedule`, its id (kept as `spec.schedule`)."""
        if spec.sweep is not None:  # one sweep job and a run per combination (sweeps.py)
            from .sweeps import submit_sweep

            return await submit_sweep(self, spec, user, drive=drive, snapshot=snapshot, schedule=schedule)
        backend_name, backend = self.backend_named(spec.backend)
        job_id = new_job_id()
        try:
            path, steps, asked = await asyncio.to_thread(
                self.builder.prepare, spec, job_id, user, backend_name, snapshot=snapshot
            )
            for step in steps:
                self.check_resources(backend, step.name, step.resources, asked.get(step.name))
            await backend.preflight([(s.name, s.resources) for s in steps if not s.reused_from])
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, self.job_dir(job_id), True)
            raise
        if spec.from_step or spec.rerun_of:
            try:
                await self.builder.plan_rerun(spec, steps, user)
                for s in steps:
                    if s.reused_from:
                        await asyncio.to_thread(self.builder.link_handoff, s.reused_from, job_id, s.name)
            except BaseException:
                await asyncio.to_thread(shutil.rmtree, self.job_dir(job_id), True)
                raise
        name = spec.name or (Path(spec.notebook).stem if spec.notebook else "%%remote")
        record = {
            "id": job_id,
            "user": user,
            "name": name,
            "notebook": spec.notebook or f"%%remote in {spec.cell.workdir if spec.cell else ''}".rstrip(),
            "backend": backend_name,
            "parameters": spec.parameters,
            "spec": {
                **spec.model_dump(exclude={"cell": {"inputs"}}),
                "workdir": str(path.parent),
                **({"schedule": schedule} if schedule else {}),
            },
            "idempotency_key": spec.idempotency_key,
            "created": time.time(),
        }
        job, created = await self.store.create_job(
            record,
            [
                {
                    "name": s.name,
                    "spec": s.model_dump(),
                    "status": "succeeded" if s.reused_from else "queued",
                    "attempt": s.reused_from["attempt"] if s.reused_from else 0,
                }
                for s in steps
            ],
        )
        if not created:
            await asyncio.to_thread(shutil.rmtree, self.job_dir(job_id), True)
            return job, False
        await self._emit(job_id, [{"type": "job.queued", "steps": [s.name for s in steps], "backend": backend_name}])
        if drive:
            self._drive_later(job_id)
        return await self.store.get_job(job_id), True

    def drive(self, job_id: str) -> None:
        """Drive a stored job from this process (one submitted with `drive=False` elsewhere)."""
        self._drive_later(job_id)

    async def _cancel_requested(self, job_id: str) -> bool:
        """Cancelled here, or by another process sharing the store (e.g. `jupyter-ext cancel`)."""
        if job_id in self._cancelling:
            return True
        if (await self.store.get_job(job_id))["cancel_requested"]:
            self._cancelling.add(job_id)
            return True
        return False

    # -- cancel / delete ------------------------------------------------------------------------------------
    async def cancel(self, job_id: str, user: str | None) -> JobRecord:
        job = await self.store.get_job(job_id, user)
        if job["status"] in TERMINAL:
            return job
        self._cancelling.add(job_id)
        await self.store.update_job(job_id, cancel_requested=1)
        backend = self.backends.get(job["backend"])
        for step in job["steps"]:
            waiting = self._waiting.get((job_id, step["name"]))
            if waiting is not None:
                waiting.cancel()
            elif step["status"] == "running" and step["handle"] and backend is not None:
                asyncio.create_task(backend.cancel(backend.load_handle(step["handle"])))
        if job["spec"].get("sweep"):  # a sweep's runs are cancelled with it
            from .sweeps import cancel_runs

            await cancel_runs(self, job_id)
        if job_id not in self._drivers:
            self._drive_later(job_id)
        return await self.store.get_job(job_id)

    def cancelling(self, job_id: str) -> bool:
        """Whether this orchestrator was asked to cancel the job (another process's cancel is in the store)."""
        return job_id in self._cancelling

    async def delete(self, job_id: str, user: str | None) -> None:
        """Delete a finished job of `user` (None: anyone's) with its events, artifacts and folder;
        Conflict for a queued or running job (upkeep.py)."""
        await self.upkeep.delete(job_id, user)

    async def prune(
        self, user: str | None, *, older_than: float | None = None, keep: int | None = None, dry_run: bool = False
    ) -> list[str]:
        """Delete `user`'s old finished jobs; the ids deleted (with `dry_run`: would delete). upkeep.py."""
        return await self.upkeep.prune(user, older_than=older_than, keep=keep, dry_run=dry_run)

    async def clean(self) -> None:
        """One round of upkeep (upkeep.py): keep_jobs, expired uploads, database space."""
        await self.upkeep.clean()

    # -- events ---------------------------------------------------------------------------------------------
    async def _emit(self, job_id: str, events: list[dict[str, Any]], **kw: Any) -> list[dict[str, Any]]:
        """Store events (`kw`: append_events' step, attempt, step_update: one transaction), then
        tell the readers, only once they are committed."""
        stored = await self.store.append_events(job_id, events, **kw)
        self.fanout.publish(job_id, stored)
        return stored

    # -- driving --------------------------------------------------------------------------------------------
    def _drive_later(self, job_id: str) -> None:
        if job_id in self._drivers or self._stopping:
            return
        task = asyncio.create_task(self._drive(job_id), name=f"jupyter-ext job {job_id}")
        self._drivers[job_id] = task
        task.add_done_callback(lambda _: self._driven(job_id))
        self._tell_activity()

    def _driven(self, job_id: str) -> None:
        self._drivers.pop(job_id, None)
        self._tell_activity()

    def _tell_activity(self) -> None:
        """A job started or stopped being driven here: tell the listeners (activity.py)."""
        for listener in list(self.activity_listeners):
            try:
                listener()
            except Exception:  # noqa: BLE001 - a listener never stops a job
                log.exception("jupyter-ext: an activity listener failed")

    def driving(self) -> int:
        """How many jobs this orchestrator drives now (queued or running here)."""
        return len(self._drivers)

    async def _drive(self, job_id: str) -> None:
        try:
            if (await self.store.get_job(job_id))["spec"].get("sweep"):
                from .sweeps import drive_sweep

                await drive_sweep(self, job_id)  # a sweep job drives its runs (sweeps.py)
                self._cancelling.discard(job_id)
            else:
                await self._drive_job(job_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("jupyter-ext: driving job %s failed", job_id)
            await self._finish_job(job_id, error=reasons.error(reasons.EXCEPTION, reasons.internal_words(None)))
        finally:
            for backend in self.backends.values():
                backend.expect_steps(job_id, 0)

    def _expect(self, job: JobRecord, steps: int) -> None:
        """Tell the job's backend how many of its steps are still to start (a hint, if it takes one)."""
        backend = self.backends.get(job["backend"])
        if backend is not None:
            backend.expect_steps(job["id"], steps)

    async def _drive_job(self, job_id: str) -> None:
        # The job stays `queued` until one of its steps really starts (`_started`): under load its
        # steps wait for a slot, and the job says so (with each step's queue_position).
        tasks: dict[str, asyncio.Task[None]] = {}
        while True:
            job = await self.store.get_job(job_id)
            steps = {s["name"]: s for s in job["steps"]}
            cancelling = job_id in self._cancelling or bool(job["cancel_requested"])
            # Steps still to start: a local backend keeps that many runners warm (a chain's next step).
            self._expect(job, 0 if cancelling else sum(1 for s in steps.values() if s["status"] == "queued"))
            ended = False  # a step ended in this pass: its dependants are looked at again before waiting
            for step in steps.values():
                name = step["name"]
                if step["status"] in TERMINAL or name in tasks:
                    continue
                if cancelling and step["status"] == "queued" and (job_id, name) not in self._waiting:
                    await self._end_step(
                        job_id,
                        name,
                        Status.cancelled,
                        error=reasons.error(reasons.CANCELLED, reasons.cancelled_words(True)),
                    )
                    step["status"], ended = Status.cancelled.value, True
                    continue
                after = step["spec"].get("after", [])
                blocked = [d for d in after if steps[d]["status"] in TERMINAL - {"succeeded"}]
                if blocked:
                    why = reasons.not_run_words(blocked[0], steps[blocked[0]]["status"])
                    await self._end_step(job_id, name, Status.not_run, error={"message": why})
                    step["status"], ended = Status.not_run.value, True
                    continue
                if step["status"] == "running" or all(steps[d]["status"] == "succeeded" for d in after):
                    tasks[name] = asyncio.create_task(self._run_step(job_id, name), name=f"step {job_id}/{name}")
            if ended:
                continue
            if not tasks:
                break
            done, _ = await asyncio.wait(tasks.values(), return_when=asyncio.FIRST_COMPLETED)
            for name in [n for n, t in tasks.items() if t in done]:
                task = tasks.pop(name)
                if task.exception() is not None:
                    exc = task.exception()
                    log.error("jupyter-ext: step %s/%s crashed", job_id, name, exc_info=exc)
                    await self._end_step(
                        job_id, name, Status.failed, error=reasons.error(reasons.EXCEPTION, reasons.internal_words(exc))
                    )
        await self._finish_job(job_id)

    async def _finish_job(self, job_id: str, error: dict[str, Any] | None = None) -> None:
        job = await self.store.get_job(job_id)
        statuses = [s["status"] for s in job["steps"]]
        if error is None and any(s == "failed" for s in statuses):
            first = next(s for s in job["steps"] if s["status"] == "failed")
            error = {**(first.get("error") or {}), "step": first["name"]}
        if job_id in self._cancelling or job["cancel_requested"]:
            status = Status.cancelled
        elif error is not None or any(s not in ("succeeded",) for s in statuses):
            status = Status.failed
        else:
            status = Status.succeeded
        try:
            await self._write_combined(job)
        except Exception:  # noqa: BLE001 - a convenience copy must never keep a job from ending
            log.exception("jupyter-ext: could not write the combined executed notebook of job %s", job_id)
        await self.store.update_job(job_id, status=status.value, finished=time.time(), error=error)
        await self._emit(job_id, [{"type": "job.end", "status": status.value, "error": error}])
        self._cancelling.discard(job_id)

    async def _write_combined(self, job: JobRecord) -> None:
        """A job of several steps also gets one executed notebook of the whole job: the user's
        notebook with each code cell's outputs from the step that ran it, markdown as written,
        papermill's injected parameters after the parameters cell; artifact `job__executed.ipynb`
        (and `.html`), beside each step's own `<step>__executed.ipynb`."""
        steps = job["steps"]
        if job["spec"].get("cell") or len(steps) < 2:
            return
        names = {s["name"] for s in steps}
        label = next(n for n in (COMBINED, f"{COMBINED}-all", f"{COMBINED}-{job['id']}") if n not in names)
        executed: list[str] = []
        listed: dict[str, dict[str, str]] = {}
        for step in steps:
            owner = (step["spec"].get("reused_from") or {}).get("job") or job["id"]
            if owner not in listed:
                try:
                    listed[owner] = {a["name"]: a["path"] for a in await self.store.artifacts(owner)}
                except NotFound:
                    listed[owner] = {}
            path = listed[owner].get(f"{step['name']}__executed.ipynb")
            if path:
                executed.append(path)
        job_dir = self.job_dir(job["id"])
        written = await asyncio.to_thread(combine_executed, self.layout.notebook(job["id"]), executed, job_dir)
        await self._emit(
            job["id"],
            [
                {
                    "type": "artifact",
                    "step": label,
                    "path": path.name,
                    "location": str(path),
                    "size": size,
                    "mime": mime,
                    **({"deferred": True} if mime == "text/html" else {}),
                }
                for path, size, mime in written
            ],
        )

    async def _end_step(
        self,
        job_id: str,
        name: str,
        status: Status,
        *,
        error: dict[str, Any] | None = None,
        exit_code: int | None = None,
        emit: bool = True,
        ended: float | None = None,
    ) -> None:
        """End a step; its `finished` is the ts of the step.end that says so (`ended`: the runner's
        own, when that one stands), so every view computes the same duration."""
        now = ended if ended is not None else time.time()
        await self.store.update_step(job_id, name, status=status.value, finished=now, error=error, exit_code=exit_code)
        if emit:
            await self._emit(
                job_id,
                [
                    {
                        "type": "step.end",
                        "step": name,
                        "status": status.value,
                        "exit_code": exit_code,
                        "error": error,
                        "ts": now,
                        **({"reason": error["reason"]} if error and error.get("reason") else {}),
                    }
                ],
            )

    # -- one step -------------------------------------------------------------------------------------------
    def _launch(self, job: JobRecord, step: StepRecord, attempt: int) -> StepLaunch:
        spec = StepSpec.model_validate(step["spec"])
        files = self.layout.attempt(job["id"], spec.name, attempt)
        env: dict[str, str] = {HANDOFF_OUT_ENV: str(files.handoff)}
        if spec.inputs and job["spec"].get("cell"):
            handoff_in = {n: str(self.layout.input_file(job["id"], n)) for n in spec.inputs}
        else:
            handoff_in = self._handoff_inputs(job, spec)
        return StepLaunch(
            job_id=job["id"],
            step=spec.name,
            attempt=attempt,
            user=job["user"],
            notebook=str(self.layout.step_notebook(job["id"], spec.name)),
            attempt_dir=str(files.dir),
            workdir=job["spec"]["workdir"],
            parameters=job["parameters"],
            resources=spec.resources,
            env=env,
            timeout=spec.timeout,
            kernel=job["spec"].get("kernel"),
            html=not job["spec"].get("cell"),
            handoff_in=handoff_in,
        )

    def _handoff_inputs(self, job: JobRecord, spec: StepSpec) -> dict[str, str]:
        """For each input variable, the file its producing step (chosen by the planner) saved."""
        steps = {s["name"]: s for s in job["steps"]}
        mapping: dict[str, str] = {}
        for var in spec.inputs:
            producer = spec.sources.get(var)
            if producer is not None and producer in steps:
                attempt = steps[producer]["attempt"]
                mapping[var] = str(self.layout.handoff_file(job["id"], producer, attempt, var))
        return mapping

    async def _run_step(self, job_id: str, name: str) -> None:
        """One step: satisfied from the step cache when it may be (cache.py), else run, its attempts."""
        job = await self.store.get_job(job_id)
        step = next(s for s in job["steps"] if s["name"] == name)
        spec = StepSpec.model_validate(step["spec"])

        async def wait(awaitable: Any) -> bool:
            """Wait for a step with the same key, as `cancel` can stop it; False: cancelled meanwhile."""
            waiter = asyncio.ensure_future(awaitable)
            self._waiting[(job_id, name)] = waiter
            try:
                await waiter
            except asyncio.CancelledError:
                if self._stopping or job_id not in self._cancelling:
                    raise
                return False
            finally:
                self._waiting.pop((job_id, name), None)
            return True

        decided = await self.step_cache.begin(job, step, spec, self._handoff_inputs(job, spec), wait)
        if decided.cancelled:
            error = reasons.error(reasons.CANCELLED, reasons.cancelled_words(True))
            await self._end_step(job_id, name, Status.cancelled, error=error)
            return
        if decided.hit:
            return
        try:
            await self._run_attempts(job_id, name)
        finally:
            await self.step_cache.end(decided.flight)

    async def _run_attempts(self, job_id: str, name: str) -> None:
        job = await self.store.get_job(job_id)
        step = next(s for s in job["steps"] if s["name"] == name)
        spec = StepSpec.model_validate(step["spec"])
        backend = self.backends[job["backend"]]
        handle: Handle | None = None
        attempt = step["attempt"]
        if step["status"] == "running" and step["handle"]:
            handle = backend.load_handle(step["handle"])
            if not await backend.adopt(handle):
                await self._end_step(
                    job_id,
                    name,
                    Status.failed,
                    error=reasons.error(reasons.LOST, reasons.server_lost_words()),
                )
                return
            await self._started(job_id, time.time())  # a server that died just after starting it
        elif attempt == 0:
            attempt = 1
        started = step["started"] or time.time()
        while True:
            refusal: dict[str, Any] | None = None
            if handle is None:
                try:
                    handle = await self._submit(job, step, attempt, backend)
                except ValidationError as exc:
                    # The backend cannot create this attempt as asked (inputs too large to send, no
                    # node for the user's home volume): the attempt fails with its words.
                    refusal = reasons.error(reasons.UNSCHEDULABLE, exc.message)
                else:
                    if handle is None:
                        return  # cancelled while waiting for capacity
            if refusal is not None:
                outcome, end_event, timed_out = Outcome(None, refusal["message"]), None, False
            else:
                assert handle is not None
                outcome, end_event, timed_out = await self._follow(
                    job_id, name, attempt, handle, backend, spec, started
                )
            cancelled = await self._cancel_requested(job_id)
            if cancelled:
                status, error = Status.cancelled, reasons.error(reasons.CANCELLED, reasons.cancelled_words())
            elif timed_out:
                status, error = Status.failed, reasons.error(reasons.TIMEOUT, reasons.timeout_words(name, spec.timeout))
            elif outcome.final and outcome.reason:
                status, error = Status.failed, reasons.error(outcome.code or reasons.LOST, outcome.reason)
            elif outcome.exit_code == 0:
                status, error = Status.succeeded, None
            else:
                status = Status.failed
                error = refusal or (end_event or {}).get("error") or reasons.ended_error(name, outcome)
            if status is Status.failed and attempt <= spec.retries:
                await self._emit(
                    job_id,
                    [
                        {
                            "type": "step.retry",
                            "step": name,
                            "attempt": attempt,
                            "next_attempt": attempt + 1,
                            "error": error,
                        }
                    ],
                )
                attempt += 1
                handle = None
                await self.store.update_step(job_id, name, status="queued", attempt=attempt, handle=None, consumed=0)
                job = await self.store.get_job(job_id)
                continue
            # The runner's own step.end already told clients, unless we know better (timeout, kill, lost).
            said = end_event is not None and end_event.get("status") == status.value and not outcome.final
            await self._end_step(
                job_id,
                name,
                status,
                error=error,
                exit_code=outcome.exit_code,
                emit=not said,
                ended=float(end_event["ts"]) if said and end_event is not None else None,
            )
            return

    async def _started(self, job_id: str, when: float) -> None:
        """The job's first step started: the job is `running` from now, and says so (`job.start`)."""
        if await self.store.mark_started(job_id, when):
            await self._emit(job_id, [{"type": "job.start"}])

    async def _submit(self, job: JobRecord, step: StepRecord, attempt: int, backend: Backend[Any]) -> Handle | None:
        """Start an attempt; None if the job was cancelled while it waited for capacity."""
        job_id, name = job["id"], step["name"]
        await self.store.update_step(job_id, name, status="queued", attempt=attempt, handle=None, consumed=0)
        launch = self._launch(job, step, attempt)
        waiter = asyncio.create_task(backend.submit(launch))
        self._waiting[(job_id, name)] = waiter
        try:
            handle = await waiter
        except asyncio.CancelledError:
            if self._stopping or job_id not in self._cancelling:
                raise
            await self._end_step(
                job_id, name, Status.cancelled, error=reasons.error(reasons.CANCELLED, reasons.cancelled_words(True))
            )
            return None
        finally:
            self._waiting.pop((job_id, name), None)
        now = time.time()
        await self.store.update_step(
            job_id,
            name,
            status="running",
            handle=handle.stored(),
            started=step["started"] or now,
            expect_attempt=attempt,
        )
        await self._started(job_id, now)
        if job_id in self._cancelling:
            asyncio.create_task(backend.cancel(handle))
        return handle

    async def _follow(
        self,
        job_id: str,
        name: str,
        attempt: int,
        handle: Handle,
        backend: Backend[Any],
        spec: StepSpec,
        started: float,
    ) -> tuple[Outcome, dict[str, Any] | None, bool]:
        """Store the attempt's events until it ends; enforce the step's timeout meanwhile."""
        timed_out = False
        end_event: dict[str, Any] | None = None
        watchdog: asyncio.Task[None] | None = None
        if spec.timeout:
            remaining = max(0.0, spec.timeout - (time.time() - started))

            async def expire() -> None:
                nonlocal timed_out
                await asyncio.sleep(remaining)
                timed_out = True
                await backend.cancel(handle)

            watchdog = asyncio.create_task(expire())
        step_row = next(s for s in (await self.store.get_job(job_id))["steps"] if s["name"] == name)
        after = step_row["consumed"] if step_row["attempt"] == attempt else 0
        stderr: dict[int, str] = {}  # cell -> the end of what it wrote to stderr (for errors told only there)
        # The backend's events end with how the attempt ended; events that end without it were lost.
        outcome = Outcome(None, "lost: the step's events ended without saying how it ended")
        try:
            async for batch in backend.events(handle, after):
                if isinstance(batch, Outcome):
                    outcome = batch
                    break
                # The runner reports facts; its step.end's words are made here, once (reasons.py).
                batch = [reasons.in_words(event, name, stderr) for event in batch]
                stored = await self._emit(job_id, batch, step=name, attempt=attempt)
                for event in stored:
                    if event["type"] == "step.start":
                        # The step's duration has one source, its start and end events (the runner's
                        # clock): the row, the panel, the job view and the CLI all read these times.
                        await self.store.update_step(job_id, name, started=float(event["ts"]))
                    elif event["type"] == "step.end":
                        end_event = event
        finally:
            if watchdog is not None:
                watchdog.cancel()
        if end_event is None:
            # The runner could not say how it ended (killed, lost): say it for it.
            await self._emit(
                job_id,
                [
                    {
                        "type": "log",
                        "step": name,
                        "stream": "stderr",
                        "text": f"step {name!r}: {outcome.reason or 'ended'}\n",
                    }
                ],
            )
        return outcome, end_event, timed_out
