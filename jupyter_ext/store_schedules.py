"""The SQL of schedules (schedules.py makes and reads the rows), mixed into store.Store and
store.AsyncStore so it runs over the store's one connection and thread.

A schedule's row: its cron and zone, `spec` (JSON: parameters, sweep, backend, kernel,
snapshot_taken), `paused`, and `next_run` (epoch s; NULL while paused). `schedule_runs` has one row
per fired run: its PRIMARY KEY (schedule_id, due) is what keeps two servers on one database from
firing the same run twice. The tables are in store.py's schema (version 4).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .errors import NotFound, shown

T = TypeVar("T")
_IDS_AT_ONCE = 500  # schedule ids in one `IN (...)`, well under SQLite's limit on bound parameters


class ScheduleRows:
    """Store's schedule statements (a mixin: Store gives `db`, `_tx` and `_row`)."""

    if TYPE_CHECKING:
        db: sqlite3.Connection

        def _tx(self) -> AbstractContextManager[sqlite3.Connection]: ...

        @staticmethod
        def _row(row: sqlite3.Row | None, json_fields: Iterable[str]) -> dict[str, Any] | None: ...

    def create_schedule(self, row: dict[str, Any]) -> dict[str, Any]:
        with self._tx() as db:
            db.execute(
                "INSERT INTO schedules (id, user, name, notebook, cron, timezone, spec, paused, created, updated, "
                "next_run) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    row["id"],
                    row["user"],
                    row["name"],
                    row["notebook"],
                    row["cron"],
                    row["timezone"],
                    json.dumps(row.get("spec", {})),
                    int(bool(row.get("paused", False))),
                    row["created"],
                    row.get("updated", row["created"]),
                    row.get("next_run"),
                ),
            )
        return self.get_schedule(row["id"])

    def get_schedule(self, schedule_id: str, user: str | None = None) -> dict[str, Any]:
        """A schedule; NotFound (never Forbidden, so ids do not leak) for another user's."""
        row = self._row(self.db.execute("SELECT * FROM schedules WHERE id=?", (schedule_id,)).fetchone(), ("spec",))
        if row is None or (user is not None and row["user"] != user):
            raise NotFound(f"no schedule {shown(schedule_id, 80)}; `jupyter-ext schedule ls` lists yours", field="id")
        return row

    def list_schedules(self, user: str | None = None) -> list[dict[str, Any]]:
        """`user`'s schedules (None: everyone's), newest first."""
        query, args = "SELECT * FROM schedules", []
        if user is not None:
            query, args = query + " WHERE user=?", [user]
        rows = self.db.execute(query + " ORDER BY created DESC, id DESC", args)
        return [cast(dict[str, Any], self._row(r, ("spec",))) for r in rows]

    def update_schedule(self, schedule_id: str, **fields: Any) -> dict[str, Any]:
        if "spec" in fields:
            fields["spec"] = json.dumps(fields["spec"])
        if "paused" in fields:
            fields["paused"] = int(bool(fields["paused"]))
        if fields:
            sets = ", ".join(f"{k}=?" for k in fields)
            with self._tx() as db:
                db.execute(f"UPDATE schedules SET {sets} WHERE id=?", (*fields.values(), schedule_id))  # noqa: S608
        return self.get_schedule(schedule_id)

    def delete_schedule(self, schedule_id: str, user: str | None = None) -> dict[str, Any]:
        """Delete a schedule with its runs' rows (the jobs it fired stay)."""
        row = self.get_schedule(schedule_id, user)
        with self._tx() as db:
            db.execute("DELETE FROM schedules WHERE id=?", (schedule_id,))
        return row

    def due_schedules(self, now: float) -> list[dict[str, Any]]:
        """Every user's active schedules whose next run is due at `now`, the earliest first."""
        rows = self.db.execute(
            "SELECT * FROM schedules WHERE paused=0 AND next_run IS NOT NULL AND next_run<=? ORDER BY next_run, id",
            (now,),
        )
        return [cast(dict[str, Any], self._row(r, ("spec",))) for r in rows]

    def next_schedule_run(self) -> float | None:
        """The earliest next run of any active schedule (None: none is active)."""
        row = self.db.execute("SELECT MIN(next_run) AS due FROM schedules WHERE paused=0").fetchone()
        return None if row is None or row["due"] is None else float(row["due"])

    def active_schedules(self) -> int:
        """How many schedules (anyone's) are active: not paused, with a next run."""
        row = self.db.execute("SELECT COUNT(*) AS n FROM schedules WHERE paused=0 AND next_run IS NOT NULL").fetchone()
        return int(row["n"])

    def claim_schedule_run(self, schedule_id: str, due: float, fired: float, next_run: float | None) -> bool:
        """Take the run of `schedule_id` due at `due` for this process, and move the schedule on to
        `next_run`, in one transaction. False (nothing fired here) when the schedule is gone, paused, or
        no longer due at `due` (another server fired it and moved it on, or it was changed), or when
        the run exists already (the PRIMARY KEY: another server took it first)."""
        with self._tx() as db:
            row = db.execute("SELECT next_run, paused FROM schedules WHERE id=?", (schedule_id,)).fetchone()
            if row is None or row["paused"] or row["next_run"] != due:
                return False
            taken = db.execute(
                "INSERT OR IGNORE INTO schedule_runs (schedule_id, due, fired) VALUES (?,?,?)",
                (schedule_id, due, fired),
            ).rowcount
            db.execute("UPDATE schedules SET next_run=? WHERE id=?", (next_run, schedule_id))
            return taken > 0

    def finish_schedule_run(
        self, schedule_id: str, due: float, *, job_id: str | None = None, error: str | None = None, keep: int = 100
    ) -> None:
        """Record what a fired run became (its job, or why there is none); keep the `keep` newest runs."""
        with self._tx() as db:
            db.execute(
                "UPDATE schedule_runs SET job_id=?, error=? WHERE schedule_id=? AND due=?",
                (job_id, error, schedule_id, due),
            )
            db.execute(
                "DELETE FROM schedule_runs WHERE schedule_id=? AND due < (SELECT due FROM schedule_runs "
                "WHERE schedule_id=? ORDER BY due DESC LIMIT 1 OFFSET ?)",
                (schedule_id, schedule_id, keep - 1),
            )

    def abandon_schedule_runs(self, fired_before: float, error: str) -> int:
        """Runs taken before `fired_before` that never got a job or an error (their server stopped
        in between) get `error`; answers how many."""
        with self._tx() as db:
            return db.execute(
                "UPDATE schedule_runs SET error=? WHERE job_id IS NULL AND error IS NULL AND fired<?",
                (error, fired_before),
            ).rowcount

    def schedule_runs(self, schedule_ids: list[str], limit: int = 10) -> dict[str, list[dict[str, Any]]]:
        """The `limit` newest runs of each schedule (newest first), each with its job's status
        (None: not fired yet, no job, or the job was deleted)."""
        runs: dict[str, list[dict[str, Any]]] = {i: [] for i in schedule_ids}
        for start in range(0, len(schedule_ids), _IDS_AT_ONCE):
            chunk = schedule_ids[start : start + _IDS_AT_ONCE]
            rows = self.db.execute(
                "SELECT schedule_id, due, fired, job_id, error, status FROM ("
                "SELECT r.schedule_id, r.due, r.fired, r.job_id, r.error, j.status, "
                "ROW_NUMBER() OVER (PARTITION BY r.schedule_id ORDER BY r.due DESC) AS n "
                "FROM schedule_runs r LEFT JOIN jobs j ON j.id = r.job_id "
                f"WHERE r.schedule_id IN ({','.join('?' * len(chunk))})) "  # noqa: S608 - placeholders only
                "WHERE n<=? ORDER BY schedule_id, due DESC",
                (*chunk, limit),
            )
            for r in rows:
                runs[r["schedule_id"]].append(dict(r))
        return runs


