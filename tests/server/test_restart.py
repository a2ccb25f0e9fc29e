"""A real `jupyter server` process killed with SIGKILL mid-job, then started again."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.harness import process_alive

pytestmark = pytest.mark.slow


def _kernel_count(job_dir: Path) -> int:
    return len(list(job_dir.glob("steps/*/attempt-*/kernel.pid")))


@pytest.mark.parametrize("finish_while_down", [False, True], ids=["adopt-running", "finished-while-down"])
def test_server_killed_mid_job_resumes_without_gap_or_duplicate(server: Any, finish_while_down: bool) -> None:
    server.start()
    job = server.post("jobs", {"notebook": "slow.ipynb", "parameters": {"ticks": 40, "delay": 0.2}}).json()
    job_id = job["id"]
    deadline = time.time() + 60
    while time.time() < deadline:
        events = server.get(f"jobs/{job_id}/events").json()["events"]
        if sum(1 for e in events if e["type"] == "cell.output") >= 3:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the job produced no output")
    pid = next(e["pid"] for e in events if e["type"] == "step.start")
    assert process_alive(pid)

    server.kill()
    if finish_while_down:
        while process_alive(pid):  # the step ends while nobody is listening
            time.sleep(0.2)
    else:
        time.sleep(1.0)  # the runner keeps writing events while the server is down
        assert process_alive(pid), "the step survives the server"
    server.start()
    if not finish_while_down:
        assert process_alive(pid), "adopted, not started again"

    deadline = time.time() + 60
    while time.time() < deadline:
        job = server.get(f"jobs/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            break
        time.sleep(0.2)
    assert job["status"] == "succeeded", job
    events = server.get(f"jobs/{job_id}/events").json()["events"]
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), "no gap, no duplicate"
    assert [e["pid"] for e in events if e["type"] == "step.start"] == [pid], "one process ran the step"
    assert _kernel_count(server.data_dir / "jobs" / job_id) == 1
    assert sum(1 for e in events if e["type"] == "job.end") == 1
    text = "".join(e["output"]["text"] for e in events if e["type"] == "cell.output")
    assert text == "".join(f"tick {i}\n" for i in range(40)) + "done\n"
    raw = (server.data_dir / "jobs" / job_id / "steps" / "main" / "attempt-1" / "events.jsonl").read_text().splitlines()
    assert len([e for e in events if "attempt" in e]) == len(raw), "every runner event stored exactly once"
    assert [json.loads(r)["type"] for r in raw] == [e["type"] for e in events if "attempt" in e]
