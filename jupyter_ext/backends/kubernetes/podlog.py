"""The pod log as the event channel: the runner's events of one attempt, in order, each once.

The runner writes one JSON event per line on stdout; the pod log is read with timestamps and
followed while the pod runs. A dropped stream is resumed with `sinceTime` and what was seen
already is dropped by the runner's `n`. A stream is ended by the pod's phase, not by the stream
closing (some kubelets, and KWOK, keep it open forever). After a container restart the previous
container's log (`previous=true`) is read to its end before the new one is followed; the events of
the container that has restarted r times are numbered from r * RESTART_STRIDE.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from ...errors import BackendError
from ...runner.emitter import parse_line
from .manifests import CONTAINER_NAME
from .podstatus import has_ended, restart_count
from .reflector import Reflector

LOG_DRAIN_ATTEMPTS = 8  # reads of an ended pod's log (backing off to 4 s, about 20 s in all) before giving up
LOG_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
RESTART_STRIDE = 10**9  # events of the container that restarted r times are numbered from r * this
MAX_LOG_LINE = 64 * 2**20


@dataclass(frozen=True)
class LogRead:
    """One pods/log request: of the container that has restarted `instance` times."""

    previous: bool
    follow: bool
    instance: int


@dataclass
class _LogState:
    since: str | None  # timestamp of the last line read: where a new request starts
    last_n: int  # highest event number passed on
    reading: int  # restart count of the container being read
    failed: bool = False
    error: str | None = None  # why the last read failed
    saw_end: bool = False  # the runner's step.end arrived


def plan_log_reads(restarts: int, reading: int, final: bool) -> list[LogRead]:
    """Which log requests come next, given the container's restartCount and the one being read.

    Same container: read (follow unless the pod has ended) the current log. It restarted:
    first the rest of the previous container's log (`previous=true`, not followed), then the
    current one. Containers older than the previous one are gone from the node: their unread
    events are lost (Kubernetes keeps one previous log).
    """
    current = LogRead(previous=False, follow=not final, instance=restarts)
    if restarts > reading:
        return [LogRead(previous=True, follow=False, instance=restarts - 1), current]
    return [current]


async def read_lines(content: Any) -> AsyncIterator[bytes]:
    """Lines of a response body, however long (an image output is one long event line)."""
    buf = bytearray()
    while True:
        chunk = await content.readany()
        if not chunk:
            if buf:
                yield bytes(buf)
            return
        start = len(buf)
        buf += chunk
        while (end := buf.find(b"\n", start)) >= 0:
            yield bytes(buf[: end + 1])
            del buf[: end + 1]
            start = 0
        if len(buf) > MAX_LOG_LINE:  # not one of ours: drop it rather than grow without bound
            buf.clear()


class PodLog:
    """Follows the log of one attempt's pod until the pod has ended and its log is drained.

    After `follow` is exhausted, `saw_end` says whether the runner's step.end was read (or was
    stored before a restart: `after > 0`) and `unreadable` why the log could not be read to
    its end (None when it was).
    """

    def __init__(
        self,
        api: Any,
        pods: Reflector,
        namespace: str,
        pod: str,
        current: Callable[[], dict[str, Any] | None],
        *,
        after: int,
        request_timeout: float,
        log: logging.Logger | logging.LoggerAdapter[Any],
    ) -> None:
        self.api = api
        self.pods = pods
        self.namespace = namespace
        self.pod = pod
        self.current = current  # the pod's object in the watch cache, None once it is gone
        self.request_timeout = request_timeout
        self.log = log
        # The container whose events were passed on last (0 at first): a restart since then is
        # caught up with below, whether it happened while we followed or while the server was down.
        self.state = _LogState(since=None, last_n=after, reading=after // RESTART_STRIDE)
        self.resumed = after > 0  # resumed after the server restarted: step.end may be stored already
        self.unreadable: str | None = None

    @property
    def saw_end(self) -> bool:
        return self.resumed or self.state.saw_end

    async def follow(self) -> AsyncIterator[list[dict[str, Any]]]:
        """The runner's events, in order, each once, in batches, until the pod has ended."""
        state = self.state
        drain_attempts = 0

        def ended() -> bool:
            current = self.current()
            if has_ended(current):
                return True
            return restart_count(current) != state.reading  # a new container: re-plan the reads

        while True:
            current = self.current()
            final = has_ended(current)
            state.failed = False
            for read in plan_log_reads(restart_count(current), state.reading, final):
                state.reading = read.instance
                async for batch in self._read(read, None if read.previous else ended):
                    yield batch
            if final and not state.failed:
                return
            if current is None:
                # the pod is gone (deleted, or garbage-collected with its Job): so is its log
                if not state.saw_end:
                    self.unreadable = state.error or "the pod was deleted"
                return
            if final:
                drain_attempts += 1
                if drain_attempts > LOG_DRAIN_ATTEMPTS:
                    self.log.warning("jupyter-ext: gave up reading the rest of pod %s's log", self.pod)
                    self.unreadable = state.error or "the stream kept dropping"
                    return
            # the stream dropped (or the API was away): resume from `since`, backing off to 4 s
            await asyncio.sleep(min(4.0, 0.5 * 2 ** max(0, drain_attempts - 1)))

    async def _request(self, read: LogRead, queue: asyncio.Queue[list[dict[str, Any]] | None]) -> None:
        """One pods/log request, its events put on `queue`, then None."""
        state = self.state
        offset = read.instance * RESTART_STRIDE
        # Called through call_api: the generated read_namespaced_pod_log has no sinceTime.
        query: list[tuple[str, str]] = [("container", CONTAINER_NAME), ("timestamps", "true")]
        if read.follow:
            query.append(("follow", "true"))
        if read.previous:
            query.append(("previous", "true"))
        if state.since:
            query.append(("sinceTime", state.since))
        try:
            resp: Any = await self.api.call_api(
                "/api/v1/namespaces/{namespace}/pods/{name}/log",
                "GET",
                path_params={"namespace": self.namespace, "name": self.pod},
                query_params=query,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=None if read.follow else self.request_timeout,
            )
            try:
                if resp.status != 200:
                    body = (await resp.read())[:300].decode("utf-8", "replace")
                    raise BackendError(f"pods/log answered {resp.status}: {body}")
                async for line in read_lines(resp.content):
                    stamp, _, text = line.decode("utf-8", "replace").partition(" ")
                    if not LOG_STAMP.fullmatch(stamp):
                        continue
                    state.since = stamp
                    event = parse_line(text)
                    if event is not None and isinstance(event.get("n"), int):
                        if event.get("type") == "step.end":
                            state.saw_end = True
                        event["n"] += offset
                        queue.put_nowait([event])
            finally:
                resp.release()
        except Exception as exc:  # noqa: BLE001 - a dropped stream is resumed by the caller
            if not read.previous:  # a previous container's log may be gone: nothing to resume
                state.failed = True
                state.error = str(exc) if isinstance(exc, BackendError) else repr(exc)
            self.log.warning("jupyter-ext: reading the log of pod %s failed: %r", self.pod, exc)
        finally:
            queue.put_nowait(None)

    async def _read(self, read: LogRead, ended: Callable[[], bool] | None) -> AsyncIterator[list[dict[str, Any]]]:
        """One pods/log request; with `ended`, followed until the stream ends or `ended()` turns true."""
        state = self.state
        queue: asyncio.Queue[list[dict[str, Any]] | None] = asyncio.Queue()
        task = asyncio.create_task(self._request(read, queue))
        # A finished read runs to its end (nothing to race against); a follow stops when `ended()`.
        watcher = asyncio.create_task(self.pods.wait_for(ended) if ended and read.follow else asyncio.Event().wait())
        try:
            while True:
                getter = asyncio.create_task(queue.get())
                done, _ = await asyncio.wait({getter, watcher}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()  # the pod ended (or restarted) while we followed: the caller drains
                    break
                batch = getter.result()
                if batch is None:
                    break
                # everything already read goes out as one batch (one store transaction, not one per line)
                ended_here = False
                while not queue.empty() and len(batch) < 2000:
                    more = queue.get_nowait()
                    if more is None:
                        ended_here = True
                        break
                    batch = batch + more
                fresh = [e for e in batch if int(e.get("n", 0)) > state.last_n]
                if fresh:
                    state.last_n = max(int(e["n"]) for e in fresh)
                    yield fresh
                if ended_here:
                    break
        finally:
            watcher.cancel()
            task.cancel()
            await asyncio.gather(task, watcher, return_exceptions=True)
