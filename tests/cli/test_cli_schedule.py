"""`jupyter-ext schedule ...` as a user types it: without a server (the job database) and against one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_cli import cli

pytestmark = pytest.mark.slow


@pytest.fixture
def isolated(tmp_path: Path) -> dict[str, str]:
    """No running server can be found; schedules go to a fresh database."""
    return {"JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_EXT_DATA_DIR": str(tmp_path / "data")}


def test_add_ls_pause_resume_snapshot_rm_without_a_server(
    notebooks: Path, isolated: dict[str, str], tmp_path: Path
) -> None:
    def run(*args: str) -> Any:
        return cli("schedule", *args, env=isolated, cwd=notebooks)

    added = run("add", "hello.ipynb", "--cron", "30 2 * * *", "--tz", "Europe/Berlin", "-p", "count", "2")
    assert added.returncode == 0, added.stderr
    schedule_id = added.stdout.strip()
    assert "30 2 * * * in Europe/Berlin" in added.stderr and "snapshot" in added.stderr
    assert "no jupyter-ext server is running" in added.stderr
    assert (tmp_path / "data" / "schedules" / schedule_id / "notebook.ipynb").is_file()

    (listed,) = json.loads(run("ls", "--json").stdout)
    assert listed["id"] == schedule_id and listed["notebook"] == "hello.ipynb"
    assert listed["parameters"] == {"count": 2} and listed["paused"] is False and listed["fresh"] is False
    assert listed["next_run_iso"].endswith(("T02:30:00+01:00", "T02:30:00+02:00"))
    table = run("ls").stdout
    assert schedule_id in table and "Europe/Berlin" in table

    short = schedule_id[:6]  # the start of an id is enough, as for jobs
    paused = run("pause", short)
    assert paused.returncode == 0 and f"schedule {schedule_id}: paused" in paused.stdout
    assert "paused" in run("ls").stdout
    resumed = run("resume", schedule_id)
    assert resumed.returncode == 0 and "next run" in resumed.stdout
    snapshot = run("snapshot", short)
    assert snapshot.returncode == 0 and "snapshot taken" in snapshot.stdout

    swept = run(
        "add", "hello.ipynb", "--cron", "@daily", "--sweep", "count=1,2", "--sweep", "delay=0,0.1", "--zip", "--fresh"
    )
    assert swept.returncode == 0, swept.stderr
    by_id = {s["id"]: s for s in json.loads(run("ls", "--json").stdout)}
    sweep = by_id[swept.stdout.strip()]
    assert sweep["sweep"] == {"count": [1, 2], "delay": [0, 0.1]} and sweep["sweep_mode"] == "zip"
    assert sweep["fresh"] is True, "--fresh: its runs ignore cached results"

    removed = run("rm", schedule_id, swept.stdout.strip())
    assert removed.returncode == 0 and removed.stdout.count("deleted schedule") == 2
    assert json.loads(run("ls", "--json").stdout) == []
    assert not (tmp_path / "data" / "schedules" / schedule_id).exists()
    again = run("rm", schedule_id)
    assert again.returncode == 1 and "no schedule" in again.stderr


def test_bad_input_is_said_with_the_field(notebooks: Path, isolated: dict[str, str]) -> None:
    def run(*args: str) -> Any:
        return cli("schedule", *args, env=isolated, cwd=notebooks)

    for args, words in (
        (("add", "hello.ipynb", "--cron", "2am"), "cron:"),
        (("add", "hello.ipynb", "--cron", "0 2 * * *", "--tz", "Berlin/Mitte"), "timezone:"),
        (("add", "hello.ipynb", "--cron", "0 2 * * *", "-p", "nope", "1"), "parameters.nope:"),
        (("add", "missing.ipynb", "--cron", "0 2 * * *"), "notebook:"),
        (("add", "/etc/hostname.ipynb", "--cron", "0 2 * * *"), "notebook:"),
    ):
        result = run(*args)
        assert result.returncode == 2 and words in result.stderr, (args, result.stderr)
    assert json.loads(run("ls", "--json").stdout) == []


def test_schedules_are_made_on_a_running_server(server: Any, notebooks: Path, tmp_path: Path) -> None:
    server.start()
    env = {
        "JUPYTER_RUNTIME_DIR": str(server.home / "runtime"),  # where the server registered itself
        "JUPYTER_EXT_DATA_DIR": str(tmp_path / "cli-data"),
    }
    added = cli("schedule", "add", str(notebooks / "hello.ipynb"), "--cron", "0 3 * * 1", "--name", "weekly", env=env)
    assert added.returncode == 0, added.stderr
    assert "no jupyter-ext server is running" not in added.stderr
    schedule_id = added.stdout.strip()
    (made,) = server.get("schedules").json()["schedules"]
    assert made["id"] == schedule_id and made["name"] == "weekly" and made["notebook"] == "hello.ipynb"
    assert cli("schedule", "pause", schedule_id, env=env).returncode == 0
    assert server.get(f"schedules/{schedule_id}").json()["paused"] is True
    assert cli("schedule", "rm", schedule_id, env=env).returncode == 0
    assert server.get("schedules").json()["schedules"] == []
    assert not (tmp_path / "cli-data").exists(), "nothing kept in the CLI's own process"
