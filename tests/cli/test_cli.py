"""`jupyter-ext` as a user types it: in-process on the local backend, and against a server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jupyter_ext.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=timeout,
    )


@pytest.fixture
def isolated(tmp_path: Path) -> dict[str, str]:
    """No running server can be found; jobs go to a fresh database."""
    return {
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_EXT_DATA_DIR": str(tmp_path / "data"),
    }


def test_run_prints_outputs_live_and_exits_0(notebooks: Path, isolated: dict[str, str]) -> None:
    result = cli("run", str(notebooks / "hello.ipynb"), "-p", "count", "2", "-p", "name", "Ada", env=isolated)
    assert result.returncode == 0, result.stderr
    assert "hello Ada 0\nhello Ada 1\n" in result.stdout
    assert "{'name': 'Ada', 'count': 2}" in result.stdout
    # Cells as Lab numbers them: the markdown title is cell 1, the parameters cell 2.
    assert "── cell 2 (setup) ──\n── cell 3 (1/2) ──" in result.stderr and "succeeded" in result.stderr

    listing = cli("ls", "--json", env=isolated)
    jobs = json.loads(listing.stdout)
    assert [j["status"] for j in jobs] == ["succeeded"] and jobs[0]["parameters"] == {"count": 2, "name": "Ada"}
    job_id = jobs[0]["id"]
    table = cli("ls", env=isolated).stdout
    assert job_id in table and "succeeded" in table and "1/1" in table

    logs = cli("logs", job_id, env=isolated)
    assert logs.returncode == 0 and "hello Ada 1" in logs.stdout

    artifacts = cli("artifacts", job_id, env=isolated)
    assert {"executed.ipynb", "executed.html", "greeting.txt"} <= {
        line.split()[0] for line in artifacts.stdout.splitlines()
    }
    out = notebooks.parent / "downloaded"
    got = cli("artifacts", job_id, "-o", str(out), env=isolated)
    assert got.returncode == 0, got.stderr
    assert (out / "greeting.txt").read_text() == "hello Ada\n"
    assert json.loads((out / "executed.ipynb").read_text())["cells"]
    assert "saved 3 artifact(s)" in got.stderr


def test_run_failure_names_cell_and_exception(notebooks: Path, isolated: dict[str, str]) -> None:
    result = cli("run", str(notebooks / "fails.ipynb"), env=isolated)
    assert result.returncode == 1
    assert "before\n" in result.stdout and "never" not in result.stdout
    assert "ValueError: bad value in cell one" in result.stdout  # the traceback, as in a notebook
    assert "failed: cell 2 raised ValueError: bad value in cell one" in result.stderr  # Lab's cell 2


def test_images_are_a_one_line_note(notebooks: Path, isolated: dict[str, str]) -> None:
    result = cli("run", str(notebooks / "plot.ipynb"), env=isolated)
    assert result.returncode == 0, result.stderr
    assert "[image: cell0-output1.png]" in result.stdout


def test_bad_input_is_a_clear_error(notebooks: Path, isolated: dict[str, str]) -> None:
    missing = cli("run", str(notebooks / "nope.ipynb"), env=isolated)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    gpu = cli("run", str(notebooks / "hello.ipynb"), "--gpu", "two", env=isolated)
    assert gpu.returncode == 2 and "resources.gpu: 'two' is not a whole number of GPUs" in gpu.stderr
    unknown = cli("logs", "nosuchjob", env=isolated)
    assert unknown.returncode == 2 and "no job 'nosuchjob'" in unknown.stderr
    assert json.loads(cli("ls", "--json", env=isolated).stdout) == [], "nothing was submitted"


def test_ctrl_c_cancels_the_job(notebooks: Path, isolated: dict[str, str]) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_ext.cli",
            "run",
            str(notebooks / "slow.ipynb"),
            "-p",
            "ticks",
            "300",
            "-p",
            "delay",
            "0.1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **isolated},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("tick 0")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "cancelling job" in err
    jobs = json.loads(cli("ls", "--json", env=isolated).stdout)
    assert jobs[0]["status"] == "cancelled"


def test_run_submits_to_a_running_server(server: Any, notebooks: Path, tmp_path: Path) -> None:
    server.start()
    env = {
        "JUPYTER_RUNTIME_DIR": str(server.home / "runtime"),  # where the server registered itself
        "JUPYTER_EXT_DATA_DIR": str(tmp_path / "cli-data"),
    }
    result = cli("run", str(notebooks / "hello.ipynb"), "-p", "count", "1", env=env)
    assert result.returncode == 0, result.stderr
    assert "submitting to the jupyter-ext server" in result.stderr and "hello world 0" in result.stdout
    jobs = server.get("jobs").json()["jobs"]
    assert [j["notebook"] for j in jobs] == ["hello.ipynb"] and jobs[0]["status"] == "succeeded"
    assert not (tmp_path / "cli-data").exists(), "nothing ran in the CLI's own process"

    slow = cli("run", str(notebooks / "slow.ipynb"), "--detach", env=env)
    job_id = slow.stdout.strip()
    deadline = time.time() + 30
    while server.get(f"jobs/{job_id}").json()["status"] != "running" and time.time() < deadline:
        time.sleep(0.1)
    cancelled = cli("cancel", job_id, env=env)
    assert cancelled.returncode == 0 and job_id in cancelled.stdout
    follow = cli("logs", "-f", job_id, env=env)
    assert follow.returncode == 1 and "cancelled" in follow.stderr
    assert server.get(f"jobs/{job_id}").json()["status"] == "cancelled"
