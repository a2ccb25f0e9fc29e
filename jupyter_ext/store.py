"""SQLite store of jobs, steps, events and artifacts (WAL, schema-versioned).

`Store` is synchronous and owns one connection; `AsyncStore` runs every call on one
dedicated thread so the server's event loop never waits on the disk. Events get a per-job
`seq` inside the same transaction that records how many runner events of the step attempt
were consumed (`steps.consumed`), so resuming a stream after a crash or from two readers at
once can neither skip nor duplicate an event. Rows come back as records.py's typed dicts.

Why this module is long: it is the SQL of jobs (schema and its migrations, the list's pages,
events with their metrics and artifacts, sweeps' runs, the step cache, disk space) over one
connection, plus the async wrapper that mirrors each call; splitting it would spread the
transactions that must stay together (an event's seq, its step's `consumed`, its metric row) over
modules sharing one connection. Schedules touch no job row in a transaction, so their SQL is a
mixin of its own (store_schedules.py).
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

from .contract import EVENT_VERSION
from .errors import Conflict, NotFound, shown
from .records import ArtifactRecord, FinishedJob, JobRecord, JobSummary
from .store_schedules import AsyncScheduleRows, ScheduleRows

SCHEMA_VERSION = 4  # 2: steps.queue_position; 3: list indexes on (user, created, id), (created, id), (status);
# 4: jobs.parent (a sweep's children), steps.cache, tables step_cache, metrics, schedules, schedule_runs
WAL_SIZE_LIMIT = 4 * 2**20
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    name TEXT NOT NULL,
    notebook TEXT NOT NULL,
    backend TEXT NOT NULL,
    status TEXT NOT NULL,
    parameters TEXT NOT NULL,
    spec TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    error TEXT,
    idempotency_key TEXT,
    last_seq INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    UNIQUE (user, idempotency_key)
);
CREATE INDEX IF NOT EXISTS jobs_user_created_id ON jobs (user, created, id);
CREATE INDEX IF NOT EXISTS jobs_created_id ON jobs (created, id);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
CREATE TABLE IF NOT EXISTS steps (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    position INTEGER NOT NULL,
    status TEXT NOT NULL,
    spec TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    started REAL,
    finished REAL,
    exit_code INTEGER,
    error TEXT,
    handle TEXT,
    consumed INTEGER NOT NULL DEFAULT 0,
    queue_position INTEGER,
    PRIMARY KEY (job_id, name)
);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    step TEXT,
    type TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE TABLE IF NOT EXISTS artifacts (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    step TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mime TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (job_id, name)
);
CREATE TABLE IF NOT EXISTS step_cache (
    user TEXT NOT NULL,
    key TEXT NOT NULL,
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    step TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (job_id, step)
);
CREATE INDEX IF NOT EXISTS step_cache_user_key ON step_cache (user, key, created);
CREATE TABLE IF NOT EXISTS metrics (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    step TEXT NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (job_id, seq)
);
CREATE TABLE IF NOT EXISTS schedules (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    name TEXT NOT NULL,
    notebook TEXT NOT NULL,
    cron TEXT NOT NULL,
    timezone TEXT NOT NULL,
    spec TEXT NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    next_run REAL
);
CREATE INDEX IF NOT EXISTS schedules_user ON schedules (user, created);
CREATE TABLE IF NOT EXISTS schedule_runs (
    schedule_id TEXT NOT NULL REFERENCES schedules(id) ON DELETE CASCADE,
    due REAL NOT NULL,
    fired REAL NOT NULL,
    job_id TEXT,
    error TEXT,
    PRIMARY KEY (schedule_id, due)
);
"""

_JSON_JOB = ("parameters", "spec", "error")
_JSON_STEP = ("spec", "error", "handle", "cache")
#: What a list shows of a job and of a step: no job spec (a `%%remote` job's holds its cell's source),
#: no backend handle.
_SUMMARY_JOB = (
    "id, user, name, notebook, backend, status, parameters, created, started, finished, error, last_seq, parent"
)
_SUMMARY_STEP = (
    "job_id, name, position, status, spec, attempt, started, finished, exit_code, error, queue_position, cache"
)
_SUMMARY_JOB_COLUMNS = tuple(c.strip() for c in _SUMMARY_JOB.split(","))
_SUMMARY_STEP_COLUMNS = tuple(c.strip() for c in _SUMMARY_STEP.split(","))
_SUMMARIES_KEPT = 2048  # summaries remembered by their rows (a page of an unchanged job is not parsed again)
_STEPS_AT_ONCE = 500  # job ids in one `IN (...)`, well under SQLite's limit on bound parameters


def new_job_id() -> str:
    return uuid.uuid4().hex[:12]


