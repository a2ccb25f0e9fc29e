"""A warm runner: imports papermill and nbconvert and starts a kernel before any step exists.

The local backend keeps a few of these waiting (`LocalBackend.warm_pool`); each says it is ready
with an empty file `FOLDER/ready-PID` (backends/standby.py names it READY_PREFIX). Each reads ONE
JSON line on stdin, `{"argv": [...runner arguments...], "env": {...}}`, and then runs that
step attempt exactly like a cold runner would, minus the start-up cost. On end of input (the
server closed the pipe or died) it shuts its kernel down and exits.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from types import FrameType
from typing import Any


def standby(folder: str) -> int:
    from jupyter_client.manager import KernelManager

    # The step's client must be an async one: nbclient awaits its get_msg(timeout=None), which on a
    # blocking client blocks the event loop itself, so neither the IOPub timeout nor a cancel
    # could ever run (a warm runner then hung forever, and ignored SIGTERM until SIGKILL).
    km = KernelManager(kernel_name="python3", client_class="jupyter_client.asynchronous.AsyncKernelClient")

    def stop(signum: int, frame: FrameType | None) -> None:
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
    _say_ready(folder)
    line = sys.stdin.readline()
    if not line.strip():
        km.shutdown_kernel(now=True)
        return 0
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    message: dict[str, Any] = json.loads(line)
    os.environ.update(message.get("env", {}))
    args = parse_args(message["argv"])
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
