"""What retention chooses to delete (issue 12): ages, counts per user, uploads past their TTL."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from jupyter_ext.errors import ValidationError
from jupyter_ext.retention import expire_uploads, keep_jobs_setting, parse_age, to_prune

DAY = 86400.0


def job(job_id: str, user: str, days_ago: float, now: float) -> dict:
    return {"id": job_id, "user": user, "created": now - days_ago * DAY - 60, "finished": now - days_ago * DAY}


def test_ages_read_as_people_write_them() -> None:
    assert parse_age("30d") == 30 * DAY and parse_age("2w") == 14 * DAY and parse_age("1d12h") == 1.5 * DAY
    assert parse_age("90m") == 5400 and parse_age(45) == 45 and parse_age("3600") == 3600
    assert parse_age("0") == 0, "0: every finished job, asked for explicitly"
    for bad in ("soon", "", "-1d", -5, True, None, "30 days", "x" * 1000, "1" * 400, float("inf"), float("nan")):
        with pytest.raises(ValidationError):
            parse_age(bad)


def test_keep_jobs_setting_knows_its_keys() -> None:
    assert keep_jobs_setting({}) == (None, None)
    assert keep_jobs_setting({"age": "7d", "count": 3}) == (7 * DAY, 3)
    with pytest.raises(ValidationError, match="unknown key 'days'"):
        keep_jobs_setting({"days": 7})
    with pytest.raises(ValidationError, match="keep_jobs.count"):
        keep_jobs_setting({"count": -2})


def test_to_prune_by_age_and_by_count_per_user() -> None:
    now = time.time()
    jobs = [job("a1", "ada", 40, now), job("a2", "ada", 10, now), job("a3", "ada", 1, now), job("b1", "bob", 50, now)]
    assert to_prune(jobs, older_than=None, keep=None, now=now) == []
    assert to_prune(jobs, older_than=30 * DAY, keep=None, now=now) == ["a1", "b1"]
    assert to_prune(jobs, older_than=None, keep=1, now=now) == ["a2", "a1"], "each user keeps their newest"
    assert to_prune(jobs, older_than=5 * DAY, keep=2, now=now) == ["a2", "a1", "b1"], "both bounds apply"
    assert to_prune(jobs, older_than=None, keep=0, now=now, protected={"a2"}) == ["a3", "a1", "b1"]


def test_expire_uploads_deletes_only_what_is_past_its_ttl(tmp_path: Path) -> None:
    uploads = tmp_path / "uploads"
    (uploads / "u1").mkdir(parents=True)
    (uploads / "u2").mkdir()
    old, fresh, lonely = uploads / "u1" / "old", uploads / "u1" / "fresh", uploads / "u2" / "lonely"
    for path in (old, fresh, lonely):
        path.write_bytes(b"data")
    stale = time.time() - 2 * DAY
    os.utime(old, (stale, stale))
    os.utime(lonely, (stale, stale))
    assert sorted(expire_uploads(uploads, DAY)) == sorted([old, lonely])
    assert fresh.exists() and not old.exists() and not (uploads / "u2").exists(), "an emptied user folder goes"
    assert expire_uploads(tmp_path / "none", DAY) == []
