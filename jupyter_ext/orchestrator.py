"""Job and step state machine, persisted in the store, driven by one task per active job.

Desired state lives in the store (what was submitted, which attempt of which step runs with
which backend handle, how many runner events were consumed); the backends report what
actually happens. On start-up `reconcile()` re-drives every unfinished job: running steps
are adopted and their event streams resume after the last stored event; queued steps are
submitted (a step whose process was started just before a crash is found and adopted by the
backend, not started twice).

States: queued -> running -> succeeded | failed | cancelled; a step whose upstream failed is
`not_run`. Retries and timeouts are per step and belong here, not to the backends.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import nbformat

from .backends.base import Backend, Outcome, StepLaunch
from .backends.local import LocalBackend
from .errors import Conflict, NotFound, ValidationError
from .events import EventHub
from .models import TERMINAL, JobSpec, Resources, Status, StepSpec
from .notebook import plan_notebook, slice_step
from .notebook.handoff import handoff_load_source, handoff_save_source
from .notebook.parameters import check_parameters
from .notebook.tags import cell_label
from .retention import expire_uploads, to_prune
from .store import AsyncStore, new_job_id

log = logging.getLogger("jupyter_ext")

_TERMINAL = {s.value for s in TERMINAL}
CELL_STEP = "cell"
COMBINED = "job"  # the `step` of the whole job's executed notebook (a step named so gets another label)


def _resolved(path: Path, relative: str, field: str) -> Path:
    """`path.resolve()`, a symlink loop (RuntimeError) or an unreadable path refused as the field's 400."""
    try:
        return path.resolve()
    except (RuntimeError, OSError) as exc:
        why = "a symlink loop" if isinstance(exc, RuntimeError) else (exc.strerror or str(exc))
        raise ValidationError(f"{field}: {relative!r} cannot be resolved: {why}", field=field) from None


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
        self.root_dir = Path(root_dir).resolve()
        self.data_dir = Path(data_dir)
        self.allow_hidden = allow_hidden
        self.keep_jobs = keep_jobs  # (age in seconds, count per user); (None, None): keep every job
        self.upload_ttl = upload_ttl
        self.cleanup_interval = cleanup_interval
        self.hub = EventHub()
        self._drivers: dict[str, asyncio.Task[None]] = {}
        self._waiting: dict[tuple[str, str], asyncio.Task[Any]] = {}
        self._cancelling: set[str] = set()
        self._stopping = False
        self._cleaner: asyncio.Task[None] | None = None
        self._positions: dict[tuple[str, str], int] = {}  # queue positions last written to the store
        self._queue_flush: asyncio.Task[None] | None = None
        self._queue_dirty = False
        for backend in backends.values():
            backend.on_queue_change = self._queue_changed

    # -- lifecycle ---------------------------------------------------------------------------------------
    async def start(self) -> None:
        for backend in self.backends.values():
            await backend.start()
        await self.reconcile()
        self._cleaner = asyncio.create_task(self._clean_periodically(), name="jupyter-ext cleanup")

    async def stop(self) -> None:
        """Stop driving jobs. Their steps keep running; the next start adopts them."""
        self._stopping = True
        for task in (self._cleaner, self._queue_flush):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        drivers = list(self._drivers.values())
        for task in drivers:
            task.cancel()
        await asyncio.gather(*drivers, return_exceptions=True)
        if self._positions:  # nobody here waits in line any more: no stale places for `ls` to show
            try:
                await self.store.set_queue_positions({k: None for k in self._positions})
            except Exception:  # noqa: BLE001 - the next start writes them again
                log.exception("jupyter-ext: could not clear queue positions")
            self._positions = {}
        for backend in self.backends.values():
            await backend.stop()

    async def reconcile(self) -> None:
        """Re-drive every job the store says is unfinished."""
        jobs = await self.store.list_jobs(None, limit=100000, statuses=["queued", "running"])
        for job in reversed(jobs):
            if job["cancel_requested"]:
                self._cancelling.add(job["id"])
            self._drive_later(job["id"])
        if jobs:
            log.info("jupyter-ext: resumed %d unfinished job(s)", len(jobs))

    async def wait(self, job_id: str) -> dict[str, Any]:
        """Wait until the job's driver is done; return the job."""
        task = self._drivers.get(job_id)
        if task is not None:
            await asyncio.shield(task)
        return await self.store.get_job(job_id)

    # -- submit --------------------------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        return self.data_dir / "jobs" / job_id

    def resolve_notebook(self, relative: str) -> Path:
        """The notebook's real path, refusing anything outside the server root (runs in a thread)."""
        field = "notebook"
        if relative.startswith(("/", "\\")) or (len(relative) > 1 and relative[1] == ":"):
            raise ValidationError(
                f"notebook: {relative!r} is absolute; give a path relative to the server root", field=field
            )
        parts = Path(relative).parts
        if ".." in parts:
            raise ValidationError(f"notebook: {relative!r} leaves the server root; remove '..'", field=field)
        if not self.allow_hidden and any(p.startswith(".") for p in parts):
            raise ValidationError(f"notebook: {relative!r} is in a hidden folder or file", field=field)
        path = _resolved(self.root_dir / relative, relative, field)
        if not path.is_relative_to(self.root_dir):
            raise ValidationError(f"notebook: {relative!r} points outside the server root (a symlink?)", field=field)
        if path.is_dir():
            raise ValidationError(
                f"notebook: {relative!r} is a folder, not a notebook; give the path of an .ipynb file in it",
                field=field,
            )
        if not path.is_file():
            raise NotFound(f"notebook: {relative!r} does not exist under the server root", field=field)
        return path

    def read_notebook(self, relative: str) -> tuple[Path, Any]:
        """The notebook under the server root and its contents (blocking: run it in a thread)."""
        path = self.resolve_notebook(relative)
        try:
            return path, nbformat.read(path, as_version=4)
        except Exception as exc:  # noqa: BLE001 - nbformat raises many types for bad files
            raise ValidationError(f"notebook: {relative!r} is not a valid notebook: {exc}", field="notebook") from None

    def backend_named(self, name: str | None) -> tuple[str, Backend]:
        """The backend a job asks for (None: the default), refusing one that is not configured."""
        name = name or self.default_backend
        if name not in self.backends:
            known = ", ".join(sorted(self.backends))
            raise ValidationError(f"backend: {name!r} is not configured here; use one of: {known}", field="backend")
        return name, self.backends[name]

    def check_kernel(self, nb: Any, backend_name: str, kernel: str | None = None) -> None:
        """Refuse, before anything runs, a kernel the local backend does not have: the one asked for
        (`kernel`), else the notebook's. (Elsewhere the step's image decides which kernels exist.)"""
        if not isinstance(self.backends.get(backend_name), LocalBackend):
            return
        kernelspec = (nb.get("metadata", {}) or {}).get("kernelspec") or {}
        wanted = kernel or kernelspec.get("name")
        if not wanted:
            return  # the notebook names no kernel: the runner uses python3, as papermill users expect
        from jupyter_client.kernelspec import KernelSpecManager

        installed = sorted(KernelSpecManager().find_kernel_specs())
        if wanted in installed:
            return
        listed = ", ".join(installed) or "none"
        if kernel:
            raise ValidationError(
                f"kernel: {kernel!r} is not installed here; installed kernels: {listed}", field="kernel"
            )
        shown = f" ({kernelspec['display_name']})" if kernelspec.get("display_name") else ""
        raise ValidationError(
            f"kernel: the notebook's kernel {wanted!r}{shown} is not installed here (installed kernels: {listed}); "
            f"install it (`jupyter kernelspec list` shows what the local backend can use), or run the notebook "
            f"with another kernel on purpose: `jupyter-ext run --kernel {installed[0] if installed else 'python3'} "
            "...` (the `kernel` field of the job)",
            field="kernel",
        )

    def check_resources(self, backend: Backend, step: str, resources: Resources, asked: Any = None) -> None:
        """`backend.check`, its refusal naming the tag (and cell) that asked for the resource."""
        try:
            backend.check(step, resources)
        except ValidationError as exc:
            what = (exc.field or "").removeprefix("resources.")
            origin = (asked or {}).get(what)
            if origin is None:
                raise
            tag, cell = origin
            named = f"the tag {tag!r} on {cell_label(cell)}"
            message, n = re.subn(
                rf"lower `{re.escape(what)}:`( on step {re.escape(repr(step))})?",
                f"lower or remove {named}",
                exc.message,
            )
            if not n:
                message = f"{message} (asked for by {named})"
            raise ValidationError(message, field=exc.field, step=exc.step, cell=cell) from None

    def resolve_folder(self, relative: str) -> Path:
        """A folder under the server root ('' is the root itself), refusing anything outside it."""
        field = "cell.workdir"
        parts = Path(relative).parts
        if relative.startswith(("/", "\\")) or ".." in parts:
            raise ValidationError(f"{field}: {relative!r} is not a folder under the server root", field=field)
        path = _resolved(self.root_dir / relative, relative, field)
        if not path.is_relative_to(self.root_dir) or not path.is_dir():
            raise ValidationError(f"{field}: {relative!r} is not a folder under the server root", field=field)
        return path

    def upload_path(self, user: str, upload_id: str) -> Path:
        """Where an upload of `user` lives until a job takes it (ids are hex; anything else is refused)."""
        if not re.fullmatch(r"[0-9a-f]{32}", upload_id):
            raise ValidationError(f"upload: {upload_id!r} is not an upload id", field="upload")
        return self.data_dir / "uploads" / hashlib.sha256(user.encode()).hexdigest()[:16] / upload_id

    def _prepare_cell(self, spec: JobSpec, job_id: str, user: str) -> tuple[Path, list[StepSpec]]:
        """One cell as a one-step job: its inputs saved, its outputs kept as artifacts (thread)."""
        assert spec.cell is not None
        cell = spec.cell
        workdir = self.resolve_folder(cell.workdir)
        job_dir = self.job_dir(job_id)
        inputs_dir = job_dir / "inputs"
        inputs_dir.mkdir(parents=True, exist_ok=True)
        for name, payload in cell.inputs.items():
            target = inputs_dir / f"{name}.pkl"
            if payload.startswith("upload:"):
                upload = self.upload_path(user, payload.removeprefix("upload:"))
                if not upload.is_file():
                    raise ValidationError(
                        f"cell.inputs.{name}: no upload {payload.removeprefix('upload:')!r} of yours "
                        "(each upload is used once)",
                        field=f"cell.inputs.{name}",
                    )
                os.replace(upload, target)
                continue
            try:
                data = base64.b64decode(payload, validate=True)
            except ValueError:
                raise ValidationError(f"cell.inputs.{name}: not base64 data", field=f"cell.inputs.{name}") from None
            target.write_bytes(data)
        step = StepSpec(
            name=CELL_STEP,
            cells=[0],
            inputs=list(cell.inputs),
            outputs=list(cell.outputs),
            resources=spec.resources or Resources(),
            timeout=spec.timeout,
            retries=spec.retries or 0,
        )
        user_cell = nbformat.v4.new_code_cell(cell.source, metadata={"jupyter_ext": {"source_index": 0}})
        internal = []
        if cell.versions:
            internal.append(
                ("check", f"from jupyter_ext.magics import check_versions\ncheck_versions({cell.versions!r})\n")
            )
        if cell.inputs:
            internal.append(("handoff-load", handoff_load_source(list(cell.inputs))))
        cells = [nbformat.v4.new_code_cell(src, metadata={"jupyter_ext": {"internal": kind}}) for kind, src in internal]
        cells.append(user_cell)
        if cell.outputs:
            out_dir = "__import__('os').path.join(__import__('os').environ['JUPYTER_EXT_ARTIFACTS_DIR'], 'outputs')"
            save = handoff_save_source(list(cell.outputs), CELL_STEP, out_dir, origins={n: 0 for n in cell.outputs})
            cells.append(nbformat.v4.new_code_cell(save, metadata={"jupyter_ext": {"internal": "handoff-save"}}))
        nb = nbformat.v4.new_notebook(
            cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
        )
        step_dir = job_dir / "steps" / CELL_STEP
        step_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, step_dir / "step.ipynb")
        nbformat.write(nbformat.v4.new_notebook(cells=[user_cell]), job_dir / "notebook.ipynb")
        return workdir / "remote-cell.ipynb", [step]

    def _prepare(
        self, spec: JobSpec, job_id: str, user: str, backend_name: str
    ) -> tuple[Path, list[StepSpec], dict[str, Any]]:
        """Read, check, plan and slice the notebook into the job's folder (thread). Also returns, per
        step, which tag asked for each resource (for the backend's refusals)."""
        if spec.cell is not None:
            return (*self._prepare_cell(spec, job_id, user), {})
        assert spec.notebook is not None
        path, nb = self.read_notebook(spec.notebook)
        defaults = spec.resources
        plan = plan_notebook(nb, defaults=defaults)
        check_parameters(nb, spec.parameters, repr(spec.notebook))
        self.check_kernel(nb, backend_name, spec.kernel)
        steps: list[StepSpec] = []
        for planned in plan.steps:
            step = planned.to_spec()
            if spec.timeout is not None and step.timeout is None:
                step.timeout = spec.timeout
            if spec.retries is not None and not step.retries:
                step.retries = spec.retries
            steps.append(step)
        job_dir = self.job_dir(job_id)
        for step in steps:
            step_dir = job_dir / "steps" / step.name
            step_dir.mkdir(parents=True, exist_ok=True)
            nbformat.write(slice_step(nb, plan, step.name), step_dir / "step.ipynb")
        shutil.copyfile(path, job_dir / "notebook.ipynb")
        return path, steps, {s.name: s.asked for s in plan.steps}

    async def submit(self, spec: JobSpec, user: str, *, drive: bool = True) -> tuple[dict[str, Any], bool]:
        """Plan and store a job, then start driving it (unless `drive` is false: another process
        will, see `drive()`). Returns (job, created)."""
        backend_name, backend = self.backend_named(spec.backend)
        job_id = new_job_id()
        try:
            path, steps, asked = await asyncio.to_thread(self._prepare, spec, job_id, user, backend_name)
            for step in steps:
                self.check_resources(backend, step.name, step.resources, asked.get(step.name))
            await backend.preflight([(s.name, s.resources) for s in steps if not s.reused_from])
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, self.job_dir(job_id), True)
            raise
        if spec.from_step or spec.rerun_of:
            try:
                await self._plan_rerun(spec, steps, user)
                for s in steps:
                    if s.reused_from:
                        await asyncio.to_thread(self._link_handoff, s.reused_from, job_id, s.name)
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
            "spec": {**spec.model_dump(exclude={"cell": {"inputs"}}), "workdir": str(path.parent)},
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

    async def _plan_rerun(self, spec: JobSpec, steps: list[StepSpec], user: str) -> None:
        """Re-run from a step: steps it does not lead to are reused from the `rerun_of` job."""
        if not (spec.from_step and spec.rerun_of):
            raise ValidationError(
                "from_step and rerun_of go together: name the step to re-run from and the job whose "
                "earlier steps to reuse",
                field="from_step" if spec.rerun_of else "rerun_of",
            )
        try:
            old = await self.store.get_job(spec.rerun_of, user)
        except NotFound:
            raise ValidationError(f"rerun_of: no job {spec.rerun_of!r} of yours to re-run", field="rerun_of") from None
        by_name = {s.name: s for s in steps}
        if spec.from_step not in by_name:
            raise ValidationError(
                f"from_step: no step {spec.from_step!r} in this notebook; its steps are {', '.join(by_name)}",
                field="from_step",
            )
        rerun = {spec.from_step}
        grew = True
        while grew:  # everything downstream of from_step runs again
            before = len(rerun)
            rerun.update(s.name for s in steps if rerun.intersection(s.after))
            grew = len(rerun) > before
        old_steps = {s["name"]: s for s in old["steps"]}
        for s in steps:
            if s.name in rerun:
                continue
            previous = old_steps.get(s.name)
            if previous is None or previous["status"] != "succeeded":
                state = "is not in" if previous is None else f"{previous['status'].replace('_', ' ')} in"
                raise ValidationError(
                    f"from_step: step {s.name!r} {state} job {old['id']!r}, so it cannot be reused; "
                    f"re-run from {s.name!r} or an earlier step",
                    field="from_step",
                    step=s.name,
                )
            s.reused_from = {"job": old["id"], "attempt": previous["attempt"]}
            for var in s.outputs:
                saved = self.job_dir(old["id"]) / "steps" / s.name / f"attempt-{previous['attempt']}" / "handoff"
                if not await asyncio.to_thread((saved / f"{var}.pkl").exists):
                    raise ValidationError(
                        f"from_step: step {s.name!r} of job {old['id']!r} did not save {var!r}, which later "
                        f"steps now need; re-run from {s.name!r}",
                        field="from_step",
                        step=s.name,
                    )

    def _link_handoff(self, reused: dict[str, Any], job_id: str, step: str) -> None:
        """Give the new job its own (hard-linked) copy of a reused step's hand-off files, so
        deleting the earlier job later cannot break this one (thread)."""
        attempt = f"attempt-{reused['attempt']}"
        source = self.job_dir(reused["job"]) / "steps" / step / attempt / "handoff"
        target = self.job_dir(job_id) / "steps" / step / attempt / "handoff"
        target.mkdir(parents=True, exist_ok=True)
        for item in source.glob("*.pkl") if source.is_dir() else []:
            try:
                os.link(item, target / item.name)
            except OSError:
                shutil.copy2(item, target / item.name)

    # -- cancel / delete ------------------------------------------------------------------------------------
    async def cancel(self, job_id: str, user: str | None) -> dict[str, Any]:
        job = await self.store.get_job(job_id, user)
        if job["status"] in _TERMINAL:
            return job
        self._cancelling.add(job_id)
        await self.store.update_job(job_id, cancel_requested=1)
        backend = self.backends.get(job["backend"])
        for step in job["steps"]:
            waiting = self._waiting.get((job_id, step["name"]))
            if waiting is not None:
                waiting.cancel()
            elif step["status"] == "running" and step["handle"] and backend is not None:
                asyncio.create_task(backend.cancel(step["handle"]))
        if job_id not in self._drivers:
            self._drive_later(job_id)
        return await self.store.get_job(job_id)

    async def delete(self, job_id: str, user: str | None) -> None:
        """Delete a finished job of `user` (None: anyone's) with its events, artifacts and folder
        (step notebooks, attempts, executed notebooks); Conflict for a queued or running job."""
        await self.store.delete_job(job_id, user)
        await asyncio.to_thread(shutil.rmtree, self.job_dir(job_id), True)

    async def prune(
        self,
        user: str | None,
        *,
        older_than: float | None = None,
        keep: int | None = None,
        dry_run: bool = False,
    ) -> list[str]:
        """Delete `user`'s (None: every user's) finished jobs that ended more than `older_than`
        seconds ago or come after their `keep` newest finished jobs (retention.to_prune), then
        give the database space back. Answers the ids deleted (with `dry_run`: would delete)."""
        deleted = await self._prune(user, older_than=older_than, keep=keep, dry_run=dry_run)
        if deleted and not dry_run:
            await self.store.reclaim()
        return deleted

    async def _prune(
        self, user: str | None, *, older_than: float | None, keep: int | None, dry_run: bool = False
    ) -> list[str]:
        """`prune` without giving the space back (its caller does, once)."""
        finished = await self.store.finished_jobs(user)
        unfinished = await self.store.list_jobs(user, limit=1_000_000, statuses=["queued", "running"])
        reused = {(s["spec"].get("reused_from") or {}).get("job") for j in unfinished for s in j["steps"]} - {None}
        chosen = to_prune(finished, older_than=older_than, keep=keep, protected={str(r) for r in reused})
        if dry_run:
            return chosen
        deleted = []
        for job_id in chosen:
            try:
                await self.delete(job_id, user)
            except (NotFound, Conflict):
                continue  # deleted meanwhile, or (re-run by another process) no longer finished
            deleted.append(job_id)
        return deleted

    async def clean(self) -> None:
        """One round of upkeep: `keep_jobs`, uploads past `upload_ttl`, database space."""
        age, count = self.keep_jobs
        if age is not None or count is not None:
            deleted = await self._prune(None, older_than=age, keep=count)
            if deleted:
                log.info("jupyter-ext: deleted %d old finished job(s) (JupyterExt.keep_jobs)", len(deleted))
        if self.upload_ttl is not None:
            expired = await asyncio.to_thread(expire_uploads, self.data_dir / "uploads", self.upload_ttl)
            if expired:
                log.info("jupyter-ext: deleted %d upload(s) no job took (JupyterExt.upload_ttl)", len(expired))
        await self.store.reclaim()  # once a round, after what keep_jobs deleted

    async def _clean_periodically(self) -> None:
        while True:
            try:
                await self.clean()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - upkeep must never stop the server
                log.exception("jupyter-ext: cleaning up failed; trying again in %ss", self.cleanup_interval)
            await asyncio.sleep(self.cleanup_interval)

    # -- queue positions --------------------------------------------------------------------------------------
    def _queue_changed(self) -> None:
        """A backend's line of attempts waiting for capacity moved: write the new positions soon
        (one store transaction for a burst of changes)."""
        self._queue_dirty = True
        if self._stopping:
            return  # waiters cancelled by stop(): the store is closing, the next start says it again
        if self._queue_flush is None or self._queue_flush.done():
            self._queue_flush = asyncio.get_running_loop().create_task(self._flush_queue())

    async def _flush_queue(self) -> None:
        while self._queue_dirty:
            self._queue_dirty = False
            await asyncio.sleep(0)  # let the rest of this burst of changes happen first
            positions: dict[tuple[str, str], int] = {}
            for backend in self.backends.values():
                for position, (job_id, step) in enumerate(backend.queue(), start=1):
                    positions.setdefault((job_id, step), position)
            changed: dict[tuple[str, str], int | None] = {
                k: v for k, v in positions.items() if self._positions.get(k) != v
            }
            changed.update({k: None for k in self._positions if k not in positions})
            try:
                if changed:
                    await self.store.set_queue_positions(changed)
            except Exception:  # noqa: BLE001 - positions are advice; the next change writes them again
                log.exception("jupyter-ext: could not record queue positions")
                self._positions = {}
                continue
            self._positions = positions

    # -- events ---------------------------------------------------------------------------------------------
    async def _emit(self, job_id: str, events: list[dict[str, Any]], **kw: Any) -> list[dict[str, Any]]:
        stored = await self.store.append_events(job_id, events, **kw)
        self.hub.publish(job_id, stored)
        return stored

    # -- driving --------------------------------------------------------------------------------------------
    def _drive_later(self, job_id: str) -> None:
        if job_id in self._drivers or self._stopping:
            return
        task = asyncio.create_task(self._drive(job_id), name=f"jupyter-ext job {job_id}")
        self._drivers[job_id] = task
        task.add_done_callback(lambda _: self._drivers.pop(job_id, None))

    async def _drive(self, job_id: str) -> None:
        try:
            await self._drive_job(job_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("jupyter-ext: driving job %s failed", job_id)
            await self._finish_job(
                job_id, error={"message": "internal error while running the job; see the server log"}
            )

    async def _drive_job(self, job_id: str) -> None:
        # The job stays `queued` until one of its steps really starts (`_started`): under load its
        # steps wait for a slot, and the job says so (with each step's queue_position).
        tasks: dict[str, asyncio.Task[None]] = {}
        while True:
            job = await self.store.get_job(job_id)
            steps = {s["name"]: s for s in job["steps"]}
            cancelling = job_id in self._cancelling or bool(job["cancel_requested"])
            ended = False  # a step ended in this pass: its dependants are looked at again before waiting
            for step in steps.values():
                name = step["name"]
                if step["status"] in _TERMINAL or name in tasks:
                    continue
                if cancelling and step["status"] == "queued" and (job_id, name) not in self._waiting:
                    await self._end_step(
                        job_id, name, Status.cancelled, error={"message": "cancelled before it started"}
                    )
                    step["status"], ended = Status.cancelled.value, True
                    continue
                after = step["spec"].get("after", [])
                blocked = [d for d in after if steps[d]["status"] in ("failed", "cancelled", "not_run")]
                if blocked:
                    reason = f"not run because step {blocked[0]!r} {steps[blocked[0]]['status'].replace('_', ' ')}"
                    await self._end_step(job_id, name, Status.not_run, error={"message": reason})
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
                        job_id, name, Status.failed, error={"message": f"internal error running the step: {exc}"}
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

    async def _write_combined(self, job: dict[str, Any]) -> None:
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
        written = await asyncio.to_thread(combine_executed, job_dir / "notebook.ipynb", executed, job_dir)
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
                    }
                ],
            )

    # -- one step -------------------------------------------------------------------------------------------
    def _launch(self, job: dict[str, Any], step: dict[str, Any], attempt: int) -> StepLaunch:
        spec = StepSpec.model_validate(step["spec"])
        job_dir = self.job_dir(job["id"])
        attempt_dir = job_dir / "steps" / spec.name / f"attempt-{attempt}"
        env: dict[str, str] = {"JUPYTER_EXT_HANDOFF_OUT": str(attempt_dir / "handoff")}
        if spec.inputs and job["spec"].get("cell"):
            env["JUPYTER_EXT_HANDOFF_IN"] = json.dumps({n: str(job_dir / "inputs" / f"{n}.pkl") for n in spec.inputs})
        elif spec.inputs:
            env["JUPYTER_EXT_HANDOFF_IN"] = json.dumps(self._handoff_inputs(job, spec))
        return StepLaunch(
            job_id=job["id"],
            step=spec.name,
            attempt=attempt,
            user=job["user"],
            notebook=str(job_dir / "steps" / spec.name / "step.ipynb"),
            attempt_dir=str(attempt_dir),
            workdir=job["spec"]["workdir"],
            parameters=job["parameters"],
            resources=spec.resources,
            env=env,
            timeout=spec.timeout,
            kernel=job["spec"].get("kernel"),
            html=not job["spec"].get("cell"),
        )

    def _handoff_inputs(self, job: dict[str, Any], spec: StepSpec) -> dict[str, str]:
        """For each input variable, the file its producing step (chosen by the planner) saved."""
        steps = {s["name"]: s for s in job["steps"]}
        mapping: dict[str, str] = {}
        for var in spec.inputs:
            producer = spec.sources.get(var)
            if producer is not None and producer in steps:
                attempt = steps[producer]["attempt"]
                mapping[var] = str(
                    self.job_dir(job["id"]) / "steps" / producer / f"attempt-{attempt}" / "handoff" / f"{var}.pkl"
                )
        return mapping

    async def _run_step(self, job_id: str, name: str) -> None:
        job = await self.store.get_job(job_id)
        step = next(s for s in job["steps"] if s["name"] == name)
        spec = StepSpec.model_validate(step["spec"])
        backend = self.backends[job["backend"]]
        handle: dict[str, Any] | None = None
        attempt = step["attempt"]
        if step["status"] == "running" and step["handle"]:
            handle = step["handle"]
            if not await backend.adopt(handle):
                await self._end_step(
                    job_id,
                    name,
                    Status.failed,
                    error={"message": "the step's process was lost while the server was down"},
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
                    refusal = {"message": exc.message}
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
                status, error = Status.cancelled, {"message": "cancelled"}
            elif timed_out:
                status = Status.failed
                limit = _human_seconds(spec.timeout or 0)
                error = {"message": f"step {name!r} timed out after {limit}; raise `timeout:` on step {name!r}"}
            elif outcome.final and outcome.reason:
                status, error = Status.failed, {"message": outcome.reason}
                if outcome.code:
                    error["reason"] = outcome.code
            elif outcome.exit_code == 0:
                status, error = Status.succeeded, None
            else:
                status = Status.failed
                error = refusal or (end_event or {}).get("error") or {"message": _ended_message(name, outcome)}
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

    async def _submit(
        self, job: dict[str, Any], step: dict[str, Any], attempt: int, backend: Backend
    ) -> dict[str, Any] | None:
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
            await self._end_step(job_id, name, Status.cancelled, error={"message": "cancelled before it started"})
            return None
        finally:
            self._waiting.pop((job_id, name), None)
        now = time.time()
        await self.store.update_step(
            job_id, name, status="running", handle=handle, started=step["started"] or now, expect_attempt=attempt
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
        handle: dict[str, Any],
        backend: Backend,
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
        try:
            async for batch in backend.events(handle, after):
                stored = await self._emit(job_id, batch, step=name, attempt=attempt)
                for event in stored:
                    if event["type"] == "step.start":
                        # The step's duration has one source, its start and end events (the runner's
                        # clock): the row, the panel, the job view and the CLI all read these times.
                        await self.store.update_step(job_id, name, started=float(event["ts"]))
                    elif event["type"] == "step.end":
                        end_event = event
                    elif event["type"] == "cell.output" and event.get("cell_index") is not None:
                        output = event.get("output") or {}
                        if output.get("output_type") == "stream" and output.get("name") == "stderr":
                            text = stderr.get(event["cell_index"], "") + _joined(output.get("text"))
                            stderr[event["cell_index"]] = text[-4000:]
        finally:
            if watchdog is not None:
                watchdog.cancel()
        if end_event is not None and isinstance(end_event.get("error"), dict):
            end_event = {**end_event, "error": cell_error_words(end_event["error"], stderr)}
        outcome = await backend.outcome(handle)
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


def combine_executed(original: Path, executed: list[str], out_dir: Path) -> list[tuple[Path, int, str]]:
    """Write `out_dir`/executed.ipynb (its .html is made on demand): `original` with the outputs of each code cell
    from the first of the step notebooks `executed` (in run order) that ran it (thread)."""
    nb = nbformat.read(original, as_version=4)
    ran: dict[int, Any] = {}
    injected: tuple[Any, int | None] | None = None
    papermill: Any = None
    for path in executed:
        try:
            step_nb = nbformat.read(path, as_version=4)
        except (OSError, ValueError) as exc:
            log.warning("jupyter-ext: skipping executed notebook %s: %s", path, exc)
            continue
        papermill = papermill or step_nb.metadata.get("papermill")
        previous: int | None = None
        for cell in step_nb.cells:
            index = (cell.metadata.get("jupyter_ext") or {}).get("source_index")
            if index is None:
                if injected is None and "injected-parameters" in (cell.metadata.get("tags") or []):
                    injected = (cell, previous)
                continue
            previous = index
            if cell.cell_type != "code":
                continue
            done = cell.get("execution_count") is not None or bool(cell.get("outputs"))
            if index not in ran or (done and ran[index].get("execution_count") is None and not ran[index].outputs):
                ran[index] = cell
    cells: list[Any] = []
    for index, cell in enumerate(nb.cells):
        if "injected-parameters" in (cell.metadata.get("tags") or []):
            continue  # an earlier run's: this run's own comes from the steps
        cell = copy.deepcopy(cell)
        if cell.cell_type == "code":
            source = ran.get(index)
            cell.outputs = copy.deepcopy(source.outputs) if source is not None else []
            cell.execution_count = source.execution_count if source is not None else None
            for key in ("papermill", "execution"):
                if source is not None and key in source.metadata:
                    cell.metadata[key] = copy.deepcopy(source.metadata[key])
        cells.append(cell)
        if injected is not None and injected[1] == index:
            extra = copy.deepcopy(injected[0])
            extra.metadata.pop("jupyter_ext", None)
            cells.append(extra)
    nb.cells = cells
    if papermill is not None:
        nb.metadata["papermill"] = copy.deepcopy(papermill)
    target = out_dir / "executed.ipynb"
    nbformat.write(nb, target)
    # The HTML copy is listed, and made when first downloaded (executed_html.py).
    (out_dir / "executed.html").unlink(missing_ok=True)  # an earlier one would show other outputs
    return [(target, target.stat().st_size, "application/x-ipynb+json"), (out_dir / "executed.html", 0, "text/html")]


def _joined(text: Any) -> str:
    return "".join(text) if isinstance(text, list) else str(text or "")


_ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit)): ?(.*)$")


