"""A job's events, the backlog then live: the one loop behind every reader of a job's events (the
WebSocket stream, the in-process session of the CLI and `%%remote`).

Events are stored first (the store gives each the next `seq` of its job, without gaps), then
published to the fan-out's subscribers. The loop subscribes before it reads the store, so no event
falls between the two; anything it has seen already (the backlog and a live batch overlap) is
dropped by its `seq`, and a live batch that does not follow on from the last `seq` sent (a reader
that fell behind, events another process stored) is read from the store instead. So what it yields
has every `seq` after `after`, once, in order.

A job that no fan-out here announces (driven by another process: a server, a detached `run`) is
followed by looking at the store again every `poll` seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import Any, Protocol

from .contract import TERMINAL
from .records import JobRecord

Event = dict[str, Any]


class EventSource(Protocol):
    """The part of the store the loop reads (`AsyncStore`)."""

    async def events(self, job_id: str, after: int = 0, limit: int = 10000) -> list[Event]: ...

    async def get_job(self, job_id: str, user: str | None = None) -> JobRecord: ...


class FanOut(Protocol):
    """The part of the fan-out the loop listens to (`fanout.EventFanout`)."""

    def subscribe(self, job_id: str) -> asyncio.Queue[list[Event]]: ...

    def unsubscribe(self, job_id: str, queue: asyncio.Queue[list[Event]]) -> None: ...


async def follow(
    store: EventSource,
    job_id: str,
    after: int = 0,
    *,
    fanout: FanOut | None = None,
    live: Callable[[], bool] = lambda: False,
    poll: float = 0.25,
    recheck: float = 10.0,
    page: int = 2000,
) -> AsyncGenerator[list[Event], None]:
    """Batches of the job's events with `seq` > `after`, until `job.end` (or, resumed past it, as
    soon as the job has ended and nothing is left to read). `live()` says whether `fanout`
    announces this job's events now (its driver runs in this process): then the loop waits on the
    fan-out, looking at the store every `recheck` seconds all the same; else every `poll` seconds.
    Read the job first if it must exist: a job deleted meanwhile raises `NotFound` here."""
    queue = fanout.subscribe(job_id) if fanout is not None else None
    try:
        while True:
            while True:  # the backlog, page by page
                backlog = await store.events(job_id, after, page)
                batch, after, ended = _newer(backlog, after)
                if batch:
                    yield batch
                if ended:
                    return
                if len(backlog) < page:
                    break
            job = await store.get_job(job_id)
            if job["status"] in TERMINAL and after >= job["last_seq"]:
                return  # resumed past job.end, or a job that ended without one
            while True:  # live: what the fan-out announces, while it follows on from what was sent
                if queue is None or not live():
                    await asyncio.sleep(poll)
                    break
                try:
                    announced = await asyncio.wait_for(queue.get(), recheck)
                except asyncio.TimeoutError:
                    break
                new = [e for e in announced if e["seq"] > after]
                if not new:
                    continue  # seen already (it was in the backlog)
                if new[0]["seq"] != after + 1:
                    break  # a gap: the store has what is missing
                batch, after, ended = _newer(new, after)
                yield batch
                if ended:
                    return
                if len(batch) < len(new):
                    break  # a gap inside the batch
    finally:
        if queue is not None and fanout is not None:
            fanout.unsubscribe(job_id, queue)


def _newer(events: list[Event], after: int) -> tuple[list[Event], int, bool]:
    """The events after `after` (up to `job.end`), the last seq among them, and whether job.end came."""
    batch: list[Event] = []
    for event in events:
        if event["seq"] <= after:
            continue
        if event["seq"] != after + 1 and batch:
            break  # not expected from one store read or one publish; the store fills it next round
        batch.append(event)
        after = event["seq"]
        if event["type"] == "job.end":
            return batch, after, True
    return batch, after, False
