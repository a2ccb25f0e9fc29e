"""Schedules in a real jupyter-server: the API, real jobs fired on a fake clock, catch-up after a
restart of the scheduler, the snapshot, validation, other users; and the activity the server
reports (jupyter-server's last_activity, which JupyterHub's culler reads) while jobs run."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tests.conftest import check_response
from tests.server.conftest import Api

pytestmark = pytest.mark.slow

MINUTE = 60.0
T0 = datetime(2025, 1, 6, 9, 0, 10, tzinfo=timezone.utc).timestamp()  # 10 s past a minute
KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


@pytest.fixture
def catch_up() -> str:
    return "once"


@pytest.fixture
def report_activity() -> str:
    return "jobs_and_schedules"


@pytest.fixture
def jp_server_config(data_dir: Path, catch_up: str, report_activity: str) -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_ext": True}},
        "JupyterExt": {
            "data_dir": str(data_dir),
            "schedule_catch_up": catch_up,
            "report_activity": report_activity,
            "activity_interval": 0.2,
        },
        "LocalBackend": {"cancel_grace": 2.0},
    }


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def ext(jp_serverapp: Any) -> Any:
    return jp_serverapp.web_app.settings["jupyter_ext"]


@pytest.fixture
def clock(api: Api, jp_serverapp: Any) -> Clock:
    """The server's scheduler on a fake clock (its loop is already running: woken to read it)."""
    fake = Clock(T0)
    ext(jp_serverapp).scheduler.now = fake
    ext(jp_serverapp).scheduler.wake()
    return fake


def write(root: Path, name: str, text: str) -> str:
    cells = [new_code_cell("x = 1", metadata={"tags": ["parameters"]}), new_code_cell(f"print({text!r}, x)")]
    nbformat.write(new_notebook(cells=cells, metadata=KERNEL), root / name)
    return name


