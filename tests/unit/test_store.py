"""The SQLite store: seq assignment, exactly-once resume, ownership, idempotency, schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from jupyter_ext.errors import Conflict, NotFound
from jupyter_ext.store import SCHEMA_VERSION, Store, artifact_name


def make(
    store: Store, job_id: str = "j1", user: str = "ada", steps: tuple[str, ...] = ("main",), key: str | None = None
):
    return store.create_job(
        {"id": job_id, "user": user, "name": "n", "notebook": "a.ipynb", "backend": "local", "idempotency_key": key},
        [{"name": s, "spec": {"name": s}} for s in steps],
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "jobs.db")


def runner_events(*ns: int) -> list[dict]:
    return [
        {"type": "cell.output", "n": n, "output": {"output_type": "stream", "name": "stdout", "text": f"{n}\n"}}
        for n in ns
    ]


def test_seq_is_per_job_contiguous_and_resume_drops_what_was_stored(store: Store) -> None:
    make(store)
    store.update_step("j1", "main", attempt=1)
    assert [e["seq"] for e in store.append_events("j1", [{"type": "job.start"}])] == [1]
    stored = store.append_events("j1", runner_events(1, 2, 3), step="main", attempt=1)
    assert [e["seq"] for e in stored] == [2, 3, 4] and all("n" not in e for e in stored)
    # A second reader (a restarted server re-reading the file) offers 2..5: only 4 and 5 are new.
    again = store.append_events("j1", runner_events(2, 3, 4, 5), step="main", attempt=1)
    assert [(e["seq"], e["output"]["text"]) for e in again] == [(5, "4\n"), (6, "5\n")]
    assert [e["seq"] for e in store.events("j1")] == [1, 2, 3, 4, 5, 6]
    assert [e["seq"] for e in store.events("j1", after=4)] == [5, 6]
    assert store.get_job("j1")["last_seq"] == 6 and store.get_job("j1")["steps"][0]["consumed"] == 5


def test_events_of_a_stale_attempt_are_dropped(store: Store) -> None:
    make(store)
    store.update_step("j1", "main", attempt=2)
    assert store.append_events("j1", runner_events(1), step="main", attempt=1) == []
    assert store.events("j1") == []


def test_other_users_jobs_are_not_found(store: Store) -> None:
    make(store, user="ada")
    assert store.get_job("j1", "ada")["user"] == "ada"
    with pytest.raises(NotFound, match="no job 'j1'"):
        store.get_job("j1", "bob")
    assert store.list_jobs("bob") == [] and len(store.list_jobs("ada")) == 1
    with pytest.raises(NotFound):
        store.delete_job("j1", "bob")
    assert store.get_job("j1")["id"] == "j1"


def test_idempotency_key_is_per_user(store: Store) -> None:
    first, created = make(store, "j1", key="k")
    again, created_again = make(store, "j2", key="k")
    assert created and not created_again and again["id"] == "j1"
    other, created_other = make(store, "j3", user="bob", key="k")
    assert created_other and other["id"] == "j3"


def test_delete_refuses_running_jobs(store: Store) -> None:
    make(store)
    store.update_job("j1", status="running")
    with pytest.raises(Conflict, match="cancel it first"):
        store.delete_job("j1")
    store.update_job("j1", status="failed")
    store.delete_job("j1")
    with pytest.raises(NotFound):
        store.get_job("j1")


def test_artifacts_are_named_flat_and_by_step_when_several(store: Store) -> None:
    assert artifact_name("main", "plots/loss.png", single_step=True) == "plots__loss.png"
    assert artifact_name("train", "model.pkl", single_step=False) == "train__model.pkl"
    make(store, "j1", steps=("prep", "train"))
    store.update_step("j1", "train", attempt=1)
    event = {"type": "artifact", "n": 1, "path": "out/model.pkl", "location": "/x/model.pkl", "size": 3, "mime": "a/b"}
    stored = store.append_events("j1", [event], step="train", attempt=1)
    assert stored[0]["name"] == "train__out__model.pkl"
    assert store.artifact("j1", "train__out__model.pkl")["path"] == "/x/model.pkl"


def test_newer_schema_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    Store(tmp_path / "jobs.db").close()
    db = sqlite3.connect(tmp_path / "jobs.db")
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    with pytest.raises(RuntimeError, match="newer than this jupyter-ext"):
        Store(tmp_path / "jobs.db")


def _fill(store: Store, job_id: str, megabytes: int) -> None:
    """A finished job with `megabytes` MB of output events."""
    make(store, job_id)
    store.update_step(job_id, "main", attempt=1)
    text = "x" * 1000 + "\n"
    for batch in range(megabytes):
        events = [
            {"type": "cell.output", "n": batch * 1000 + i + 1, "output": {"output_type": "stream", "text": text}}
            for i in range(1000)
        ]
        store.append_events(job_id, events, step="main", attempt=1)
    store.update_job(job_id, status="succeeded")


def _sizes(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def test_deleting_jobs_gives_the_space_back_and_reclaim_empties_the_wal(tmp_path: Path) -> None:
    store = Store(tmp_path / "jobs.db")
    _fill(store, "big", 6)
    make(store, "small")
    full = store.reclaim()
    assert full["db"] > 6 * 10**6 and full["wal"] == 0
    store.delete_job("big")
    # The delete itself cuts the freed pages off the file (incremental auto-vacuum) ...
    assert store.db.execute("PRAGMA freelist_count").fetchone()[0] == 0
    # ... and a reclaim (after bulk deletes, and periodically) empties the WAL too.
    after = store.reclaim()
    assert after["db"] < 200_000 and after["wal"] == 0, after
    assert _sizes(tmp_path / "jobs.db") < 200_000
    assert store.get_job("small")["id"] == "small"


def test_a_database_made_before_auto_vacuum_is_converted_by_reclaim(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    old = sqlite3.connect(path)  # what an older jupyter-ext made: no auto_vacuum
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE filler (x TEXT)")
    old.close()
    store = Store(path)
    assert store.db.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    _fill(store, "big", 4)
    store.delete_job("big")
    assert store.db.execute("PRAGMA freelist_count").fetchone()[0] > 500  # nothing given back yet
    after = store.reclaim()
    assert store.db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    assert after["db"] < 200_000 and after["wal"] == 0, after
    make(store, "next")
    assert store.get_job("next")["status"] == "queued"


def test_finished_jobs_never_lists_queued_or_running_ones(store: Store) -> None:
    for job_id, status in (("q", "queued"), ("r", "running"), ("s", "succeeded"), ("f", "failed")):
        make(store, job_id)
        store.update_job(job_id, status=status)
    make(store, "other", user="bob")
    store.update_job("other", status="cancelled")
    assert {j["id"] for j in store.finished_jobs("ada")} == {"s", "f"}
    assert {j["id"] for j in store.finished_jobs()} == {"s", "f", "other"}
