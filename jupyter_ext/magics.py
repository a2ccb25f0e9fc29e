"""`%%remote` and `%remote_jobs`: run one cell as a job with chosen resources, live output.

    %load_ext jupyter_ext
    %%remote gpu=2 memory=16Gi --in df,model --out model
    model.fit(df)

Inputs are cloudpickled and sent with the job; outputs come back the same way into this
kernel. Under a Jupyter server with jupyter-ext the job goes through that server (so it is
listed in the Lab panel and survives a kernel restart); in a plain IPython session it runs
in this process on the local backend. Interrupting the kernel cancels the job.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import os
import platform
import queue
import sys
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand

from .contract import TERMINAL
from .errors import JupyterExtError, ValidationError

if TYPE_CHECKING:
    from .session import Session

T = TypeVar("T")
UPLOAD_OVER = 1024 * 1024  # bytes of a pickled --in value above which it is uploaded separately
# Libraries whose version matters for unpickling; compared when present on both sides.
CHECKED = ("cloudpickle", "numpy", "pandas", "sklearn", "torch", "scipy", "polars", "pyarrow")


# -- the sender's environment, checked in the job before anything is unpickled ---------------------------------
def local_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    import cloudpickle

    for name in CHECKED:
        module = sys.modules.get(name)
        if module is None and name == "cloudpickle":
            module = cloudpickle
        version = getattr(module, "__version__", None) if module is not None else None
        if version:
            versions[name] = str(version)
    return versions


def check_versions(expected: dict[str, str]) -> None:
    """Runs in the job: stop with a clear message when the values sent cannot load reliably here."""
    import importlib

    here = {"python": platform.python_version()}
    problems, warnings = [], []
    want_py, have_py = expected.get("python", ""), here["python"]
    if want_py.split(".")[:2] != have_py.split(".")[:2]:
        problems.append(f"python {have_py} here, {want_py} in your kernel")
    for name, want in expected.items():
        if name == "python":
            continue
        try:
            have = str(getattr(importlib.import_module(name), "__version__", ""))
        except ImportError:
            problems.append(f"{name} is not installed here ({want} in your kernel)")
            continue
        if have.split(".")[0] != want.split(".")[0]:
            problems.append(f"{name} {have} here, {want} in your kernel")
        elif have != want:
            warnings.append(f"{name} {have} here, {want} in your kernel")
    if warnings:
        print("jupyter-ext: version differences that may matter: " + "; ".join(warnings), file=sys.stderr)
    if problems:
        raise RuntimeError(
            "the job's environment does not match your kernel, so the variables sent with --in may not load: "
            + "; ".join(problems)
            + ". Use an image (image=...) with the same versions."
        )


RED, RESET = "\x1b[31m", "\x1b[39m"


class RemoteError(Exception):
    """The remote cell raised. IPython shows the remote traceback (as the remote kernel sent it,
    ANSI colours included) in place of this kernel's frames; str() is the remote error's own text."""

    job_id: str = ""
    ename: str = "Error"
    evalue: str = ""
    remote_traceback: list[str] = []

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else self.evalue

    def _render_traceback_(self) -> list[str]:  # IPython uses this instead of formatting our frames
        if self.remote_traceback:
            return list(self.remote_traceback)
        return [f"{RED}{self.ename}{RESET}: {self}"]


class RemoteCancelled(RemoteError):
    """The job was cancelled (a user action): one neutral line, no traceback."""

    def _render_traceback_(self) -> list[str]:
        return [f"%%remote: {self}"]


class RemoteInterrupted(KeyboardInterrupt):
    """The kernel was interrupted while %%remote waited; the job was cancelled. One neutral line."""

    def _render_traceback_(self) -> list[str]:
        return [f"%%remote: {self}"]


def remote_exception(error: dict[str, Any], job_id: str, status: str = "failed") -> BaseException:
    """An exception of the remote type when it is a builtin one (so `except ValueError` works)."""
    if status == "cancelled":
        cancelled = RemoteCancelled(f"job {job_id} cancelled")
        cancelled.job_id, cancelled.ename = job_id, "cancelled"
        return cancelled
    from .reasons import remote_cell_words

    message = remote_cell_words(error)
    ename, evalue = error.get("ename") or "", str(error.get("evalue") or "")
    text = evalue or message or f"job {job_id} {status}"
    exc: RemoteError | None = None
    base = getattr(builtins, ename, None) if ename else None
    if isinstance(base, type) and issubclass(base, Exception):
        try:
            exc = type(f"Remote{ename}", (RemoteError, base), {"__module__": __name__})(text)
        except TypeError:  # a builtin that cannot be subclassed with RemoteError
            exc = None
    if exc is None:
        exc = RemoteError(text)
    exc.job_id, exc.ename, exc.evalue = job_id, ename or "RemoteError", evalue
    exc.remote_traceback = [str(line) for line in error.get("traceback") or []]
    return exc


# -- a private event loop for the client, so the kernel's own loop is never blocked or reused ------------------
class _Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="jupyter-ext-remote", daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)


class RemoteJob:
    """A `%%remote` job: `.status`, `.result()`, `.logs()`, `.cancel()`; `await job` gives `.result()`."""

    def __init__(self, magics: RemoteMagics, job: dict[str, Any], outputs: list[str]) -> None:
        self._magics = magics
        self.id: str = job["id"]
        self.outputs = outputs
        self.events: list[dict[str, Any]] = []
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.ended = threading.Event()
        self._final: dict[str, Any] | None = None
        self._values: dict[str, Any] | None = None
        self._follow = magics.loop.spawn(self._collect())

    async def _collect(self) -> None:
        try:
            async for event in self._magics.session.events(self.id, 0):
                self.events.append(event)
                self.queue.put(event)
                if event["type"] == "job.end":
                    self._final = event
        finally:
            self.ended.set()
            self.queue.put(None)

    def __repr__(self) -> str:
        return f"<RemoteJob {self.id} {self.status}>"

    @property
    def status(self) -> str:
        if self._final is not None:
            return str(self._final["status"])
        return str(self._magics.loop.call(self._magics.session.job(self.id))["status"])

    def cancel(self) -> None:
        """Stop the job (its running cell is interrupted, then killed)."""
        self._magics.loop.call(self._magics.session.cancel(self.id))

    def logs(self) -> str:
        """Everything the cell printed so far."""
        parts = []
        for event in self.events:
            out = event.get("output") or {}
            if event["type"] == "cell.output" and out.get("output_type") == "stream":
                text = out.get("text", "")
                parts.append("".join(text) if isinstance(text, list) else text)
        return "".join(parts)

    def wait(self, timeout: float | None = None) -> str:
        if not self.ended.wait(timeout):
            raise TimeoutError(f"job {self.id} is still {self.status}")
        return self.status

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the job; put its --out variables into the kernel and return them."""
        self.wait(timeout)
        final = self._final or {}
        if final.get("status") != "succeeded":
            status = str(final.get("status") or "ended")
            raise remote_exception(final.get("error") or {}, self.id, status) from None
        if self._values is None:
            self._values = self._magics.fetch_outputs(self.id, self.outputs, self.events)
            assert self._magics.shell is not None
            self._magics.shell.user_ns.update(self._values)
        return self._values

    def __await__(self) -> Any:
        return asyncio.wrap_future(self._magics.loop.spawn(asyncio.to_thread(self.result))).__await__()


