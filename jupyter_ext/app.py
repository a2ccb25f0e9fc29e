"""The server extension: configuration (traitlets) and wiring, nothing else.

Everything is a traitlets option, e.g. in jupyter_server_config.py:

    c.JupyterExt.backend = "local"
    c.JupyterExt.data_dir = "/srv/jupyter-ext"
    c.LocalBackend.gpus = ["0", "1"]
    c.LocalBackend.max_concurrent = 4
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from traitlets import Dict, Enum, Float, Integer, List, TraitError, Type, Unicode, default, validate

from .activity import ActivityReporter
from .backends.base import Backend
from .backends.kubernetes import KubernetesBackend
from .backends.local import LocalBackend
from .errors import ValidationError
from .handlers import handlers
from .orchestrator import Orchestrator
from .retention import keep_jobs_setting
from .schedule_handlers import schedule_handlers
from .schedules import Scheduler
from .store import AsyncStore, Store
from .users import local_user

__all__ = ["JupyterExt", "default_data_dir", "local_user"]


def default_data_dir() -> str:
    return os.environ.get("JUPYTER_EXT_DATA_DIR") or str(Path(jupyter_data_dir()) / "jupyter_ext")


class JupyterExt(ExtensionApp):
    """jupyter-ext server extension: REST/WebSocket API, job store, orchestrator, backends."""

    name = "jupyter_ext"
    load_other_extensions = True

    backend = Unicode(
        help="Backend used when a job does not name one: 'local' (processes on this machine) or 'kubernetes' "
        "(default: $JUPYTER_EXT_BACKEND, which jupyter_ext.hub sets in users' pods, else 'local'). "
        "It is always enabled.",
    ).tag(config=True)

    @default("backend")
    def _default_backend(self) -> str:
        return os.environ.get("JUPYTER_EXT_BACKEND") or "local"

    data_dir = Unicode(
        help="Folder for the job database, step notebooks, event files and artifacts "
        "(default: $JUPYTER_EXT_DATA_DIR, else <jupyter data dir>/jupyter_ext).",
    ).tag(config=True)

    @default("data_dir")
    def _default_data_dir(self) -> str:
        return default_data_dir()

    db_path = Unicode(
        help="SQLite database of jobs, steps and events (default: <data_dir>/jobs.db).",
    ).tag(config=True)

    @default("db_path")
    def _default_db_path(self) -> str:
        return str(Path(self.data_dir) / "jobs.db")

    keep_jobs = Dict(
        help="Retention of finished jobs (off by default: every job is kept until deleted). "
        '{"age": "30d"} deletes finished jobs that ended more than 30 days ago, {"count": 200} all but '
        "each user's 200 newest finished jobs; both together apply both. Deleted with their events, "
        "artifacts and step folders, every cleanup_interval. Queued and running jobs are never deleted. "
        "`jupyter-ext prune` does the same on demand.",
    ).tag(config=True)

    @validate("keep_jobs")
    def _check_keep_jobs(self, proposal: Any) -> dict[str, Any]:
        try:
            keep_jobs_setting(proposal["value"])
        except ValidationError as exc:
            raise TraitError(f"JupyterExt.{exc.message}") from None
        return dict(proposal["value"])

    upload_ttl = Float(
        86400.0,
        help="Seconds an upload (`PUT uploads`, the %%remote magic's large inputs) is kept for a job to "
        "take it; one no job took by then is deleted (checked every cleanup_interval). 0 keeps them.",
    ).tag(config=True)

    cleanup_interval = Float(
        3600.0,
        help="Seconds between rounds of upkeep: keep_jobs, expired uploads, and giving the job "
        "database's free space back (incremental vacuum, WAL checkpoint). The first round runs at start.",
    ).tag(config=True)

    backend_classes = Dict(
        default_value={"local": LocalBackend, "kubernetes": KubernetesBackend},
        help="Backends by name (name -> Backend subclass). Each is configured under its class name.",
    ).tag(config=True)

    enabled_backends = List(
        Unicode(),
        default_value=["local"],
        help="Backends this server offers (names from backend_classes). Add 'kubernetes' to run steps "
        "as Jobs; it needs in-cluster credentials or a kubeconfig.",
    ).tag(config=True)

    local_backend_class = Type(LocalBackend, klass=Backend, help="Class of the 'local' backend.").tag(config=True)

    max_request_bytes = Integer(
        16 * 1024 * 1024,
        help="The largest JSON request body the API accepts (bytes); a larger one is refused with 413 "
        "from its Content-Length, before it is read. Large %%remote inputs go through uploads instead.",
    ).tag(config=True)

    max_upload_bytes = Integer(
        512 * 1024 * 1024,
        help="The largest file `PUT /jupyter-ext/api/uploads` accepts (bytes; the %%remote magic uploads "
        "inputs over 1 MiB); a larger one is refused with 413. It replaces ServerApp.max_body_size there.",
    ).tag(config=True)

    schedule_catch_up = Enum(
        ["once", "skip"],
        default_value="once",
        help="Runs of schedules that fell due while no server ran: 'once' fires each such schedule once at "
        "start-up (never once per missed run), 'skip' records them as skipped and waits for the next run.",
    ).tag(config=True)

    report_activity = Enum(
        ["jobs_and_schedules", "jobs", "off"],
        default_value="jobs_and_schedules",
        help="Report activity (jupyter-server's last_activity, which jupyterhub-singleuser sends to the hub) "
        "while jobs run here ('jobs'), or also while any schedule is active ('jobs_and_schedules'), so "
        "JupyterHub's idle culler keeps the server; 'off' reports none. An active schedule then keeps the "
        "server running (and its resources taken) between runs: see docs/jupyterhub.md.",
    ).tag(config=True)

    activity_interval = Float(
        60.0,
        help="Seconds between refreshes of the reported activity while there is work (report_activity); it "
        "is also refreshed when a job starts and when it ends.",
    ).tag(config=True)

    def make_backends(self, also: Iterable[str] = ()) -> dict[str, Backend]:
        """The enabled backends (plus `also`), each configured under its class name, none started.
        The server and the in-process CLI (`jupyter-ext run --local`) both build them here."""
        classes: dict[str, Any] = {**self.backend_classes, "local": self.local_backend_class}
        enabled = set(self.enabled_backends) | {self.backend} | set(also)
        unknown = enabled - set(classes)
        if unknown:
            raise ValueError(
                f"JupyterExt.enabled_backends: unknown backend(s) {sorted(unknown)}; known: {sorted(classes)}"
            )
        return {name: classes[name](parent=self) for name in sorted(enabled)}

    def initialize_settings(self) -> None:
        self.backends: dict[str, Backend] = self.make_backends()
        self.store = AsyncStore(Store(self.db_path))
        assert self.serverapp is not None, "JupyterExt runs inside a jupyter-server"
        contents = getattr(self.serverapp, "contents_manager", None)
        self.orchestrator = Orchestrator(
            store=self.store,
            backends=self.backends,
            default_backend=self.backend,
            root_dir=self.serverapp.root_dir,
            data_dir=self.data_dir,
            allow_hidden=bool(getattr(contents, "allow_hidden", False)),
            keep_jobs=keep_jobs_setting(self.keep_jobs),
            upload_ttl=self.upload_ttl or None,
            cleanup_interval=max(0.01, self.cleanup_interval),
        )
        self.scheduler = Scheduler(store=self.store, orchestrator=self.orchestrator, catch_up=self.schedule_catch_up)
        self.settings["jupyter_ext"] = self
        self.log.info("jupyter-ext: jobs in %s, backends %s", self.data_dir, ", ".join(sorted(self.backends)))

    def initialize_handlers(self) -> None:
        self.handlers.extend(schedule_handlers)  # before handlers' catch-all
        self.handlers.extend(handlers)

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        # Kernels this server starts inherit these, so `%%remote` submits through this server
        # (its jobs show in the panel and outlive the kernel). Steps never see them: the local
        # backend drops JUPYTER_EXT_* and the token from a step's environment.
        os.environ["JUPYTER_EXT_SERVER_URL"] = serverapp.connection_url
        os.environ["JUPYTER_EXT_TOKEN"] = serverapp.identity_provider.token or ""
        os.environ["JUPYTER_EXT_ROOT_DIR"] = str(serverapp.root_dir)
        # The web app's own settings (ours were copied into them): jupyter-server's last_activity() reads them.
        self.activity = ActivityReporter(
            serverapp.web_app.settings,
            mode=self.report_activity,
            jobs=self.orchestrator.driving,
            schedules=self.store.active_schedules,
            interval=max(0.01, self.activity_interval),
        )
        self.orchestrator.activity_listeners.append(self.activity.job_changed)
        await self.orchestrator.start()
        await self.scheduler.start()
        self.activity.start()

    async def stop_extension(self) -> None:
        if hasattr(self, "activity"):
            await self.activity.stop()
        await self.scheduler.stop()
        await self.orchestrator.stop()
        await self.store.close()
