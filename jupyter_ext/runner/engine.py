"""A papermill engine that emits one event per cell start, output and end.

Registered on papermill's `papermill.engine` entry point as ``jupyter_ext``. It runs the
notebook as papermill's default engine (nbclient) does; the additions are the events, the
saving of image outputs as artifacts, the kernel's pid for clean cancels, and what it takes
for no output to be lost:

- zmq's high-water marks are lifted on both ends of IOPub. A PUB socket DROPS messages
  for a subscriber whose queue holds 1000 (the default on the kernel's socket and on the
  client's), so a cell printing faster than the runner reads (`print(i, flush=True)` is one
  message per line) silently lost lines, and losing the final `idle` status made nbclient
  wait for it until "Timeout waiting for IOPub output".
- stream messages already waiting are merged before they are processed (as the kernel's
  own buffering and Lab's output area would merge them), so the runner catches up with a
  fast cell instead of falling further behind; nothing is merged when it keeps up.
- the IOPub timeout after a cell's reply counts from the last message received, not from
  the reply: a runner that is still working through a backlog is not "waiting for output".

Metrics (`jupyter_ext.log_metric` outputs, Kale's `pipeline-metrics` cell) become `metric` events
here too; what a metric is lives in metrics.py.

Why this module is long: it is one nbclient client and its engine, each addition an override of
one nbclient method (cell loop, IOPub polling, the reply wait, message processing) sharing the
client's state; split apart, the pieces would reach into each other's private fields.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from queue import Empty
from typing import Any

import zmq
from nbclient.client import timestamp
from nbclient.exceptions import CellExecutionComplete, CellExecutionError, CellTimeoutError, DeadKernelError
from nbclient.util import ensure_async
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine
from papermill.log import logger
from papermill.utils import remove_args

from .cancel import Canceller, StepCancelled
from .emitter import Emitter
from .metrics import KALE_METRICS_TAG, kale_metrics, output_metric

IMAGE_TYPES = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/svg+xml": "svg"}
# How much waiting IOPub traffic is taken in one go, and how much stream text one merged
# output may hold (a single larger message is kept whole).
DRAIN_MESSAGES = 5000
MERGE_TEXT = 1 << 20
SAVE_EVERY = 10.0  # seconds between writes of the executed notebook while cells run

# Lifts the kernel's IOPub send limit (ipykernel; other kernels are left as they are). Set in
# the IOPub thread, which owns the socket; libzmq applies it to the connected pipes too.
UNBOUNDED_IOPUB = """\
def _je_unbounded_iopub():
    import zmq
    thread = get_ipython().kernel.iopub_thread
    thread.schedule(lambda: thread.socket.setsockopt(zmq.SNDHWM, 0))
try:
    _je_unbounded_iopub()
except Exception:
    pass
