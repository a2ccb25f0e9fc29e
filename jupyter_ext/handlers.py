"""REST + WebSocket API under /jupyter-ext/api/ (documented in openapi.yaml beside this file).

Every route is authenticated and authorized by jupyter-server (`@web.authenticated` +
`@authorized`, `@ws_authenticated` for the stream), POST/DELETE carry jupyter-server's XSRF
check, and a user only ever sees their own jobs (another user's job id answers 404). Our
exceptions become HTTP responses in exactly one place, `write_error`. What the routes answer is
made elsewhere: jobs and plans in views.py, a job's event stream in follow.py.

Why this module is long: it is the whole HTTP surface, one short class per route of openapi.yaml
(read side by side with it), plus the one base class that streams, limits and refuses bodies.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web, websocket
from tornado.http1connection import HTTP1Connection

from . import __version__, executed_html
from .contract import TERMINAL
from .errors import Forbidden, JupyterExtError, NotFound, TooLarge, ValidationError, cut, shown
from .models import JobSpec, PlanSpec, parse
from .users import local_user
from .views import artifact_view, job_list_json, job_view, plan_view, safe_job_view

if TYPE_CHECKING:
    from .app import JupyterExt

AUTH_RESOURCE = "jupyter_ext"
API = "/jupyter-ext/api"
CHUNK = 256 * 1024
#: SQLite's largest integer: a seq or a limit above it cannot be asked for.
MAX_INT = 2**63 - 1


def owner_of(handler: JupyterHandler) -> str:
    """Whose jobs a request sees. Under JupyterHub each hub user; in a personal server, the
    account running it (jupyter-server's own user names are random per start)."""
    user = handler.current_user
    if os.environ.get("JUPYTERHUB_USER") or os.environ.get("JUPYTER_EXT_USER_FROM_AUTH"):
        name = getattr(user, "username", None) or (user.get("name") if isinstance(user, dict) else None)
        if not name:
            raise Forbidden("could not tell who you are")
        return str(name)
    return local_user()


_NOT_IMPLEMENTED = {m: getattr(web.RequestHandler, m.lower()) for m in ("GET", "POST", "PUT", "PATCH", "DELETE")}


@web.stream_request_body
class _Base(APIHandler):
    """Our routes. Bodies are streamed in (not buffered by tornado), so one over the limit is
    refused with 413 from its Content-Length before any of it is read, and a chunked one stops
    being kept once over it."""

    auth_resource = AUTH_RESOURCE

    @property
    def ext(self) -> JupyterExt:
        return self.settings["jupyter_ext"]

    @property
    def owner(self) -> str:
        return owner_of(self)

    def body_limit(self) -> tuple[int, str]:
        """The most bytes a body of this route may have, and the option that sets it."""
        return self.ext.max_request_bytes, "c.JupyterExt.max_request_bytes"

    def too_large(self, size: int | None) -> TooLarge:
        limit, option = self.body_limit()
        what = f"{size:,} bytes" if size is not None else f"over {limit:,} bytes"
        return TooLarge(f"the request body is {what}; this server accepts at most {limit:,} bytes here ({option})")

    async def prepare(self) -> None:  # type: ignore[override]
        self._chunks: list[bytes] = []
        self._received = 0
        self._over = False
        length = self.request.headers.get("Content-Length", "")
        over = length.isdigit() and int(length) > self.body_limit()[0]
        try:
            await super().prepare()
        except web.HTTPError as exc:
            if over or not self._has_body():
                raise
            # Refused (no credentials, no XSRF token) while a body is on its way: answering now
            # would leave the body unread, and tornado then drops the connection, which a proxy
            # in front of us (JupyterHub's) may already be reusing: its next request fails with a
            # 503. The body (within the limit) is read and dropped, then the refusal is said.
            self._over = True
            setattr(self, self.request.method.lower(), self._deferred_refusal(exc))
            return
        if over:
            if self.current_user is None:
                raise web.HTTPError(403)  # strangers learn nothing, not even the limit
            raise self.too_large(int(length))

    def _has_body(self) -> bool:
        headers = self.request.headers
        return (
            headers.get("Content-Length", "0") not in ("", "0")
            or "chunked" in headers.get("Transfer-Encoding", "").lower()
        )

    @staticmethod
    def _deferred_refusal(exc: web.HTTPError) -> Any:
        async def refuse(*args: Any, **kwargs: Any) -> None:
            raise exc

        return refuse

    async def data_received(self, chunk: bytes) -> None:
        if self._finished or self._over:
            return  # refused already: the rest of the body is read and dropped
        self._received += len(chunk)
        if self._received > self.body_limit()[0]:
            self._over, self._chunks = True, []
            return
        self._chunks.append(chunk)

    def body(self) -> Any:
        if self._over:
            raise self.too_large(None)
        raw = b"".join(self._chunks)
        try:
            return json.loads(raw or b"{}")
        except RecursionError:
            raise ValidationError("the request body is nested too deeply to read") from None
        except ValueError as exc:
            raise ValidationError(f"the request body is not valid JSON: {cut(str(exc), 200)}") from None

    def int_arg(self, name: str, default: int, minimum: int = 0, maximum: int = MAX_INT) -> int:
        raw = self.get_argument(name, None)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ValidationError(f"{name}: {shown(raw)} is not a whole number", field=name) from None
        if value < minimum:
            raise ValidationError(f"{name}: must be {minimum} or more", field=name)
        if value > maximum:
            raise ValidationError(f"{name}: must be at most {maximum}", field=name)
        return value

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every error of our routes is our JSON `Error` (jupyter-server's own 403/405 included:
        its writer gives `"reason": null`)."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, JupyterExtError):
            self.set_status(exc.status, exc.reason)
            body = exc.to_dict()
        else:
            reason = self._reason or "Error"
            message = "Unhandled error" if status_code >= 500 else reason
            if isinstance(exc, web.HTTPError) and exc.log_message and status_code < 500:
                message = exc.log_message % exc.args if exc.args else exc.log_message
            body = {"message": cut(message), "reason": reason}
        if status_code == 405:  # RFC 9110: say which methods the route has
            allowed = [m for m, default in _NOT_IMPLEMENTED.items() if getattr(type(self), m.lower()) is not default]
            self.set_header("Allow", ", ".join(allowed))
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

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
        """Your jobs, newest first: a page of `limit`, older than the job `before`; `next` is the
        `before` of the following page (null on the last). Only jobs that are no sweep's run, or
        with `parent` the runs of that sweep job of yours."""
        limit = self.int_arg("limit", 200, 1)
        parent = self.get_argument("parent", None)
        if parent is not None:
            if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", parent):
                raise ValidationError(f"parent: {shown(parent, 80)} is not a job id", field="parent")
            try:
                await self.ext.store.get_job(parent, self.owner)
            except NotFound:
                raise NotFound(f"parent: no job {parent!r} of yours", field="parent") from None
        jobs, after = await self.ext.store.job_summaries(
            self.owner, limit=limit, before=self.get_argument("before", None), parent=parent
        )
        self.finish(job_list_json(jobs, after, self.log))

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
        view = safe_job_view(await self.ext.store.get_job(job_id, self.owner), self.log)
        if view is None:
            raise NotFound(f"job {job_id!r} is stored but cannot be shown (see the server log)", field="id")
        self.finish(view)

    @web.authenticated
    @authorized
    async def delete(self, job_id: str) -> None:
        """Delete a finished job with its events and artifacts (cancel a running one first)."""
        await self.ext.orchestrator.delete(job_id, self.owner)
        self.set_status(204)
        self.finish()


class PruneHandler(_Base):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        """Delete your finished jobs older than `older_than` and/or after your `keep` newest ones
        (`jupyter-ext prune`); queued and running jobs are never deleted."""
        from .retention import parse_age, parse_keep

        data = self.body()
        if not isinstance(data, dict):
            raise ValidationError('the request body must be a JSON object such as {"older_than": "30d"}')
        unknown = sorted(set(data) - {"older_than", "keep", "dry_run"})
        if unknown:
            raise ValidationError(
                f"{unknown[0][:100]}: unknown field; send older_than and/or keep (and dry_run)", field=unknown[0][:100]
            )
        older_than = parse_age(data["older_than"]) if "older_than" in data else None
        keep = parse_keep(data["keep"]) if "keep" in data else None
        if older_than is None and keep is None:
            raise ValidationError("give older_than (e.g. '30d') and/or keep (a number of jobs)", field="older_than")
        dry_run = data.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise ValidationError("dry_run: true or false", field="dry_run")
        deleted = await self.ext.orchestrator.prune(self.owner, older_than=older_than, keep=keep, dry_run=dry_run)
        self.finish({"deleted": deleted, "dry_run": dry_run})


class UploadHandler(_Base):
    """`PUT uploads`: a file streamed to the server (e.g. a large `%%remote --in` value), answered
    with an id a job spec can name (`"upload:<id>"`). Uploads are per user and used once. A body
    over `c.JupyterExt.max_upload_bytes` is refused (413) from its Content-Length before it is
    read, or as soon as a chunked one passes the limit; an empty one is refused (400)."""

    def body_limit(self) -> tuple[int, str]:
        return self.ext.max_upload_bytes, "c.JupyterExt.max_upload_bytes"

    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()
        # The body streams in before put() runs, so authenticate and authorize here, first.
        if self.current_user is None:
            raise web.HTTPError(403)
        allowed = await ensure_async(self.authorizer.is_authorized(self, self.current_user, "write", AUTH_RESOURCE))
        if not allowed:
            raise web.HTTPError(403)
        # Our limit, not jupyter-server's max_body_size, decides (a chunked body is cut off there).
        connection = self.request.connection
        if isinstance(connection, HTTP1Connection):
            connection.set_max_body_size(self.body_limit()[0] + 1)
        self.upload_id = uuid.uuid4().hex
        self.upload_path = self.ext.orchestrator.upload_path(self.owner, self.upload_id)
        self.upload_size = 0

        def open_file() -> Any:
            self.upload_path.parent.mkdir(parents=True, exist_ok=True)
            return open(self.upload_path, "wb")  # noqa: SIM115 - closed in put() / on_connection_close()

        self.upload_file = await asyncio.to_thread(open_file)

    async def data_received(self, chunk: bytes) -> None:
        if self._over or not hasattr(self, "upload_file") or self.upload_file.closed:
            return
        self.upload_size += len(chunk)
        if self.upload_size > self.body_limit()[0]:
            self._over = True
            await asyncio.to_thread(self._discard)
            return
        await asyncio.to_thread(self.upload_file.write, chunk)

    def _discard(self) -> None:
        if not self.upload_file.closed:
            self.upload_file.close()
        self.upload_path.unlink(missing_ok=True)

    @web.authenticated
    @authorized
    async def put(self) -> None:
        """Store the body; answer its upload id and size."""
        if self._over:
            raise self.too_large(None)
        if self.upload_size == 0:
            await asyncio.to_thread(self._discard)
            raise ValidationError("the upload is empty; send the file's bytes as the request body")
        await asyncio.to_thread(self.upload_file.close)
        self.set_status(201)
        self.finish({"upload": self.upload_id, "size": self.upload_size})

    def on_connection_close(self) -> None:
        if hasattr(self, "upload_file") and not self.upload_file.closed:
            self._discard()


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
        limit = min(self.int_arg("limit", 5000, 1), 20000)  # more than 20000 reads as 20000
        job = await self.ext.store.get_job(job_id, self.owner)
        events = await self.ext.store.events(job_id, after, limit)
        last = events[-1]["seq"] if events else after
        done = job["status"] in TERMINAL and last >= job["last_seq"]
        self.finish({"events": events, "last_seq": job["last_seq"], "done": done})


class ArtifactsHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        """The job's artifacts: executed notebook, its HTML, cell images, files the steps wrote."""
        await self.ext.store.get_job(job_id, self.owner)
        artifacts = await self.ext.store.artifacts(job_id)
        self.finish({"artifacts": [artifact_view(a) for a in artifacts]})


class ArtifactHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self, job_id: str, name: str) -> None:
        """Download one artifact (`?inline=1` to display images in the page)."""
        if "/" in name or "\\" in name or name in (".", "..") or ".." in name.split("__") or "\x00" in name:
            raise ValidationError(f"name: {name!r} is not an artifact name; names have no '/' or '..'", field="name")
        await self.ext.store.get_job(job_id, self.owner)
        artifact = await self.ext.store.artifact(job_id, name)
        path = await asyncio.to_thread(self.ext.orchestrator.layout.artifact_file, job_id, artifact["path"])
        if path is None:
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
        await executed_html.ensure(self.ext.store, job_id, artifact)  # an HTML copy is made when first asked for
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
        spec = parse(PlanSpec, self.body())
        relative = spec.notebook
        orchestrator = self.ext.orchestrator
        backend_name, _ = orchestrator.backend_named(spec.backend)
        self.finish(await asyncio.to_thread(plan_view, orchestrator, relative, backend_name))


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
            if not 0 <= self.after <= MAX_INT:
                raise ValueError(raw)
        except NotFound as exc:
            raise web.HTTPError(404, str(exc)) from None
        except ValueError:
            raise web.HTTPError(400, f"after: must be a whole number from 0 to {MAX_INT}") from None
        self.job_id = job_id
        res = super().get(job_id)
        if res is not None:
            await res

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 405:
            self.set_header("Allow", "GET")  # RFC 9110: the one method of the stream
        super().write_error(status_code, **kwargs)

    def open(self, job_id: str) -> None:
        self.pump = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        """The job's events after `after`, the backlog then live (Orchestrator.follow), then close."""
        try:
            async with aclosing(self.ext.orchestrator.follow(self.job_id, self.after)) as batches:
                async for batch in batches:
                    for event in batch:
                        await self.write_message(json.dumps(event))
            self.close(1000, "job ended")
        except websocket.WebSocketClosedError:
            pass
        except Exception as exc:  # noqa: BLE001 - a stream that cannot go on says so and closes
            self.log.exception("jupyter-ext: the event stream of job %s failed", self.job_id)
            self.close(1011, cut(f"server error: {type(exc).__name__}", 100))

    def on_message(self, message: str | bytes) -> None:
        """Clients only listen; anything they send is ignored."""

    def on_close(self) -> None:
        if hasattr(self, "pump"):
            self.pump.cancel()


