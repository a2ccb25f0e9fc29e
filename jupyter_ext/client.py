"""`ServerSession`: the `Session` (session.py) of a running jupyter-ext server, over its REST API
and WebSocket stream (used by the CLI and the magic).

Finds a running server by itself: `JUPYTER_EXT_SERVER_URL` (+ `JUPYTER_EXT_TOKEN`), else
the servers `jupyter server list` knows, keeping the first that answers our `info` route.
tornado's HTTP client is imported only once there is a server to ask (`jupyter-ext ls` without
one imports none).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from .contract import TERMINAL
from .errors import BackendError, Conflict, Forbidden, JupyterExtError, NotFound, ValidationError

_BY_STATUS: dict[int, type[JupyterExtError]] = {400: ValidationError, 403: Forbidden, 404: NotFound, 409: Conflict}


class ServerSession:
    """Talks to one jupyter-ext server (url ends with '/'; token from the server list or env).
    `info()` (which `find_server` calls) learns whose jobs it sees (`user`)."""

    def __init__(self, url: str, token: str = "", root_dir: str | Path | None = None) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.token = token
        self.root_dir = Path(root_dir) if root_dir else None
        self.user = ""
        from tornado.httpclient import AsyncHTTPClient

        self.http = AsyncHTTPClient()

    def api(self, path: str, **query: Any) -> str:
        q = {k: v for k, v in query.items() if v is not None}
        return f"{self.url}jupyter-ext/api/{path}" + (f"?{urlencode(q)}" if q else "")

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"} if self.token else {}

    async def request(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        from tornado.httpclient import HTTPClientError, HTTPRequest

        req = HTTPRequest(
            self.api(path, **query),
            method=method,
            headers={**self._headers(), "Content-Type": "application/json"},
            body=json.dumps(body) if body is not None else (b"" if method in ("POST", "PUT") else None),
            request_timeout=120,
        )
        try:
            resp = await self.http.fetch(req)
        except HTTPClientError as exc:
            message = str(exc)
            if exc.response is not None and exc.response.body:
                try:
                    message = json.loads(exc.response.body).get("message", message)
                except ValueError:
                    pass
            raise _BY_STATUS.get(exc.code, BackendError)(message) from None
        return json.loads(resp.body) if resp.body else None

    async def info(self) -> dict[str, Any]:
        info: dict[str, Any] = await self.request("GET", "info")
        self.user = str(info.get("user") or "")
        return info

    async def start(self, backend: str | None = None) -> None:
        """Nothing to start: the server runs the jobs."""

    async def close(self) -> None:
        """Nothing to close: the HTTP client is shared by the event loop (tornado's AsyncHTTPClient)."""

    async def upload(self, data: bytes) -> str:
        """Send a file to the server (streamed there to disk); returns its upload id."""
        from tornado.httpclient import HTTPClientError, HTTPRequest

        req = HTTPRequest(
            self.api("uploads"),
            method="PUT",
            headers={**self._headers(), "Content-Type": "application/octet-stream"},
            body=data,
            request_timeout=3600,
        )
        try:
            resp = await self.http.fetch(req)
        except HTTPClientError as exc:
            raise _BY_STATUS.get(exc.code, BackendError)(f"upload failed: {exc}") from None
        return str(json.loads(resp.body)["upload"])

    async def plan(self, notebook: str, backend: str | None = None) -> dict[str, Any]:
        """How the server would run a notebook (steps, parameters, warnings, error); stores nothing."""
        return await self.request("POST", "plan", {"notebook": notebook, **({"backend": backend} if backend else {})})

    async def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        return await self.request("POST", "jobs", spec)

    async def jobs(self, parent: str | None = None) -> list[dict[str, Any]]:
        return (await self.request("GET", "jobs", parent=parent))["jobs"]

    async def job(self, job_id: str) -> dict[str, Any]:
        return await self.request("GET", f"jobs/{quote(job_id)}")

    async def cancel(self, job_id: str) -> dict[str, Any]:
        return await self.request("POST", f"jobs/{quote(job_id)}/cancel")

    async def delete(self, job_id: str) -> None:
        await self.request("DELETE", f"jobs/{quote(job_id)}")

    async def prune(self, older_than: str | None, keep: int | None, dry_run: bool = False) -> list[str]:
        # Only what was asked: the API refuses a null `older_than` / `keep` (they are optional, not nullable).
        body: dict[str, Any] = {"dry_run": dry_run}
        if older_than is not None:
            body["older_than"] = older_than
        if keep is not None:
            body["keep"] = keep
        return list((await self.request("POST", "jobs/prune", body))["deleted"])

    async def artifacts(self, job_id: str) -> list[dict[str, Any]]:
        return (await self.request("GET", f"jobs/{quote(job_id)}/artifacts"))["artifacts"]

    async def download(
        self, job_id: str, name: str, target: Path, progress: Callable[[int], Any] | None = None
    ) -> None:
        from tornado.httpclient import HTTPClientError, HTTPRequest

        out = await asyncio.to_thread(open, target, "wb")
        try:

            def on_chunk(chunk: bytes) -> None:
                out.write(chunk)
                if progress is not None:
                    progress(len(chunk))

            req = HTTPRequest(
                self.api(f"jobs/{quote(job_id)}/artifacts/{quote(name, safe='')}"),
                headers=self._headers(),
                streaming_callback=on_chunk,
                request_timeout=3600,
            )
            try:
                await self.http.fetch(req)
            except HTTPClientError as exc:
                raise _BY_STATUS.get(exc.code, BackendError)(f"downloading {name!r}: {exc}") from None
        finally:
            out.close()

    async def events(self, job_id: str, after: int = 0) -> AsyncIterator[dict[str, Any]]:
        """Every event after `after`, live, until job.end; reconnects (resuming) if dropped."""
        from tornado.httpclient import HTTPClientError, HTTPRequest
        from tornado.websocket import WebSocketClosedError, websocket_connect

        retries = 0
        while True:
            ws_url = self.api(f"jobs/{quote(job_id)}/events/stream", after=after).replace("http", "ws", 1)
            try:
                conn = await websocket_connect(HTTPRequest(ws_url, headers=self._headers()))
            except HTTPClientError as exc:
                raise _BY_STATUS.get(exc.code, BackendError)(f"event stream of job {job_id!r}: {exc}") from None
            except OSError as exc:
                retries += 1
                if retries > 5:
                    raise BackendError(f"lost the server while following job {job_id!r}: {exc}") from None
                continue
            try:
                while True:
                    message = await conn.read_message()
                    if message is None:
                        break
                    event = json.loads(message)
                    if event["seq"] <= after:
                        continue
                    after = event["seq"]
                    retries = 0
                    yield event
                    if event["type"] == "job.end":
                        return
            except WebSocketClosedError:
                pass
            finally:
                conn.close()
            job = await self.job(job_id)
            if job["status"] in TERMINAL and job["last_seq"] <= after:
                return

    async def schedules(self) -> list[dict[str, Any]]:
        return list((await self.request("GET", "schedules"))["schedules"])

    async def schedule(self, schedule_id: str) -> dict[str, Any]:
        return await self.request("GET", f"schedules/{quote(schedule_id, safe='')}")

    async def create_schedule(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.request("POST", "schedules", body)

    async def update_schedule(self, schedule_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.request("PATCH", f"schedules/{quote(schedule_id, safe='')}", body)

    async def delete_schedule(self, schedule_id: str) -> None:
        await self.request("DELETE", f"schedules/{quote(schedule_id, safe='')}")

    async def history(self, job_id: str, after: int = 0) -> list[dict[str, Any]]:
        """The events with seq > after stored so far, read page by page."""
        events: list[dict[str, Any]] = []
        while True:
            page = await self.request("GET", f"jobs/{quote(job_id)}/events", after=after, limit=20000)
            events.extend(page["events"])
            if not page["events"] or page["done"]:
                return events
            after = page["events"][-1]["seq"]


def running_servers() -> list[dict[str, Any]]:
    """What `jupyter server list` knows: the runtime dir's jpserver-*.json of live processes (read as
    jupyter_server's list_running_servers reads them, without importing the server: 1.3 s)."""
    from jupyter_core.paths import jupyter_runtime_dir

    found = []
    for path in sorted(Path(jupyter_runtime_dir()).glob("jpserver-*.json")):
        try:
            info = json.loads(path.read_text())
            pid = int(info["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        except PermissionError:
            pass  # alive, someone else's
        found.append(info)
    return found


async def find_server(search: bool = True) -> ServerSession | None:
    """The jupyter-ext server to talk to: the one `JUPYTER_EXT_SERVER_URL` names (a server sets it
    for its kernels), else (with `search`) the first of `running_servers()` that answers; None
    when there is none."""
    url = os.environ.get("JUPYTER_EXT_SERVER_URL")
    if url:
        client = ServerSession(url, os.environ.get("JUPYTER_EXT_TOKEN", ""), os.environ.get("JUPYTER_EXT_ROOT_DIR"))
        await client.info()  # fail loudly: the user asked for this server
        return client
    if not search:
        return None
    for server in running_servers():
        client = ServerSession(server["url"], server.get("token", ""), server.get("root_dir"))
        try:
            await client.info()
        except (JupyterExtError, OSError):
            continue
        return client
    return None