del _je_unbounded_iopub
"""


class KernelDied(RuntimeError):
    """The kernel process ended while a cell ran (killed by a signal, or exited)."""

    def __init__(self, returncode: int | None, ids: dict[str, Any]) -> None:
        self.returncode = returncode
        self.ids = ids
        super().__init__(f"the kernel died ({describe_exit(returncode)})")

    @property
    def signal(self) -> int | None:
        return -self.returncode if self.returncode is not None and self.returncode < 0 else None


def describe_exit(returncode: int | None) -> str:
    """-9 -> 'killed by SIGKILL', 3 -> 'exit code 3', None -> 'how is unknown'."""
    if returncode is None:
        return "how is unknown"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def _parent_id(msg: dict[str, Any]) -> Any:
    return (msg.get("parent_header") or {}).get("msg_id")


def source_index(cell: Any, position: int, offset: int) -> int | None:
    """Index of `cell` in the notebook the user wrote (not the sliced or parameterised one)."""
    meta = cell.get("metadata", {}).get("jupyter_ext", {})
    if "source_index" in meta:
        return int(meta["source_index"])
    if meta.get("internal") or "injected-parameters" in cell.get("metadata", {}).get("tags", []):
        return None
    return position - offset


# After a cell's execute_reply, nbclient waits at most `iopub_timeout` for the rest of the cell's
# output and papermill makes that an error. A cell that floods flushed lines (or a 50 MB write)
# leaves more than 4 s (nbclient's default) of output queued behind the reply whenever the runner
# or the events' reader (a pod log, a pipe) is slower than the kernel. The output is not lost (see
# unbounded_iopub), it is only late: EventClient waits for it as long as messages keep coming, and
# gives up only after this long with none at all.
IOPUB_DRAIN_TIMEOUT = 600


def unbounded_iopub(owner: Any) -> None:
    """No receive high-water mark on the client's IOPub socket: zmq then moves every IOPub message
    off the wire into the client as it comes, so the kernel's PUB socket (which DROPS messages for a
    subscriber whose queue is full, 1000 by default) never sees a full queue behind a slow reader.

    `owner` is a kernel client (its connected IOPub socket is changed: libzmq applies a new HWM to
    pipes that exist) or anything with a zmq `context` (sockets it makes from now on)."""
    socket = getattr(getattr(owner, "iopub_channel", None), "socket", None)
    if socket is not None:
        socket.setsockopt(zmq.RCVHWM, 0)
    context = getattr(owner, "context", None)
    if context is not None:
        context.setsockopt(zmq.RCVHWM, 0)


class EventClient(PapermillNotebookClient):
    """nbclient client whose hooks turn execution into events."""

    def __init__(
        self,
        nb_man: Any,
        emitter: Emitter,
        artifacts_dir: str | None = None,
        setup_code: str | None = None,
        cancel: Canceller | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(nb_man, **kw)
        self.emitter = emitter
        self.setup_code = setup_code
        self.cancel = cancel
        self._iopub_pending: collections.deque[dict[str, Any]] = collections.deque()
        self._iopub_seen = 0
        self._kernel_exit: int | None = None
        self.artifacts_dir = Path(artifacts_dir) if artifacts_dir else None
        self._where: dict[int, dict[str, Any]] = {}
        self._image_count: dict[int, int] = {}
        self.saved_artifacts: set[str] = set()

    async def async_start_new_kernel_client(self) -> Any:
        unbounded_iopub(self.km)
        return await super().async_start_new_kernel_client()

    # -- mapping cells back to the user's notebook -------------------------------------------
    def _index_cells(self) -> None:
        offset = 0
        for position, cell in enumerate(self.nb.cells):
            idx = source_index(cell, position, offset)
            tags = cell.get("metadata", {}).get("tags", [])
            meta = cell.get("metadata", {}).get("jupyter_ext", {})
            if idx is None and "source_index" not in meta:
                offset += 1
            self._where[position] = {
                "cell_index": idx,
                "cell_id": cell.get("id"),
                "internal": meta.get("internal"),
                "injected": "injected-parameters" in tags,
            }

    def _ids(self, position: int) -> dict[str, Any]:
        where = self._where.get(position, {})
        ids = {"cell_index": where.get("cell_index"), "cell_id": where.get("cell_id")}
        if where.get("injected"):
            ids["injected"] = True
        return ids

    # -- execution -----------------------------------------------------------------------------
    def _cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.requested.is_set()

    def _prepare_kernel(self) -> None:
        unbounded_iopub(self.kc)
        language = getattr(getattr(self.km, "kernel_spec", None), "language", "") or ""
        code = (UNBOUNDED_IOPUB if language.lower() == "python" else "") + (self.setup_code or "")
        if not code:
            return
        reply = self.wait_for_reply(self.kc.execute(code, silent=True, store_history=False))
        if not reply or reply["content"].get("status") != "ok":
            content = (reply or {}).get("content", {})
            raise RuntimeError(f"preparing the kernel failed: {content.get('ename')}: {content.get('evalue')}")

    def papermill_execute_cells(self) -> None:
        self._index_cells()
        self._prepare_kernel()
        pid = getattr(getattr(self.km, "provisioner", None), "pid", None)
        if pid and os.environ.get("JUPYTER_EXT_KERNEL_PID_FILE"):
            Path(os.environ["JUPYTER_EXT_KERNEL_PID_FILE"]).write_text(str(pid))
        if self.cancel is not None:
            self.cancel.executing(pid)
        try:
            with spaced_saves(self.nb_man):
                self._run_cells()
        finally:
            if self.cancel is not None:
                self.cancel.done_executing()

    def _run_cells(self) -> None:
        for index, cell in enumerate(self.nb.cells):
            if self._cancelled():
                raise StepCancelled()
            where = self._where[index]
            visible = cell.cell_type == "code" and not where["internal"]
            if visible:
                self.emitter.emit("cell.start", **self._ids(index), source=cell.source)
            started = time.monotonic()
            failed: CellExecutionError | None = None
            try:
                self.nb_man.cell_start(cell, index)
                self.execute_cell(cell, index)
            except CellExecutionError as ex:
                if self._cancelled():
                    raise StepCancelled() from None  # the interrupt we sent, not the user's error
                failed = ex
                self.nb_man.cell_exception(self.nb.cells[index], cell_index=index, exception=ex)
            except DeadKernelError:
                if self._cancelled():
                    raise StepCancelled() from None  # killed by us after it ignored the interrupt
                returncode = self._kernel_exit if self._kernel_exit is not None else self._kernel_returncode()
                raise KernelDied(returncode, self._ids(index)) from None
            finally:
                self.nb_man.cell_complete(self.nb.cells[index], cell_index=index)
            if failed is None and visible and KALE_METRICS_TAG in (cell.get("metadata", {}).get("tags") or []):
                kale_metrics(cell.source, self._evaluate, self.emitter.emit, self._ids(index))
            if visible or failed is not None:
                end: dict[str, Any] = {
                    **self._ids(index),
                    "status": "error" if failed else "ok",
                    "duration": round(time.monotonic() - started, 4),
                    "execution_count": self.nb.cells[index].get("execution_count"),
                }
                if where["internal"]:
                    end["internal"] = where["internal"]
                if failed is not None:
                    end.update(ename=failed.ename, evalue=failed.evalue, traceback=_traceback(self.nb.cells[index]))
                self.emitter.emit("cell.end", **end)
            if failed is not None:
                break

    # -- IOPub: nothing dropped, backlog merged, timeout measured from the last message ----------
    async def _async_poll_output_msg(self, parent_msg_id: str, cell: Any, cell_index: int) -> None:
        assert self.kc is not None
        channel = self.kc.iopub_channel
        pending = self._iopub_pending
        while True:
            if not pending:
                pending.append(await ensure_async(channel.get_msg(timeout=None)))
                self._iopub_seen += 1
                while len(pending) < DRAIN_MESSAGES:
                    try:
                        pending.append(await ensure_async(channel.get_msg(timeout=0)))
                    except Empty:
                        break
                    self._iopub_seen += 1
            msg = pending.popleft()
            if _parent_id(msg) != parent_msg_id:
                continue  # another request's (e.g. the silent set-up code's): nbclient skips these too
            try:
                self.process_message(self._merge_waiting(msg, parent_msg_id), cell, cell_index)
            except CellExecutionComplete:
                return

    def _merge_waiting(self, msg: dict[str, Any], parent_msg_id: str) -> dict[str, Any]:
        """`msg` plus the stream messages of the same stream waiting right behind it."""
        if msg.get("msg_type") != "stream":
            return msg
        pending = self._iopub_pending
        name = msg["content"].get("name")
        parts = [msg["content"].get("text", "")]
        size = len(parts[0])
        while pending and size < MERGE_TEXT:
            nxt = pending[0]
            if nxt.get("msg_type") != "stream" or _parent_id(nxt) != parent_msg_id:
                break
            if nxt["content"].get("name") != name:
                break
            pending.popleft()
            parts.append(nxt["content"].get("text", ""))
            size += len(parts[-1])
        if len(parts) == 1:
            return msg
        return {**msg, "content": {**msg["content"], "text": "".join(parts)}}

    async def _outputs_done(self, task: asyncio.Future[Any]) -> None:
        """Wait for the cell's outputs to end (its `idle` status) while messages keep arriving."""
        while True:
            seen = self._iopub_seen
            done, _ = await asyncio.wait({task}, timeout=self.iopub_timeout)
            if done:
                return task.result()
            if self._iopub_seen == seen:
                task.cancel()
                raise asyncio.TimeoutError

    async def _async_poll_for_reply(
        self,
        msg_id: str,
        cell: Any,
        timeout: int | None,
        task_poll_output_msg: asyncio.Future[Any],
        task_poll_kernel_alive: asyncio.Future[Any],
    ) -> dict[str, Any]:
        # nbclient 0.10's own method, except that the wait for the outputs after the reply is
        # _outputs_done (from the last message) instead of one iopub_timeout from the reply.
        assert self.kc is not None
        new_timeout: float | None = None
        if timeout is not None:
            deadline = time.monotonic() + timeout
            new_timeout = float(timeout)
        error_on_timeout_execute_reply = None
        while True:
            try:
                if error_on_timeout_execute_reply:
                    msg = error_on_timeout_execute_reply
                    msg["parent_header"] = {"msg_id": msg_id}
                else:
                    msg = await ensure_async(self.kc.shell_channel.get_msg(timeout=new_timeout))
                if msg["parent_header"].get("msg_id") == msg_id:
                    if self.record_timing:
                        cell["metadata"]["execution"]["shell.execute_reply"] = timestamp(msg)
                    try:
                        await self._outputs_done(task_poll_output_msg)
                    except (asyncio.TimeoutError, Empty):
                        if self.raise_on_iopub_timeout:
                            task_poll_kernel_alive.cancel()
                            raise CellTimeoutError.error_from_timeout_and_cell(
                                "Timeout waiting for IOPub output", self.iopub_timeout, cell
                            ) from None
                        self.log.warning("Timeout waiting for IOPub output")
                    task_poll_kernel_alive.cancel()
                    return msg
                if new_timeout is not None:
                    new_timeout = max(0, deadline - time.monotonic())
            except Empty:
                assert timeout is not None
                task_poll_kernel_alive.cancel()
                await self._async_check_alive()
                error_on_timeout_execute_reply = await self._async_handle_timeout(timeout, cell)

    # -- why the kernel died -----------------------------------------------------------------------------
    def _kernel_returncode(self) -> int | None:
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        try:
            return process.poll() if process is not None else None
        except OSError:
            return None

    async def _async_check_alive(self) -> None:
        try:
            await super()._async_check_alive()
        except DeadKernelError:
            # Read now: the kernel's clean-up forgets the process before the error reaches us.
            self._kernel_exit = self._kernel_returncode()
            raise

    def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
        output = super().process_message(msg, cell, cell_index)
        msg_type = msg.get("header", {}).get("msg_type")
        where = self._where.get(cell_index, {})
        if where.get("internal") and msg_type != "error":
            return output
        if msg_type == "error" and self._cancelled():
            return output  # the KeyboardInterrupt of our own interrupt: cancel is not an error
        if msg_type == "clear_output":
            self.emitter.emit("cell.clear", **self._ids(cell_index), wait=bool(msg["content"].get("wait")))
        elif msg_type == "update_display_data":
            content = msg["content"]
            self.emitter.emit(
                "cell.output",
                **self._ids(cell_index),
                output={
                    "output_type": "display_data",
                    "data": content.get("data", {}),
                    "metadata": content.get("metadata", {}),
                },
                display_id=content.get("transient", {}).get("display_id"),
                update=True,
            )
        elif output is not None:
            extra: dict[str, Any] = {}
            display_id = msg.get("content", {}).get("transient", {}).get("display_id")
            if display_id:
                extra["display_id"] = display_id
            artifact = self._save_image(output, cell_index)
            if artifact:
                extra["artifact"] = artifact
            self.emitter.emit("cell.output", **self._ids(cell_index), output=_plain(output), **extra)
            metric = output_metric(output.get("data")) if msg_type == "display_data" else None
            if metric is not None:  # jupyter_ext.log_metric: the output stays, and is a metric too
                ids = self._ids(cell_index)
                self.emitter.emit("metric", name=metric[0], value=metric[1], cell=ids["cell_index"], **ids)
        return output

    def _evaluate(self, expressions: dict[str, str]) -> dict[str, Any]:
        """The kernel's `user_expressions` results for `expressions` (a silent request: no output)."""
        assert self.kc is not None
        reply = self.wait_for_reply(self.kc.execute("", silent=True, store_history=False, user_expressions=expressions))
        return dict(((reply or {}).get("content") or {}).get("user_expressions") or {})

    def _save_image(self, output: Any, position: int) -> str | None:
        """Keep each image output as an artifact so it can be previewed and downloaded."""
        if self.artifacts_dir is None:
            return None
        data = output.get("data") or {}
        for mime, ext in IMAGE_TYPES.items():
            if mime not in data:
                continue
            idx = self._where.get(position, {}).get("cell_index")
            count = self._image_count.get(position, 0) + 1
            self._image_count[position] = count
            label = f"cell{idx}" if idx is not None else f"cell-p{position}"
            name = f"{label}-output{count}.{ext}"
            raw = data[mime]
            payload = raw.encode() if mime == "image/svg+xml" else base64.b64decode("".join(raw))
            self.artifacts_dir.mkdir(parents=True, exist_ok=True)
            (self.artifacts_dir / name).write_bytes(payload)
            self.saved_artifacts.add(name)
            return name
        return None


