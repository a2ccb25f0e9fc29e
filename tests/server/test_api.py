"""The REST + WebSocket API against a real jupyter-server, real kernels and papermill."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from jupyter_ext.models import Event
from tests.conftest import check_response
from tests.harness import process_alive

pytestmark = pytest.mark.slow


async def test_info(api: Any) -> None:
    info = await api.call("GET", "info")
    check_response("/info", "GET", 200, info)
    assert info["backends"] == ["local"] and info["default_backend"] == "local"
    assert info["capacity"]["local"]["gpus"] == 2


async def test_job_streams_every_cell_in_order(api: Any) -> None:
    job = await api.submit("quick.ipynb", parameters={"x": 2})
    check_response("/jobs", "POST", 201, job)
    assert job["status"] in ("queued", "running") and [s["name"] for s in job["steps"]] == ["main"]

    events = await api.stream(job["id"])
    for e in events:
        check_response("/jobs/{job_id}/events", "GET", 200, {"events": [e], "last_seq": 0, "done": False})
        Event.model_validate(e)
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), "seq must be gap-free and ordered"
    types = [e["type"] for e in events]
    assert types[0] == "job.queued" and types[-1] == "job.end"
    assert events[-1]["status"] == "succeeded"

    # Every code cell of the user's notebook (indices 0, 1, 3; 2 is markdown) starts and ends, in order.
    starts = [e["cell_index"] for e in events if e["type"] == "cell.start" and not e.get("injected")]
    ends = [e["cell_index"] for e in events if e["type"] == "cell.end" and not e.get("injected")]
    assert starts == [0, 1, 3] and ends == [0, 1, 3]
    outputs = {(e["cell_index"], json.dumps(e["output"], sort_keys=True)) for e in events if e["type"] == "cell.output"}
    texts = [e["output"] for e in events if e["type"] == "cell.output"]
    assert {"output_type": "stream", "name": "stdout", "text": "first 2\n"} in texts
    assert {"output_type": "stream", "name": "stderr", "text": "to stderr\n"} in texts
    results = [o for o in texts if o["output_type"] == "execute_result"]
    assert results and results[0]["data"]["text/plain"] == "43"
    assert all(idx == 3 for idx, _ in outputs if _.find("execute_result") >= 0)

    final = await api.call("GET", "jobs", job["id"])
    check_response("/jobs/{job_id}", "GET", 200, final)
    assert final["status"] == "succeeded" and final["steps"][0]["status"] == "succeeded"
    assert final["last_seq"] == seqs[-1] and final["started"] and final["finished"]


async def test_reconnect_after_seq_yields_exactly_the_missed_events(api: Any) -> None:
    job = await api.submit("slow.ipynb", parameters={"ticks": 6, "delay": 0.2})
    first = await api.stream(job["id"], until="cell.output")
    last_seen = first[-1]["seq"]
    rest = await api.stream(job["id"], after=last_seen)
    combined = first + rest
    assert [e["seq"] for e in combined] == list(range(1, combined[-1]["seq"] + 1))
    stored = await api.call("GET", "jobs", job["id"], "events", params={"after": 0})
    check_response("/jobs/{job_id}/events", "GET", 200, stored)
    assert stored["events"] == combined and stored["done"] is True
    partial = await api.call("GET", "jobs", job["id"], "events", params={"after": last_seen, "limit": 3})
    assert [e["seq"] for e in partial["events"]] == [last_seen + 1, last_seen + 2, last_seen + 3]
    assert partial["done"] is False
    assert await api.stream(job["id"], after=combined[-1]["seq"], timeout=10) == [], "resumed past the end: closed"
    ticks = [e["output"]["text"] for e in combined if e["type"] == "cell.output"]
    assert "".join(ticks) == "".join(f"tick {i}\n" for i in range(6)) + "done\n"


async def test_idempotency_key_returns_the_same_job(api: Any) -> None:
    first = await api.submit("quick.ipynb", idempotency_key="abc-1")
    again = await api.call(
        "POST", "jobs", body={"notebook": "quick.ipynb"}, headers={"Idempotency-Key": "abc-1"}, expect=200
    )
    check_response("/jobs", "POST", 200, again)
    assert again["id"] == first["id"]
    other = await api.submit("quick.ipynb", idempotency_key="abc-2")
    assert other["id"] != first["id"]
    jobs = await api.call("GET", "jobs")
    check_response("/jobs", "GET", 200, jobs)
    assert sorted(j["id"] for j in jobs["jobs"]) == sorted([first["id"], other["id"]])
    for j in (first, other):
        await api.wait(j["id"])


async def test_failing_cell_names_cell_and_exception(api: Any) -> None:
    job = await api.submit("fails.ipynb")
    events = await api.stream(job["id"])
    end = events[-1]
    assert end["type"] == "job.end" and end["status"] == "failed"
    assert end["error"]["cell_index"] == 1 and end["error"]["ename"] == "ValueError"
    # cell_index is 0-based (nbformat); the message uses Lab's numbering (1-based, all cells).
    assert "cell 2 raised ValueError: bad value in cell one" in end["error"]["message"]
    assert not [e for e in events if e["type"] == "cell.start" and e.get("cell_index") == 2], "stops at the failure"
    job = await api.call("GET", "jobs", job["id"])
    assert job["status"] == "failed" and job["steps"][0]["exit_code"] == 1
    # The executed notebook is still kept, with the traceback in it.
    names = {a["name"] for a in (await api.call("GET", "jobs", job["id"], "artifacts"))["artifacts"]}
    assert {"executed.ipynb", "executed.html"} <= names


async def test_artifacts_list_download_and_images(api: Any) -> None:
    job = await api.submit("plot.ipynb")
    events = await api.stream(job["id"])
    assert events[-1]["status"] == "succeeded", events[-1]
    image_events = [e for e in events if e["type"] == "cell.output" and e.get("artifact")]
    assert image_events and image_events[0]["output"]["data"]["image/png"], "images ride the event stream"
    listing = await api.call("GET", "jobs", job["id"], "artifacts")
    check_response("/jobs/{job_id}/artifacts", "GET", 200, listing)
    by_name = {a["name"]: a for a in listing["artifacts"]}
    assert {"executed.ipynb", "executed.html", "curve.png", image_events[0]["artifact"]} <= set(by_name)
    resp = await api.call("GET", "jobs", job["id"], "artifacts", "curve.png")
    assert resp.body[:8] == b"\x89PNG\r\n\x1a\n" and len(resp.body) == by_name["curve.png"]["size"]
    assert resp.headers["Content-Type"] == "image/png"
    assert "attachment" in resp.headers["Content-Disposition"]
    assert "sandbox" in resp.headers["Content-Security-Policy"]
    inline = await api.call("GET", "jobs", job["id"], "artifacts", "curve.png", params={"inline": "1"})
    assert inline.headers["Content-Disposition"].startswith("inline")
    html = await api.call("GET", "jobs", job["id"], "artifacts", "executed.html", params={"inline": "1"})
    assert html.headers["Content-Disposition"].startswith("attachment"), "HTML is never shown inline"
    executed = await api.call("GET", "jobs", job["id"], "artifacts", "executed.ipynb")
    assert executed["cells"][1]["outputs"][0]["data"]["text/html"]


async def test_cancel_stops_the_process(api: Any, data_dir: Path) -> None:
    job = await api.submit("slow.ipynb", parameters={"ticks": 400, "delay": 0.1})
    await api.stream(job["id"], until="cell.output")
    running = await api.call("GET", "jobs", job["id"])
    assert running["status"] == "running"
    pid = json.loads(
        (data_dir / "jobs" / job["id"] / "steps" / "main" / "attempt-1" / "events.jsonl").read_text().splitlines()[0]
    )["pid"]
    cancelled = await api.call("POST", "jobs", job["id"], "cancel")
    check_response("/jobs/{job_id}/cancel", "POST", 200, cancelled)
    final = await api.wait(job["id"])
    assert final["status"] == "cancelled" and final["steps"][0]["status"] == "cancelled"
    deadline = time.time() + 10
    while time.time() < deadline and process_alive(pid):  # noqa: ASYNC110 - not our child; nothing to await
        await asyncio.sleep(0.1)
    assert not process_alive(pid), "the runner process must be gone"
    kernel_pid = int((data_dir / "jobs" / job["id"] / "steps" / "main" / "attempt-1" / "kernel.pid").read_text())
    while time.time() < deadline and process_alive(kernel_pid):  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    assert not process_alive(kernel_pid), "the kernel must be gone too"
    events = (await api.call("GET", "jobs", job["id"], "events"))["events"]
    assert events[-1]["type"] == "job.end" and events[-1]["status"] == "cancelled"
    again = await api.call("POST", "jobs", job["id"], "cancel")
    assert again["status"] == "cancelled", "cancelling a finished job changes nothing"


async def test_delete(api: Any, data_dir: Path) -> None:
    job = await api.submit("slow.ipynb", parameters={"ticks": 100, "delay": 0.1})
    body = await api.call("DELETE", "jobs", job["id"], expect=409)
    assert "cancel it first" in body["message"]
    await api.call("POST", "jobs", job["id"], "cancel")
    await api.wait(job["id"])
    await api.call("DELETE", "jobs", job["id"], expect=204)
    await api.call("GET", "jobs", job["id"], expect=404)
    assert not (data_dir / "jobs" / job["id"]).exists()


BAD_SUBMISSIONS = [
    ({"notebook": "missing.ipynb"}, 404, "does not exist"),
    ({"notebook": "../../etc/passwd.ipynb"}, 400, "leaves the server root"),
    ({"notebook": "/etc/passwd.ipynb"}, 400, "absolute"),
    ({"notebook": "escape.ipynb"}, 400, "outside the server root"),
    ({"notebook": "notes.txt"}, 400, "ending in .ipynb"),
    ({"notebook": "quick.ipynb", "backend": "slurm"}, 400, "backend: 'slurm' is not configured"),
    ({"notebook": "quick.ipynb", "resources": {"gpu": -1}}, 400, "resources.gpu"),
    ({"notebook": "quick.ipynb", "resources": {"gpu": 3}}, 400, "asks for 3 GPUs but the local backend has 2"),
    (
        {"notebook": "quick.ipynb", "resources": {"memory": "lots"}},
        400,
        "resources.memory: 'lots' is not a Kubernetes quantity",
    ),
    ({"notebook": "quick.ipynb", "parameters": {"not an identifier": 1}}, 400, "parameters"),
    ({"notebook": "quick.ipynb", "surprise": True}, 400, "surprise: unknown field"),
    ({}, 400, "notebook: this field is required"),
    ([1, 2], 400, "expected a JSON object"),
    ({"notebook": "broken.ipynb"}, 400, "is not a valid notebook"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD_SUBMISSIONS)
async def test_bad_submissions_are_4xx_naming_the_field(
    api: Any, notebooks: Path, tmp_path: Path, body: Any, status: int, message: str
) -> None:
    outside = tmp_path / "outside.ipynb"
    outside.write_text((notebooks / "quick.ipynb").read_text())
    (notebooks / "escape.ipynb").symlink_to(outside)
    (notebooks / "broken.ipynb").write_text("{ not json")
    done = await api.submit("quick.ipynb")
    await api.wait(done["id"])
    before = await api.call("GET", "jobs")
    error = await api.call("POST", "jobs", body=body, expect=status)
    check_response("/jobs", "POST", status, error)
    assert message in error["message"]
    after = await api.call("GET", "jobs")
    assert after == before, "a refused submission stores nothing and changes nothing"


async def test_invalid_json_and_bad_queries(api: Any) -> None:
    error = await api.call("POST", "jobs", body="{not json", expect=400)
    assert "not valid JSON" in error["message"]
    error = await api.call("GET", "jobs", "nosuchjob", expect=404)
    check_response("/jobs/{job_id}", "GET", 404, error)
    assert "no job 'nosuchjob'" in error["message"]
    await api.call("POST", "jobs", "nosuchjob", "cancel", expect=404)
    await api.call("GET", "jobs", "nosuchjob", "events", expect=404)
    await api.call("GET", "jobs", "nosuchjob", "artifacts", expect=404)
    job = await api.submit("quick.ipynb")
    await api.wait(job["id"])
    error = await api.call("GET", "jobs", job["id"], "events", params={"after": "x"}, expect=400)
    assert "after" in error["message"]
    await api.call("GET", "jobs", job["id"], "events", params={"after": "-1"}, expect=400)
    for name in ("..", "../../jobs.db", "a/b", "sub__..__x", "..\\x"):
        error = await api.call("GET", "jobs", job["id"], "artifacts", name, expect=400)
        assert "not an artifact name" in error["message"]
    error = await api.call("GET", "jobs", job["id"], "artifacts", "nope.png", expect=404)
    assert "has no artifact 'nope.png'" in error["message"]
    # the job is untouched by all of that
    again = await api.call("GET", "jobs", job["id"])
    assert again["status"] == "succeeded"


async def test_every_route_refuses_unauthenticated_requests(api: Any, jp_base_url: str, jp_http_port: int) -> None:
    job = await api.submit("quick.ipynb")
    await api.wait(job["id"])
    client = AsyncHTTPClient()
    base = f"http://localhost:{jp_http_port}{jp_base_url}jupyter-ext/api"
    routes = [
        ("GET", "/info"),
        ("GET", "/jobs"),
        ("POST", "/jobs"),
        ("PUT", "/uploads"),
        ("GET", f"/jobs/{job['id']}"),
        ("DELETE", f"/jobs/{job['id']}"),
        ("POST", f"/jobs/{job['id']}/cancel"),
        ("GET", f"/jobs/{job['id']}/events"),
        ("GET", f"/jobs/{job['id']}/events/stream"),
        ("GET", f"/jobs/{job['id']}/artifacts"),
        ("GET", f"/jobs/{job['id']}/artifacts/executed.ipynb"),
    ]
    for method, route in routes:
        body = json.dumps({"notebook": "quick.ipynb"}) if method in ("POST", "PUT") else None
        with pytest.raises(HTTPClientError) as info:
            await client.fetch(base + route, method=method, body=body)
        assert info.value.code == 403, f"{method} {route} -> {info.value.code}"
    assert (await api.call("GET", "jobs", job["id"]))["status"] == "succeeded"
    assert len((await api.call("GET", "jobs"))["jobs"]) == 1


async def test_server_does_not_leak_environment_secrets_to_steps(api: Any, notebooks: Path) -> None:
    os.environ["JUPYTER_TOKEN"] = "do-not-leak"
    try:
        (notebooks / "env.ipynb").write_text(
            json.dumps(
                {
                    "nbformat": 4,
                    "nbformat_minor": 5,
                    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
                    "cells": [
                        {
                            "cell_type": "code",
                            "id": "c0",
                            "metadata": {},
                            "execution_count": None,
                            "outputs": [],
                            "source": "import os\n"
                            "print(os.environ.get('JUPYTER_TOKEN'), os.environ['CUDA_VISIBLE_DEVICES'] == '')",
                        }
                    ],
                }
            )
        )
        job = await api.submit("env.ipynb")
        events = await api.stream(job["id"])
    finally:
        del os.environ["JUPYTER_TOKEN"]
    texts = [e["output"]["text"] for e in events if e["type"] == "cell.output"]
    assert texts == ["None True\n"], "no server token in the step; a CPU step sees no GPU"


async def test_large_cell_inputs_are_uploaded_then_taken_by_one_job(api: Any, data_dir: Path) -> None:
    import cloudpickle

    payload = cloudpickle.dumps(b"x" * (5 * 1024 * 1024))
    up = await api.call(
        "PUT", "uploads", body=payload, expect=201, headers={"Content-Type": "application/octet-stream"}
    )
    check_response("/uploads", "PUT", 201, up)
    assert up["size"] == len(payload)
    cell = {"source": "print(len(big))", "inputs": {"big": f"upload:{up['upload']}"}}
    job = await api.call("POST", "jobs", body={"cell": cell}, expect=201)
    events = await api.stream(job["id"])
    assert events[-1]["status"] == "succeeded", events[-1]
    assert [e["output"]["text"] for e in events if e["type"] == "cell.output"] == [f"{5 * 1024 * 1024}\n"]
    again = await api.call("POST", "jobs", body={"cell": cell}, expect=400)
    assert "each upload is used once" in again["message"]
    bogus = await api.call("POST", "jobs", body={"cell": {**cell, "inputs": {"big": "upload:../../x"}}}, expect=400)
    assert "is not an upload id" in bogus["message"]
    assert not [p for p in (data_dir / "uploads").rglob("*") if p.is_file()], "nothing left behind"


async def test_step_times_are_the_step_events_times(api: Any) -> None:
    """One source for a step's duration: the row's started/finished are its step.start/step.end ts
    (the panel, the job view, the log and the CLI then agree), for a step that succeeded and one
    whose failure the runner reported."""
    from datetime import datetime

    def ts(value: str) -> float:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()

    for notebook in ("quick.ipynb", "fails.ipynb"):
        job = await api.submit(notebook)
        events = await api.stream(job["id"])
        start = next(e for e in events if e["type"] == "step.start")
        end = [e for e in events if e["type"] == "step.end"][-1]
        row = (await api.call("GET", "jobs", job["id"]))["steps"][0]
        assert abs(ts(row["started"]) - start["ts"]) < 0.001, (notebook, row["started"], start["ts"])
        assert abs(ts(row["finished"]) - end["ts"]) < 0.001, (notebook, row["finished"], end["ts"])
