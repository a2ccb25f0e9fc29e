"""REST + WebSocket API under /jupyter-ext/api/ (documented in openapi.yaml beside this file).

Every route is authenticated and authorized by jupyter-server (`@web.authenticated` +
`@authorized`, `@ws_authenticated` for the stream), POST/DELETE carry jupyter-server's XSRF
check, and a user only ever sees their own jobs (another user's job id answers 404). Our
exceptions become HTTP responses in exactly one place, `write_error`.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web, websocket

from . import __version__
from .errors import Forbidden, JupyterExtError, NotFound, ValidationError
from .models import Job, JobSpec, Status, Step, parse

if TYPE_CHECKING:
    from .app import JupyterExt

AUTH_RESOURCE = "jupyter_ext"
API = "/jupyter-ext/api"
CHUNK = 256 * 1024


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def job_view(job: dict[str, Any]) -> dict[str, Any]:
    """Store record -> API `Job`."""
    steps = [
        Step(
            name=s["name"],
            status=Status(s["status"]),
            after=s["spec"].get("after", []),
            resources=s["spec"].get("resources", {}),
            cells=s["spec"].get("cells", []),
            attempt=s["attempt"],
            retries=s["spec"].get("retries", 0),
            timeout=s["spec"].get("timeout"),
            started=iso(s["started"]),
            finished=iso(s["finished"]),
            exit_code=s["exit_code"],
            error=s["error"],
            reused_from=s["spec"].get("reused_from"),
        )
        for s in job["steps"]
    ]
    return Job(
        id=job["id"],
        name=job["name"],
        notebook=job["notebook"],
        user=job["user"],
        backend=job["backend"],
        status=Status(job["status"]),
        parameters=job["parameters"],
        created=iso(job["created"]) or "",
        started=iso(job["started"]),
        finished=iso(job["finished"]),
        error=job["error"],
        last_seq=job["last_seq"],
        steps=steps,
    ).model_dump(mode="json")


def owner_of(handler: JupyterHandler) -> str:
    """Whose jobs a request sees. Under JupyterHub each hub user; in a personal server, the
    account running it (jupyter-server's own user names are random per start)."""
    user = handler.current_user
    if os.environ.get("JUPYTERHUB_USER") or os.environ.get("JUPYTER_EXT_USER_FROM_AUTH"):
        name = getattr(user, "username", None) or (user.get("name") if isinstance(user, dict) else None)
        if not name:
            raise Forbidden("could not tell who you are")
        return str(name)
    from .app import local_user

    return local_user()


class _Base(APIHandler):
    auth_resource = AUTH_RESOURCE

    @property
    def ext(self) -> JupyterExt:
        return self.settings["jupyter_ext"]

    @property
    def owner(self) -> str:
        return owner_of(self)

    def body(self) -> Any:
        try:
            return json.loads(self.request.body or b"{}")
        except ValueError as exc:
            raise ValidationError(f"the request body is not valid JSON: {exc}") from None

    def int_arg(self, name: str, default: int, minimum: int = 0) -> int:
        raw = self.get_argument(name, None)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ValidationError(f"{name}: {raw!r} is not a whole number", field=name) from None
        if value < minimum:
            raise ValidationError(f"{name}: must be {minimum} or more", field=name)
        return value

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, JupyterExtError):
            self.set_status(exc.status, exc.reason)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(exc.to_dict()))
            return
        super().write_error(status_code, **kwargs)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, JupyterExtError):
            self.log.info("jupyter-ext: %s %s -> %s: %s", self.request.method, self.request.path, value.status, value)
            return
        super().log_exception(typ, value, tb)


class InfoHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        """What this server offers: version, backends, the default backend, who you are."""
        self.finish(
            {
                "version": __version__,
                "backends": sorted(self.ext.orchestrator.backends),
                "default_backend": self.ext.orchestrator.default_backend,
                "user": self.owner,
                "capacity": {n: b.capacity() for n, b in self.ext.orchestrator.backends.items()},
            }
        )


class JobsHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        """Your jobs, newest first."""
        limit = self.int_arg("limit", 200, 1)
        jobs = await self.ext.store.list_jobs(self.owner, limit=limit)
        self.finish({"jobs": [job_view(j) for j in jobs]})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        """Submit a notebook as a job. A repeated Idempotency-Key returns the first job."""
        data = self.body()
        if isinstance(data, dict) and self.request.headers.get("Idempotency-Key"):
            data.setdefault("idempotency_key", self.request.headers["Idempotency-Key"])
        spec = parse(JobSpec, data)
        job, created = await self.ext.orchestrator.submit(spec, self.owner)
        self.set_status(201 if created else 200)
        self.set_header("Location", f"{self.base_url.rstrip('/')}{API}/jobs/{job['id']}")
        self.finish(job_view(job))


class JobHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        """One job with its steps."""
        self.finish(job_view(await self.ext.store.get_job(job_id, self.owner)))

    @web.authenticated
    @authorized
    async def delete(self, job_id: str) -> None:
        """Delete a finished job with its events and artifacts (cancel a running one first)."""
        await self.ext.orchestrator.delete(job_id, self.owner)
        self.set_status(204)
        self.finish()


@web.stream_request_body
class UploadHandler(_Base):
    """`PUT uploads`: a file streamed to the server (e.g. a large `%%remote --in` value), answered
    with an id a job spec can name (`"upload:<id>"`). Uploads are per user and used once."""

    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()
        # The body streams in before put() runs, so authenticate and authorize here, first.
        if self.current_user is None:
            raise web.HTTPError(403)
        allowed = await ensure_async(self.authorizer.is_authorized(self, self.current_user, "write", AUTH_RESOURCE))
        if not allowed:
            raise web.HTTPError(403)
        self.upload_id = uuid.uuid4().hex
        self.upload_path = self.ext.orchestrator.upload_path(self.owner, self.upload_id)
        self.upload_size = 0

        def open_file() -> Any:
            self.upload_path.parent.mkdir(parents=True, exist_ok=True)
            return open(self.upload_path, "wb")  # noqa: SIM115 - closed in put() / on_connection_close()

        self.upload_file = await asyncio.to_thread(open_file)

    async def data_received(self, chunk: bytes) -> None:
        self.upload_size += len(chunk)
        await asyncio.to_thread(self.upload_file.write, chunk)

    @web.authenticated
    @authorized
    async def put(self) -> None:
        """Store the body; answer its upload id and size."""
        await asyncio.to_thread(self.upload_file.close)
        self.set_status(201)
        self.finish({"upload": self.upload_id, "size": self.upload_size})

    def on_connection_close(self) -> None:
        if hasattr(self, "upload_file") and not self.upload_file.closed:
            self.upload_file.close()
            self.upload_path.unlink(missing_ok=True)


class CancelHandler(_Base):
    @web.authenticated
    @authorized
    async def post(self, job_id: str) -> None:
        """Cancel a queued or running job; cancelling a finished job changes nothing."""
        job = await self.ext.orchestrator.cancel(job_id, self.owner)
        self.finish(job_view(job))


class EventsHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        """Events with seq > after (at most `limit`), and whether the job has no more to come."""
        after = self.int_arg("after", 0)
        limit = min(self.int_arg("limit", 5000, 1), 20000)
        job = await self.ext.store.get_job(job_id, self.owner)
        events = await self.ext.store.events(job_id, after, limit)
        last = events[-1]["seq"] if events else after
        done = job["status"] in {"succeeded", "failed", "cancelled"} and last >= job["last_seq"]
        self.finish({"events": events, "last_seq": job["last_seq"], "done": done})


class ArtifactsHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        """The job's artifacts: executed notebook, its HTML, cell images, files the steps wrote."""
        await self.ext.store.get_job(job_id, self.owner)
        artifacts = await self.ext.store.artifacts(job_id)
        self.finish({"artifacts": [{k: a[k] for k in ("name", "step", "size", "mime")} for a in artifacts]})


class ArtifactHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self, job_id: str, name: str) -> None:
        """Download one artifact (`?inline=1` to display images in the page)."""
        if "/" in name or "\\" in name or name in (".", "..") or ".." in name.split("__") or "\x00" in name:
            raise ValidationError(f"name: {name!r} is not an artifact name; names have no '/' or '..'", field="name")
        await self.ext.store.get_job(job_id, self.owner)
        artifact = await self.ext.store.artifact(job_id, name)
        path, job_dir = await asyncio.to_thread(
            lambda: (Path(artifact["path"]).resolve(), self.ext.orchestrator.job_dir(job_id).resolve())
        )
        if not path.is_relative_to(job_dir):
            raise NotFound(f"artifact {name!r} is not stored with job {job_id!r}", field="name")
        mime = artifact["mime"]
        inline = self.get_argument("inline", "0") in ("1", "true") and mime.startswith("image/")
        self.set_header("Content-Type", mime)
        self.set_header("X-Content-Type-Options", "nosniff")
        # Artifacts are user content: never let one run script in the server's origin.
        self.set_header(
            "Content-Security-Policy", "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"
        )
        disposition = "inline" if inline else "attachment"
        self.set_header("Content-Disposition", f'{disposition}; filename="{name}"')
        try:
            handle = await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError:
            raise NotFound(
                f"artifact {name!r} of job {job_id!r} is recorded but its file is gone", field="name"
            ) from None
        try:
            size = (await asyncio.to_thread(os.fstat, handle.fileno())).st_size
            self.set_header("Content-Length", str(size))
            while True:
                chunk = await asyncio.to_thread(handle.read, CHUNK)
                if not chunk:
                    break
                self.write(chunk)
                await self.flush()
        finally:
            handle.close()
        self.finish()


class PlanHandler(_Base):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        """How a notebook would run, without storing anything: its steps with their cells and
        resources, its parameters, and the problems that would refuse it (as `error`)."""
        data = self.body()
        if not isinstance(data, dict):
            raise ValidationError('the request body must be a JSON object such as {"notebook": "a.ipynb"}')
        unknown = sorted(set(data) - {"notebook", "backend"})
        if unknown:
            raise ValidationError(
                f"{unknown[0]}: unknown field; send 'notebook' and optionally 'backend'", field=unknown[0]
            )
        relative = data.get("notebook")
        if not isinstance(relative, str) or not relative.endswith(".ipynb"):
            raise ValidationError(
                "notebook: give the path of a notebook under the server root, e.g. 'examples/train.ipynb'",
                field="notebook",
            )
        orchestrator = self.ext.orchestrator
        backend_name, _ = orchestrator.backend_named(data.get("backend"))
        self.finish(await asyncio.to_thread(_plan_view, orchestrator, relative, backend_name))


def _plan_view(orchestrator: Any, relative: str, backend_name: str) -> dict[str, Any]:
    """The body of `POST plan` (runs in a thread: it reads and parses the notebook)."""
    from .notebook import plan_notebook
    from .notebook.parameters import notebook_parameters

    _, nb = orchestrator.read_notebook(relative)
    ids = [cell.get("id") for cell in nb.cells]
    body: dict[str, Any] = {
        "notebook": relative,
        "backend": backend_name,
        "steps": [],
        "parameters": notebook_parameters(nb),
        "warnings": [],
        "single": False,
        "error": None,
    }
    try:
        plan = plan_notebook(nb)
        orchestrator.check_kernel(nb, backend_name)
        for planned in plan.steps:
            orchestrator.check_resources(
                orchestrator.backends[backend_name], planned.name, planned.resources, planned.asked
            )
    except JupyterExtError as exc:
        body["error"] = exc.to_dict()
        return body
    body["single"] = plan.single
    body["warnings"] = plan.warnings
    body["steps"] = [
        {
            "name": s.name,
            "after": list(s.after),
            "cells": [{"index": i, "id": ids[i]} for i in s.cells],
            "resources": s.resources.model_dump(),
            "timeout": s.timeout,
            "retries": s.retries,
        }
        for s in plan.steps
    ]
    return body


