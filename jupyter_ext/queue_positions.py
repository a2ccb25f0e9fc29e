"""Each waiting attempt's place in its backend's line for a slot, kept in the store
(`steps.queue_position`), so `ls`, the panel and the job view can say 'queued (2nd in line)'.

Backends call `changed()` whenever their line moves; the positions are written soon after, in
one transaction for a burst of changes. They are advice: a failed write is logged and the next
change writes them again.
"""

from __future__ import annotations

import asyncio
import logging

from .backends.base import Backend
from .store import AsyncStore

log = logging.getLogger("jupyter_ext")

Key = tuple[str, str]  # (job id, step)


class QueuePositions:
    """Listens to every backend's line and writes the places that changed."""

    def __init__(self, store: AsyncStore, backends: dict[str, Backend]) -> None:
        self.store = store
        self.backends = backends
        self._written: dict[Key, int] = {}  # positions last written to the store
        self._flush: asyncio.Task[None] | None = None
        self._dirty = False
        self._stopping = False
        for backend in backends.values():
            backend.on_queue_change = self.changed

    def changed(self) -> None:
        """A backend's line of attempts waiting for capacity moved: write the new positions soon."""
        self._dirty = True
        if self._stopping:
            return  # waiters cancelled by stop(): the store is closing, the next start says it again
        if self._flush is None or self._flush.done():
            self._flush = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        while self._dirty:
            self._dirty = False
            await asyncio.sleep(0)  # let the rest of this burst of changes happen first
            positions: dict[Key, int] = {}
            for backend in self.backends.values():
                for position, (job_id, step) in enumerate(backend.queue(), start=1):
                    positions.setdefault((job_id, step), position)
            changed: dict[Key, int | None] = {k: v for k, v in positions.items() if self._written.get(k) != v}
            changed.update({k: None for k in self._written if k not in positions})
            try:
                if changed:
                    await self.store.set_queue_positions(changed)
            except Exception:  # noqa: BLE001 - positions are advice; the next change writes them again
                log.exception("jupyter-ext: could not record queue positions")
                self._written = {}
                continue
            self._written = positions

    async def stop(self) -> None:
        """Write no more (the orchestrator is stopping its drivers, whose waiters leave the lines)."""
        self._stopping = True
        if self._flush is not None:
            self._flush.cancel()
            await asyncio.gather(self._flush, return_exceptions=True)

    async def clear(self) -> None:
        """Nobody here waits in line any more: no stale places for `ls` to show."""
        if not self._written:
            return
        try:
            await self.store.set_queue_positions({k: None for k in self._written})
        except Exception:  # noqa: BLE001 - the next start writes them again
            log.exception("jupyter-ext: could not clear queue positions")
        self._written = {}
