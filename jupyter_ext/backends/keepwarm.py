"""The command line's kept-warm runner: one standby runner that outlives `jupyter-ext run --local`.

The server keeps its warm pool (standby.py) for as long as it runs; a command's pool dies with the
command, so every `run --local` would pay a runner and kernel start. Instead the command leaves
ONE standby runner behind when it ends (`c.LocalBackend.keep_warm` seconds, default 300; 0: none),
detached (its own session, no pipe to the command), listening on a unix socket in
`<data_dir>/warm/` (a 0700 folder; the socket 0600, and the runner checks its peer's uid). The
next `run --local` claims it by renaming its socket (atomic: two commands never get the same
runner), connects, and hands it the step as the pool does (`{"argv", "env"}`); the backend then
follows it like a runner it adopted (pid + start time, events.jsonl). Each runner runs ONE step
and exits, so every step still gets a fresh interpreter and kernel.

A runner is only claimed by a command that would have started the same one: its socket is named
by `runner_tag` (jupyter-ext's version and sources, the interpreter, the environment), and the
runner says its tag again when a claimer connects. An idle runner retires on its own (it renames
its socket away first, so a claim and a retirement never both win) and removes its socket.

Files in the folder: `ready-TAG-PID.sock` (waiting), `claimed-*.sock` (being handed a step; the
claimer removes it), `starting-TAG-PID` (started, not ready yet; the runner removes it), and
`standby.log` (what the runners print before they have a step).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .standby import alive, killpg, proc_start_time, spawn_logged

WARM_DIR = "warm"  # under the data dir
READY = "ready-"
CLAIMED = "claimed-"
STARTING = "starting-"
LOG = "standby.log"
LOG_LIMIT = 1024 * 1024  # the log is emptied when a runner is left and it is larger
MAX_KEPT = 2  # runners kept in one folder, whatever their tags
HANDSHAKE_TIMEOUT = 30.0  # seconds a claimed runner has to greet and take its step
_NOISE = ("_", "OLDPWD")  # set by shells per command: no difference to a step


def runner_tag(python: str, env: dict[str, str]) -> str:
    """What a kept-warm runner must share with the command that claims it: jupyter-ext's version
    (and its runner's sources, for an editable install), the interpreter and the environment."""
    from .. import __version__

    here = Path(__file__).resolve().parent.parent
    stamps = []
    for folder in ("runner", "backends"):
        for path in sorted((here / folder).glob("*.py")):
            with contextlib.suppress(OSError):
                stamps.append((path.name, path.stat().st_mtime_ns))
    real = os.path.realpath(python)
    facts = [__version__, python, real, stamps, sorted((k, v) for k, v in env.items() if k not in _NOISE)]
    return hashlib.sha256(json.dumps(facts).encode()).hexdigest()[:20]


def warm_folder(data_dir: str | Path) -> Path | None:
    """`<data_dir>/warm`, made 0700 if missing; None when it is not a folder that only this user
    can use (a symlink, another owner, group or other access): then nothing is kept warm."""
    folder = Path(data_dir) / WARM_DIR
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)
        info = os.lstat(folder)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        return None
    return folder


@contextlib.contextmanager
def _dir_fd(folder: Path) -> Iterator[int]:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield fd
    finally:
        os.close(fd)


def _pid_of(name: str) -> int | None:
    try:
        return int(name.rsplit("-", 1)[1].split(".", 1)[0])
    except (IndexError, ValueError):
        return None


# -- claiming one ----------------------------------------------------------------------------------------------
def claim(folder: Path, tag: str, argv: list[str], env: dict[str, str]) -> tuple[int, str | None] | None:
    """Hand a step to a waiting runner of this tag: its (pid, start time), or None when none took it
    (the caller starts a runner cold). Blocking (at most HANDSHAKE_TIMEOUT per runner tried)."""
    message = (json.dumps({"argv": argv, "env": env}) + "\n").encode()
    try:
        names = sorted(n for n in os.listdir(folder) if n.startswith(f"{READY}{tag}-") and n.endswith(".sock"))
    except OSError:
        return None
    with _dir_fd(folder) as fd:
        for name in names:
            pid = _pid_of(name)
            if pid is None:
                continue
            mine = f"{CLAIMED}{tag}-{pid}-{uuid.uuid4().hex[:8]}.sock"
            try:
                os.rename(name, mine, src_dir_fd=fd, dst_dir_fd=fd)  # atomic: one claimer wins
            except OSError:
                continue  # another command took it, or it retired
            try:
                taken = _hand_over(f"/proc/self/fd/{fd}/{mine}", tag, pid, message)
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(mine, dir_fd=fd)
            if taken is not None:
                return taken
            killpg(pid, signal.SIGTERM)  # it did not take its step: it must not run it later either
    return None