async def runs_until(api: Api, schedule_id: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
    """The schedule's runs once it has `count` of them, each with its job (or error) recorded."""
    async with asyncio.timeout(timeout):
        while True:
            schedule = await api.call("GET", "schedules", schedule_id)
            runs = schedule["runs"]
            if len(runs) >= count and all(r["job"] or r["error"] for r in runs):
                return list(runs)
            await asyncio.sleep(0.05)


async def advance(jp_serverapp: Any, clock: Clock, seconds: float) -> None:
    clock.t += seconds
    ext(jp_serverapp).scheduler.wake()


async def output(api: Api, job_id: str) -> str:
    job = await api.wait(job_id, timeout=120)
    assert job["status"] == "succeeded", job
    events = (await api.call("GET", "jobs", job_id, "events"))["events"]
    return "".join(e["output"].get("text", "") for e in events if e["type"] == "cell.output")


async def test_a_schedule_every_minute_fires_a_job_at_each_minute(
    api: Api, clock: Clock, jp_serverapp: Any, notebooks: Path
) -> None:
    body = {"notebook": "quick.ipynb", "cron": "* * * * *", "timezone": "Europe/Berlin", "parameters": {"x": 5}}
    made = await api.call("POST", "schedules", body=body, expect=201)
    check_response("/schedules", "POST", 201, made)
    assert made["next_run"] == T0 - 10 + MINUTE
    assert made["next_run_iso"] == "2025-01-06T10:01:00+01:00" and made["snapshot_taken"] == "2025-01-06T09:00:10Z"
    await asyncio.sleep(0.2)
    assert (await api.call("GET", "schedules", made["id"]))["runs"] == [], "nothing before its minute"

    await advance(jp_serverapp, clock, 50)
    (first,) = await runs_until(api, made["id"], 1)
    await advance(jp_serverapp, clock, MINUTE)
    second, again = await runs_until(api, made["id"], 2)
    assert again == first and second["due"] == "2025-01-06T09:02:00Z" and first["due"] == "2025-01-06T09:01:00Z"
    for run in (first, second):
        assert "first 5" in await output(api, run["job"])
        job = await api.call("GET", "jobs", run["job"])
        assert job["notebook"] == "quick.ipynb" and job["parameters"] == {"x": 5}
        assert (await ext(jp_serverapp).store.get_job(run["job"]))["spec"]["schedule"] == made["id"]
    listed = await api.call("GET", "schedules")
    check_response("/schedules", "GET", 200, listed)
    (shown,) = listed["schedules"]
    assert [r["status"] for r in shown["runs"]] == ["succeeded", "succeeded"]
    check_response("/schedules/{schedule_id}", "GET", 200, shown)


async def test_runs_use_the_snapshot_until_it_is_retaken(
    api: Api, clock: Clock, jp_serverapp: Any, notebooks: Path
) -> None:
    nb = write(notebooks, "snap.ipynb", "version one")
    made = await api.call("POST", "schedules", body={"notebook": nb, "cron": "* * * * *"}, expect=201)
    write(notebooks, "snap.ipynb", "version two")  # edited after the schedule was made
    await advance(jp_serverapp, clock, 50)
    (run,) = await runs_until(api, made["id"], 1)
    text = await output(api, run["job"])
    assert "version one 1" in text and "version two" not in text

    retaken = await api.call("PATCH", "schedules", made["id"], body={"snapshot": True})
    check_response("/schedules/{schedule_id}", "PATCH", 200, retaken)
    assert retaken["snapshot_taken"] == "2025-01-06T09:01:00Z"
    await advance(jp_serverapp, clock, MINUTE)
    newest = (await runs_until(api, made["id"], 2))[0]
    assert "version two 1" in await output(api, newest["job"])


@pytest.mark.parametrize("catch_up", ["once", "skip"])
async def test_runs_missed_while_the_scheduler_was_down_fire_once_or_never(
    api: Api, clock: Clock, jp_serverapp: Any, catch_up: str
) -> None:
    scheduler = ext(jp_serverapp).scheduler
    assert scheduler.catch_up_policy == catch_up  # c.JupyterExt.schedule_catch_up
    made = await api.call("POST", "schedules", body={"notebook": "quick.ipynb", "cron": "*/5 * * * *"}, expect=201)
    await scheduler.stop()  # the server goes down ...
    clock.t += 30 * MINUTE  # ... for half an hour: six runs missed
    await scheduler.start()
    runs = await runs_until(api, made["id"], 1)
    await asyncio.sleep(0.5)
    assert len((await api.call("GET", "schedules", made["id"]))["runs"]) == 1, "never once per missed run"
    (run,) = runs
    assert run["due"] == "2025-01-06T09:05:00Z"
    jobs = (await api.call("GET", "jobs"))["jobs"]
    if catch_up == "once":
        assert [j["id"] for j in jobs] == [run["job"]] and run["error"] is None
        await api.wait(run["job"], timeout=120)
    else:
        assert jobs == [] and run["job"] is None and run["error"].startswith("skipped")
    schedule = await api.call("GET", "schedules", made["id"])
    assert clock.t < schedule["next_run"] <= clock.t + 5 * MINUTE, "on from now, not from then"


async def test_pause_stops_firing_and_resume_restarts(api: Api, clock: Clock, jp_serverapp: Any) -> None:
    made = await api.call("POST", "schedules", body={"notebook": "quick.ipynb", "cron": "* * * * *"}, expect=201)
    paused = await api.call("PATCH", "schedules", made["id"], body={"paused": True})
    assert paused["paused"] is True and paused["next_run"] is None
    await advance(jp_serverapp, clock, 5 * MINUTE)
    await asyncio.sleep(0.5)
    assert (await api.call("GET", "schedules", made["id"]))["runs"] == []
    resumed = await api.call("PATCH", "schedules", made["id"], body={"paused": False})
    assert resumed["next_run"] == T0 - 10 + 6 * MINUTE
    await advance(jp_serverapp, clock, MINUTE)
    (run,) = await runs_until(api, made["id"], 1)
    await api.wait(run["job"], timeout=120)


async def test_bad_input_is_refused_naming_the_field(api: Api, notebooks: Path) -> None:
    good = {"notebook": "quick.ipynb", "cron": "0 2 * * *"}
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"cron": "every night"}, 400, "cron"),
        ({"cron": "0 0 30 2 *"}, 400, "cron"),
        ({"timezone": "Mars/Olympus_Mons"}, 400, "timezone"),
        ({"notebook": "missing.ipynb"}, 404, "notebook"),
        ({"notebook": "../outside.ipynb"}, 400, "notebook"),
        ({"parameters": {"nope": 1}}, 400, "parameters.nope"),
        ({"backend": "mars"}, 400, "backend"),
        ({"sweep": {"x": []}}, 400, "sweep.x"),
        ({"when": "now"}, 400, "when"),
    ]
    for change, status, field in cases:
        error = await api.call("POST", "schedules", body={**good, **change}, expect=status)
        assert error["field"] == field, (change, error)
        check_response("/schedules", "POST", status, error)
    assert (await api.call("GET", "schedules"))["schedules"] == [], "nothing stored by a refusal"
    made = await api.call("POST", "schedules", body=good, expect=201)
    for change, field in (({"cron": "* *"}, "cron"), ({"paused": "yes"}, "paused"), ({"id": "x"}, "id")):
        error = await api.call("PATCH", "schedules", made["id"], body=change, expect=400)
        assert error["field"] == field, (change, error)
    error = await api.call("POST", "schedules", made["id"], body={}, expect=405)
    assert error["reason"] == "Method Not Allowed"


