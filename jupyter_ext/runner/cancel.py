"""Cancel, as the runner does it when the backend sends SIGTERM.

The same code serves every backend: the local backend signals the runner's session, and on
Kubernetes the kubelet signals the container's PID 1, which is the runner. Nothing here
relies on a process group the backend owns; the runner knows its kernel's pid itself.

While cells run, SIGTERM interrupts the kernel (SIGINT to the kernel's own process group, as
Jupyter's interrupt does) so the running cell stops, papermill writes the partial executed
notebook and the step ends `cancelled` with its artifacts. A kernel that ignores the interrupt
is killed after `kill_after` seconds, well inside the backend's grace period. Before the
kernel runs anything there is nothing to keep: the runner stops at once (`Cancelled`).

The signal handler never raises while cells run: an exception raised from a handler inside a
blocking zmq poll is swallowed by pyzmq's EINTR retry, which is how SIGTERM used to be lost.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType


class Cancelled(BaseException):
    """Raised in the main thread when a cancel arrives before the kernel runs any cell."""


class StepCancelled(Exception):
    """Raised by the engine when it stops running cells because the step was cancelled.

    An Exception (not BaseException) so papermill's clean-up runs and the partial executed
    notebook is written."""


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(os.getpgid(pid), sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


class Canceller:
    """Turns SIGTERM into: interrupt the kernel, then kill it if it does not stop."""

    def __init__(self, kill_after: float = 2.0) -> None:
        self.kill_after = kill_after
        self.requested = threading.Event()
        self.kernel_pid: int | None = None
        self._phase = "starting"  # -> "executing" -> "finishing"
        self._timer: threading.Timer | None = None
        # Re-entrant: the handler runs in the main thread, possibly while it holds the lock.
        self._lock = threading.RLock()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)

    def uninstall(self) -> None:
        """From here on the runner finishes on its own: a second SIGTERM is ignored so the
        step's end and artifacts are still written."""
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if self._timer is not None:
            self._timer.cancel()

    def executing(self, kernel_pid: int | None) -> None:
        """The kernel is about to run cells (called by the engine)."""
        with self._lock:
            self.kernel_pid = kernel_pid
            self._phase = "executing"
            if self.requested.is_set():
                self._stop_kernel()

    def done_executing(self) -> None:
        """No more cells will run: a cancel from here on only marks the step cancelled."""
        with self._lock:
            self._phase = "finishing"

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.request()

    def request(self) -> None:
        """Cancel the step (the SIGTERM handler; callable directly from tests)."""
        with self._lock:
            first = not self.requested.is_set()
            self.requested.set()
            if self._phase == "executing" and first:
                self._stop_kernel()
            if self._phase != "starting":
                return
        raise Cancelled()

    def _stop_kernel(self) -> None:
        pid = self.kernel_pid
        if pid is None:
            return
        _signal_group(pid, signal.SIGINT)
        self._timer = threading.Timer(self.kill_after, _signal_group, (pid, signal.SIGKILL))
        self._timer.daemon = True
        self._timer.start()