def _hand_over(path: str, tag: str, pid: int, message: bytes) -> tuple[int, str | None] | None:
    """Connect, check the runner's greeting (its tag and pid), send the step, read its "ok"."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(HANDSHAKE_TIMEOUT)
        try:
            sock.connect(path)  # the path is only looked up here; its file may go afterwards
            with sock.makefile("rb") as reader:
                hello = json.loads(reader.readline() or b"null")
                if not isinstance(hello, dict) or hello.get("tag") != tag or hello.get("pid") != pid:
                    return None
                start_time = proc_start_time(pid)
                sock.sendall(message)
                ack = json.loads(reader.readline() or b"null")
        except (OSError, ValueError):
            return None
    if not isinstance(ack, dict) or not ack.get("ok"):
        return None
    return pid, start_time


# -- leaving one -------------------------------------------------------------------------------------------------
def waiting(folder: Path, tag: str | None = None) -> list[int]:
    """Pids of the runners (of this tag; None: any) waiting or starting in the folder; forgets the
    markers of runners that are gone."""
    pids = []
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    for name in names:
        if not name.startswith((READY, STARTING)):
            continue
        if tag is not None and not name.startswith((f"{READY}{tag}-", f"{STARTING}{tag}-")):
            continue
        pid = _pid_of(name)
        marker = folder / name
        if pid is None:
            continue
        if name.startswith(STARTING):
            try:
                start_time = marker.read_text().strip() or None
            except OSError:
                continue
            if not alive(pid, start_time):
                marker.unlink(missing_ok=True)
                continue
        elif proc_start_time(pid) is None:
            marker.unlink(missing_ok=True)  # a runner killed while it waited
            continue
        pids.append(pid)
    return pids


def leave(folder: Path, python: str, tag: str, env: dict[str, str], idle: float) -> int | None:
    """Start a runner that waits `idle` seconds for the next command of this tag, unless one is
    waiting or starting already; answers its pid (None: none started). It is not this process's
    child in any way that matters: its own session, no pipes, stdin from /dev/null. Runners of
    other tags (another environment, an older version) beyond MAX_KEPT - 1 are stopped, oldest first."""
    if idle <= 0 or waiting(folder, tag):
        return None
    others = sorted(waiting(folder), key=lambda p: int(proc_start_time(p) or 0))
    for pid in others[: max(0, len(others) - (MAX_KEPT - 1))]:
        killpg(pid, signal.SIGTERM)  # a waiting runner shuts its kernel down and removes its socket
    log = folder / LOG
    with contextlib.suppress(OSError):
        if log.stat().st_size > LOG_LIMIT:
            log.unlink()
    argv = [python, "-m", "jupyter_ext.runner", "--standby", str(folder), "--listen", tag, "--idle", str(idle)]
    try:
        proc = spawn_logged(argv, folder, env, log, subprocess.DEVNULL)
    except OSError:
        return None
    # The runner removes this marker when it listens (or exits); until then the next command
    # starts no second one beside it.
    marker = folder / f"{STARTING}{tag}-{proc.pid}"
    with contextlib.suppress(OSError):
        marker.write_text(proc_start_time(proc.pid) or "")
    # Reaped by a daemon thread should this process outlive it (the command usually ends first).
    threading.Thread(target=proc.wait, name="jupyter-ext-keep-warm-reap", daemon=True).start()
    return proc.pid


def stop_all(folder: Path, timeout: float = 60.0) -> list[int]:
    """End every runner waiting or starting in the folder (tests, benchmarks); answers their pids,
    after they have exited (or `timeout`)."""
    pids = waiting(folder)
    for pid in pids:
        killpg(pid, signal.SIGTERM)  # a waiting runner shuts its kernel down and removes its socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(proc_start_time(p) is not None for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if proc_start_time(pid) is not None:
            killpg(pid, signal.SIGKILL)
    return pids


def describe(folder: Path) -> dict[str, Any]:
    """What the folder holds (for a test's failure message)."""
    try:
        return {"files": sorted(os.listdir(folder)), "waiting": waiting(folder)}
    except OSError as exc:
        return {"error": str(exc)}


if __name__ == "__main__":  # pragma: no cover - `python -m jupyter_ext.backends.keepwarm stop DIR`
    if sys.argv[1:2] == ["stop"] and len(sys.argv) == 3:
        print(stop_all(Path(sys.argv[2])))
