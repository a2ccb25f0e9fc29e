"""SQLite store of jobs, steps, events and artifacts (WAL, schema-versioned).

`Store` is synchronous and owns one connection; `AsyncStore` runs every call on one
dedicated thread so the server's event loop never waits on the disk. Events get a per-job
`seq` inside the same transaction that records how many runner events of the step attempt
were consumed (`steps.consumed`), so resuming a stream after a crash or from two readers at
once can neither skip nor duplicate an event. Rows come back as records.py's typed dicts.

Why this module is long: it is every SQL statement of the project (schema and its migrations,
jobs, the list's pages, events, artifacts, disk space) over one connection, plus the async
wrapper that mirrors each call; splitting it would spread the transactions that must stay
together (an event's seq and its step's `consumed`) over modules sharing one connection.
"""

from __future__ import annotations

import asyncio
import json
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
_SUMMARY_JOB = "id, user, name, notebook, backend, status, parameters, created, started, finished, error, last_seq"
_SUMMARY_STEP = "job_id, name, position, status, spec, attempt, started, finished, exit_code, error, queue_position"
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


class Store:
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
        with self._tx() as db:
            key = job.get("idempotency_key")
            if key:
                row = db.execute(
                    "SELECT id FROM jobs WHERE user=? AND idempotency_key=?", (job["user"], key)
                ).fetchone()
                if row:
                    return self._job(row["id"]), False
            db.execute(
                "INSERT INTO jobs (id, user, name, notebook, backend, status, parameters, spec, created, "
                "idempotency_key) VALUES (?,?,?,?,?,?,?,?,?,?)",
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
                    key,
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
        return self._job(job["id"]), True

    def _job(self, job_id: str) -> JobRecord:
        job = self._row(self.db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone(), _JSON_JOB)
        if job is None:
            raise NotFound(f"no job {job_id!r}; `jupyter-ext ls` lists your jobs", field="id")
        job["steps"] = [
            self._row(r, _JSON_STEP)
            for r in self.db.execute("SELECT * FROM steps WHERE job_id=? ORDER BY position", (job_id,))
        ]
        return cast(JobRecord, job)

    def get_job(self, job_id: str, user: str | None = None) -> JobRecord:
        """The job with its steps; NotFound (never Forbidden, so ids do not leak) for another user's."""
        job = self._job(job_id)
        if user is not None and job["user"] != user:
            raise NotFound(f"no job {job_id!r}; `jupyter-ext ls` lists your jobs", field="id")
        return job

    def list_jobs(
        self, user: str | None = None, limit: int = 200, statuses: Iterable[str] | None = None
    ) -> list[JobRecord]:
        """Whole jobs (spec and step handles included), newest first; steps read in one query."""
        query, args = self._list_query("*", user, limit, statuses, None)
        jobs = [cast(JobRecord, self._row(r, _JSON_JOB)) for r in self.db.execute(query, args)]
        self._attach_steps(cast(list[dict[str, Any]], jobs), "*", _JSON_STEP)
        return jobs

    def job_summaries(
        self, user: str | None = None, limit: int = 200, before: str | None = None
    ) -> tuple[list[JobSummary], str | None]:
        """A page of the list: up to `limit` jobs (what the API's `Job` shows, without the job's
        spec), newest first, older than the job `before` (an id of `user`'s; None: from the
        newest), with their steps. Also the cursor of the next page: the id of the page's last job
        if there are older ones, else None. Ties in `created` are ordered by id, so paging neither
        repeats nor skips a job. NotFound if `before` names no job of `user`'s."""
        cursor = None
        if before is not None:
            row = self.db.execute("SELECT created, id, user FROM jobs WHERE id=?", (before,)).fetchone()
            if row is None or (user is not None and row["user"] != user):
                raise NotFound(f"before: no job {shown(before)} of yours to page from", field="before")
            cursor = (row["created"], row["id"])
        limit = min(limit, 2**62)  # one more is asked for, to tell whether there is a next page
        query, args = self._list_query(_SUMMARY_JOB, user, limit + 1, None, cursor)
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
        page = [self._summary(row, tuple(steps[row[0]])) for row in rows]
        return page, (page[-1]["id"] if more else None)

    def _summary(self, row: tuple[Any, ...], steps: tuple[tuple[Any, ...], ...]) -> JobSummary:
        """A job's summary from its raw rows; the same rows give the very same (cached) dict, whose
        `fingerprint` (the rows themselves) lets views.py reuse what it made of it."""
        key = (row, steps)
        summary = self._summaries.get(key)
        if summary is None:
            job = dict(zip(_SUMMARY_JOB_COLUMNS, row, strict=True))
            for field in ("parameters", "error"):
                if job[field] is not None:
                    job[field] = json.loads(job[field])
            job["steps"] = []
            for step_row in steps:
                step = dict(zip(_SUMMARY_STEP_COLUMNS, step_row, strict=True))
                for field in ("spec", "error"):
                    if step[field] is not None:
                        step[field] = json.loads(step[field])
                job["steps"].append(step)
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
    ) -> tuple[str, list[Any]]:
        """SELECT of jobs newest first, by (created, id) so that the order is total; it walks the
        (user, created, id) or (created, id) index backwards, never sorting the table."""
        where: list[str] = []
        args: list[Any] = []
        if user is not None:
            where.append("user=?")
            args.append(user)
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
        for key in _JSON_STEP:
            if key in fields and fields[key] is not None:
                fields[key] = json.dumps(fields[key])
        sets = ", ".join(f"{k}=?" for k in fields)
        query = f"UPDATE steps SET {sets} WHERE job_id=? AND name=?"  # noqa: S608 - keys are ours
        args: list[Any] = [*fields.values(), job_id, name]
        if expect_attempt is not None:
            query += " AND attempt=?"
            args.append(expect_attempt)
        with self._tx() as db:
            return db.execute(query, args).rowcount > 0

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
        chooses from. Queued and running jobs are never listed."""
        query = "SELECT id, user, created, finished, status FROM jobs WHERE status NOT IN ('queued', 'running')"
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
    ) -> list[dict[str, Any]]:
        """Store events, giving each the next `seq`. Runner events (with `n`) of a step attempt are
        stored only if newer than what was consumed; returns the events actually stored."""
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
                db.execute(
                    "INSERT INTO events (job_id, seq, step, type, body) VALUES (?,?,?,?,?)",
                    (job_id, seq, body.get("step"), body["type"], json.dumps(body, default=str)),
                )
                stored.append(body)
            db.execute("UPDATE jobs SET last_seq=? WHERE id=?", (seq, job_id))
            if consumed is not None:
                db.execute("UPDATE steps SET consumed=? WHERE job_id=? AND name=?", (consumed, job_id, step))
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


class AsyncStore:
    """The store for async code: every call runs on one dedicated thread."""

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
        self, user: str | None = None, limit: int = 200, statuses: Iterable[str] | None = None
    ) -> list[JobRecord]:
        return await self.call(self.sync.list_jobs, user, limit, statuses)

    async def job_summaries(
        self, user: str | None = None, limit: int = 200, before: str | None = None
    ) -> tuple[list[JobSummary], str | None]:
        return await self.call(self.sync.job_summaries, user, limit, before)

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

    async def close(self) -> None:
        await self.call(self.sync.close)
        self._executor.shutdown(wait=False)
