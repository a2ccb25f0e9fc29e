"""The local backend's warm pool, and the process facts it and the backend share.

A standby runner is `python -m jupyter_ext.runner --standby FOLDER` started ahead of time, with
papermill loaded and a python3 kernel started; a step is handed to it as one JSON line on its
stdin ({"argv", "env"}), so it starts in a fraction of a second instead of a few seconds. Each
runs one step and exits. The pool holds as many as the concurrency limit needs (within a memory
cap), refills from a background thread when one is taken, and shrinks when idle. The
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

from ..quantity import parse_memory
from ..runner.cgroup import current as memory_cgroup

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
def spawn_logged(
    argv: list[str], cwd: str | Path, env: dict[str, str], log: Path, stdin: int
) -> subprocess.Popen[bytes]:
    """Start a runner in its own session (a cancel signals its whole group), its stdout and stderr
    appended to `log`; never through a shell. OSError when it cannot start."""
    out = open(log, "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        return subprocess.Popen(  # noqa: S603 - argv list, no shell; every part is ours or a path
            argv,
            cwd=cwd,
            env=env,
            stdin=stdin,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        out.close()


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


# -- the pool's memory cap ----------------------------------------------------------------------------------
def machine_memory() -> int | None:
    """Bytes of memory this server may use: the machine's, or its memory cgroup's limit if lower."""
    total: int | None = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    group = memory_cgroup()
    if group is not None and group.limit and (total is None or group.limit < total):
        total = group.limit
    return total


def pool_memory(value: int | str) -> int | None:
    """`LocalBackend.warm_pool_memory` in bytes: bytes or a quantity ('2Gi'); '' is an eighth of
    `machine_memory()` (None: no cap known)."""
    if isinstance(value, int) or value.strip():
        return parse_memory(value, "LocalBackend.warm_pool_memory")
    total = machine_memory()
    return total // 8 if total else None


# -- the pool -------------------------------------------------------------------------------------------------
RUNNER_BYTES_GUESS = 150 * 1024 * 1024  # one ready runner and its kernel, until one has been measured
READY_PREFIX = "ready-"  # `<folder>/ready-<pid>`: the standby runner `pid` has its kernel up and warmed


def rss_tree(pid: int) -> int:
    """Resident bytes of `pid` and all its descendants (from /proc; 0 when it is gone)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        children.setdefault(int(text[text.rindex(")") + 2 :].split()[1]), []).append(int(stat.parent.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


class StandbyPool:
    """Standby runners kept ready, each used for ONE step (so every step gets a fresh interpreter).

    `size` runners while steps come; after `idle` seconds without one taken, `idle_size` (0 turns
    idle runners off too). `memory` (bytes, None: no cap) bounds the resident memory of the ready
    runners and their kernels, measured on the runners themselves. A background thread refills
    the pool as soon as a runner is taken and shrinks it when idle; `take` never waits for a start.
    All methods block (call them off the event loop)."""

    def __init__(
        self,
        python: str,
        size: int,
        env: Callable[[], dict[str, str]],
        log: logging.Logger | Any,
        *,
        memory: int | None = None,
        idle: float = 0.0,
        idle_size: int = 1,
    ) -> None:
        self.python = python
        self.size = size
        self.env = env  # the environment of a standby runner (the server's, minus its secrets)
        self.log = log
        self.memory = memory
        self.idle = idle
        self.idle_size = idle_size
        self.procs: list[subprocess.Popen[bytes]] = []  # oldest first
        self.lock = threading.Lock()  # guards procs; never held while a process starts
        self._refilling = threading.Lock()  # one refill at a time
        self.folder: Path | None = None
        self.per_runner: int | None = None  # largest resident size of a ready runner (+ kernel) seen
        self.last_take = time.monotonic()
        self._measured: set[int] = set()
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        self.starting = max(1, (os.cpu_count() or 1) // 2)  # runners starting at once, at most
        self.demand = 0  # steps known to be coming (expect)
        self.taken = {"ready": 0, "starting": 0}  # runners handed a step, by whether they were ready
        self.peak = 0  # the most steps known to be coming at once since the pool was last idle

    # -- how many ---------------------------------------------------------------------------------
    def expect(self, steps: int) -> None:
        """Steps known to be coming (queued, a chain's later steps): the pool grows to that many,
        beyond its size, within its memory cap, and keeps the peak ready until it is idle (the
        next chain like the last finds all its runners ready). Does not block."""
        if steps != self.demand:
            self.demand = steps
            if steps:
                self.last_take = time.monotonic()  # steps are coming: not idle
                self.peak = max(self.peak, steps)
            self._wake.set()

    def target(self) -> int:
        """How many runners the pool holds now: its size (its idle size once idle), or more while
        more steps are known to be coming, within memory. A size of 0 keeps the pool off."""
        if self.size <= 0:
            return 0
        n = max(self.size, self.peak)
        if self.idle > 0 and time.monotonic() - self.last_take >= self.idle:
            self.peak = 0
            n = min(self.size, self.idle_size)
        n = max(n, self.demand)
        if self.memory is not None:
            n = min(n, self.memory // (self.per_runner or RUNNER_BYTES_GUESS))
        return max(0, n)

    def _ready(self, proc: subprocess.Popen[bytes]) -> bool:
        return self.folder is not None and (self.folder / f"{READY_PREFIX}{proc.pid}").exists()

    def ready_count(self) -> int:
        """Runners waiting with their kernel started and warmed up."""
        with self.lock:
            return sum(1 for p in self.procs if p.poll() is None and self._ready(p))

    def alive_count(self) -> int:
        with self.lock:
            return sum(1 for p in self.procs if p.poll() is None)

    # -- keeping it full ----------------------------------------------------------------------------
    def start(self) -> None:
        """Fill the pool, then keep it filled (and shrunk when idle) from a background thread."""
        self._closing = False
        self.refill()
        if self._thread is None and self.size > 0:
            self._thread = threading.Thread(target=self._keep, name="jupyter-ext-standby-pool", daemon=True)
            self._thread.start()

    def _keep(self) -> None:
        idle_tick = min(1.0, max(0.05, self.idle / 4)) if self.idle > 0 else 1.0
        full = True
        while not self._closing:
            # While runners are starting, look often: the next one starts when one is ready.
            self._wake.wait(idle_tick if full else 0.05)
            self._wake.clear()
            if self._closing:
                break
            try:
                full = self.refill()
            except Exception:  # noqa: BLE001 - the pool is an optimisation: steps start cold without it
                self.log.exception("jupyter-ext: keeping the standby pool failed")

    def refill(self) -> bool:
        """Start runners towards the target, stop those beyond it, measure the ready ones; answers
        whether the pool is full of ready runners. At most `starting` runners start at a time: side
        by side on few cores they all become ready late, one after the other the first is soon.
        Starts and measures outside `lock`, so a `take` never waits for them."""
        with self._refilling:
            with self.lock:
                for proc in [p for p in self.procs if p.poll() is not None]:
                    self._forget(proc)
                self.procs = [p for p in self.procs if p.poll() is None]
                unmeasured = [p for p in self.procs if p.pid not in self._measured and self._ready(p)]
            self._measure(unmeasured)
            with self.lock:
                target = self.target()
                surplus: list[subprocess.Popen[bytes]] = []
                if len(self.procs) > target:
                    # The youngest go first: the oldest are the most likely to be ready.
                    surplus, self.procs = self.procs[target:], self.procs[:target]
                if self.folder is None and target > 0:
                    self.folder = Path(tempfile.mkdtemp(prefix=STANDBY_PREFIX))
                    me = {"pid": os.getpid(), "start_time": proc_start_time(os.getpid())}
                    (self.folder / STANDBY_OWNER).write_text(json.dumps(me))
                starting = sum(1 for p in self.procs if not self._ready(p))
                wanted = min(target - len(self.procs), self.starting - starting)
            for _ in range(wanted):
                if self._closing:
                    break
                started = self._spawn()
                if started is None:
                    break
                with self.lock:
                    self.procs.append(started)
                starting += 1
            for proc in surplus:
                self._stop(proc)
            with self.lock:
                return len(self.procs) >= target and starting == 0

    def _measure(self, procs: list[subprocess.Popen[bytes]]) -> None:
        """The resident size of each runner the first time it is seen ready."""
        for proc in procs:
            self._measured.add(proc.pid)
            size = rss_tree(proc.pid)
            if size > 0:
                self.per_runner = max(self.per_runner or 0, size)

    def _spawn(self) -> subprocess.Popen[bytes] | None:
        assert self.folder is not None
        argv = [self.python, "-m", "jupyter_ext.runner", "--standby", str(self.folder)]
        try:
            return spawn_logged(
                argv, self.folder, self.env(), self.folder / f"standby-{time.time_ns()}.log", subprocess.PIPE
            )
        except OSError as exc:
            self.log.warning("jupyter-ext: could not start a standby runner: %s", exc)
            return None

    def _forget(self, proc: subprocess.Popen[bytes]) -> None:
        self._measured.discard(proc.pid)
        if self.folder is not None:
            (self.folder / f"{READY_PREFIX}{proc.pid}").unlink(missing_ok=True)

    def _stop(self, proc: subprocess.Popen[bytes]) -> None:
        """End a waiting runner: end of input makes it shut its kernel down and exit."""
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            killpg(proc.pid, signal.SIGKILL)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        with self.lock:
            self._forget(proc)

    # -- using it -------------------------------------------------------------------------------------
    def take(self, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes] | None:
        """Hand a step to a waiting runner (a ready one first, else the oldest still starting);
        None when none is alive. The background thread starts its replacement."""
        message = (json.dumps({"argv": argv, "env": env}) + "\n").encode()
        with self.lock:
            self.last_take = time.monotonic()
            self.procs.sort(key=lambda p: not self._ready(p))  # stable: oldest first within each kind
            taken = None
            while self.procs:
                proc = self.procs.pop(0)
                ready = self._ready(proc)
                self._forget(proc)
                if proc.poll() is not None or proc.stdin is None:
                    continue
                try:
                    proc.stdin.write(message)
                    proc.stdin.close()
                except OSError:
                    continue
                taken = proc
                self.taken["ready" if ready else "starting"] += 1
                break
        self._wake.set()
        return taken

    def close(self) -> None:
        """Stop the background thread and the waiting runners; remove the pool's folder."""
        self._closing = True
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(30)
        with self.lock:
            procs, self.procs = self.procs, []
        for proc in procs:  # all told at once, so their kernels shut down side by side
            try:
                if proc.stdin is not None:
                    proc.stdin.close()
            except OSError:
                pass
        for proc in procs:
            self._stop(proc)
        folder, self.folder = self.folder, None
        if folder is not None:
            # Its runners have exited; a step one of them took works in the step's own folders.
            shutil.rmtree(folder, ignore_errors=True)
