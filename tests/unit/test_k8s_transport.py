"""Moving a step's files without shared paths, and the log-reading decisions of the Kubernetes
backend: which log to read after a container restart, what a waiting container says."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp import StreamReader
from aiohttp.base_protocol import BaseProtocol

from jupyter_ext.backends.kubernetes import (
    RESTART_STRIDE,
    LogRead,
    container_waiting,
    plan_log_reads,
    restart_count,
)
from jupyter_ext.backends.kubernetes.podlog import read_lines
from jupyter_ext.runner import transfer
from jupyter_ext.runner.emitter import Emitter, parse_line


def test_same_container_is_followed_until_the_pod_ends() -> None:
    assert plan_log_reads(0, 0, final=False) == [LogRead(previous=False, follow=True, instance=0)]
    assert plan_log_reads(0, 0, final=True) == [LogRead(previous=False, follow=False, instance=0)]


def test_after_a_restart_the_previous_log_is_read_first() -> None:
    assert plan_log_reads(1, 0, final=False) == [
        LogRead(previous=True, follow=False, instance=0),
        LogRead(previous=False, follow=True, instance=1),
    ]
    # Several restarts while away: only the newest previous container's log still exists.
    assert plan_log_reads(3, 1, final=True) == [
        LogRead(previous=True, follow=False, instance=2),
        LogRead(previous=False, follow=False, instance=3),
    ]


def pod(state: dict[str, Any], restarts: int = 0, image: str = "reg.invalid/x:1") -> dict[str, Any]:
    return {
        "spec": {"containers": [{"name": "runner", "image": image}]},
        "status": {
            "phase": "Pending",
            "containerStatuses": [{"name": "runner", "image": image, "restartCount": restarts, "state": state}],
        },
    }


def test_waiting_reason_and_restart_count_of_the_step_container() -> None:
    waiting = pod({"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "reg.invalid/x:1"'}})
    assert container_waiting(waiting) == (
        "ImagePullBackOff",
        'Back-off pulling image "reg.invalid/x:1"',
        "reg.invalid/x:1",
    )
    assert container_waiting(pod({"running": {}})) is None
    assert container_waiting({"status": {}}) is None and container_waiting(None) is None
    assert restart_count(pod({"running": {}}, restarts=2)) == 2 and restart_count(None) == 0
    assert RESTART_STRIDE > 10**6


def test_outputs_over_the_log_arrive_byte_for_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pod_side, server_side = tmp_path / "pod", tmp_path / "server"
    artifacts, handoff = pod_side / "artifacts", pod_side / "handoff"
    (artifacts / "plots").mkdir(parents=True)
    handoff.mkdir()
    big = os.urandom(3 * transfer.CHUNK + 17)
    (artifacts / "plots" / "loss.png").write_bytes(big)
    (artifacts / "empty.txt").write_bytes(b"")
    (handoff / "model.pkl").write_bytes(b"pickled")
    (handoff / ".model.pkl.partial").write_bytes(b"half")
    monkeypatch.setenv(transfer.ENV_OUTPUTS, transfer.OUTPUTS_LOG)
    monkeypatch.setenv("JUPYTER_EXT_HANDOFF_OUT", str(handoff))
    stream = io.StringIO()
    transfer.ship_outputs(Emitter("j", "s", 1, stream=stream), artifacts)
    events = [parse_line(line) for line in stream.getvalue().splitlines()]
    assert all(e is not None and e["type"] == "file" for e in events)
    assert [e["kind"] for e in events if e][0] == "handoff", "hand-off variables first"
    assert max(len(line) for line in stream.getvalue().splitlines()) < 64 * 1024
    for event in events:
        assert event is not None
        assert transfer.write_chunk(server_side, event) is not None
    assert (server_side / "artifacts" / "plots" / "loss.png").read_bytes() == big
    assert (server_side / "artifacts" / "empty.txt").read_bytes() == b""
    assert (server_side / "handoff" / "model.pkl").read_bytes() == b"pickled"
    assert not (server_side / "handoff" / ".model.pkl.partial").exists()
    # A resumed log delivers chunks again: the files stay the same.
    for event in events:
        assert event is not None
        transfer.write_chunk(server_side, event)
    assert (server_side / "artifacts" / "plots" / "loss.png").read_bytes() == big


def test_outputs_over_budget_are_left_out_with_a_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "artifacts").mkdir()
    (tmp_path / "artifacts" / "huge.bin").write_bytes(b"x" * 2000)
    (tmp_path / "artifacts" / "small.txt").write_bytes(b"ok")
    monkeypatch.setenv(transfer.ENV_OUTPUTS, "log")
    monkeypatch.setenv(transfer.ENV_OUTPUTS_MAX, "1000")
    monkeypatch.delenv("JUPYTER_EXT_HANDOFF_OUT", raising=False)
    stream = io.StringIO()
    transfer.ship_outputs(Emitter("j", "s", 1, stream=stream), tmp_path / "artifacts")
    events = [parse_line(line) for line in stream.getvalue().splitlines()]
    assert [(e["type"], e.get("path")) for e in events if e] == [("log", None), ("file", "small.txt")]
    assert "artifacts/huge.bin (2000 bytes) is not sent back" in events[0]["text"]  # type: ignore[index]
    assert "c.KubernetesBackend.artifact_store" in events[0]["text"]  # type: ignore[index]


@pytest.mark.parametrize(
    "event",
    [
        {"kind": "artifacts", "path": "../../etc/passwd", "offset": 0, "data": ""},
        {"kind": "artifacts", "path": "/etc/passwd", "offset": 0, "data": ""},
        {"kind": "artifacts", "path": "a/./b", "offset": 0, "data": ""},
        {"kind": "secrets", "path": "a", "offset": 0, "data": ""},
        {"kind": "handoff", "path": "a", "offset": -1, "data": ""},
        {"kind": "handoff", "path": "a", "offset": 0, "data": "not base64!"},
    ],
)
def test_malformed_file_events_write_nothing(tmp_path: Path, event: dict[str, Any]) -> None:
    assert transfer.write_chunk(tmp_path / "attempt", event) is None
    assert not (tmp_path / "attempt").exists()


def test_store_round_trip_with_a_local_path_and_a_file_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for store in (str(tmp_path / "store-a"), f"file://{tmp_path / 'store-b'}"):
        inputs = transfer.join(store, "job", "step", "attempt-1", "inputs")
        transfer.put_files(inputs, {"step.ipynb": b"{}", "handoff.0.pkl": b"\x80\x04"})
        local = tmp_path / f"local-{len(store)}"
        monkeypatch.setenv(transfer.ENV_INPUTS_URL, inputs)
        monkeypatch.setenv(transfer.ENV_INPUTS_DIR, str(local))
        assert sorted(transfer.fetch_inputs()) == ["handoff.0.pkl", "step.ipynb"]
        assert (local / "handoff.0.pkl").read_bytes() == b"\x80\x04"
        assert transfer.get_file(transfer.join(inputs, "nope"), tmp_path / "nope") is False


def test_log_lines_of_any_length() -> None:
    async def read() -> list[bytes]:
        reader = StreamReader(BaseProtocol(asyncio.get_running_loop()), 2**24, loop=asyncio.get_running_loop())
        long = json.dumps({"data": base64.b64encode(os.urandom(300_000)).decode()}).encode()
        body = b"2026-01-01T00:00:00Z a\n2026-01-01T00:00:01Z " + long + b"\nlast"
        for start in range(0, len(body), 10_000):  # as a socket delivers it: in pieces
            reader.feed_data(body[start : start + 10_000])
        reader.feed_eof()
        return [line async for line in read_lines(reader)]

    lines = asyncio.run(read())
    assert lines[0] == b"2026-01-01T00:00:00Z a\n" and len(lines[1]) > 400_000 and lines[2] == b"last"