class NoRouteHandler(_Base):
    """Anything else under our prefix: our JSON 404 (authenticated like every route), not
    jupyter-server's HTML page. A job id outside the id pattern is answered as a job not found."""

    @web.authenticated
    @authorized
    async def get(self, path: str | None = None) -> None:
        path = path or ""
        job = re.fullmatch(r"jobs/([^/]+)(/.*)?", path)
        if job:
            raise NotFound(
                f"no job {shown(job.group(1), 80)}; job ids are 1 to 64 letters, digits, '_' or '-'", field="id"
            )
        raise NotFound(f"no route {shown('/' + path, 120)} under {API}; the API is described in openapi.yaml")

    post = put = delete = patch = get


class TagCheckHandler(_Base):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        """What a notebook's tags say, from the cells and metadata the Lab holds now (unsaved
        edits included): each cell's step, every tag problem naming the cell and the tag, the
        steps with their resources and edges; with `edit`, what saving the step editor's form
        would write and what is wrong with it. The Lab keeps no second copy of the grammar."""
        from .notebook.check import check_notebook

        self.finish(await asyncio.to_thread(check_notebook, self.body()))


_JOB = r"(?P<job_id>[A-Za-z0-9_-]{1,64})"

handlers: list[tuple[str, type]] = [
    (rf"{API}/info", InfoHandler),
    (rf"{API}/jobs", JobsHandler),
    (rf"{API}/plan", PlanHandler),
    (rf"{API}/tags/check", TagCheckHandler),
    (rf"{API}/uploads", UploadHandler),
    (rf"{API}/jobs/prune", PruneHandler),  # before jobs/{id}: no job id is 'prune'
    (rf"{API}/jobs/{_JOB}", JobHandler),
    (rf"{API}/jobs/{_JOB}/cancel", CancelHandler),
    (rf"{API}/jobs/{_JOB}/events", EventsHandler),
    (rf"{API}/jobs/{_JOB}/events/stream", EventStreamHandler),
    (rf"{API}/jobs/{_JOB}/artifacts", ArtifactsHandler),
    (rf"{API}/jobs/{_JOB}/artifacts/(?P<name>.+)", ArtifactHandler),
    (rf"{API}(?:/(?P<path>.*))?", NoRouteHandler),  # last: what no route above takes
]
