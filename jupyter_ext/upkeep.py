"""Upkeep of the job folder and database: deleting jobs (one, `prune`, `keep_jobs`), uploads no
job took (`upload_ttl`), and giving the database space back. retention.py chooses what goes;
this does it. The orchestrator runs `run()` while it is started and delegates `delete`/`prune`.
"""

from __future__ import annotations

import asyncio
import logging
import shutil

from .errors import Conflict, NotFound
from .layout import JobLayout
from .retention import expire_uploads, to_prune
from .store import AsyncStore

log = logging.getLogger("jupyter_ext")


class Upkeep:
    """Deletes what is no longer wanted (see the module docstring)."""

    def __init__(
        self,
        store: AsyncStore,
        layout: JobLayout,
        *,
        keep_jobs: tuple[float | None, int | None] = (None, None),
        upload_ttl: float | None = None,
        interval: float = 3600.0,
    ) -> None:
        self.store = store
        self.layout = layout
        self.keep_jobs = keep_jobs  # (age in seconds, count per user); (None, None): keep every job
        self.upload_ttl = upload_ttl
        self.interval = interval

    async def delete(self, job_id: str, user: str | None) -> None:
        """Delete a finished job of `user` (None: anyone's) with its events, artifacts and folder
        (step notebooks, attempts, executed notebooks); Conflict for a queued or running job. A
        sweep job goes with its runs (they first); a run alone is refused while its sweep is kept."""
        job = await self.store.get_job(job_id, user)
        if job.get("parent"):
            try:
                await self.store.get_job(str(job["parent"]))
            except NotFound:
                pass  # its sweep is gone (deleted half way): the run goes alone
            else:
                raise Conflict(
                    f"job {job_id!r} is a run of the sweep {job['parent']!r}; delete the sweep "
                    f"(`jupyter-ext rm {job['parent']}`), which deletes its runs with it"
                )
        if job["spec"].get("sweep"):
            if job["status"] in ("queued", "running"):
                raise Conflict(f"sweep {job_id!r} is {job['status']}; cancel it first (`jupyter-ext cancel {job_id}`)")
            runs = await self.store.sweep_runs(job_id)
            going = next((r for r in runs if r["status"] in ("queued", "running")), None)
            if going is not None:
                raise Conflict(f"run {going['id']!r} of sweep {job_id!r} is {going['status']}; cancel the sweep first")
            for run in runs:
                await self.store.delete_job(run["id"])
                await asyncio.to_thread(shutil.rmtree, self.layout.job_dir(run["id"]), True)
        await self.store.delete_job(job_id, user)
        await asyncio.to_thread(shutil.rmtree, self.layout.job_dir(job_id), True)

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
        for job_id in list(reused):  # a run of a sweep is kept by keeping its sweep
            try:
                parent = (await self.store.get_job(str(job_id))).get("parent")
            except NotFound:
                continue
            if parent:
                reused.add(parent)
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
            expired = await asyncio.to_thread(expire_uploads, self.layout.uploads_dir, self.upload_ttl)
            if expired:
                log.info("jupyter-ext: deleted %d upload(s) no job took (JupyterExt.upload_ttl)", len(expired))
        await self.store.reclaim()  # once a round, after what keep_jobs deleted

    async def run(self) -> None:
        """`clean` every `interval` seconds, for ever (a failed round is logged, and tried again)."""
        while True:
            try:
                await self.clean()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - upkeep must never stop the server
                log.exception("jupyter-ext: cleaning up failed; trying again in %ss", self.interval)
            await asyncio.sleep(self.interval)