def artifact_name(step: str, path: str, single_step: bool) -> str:
    """Flat, job-unique artifact name: 'plots/loss.png' -> 'plots__loss.png' (prefixed by step if several)."""
    flat = path.replace("\\", "/").strip("/").replace("/", "__")
    return flat if single_step else f"{step}__{flat}"


class Store(ScheduleRows):
    """Synchronous store; use from one thread only (AsyncStore does that for the server)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        self.db.row_factory = sqlite3.Row
        self._summaries: dict[tuple[Any, ...], JobSummary] = {}
        # Deleted jobs give their pages back: a new database is made with incremental auto-vacuum
        # (the pragma only takes effect before the first table; `reclaim()` converts an older one).
        self.db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        self.db.execute("PRAGMA journal_mode=WAL")
        # After a checkpoint the WAL file is cut back to this, rather than staying at its largest.
        self.db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def _migrate(self) -> None:
        with self._tx():
            version = 0
            exists = self.db.execute("SELECT name FROM sqlite_master WHERE name='meta'").fetchone()
            if exists:
                row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                version = int(row["value"]) if row else 0
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"the job database {self.path} has schema {version}, newer than this jupyter-ext "
                    f"({SCHEMA_VERSION}); upgrade jupyter-ext or point JupyterExt.db_path elsewhere"
                )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self.db.execute(statement)
            columns = {r["name"] for r in self.db.execute("PRAGMA table_info(steps)")}
            if "queue_position" not in columns:  # schema 1 -> 2
                self.db.execute("ALTER TABLE steps ADD COLUMN queue_position INTEGER")
            if "cache" not in columns:  # schema 3 -> 4: {"key", "hit", "from": {"job", "step", "attempt"}}
                self.db.execute("ALTER TABLE steps ADD COLUMN cache TEXT")
            if "parent" not in {r["name"] for r in self.db.execute("PRAGMA table_info(jobs)")}:
                self.db.execute("ALTER TABLE jobs ADD COLUMN parent TEXT")
            self.db.execute("CREATE INDEX IF NOT EXISTS jobs_parent ON jobs (parent, created, id)")
            # schema 2 -> 3: the list pages by (created, id), so ties in `created` have one order
            self.db.execute("DROP INDEX IF EXISTS jobs_user_created")
            self.db.execute(
                "INSERT INTO meta(key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (str(SCHEMA_VERSION),),
            )

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed at the end of the block, rolled back if it raises."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()

    # -- rows -> dicts ----------------------------------------------------------------------------
    @staticmethod
    def _row(row: sqlite3.Row | None, json_fields: Iterable[str]) -> dict[str, Any] | None:
        if row is None:
            return None
        out = dict(row)
        for key in json_fields:
            if key in out and out[key] is not None:
                out[key] = json.loads(out[key])
        return out

    # -- jobs ---------------------------------------------------------------------------------------
    def create_job(self, job: dict[str, Any], steps: list[dict[str, Any]]) -> tuple[JobRecord, bool]:
        """Insert a job with its steps. With an idempotency key already used by this user,
        return the existing job instead (created=False)."""
        return self._create(job, steps, [])

    def _create(
        self,
        job: dict[str, Any],
        steps: list[dict[str, Any]],
        children: list[tuple[dict[str, Any], list[dict[str, Any]]]],
    ) -> tuple[JobRecord, bool]:
        """`job` with its steps, and its `children` (a sweep's runs, each with its steps), in one
        transaction; the user's job with the same idempotency key instead, if there is one."""
        with self._tx() as db:
            key = job.get("idempotency_key")
            if key:
                row = db.execute(
                    "SELECT id FROM jobs WHERE user=? AND idempotency_key=?", (job["user"], key)
                ).fetchone()
                if row:
                    return self._job(row["id"]), False
            self._insert_job(db, job, steps)
            for child, child_steps in children:
                self._insert_job(db, {**child, "parent": job["id"]}, child_steps)
        return self._job(job["id"]), True

    @staticmethod
    def _insert_job(db: sqlite3.Connection, job: dict[str, Any], steps: list[dict[str, Any]]) -> None:
        """The INSERTs of a job (`parent`: the sweep it is a run of) and its steps, in the caller's transaction."""
        db.execute(
            "INSERT INTO jobs (id, user, name, notebook, backend, status, parameters, spec, created, "
            "idempotency_key, parent) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                job["id"],
                job["user"],
                job["name"],
                job["notebook"],
                job["backend"],
                job.get("status", "queued"),
                json.dumps(job.get("parameters", {})),
                json.dumps(job.get("spec", {})),
                job.get("created", time.time()),
                job.get("idempotency_key"),
                job.get("parent"),
            ),
        )
        for position, step in enumerate(steps):
            db.execute(
                "INSERT INTO steps (job_id, name, position, status, spec, attempt) VALUES (?,?,?,?,?,?)",
                (
                    job["id"],
                    step["name"],
                    position,
                    step.get("status", "queued"),
                    json.dumps(step["spec"]),
                    step.get("attempt", 0),
                ),
            )

    def _job(self, job_id: str) -> JobRecord:
        job = self._row(self.db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone(), _JSON_JOB)
        if job is None:
            raise NotFound(f"no job {job_id!r}; `jupyter-ext ls` lists your jobs", field="id")
        job["steps"] = [
            self._row(r, _JSON_STEP)
            for r in self.db.execute("SELECT * FROM steps WHERE job_id=? ORDER BY position", (job_id,))
        ]
        job["metrics"] = self.metrics(job_id)
        sweep = job["spec"].get("sweep") if isinstance(job["spec"], dict) else None
        job["sweep"] = self._sweeps({job_id: (sweep, job["spec"])}).get(job_id, (None, None))[0] if sweep else None
        return cast(JobRecord, job)

    def get_job(self, job_id: str, user: str | None = None) -> JobRecord:
        """The job with its steps; NotFound (never Forbidden, so ids do not leak) for another user's."""
        job = self._job(job_id)
        if user is not None and job["user"] != user:
            raise NotFound(f"no job {job_id!r}; `jupyter-ext ls` lists your jobs", field="id")
        return job

    def list_jobs(
        self,
        user: str | None = None,
        limit: int = 200,
        statuses: Iterable[str] | None = None,
        *,
        parent: str | None = None,
        top_level: bool = False,
    ) -> list[JobRecord]:
        """Whole jobs (spec and step handles included), newest first; steps read in one query. Every
        job, or only the runs of the sweep `parent`, or (`top_level`) only jobs that are no sweep's run."""
        query, args = self._list_query("*", user, limit, statuses, None, parent=parent, top_level=top_level)
        jobs = [cast(JobRecord, self._row(r, _JSON_JOB)) for r in self.db.execute(query, args)]
        self._attach_steps(cast(list[dict[str, Any]], jobs), "*", _JSON_STEP)
        return jobs

    def job_summaries(
        self, user: str | None = None, limit: int = 200, before: str | None = None, parent: str | None = None
    ) -> tuple[list[JobSummary], str | None]:
        """A page of the list: up to `limit` jobs (what the API's `Job` shows, without the job's
        spec), newest first, older than the job `before` (an id of `user`'s; None: from the
        newest), with their steps. Also the cursor of the next page: the id of the page's last job
        if there are older ones, else None. Ties in `created` are ordered by id, so paging neither
        repeats nor skips a job. NotFound if `before` names no job of `user`'s. Only jobs that are no
        sweep's run, or with `parent` only the runs of that sweep job."""
        cursor = None
        if before is not None:
            row = self.db.execute("SELECT created, id, user FROM jobs WHERE id=?", (before,)).fetchone()
            if row is None or (user is not None and row["user"] != user):
                raise NotFound(f"before: no job {shown(before)} of yours to page from", field="before")
            cursor = (row["created"], row["id"])
        limit = min(limit, 2**62)  # one more is asked for, to tell whether there is a next page
        query, args = self._list_query(_SUMMARY_JOB, user, limit + 1, None, cursor, parent=parent, top_level=True)
        raw = self.db.cursor()
        raw.row_factory = None  # plain tuples: they are the cache's keys
        rows: list[tuple[Any, ...]] = raw.execute(query, args).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        steps: dict[str, list[tuple[Any, ...]]] = {r[0]: [] for r in rows}
        ids = list(steps)
        for start in range(0, len(ids), _STEPS_AT_ONCE):
            chunk = ids[start : start + _STEPS_AT_ONCE]
            for step in raw.execute(
                f"SELECT {_SUMMARY_STEP} FROM steps WHERE job_id IN ({','.join('?' * len(chunk))}) "  # noqa: S608
                "ORDER BY job_id, position",
                chunk,
            ):
                steps[step[0]].append(step)
        metrics = self._metrics_of(ids)
        sweeps = self._sweeps({i: None for i in ids})
        page = [
            self._summary(row, tuple(steps[row[0]]), metrics.get(row[0], {}), sweeps.get(row[0], (None, None)))
            for row in rows
        ]
        return page, (page[-1]["id"] if more else None)

    def _summary(
        self,
        row: tuple[Any, ...],
        steps: tuple[tuple[Any, ...], ...],
        metrics: dict[str, float],
        sweep: tuple[dict[str, Any] | None, Any],
    ) -> JobSummary:
        """A job's summary from its raw rows; the same rows give the very same (cached) dict, whose
        `fingerprint` (the rows themselves, its metrics, a sweep's runs) lets views.py reuse what it made of it."""
        key = (row, steps, tuple(metrics.items()), sweep[1])
        summary = self._summaries.get(key)
        if summary is None:
            job = dict(zip(_SUMMARY_JOB_COLUMNS, row, strict=True))
            for field in ("parameters", "error"):
                if job[field] is not None:
                    job[field] = json.loads(job[field])
            job["steps"] = []
            for step_row in steps:
                step = dict(zip(_SUMMARY_STEP_COLUMNS, step_row, strict=True))
                for field in ("spec", "error", "cache"):
                    if step[field] is not None:
                        step[field] = json.loads(step[field])
                job["steps"].append(step)
            job["metrics"] = metrics
            job["sweep"] = sweep[0]
            job["fingerprint"] = key
            summary = cast(JobSummary, job)
            if len(self._summaries) >= _SUMMARIES_KEPT:
                self._summaries.clear()
            self._summaries[key] = summary
        return summary

    @staticmethod
    def _list_query(
        columns: str,
        user: str | None,
        limit: int,
        statuses: Iterable[str] | None,
        cursor: tuple[float, str] | None,
        *,
        parent: str | None = None,
        top_level: bool = False,
    ) -> tuple[str, list[Any]]:
        """SELECT of jobs newest first, by (created, id) so that the order is total; it walks the
        (user, created, id), (created, id) or (parent, created, id) index backwards, never sorting the
        table. `parent`: only that sweep's runs; else `top_level`: only jobs that are no sweep's run."""
        where: list[str] = []
        args: list[Any] = []
        if user is not None:
            where.append("user=?")
            args.append(user)
        if parent is not None:
            where.append("parent=?")
            args.append(parent)
        elif top_level:
            where.append("parent IS NULL")
        if statuses is not None:
            sts = list(statuses)
            where.append(f"status IN ({','.join('?' * len(sts))})")
            args.extend(sts)
        if cursor is not None:
            where.append("(created, id) < (?, ?)")
            args.extend(cursor)
        query = f"SELECT {columns} FROM jobs"  # noqa: S608 - columns are ours
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY created DESC, id DESC LIMIT ?"
        args.append(limit)
        return query, args

    def _attach_steps(self, jobs: list[dict[str, Any]], columns: str, json_fields: tuple[str, ...]) -> None:
        """Each job's `steps` in plan order, read in one query per _STEPS_AT_ONCE jobs (not one per job)."""
        by_id: dict[str, list[dict[str, Any]]] = {}
        for job in jobs:
            job["steps"] = by_id[job["id"]] = []
        ids = list(by_id)
        for start in range(0, len(ids), _STEPS_AT_ONCE):
            chunk = ids[start : start + _STEPS_AT_ONCE]
            rows = self.db.execute(
                f"SELECT {columns} FROM steps WHERE job_id IN ({','.join('?' * len(chunk))}) "  # noqa: S608 - ours
                "ORDER BY job_id, position",
                chunk,
            )
            for r in rows:
                step = self._row(r, json_fields)
                assert step is not None
                by_id[step["job_id"]].append(step)

    def update_job(self, job_id: str, **fields: Any) -> JobRecord:
        if fields:
            for key in _JSON_JOB:
                if key in fields and fields[key] is not None:
                    fields[key] = json.dumps(fields[key])
            sets = ", ".join(f"{k}=?" for k in fields)
            with self._tx() as db:
                db.execute(f"UPDATE jobs SET {sets} WHERE id=?", (*fields.values(), job_id))  # noqa: S608 - keys are ours
        return self._job(job_id)

    def update_step(self, job_id: str, name: str, *, expect_attempt: int | None = None, **fields: Any) -> bool:
        """Update a step; with expect_attempt, only if that attempt is still the current one."""
        query, args = self._step_update(job_id, name, fields)
        if expect_attempt is not None:
            query += " AND attempt=?"
            args.append(expect_attempt)
        with self._tx() as db:
            return db.execute(query, args).rowcount > 0

    @staticmethod
    def _step_update(job_id: str, name: str, fields: dict[str, Any]) -> tuple[str, list[Any]]:
        """The UPDATE of one step row setting `fields` (its JSON columns encoded), and its arguments."""
        values = {k: json.dumps(v) if k in _JSON_STEP and v is not None else v for k, v in fields.items()}
        sets = ", ".join(f"{k}=?" for k in values)
        query = f"UPDATE steps SET {sets} WHERE job_id=? AND name=?"  # noqa: S608 - keys are ours
        return query, [*values.values(), job_id, name]

    def mark_started(self, job_id: str, when: float) -> bool:
        """A queued job becomes running (its first step started); False if it was not queued."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET status='running', started=? WHERE id=? AND status='queued'", (when, job_id)
            )
            return cur.rowcount > 0

    def set_queue_positions(self, positions: dict[tuple[str, str], int | None]) -> None:
        """Each (job, step)'s place in its backend's line for a slot (1: next), None once out of it."""
        with self._tx() as db:
            db.executemany(
                "UPDATE steps SET queue_position=? WHERE job_id=? AND name=?",
                [(position, job_id, step) for (job_id, step), position in positions.items()],
            )

    def delete_job(self, job_id: str, user: str | None = None) -> JobRecord:
        job = self.get_job(job_id, user)
        if job["status"] in ("queued", "running"):
            raise Conflict(f"job {job_id!r} is {job['status']}; cancel it first (`jupyter-ext cancel {job_id}`)")
        with self._tx() as db:
            db.execute("DELETE FROM jobs WHERE id=?", (job_id,))
        self._free_pages()
        return job

    def finished_jobs(self, user: str | None = None) -> list[FinishedJob]:
        """Every finished job (id, user, created, finished, status), newest first: what retention
        chooses from. Queued and running jobs are never listed, nor a sweep's runs (they go with
        their sweep job: upkeep.py)."""
        query = (
            "SELECT id, user, created, finished, status FROM jobs "
            "WHERE status NOT IN ('queued', 'running') AND parent IS NULL"
        )
        args: list[Any] = []
        if user is not None:
            query += " AND user=?"
            args.append(user)
        return [cast(FinishedJob, dict(r)) for r in self.db.execute(query + " ORDER BY created DESC", args)]

    # -- disk space ---------------------------------------------------------------------------------
    def _free_pages(self) -> None:
        """Cut the pages a delete freed off the end of the file (incremental auto-vacuum). One
        statement stepped to its end: `execute` would free a single page."""
        if self.db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:
            self.db.executescript("PRAGMA incremental_vacuum;")

    def reclaim(self) -> dict[str, int]:
        """Give deleted rows' space back to the filesystem and empty the WAL: free pages cut off the
        file, then a TRUNCATE checkpoint. A database made before auto-vacuum (or with it off) is
        rewritten once by VACUUM, which also switches it to incremental auto-vacuum. Answers the
        sizes in bytes afterwards ({db, wal}); a checkpoint kept from finishing by another
        process's reader is simply tried again next time."""
        if self.db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            self.db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            self.db.execute("VACUUM")
        else:
            self._free_pages()
        timeout = self.db.execute("PRAGMA busy_timeout").fetchone()[0]
        self.db.execute("PRAGMA busy_timeout=1000")  # never hold the store's thread for long
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.OperationalError:
            pass
        finally:
            self.db.execute(f"PRAGMA busy_timeout={int(timeout)}")
        return self.disk_usage()

    def disk_usage(self) -> dict[str, int]:
        """Bytes of the database file and of its WAL (0 for an in-memory store)."""
        if self.path == ":memory:":
            return {"db": 0, "wal": 0}
        sizes = {}
        for key, path in (("db", Path(self.path)), ("wal", Path(f"{self.path}-wal"))):
            try:
                sizes[key] = path.stat().st_size
            except FileNotFoundError:
                sizes[key] = 0
        return sizes

    # -- events -------------------------------------------------------------------------------------
    def append_events(
        self,
        job_id: str,
        events: list[dict[str, Any]],
        *,
        step: str | None = None,
        attempt: int | None = None,
        step_update: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Store events, giving each the next `seq`. Runner events (with `n`) of a step attempt are
        stored only if newer than what was consumed; returns the events actually stored.
        `step_update`: fields of the row of `step` set in the same transaction (a cached step's
        hit: its events and its row change together, or neither does)."""
        if step_update and step is None:
            raise ValueError("step_update needs the step whose row it changes")
        stored: list[dict[str, Any]] = []
        with self._tx() as db:
            row = db.execute(
                "SELECT last_seq, (SELECT COUNT(*) FROM steps WHERE job_id=jobs.id) AS steps_count "
                "FROM jobs WHERE id=?",
                (job_id,),
            ).fetchone()
            if row is None:
                return []
            seq, single = row["last_seq"], row["steps_count"] <= 1
            consumed = None
            if step is not None and attempt is not None:
                srow = db.execute(
                    "SELECT consumed, attempt FROM steps WHERE job_id=? AND name=?", (job_id, step)
                ).fetchone()
                if srow is None or srow["attempt"] != attempt:
                    return []  # a stale attempt's reader: its events belong to nobody now
                consumed = srow["consumed"]
            for event in events:
                n = event.get("n")
                if consumed is not None and n is not None:
                    if n <= consumed:
                        continue
                    consumed = n
                seq += 1
                body = {k: v for k, v in event.items() if k != "n"}
                body.update(v=EVENT_VERSION, job=job_id, seq=seq)
                body.setdefault("ts", time.time())
                body.setdefault("step", step)
                if body["type"] == "artifact" and "path" in body:
                    body["name"] = self._artifact(db, job_id, body, single)
                if body["type"] == "cell.output" and body.get("artifact"):
                    body["artifact"] = artifact_name(body.get("step") or "main", body["artifact"], single)
                if body["type"] == "metric":
                    self._metric(db, job_id, body)
                db.execute(
                    "INSERT INTO events (job_id, seq, step, type, body) VALUES (?,?,?,?,?)",
                    (job_id, seq, body.get("step"), body["type"], json.dumps(body, default=str)),
                )
                stored.append(body)
            db.execute("UPDATE jobs SET last_seq=? WHERE id=?", (seq, job_id))
            if consumed is not None:
                db.execute("UPDATE steps SET consumed=? WHERE job_id=? AND name=?", (consumed, job_id, step))
            if step_update and step is not None:
                db.execute(*self._step_update(job_id, step, step_update))
        return stored

    def _artifact(self, db: sqlite3.Connection, job_id: str, event: dict[str, Any], single: bool) -> str:
        step = event.get("step") or "main"
        name = artifact_name(step, event["path"], single)
        location = event.get("location") or event["path"]
        size, mime = int(event.get("size", 0)), event.get("mime", "application/octet-stream")
        db.execute(
            "INSERT INTO artifacts (job_id, name, step, path, size, mime, created) VALUES (?,?,?,?,?,?,?) "
            "ON CONFLICT(job_id, name) DO UPDATE SET path=excluded.path, size=excluded.size, "
            "mime=excluded.mime, step=excluded.step, created=excluded.created",
            (job_id, name, step, location, size, mime, event.get("ts", time.time())),
        )
        return name

    def events(self, job_id: str, after: int = 0, limit: int = 10000) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT body FROM events WHERE job_id=? AND seq>? ORDER BY seq LIMIT ?", (job_id, after, limit)
        ).fetchall()
        return [json.loads(r["body"]) for r in rows]

    # -- artifacts -------------------------------------------------------------------------------------
    def artifacts(self, job_id: str) -> list[ArtifactRecord]:
        rows = self.db.execute(
            "SELECT name, step, path, size, mime, created FROM artifacts WHERE job_id=? ORDER BY step, name", (job_id,)
        ).fetchall()
        return [cast(ArtifactRecord, dict(r)) for r in rows]

    def set_artifact_size(self, job_id: str, name: str, size: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE artifacts SET size=? WHERE job_id=? AND name=?", (size, job_id, name))

    def artifact(self, job_id: str, name: str) -> ArtifactRecord:
        row = self.db.execute("SELECT * FROM artifacts WHERE job_id=? AND name=?", (job_id, name)).fetchone()
        if row is None:
            raise NotFound(f"job {job_id!r} has no artifact {name!r}; list them with GET .../artifacts", field="name")
        return cast(ArtifactRecord, dict(row))

    # -- metrics --------------------------------------------------------------------------------------
    # One row per `metric` event (runner/metrics.py), written by append_events in the event's own
    # transaction; a job shows each name's last value.
    @staticmethod
    def _metric(db: sqlite3.Connection, job_id: str, event: dict[str, Any]) -> None:
        name, value = event.get("name"), event.get("value")
        if not isinstance(name, str) or isinstance(value, bool) or not isinstance(value, (int, float)):
            return  # not a metric the runner would send: kept as an event, not as a number
        if not math.isfinite(value):
            return
        db.execute(
            "INSERT OR REPLACE INTO metrics (job_id, seq, step, name, value) VALUES (?,?,?,?,?)",
            (job_id, event["seq"], event.get("step") or "", name, float(value)),
        )

    def metrics(self, job_id: str) -> dict[str, float]:
        """Each metric's last value, names in the order first logged."""
        return self._metrics_of([job_id]).get(job_id, {})

    def _metrics_of(self, ids: list[str]) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for start in range(0, len(ids), _STEPS_AT_ONCE):
            chunk = ids[start : start + _STEPS_AT_ONCE]
            rows = self.db.execute(
                "SELECT m.job_id, m.name, m.value FROM metrics m JOIN (SELECT job_id, name, MIN(seq) AS first, "
                "MAX(seq) AS last FROM metrics "
                f"WHERE job_id IN ({','.join('?' * len(chunk))}) GROUP BY job_id, name) g "  # noqa: S608 - placeholders
                "ON m.job_id=g.job_id AND m.seq=g.last ORDER BY g.job_id, g.first",
                chunk,
            )
            for job_id, name, value in rows:
                out.setdefault(job_id, {})[name] = value
        return out

    # -- sweeps ---------------------------------------------------------------------------------------
    # A sweep job (spec.sweep set, no steps) and its runs: jobs whose `parent` is its id (sweeps.py).
    def create_sweep(
        self, sweep: dict[str, Any], children: list[tuple[dict[str, Any], list[dict[str, Any]]]]
    ) -> tuple[JobRecord, bool]:
        """Insert a sweep job and all its runs (each with its steps) in one transaction. With an
        idempotency key already used by this user, the existing job instead (created=False)."""
        return self._create(sweep, [], children)

    def sweep_runs(self, sweep_id: str) -> list[dict[str, Any]]:
        """The runs of a sweep in the order of their combinations: id, name, parameters, status,
        cancel_requested, started, finished."""
        rows = self.db.execute(
            "SELECT id, name, parameters, status, cancel_requested, started, finished FROM jobs "
            "WHERE parent=? ORDER BY created, id",
            (sweep_id,),
        )
        return [cast(dict[str, Any], self._row(r, ("parameters",))) for r in rows]

    def job_state(self, job_id: str) -> tuple[str, bool]:
        """A job's status and whether its cancelling was asked for (one cheap read)."""
        row = self.db.execute("SELECT status, cancel_requested FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"no job {job_id!r}; `jupyter-ext ls` lists your jobs", field="id")
        return str(row["status"]), bool(row["cancel_requested"])

    def _sweeps(self, jobs: dict[str, Any]) -> dict[str, tuple[dict[str, Any], Any]]:
        """For the sweep jobs among `jobs` (id -> (spec.sweep, spec) when known, else None): the raw
        block views.py shows as `sweep` ({mode, parallel, names, children: [{id, name, parameters,
        status, started, finished, metrics}]}) and a hashable fingerprint of what it was made from."""
        ids = list(jobs)
        runs: dict[str, list[tuple[Any, ...]]] = {}
        raw = self.db.cursor()
        raw.row_factory = None
        for start in range(0, len(ids), _STEPS_AT_ONCE):
            chunk = ids[start : start + _STEPS_AT_ONCE]
            for row in raw.execute(
                "SELECT parent, id, name, parameters, status, started, finished FROM jobs "
                f"WHERE parent IN ({','.join('?' * len(chunk))}) ORDER BY parent, created, id",  # noqa: S608
                chunk,
            ):
                runs.setdefault(row[0], []).append(row)
        known = {i: v for i, v in jobs.items() if v is not None}
        wanted = [i for i in ids if i in runs and i not in known]
        for start in range(0, len(wanted), _STEPS_AT_ONCE):
            chunk = wanted[start : start + _STEPS_AT_ONCE]
            for job_id, sweep, mode, parallel in raw.execute(
                "SELECT id, json_extract(spec, '$.sweep'), json_extract(spec, '$.sweep_mode'), "
                "json_extract(spec, '$.sweep_parallel') FROM jobs "
                f"WHERE id IN ({','.join('?' * len(chunk))})",  # noqa: S608 - placeholders
                chunk,
            ):
                if sweep is not None:
                    known[job_id] = (json.loads(sweep), {"sweep_mode": mode, "sweep_parallel": parallel})
        children_metrics = self._metrics_of([r[1] for i in known for r in runs.get(i, [])])
        out: dict[str, tuple[dict[str, Any], Any]] = {}
        for job_id, (sweep, spec) in known.items():
            if not isinstance(sweep, dict):
                continue
            rows = runs.get(job_id, [])
            block = {
                "mode": spec.get("sweep_mode") or "grid",
                "parallel": spec.get("sweep_parallel"),
                "names": list(sweep),
                "children": [
                    {
                        "id": r[1],
                        "name": r[2],
                        "parameters": json.loads(r[3]),
                        "status": r[4],
                        "started": r[5],
                        "finished": r[6],
                        "metrics": children_metrics.get(r[1], {}),
                    }
                    for r in rows
                ],
            }
            fingerprint = (
                json.dumps([block["mode"], block["parallel"], block["names"]]),
                tuple(rows),
                tuple((r[1], tuple(children_metrics.get(r[1], {}).items())) for r in rows),
            )
            out[job_id] = (block, fingerprint)
        return out

    # -- step cache ------------------------------------------------------------------------------------
    def cache_candidates(self, user: str, key: str, limit: int = 10) -> list[dict[str, Any]]:
        """`user`'s cached steps with `key` that are still what they were when cached (the job
        exists, the step row is that succeeded attempt), newest first: {job_id, step, attempt, parent}."""
        rows = self.db.execute(
            "SELECT c.job_id, c.step, c.attempt, j.parent FROM step_cache c JOIN steps s ON s.job_id=c.job_id "
            "AND s.name=c.step JOIN jobs j ON j.id=c.job_id "
            "WHERE c.user=? AND c.key=? AND s.status='succeeded' AND s.attempt=c.attempt "
            "ORDER BY c.created DESC LIMIT ?",
            (user, key, limit),
        ).fetchall()
        return [dict(r) for r in rows]

    def cache_put(self, user: str, key: str, job_id: str, step: str, attempt: int) -> None:
        """Keep a step that ran and succeeded as the cached result of `key` (it goes with its job)."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO step_cache (user, key, job_id, step, attempt, created) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT(job_id, step) DO UPDATE SET user=excluded.user, key=excluded.key, "
                "attempt=excluded.attempt, created=excluded.created",
                (user, key, job_id, step, attempt, time.time()),
            )

    def step_events(self, job_id: str, step: str) -> list[dict[str, Any]]:
        """Every stored event of one step of a job, in order."""
        rows = self.db.execute(
            "SELECT body FROM events WHERE job_id=? AND step=? ORDER BY seq", (job_id, step)
        ).fetchall()
        return [json.loads(r["body"]) for r in rows]


class AsyncStore(AsyncScheduleRows):
    """The store for async code: every call runs on one dedicated thread."""

    sync: Store

    def __init__(self, store: Store) -> None:
        self.sync = store
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jupyter-ext-store")

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def create_job(self, job: dict[str, Any], steps: list[dict[str, Any]]) -> tuple[JobRecord, bool]:
        return await self.call(self.sync.create_job, job, steps)

    async def get_job(self, job_id: str, user: str | None = None) -> JobRecord:
        return await self.call(self.sync.get_job, job_id, user)

    async def list_jobs(
        self,
        user: str | None = None,
        limit: int = 200,
        statuses: Iterable[str] | None = None,
        *,
        parent: str | None = None,
        top_level: bool = False,
    ) -> list[JobRecord]:
        return await self.call(self.sync.list_jobs, user, limit, statuses, parent=parent, top_level=top_level)

    async def job_summaries(
        self, user: str | None = None, limit: int = 200, before: str | None = None, parent: str | None = None
    ) -> tuple[list[JobSummary], str | None]:
        return await self.call(self.sync.job_summaries, user, limit, before, parent)

    async def update_job(self, job_id: str, **fields: Any) -> JobRecord:
        return await self.call(self.sync.update_job, job_id, **fields)

    async def update_step(self, job_id: str, name: str, **fields: Any) -> bool:
        return await self.call(self.sync.update_step, job_id, name, **fields)

    async def delete_job(self, job_id: str, user: str | None = None) -> JobRecord:
        return await self.call(self.sync.delete_job, job_id, user)

    async def mark_started(self, job_id: str, when: float) -> bool:
        return await self.call(self.sync.mark_started, job_id, when)

    async def set_queue_positions(self, positions: dict[tuple[str, str], int | None]) -> None:
        await self.call(self.sync.set_queue_positions, positions)

    async def finished_jobs(self, user: str | None = None) -> list[FinishedJob]:
        return await self.call(self.sync.finished_jobs, user)

    async def reclaim(self) -> dict[str, int]:
        return await self.call(self.sync.reclaim)

    async def append_events(self, job_id: str, events: list[dict[str, Any]], **kw: Any) -> list[dict[str, Any]]:
        return await self.call(self.sync.append_events, job_id, events, **kw)

    async def events(self, job_id: str, after: int = 0, limit: int = 10000) -> list[dict[str, Any]]:
        return await self.call(self.sync.events, job_id, after, limit)

    async def artifacts(self, job_id: str) -> list[ArtifactRecord]:
        return await self.call(self.sync.artifacts, job_id)

    async def artifact(self, job_id: str, name: str) -> ArtifactRecord:
        return await self.call(self.sync.artifact, job_id, name)

    async def set_artifact_size(self, job_id: str, name: str, size: int) -> None:
        await self.call(self.sync.set_artifact_size, job_id, name, size)

    # -- metrics --------------------------------------------------------------------------------------
    async def metrics(self, job_id: str) -> dict[str, float]:
        return await self.call(self.sync.metrics, job_id)

    # -- sweeps ---------------------------------------------------------------------------------------
    async def create_sweep(
        self, sweep: dict[str, Any], children: list[tuple[dict[str, Any], list[dict[str, Any]]]]
    ) -> tuple[JobRecord, bool]:
        return await self.call(self.sync.create_sweep, sweep, children)

    async def sweep_runs(self, sweep_id: str) -> list[dict[str, Any]]:
        return await self.call(self.sync.sweep_runs, sweep_id)

    async def job_state(self, job_id: str) -> tuple[str, bool]:
        return await self.call(self.sync.job_state, job_id)

    # -- step cache ------------------------------------------------------------------------------------
    async def cache_candidates(self, user: str, key: str, limit: int = 10) -> list[dict[str, Any]]:
        return await self.call(self.sync.cache_candidates, user, key, limit)

    async def cache_put(self, user: str, key: str, job_id: str, step: str, attempt: int) -> None:
        await self.call(self.sync.cache_put, user, key, job_id, step, attempt)

    async def step_events(self, job_id: str, step: str) -> list[dict[str, Any]]:
        return await self.call(self.sync.step_events, job_id, step)

    async def close(self) -> None:
        await self.call(self.sync.close)
        self._executor.shutdown(wait=False)