class AsyncScheduleRows:
    """AsyncStore's mirror of ScheduleRows (a mixin: AsyncStore gives `sync` and `call`)."""

    if TYPE_CHECKING:
        sync: ScheduleRows

        async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T: ...

    async def create_schedule(self, row: dict[str, Any]) -> dict[str, Any]:
        return await self.call(self.sync.create_schedule, row)

    async def get_schedule(self, schedule_id: str, user: str | None = None) -> dict[str, Any]:
        return await self.call(self.sync.get_schedule, schedule_id, user)

    async def list_schedules(self, user: str | None = None) -> list[dict[str, Any]]:
        return await self.call(self.sync.list_schedules, user)

    async def update_schedule(self, schedule_id: str, **fields: Any) -> dict[str, Any]:
        return await self.call(self.sync.update_schedule, schedule_id, **fields)

    async def delete_schedule(self, schedule_id: str, user: str | None = None) -> dict[str, Any]:
        return await self.call(self.sync.delete_schedule, schedule_id, user)

    async def due_schedules(self, now: float) -> list[dict[str, Any]]:
        return await self.call(self.sync.due_schedules, now)

    async def next_schedule_run(self) -> float | None:
        return await self.call(self.sync.next_schedule_run)

    async def active_schedules(self) -> int:
        return await self.call(self.sync.active_schedules)

    async def claim_schedule_run(self, schedule_id: str, due: float, fired: float, next_run: float | None) -> bool:
        return await self.call(self.sync.claim_schedule_run, schedule_id, due, fired, next_run)

    async def finish_schedule_run(
        self, schedule_id: str, due: float, *, job_id: str | None = None, error: str | None = None
    ) -> None:
        await self.call(self.sync.finish_schedule_run, schedule_id, due, job_id=job_id, error=error)

    async def abandon_schedule_runs(self, fired_before: float, error: str) -> int:
        return await self.call(self.sync.abandon_schedule_runs, fired_before, error)

    async def schedule_runs(self, schedule_ids: list[str], limit: int = 10) -> dict[str, list[dict[str, Any]]]:
        return await self.call(self.sync.schedule_runs, schedule_ids, limit)
