"""The runner `jupyter-ext run --local` leaves ready for the next command (issue 14, keepwarm.py):
claimed by exactly one command of the same interpreter, version and environment, one fresh kernel
per job, gone by itself when idle, and nothing left behind by these tests."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from jupyter_ext.backends import keepwarm
from jupyter_ext.backends.standby import proc_start_time
from jupyter_ext.store import Store

pytestmark = pytest.mark.slow
DEADLINE = 180.0  # seconds; generous: a runner and its kernel start in ~1-3 s on an idle machine
KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def until(what: str, check: Callable[[], bool], folder: Path, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:.0f}s: {keepwarm.describe(folder)}")
        time.sleep(0.05)


def ready(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("ready-*.sock"))


def notebook(folder: Path, name: str, source: str) -> Path:
    cell = {"cell_type": "code", "execution_count": None, "id": "c1", "metadata": {}, "outputs": [], "source": source}
    path = folder / name
    path.write_text(json.dumps({"cells": [cell], "metadata": KERNEL, "nbformat": 4, "nbformat_minor": 5}))
    return path


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A command's environment: keep_warm on, a fresh data dir, no server to find."""
    return {
        **os.environ,
        "JUPYTER_EXT_KEEP_WARM": "300",
        "JUPYTER_EXT_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }


@pytest.fixture
def warm(tmp_path: Path) -> Iterator[Path]:
    """The kept-warm folder; every runner in it is stopped after the test, and its files checked gone."""
    folder = tmp_path / "data" / keepwarm.WARM_DIR
    yield folder
    if folder.exists():
        pids = keepwarm.stop_all(folder, timeout=DEADLINE)
        assert all(proc_start_time(p) is None for p in pids), keepwarm.describe(folder)
        left = [n for n in os.listdir(folder) if n != keepwarm.LOG]
        assert left == [], f"left in the warm folder: {left}"


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "jupyter_ext.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )


LEAVE = "import os, json\nsecret = 42\nos.environ['JE_LEAK'] = '1'\nprint(json.dumps({'pid': os.getpid()}))"
LOOK = (
    "import os, json\n"
    "print(json.dumps({'pid': os.getpid(), 'secret': 'secret' in globals(), 'env': os.environ.get('JE_LEAK'),"
    " 'cwd': os.getcwd()}))"
)


def test_the_next_command_takes_the_runner_the_last_one_left(tmp_path: Path, env: dict[str, str], warm: Path) -> None:
    leave, look = notebook(tmp_path, "leave.ipynb", LEAVE), notebook(tmp_path, "look.ipynb", LOOK)
    first = cli(env, "run", "--local", str(leave))
    assert first.returncode == 0, first.stderr
    assert stat.S_IMODE(warm.stat().st_mode) == 0o700
    until("the first command left a runner ready", lambda: len(ready(warm)) == 1, warm)
    (sock,) = ready(warm)
    assert stat.S_IMODE((warm / sock).stat().st_mode) == 0o600
    kept_pid = int(sock.rsplit("-", 1)[1].split(".")[0])

    second = cli(env, "run", "--local", str(look))
    assert second.returncode == 0, second.stderr
    seen = json.loads(second.stdout.strip().splitlines()[-1])
    # A fresh kernel of its own: nothing of the first job, and it runs in the notebook's folder.
    assert seen["secret"] is False and seen["env"] is None and seen["cwd"] == str(tmp_path)
    assert seen["pid"] != json.loads(first.stdout.strip().splitlines()[-1])["pid"]
    job = json.loads(cli(env, "ls", "--local", "--json").stdout)[0]
    handle = Store(tmp_path / "data" / "jobs.db").get_job(job["id"])["steps"][0]["handle"]
    assert handle["pid"] == kept_pid and handle["warm"], handle
    # It ran its one step and exited; the second command left the next runner.
    until("the kept-warm runner exited after its step", lambda: proc_start_time(kept_pid) is None, warm)
    until("the second command left a runner ready", lambda: len(ready(warm)) == 1 and sock not in ready(warm), warm)


def test_read_only_commands_start_no_runner(tmp_path: Path, env: dict[str, str], warm: Path) -> None:
    assert cli(env, "ls", "--local").returncode == 0
    assert not warm.exists() or keepwarm.waiting(warm) == []


def _leave(warm: Path, tag: str, idle: float = 300) -> int:
    folder = keepwarm.warm_folder(warm.parent)
    assert folder == warm
    pid = keepwarm.leave(warm, sys.executable, tag, dict(os.environ), idle)
    assert pid is not None
    until("the runner listens", lambda: any(n.endswith(f"-{pid}.sock") for n in ready(warm)), warm)
    return pid


def test_two_claimers_never_get_the_same_runner(tmp_path: Path, warm: Path) -> None:
    pid = _leave(warm, "tagone")
    assert keepwarm.leave(warm, sys.executable, "tagone", dict(os.environ), 300) is None, "one per tag"
    # The step is junk (the runner refuses its arguments and exits): only the hand-over is tested.
    results: list[object] = []
    barrier = threading.Barrier(4)

    def take() -> None:
        barrier.wait()
        results.append(keepwarm.claim(warm, "tagone", ["--bad"], {}))

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE)
    taken = [r for r in results if r is not None]
    assert len(results) == 4 and len(taken) == 1 and taken[0] == (pid, taken[0][1]), results  # type: ignore[index]
    until("the runner that took the junk step exited", lambda: proc_start_time(pid) is None, warm)
    assert ready(warm) == []


