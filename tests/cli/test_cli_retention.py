"""`jupyter-ext rm`, `prune` and `status` (issue 12), run as a user would: the real CLI in a
subprocess, no server to find, a fresh job database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jupyter_ext.cli_render import status_words

pytestmark = pytest.mark.slow


def cli(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jupyter_ext.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=cwd,
        timeout=300,
    )


@pytest.fixture
def isolated(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "config").mkdir()
    return {
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_EXT_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
    }


def run_quick(notebooks: Path, env: dict[str, str]) -> str:
    got = cli("run", str(notebooks / "quick.ipynb"), "--detach", env=env)
    assert got.returncode == 0, got.stderr
    job_id = got.stdout.strip().splitlines()[0]
    wait_for(job_id, {"succeeded"}, env)
    return job_id


def wait_for(job_id: str, statuses: set[str], env: dict[str, str]) -> dict:
    deadline = time.monotonic() + 240
    while True:
        got = cli("status", job_id, "--json", env=env)
        assert got.returncode == 0, got.stderr
        job = json.loads(got.stdout)
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
        time.sleep(0.2)


def test_rm_prune_and_status(notebooks: Path, isolated: dict[str, str], tmp_path: Path) -> None:
    jobs = tmp_path / "data" / "jobs"
    older, newer = run_quick(notebooks, isolated), run_quick(notebooks, isolated)
    got = cli(
        "run", str(notebooks / "slow.ipynb"), "-p", "ticks", "4000", "-p", "delay", "0.05", "--detach", env=isolated
    )
    assert got.returncode == 0, got.stderr
    running = got.stdout.strip().splitlines()[0]
    wait_for(running, {"running"}, isolated)

    shown = cli("status", older, env=isolated)
    assert shown.returncode == 0 and f"job {older} (quick) on local: succeeded" in shown.stdout
    assert "main" in shown.stdout and "STEP" in shown.stdout
    assert f"job {older} " in cli("status", older[:6], env=isolated).stdout, "the short id Lab shows works too"

    refused = cli("rm", running, env=isolated)
    assert refused.returncode == 1
    assert running in refused.stderr and f"jupyter-ext cancel {running}" in refused.stderr
    assert (jobs / running).is_dir()

    nothing = cli("prune", env=isolated)
    assert nothing.returncode == 2 and "--older-than" in nothing.stderr
    bad = cli("prune", "--older-than", "soon", env=isolated)
    assert bad.returncode == 2 and "'soon' is not an age" in bad.stderr
    young = cli("prune", "--older-than", "30d", env=isolated)
    assert young.returncode == 0 and young.stdout.strip() == "deleted 0 finished jobs"
    dry = cli("prune", "--keep", "1", "--dry-run", env=isolated)
    assert dry.stdout.strip() == f"would delete 1 finished job: {older}" and (jobs / older).is_dir()
    pruned = cli("prune", "--keep", "1", env=isolated)
    assert pruned.returncode == 0 and pruned.stdout.strip() == f"deleted 1 finished job: {older}"
    assert not (jobs / older).exists()
    listed = {j["id"] for j in json.loads(cli("ls", "--json", env=isolated).stdout)}
    assert listed == {newer, running}

    gone = cli("rm", newer, older, env=isolated)
    assert gone.returncode == 1, "one of them was not there"
    assert f"deleted job {newer}" in gone.stdout and f"no job '{older}'" in gone.stderr
    assert not (jobs / newer).exists()

    assert cli("cancel", running, env=isolated).returncode == 0
    wait_for(running, {"cancelled"}, isolated)
    assert cli("rm", running, env=isolated).returncode == 0
    assert json.loads(cli("ls", "--json", env=isolated).stdout) == []


def test_status_words_say_the_place_in_line() -> None:
    assert status_words({"status": "queued", "queue_position": 1}) == "queued (1st in line)"
    assert status_words({"status": "queued", "queue_position": 2}) == "queued (2nd in line)"
    assert status_words({"status": "queued", "queue_position": 13}) == "queued (13th in line)"
    assert status_words({"status": "queued", "queue_position": None}) == "queued"
    assert status_words({"status": "running", "queue_position": 3}) == "running"