@contextlib.contextmanager
def spaced_saves(nb_man: Any, every: float = SAVE_EVERY) -> Iterator[None]:
    """While cells run, write the executed notebook at most every `every` seconds, not whole at each
    cell's start and end (no one reads it: events are the live channel); notebook_complete writes it."""
    real = nb_man.save

    def save(**kwargs: Any) -> None:
        if (nb_man.now() - nb_man.last_save_time).total_seconds() >= every:
            real(**kwargs)

    nb_man.save = save
    try:
        yield
    finally:
        nb_man.save = real


def _plain(node: Any) -> Any:
    """NotebookNode -> plain JSON-able dict (lists of lines joined as nbformat allows both)."""
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _traceback(cell: Any) -> list[str]:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return list(out.get("traceback", []))
    return []


class EventEngine(NBClientEngine):
    """papermill engine ``jupyter_ext``: NBClientEngine plus events (needs `emitter=`)."""

    @classmethod
    def execute_managed_notebook(
        cls,
        nb_man: Any,
        kernel_name: str,
        log_output: bool = False,
        stdout_file: Any = None,
        stderr_file: Any = None,
        start_timeout: int = 60,
        execution_timeout: Any = None,
        **kwargs: Any,
    ) -> Any:
        emitter = kwargs.pop("emitter", None)
        artifacts_dir = kwargs.pop("artifacts_dir", None)
        setup_code = kwargs.pop("setup_code", None)
        cancel = kwargs.pop("cancel", None)
        kc = kwargs.pop("kc", None)
        if emitter is None:
            # Used without our runner (plain `papermill --engine jupyter_ext`): behave like nbclient.
            return super().execute_managed_notebook(
                nb_man, kernel_name, log_output, stdout_file, stderr_file, start_timeout, execution_timeout, **kwargs
            )
        kwargs = remove_args(["input_path"], **kwargs)
        safe_kwargs = remove_args(["timeout", "startup_timeout"], **kwargs)
        final_kwargs = {
            **safe_kwargs,
            "timeout": execution_timeout if execution_timeout else kwargs.get("timeout"),
            "startup_timeout": start_timeout,
            "kernel_name": kernel_name,
            "log": logger,
            "log_output": log_output,
            "stdout_file": stdout_file,
            "stderr_file": stderr_file,
            "iopub_timeout": IOPUB_DRAIN_TIMEOUT,
        }
        client = EventClient(nb_man, emitter, artifacts_dir, setup_code, cancel, **final_kwargs)
        if kc is not None:
            client.kc = kc  # the warm pool's client, already connected: skips a kernel_info round trip
        result = client.execute()
        nb_man.saved_artifacts = client.saved_artifacts
        return result