def cell_error_words(error: dict[str, Any], stderr: dict[int, str]) -> dict[str, Any]:
    """A cell's error as a person reads it: the cell as Lab numbers it, and the real error where
    the kernel only printed it (a line magic's UsageError reaches papermill as an empty
    CellExecutionError, its text on the cell's stderr)."""
    index = error.get("cell_index")
    if not isinstance(index, int):
        return error
    if error.get("reason") in ("oom", "kernel_died"):
        # No exception in the cell: the runner says how its kernel ended; we say where.
        return {**error, "message": f"{error.get('message') or 'the kernel died'} ({cell_label(index)} was running)"}
    ename, evalue = error.get("ename") or "Error", error.get("evalue") or ""
    if ename == "CellExecutionError" and not evalue:
        lines = [line.strip() for line in ANSI.sub("", stderr.get(index, "")).splitlines() if line.strip()]
        found = next((m for m in map(_ERROR_LINE.match, reversed(lines)) if m), None)
        if found is not None:
            ename, evalue = found.group(1), found.group(2)
        elif lines:
            ename, evalue = "error", lines[-1]
    return {**error, "ename": ename, "evalue": evalue, "message": f"{cell_label(index)} raised {ename}: {evalue}"}


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _ended_message(step: str, outcome: Any) -> str:
    """Why a step's process ended without success, for someone who does not know Kubernetes."""
    if outcome.exit_code is None:
        return f"step {step!r} stopped before its process reported an exit code" + (
            f": {outcome.reason}" if outcome.reason else ""
        )
    return f"step {step!r} ended with exit code {outcome.exit_code}" + (
        f" ({outcome.reason})" if outcome.reason else ""
    )


def _human_seconds(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"
