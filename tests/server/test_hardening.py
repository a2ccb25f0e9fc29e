"""Hostile inputs against a real jupyter-server (issue 12): every one is a 4xx naming what to change,
none is a 5xx, and none makes the job list unreadable afterwards."""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from tests.conftest import check_response

pytestmark = pytest.mark.slow

LIMIT = 1024 * 1024  # this module's c.JupyterExt.max_request_bytes
UPLOAD_LIMIT = 2 * 1024 * 1024  # and max_upload_bytes


@pytest.fixture
def jp_server_config(data_dir: Path) -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_ext": True}},
        "JupyterExt": {"data_dir": str(data_dir), "max_request_bytes": LIMIT, "max_upload_bytes": UPLOAD_LIMIT},
        "LocalBackend": {"cancel_grace": 2.0},
    }


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def ext_of(jp_serverapp: Any) -> Any:
    return jp_serverapp.web_app.settings["jupyter_ext"]


# (what is sent, where, status, the field the error names, words of its message)
HOSTILE: list[tuple[str, str, Any, int, str | None, str]] = [
    ("POST", "jobs", {"notebook": "quick.ipynb", "parameters": {"x": nested(400)}}, 400, "parameters.x", "32 levels"),
    ("POST", "jobs", {"notebook": "quick.ipynb", "parameters": {"x": nested(40)}}, 400, "parameters.x", "32 levels"),
    ("POST", "jobs", {"notebook": "a" * 300 + ".ipynb"}, 400, "notebook", "longer than 255 bytes"),
    ("POST", "plan", {"notebook": "a" * 300 + ".ipynb"}, 400, "notebook", "longer than 255 bytes"),
    ("POST", "jobs", {"notebook": "d/" * 600 + "a.ipynb"}, 400, "notebook", "at most 1024"),
    ("POST", "jobs", {"cell": {"source": "1", "workdir": "w" * 300}}, 400, "cell.workdir", "longer than 255"),
    ("POST", "plan", {"notebook": "a\x00.ipynb"}, 400, "notebook", "NUL"),
    ("POST", "jobs", {"notebook": "a\x00.ipynb"}, 400, "notebook", "NUL"),
    ("POST", "jobs", {"notebook": "quick.ipynb", "parameters": {"class": 1}}, 400, "parameters.class", "keyword"),
    ("POST", "jobs", {"cell": {"source": "1"}, "parameters": {"class": 1}}, 400, "parameters.class", "keyword"),
    ("POST", "jobs", {"notebook": "quick.ipynb", "parameters": {"1x": 1}}, 400, "parameters.1x", "identifier"),
    ("POST", "jobs", {"cell": {"source": "1", "outputs": ["def"]}}, 400, "cell.outputs", "keyword"),
    ("POST", "jobs", {"notebook": "quick.ipynb", "resources": {"gpus": 1}}, 400, "resources.gpus", "cpu, extra_"),
    ("POST", "plan", {"notebook": "quick.ipynb", "backend": []}, 400, "backend", "valid string"),
    ("POST", "plan", {"notebook": "quick.ipynb", "backend": {"a": 1}}, 400, "backend", "valid string"),
    ("POST", "jobs", {"cell": {"sorce": "1"}}, 400, "cell.source", "cell.sorce: unknown field"),
    ("POST", "jobs", {"notebook": "quick.ipynb", "parameters": {"x": [0] * 150_000}}, 400, "parameters.x", "100,000"),
    (
        "POST",
        "jobs",
        {"notebook": "quick.ipynb", "parameters": {"x": "y" * 700_000, "z": "y" * 320_000}},
        400,
        "parameters.z",
        "1,000,000 bytes",
    ),  # fmt: skip
    ("POST", "jobs", "[" * 100_000, 400, None, "nested too deeply"),
    ("POST", "plan", "[" * 100_000, 400, None, "nested too deeply"),
    ("GET", "jobs?limit=" + str(2**63), None, 400, "limit", "at most"),
    ("GET", "jobs?limit=" + "9" * 5000, None, 400, "limit", "is not a whole number"),
]


async def _send(api: Any, method: str, route: str, body: Any) -> tuple[int, bytes, Any]:
    path, _, query = route.partition("?")
    kwargs: dict[str, Any] = {"method": method}
    if query:
        kwargs["params"] = dict(p.split("=", 1) for p in query.split("&"))
    if body is not None:
        kwargs["body"] = body if isinstance(body, str) else json.dumps(body)
    try:
        resp = await api.fetch("jupyter-ext", "api", *path.split("/"), **kwargs)
    except HTTPClientError as exc:
        assert exc.response is not None, f"{method} {route[:80]}: no response ({exc})"
        resp = exc.response
    return resp.code, resp.body, resp.headers