@magics_class
class RemoteMagics(Magics):
    """The %%remote cell magic and the %remote_jobs line magic."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.loop = _Loop()
        self._session: Session | None = None
        self.jobs: list[RemoteJob] = []

    @property
    def session(self) -> Session:
        if self._session is None:
            self._session = self.loop.call(self._open())
        return self._session

    async def _open(self) -> Session:
        """The server that started this kernel (it says where in JUPYTER_EXT_SERVER_URL), else this
        process; no other running server is looked for."""
        from .session import open_session

        session = await open_session(search=False, root_dir=os.getcwd())
        await session.start()
        return session

    def _workdir(self) -> str:
        """The kernel's folder relative to the server root ('' when it is the root or outside it)."""
        root = self.session.root_dir
        if not root:
            return ""
        try:
            relative = Path(os.getcwd()).resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            return ""
        return "" if relative == "." else relative

    def _spec(self, args: Any, cell: str) -> dict[str, Any]:
        import cloudpickle

        from .notebook.handoff_io import type_name

        assert self.shell is not None
        inputs = {}
        for name in args.inputs:
            if name not in self.shell.user_ns:
                raise UsageError(f"--in: variable {name!r} is not defined in this kernel")
            value = self.shell.user_ns[name]
            try:
                data = cloudpickle.dumps(value)
            except Exception as exc:  # noqa: BLE001 - pickling fails with any type
                raise UsageError(
                    f"--in: cannot send {name!r} ({type_name(value)}): {type(exc).__name__}: {exc}; "
                    "create it inside the remote cell instead"
                ) from None
            if len(data) > UPLOAD_OVER:
                # Large values are kept as files for the job first instead of riding in the job spec.
                inputs[name] = "upload:" + self.loop.call(self.session.upload(data))
            else:
                inputs[name] = base64.b64encode(data).decode()
        spec: dict[str, Any] = {
            "name": args.name or "%%remote",
            "cell": {
                "source": cell,
                "inputs": inputs,
                "outputs": args.outputs,
                "workdir": self._workdir(),
                "versions": local_versions(),
            },
        }
        for key in ("backend", "timeout", "retries"):
            if getattr(args, key) is not None:
                spec[key] = getattr(args, key)
        if args.resources:
            spec["resources"] = args.resources
        return spec

    @no_var_expand
    @cell_magic
    def remote(self, line: str, cell: str) -> Any:
        """Run this cell as a job: %%remote [gpu=N] [memory=..] [--in a,b] [--out c] [--async]."""
        from .magic_args import parse_remote_args

        try:
            args = parse_remote_args(line)
            spec = self._spec(args, cell)
            job = self.loop.call(self.session.submit(spec))
        except ValidationError as exc:
            raise UsageError(str(exc)) from None
        except JupyterExtError as exc:
            raise UsageError(f"the job was not submitted: {exc}") from None
        handle = RemoteJob(self, job, args.outputs)
        self.jobs.append(handle)
        if args.asynchronous:
            return handle
        self._run_in_cell(handle)
        handle.result()  # raises the remote error, or puts the --out variables here
        return None

    def _run_in_cell(self, handle: RemoteJob) -> None:
        """Show the job's outputs here as they arrive; an interrupt cancels the job."""
        # The status line's Cancel button calls the server; in this process only an interrupt can.
        status = _Status(handle, cancellable=self.session.url is not None)
        status.show()
        try:
            _pump(handle, status)
        except KeyboardInterrupt:
            raise RemoteInterrupted(self._cancel_on_interrupt(handle, status)) from None
        finally:
            status.update(final=True)

    def _cancel_on_interrupt(self, handle: RemoteJob, status: _Status, wait: float = 60) -> str:
        """Cancel the job, keep showing its last outputs until it ends; the line that says what happened."""
        before = status.state
        status.state = "cancelling"
        status.update(final=True)
        try:
            handle.cancel()
        except KeyboardInterrupt:
            pass
        except Exception as exc:  # noqa: BLE001 - say why, whatever the client raised
            status.state = before
            return f"interrupted; job {handle.id} could not be cancelled: {exc}"
        try:
            _pump(handle, status, until=time.monotonic() + wait)
        except KeyboardInterrupt:  # interrupted again: stop waiting, the cancel stands
            pass
        final = handle._final["status"] if handle._final is not None else None
        if final == "cancelled":
            return f"job {handle.id} cancelled"
        if final in TERMINAL:
            return f"interrupted; job {handle.id} had already {final}"
        return f"interrupted; job {handle.id} is being cancelled (see %remote_jobs)"

    def fetch_outputs(
        self, job_id: str, names: list[str], events: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """The job's --out values: from its `artifact` events where they rode along (small ones,
        runner/main.py), else downloaded."""
        import tempfile

        import cloudpickle

        values = {}
        sent = {e.get("name"): e["data"] for e in events or () if e["type"] == "artifact" and "data" in e}
        for name in names:
            data = sent.get(f"outputs__{name}.pkl")
            if data is not None:
                values[name] = cloudpickle.loads(base64.b64decode(data))
        names = [n for n in names if n not in values]
        if not names:
            return values
        available = {a["name"] for a in self.loop.call(self.session.artifacts(job_id))}
        with tempfile.TemporaryDirectory() as tmp:
            for name in names:
                artifact = f"outputs__{name}.pkl"
                if artifact not in available:
                    print(f"jupyter-ext: the cell did not define {name!r}; it stays as it was here", file=sys.stderr)
                    continue
                target = Path(tmp) / artifact
                self.loop.call(self.session.download(job_id, artifact, target))
                values[name] = cloudpickle.loads(target.read_bytes())
        return values

    @line_magic
    def remote_jobs(self, line: str) -> None:
        """List recent jobs (yours, newest first)."""
        jobs = self.loop.call(self.session.jobs())[: int(line.strip() or 20)]
        if not jobs:
            print("no jobs yet")
            return
        for job in jobs:
            print(f"{job['id']}  {job['status']:10}  {job['name'][:40]:40}  {job['created'][:19].replace('T', ' ')}")


JOB_STATUS_MIME = "application/vnd.jupyter-ext.job-status+json"


class _Status:
    """The one-line status under the cell: state, elapsed time, cells done, and (in JupyterLab,
    through our renderer) a Cancel button that calls the server directly, so it works while
    this kernel is busy waiting. Updated in place through a display id; plain text elsewhere."""

    def __init__(self, handle: RemoteJob, cancellable: bool) -> None:
        self.handle = handle
        self.cancellable = cancellable
        self.started = time.monotonic()
        self.state = "queued"
        self.cells = 0
        self.display: Any = None
        self.last_update = 0.0

    def bundle(self) -> dict[str, Any]:
        elapsed = time.monotonic() - self.started
        text = f"job {self.handle.id}: {self.state} · {elapsed:.0f}s · {self.cells} cell(s) done"
        data = {"job": self.handle.id, "state": self.state, "elapsed": round(elapsed, 1), "cells": self.cells}
        data["cancellable"] = self.cancellable
        return {JOB_STATUS_MIME: data, "text/plain": text}

    def show(self) -> None:
        from IPython.display import display

        self.display = display(self.bundle(), raw=True, display_id=True)

    def update(self, event: dict[str, Any] | None = None, final: bool = False) -> None:
        if event is not None:
            kind = event["type"]
            if kind == "step.start":
                self.state = "running"
            elif kind == "cell.end" and event.get("cell_index") is not None:
                self.cells += 1
            elif kind == "job.end":
                self.state = event.get("status", "ended")
        now = time.monotonic()
        if self.display is not None and (final or event is None or now - self.last_update > 0.25):
            self.last_update = now
            self.display.update(self.bundle(), raw=True)


def _pump(handle: RemoteJob, status: _Status, until: float | None = None) -> bool:
    """Render the job's events as they come until its stream ends (True) or `until` passes (False)."""
    while True:
        timeout = 0.5
        if until is not None:
            left = until - time.monotonic()
            if left <= 0:
                return False
            timeout = min(timeout, left)
        try:
            event = handle.queue.get(timeout=timeout)
        except queue.Empty:
            status.update()
            continue
        if event is None:
            return True
        _render(event)
        status.update(event)


def _render(event: dict[str, Any]) -> None:
    """Put a remote output into this cell's output area, as if it ran here."""
    from IPython.display import clear_output, publish_display_data

    kind = event["type"]
    if kind == "cell.clear":
        clear_output(wait=bool(event.get("wait")))
        return
    if kind == "log":
        sys.stderr.write(event.get("text", ""))
        return
    if kind != "cell.output":
        return
    out = event.get("output") or {}
    otype = out.get("output_type")
    if otype == "stream":
        text = out.get("text", "")
        stream = sys.stderr if out.get("name") == "stderr" else sys.stdout
        stream.write("".join(text) if isinstance(text, list) else text)
        stream.flush()
    elif otype in ("display_data", "execute_result"):
        transient = {"display_id": f"remote-{event['display_id']}"} if event.get("display_id") else None
        publish_display_data(
            out.get("data", {}), out.get("metadata", {}), transient=transient, update=bool(event.get("update"))
        )
    # errors are raised in the kernel at the end, with the remote traceback


def load_ipython_extension(ipython: Any) -> None:
    ipython.register_magics(RemoteMagics)
