"""One way to use jupyter-ext from Python, whether a server runs or not: the `Session` protocol.

    session = await open_session()          # the server if one runs, else this process
    job = await session.submit({"notebook": "train.ipynb"})
    async for event in session.events(job["id"]):
        ...
    await session.close()

Two implementations, answering with the same dicts (the API's shapes, views.py):

- `ServerSession` (client.py): a running jupyter-ext server over HTTP and its WebSocket stream, so
  jobs show in the Lab panel and outlive the caller;
- `InProcessSession`: this process, with the job database a server would use and the backends
  the server's configuration builds (`JupyterExt.make_backends`), built only on public methods of
  the store and the orchestrator. Nothing is started until `start()`: reading jobs touches no
  runner and no kernel.

The CLI and the `%%remote` magic are written against `Session` only.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .contract import TERMINAL
from .errors import ValidationError
from .follow import follow
from .users import local_user
from .views import artifact_view, job_list_view, job_view, plan_view

if TYPE_CHECKING:
    from .orchestrator import Orchestrator
    from .schedules import Scheduler

Event = dict[str, Any]


class Session(Protocol):
    """What the CLI and the magic do with jobs. Every method answers the API's shapes (a job as
    `GET jobs/{id}` answers it, and so on) and raises jupyter-ext's errors (errors.py)."""

    @property
    def user(self) -> str:
        """Whose jobs this session sees."""

    @property
    def url(self) -> str | None:
        """The server's address; None in this process (where nothing outside it can reach a job)."""

    @property
    def root_dir(self) -> Path | None:
        """The folder notebook paths are relative to (None: the server did not say)."""

    async def start(self, backend: str | None = None) -> None:
        """Be ready to run jobs (in this process: start the backend they run on)."""

    async def plan(self, notebook: str, backend: str | None = None) -> dict[str, Any]:
        """How a notebook would run (steps, parameters, warnings, and the `error` a submit would get)."""

    async def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Run a job (a `JobSpec` as JSON); answers the job."""

    async def upload(self, data: bytes) -> str:
        """Keep a file for a job to take (`"upload:<id>"` in a cell's inputs); answers its id."""

    async def jobs(self, parent: str | None = None) -> list[dict[str, Any]]:
        """Your jobs, newest first: those that are no sweep's run, or with `parent` the runs of that sweep."""

    async def job(self, job_id: str) -> dict[str, Any]: ...

    async def cancel(self, job_id: str) -> dict[str, Any]: ...

    async def delete(self, job_id: str) -> None: ...

    async def prune(self, older_than: str | None, keep: int | None, dry_run: bool = False) -> list[str]: ...

    async def artifacts(self, job_id: str) -> list[dict[str, Any]]: ...

    async def download(
        self, job_id: str, name: str, target: Path, progress: Callable[[int], Any] | None = None
    ) -> None: ...

    def events(self, job_id: str, after: int = 0) -> AsyncIterator[Event]:
        """Every event with seq > after, once and in order, live, until the job ends."""

    async def history(self, job_id: str, after: int = 0) -> list[Event]:
        """The events with seq > after stored so far (nothing is waited for)."""

    async def schedules(self) -> list[dict[str, Any]]:
        """Your schedules (`GET schedules`), newest first."""

    async def schedule(self, schedule_id: str) -> dict[str, Any]: ...

    async def create_schedule(self, body: dict[str, Any]) -> dict[str, Any]:
        """Make a schedule (`POST schedules`: notebook, cron, timezone, parameters, sweep...)."""

    async def update_schedule(self, schedule_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """`PATCH schedules/{id}`: paused, cron, timezone, parameters, snapshot."""

    async def delete_schedule(self, schedule_id: str) -> None: ...

    async def close(self) -> None: ...


# -- this process -------------------------------------------------------------------------------------------------
def server_config() -> Any:
    """The configuration jupyter_server would give the extension: jupyter_jupyter_ext_config, then
    jupyter_config and jupyter_server_config (.py and .json) from the Jupyter config path (later
    files win, the server's over the extension's). Cheap: no server module is imported."""
    from jupyter_core.application import JupyterApp
    from traitlets.config import Config

    merged = Config()
    for name in ("jupyter_jupyter_ext_config", "jupyter_server_config"):
        loader = JupyterApp(config_file_name=name)
        loader.load_config_file()
        merged.merge(loader.config)
    return merged


def configured_app(config: Any = None) -> Any:
    """The server extension's app (`JupyterExt`) with that configuration, without a server; its
    traits add the JUPYTER_EXT_* environment defaults themselves."""
    from .app import JupyterExt

    return JupyterExt(config=server_config() if config is None else config)


def database_path(config: Any) -> Path:
    """Where `JupyterExt` keeps the job database under `config` (its data_dir/db_path defaults),
    found without importing the server (`ls` must be quick)."""
    from jupyter_core.paths import jupyter_data_dir

    ours = config.JupyterExt if "JupyterExt" in config else {}
    if ours.get("db_path"):
        return Path(ours["db_path"])
    data_dir = (
        ours.get("data_dir") or os.environ.get("JUPYTER_EXT_DATA_DIR") or Path(jupyter_data_dir()) / "jupyter_ext"
    )
    return Path(data_dir) / "jobs.db"


class InProcessSession:
    """This process: the job database directly, and, to run jobs, an orchestrator with the
    backends the app's configuration builds (as the server builds them)."""

    url: str | None = None

    def __init__(self, root_dir: str | Path | None = None, backend: str | None = None) -> None:
        from .store import AsyncStore, Store

        self.config = server_config()
        self.store = AsyncStore(Store(database_path(self.config)))
        self._root = Path(root_dir or os.getcwd())
        self.backend = backend  # asked for on the command line: built even if the config does not enable it
        self._orchestrator: Orchestrator | None = None
        self._scheduler: Scheduler | None = None
        self.started = False

    @property
    def root_dir(self) -> Path:
        return self._root

    @property
    def user(self) -> str:
        return local_user()

    @property
    def orchestrator(self) -> Orchestrator:
        """Built on first use (running or cancelling a job), with the backends the app builds."""
        if self._orchestrator is None:
            from .orchestrator import Orchestrator

            app = configured_app(self.config)
            try:
                backends = app.make_backends([self.backend] if self.backend else [])
            except ValueError as exc:
                raise ValidationError(f"backend: {exc}", field="backend") from None
            self._orchestrator = Orchestrator(
                store=self.store,
                backends=backends,
                default_backend=app.backend,
                root_dir=self._root,
                data_dir=app.data_dir,
            )
        return self._orchestrator

    def without_warm_pool(self) -> None:
        """Start each step's runner with the step, keeping none ready (`LocalBackend.warm_pool = 0`),
        for a process that runs one one-step job and ends (the command line's `run`): a pool would
        start a spare runner to replace the one taken, beside the step, and the command would wait
        for it at its end. Before `start()`; an orchestrator built for the plan is built again."""
        if self.started:
            raise RuntimeError("without_warm_pool: the backend is started already")
        self.config.LocalBackend.warm_pool = 0
        self._orchestrator = None

    def _drives(self, job_id: str) -> bool:
        return self._orchestrator is not None and self._orchestrator.drives(job_id)

    async def start(self, backend: str | None = None) -> None:
        """Start the backend jobs will run on (the local one's warm runner, a cluster's watches)."""
        _, chosen = self.orchestrator.backend_named(backend or self.backend)
        await chosen.start()
        self.started = True

    async def close(self) -> None:
        if self.started:
            await self.orchestrator.stop()
        await self.store.close()

    async def plan(self, notebook: str, backend: str | None = None) -> dict[str, Any]:
        name, _ = self.orchestrator.backend_named(backend)
        return await asyncio.to_thread(plan_view, self.orchestrator, notebook, name)

    async def submit(self, spec: dict[str, Any], drive: bool = True) -> dict[str, Any]:
        """As the server's `POST jobs`; `drive=False` stores the job for another process to drive
        (`jupyter-ext run --detach`, see `drive`)."""
        from .models import JobSpec, parse

        job, _ = await self.orchestrator.submit(parse(JobSpec, spec), self.user, drive=drive)
        return job_view(job)

    async def drive(self, job_id: str) -> dict[str, Any]:
        """Drive a stored job of this user to its end here (its backend started first); answers it."""
        job = await self.store.get_job(job_id, self.user)
        await self.start(job["backend"])
        self.orchestrator.drive(job_id)
        return job_view(await self.orchestrator.wait(job_id))

    async def wait(self, job_id: str) -> dict[str, Any]:
        """Until this process has nothing left to do for the job (e.g. its cancelling is done)."""
        return job_view(await self.orchestrator.wait(job_id))

    async def upload(self, data: bytes) -> str:
        upload_id = uuid.uuid4().hex
        path = self.orchestrator.upload_path(self.user, upload_id)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

        await asyncio.to_thread(write)
        return upload_id

    async def jobs(self, parent: str | None = None) -> list[dict[str, Any]]:
        import logging

        if parent is not None:
            await self.store.get_job(parent, self.user)
        page, _ = await self.store.job_summaries(self.user, limit=200, parent=parent)
        return job_list_view(page, logging.getLogger("jupyter_ext"))

    async def job(self, job_id: str) -> dict[str, Any]:
        return job_view(await self.store.get_job(job_id, self.user))

    async def cancel(self, job_id: str) -> dict[str, Any]:
        if self._drives(job_id):
            return job_view(await self.orchestrator.cancel(job_id, self.user))
        # A job another process drives (a server, a detached run): record the request, which that
        # process reads, and stop its running steps directly.
        from .backends.local import LocalBackend

        job = await self.store.get_job(job_id, self.user)
        if job["status"] not in TERMINAL:
            await self.store.update_job(job_id, cancel_requested=1)
            running = [s["handle"] for s in job["steps"] if s["status"] == "running" and s["handle"]]
            backend = self.orchestrator.backends.get(job["backend"]) if running else None
            if backend is not None:
                local = isinstance(backend, LocalBackend)  # stops a process by its pid: needs no start
                if not local:
                    await backend.start()
                try:
                    for handle in running:
                        await backend.cancel(backend.load_handle(handle))
                finally:
                    if not local:
                        await backend.stop()
        return job_view(await self.store.get_job(job_id))

    async def delete(self, job_id: str) -> None:
        await self.orchestrator.delete(job_id, self.user)

    async def prune(self, older_than: str | None, keep: int | None, dry_run: bool = False) -> list[str]:
        from .retention import parse_age

        age = parse_age(older_than) if older_than is not None else None
        return list(await self.orchestrator.prune(self.user, older_than=age, keep=keep, dry_run=dry_run))

    async def artifacts(self, job_id: str) -> list[dict[str, Any]]:
        await self.store.get_job(job_id, self.user)
        return [artifact_view(a) for a in await self.store.artifacts(job_id)]

    async def download(
        self, job_id: str, name: str, target: Path, progress: Callable[[int], Any] | None = None
    ) -> None:
        from . import executed_html

        await self.store.get_job(job_id, self.user)
        artifact = await self.store.artifact(job_id, name)
        await executed_html.ensure(self.store, job_id, artifact)  # an HTML copy is made when first asked for
        await asyncio.to_thread(shutil.copyfile, artifact["path"], target)
        if progress is not None:
            progress(artifact["size"])

    async def events(self, job_id: str, after: int = 0) -> AsyncIterator[Event]:
        """Live from this process's orchestrator while it drives the job, else from the database
        (another process drives it), as the server's stream: follow.py's loop."""
        await self.store.get_job(job_id, self.user)
        batches = (
            self._orchestrator.follow(job_id, after)
            if self._orchestrator is not None
            else follow(self.store, job_id, after)
        )
        async with aclosing(batches):
            async for batch in batches:
                for event in batch:
                    yield event

    # -- schedules: kept in the job database; a server on it fires them (this process never does) --------------
    @property
    def scheduler(self) -> Scheduler:
        if self._scheduler is None:
            from .schedules import Scheduler

            self._scheduler = Scheduler(store=self.store, orchestrator=self.orchestrator)
        return self._scheduler

    async def schedules(self) -> list[dict[str, Any]]:
        return await self.scheduler.list(self.user)

    async def schedule(self, schedule_id: str) -> dict[str, Any]:
        return await self.scheduler.get(schedule_id, self.user)

    async def create_schedule(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.scheduler.create(body, self.user)

    async def update_schedule(self, schedule_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.scheduler.update(schedule_id, body, self.user)

    async def delete_schedule(self, schedule_id: str) -> None:
        await self.scheduler.delete(schedule_id, self.user)

    async def history(self, job_id: str, after: int = 0) -> list[Event]:
        await self.store.get_job(job_id, self.user)
        events: list[Event] = []
        while True:
            page = await self.store.events(job_id, after, 10000)
            events.extend(page)
            if len(page) < 10000:
                return events
            after = page[-1]["seq"]


# -- finding one ----------------------------------------------------------------------------------------------------
async def open_session(
    *, local: bool = False, search: bool = True, root_dir: str | Path | None = None, backend: str | None = None
) -> Session:
    """The server to talk to unless `local`: the one `JUPYTER_EXT_SERVER_URL` names, else (with
    `search`) the first running one `jupyter server list` knows; without one, this process
    (`root_dir`, `backend`: see `InProcessSession`), nothing started yet."""
    from .client import find_server

    if not local:
        server = await find_server(search=search)
        if server is not None:
            return server
    return InProcessSession(root_dir, backend)