async def test_every_hostile_input_is_a_4xx_then_the_list_reads(
    api: Any, jp_serverapp: Any, notebooks: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (notebooks / "loop.ipynb").symlink_to("loop.ipynb")  # resolve() raised RuntimeError: a 500
    (notebooks / "loopdir").symlink_to("loopdir")
    hostile = [
        *HOSTILE,
        ("POST", "jobs", {"notebook": "loop.ipynb"}, 400, "notebook", "a symlink loop"),
        ("POST", "plan", {"notebook": "loop.ipynb"}, 400, "notebook", "a symlink loop"),
        ("POST", "jobs", {"cell": {"source": "1", "workdir": "loopdir"}}, 400, "cell.workdir", "a symlink loop"),
    ]
    before = await api.submit("quick.ipynb")
    await api.wait(before["id"])
    answers = []
    for method, route, body, status, field, words in hostile:
        code, raw, _ = await _send(api, method, route, body)
        answers.append((route[:40], code))
        assert code == status, f"{method} {route[:60]} {str(body)[:80]} -> {code}: {raw[:300]!r}"
        error = json.loads(raw)
        assert isinstance(error["reason"], str) and words in error["message"], error
        assert error.get("field") == field, error
        assert len(raw) < 4000, f"{route}: the error echoes the value ({len(raw)} bytes)"
    # The WebSocket with an after no seq can reach is refused before the upgrade.
    with pytest.raises(HTTPClientError) as info:
        await api.ws_fetch("jupyter-ext", "api", "jobs", before["id"], "events", "stream", params={"after": str(2**63)})
    assert info.value.code == 400
    code, raw, _ = await _send(api, "GET", f"jobs/{before['id']}/events?after={2**63}", None)
    assert code == 400 and json.loads(raw)["field"] == "after"
    after = await api.submit("quick.ipynb", parameters={"x": nested(30)})
    await api.wait(after["id"])
    listed = await api.call("GET", "jobs")
    check_response("/jobs", "GET", 200, listed)
    assert [j["id"] for j in listed["jobs"]] == [after["id"], before["id"]], "nothing refused was stored"
    for job in (before, after):
        check_response("/jobs/{job_id}", "GET", 200, await api.call("GET", "jobs", job["id"]))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "no server error on the way"


async def test_a_stored_row_the_api_cannot_serialize_is_shown_repaired_and_kept(
    api: Any, jp_serverapp: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A job stored before the edge refused deep parameters (the POST answered 500 and from then on
    GET jobs and GET jobs/{id} did too): both answer 200, the row is kept, a log line says so."""
    good = await api.submit("quick.ipynb")
    await api.wait(good["id"])
    store = ext_of(jp_serverapp).store
    record = {
        "id": "deepparams01",
        "user": good["user"],
        "name": "deep",
        "notebook": "quick.ipynb",
        "backend": "local",
        "status": "failed",
        "parameters": {"x": nested(450), "y": 2},
        "spec": {},
        "created": time.time(),
    }
    await store.create_job(record, [{"name": "main", "spec": {"name": "main"}, "status": "failed"}])
    with caplog.at_level(logging.WARNING):
        listed = await api.call("GET", "jobs")
    check_response("/jobs", "GET", 200, listed)
    assert [j["id"] for j in listed["jobs"]] == ["deepparams01", good["id"]]
    shown = await api.call("GET", "jobs", "deepparams01")
    check_response("/jobs/{job_id}", "GET", 200, shown)
    assert shown["parameters"]["y"] == 2 and shown["parameters"]["x"].startswith("<not shown: it is nested more")
    assert "job deepparams01 cannot be shown as stored" in caplog.text
    kept = await store.get_job("deepparams01")
    assert kept["parameters"]["y"] == 2, "the stored row is untouched"
    await api.call("DELETE", "jobs", "deepparams01", expect=204)


async def test_a_stream_that_fails_closes_with_a_reason(api: Any, jp_serverapp: Any, monkeypatch: Any) -> None:
    job = await api.submit("quick.ipynb")
    await api.wait(job["id"])
    store = ext_of(jp_serverapp).store

    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store, "events", broken)
    ws = await api.ws_fetch("jupyter-ext", "api", "jobs", job["id"], "events", "stream")
    async with asyncio.timeout(60):
        assert await ws.read_message() is None
    assert ws.close_code == 1011 and ws.close_reason == "server error: RuntimeError"


async def test_bodies_over_the_limit_are_refused_before_they_are_read(
    api: Any, jp_http_port: int, jp_base_url: str, data_dir: Path
) -> None:
    big = json.dumps({"notebook": "quick.ipynb", "name": "n" * LIMIT})
    for route in ("jobs", "plan"):
        error = await api.call("POST", route, body=big, expect=413)
        check_response(f"/{route}", "POST", 413, error)
        assert f"at most {LIMIT:,} bytes" in error["message"] and "max_request_bytes" in error["message"]

    # A chunked body (no Content-Length) stops being kept once over the limit, and is refused too.
    async def producer(write: Any) -> None:
        await write(b'{"notebook": "quick.ipynb", "name": "')
        for _ in range(40):
            await write(b"n" * 65536)
        await write(b'"}')

    code, raw, _ = await _send_chunked(api, jp_http_port, jp_base_url, "jobs", producer)
    assert code == 413, raw
    # Strangers learn nothing, not even the limit.
    client = AsyncHTTPClient()
    with pytest.raises(HTTPClientError) as info:
        await client.fetch(f"http://localhost:{jp_http_port}{jp_base_url}jupyter-ext/api/jobs", method="POST", body=big)
    assert info.value.code == 403
    # Uploads have their own limit; an empty one is refused; nothing is left behind.
    headers = {"Content-Type": "application/octet-stream"}
    up = await api.call("PUT", "uploads", body=b"x" * (UPLOAD_LIMIT - 10), headers=headers, expect=201)
    assert up["size"] == UPLOAD_LIMIT - 10, "uploads are not held to the JSON limit"
    error = await api.call("PUT", "uploads", body=b"x" * (UPLOAD_LIMIT + 1), headers=headers, expect=413)
    check_response("/uploads", "PUT", 413, error)
    assert "max_upload_bytes" in error["message"]
    error = await api.call("PUT", "uploads", body=b"", headers=headers, expect=400, allow_nonstandard_methods=True)
    check_response("/uploads", "PUT", 400, error)
    assert "the upload is empty" in error["message"]
    files = sorted(p.stat().st_size for p in (data_dir / "uploads").rglob("*") if p.is_file())
    assert files == [UPLOAD_LIMIT - 10], "the refused uploads left no file"


async def _send_chunked(api: Any, port: int, base: str, route: str, producer: Any) -> tuple[int, bytes, Any]:
    from tornado.httpclient import HTTPRequest

    client = AsyncHTTPClient()
    auth = await _auth_header(api)
    request = HTTPRequest(
        f"http://localhost:{port}{base}jupyter-ext/api/{route}",
        method="POST",
        body_producer=producer,
        headers={"Authorization": auth, "Content-Type": "application/json"},
    )
    try:
        resp = await client.fetch(request)
    except HTTPClientError as exc:
        assert exc.response is not None
        resp = exc.response
    return resp.code, resp.body, resp.headers


async def _auth_header(api: Any) -> str:
    """The token header pytest-jupyter's jp_fetch sends (read back from a request it makes)."""
    resp = await api.fetch("jupyter-ext", "api", "info", method="GET")
    return str(resp.request.headers["Authorization"])


async def test_every_error_under_our_prefix_is_our_json(api: Any, jp_http_port: int, jp_base_url: str) -> None:
    for parts in (("jobs", "a.b"), ("jobs", "x" * 65), ("jobs", "a.b", "events"), ("nothing", "here"), ()):
        code, raw, headers = await _send(api, "GET", "/".join(parts), None)
        assert code == 404 and headers["Content-Type"].startswith("application/json"), raw[:200]
        error = json.loads(raw)
        check_response("/jobs/{job_id}", "GET", 404, error)
        assert ("no job" if parts[:1] == ("jobs",) else "no route") in error["message"]
    code, raw, headers = await _send(api, "DELETE", "info", None)
    assert code == 405 and headers["Allow"] == "GET" and json.loads(raw)["reason"] == "Method Not Allowed"
    code, raw, headers = await _send(api, "POST", "jobs/abc/events", "{}")
    assert code == 405 and headers["Allow"] == "GET"
    # Without credentials: jupyter-server's 403, in our Error shape (a string reason, not null).
    client = AsyncHTTPClient()
    for route in ("jobs", "jobs/a.b", "nothing"):
        with pytest.raises(HTTPClientError) as info:
            await client.fetch(f"http://localhost:{jp_http_port}{jp_base_url}jupyter-ext/api/{route}")
        assert info.value.code == 403 and info.value.response is not None
        error = json.loads(info.value.response.body)
        check_response("/jobs", "GET", 403, error)
        assert error["reason"] == "Forbidden"


def _peak_rss_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no VmHWM")


def test_a_100_mb_body_does_not_grow_the_server() -> None:
    """A 100 MB POST is refused with 413 from its Content-Length: the server's peak memory stays
    where it was (before: 97 -> 498 MB while tornado buffered and json parsed it)."""
    import requests

    from tests.server.realserver import TOKEN, Server

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "root").mkdir()
        (base / "home").mkdir()
        server = Server(base / "root", base / "data", base / "home")
        server.start()
        try:
            assert server.proc is not None
            before = _peak_rss_mb(server.proc.pid)
            body = b'{"notebook": "a.ipynb", "name": "' + b"n" * (100 * 1024 * 1024) + b'"}'
            try:
                resp = requests.post(
                    f"{server.url}/jobs",
                    data=body,
                    headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"},
                    timeout=120,
                )
                status: Any = resp.status_code
            except requests.ConnectionError as exc:  # the server may close before the body is sent
                status = exc
            after = _peak_rss_mb(server.proc.pid)
            print(f"server peak RSS {before} MB -> {after} MB around a 100 MB POST ({status})")
            assert status == 413 or isinstance(status, requests.ConnectionError)
            assert after - before < 50, f"the server grew {after - before} MB"
            assert server.get("jobs").status_code == 200
        finally:
            server.stop()
