"""The local backend leaves nothing in the temp folder: its standby folder goes with it, and
folders left by servers that are gone (killed, or older versions) are swept at start (issue 12)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_ext.backends.local import LocalBackend
from jupyter_ext.backends.standby import STANDBY_OWNER, STANDBY_PREFIX
from jupyter_ext.backends.standby import proc_start_time as _proc_start_time


@pytest.fixture
def waiting_runner(tmp_path: Path) -> str:
    """Stands in for the standby runner: waits for its one line of input, then exits."""
    script = tmp_path / "fake-python"
    script.write_text("#!/bin/sh\ncat > /dev/null\n")
    script.chmod(0o755)
    return str(script)


def standby_folders(tmp: Path) -> list[Path]:
    return sorted(tmp.glob(f"{STANDBY_PREFIX}*"))


async def test_stop_removes_the_standby_folder(tmp: Path, waiting_runner: str) -> None:
    backend = LocalBackend(warm_pool=1, gpus=[], python=waiting_runner)
    await backend.start()
    (folder,) = standby_folders(tmp)
    owner = json.loads((folder / STANDBY_OWNER).read_text())
    assert owner["pid"] > 0 and owner["start_time"]
    await backend.stop()
    assert standby_folders(tmp) == []


async def test_start_sweeps_the_folders_of_servers_that_are_gone(tmp: Path, waiting_runner: str) -> None:
    def folder(name: str, owner: dict | None) -> Path:
        path = tmp / f"{STANDBY_PREFIX}{name}"
        path.mkdir()
        (path / "standby-1.log").write_text("log")
        if owner is not None:
            (path / STANDBY_OWNER).write_text(json.dumps(owner))
        return path

    done = subprocess.run(  # noqa: ASYNC221 - a short-lived process whose pid is then free
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    dead = folder("dead", {"pid": int(done.stdout), "start_time": "1"})
    alive = folder("alive", {"pid": 1 if _proc_start_time(1) else 0, "start_time": _proc_start_time(1)})
    legacy_unused = folder("legacy-unused", None)
    legacy_used = folder("legacy-used", None)
    torn = folder("torn", None)
    (torn / STANDBY_OWNER).write_text("{not json")
    worker = subprocess.Popen(["sleep", "120"], cwd=legacy_used)  # noqa: S607, ASYNC220 - a process working in it
    backend = LocalBackend(warm_pool=1, gpus=[], python=waiting_runner)
    try:
        await backend.start()
        left = set(standby_folders(tmp))
        assert dead not in left and legacy_unused not in left and torn not in left
        assert legacy_used in left
        if _proc_start_time(1):  # pid 1 is visible: its folder counts as in use
            assert alive in left
        assert len(left - {alive, legacy_used}) == 1, "only this backend's own folder is new"
    finally:
        worker.kill()
        worker.wait()
        await backend.stop()
    assert set(standby_folders(tmp)) <= {alive, legacy_used}
