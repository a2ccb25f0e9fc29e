"""`GET jobs` with 1,000+ jobs in the store: order, owner filter, page boundaries, the same `Job`s
as one job's route, the query plans, and the schema 2 -> 4 migration. Nothing here is timed
(bench/list_api.py measures the speed)."""

from __future__ import annotations

import json
import logging
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from tornado.escape import json_encode

from jupyter_ext import views
from jupyter_ext.models import JobSpec, Resources, StepSpec
from jupyter_ext.records import JobRecord
from jupyter_ext.store import SCHEMA_VERSION, Store
from jupyter_ext.users import local_user
from jupyter_ext.views import job_list_json, job_list_view, job_view, safe_job_view
from tests.conftest import check_response

OTHER = "someone-else"
COUNT = 1200
LOG = logging.getLogger("test_list_scale")


def fill(db: Path, count: int = COUNT, seed: int = 14, live: bool = False) -> dict[str, list[str]]:
    """`count` jobs through the Store API: 1 in 7 another user's, 1-4 steps each, finished ones of
    every kind (with `live`, queued and running ones too: not for a server, it would run them),
    runs of jobs sharing one `created` (ties the order must break the same way on every page).
    Returns each user's job ids, newest first (created, then id, descending)."""
    rng = random.Random(seed)
    store = Store(db)
    rows: dict[str, list[tuple[float, str]]] = {local_user(): [], OTHER: []}
    statuses = ["succeeded", "failed", "cancelled", "succeeded"] + (["queued", "running"] if live else [])
    for i in range(count):
        user = OTHER if i % 7 == 3 else local_user()
        created = 1_700_000_000.0 + (i // 3) * 10  # three jobs share each instant
        names = ["prepare", "train", "evaluate", "report"][: rng.randint(1, 4)]
        job_id = f"{rng.getrandbits(48):012x}"
        status = statuses[i % len(statuses)]
        steps = [
            {
                "name": name,
                "status": status if status != "running" or k == 0 else "queued",
                "spec": StepSpec(
                    name=name,
                    after=names[:k][-1:],
                    resources=Resources(gpu=k % 2, memory=f"{k + 1}Gi", cpu="500m"),
                    cells=[k * 2, k * 2 + 1],
                    timeout=60.0 if k % 2 else None,
                    retries=k,
                    reused_from={"job": "abcdefabcdef", "attempt": 1} if k == 0 and i % 11 == 0 else None,
                ).model_dump(),
            }
            for k, name in enumerate(names)
        ]
        store.create_job(
            {
                "id": job_id,
                "user": user,
                "name": f"nb-{i}",
                "notebook": f"nb-{i}.ipynb",
                "backend": "local",
                "status": status,
                "parameters": {"i": i, "nested": {"a": [1, 2, {"b": None}]}},
                "spec": JobSpec(notebook=f"nb-{i}.ipynb").model_dump(),
                "created": created,
            },
            steps,
        )
        if status in ("succeeded", "failed", "cancelled"):
            error = {"message": "boom", "reason": "exception"} if status == "failed" else None
            store.update_job(job_id, started=created + 1, finished=created + 2, error=error)
            store.update_step(job_id, names[0], attempt=1, started=created + 1, finished=created + 2, exit_code=0)
        if status == "queued":
            store.update_step(job_id, names[-1], queue_position=1 + i % 5)
        rows[user].append((created, job_id))
    store.close()
    return {user: [job_id for _, job_id in sorted(pairs, reverse=True)] for user, pairs in rows.items()}


@pytest.fixture
def filled(data_dir: Path) -> dict[str, list[str]]:
    data_dir.mkdir(parents=True, exist_ok=True)
    return fill(data_dir / "jobs.db")


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any], filled: dict[str, list[str]]) -> dict[str, Any]:
    return jp_server_config  # the store is filled before the server opens it


