"""In-memory fan-out of stored events to live subscribers (WebSocket handlers, the CLI).

(Named `fanout`, not `hub`: jupyter_ext.hub is the JupyterHub integration.)

Events are stored first (store.py gives them their `seq`), then published here. A subscriber
reads the backlog from the store and then the live queue, dropping anything with a `seq` it
has already seen, so subscribing and catching up can overlap safely.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any


class EventFanout:
    """Per-job subscriber queues. Publishing never blocks: slow readers get an unbounded queue."""

    def __init__(self) -> None:
        self._subs: dict[str, set[asyncio.Queue[list[dict[str, Any]]]]] = defaultdict(set)

    def subscribe(self, job_id: str) -> asyncio.Queue[list[dict[str, Any]]]:
        queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
        self._subs[job_id].add(queue)
        return queue

    def unsubscribe(self, job_id: str, queue: asyncio.Queue[list[dict[str, Any]]]) -> None:
        subs = self._subs.get(job_id)
        if subs is not None:
            subs.discard(queue)
            if not subs:
                del self._subs[job_id]

    def publish(self, job_id: str, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        for queue in list(self._subs.get(job_id, ())):
            queue.put_nowait(events)

    def subscribers(self, job_id: str) -> int:
        return len(self._subs.get(job_id, ()))
