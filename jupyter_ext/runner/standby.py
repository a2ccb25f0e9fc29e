"""A warm runner: imports papermill and nbconvert and starts a kernel before any step exists.

The local backend keeps a few of these waiting (`LocalBackend.warm_pool`); each says it is ready
with an empty file `FOLDER/ready-PID` (backends/standby.py names it READY_PREFIX). Each reads ONE
JSON line on stdin, `{"argv": [...runner arguments...], "env": {...}}`, and then runs that
step attempt exactly like a cold runner would, minus the start-up cost. On end of input (the
server closed the pipe or died) it shuts its kernel down and exits.

With `--listen TAG --idle SECONDS` (the command line's kept-warm runner, backends/keepwarm.py) it
takes its step from a unix socket instead, `FOLDER/ready-TAG-PID.sock` (0600; a peer of another
uid is refused): it greets a claimer with `{"pid", "tag"}`, reads the step's line and answers
`{"ok": true}`. After SECONDS without a claim, or once its socket is gone and no claimer came, it
shuts its kernel down and exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from types import FrameType
from typing import Any

CLAIM_GRACE = 30.0  # seconds a claimer that renamed the socket has to connect and hand its step over


def standby(folder: str, options: list[str] | None = None) -> int:
    from jupyter_client.manager import KernelManager

    # The step's client must be an async one: nbclient awaits its get_msg(timeout=None), which on a
    # blocking client blocks the event loop itself, so neither the IOPub timeout nor a cancel
    # could ever run (a warm runner then hung forever, and ignored SIGTERM until SIGKILL).
    km = KernelManager(kernel_name="python3", client_class="jupyter_client.asynchronous.AsyncKernelClient")

    listen = _listen_options(options or [])
    ready_path = os.path.join(folder, f"ready-{listen[0]}-{os.getpid()}.sock") if listen else ""

    def stop(signum: int, frame: FrameType | None) -> None:
        if listen:
            _unlink(ready_path)
            _unlink(os.path.join(folder, f"starting-{listen[0]}-{os.getpid()}"))
            with contextlib.suppress(Exception):  # stopped while its kernel was still starting
                km.shutdown_kernel(now=True)
        else:
            km.shutdown_kernel(now=True)
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, stop)
    km.start_kernel(cwd=folder)
    # While the kernel starts (its own process, on another core): the imports of a step. papermill
    # first: it loads our engine through its entry point (importing the engine module before
    # papermill would make that a circular import).
    import papermill  # noqa: F401

    from . import engine  # noqa: F401
    from .main import compile_validator, parse_args, run

    compile_validator()
    kc = _warm_up(km)
    if listen:
        line = _serve_one(folder, listen[0], listen[1], ready_path)
    else:
        _say_ready(folder)
        line = sys.stdin.readline()
    if not line.strip():
        km.shutdown_kernel(now=True)
        return 0
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        message: dict[str, Any] = json.loads(line)
        os.environ.update(message.get("env", {}))
        args = parse_args(message["argv"])
    except BaseException:  # a step it cannot read (argparse exits): its kernel must not outlive it
        km.shutdown_kernel(now=True)
        raise
    log = os.environ.get("JUPYTER_EXT_RUNNER_LOG")
    if log:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    os.chdir(args.workdir or ".")
    return run(args, km=km, kc=kc)


def _say_ready(folder: str) -> None:
    """`FOLDER/ready-PID`: the pool hands steps to ready runners first, and measures their memory."""
    try:
        with open(os.path.join(folder, f"ready-{os.getpid()}"), "x"):
            pass
    except OSError:
        pass  # the pool's folder is gone (it is closing): the end of input follows


def _warm_up(km: Any) -> Any:
    """Connect a client and run the imports every step pays for (hand-off helpers) before any
    step arrives; the connected client is handed to the step (None if warming up failed).

    Run on this thread's event loop (jupyter_core's run_sync), the one nbclient uses later."""
    from jupyter_core.utils import run_sync

    from .engine import unbounded_iopub

    client = km.client()
    client.start_channels()
    unbounded_iopub(client)
    try:
        run_sync(client.wait_for_ready)(timeout=60)
        run_sync(client.execute_interactive)(
            "import cloudpickle, jupyter_ext.notebook.handoff_io", silent=True, store_history=False, timeout=60
        )
    except (RuntimeError, TimeoutError) as exc:
        print(f"jupyter-ext standby: warm-up failed ({exc}); the step will import what it needs", file=sys.stderr)
        client.stop_channels()
        return None
    client.allow_stdin = False
    return client


def _listen_options(options: list[str]) -> tuple[str, float] | None:
    """`--listen TAG --idle SECONDS` -> (TAG, SECONDS); None without --listen."""
    if "--listen" not in options:
        return None
    tag = options[options.index("--listen") + 1]
    idle = float(options[options.index("--idle") + 1]) if "--idle" in options else 300.0
    if not tag.isalnum():
        raise SystemExit(f"jupyter-ext standby: bad --listen tag {tag!r}")
    return tag, idle


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _serve_one(folder: str, tag: str, idle: float, ready_path: str) -> str:
    """Listen at `ready_path` until one claimer hands over a step (its JSON line) or `idle` seconds
    pass ("": exit). The socket is bound under a private name, then renamed into place, so a
    claimer only ever sees a runner that is ready; paths are relative to FOLDER, our cwd (a unix
    socket's path is limited to ~107 bytes)."""
    os.chdir(folder)
    me = os.getpid()
    bound = f".bind-{me}.sock"
    ready = os.path.basename(ready_path)
    _unlink(bound)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        server.bind(bound)
    finally:
        os.umask(old)
    server.listen(4)
    os.rename(bound, ready)
    _unlink(f"starting-{tag}-{me}")
    deadline = time.monotonic() + idle
    claimed_at: float | None = None
    try:
        while True:
            now = time.monotonic()
            if claimed_at is None and not os.path.exists(ready):
                claimed_at = now  # renamed by a claimer (or the folder is gone): it connects soon
            limit = claimed_at + CLAIM_GRACE if claimed_at is not None else deadline
            if now >= limit:
                if claimed_at is not None:
                    return ""
                try:
                    os.rename(ready, f"retired-{me}.sock")  # a claim and a retirement never both win
                except OSError:
                    claimed_at = time.monotonic()
                    continue
                _unlink(f"retired-{me}.sock")
                return ""
            readable, _, _ = select.select([server], [], [], min(1.0, limit - now))
            if not readable:
                continue
            conn, _ = server.accept()
            line = _take_step(conn, tag)
            if line:
                _unlink(ready)  # a claimer removes its renamed copy; this is in case none was made
                return line
    finally:
        server.close()


def _take_step(conn: socket.socket, tag: str) -> str:
    """Greet a claimer, read its step, say it is taken; "" for a peer of another user or a claimer
    that went away (the runner keeps waiting)."""
    with conn:
        conn.settimeout(CLAIM_GRACE)
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _, uid, _ = struct.unpack("3i", creds)
            if uid != os.getuid():
                return ""
            conn.sendall((json.dumps({"pid": os.getpid(), "tag": tag}) + "\n").encode())
            with conn.makefile("rb") as reader:
                line = reader.readline().decode()
            if not line.strip():
                return ""
            json.loads(line)
            conn.sendall(b'{"ok": true}\n')
        except (OSError, ValueError):
            return ""
    return line
