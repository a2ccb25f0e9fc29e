"""A real jupyter-server with jupyter-ext loaded, its root holding the test notebooks."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError


@pytest.fixture
def jp_root_dir(notebooks: Path) -> Path:
    return notebooks


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def jp_server_config(data_dir: Path) -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_ext": True}},
        "JupyterExt": {"data_dir": str(data_dir)},
        "LocalBackend": {"cancel_grace": 2.0, "gpus": ["fake-gpu-0", "fake-gpu-1"]},
    }


class Api:
    """Thin helpers over pytest-jupyter's jp_fetch / jp_ws_fetch for our routes."""

    def __init__(self, fetch: Any, ws_fetch: Any) -> None:
        self.fetch = fetch
        self.ws_fetch = ws_fetch

    async def call(self, method: str, *parts: str, body: Any = None, expect: int = 200, **kw: Any) -> Any:
        kwargs: dict[str, Any] = {"method": method, **kw}
        if body is not None:
            kwargs["body"] = body if isinstance(body, (str, bytes)) else json.dumps(body)
        elif method in ("POST", "PUT"):
            kwargs["body"] = b"{}"
        try:
            resp = await self.fetch("jupyter-ext", "api", *parts, **kwargs)
        except HTTPClientError as exc:
            assert exc.code == expect, f"{method} {parts} -> {exc.code}: {exc.response.body if exc.response else ''}"
            return json.loads(exc.response.body) if exc.response is not None and exc.response.body else None
        assert resp.code == expect, f"{method} {parts} -> {resp.code}: {resp.body!r}"
        ctype = resp.headers.get("Content-Type", "")
        if "json" in ctype and resp.body:
            return json.loads(resp.body)
        return resp

    async def submit(self, notebook: str, expect: int = 201, **spec: Any) -> dict[str, Any]:
        return await self.call("POST", "jobs", body={"notebook": notebook, **spec}, expect=expect)

    async def stream(
        self, job_id: str, after: int = 0, until: str = "job.end", timeout: float = 90
    ) -> list[dict[str, Any]]:
        """Events from the WebSocket until an event of type `until` (inclusive)."""
        ws = await self.ws_fetch("jupyter-ext", "api", "jobs", job_id, "events", "stream", params={"after": after})
        events: list[dict[str, Any]] = []
        try:
            async with asyncio.timeout(timeout):
                while True:
                    message = await ws.read_message()
                    if message is None:
                        break
                    event = json.loads(message)
                    events.append(event)
                    if event["type"] == until:
                        break
        finally:
            ws.close()
        return events

    async def wait(self, job_id: str, timeout: float = 90) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                job = await self.call("GET", "jobs", job_id)
                if job["status"] in ("succeeded", "failed", "cancelled"):
                    return job
                await asyncio.sleep(0.1)


@pytest.fixture
def api(jp_fetch: Any, jp_ws_fetch: Any, jp_serverapp: Any, jp_asyncio_loop: Any) -> Api:
    # pytest-jupyter builds the server without running the extensions' start hooks; the real
    # `jupyter server` runs them (that is where the orchestrator reconciles), so run them here too.
    jp_asyncio_loop.run_until_complete(jp_serverapp.extension_manager.start_extension("jupyter_ext"))
    return Api(jp_fetch, jp_ws_fetch)
