"""session.py: a running server (ServerSession, REST + WebSocket) and this process (InProcessSession,
the same job database) answer alike; follow.py's loop sends every seq once, in order, whatever
the backlog and the live fan-out overlap."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from jupyter_ext.client import ServerSession
from jupyter_ext.errors import NotFound
from jupyter_ext.follow import follow
from jupyter_ext.session import InProcessSession, Session

Event = dict[str, Any]


async def collect(session: Session, job_id: str, after: int = 0) -> list[Event]:
    return [e async for e in session.events(job_id, after)]


@pytest.mark.slow
def test_the_server_and_this_process_give_the_same_events_of_a_job(
    server: Any, notebooks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.server.realserver import TOKEN

    server.start()
    monkeypatch.setenv("JUPYTER_EXT_DATA_DIR", str(server.data_dir))  # the server's job database
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(server.home / "config"))

    async def main() -> None:
        remote = ServerSession(f"http://127.0.0.1:{server.port}/", TOKEN, str(notebooks))
        await remote.info()
        here = InProcessSession(notebooks)
        assert remote.user == here.user and remote.url is not None and here.url is None
        try:
            job = await remote.submit({"notebook": "slow.ipynb", "parameters": {"ticks": 8, "delay": 0.2}})
            # Both follow it live from its start: the WebSocket (server's fan-out), and this process
            # reading the database another process (the server) writes.
            over_ws, from_db = await asyncio.gather(collect(remote, job["id"]), collect(here, job["id"]))
            seqs = [e["seq"] for e in over_ws]
            assert seqs == list(range(1, len(seqs) + 1)), "every seq once, in order"
            assert over_ws[-1]["type"] == "job.end" and over_ws[-1]["status"] == "succeeded"
            assert sum(e["type"] == "cell.output" for e in over_ws) >= 9  # 8 ticks and 'done'
            assert from_db == over_ws
            # After the end: the whole backlog, and resumed from the middle or past the end.
            middle = len(over_ws) // 2
            assert await collect(remote, job["id"], middle) == await collect(here, job["id"], middle)
            assert await collect(here, job["id"], middle) == over_ws[middle:]
            assert await collect(remote, job["id"], len(over_ws)) == await collect(here, job["id"], len(over_ws)) == []
            assert await remote.history(job["id"]) == await here.history(job["id"]) == over_ws
            assert await remote.history(job["id"], middle) == over_ws[middle:]
            assert await remote.job(job["id"]) == await here.job(job["id"])
            assert await remote.artifacts(job["id"]) == await here.artifacts(job["id"])
            assert [j["id"] for j in await remote.jobs()] == [j["id"] for j in await here.jobs()] == [job["id"]]
            for session in (remote, here):
                with pytest.raises(NotFound):
                    await collect(session, "nosuchjob0001")
            # prune with only one of its criteria (the server refused the other one sent as null)
            for session in (remote, here):
                assert await session.prune(None, 1, dry_run=True) == []
                assert await session.prune("30d", None, dry_run=True) == []
            assert await remote.prune(None, 0, dry_run=True) == [job["id"]]
        finally:
            await here.close()

    asyncio.run(asyncio.wait_for(main(), 240))


# -- follow.py's loop, on a store and a fan-out it is told about ---------------------------------------------------
class Store:
    """The part of AsyncStore the loop reads: events by seq, the job's status and last seq."""

    def __init__(self, n: int = 0, status: str = "running") -> None:
        self.stored: list[Event] = []
        self.status = status
        self.asked = asyncio.Event()  # set once the reader has read its backlog and asked for the job
        self.add(n)

    def add(self, n: int, end: bool = False) -> list[Event]:
        new = []
        for _ in range(n):
            seq = len(self.stored) + 1
            new.append({"seq": seq, "type": "log", "text": f"line {seq}\n"})
            self.stored.append(new[-1])
        if end:
            new.append({"seq": len(self.stored) + 1, "type": "job.end", "status": "succeeded"})
            self.stored.append(new[-1])
            self.status = "succeeded"
        return new

    async def events(self, job_id: str, after: int = 0, limit: int = 10000) -> list[Event]:
        return [e for e in self.stored if e["seq"] > after][:limit]

    async def get_job(self, job_id: str, user: str | None = None) -> Any:
        self.asked.set()
        return {"status": self.status, "last_seq": len(self.stored)}


class FanOut:
    def __init__(self) -> None:
        self.queues: dict[str, list[asyncio.Queue[list[Event]]]] = defaultdict(list)

    def subscribe(self, job_id: str) -> asyncio.Queue[list[Event]]:
        self.queues[job_id].append(asyncio.Queue())
        return self.queues[job_id][-1]

    def unsubscribe(self, job_id: str, queue: asyncio.Queue[list[Event]]) -> None:
        self.queues[job_id].remove(queue)

    def publish(self, events: list[Event]) -> None:
        for queue in self.queues["j"]:
            queue.put_nowait(events)


async def _follow(store: Store, after: int = 0, fanout: FanOut | None = None, **kw: Any) -> list[list[Event]]:
    batches = []
    async with asyncio.timeout(30):
        async for batch in follow(store, "j", after, fanout=fanout, live=lambda: fanout is not None, **kw):
            batches.append(batch)
    return batches


def _seqs(batches: list[list[Event]]) -> list[int]:
    return [e["seq"] for b in batches for e in b]


async def test_live_batches_that_overlap_the_backlog_are_sent_once() -> None:
    store, fanout = Store(3), FanOut()

    async def writer() -> None:
        await store.asked.wait()
        fanout.publish(store.stored[1:3])  # already in the backlog the reader read
        fanout.publish(store.add(2))
        fanout.publish(store.add(1, end=True))

    task = asyncio.create_task(writer())
    batches = await _follow(store, fanout=fanout)
    await task
    assert _seqs(batches) == [1, 2, 3, 4, 5, 6, 7]
    assert batches[-1][-1]["type"] == "job.end"
    assert fanout.queues["j"] == [], "unsubscribed at the end"


async def test_a_gap_in_what_the_fan_out_says_is_read_from_the_store() -> None:
    store, fanout = Store(2), FanOut()

    async def writer() -> None:
        await store.asked.wait()
        store.add(2)  # stored, never announced (another writer)
        fanout.publish(store.add(1))
        fanout.publish(store.add(0, end=True))

    task = asyncio.create_task(writer())
    batches = await _follow(store, fanout=fanout)
    await task
    assert _seqs(batches) == [1, 2, 3, 4, 5, 6]


async def test_without_a_fan_out_the_store_is_read_again_until_the_end() -> None:
    store = Store(1)

    async def writer() -> None:
        for _ in range(3):
            await asyncio.sleep(0.05)
            store.add(2)
        store.add(0, end=True)

    task = asyncio.create_task(writer())
    batches = await _follow(store, poll=0.01)
    await task
    assert _seqs(batches) == list(range(1, 9))


async def test_resumed_past_the_end_it_ends_at_once() -> None:
    store = Store(3)
    store.add(0, end=True)
    assert await _follow(store, after=4) == []
    assert _seqs(await _follow(store, after=2)) == [3, 4]
    ended_without_job_end = Store(2, status="failed")
    assert _seqs(await _follow(ended_without_job_end)) == [1, 2]


async def test_a_long_backlog_is_read_page_by_page() -> None:
    store = Store(25)
    store.add(0, end=True)
    batches = await _follow(store, page=10)
    assert [len(b) for b in batches] == [10, 10, 6] and _seqs(batches) == list(range(1, 27))