async def test_another_users_schedule_is_not_found(api: Api, jp_serverapp: Any) -> None:
    store = ext(jp_serverapp).store  # (its AsyncStore: the scheduler uses the same connection meanwhile)
    now = time.time()
    await store.create_schedule(
        {
            "id": "theirs000001",
            "user": "someone-else",
            "name": "theirs",
            "notebook": "quick.ipynb",
            "cron": "0 2 * * *",
            "timezone": "UTC",
            "spec": {"parameters": {}},
            "created": now,
            "next_run": now + 3600,
        }
    )
    assert (await api.call("GET", "schedules"))["schedules"] == []
    for method, body in (("GET", None), ("PATCH", {"paused": True}), ("DELETE", None)):
        error = await api.call(method, "schedules", "theirs000001", body=body, expect=404)
        assert error["field"] == "id" and "theirs" not in json.dumps(error).replace("theirs000001", "")
    assert (await store.get_schedule("theirs000001"))["paused"] == 0, "untouched"
    mine = await api.call("POST", "schedules", body={"notebook": "quick.ipynb", "cron": "0 2 * * *"}, expect=201)
    await api.call("DELETE", "schedules", mine["id"], expect=204)
    await api.call("GET", "schedules", mine["id"], expect=404)


# -- activity (what JupyterHub's idle culler reads) ------------------------------------------------------------
async def last_activity(api: Api) -> datetime:
    """`GET /api/status`'s last_activity (that request itself is not counted as activity)."""
    resp = await api.fetch("api", "status", method="GET")
    return datetime.fromisoformat(json.loads(resp.body)["last_activity"].replace("Z", "+00:00"))


async def watch_a_job(api: Api, jp_serverapp: Any) -> tuple[datetime, datetime, datetime]:
    """Run a ~3 s job; answers last_activity just after submitting, when it ended, and 1 s later."""
    job = await api.submit("slow.ipynb", parameters={"ticks": 12, "delay": 0.25})
    submitted = await last_activity(api)
    await ext(jp_serverapp).orchestrator.wait(job["id"])  # no request while it runs
    await asyncio.sleep(0.3)
    ended = await last_activity(api)
    await asyncio.sleep(1.0)
    return submitted, ended, await last_activity(api)


async def test_activity_advances_while_a_job_runs_and_not_after(api: Api, jp_serverapp: Any) -> None:
    submitted, ended, later = await watch_a_job(api, jp_serverapp)
    assert (ended - submitted).total_seconds() > 2, "reported while the job ran"
    assert later == ended, "nothing reported once no job runs (and no schedule is active)"
    assert jp_serverapp.web_app.last_activity() == later


@pytest.mark.parametrize("report_activity", ["off"])
async def test_with_report_activity_off_a_job_reports_nothing(
    api: Api, jp_serverapp: Any, report_activity: str
) -> None:
    submitted, ended, later = await watch_a_job(api, jp_serverapp)
    assert ended == submitted == later, "off: the job's run is not activity"


@pytest.mark.parametrize("report_activity", ["jobs_and_schedules", "jobs"])
async def test_an_active_schedule_is_activity_unless_only_jobs_count(
    api: Api, jp_serverapp: Any, report_activity: str
) -> None:
    made = await api.call("POST", "schedules", body={"notebook": "quick.ipynb", "cron": "0 2 1 1 *"}, expect=201)
    before = await last_activity(api)
    await asyncio.sleep(1.0)
    during = await last_activity(api)
    assert (during > before) is (report_activity == "jobs_and_schedules")
    await api.call("PATCH", "schedules", made["id"], body={"paused": True})
    await asyncio.sleep(0.5)
    paused = await last_activity(api)
    await asyncio.sleep(1.0)
    assert await last_activity(api) == paused, "a paused schedule keeps nothing alive"


async def test_a_sweep_schedule_fires_one_sweep_job_from_the_snapshot(
    api: Api, clock: Clock, jp_serverapp: Any, notebooks: Path
) -> None:
    body = {"notebook": "quick.ipynb", "cron": "* * * * *", "sweep": {"x": [2, 3]}}
    made = await api.call("POST", "schedules", body=body, expect=201)
    assert made["sweep"] == {"x": [2, 3]} and made["sweep_mode"] == "grid"
    write(notebooks, "quick.ipynb", "edited")  # the runs run the snapshot, not this
    await advance(jp_serverapp, clock, 50)
    (run,) = await runs_until(api, made["id"], 1)
    assert run["error"] is None, run
    sweep = await api.wait(run["job"], timeout=180)
    assert sweep["status"] == "succeeded" and sweep["sweep"]["counts"]["succeeded"] == 2, sweep
    assert (await ext(jp_serverapp).store.get_job(run["job"]))["spec"]["schedule"] == made["id"]
    texts = sorted([await output(api, child["id"]) for child in sweep["sweep"]["children"]])
    assert "first 2" in texts[0] and "first 3" in texts[1] and "edited" not in "".join(texts)