def test_a_runner_of_another_tag_is_not_claimed(warm: Path) -> None:
    pid = _leave(warm, "tagone")
    assert keepwarm.claim(warm, "tagtwo", ["--bad"], {}) is None
    assert proc_start_time(pid) is not None and len(ready(warm)) == 1
    assert keepwarm.stop_all(warm, timeout=DEADLINE) == [pid]
    assert ready(warm) == [] and proc_start_time(pid) is None


def test_an_idle_runner_exits_and_removes_its_socket(warm: Path) -> None:
    pid = _leave(warm, "tagidle", idle=1)
    until("the idle runner exited", lambda: proc_start_time(pid) is None, warm)
    until("its files are gone", lambda: [n for n in os.listdir(warm) if n != keepwarm.LOG] == [], warm)


def test_a_folder_others_can_enter_is_not_used(tmp_path: Path) -> None:
    folder = tmp_path / "shared" / keepwarm.WARM_DIR
    folder.mkdir(parents=True, mode=0o755)
    folder.chmod(0o755)
    assert keepwarm.warm_folder(folder.parent) is None
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / keepwarm.WARM_DIR).symlink_to(tmp_path / "elsewhere")
    assert keepwarm.warm_folder(tmp_path / "linked") is None
    assert keepwarm.warm_folder(tmp_path / "fresh") == tmp_path / "fresh" / keepwarm.WARM_DIR


def test_the_tag_names_interpreter_and_environment() -> None:
    base = keepwarm.runner_tag(sys.executable, {"A": "1"})
    assert base == keepwarm.runner_tag(sys.executable, {"A": "1", "_": "/usr/bin/x"})
    assert base != keepwarm.runner_tag(sys.executable, {"A": "2"})
    assert base != keepwarm.runner_tag("/other/python", {"A": "1"})
    assert base.isalnum()


def test_runners_of_other_tags_beyond_two_are_stopped(warm: Path) -> None:
    first, second = _leave(warm, "tagone"), _leave(warm, "tagtwo")
    third = _leave(warm, "tagthree")
    until("the oldest runner of another tag stopped", lambda: proc_start_time(first) is None, warm)
    assert proc_start_time(second) is not None and proc_start_time(third) is not None
    assert sorted(ready(warm)) == sorted([f"ready-tagtwo-{second}.sock", f"ready-tagthree-{third}.sock"])