@pytest.mark.slow
async def test_the_list_pages_through_every_job_of_the_owner_in_order(
    api: Any, filled: dict[str, list[str]], data_dir: Path
) -> None:
    mine = filled[local_user()]
    assert len(mine) > 1000

    first = await api.call("GET", "jobs")
    check_response("/jobs", "GET", 200, first)
    assert [j["id"] for j in first["jobs"]] == mine[:200], "the default page: the 200 newest, newest first"
    assert first["next"] == mine[199]

    seen: list[str] = []
    before = None
    pages = 0
    while True:
        page = await api.call("GET", "jobs", params={"limit": 97, **({"before": before} if before else {})})
        check_response("/jobs", "GET", 200, page)
        ids = [j["id"] for j in page["jobs"]]
        assert len(ids) == 97 or page["next"] is None
        assert all(j["user"] == local_user() for j in page["jobs"])
        seen += ids
        pages += 1
        if page["next"] is None:
            break
        assert page["next"] == ids[-1]
        before = page["next"]
    assert seen == mine, "pages neither repeat nor skip a job, even where jobs share a creation time"
    assert pages == -(-len(mine) // 97)

    # Exactly a page's worth left: the last full page says there is no next one.
    last = await api.call("GET", "jobs", params={"limit": 3, "before": mine[-4]})
    assert [j["id"] for j in last["jobs"]] == mine[-3:] and last["next"] is None

    # Each listed job is the job its own route shows.
    for job in first["jobs"][:40]:
        assert job == await api.call("GET", "jobs", job["id"])

    for bad in (filled[OTHER][0], "nosuchjob", "x" * 5000):
        refused = await api.call("GET", "jobs", params={"before": bad}, expect=404)
        check_response("/jobs", "GET", 404, refused)
        assert refused["field"] == "before" and len(refused["message"]) < 300


def test_list_queries_use_the_indexes(tmp_path: Path) -> None:
    ids = fill(tmp_path / "jobs.db", count=300, live=True)
    store = Store(tmp_path / "jobs.db")
    statements: list[str] = []
    store.db.set_trace_callback(statements.append)
    store.job_summaries(local_user(), limit=50)
    store.job_summaries(local_user(), limit=50, before=ids[local_user()][60])
    store.job_summaries(None, limit=50)
    store.list_jobs(local_user(), limit=50)
    store.list_jobs(None, limit=100, statuses=["queued", "running"])
    store.db.set_trace_callback(None)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT") and "FROM jobs" in s]
    assert len(selects) >= 5
    for sql in [s for s in statements if s.lstrip().upper().startswith("SELECT")]:
        plan = [row[3] for row in store.db.execute(f"EXPLAIN QUERY PLAN {sql}")]
        assert not any(p in ("SCAN jobs", "SCAN steps") for p in plan), f"a full scan: {sql!r} -> {plan}"
        if "FROM jobs" in sql and "status IN" not in sql:  # a page is read in index order, never sorted
            assert not any("TEMP B-TREE" in p for p in plan), f"the page is sorted: {sql!r} -> {plan}"
    store.close()


def test_the_list_view_is_the_job_view_of_every_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """job_list_view (built without pydantic) answers what job_view answers, for realistic rows and
    for rows the models convert or refuse (those go the slow way)."""
    fill(tmp_path / "jobs.db", count=300, live=True)
    store = Store(tmp_path / "jobs.db")
    odd = store.list_jobs(None, limit=6)
    # Rows written before today's models, or by hand: an int timeout, a status no model knows,
    # resources to normalise, parameters nested too deep to show, a step error that is a string.
    edits = [
        ("UPDATE steps SET spec=json_set(spec, '$.timeout', 30) WHERE job_id=?", odd[0]["id"]),
        ("UPDATE jobs SET status='paused' WHERE id=?", odd[1]["id"]),
        ("UPDATE steps SET spec=json_set(spec, '$.resources.memory', ' 2Gi ') WHERE job_id=?", odd[2]["id"]),
        ("UPDATE jobs SET parameters=? WHERE id=?", "deep", odd[3]["id"]),
        ("UPDATE steps SET error='\"plain words\"' WHERE job_id=?", odd[4]["id"]),
        ("UPDATE jobs SET started='yesterday' WHERE id=?", odd[5]["id"]),
    ]
    deep: Any = 1
    for _ in range(40):
        deep = [deep]
    for sql, *args in edits:
        values = [json.dumps({"p": deep}) if a == "deep" else a for a in args]
        store.db.execute(sql, values)

    page, _ = store.job_summaries(None, limit=1000)
    slow_way: list[str] = []

    def counted(job: JobRecord, log: Any) -> dict[str, Any] | None:
        slow_way.append(job["id"])
        return safe_job_view(job, log)

    monkeypatch.setattr(views, "safe_job_view", counted)
    fast = job_list_view(page, LOG)
    monkeypatch.undo()
    # Only the rows a model would convert or refuse went the slow way (resources are normalised
    # by the model on the fast way too).
    assert sorted(slow_way) == sorted(j["id"] for j in odd if j is not odd[2])
    slow = [safe_job_view(store.get_job(j["id"]), LOG) for j in page]
    assert fast == [v for v in slow if v is not None]
    assert len(fast) == 298  # the unknown status and the timestamp stored as text cannot be shown
    normal = store.get_job(page[-1]["id"])
    assert fast[-1] == job_view(normal)

    # The answer's text is tornado's encoding of those views, and stays so when rows change
    # under the caches (summaries and their JSON are remembered by the rows they came from).
    for _ in range(2):
        page, after = store.job_summaries(None, limit=120)
        text = job_list_json(page, after, LOG)
        assert text == json_encode({"jobs": job_list_view(page, LOG), "next": after})
    changed = page[7]["id"]
    store.update_step(changed, page[7]["steps"][0]["name"], status="failed", error={"message": "changed"})
    store.update_job(changed, status="failed", error={"message": "it changed"})
    store.append_events(changed, [{"type": "log", "text": "late"}])
    again, _ = store.job_summaries(None, limit=120)
    shown = {j["id"]: j for j in json.loads(job_list_json(again, None, LOG))["jobs"]}
    assert shown[changed] == job_view(store.get_job(changed))
    assert shown[changed]["error"] == {"message": "it changed"} and shown[changed]["steps"][0]["status"] == "failed"
    for job in again[:20]:
        assert shown.get(job["id"]) == safe_job_view(store.get_job(job["id"]), LOG)
    store.close()


def test_a_schema_2_database_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    ids = fill(path, count=30)
    db = sqlite3.connect(path)
    for name in ("jobs_user_created_id", "jobs_created_id", "jobs_status"):
        db.execute(f"DROP INDEX {name}")
    db.execute("CREATE INDEX jobs_user_created ON jobs (user, created DESC)")
    # what schema 4 added (a sweep's `parent`, a step's `cache`, the cache/metrics/schedule tables)
    db.execute("DROP INDEX jobs_parent")
    db.execute("ALTER TABLE jobs DROP COLUMN parent")
    db.execute("ALTER TABLE steps DROP COLUMN cache")
    for table in ("step_cache", "metrics", "schedule_runs", "schedules"):
        db.execute(f"DROP TABLE {table}")
    db.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    db.commit()
    db.close()

    store = Store(path)
    version = store.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
    indexes = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='jobs'")}
    assert int(version) == SCHEMA_VERSION == 4
    assert {"jobs_user_created_id", "jobs_created_id", "jobs_status", "jobs_parent"} <= indexes
    assert "parent" in {r[1] for r in store.db.execute("PRAGMA table_info(jobs)")}
    assert "cache" in {r[1] for r in store.db.execute("PRAGMA table_info(steps)")}
    tables = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"step_cache", "metrics", "schedules", "schedule_runs"} <= tables
    assert "jobs_user_created" not in indexes
    page, after = store.job_summaries(local_user(), limit=1000)
    assert [j["id"] for j in page] == ids[local_user()] and after is None
    record: JobRecord = store.get_job(page[0]["id"])
    assert record["spec"]["notebook"] == record["notebook"]
    store.close()
