"""The local backend's warm pool, and the process facts it and the backend share.

A standby runner is `python -m jupyter_ext.runner --standby FOLDER` started ahead of time, with
papermill loaded and a python3 kernel started; a step is handed to it as one JSON line on its
stdin ({"argv", "env"}), so it starts in a fraction of a second instead of a few seconds. The
pool's folder names the server that owns it (`STANDBY_OWNER`), so a later server sweeps the
folders of servers that are gone.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STANDBY_PREFIX = "jupyter-ext-standby-"
STANDBY_OWNER = "owner.json"  # {"pid", "start_time"} of the server process the folder belongs to


# -- processes ------------------------------------------------------------------------------------------------
def proc_start_time(pid: int) -> str | None:
    """Start time of `pid` in clock ticks since boot (tells a live process from a reused pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has finished; only its parent's wait() remains
        return None
    return fields[19]


def alive(pid: int, start_time: str | None) -> bool:
    current = proc_start_time(pid)
    return current is not None and (start_time is None or current == start_time)


def killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def kill_kernel(pid_file: Path) -> None:
    """The kernel runs in its own session; after a SIGKILL of the runner nobody else stops it."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"kernel" in cmdline:
        killpg(pid, signal.SIGKILL)


# -- left-over folders ----------------------------------------------------------------------------------------
def standby_in_use(folder: Path) -> bool:
    """Whether the server that made this standby folder still runs. A folder without an owner
    file (made before there was one) counts as in use while any process works in it."""
    try:
        owner = json.loads((folder / STANDBY_OWNER).read_text())
        return alive(int(owner["pid"]), owner.get("start_time"))
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError):
        return False  # unreadable or torn: nobody can be using it as theirs
    resolved = str(folder.resolve())
    for cwd in Path("/proc").glob("[0-9]*/cwd"):
        try:
            target = os.readlink(cwd)
        except OSError:
            continue
        if target == resolved or target.startswith(resolved + os.sep):
            return True
    return False


def sweep_standby_folders(tmp: str | Path | None = None) -> list[Path]:
    """Remove this account's `jupyter-ext-standby-*` folders whose server is gone (killed, or a
    version that never cleaned up); answers those removed. Blocking: run it in a thread."""
    removed = []
    for folder in Path(tmp or tempfile.gettempdir()).glob(f"{STANDBY_PREFIX}*"):
        try:
            if not folder.is_dir() or folder.is_symlink() or folder.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        if not standby_in_use(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


# -- the pool -------------------------------------------------------------------------------------------------
class StandbyPool:
    """`size` runners kept ready; all methods block (call them in a thread)."""

    def __init__(self, python: str, size: int, env: Callable[[], dict[str, str]], log: logging.Logger | Any) -> None:
        self.python = python
        self.size = size
        self.env = env  # the environment of a standby runner (the server's, minus its secrets)
        self.log = log
        self.procs: list[subprocess.Popen[bytes]] = []
        self.lock = threading.Lock()
        self.folder: Path | None = None

    def refill(self) -> None:
        """Start standby runners until the pool is full."""
        with self.lock:
            self.procs = [p for p in self.procs if p.poll() is None]
            if self.folder is None and self.size > 0:
                self.folder = Path(tempfile.mkdtemp(prefix=STANDBY_PREFIX))
                me = {"pid": os.getpid(), "start_time": proc_start_time(os.getpid())}
                (self.folder / STANDBY_OWNER).write_text(json.dumps(me))
            while len(self.procs) < self.size:
                assert self.folder is not None
                log = open(self.folder / f"standby-{time.time_ns()}.log", "ab")  # noqa: SIM115
                try:
                    proc = subprocess.Popen(  # noqa: S603 - argv list, no shell
                        [self.python, "-m", "jupyter_ext.runner", "--standby", str(self.folder)],
                        cwd=self.folder,
                        env=self.env(),
                        stdin=subprocess.PIPE,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                        close_fds=True,
                    )
                except OSError as exc:
                    self.log.warning("jupyter-ext: could not start a standby runner: %s", exc)
                    return
                finally:
                    log.close()
                self.procs.append(proc)

    def take(self, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes] | None:
        """Hand a step to a waiting runner; None when none is alive."""
        message = (json.dumps({"argv": argv, "env": env}) + "\n").encode()
        with self.lock:
            while self.procs:
                proc = self.procs.pop(0)
                if proc.poll() is not None or proc.stdin is None:
                    continue
                try:
                    proc.stdin.write(message)
                    proc.stdin.close()
                except OSError:
                    continue
                return proc
        return None

    def close(self) -> None:
        """Stop the waiting runners and remove the pool's folder."""
        with self.lock:
            procs, self.procs = self.procs, []
        for proc in procs:
            try:
                if proc.stdin is not None:
                    proc.stdin.close()  # end of input: it shuts its kernel down and exits
                proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                killpg(proc.pid, signal.SIGKILL)
        folder, self.folder = self.folder, None
        if folder is not None:
            # Its runners have exited; a step one of them took works in the step's own folders.
            shutil.rmtree(folder, ignore_errors=True)
