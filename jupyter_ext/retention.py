"""What is kept, and for how long.

- Finished jobs: `c.JupyterExt.keep_jobs` (off by default) and `jupyter-ext prune` delete old
  finished jobs with their files; queued and running jobs are never touched, nor a finished job
  that a job still running re-uses steps of.
- Uploads (`PUT uploads`) that no job took within `c.JupyterExt.upload_ttl` are deleted.

The choice of what to delete is made here, as plain functions; the orchestrator deletes.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import ValidationError
from .quantity import unit_seconds

_AGE = re.compile(r"([0-9]{1,9}(?:\.[0-9]{1,9})?)\s*(s|m|h|d|w)")
_AGE_UNITS: dict[str, float] = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_AGE = 1e15  # seconds; anything finite is a valid age, this only keeps arithmetic sane


def parse_age(value: object, field: str = "older_than") -> float:
    """'30d', '2w', '12h', '90m', '1d12h', '45s', or a number of seconds -> seconds (0 or more)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValidationError(f"{field}: expected an age such as '30d' or '12h'", field=field)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[0-9]{1,15}(?:\.[0-9]{1,9})?", text):
            seconds = float(text)
        else:
            found = unit_seconds(text, _AGE, _AGE_UNITS)
            if found is None:
                shown = text if len(text) <= 40 else text[:40] + "..."
                raise ValidationError(
                    f"{field}: {shown!r} is not an age; use e.g. '30d', '2w', '12h' or '90m'", field=field
                )
            seconds = found
    else:
        seconds = float(value)
    if not 0 <= seconds <= MAX_AGE:
        raise ValidationError(f"{field}: must be an age of 0s or more, such as '30d'", field=field)
    return seconds


def parse_keep(value: object, field: str = "keep") -> int:
    """How many finished jobs to keep: a whole number, 0 or more (JSON's 5.0 too, or the text '5')."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*[0-9]{1,10}\s*", value):
        number = int(value)
    else:
        raise ValidationError(f"{field}: expected a whole number of jobs, 0 or more", field=field)
    if not 0 <= number <= 10**9:
        raise ValidationError(f"{field}: expected a whole number of jobs, 0 or more", field=field)
    return number


def keep_jobs_setting(value: Mapping[str, Any]) -> tuple[float | None, int | None]:
    """`c.JupyterExt.keep_jobs` ({"age": "30d", "count": 200}, either or both) -> (age, count)."""
    unknown = sorted(set(value) - {"age", "count"})
    if unknown:
        raise ValidationError(f"keep_jobs: unknown key {unknown[0]!r}; use 'age' (e.g. '30d') and/or 'count'")
    age = parse_age(value["age"], "keep_jobs.age") if value.get("age") is not None else None
    count = parse_keep(value["count"], "keep_jobs.count") if value.get("count") is not None else None
    return age, count


def to_prune(
    finished: Iterable[Mapping[str, Any]],
    *,
    older_than: float | None,
    keep: int | None,
    now: float | None = None,
    protected: Iterable[str] = (),
) -> list[str]:
    """Ids of the finished jobs to delete: those that ended more than `older_than` seconds ago,
    and those after each user's `keep` newest. Both bounds apply when both are given; neither
    given deletes nothing. Jobs in `protected` (re-used by a job still running) are kept."""
    if older_than is None and keep is None:
        return []
    now = time.time() if now is None else now
    kept = set(protected)
    seen: dict[str, int] = {}
    chosen = []
    for job in sorted(finished, key=lambda j: j["created"], reverse=True):
        rank = seen.get(job["user"], 0)
        seen[job["user"]] = rank + 1
        ended = job.get("finished") or job["created"]
        old = older_than is not None and ended < now - older_than
        beyond = keep is not None and rank >= keep
        if (old or beyond) and job["id"] not in kept:
            chosen.append(str(job["id"]))
    return chosen


def expire_uploads(folder: Path, ttl: float, now: float | None = None) -> list[Path]:
    """Delete the uploads under `folder` (<folder>/<user>/<id>) last written more than `ttl`
    seconds ago, and user folders left empty; answers the files deleted (blocking: a thread)."""
    now = time.time() if now is None else now
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for user_dir in folder.iterdir():
        if not user_dir.is_dir() or user_dir.is_symlink():
            continue
        for upload in user_dir.iterdir():
            try:
                if upload.is_file() and upload.stat().st_mtime < now - ttl:
                    upload.unlink()
                    removed.append(upload)
            except FileNotFoundError:
                continue  # taken by a job (or deleted) meanwhile
        try:
            os.rmdir(user_dir)  # only if empty
        except OSError:
            pass
    return removed
