"""Schedules without a server: cron and time zones (DST), the checks at the edge, and the Scheduler
driven by a fake clock, with the orchestrator's submit recorded instead of run (tests/server runs
real jobs)."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from jupyter_ext.activity import SETTING, ActivityReporter
from jupyter_ext.backends.local import LocalBackend
from jupyter_ext.cron import check_cron, local_iso, next_run
from jupyter_ext.errors import NotFound, ValidationError
from jupyter_ext.models import JobSpec
from jupyter_ext.orchestrator import Orchestrator
from jupyter_ext.schedules import Scheduler, ScheduleSpec
from jupyter_ext.store import AsyncStore, Store

KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
MINUTE = 60.0
T0 = datetime(2025, 1, 6, 9, 0, 10, tzinfo=timezone.utc).timestamp()  # 10 s past a minute


def at(text: str, zone: str = "UTC") -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


def write_notebook(root: Path, name: str = "nb.ipynb", body: str = "print('first', x)") -> str:
    root.mkdir(parents=True, exist_ok=True)
    cells = [new_code_cell("x = 1", metadata={"tags": ["parameters"]}), new_code_cell(body)]
    nbformat.write(new_notebook(cells=cells, metadata=KERNEL), root / name)
    return name


# -- cron and time zones -------------------------------------------------------------------------------------------
def test_every_minute_runs_at_each_minute_strictly_after() -> None:
    assert next_run("* * * * *", "UTC", T0) == T0 - 10 + MINUTE
    assert next_run("* * * * *", "UTC", T0 - 10) == T0 - 10 + MINUTE  # exactly on a slot: the next one
    assert next_run("@hourly", "UTC", T0) == at("2025-01-06T10:00:00")


def test_runs_are_computed_in_the_schedule_zone_across_dst() -> None:
    berlin = "Europe/Berlin"
    # New York's 09:00 is 14:00 UTC in winter and 13:00 UTC in summer
    assert next_run("0 9 * * *", "America/New_York", at("2025-01-06T00:00:00")) == at("2025-01-06T14:00:00")
    assert next_run("0 9 * * *", "America/New_York", at("2025-07-07T00:00:00")) == at("2025-07-07T13:00:00")
    # spring forward (2025-03-30, 02:00 -> 03:00): 02:30 does not exist that day; it runs when the gap ends
    first = next_run("30 2 * * *", berlin, at("2025-03-29T12:00:00", berlin))
    assert local_iso(first, berlin) == "2025-03-30T03:00:00+02:00"
    assert local_iso(next_run("30 2 * * *", berlin, first), berlin) == "2025-03-31T02:30:00+02:00"
    # fall back (2025-10-26, 03:00 -> 02:00): 02:30 happens twice; a daily job runs once
    first = next_run("30 2 * * *", berlin, at("2025-10-25T12:00:00", berlin))
    assert local_iso(first, berlin) == "2025-10-26T02:30:00+02:00"
    assert local_iso(next_run("30 2 * * *", berlin, first), berlin) == "2025-10-27T02:30:00+01:00"
    # ... but an hourly one runs every real hour, the repeated one included
    runs, t = [], at("2025-10-26T00:30:00", berlin)
    for _ in range(4):
        t = next_run("0 * * * *", berlin, t)
        runs.append(local_iso(t, berlin))
    assert runs == [
        "2025-10-26T01:00:00+02:00",
        "2025-10-26T02:00:00+02:00",
        "2025-10-26T02:00:00+01:00",
        "2025-10-26T03:00:00+01:00",
    ]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"cron": "* * * *"}, "cron", "4 fields, not 5"),
        ({"cron": "* * * * * *"}, "cron", "6 fields, not 5"),
        ({"cron": "61 * * * *"}, "cron", "not a cron expression"),
        ({"cron": "0 0 30 2 *"}, "cron", "never comes"),
        ({"cron": "@reboot"}, "cron", "not a cron expression"),
        ({"cron": ""}, "cron", "0 fields"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone", "not a time zone"),
        ({"timezone": "../../etc/passwd"}, "timezone", "not a time zone"),
        ({"timezone": "Europe"}, "timezone", "not a time zone"),
        ({"notebook": "a.txt"}, "notebook", "not a notebook"),
        ({"parameters": {"class": 1}}, "parameters.class", "keyword"),
        ({"surprise": 1}, "surprise", "unknown field"),
    ],
)
def test_bad_input_names_the_field(body: dict[str, Any], field: str, words: str) -> None:
    from jupyter_ext.models import parse

    with pytest.raises(ValidationError) as caught:
        parse(ScheduleSpec, {"notebook": "nb.ipynb", "cron": "0 2 * * *", **body})
    assert caught.value.field == field and words in caught.value.message, caught.value.message


def test_the_routes_are_documented() -> None:
    from jupyter_ext.handlers import API
    from jupyter_ext.schedule_handlers import schedule_handlers
    from tests.conftest import SPEC

    for pattern, _ in schedule_handlers:
        path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern.removeprefix(API))
        assert path in SPEC["paths"], f"{path} is served but not in openapi.yaml"


def test_macros_and_spacing_are_accepted() -> None:
    assert check_cron("  0   2 * * 1-5 ") == "0 2 * * 1-5"
    assert check_cron("@daily") == "@daily"


# -- the scheduler, with a fake clock ----------------------------------------------------------------------------------
class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class World:
    """A store, an orchestrator whose submit is recorded (what would run: the snapshot's text), a scheduler."""

    def __init__(self, tmp: Path, clock: Clock, db: Path | None = None, **kw: Any) -> None:
        self.root, self.data = tmp / "root", tmp / "data"
        self.root.mkdir(parents=True, exist_ok=True)
        self.store = AsyncStore(Store(db or self.data / "jobs.db"))
        self.orch = Orchestrator(
            store=self.store,
            backends={"local": LocalBackend()},
            default_backend="local",
            root_dir=self.root,
            data_dir=self.data,
        )
        self.submitted: list[dict[str, Any]] = []
        self.refuse: str | None = None

        async def submit(spec: JobSpec, user: str, **kw: Any) -> tuple[dict[str, Any], bool]:
            if self.refuse:
                raise ValidationError(self.refuse, field="notebook")
            self.submitted.append({"spec": spec, "user": user, "text": kw["snapshot"].read_text(), **kw})
            return {"id": f"job{len(self.submitted)}"}, True

        self.orch.submit = submit  # type: ignore[method-assign]
        self.clock = clock
        self.scheduler = Scheduler(store=self.store, orchestrator=self.orch, now=clock, **kw)

    async def advance(self, seconds: float, fired: int, timeout: float = 30) -> None:
        """Move the clock on, wake the loop, and wait until `fired` jobs were submitted in all."""
        self.clock.t += seconds
        self.scheduler.wake()
        deadline = time.monotonic() + timeout
        while len(self.submitted) < fired:
            assert time.monotonic() < deadline, f"{len(self.submitted)} fired, waited for {fired}"
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        await self.scheduler.stop()
        await self.store.close()


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


async def test_a_schedule_every_minute_fires_at_each_minute(tmp_path: Path, clock: Clock) -> None:
    w = World(tmp_path, clock)
    nb = write_notebook(w.root)
    made = await w.scheduler.create({"notebook": nb, "cron": "* * * * *", "parameters": {"x": 5}}, "ada")
    assert made["next_run"] == T0 - 10 + MINUTE and made["paused"] is False and made["runs"] == []
    await w.scheduler.start()
    try:
        await asyncio.sleep(0.05)
        assert w.submitted == [], "nothing is due before its minute"
        await w.advance(50, fired=1)  # the minute comes
        await w.advance(MINUTE, fired=2)
        await w.advance(30, fired=2)
        await asyncio.sleep(0.05)
        assert len(w.submitted) == 2, "half a minute later nothing more"
        first = w.submitted[0]
        assert first["schedule"] == made["id"] and first["user"] == "ada"
        assert first["spec"].notebook == nb and first["spec"].parameters == {"x": 5}
        view = await w.scheduler.get(made["id"], "ada")
        assert [r["job"] for r in view["runs"]] == ["job2", "job1"]  # newest first
        assert [r["due"] for r in view["runs"]] == [
            "2025-01-06T09:02:00Z",
            "2025-01-06T09:01:00Z",
        ]
        assert view["next_run"] == T0 - 10 + 3 * MINUTE
    finally:
        await w.close()


@pytest.mark.parametrize(("policy", "fired"), [("once", 1), ("skip", 0)])
async def test_runs_missed_while_down_fire_once_or_are_skipped(
    tmp_path: Path, clock: Clock, policy: str, fired: int
) -> None:
    w = World(tmp_path, clock, catch_up=policy)
    made = await w.scheduler.create({"notebook": write_notebook(w.root), "cron": "* * * * *"}, "ada")
    await w.scheduler.start()
    await w.advance(50, fired=1)
    await w.scheduler.stop()  # the server goes down ...
    clock.t += 10 * MINUTE  # ... for ten minutes (ten runs missed)
    await w.scheduler.start()
    try:
        await asyncio.sleep(0.2)
        assert len(w.submitted) == 1 + fired
        view = await w.scheduler.get(made["id"], "ada")
        assert view["next_run"] > clock.t and view["next_run"] - clock.t <= MINUTE, "on from now, not from then"
        newest = view["runs"][0]
        assert newest["due"] == "2025-01-06T09:02:00Z", "the first run missed is the one recorded"
        if policy == "skip":
            assert newest["job"] is None and newest["error"].startswith("skipped")
        else:
            assert newest["job"] == "job2" and newest["error"] is None
        await w.advance(MINUTE, fired=2 + fired)  # and on it goes
    finally:
        await w.close()


async def test_pause_stops_firing_and_resume_restarts_from_now(tmp_path: Path, clock: Clock) -> None:
    w = World(tmp_path, clock)
    made = await w.scheduler.create({"notebook": write_notebook(w.root), "cron": "* * * * *"}, "ada")
    await w.scheduler.start()
    try:
        await w.advance(50, fired=1)
        paused = await w.scheduler.update(made["id"], {"paused": True}, "ada")
        assert paused["paused"] is True and paused["next_run"] is None and paused["next_run_iso"] is None
        await w.advance(5 * MINUTE, fired=1)
        await asyncio.sleep(0.1)
        assert len(w.submitted) == 1, "paused: nothing fired"
        resumed = await w.scheduler.update(made["id"], {"paused": False}, "ada")
        assert resumed["next_run"] == clock.t - (clock.t % MINUTE) + MINUTE
        await w.advance(MINUTE, fired=2)
        assert len((await w.scheduler.get(made["id"], "ada"))["runs"]) == 2, "no run for the paused minutes"
    finally:
        await w.close()


async def test_two_schedulers_on_one_store_fire_a_due_run_once(tmp_path: Path, clock: Clock) -> None:
    one = World(tmp_path, clock)
    two = World(tmp_path, clock, db=one.data / "jobs.db")  # a second server on the same data dir
    made = await one.scheduler.create({"notebook": write_notebook(one.root), "cron": "* * * * *"}, "ada")
    try:
        for _ in range(5):
            clock.t += MINUTE
            taken = await asyncio.gather(one.scheduler.fire_due(), two.scheduler.fire_due())
            assert sorted(taken) == [0, 1]
        assert len(one.submitted) + len(two.submitted) == 5
        runs = (await one.scheduler.get(made["id"], "ada"))["runs"]
        assert len(runs) == 5 and len({r["due"] for r in runs}) == 5
        # the primary key alone refuses a second claim of the same run
        due = float(made["next_run"])
        assert not await one.store.claim_schedule_run(made["id"], due, clock.t, due + MINUTE)
    finally:
        await one.close()
        await two.close()


async def test_runs_use_the_snapshot_until_it_is_retaken(tmp_path: Path, clock: Clock) -> None:
    w = World(tmp_path, clock)
    nb = write_notebook(w.root, body="print('version one')")
    made = await w.scheduler.create({"notebook": nb, "cron": "* * * * *"}, "ada")
    assert made["snapshot_taken"] == "2025-01-06T09:00:10Z"
    write_notebook(w.root, body="print('version two')")  # edited after the schedule was made
    clock.t += MINUTE
    await w.scheduler.fire_due()
    assert "version one" in w.submitted[-1]["text"] and "version two" not in w.submitted[-1]["text"]
    retaken = await w.scheduler.update(made["id"], {"snapshot": True}, "ada")
    assert retaken["snapshot_taken"] == "2025-01-06T09:01:10Z"
    clock.t += MINUTE
    await w.scheduler.fire_due()
    assert "version two" in w.submitted[-1]["text"]
    (w.root / nb).unlink()  # the notebook itself may go: runs keep running the snapshot
    clock.t += MINUTE
    await w.scheduler.fire_due()
    assert len(w.submitted) == 3
    await w.close()


async def test_checks_at_creation_and_refusals_at_run_time(tmp_path: Path, clock: Clock) -> None:
    w = World(tmp_path, clock)
    nb = write_notebook(w.root)
    with pytest.raises(NotFound) as missing:
        await w.scheduler.create({"notebook": "nope.ipynb", "cron": "* * * * *"}, "ada")
    assert missing.value.field == "notebook"
    with pytest.raises(ValidationError) as unknown:
        await w.scheduler.create({"notebook": nb, "cron": "* * * * *", "parameters": {"y": 1}}, "ada")
    assert unknown.value.field == "parameters.y"
    with pytest.raises(ValidationError) as backend:
        await w.scheduler.create({"notebook": nb, "cron": "* * * * *", "backend": "mars"}, "ada")
    assert backend.value.field == "backend"
    with pytest.raises(ValidationError) as patched:
        made = await w.scheduler.create({"notebook": nb, "cron": "* * * * *"}, "ada")
        await w.scheduler.update(made["id"], {"parameters": {"nope": 2}}, "ada")
    assert patched.value.field == "parameters.nope"
    assert not list((w.data / "schedules").glob("*/*.ipynb"))[1:], "no snapshot left by a refused schedule"
    w.refuse = "notebook: its folder is gone"
    clock.t += MINUTE
    assert await w.scheduler.fire_due() == 1
    runs = (await w.scheduler.get(made["id"], "ada"))["runs"]
    assert runs[0]["job"] is None and runs[0]["error"] == "notebook: its folder is gone"
    await w.close()


async def test_another_user_cannot_see_change_or_delete_a_schedule(tmp_path: Path, clock: Clock) -> None:
    w = World(tmp_path, clock)
    made = await w.scheduler.create({"notebook": write_notebook(w.root), "cron": "0 2 * * *"}, "ada")
    assert await w.scheduler.list("bob") == []
    for call in (
        w.scheduler.get(made["id"], "bob"),
        w.scheduler.update(made["id"], {"paused": True}, "bob"),
        w.scheduler.delete(made["id"], "bob"),
    ):
        with pytest.raises(NotFound):
            await call
    assert [s["id"] for s in await w.scheduler.list("ada")] == [made["id"]]
    await w.scheduler.delete(made["id"], "ada")
    assert not (w.data / "schedules" / made["id"]).exists()
    await w.close()


# -- activity -----------------------------------------------------------------------------------------------------
async def test_activity_is_reported_while_there_is_work_and_as_configured() -> None:
    jobs, schedules = [0], [0]

    async def active() -> int:
        return schedules[0]

    for mode, with_job, with_schedule in (
        ("jobs_and_schedules", True, True),
        ("jobs", True, False),
        ("off", False, False),
    ):
        settings: dict[str, Any] = {}
        reporter = ActivityReporter(settings, mode=mode, jobs=lambda: jobs[0], schedules=active)
        jobs[0], schedules[0] = 0, 0
        await reporter.check()
        assert SETTING not in settings, "idle: nothing reported"
        jobs[0] = 1
        await reporter.check()
        assert (SETTING in settings) is with_job, mode
        settings.clear()
        jobs[0], schedules[0] = 0, 1
        await reporter.check()
        assert (SETTING in settings) is with_schedule, mode
        settings.clear()
        reporter.job_changed()  # a job started or ended
        assert (SETTING in settings) is (mode != "off")


async def test_a_fresh_schedule_fires_fresh_runs(tmp_path: Path, clock: Clock) -> None:
    """`fresh` (a nightly job whose steps read new data): each run's job ignores cached results;
    PATCH turns it off and on; a schedule without it runs as any job does."""
    w = World(tmp_path, clock)
    nb = write_notebook(w.root)
    made = await w.scheduler.create({"notebook": nb, "cron": "* * * * *", "fresh": True}, "ada")
    plain = await w.scheduler.create({"notebook": nb, "cron": "* * * * *"}, "ada")
    assert made["fresh"] is True and plain["fresh"] is False
    try:
        clock.t += 50
        assert await w.scheduler.fire_due() == 2
        fired = {run["schedule"]: run["spec"] for run in w.submitted}
        assert fired[made["id"]].fresh is True and fired[plain["id"]].fresh is False
        assert (await w.scheduler.update(made["id"], {"fresh": False}, "ada"))["fresh"] is False
        assert (await w.scheduler.update(plain["id"], {"fresh": True}, "ada"))["fresh"] is True
        clock.t += MINUTE
        assert await w.scheduler.fire_due() == 2
        fired = {run["schedule"]: run["spec"] for run in w.submitted[2:]}
        assert fired[made["id"]].fresh is False and fired[plain["id"]].fresh is True
    finally:
        await w.close()