class EventStreamHandler(WebSocketMixin, JupyterHandler, websocket.WebSocketHandler):
    """Events with seq > after, then live ones as they are stored; closes after `job.end`."""

    auth_resource = AUTH_RESOURCE

    @property
    def ext(self) -> JupyterExt:
        return self.settings["jupyter_ext"]

    @ws_authenticated
    async def get(self, job_id: str) -> None:
        """Open the stream (authorization and job ownership are checked before the upgrade)."""
        allowed = await ensure_async(self.authorizer.is_authorized(self, self.current_user, "read", AUTH_RESOURCE))
        if not allowed:
            raise web.HTTPError(403)
        try:
            await self.ext.store.get_job(job_id, owner_of(self))
            raw = self.get_argument("after", "0")
            self.after = int(raw)
            if self.after < 0:
                raise ValueError(raw)
        except NotFound as exc:
            raise web.HTTPError(404, str(exc)) from None
        except ValueError:
            raise web.HTTPError(400, "after: must be a whole number, 0 or more") from None
        self.job_id = job_id
        res = super().get(job_id)
        if res is not None:
            await res

    def open(self, job_id: str) -> None:
        self.queue = self.ext.orchestrator.hub.subscribe(job_id)
        self.pump = asyncio.create_task(self._pump())

    async def _send(self, events: list[dict[str, Any]]) -> bool:
        """Send events newer than what was sent; True once job.end went out."""
        for event in events:
            if event["seq"] <= self.after:
                continue
            await self.write_message(json.dumps(event))
            self.after = event["seq"]
            if event["type"] == "job.end":
                return True
        return False

    async def _pump(self) -> None:
        try:
            while True:  # backlog, page by page
                backlog = await self.ext.store.events(self.job_id, self.after, 2000)
                if not backlog:
                    break
                if await self._send(backlog):
                    self.close(1000, "job ended")
                    return
            job = await self.ext.store.get_job(self.job_id)
            if job["status"] in ("succeeded", "failed", "cancelled") and self.after >= job["last_seq"]:
                self.close(1000, "job ended; nothing after this seq")  # resumed past job.end
                return
            while True:
                if await self._send(await self.queue.get()):
                    self.close(1000, "job ended")
                    return
        except websocket.WebSocketClosedError:
            pass

    def on_message(self, message: str | bytes) -> None:
        """Clients only listen; anything they send is ignored."""

    def on_close(self) -> None:
        if hasattr(self, "queue"):
            self.ext.orchestrator.hub.unsubscribe(self.job_id, self.queue)
        if hasattr(self, "pump"):
            self.pump.cancel()


_JOB = r"(?P<job_id>[A-Za-z0-9_-]{1,64})"

handlers: list[tuple[str, type]] = [
    (rf"{API}/info", InfoHandler),
    (rf"{API}/jobs", JobsHandler),
    (rf"{API}/plan", PlanHandler),
    (rf"{API}/uploads", UploadHandler),
    (rf"{API}/jobs/{_JOB}", JobHandler),
    (rf"{API}/jobs/{_JOB}/cancel", CancelHandler),
    (rf"{API}/jobs/{_JOB}/events", EventsHandler),
    (rf"{API}/jobs/{_JOB}/events/stream", EventStreamHandler),
    (rf"{API}/jobs/{_JOB}/artifacts", ArtifactsHandler),
    (rf"{API}/jobs/{_JOB}/artifacts/(?P<name>.+)", ArtifactHandler),
]
