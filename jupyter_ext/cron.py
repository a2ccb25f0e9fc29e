"""Cron expressions and time zones of schedules (schedules.py): checked at the edge, runs computed
in the schedule's own zone.

Five cron fields (minute hour day-of-month month day-of-week; croniter reads them), or @hourly,
@daily, @weekly, @monthly, @yearly; a time zone is an IANA name (zoneinfo). Runs are computed with
zone-aware datetimes: a time a spring-forward skips runs when the gap ends (croniter's choice, as
cron's); a time a fall-back repeats runs once, at its first occurrence, unless the hour field is `*`
(then every real hour runs, as cron does).
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from .errors import cut, shown
from .views import iso

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_CRON_HELP = (
    "use five fields (minute hour day-of-month month day-of-week), e.g. '0 2 * * *' for 02:00 every day, "
    "or @hourly, @daily, @weekly, @monthly, @yearly"
)


# -- cron and time zones ---------------------------------------------------------------------------------------
def cron_fields(expr: str) -> str:
    """The five cron fields of `expr` (a macro expanded); ValueError naming what is wrong."""
    text = " ".join(expr.split())
    if text.startswith("@"):
        if text.lower() not in MACROS:
            raise ValueError(f"{shown(expr)} is not a cron expression; {_CRON_HELP}")
        return MACROS[text.lower()]
    if len(text.split(" ")) != 5:
        raise ValueError(f"{shown(expr)} has {len(text.split())} fields, not 5; {_CRON_HELP}")
    return text


def zone_named(name: str) -> ZoneInfo:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*", name or "") or len(name) > 64:
        raise ValueError(f"{shown(name)} is not a time zone; use an IANA name such as 'Europe/Berlin' or 'UTC'")
    try:
        return ZoneInfo(name)
    except Exception:  # noqa: BLE001 - zoneinfo raises KeyError, ValueError, OSError for unknown names
        raise ValueError(
            f"{shown(name)} is not a time zone this server knows; use an IANA name such as 'Europe/Berlin', "
            "'America/New_York' or 'UTC'"
        ) from None


def next_run(cron: str, timezone: str, after: float) -> float:
    """The first run of `cron` in `timezone` strictly after `after` (epoch seconds)."""
    from croniter import croniter

    fields = cron_fields(cron)
    zone = zone_named(timezone)
    hour_star = fields.split(" ")[1].startswith("*")
    runs = croniter(fields, datetime.fromtimestamp(after, tz=zone))
    for _ in range(10):
        when: datetime = runs.get_next(datetime)
        if hour_star or not _repeated(when, zone):
            return float(when.timestamp())
    raise ValueError(f"{shown(cron)} finds no run")  # pragma: no cover - at most one repeat in a row


def _repeated(when: datetime, zone: ZoneInfo) -> bool:
    """Whether `when` is the second time its wall-clock time happens that day (a fall-back's repeat)."""
    naive = when.replace(tzinfo=None)
    first = naive.replace(tzinfo=zone, fold=0)
    second = naive.replace(tzinfo=zone, fold=1)
    return first.utcoffset() != second.utcoffset() and when.timestamp() == second.timestamp()


def check_cron(expr: str) -> str:
    """`expr` if croniter reads it and it ever runs, else ValueError saying why."""
    from croniter import CroniterError

    cron_fields(expr)
    try:
        next_run(expr, "UTC", time.time())
    except CroniterError as exc:
        why = str(exc)
        if "find" in why and "date" in why:
            raise ValueError(f"{shown(expr)} never comes (no date matches it); {_CRON_HELP}") from None
        raise ValueError(f"{shown(expr)} is not a cron expression ({cut(why, 200)}); {_CRON_HELP}") from None
    return " ".join(expr.split())


def local_iso(ts: float | None, timezone: str) -> str | None:
    """Epoch seconds as ISO 8601 in the schedule's own zone (e.g. 2025-03-30T03:00:00+02:00)."""
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts, tz=zone_named(timezone)).isoformat()
    except ValueError:
        return iso(ts)
