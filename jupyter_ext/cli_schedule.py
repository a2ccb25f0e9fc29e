"""`jupyter-ext schedule ...`: run a notebook on a cron schedule (schedules.py).

    jupyter-ext schedule add train.ipynb --cron "0 2 * * *" --tz Europe/Berlin -p epochs 5
    jupyter-ext schedule add train.ipynb --cron @daily --sweep lr=0.1,0.01 --sweep depth=3,5
    jupyter-ext schedule ls
    jupyter-ext schedule pause ID / resume ID / snapshot ID / rm ID...

The notebook is snapshotted when the schedule is made: later edits change nothing until
`schedule snapshot ID`. With a server running, the schedule is made there (paths relative to its
root) and the server fires it. Without one, it is kept in the job database (paths relative to the
current folder) and fires while a jupyter-ext server on that database runs.

cli.py builds the parser with `add_schedule_parser` (this module never imports cli.py: cli.py imports it).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import session as sessions
from .cli_args import parse_value, resolve_prefix, sweep_spec
from .cli_render import table
from .errors import NotFound, ValidationError
from .session import InProcessSession, Session


async def open_session(args: argparse.Namespace) -> Session:
    return await sessions.open_session(local=getattr(args, "local", False))


async def resolve_schedule(session: Session, given: str) -> str:
    """A schedule id, or the start of one: the one schedule of yours whose id starts with it."""
    if len(given) >= 12 or not given:
        return given
    ids = [str(s["id"]) for s in await session.schedules()]
    return resolve_prefix(ids, given, "schedule", "`jupyter-ext schedule ls` lists them")


def notebook_for(session: Session, given: str) -> str:
    """The notebook's path as the session names notebooks: relative to the server's root, or
    (without a server) to the current folder."""
    path = Path(given).resolve()
    if path.is_dir():
        raise ValidationError(f"notebook: {given!r} is a folder; give the path of a notebook (.ipynb) in it")
    if not path.is_file():
        raise NotFound(f"notebook: {given!r} does not exist", field="notebook")
    root = Path(session.root_dir or "/").resolve()
    if not path.is_relative_to(root):
        where = "the running server's root" if session.url else "the current folder"
        raise ValidationError(
            f"notebook: {path} is outside {where} {root}; a schedule runs notebooks under it", field="notebook"
        )
    return path.relative_to(root).as_posix()


def when(schedule: dict[str, Any]) -> str:
    if schedule["paused"]:
        return "paused"
    return (schedule.get("next_run_iso") or "-")[:19].replace("T", " ") + f" {schedule['timezone']}"


def last_run(schedule: dict[str, Any]) -> str:
    if not schedule["runs"]:
        return "-"
    run = schedule["runs"][0]
    what = run["status"] or ("skipped" if (run["error"] or "").startswith("skipped") else "not run")
    return f"{(run['due'] or '')[:16].replace('T', ' ')} {run['job'] or ''} {what}".replace("  ", " ")


async def cmd_add(args: argparse.Namespace) -> int:
    session = await open_session(args)
    try:
        body: dict[str, Any] = {
            "notebook": notebook_for(session, args.notebook),
            "cron": args.cron,
            "timezone": args.tz,
            "parameters": {k: parse_value(v) for k, v in args.parameters},
            **sweep_spec(args),
        }
        for key in ("name", "backend", "kernel"):
            if getattr(args, key) is not None:
                body[key] = getattr(args, key)
        if args.fresh:
            body["fresh"] = True
        schedule = await session.create_schedule(body)
    finally:
        await session.close()
    if args.json:
        print(json.dumps(schedule, indent=2))
        return 0
    print(schedule["id"])
    print(
        f"schedule {schedule['id']} ({schedule['name']}): {schedule['cron']} in {schedule['timezone']}, "
        f"next run {when(schedule)}; it runs the notebook as it is now (a snapshot): after editing it, "
        f"`jupyter-ext schedule snapshot {schedule['id']}`",
        file=sys.stderr,
    )
    if isinstance(session, InProcessSession):
        print(
            "no jupyter-ext server is running: the schedule is kept in the job database and fires while a "
            f"jupyter-ext server on it runs (started in {session.root_dir})",
            file=sys.stderr,
        )
    return 0


async def cmd_ls(args: argparse.Namespace) -> int:
    session = await open_session(args)
    try:
        schedules = await session.schedules()
    finally:
        await session.close()
    if args.json:
        print(json.dumps(schedules, indent=2))
        return 0
    if not schedules:
        print('no schedules yet; make one with: jupyter-ext schedule add NOTEBOOK.ipynb --cron "0 2 * * *"')
        return 0
    rows = [("ID", "NAME", "NOTEBOOK", "CRON", "NEXT RUN", "LAST RUN")]
    for s in schedules:
        rows.append((s["id"], s["name"][:30], s["notebook"][-40:], s["cron"], when(s), last_run(s)))
    print(table(rows))
    return 0


def _change(body: dict[str, Any], said: Callable[[dict[str, Any]], str]) -> Callable[..., Any]:
    async def command(args: argparse.Namespace) -> int:
        session = await open_session(args)
        try:
            schedule = await session.update_schedule(await resolve_schedule(session, args.schedule), body)
        finally:
            await session.close()
        print(f"schedule {schedule['id']}: {said(schedule)}")
        return 0

    return command


async def cmd_rm(args: argparse.Namespace) -> int:
    session = await open_session(args)
    refused = 0
    try:
        for given in args.schedules:
            try:
                schedule_id = await resolve_schedule(session, given)
                await session.delete_schedule(schedule_id)
            except (NotFound, ValidationError) as exc:
                refused += 1
                print(f"jupyter-ext: {exc}", file=sys.stderr)
                continue
            print(f"deleted schedule {schedule_id} (the jobs it ran stay)")
    finally:
        await session.close()
    return 1 if refused else 0


def add_schedule_parser(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """`schedule` and its commands, under cli.py's subparsers."""
    schedule = sub.add_parser("schedule", help="run a notebook on a cron schedule (add, ls, pause, resume, rm)")
    commands = schedule.add_subparsers(
        dest="schedule_command", required=True, metavar="{add,ls,pause,resume,snapshot,rm}"
    )

    add = commands.add_parser("add", help="run a notebook on a schedule (a snapshot of it as it is now)")
    add.add_argument("notebook")
    add.add_argument("--cron", required=True, help='five cron fields, e.g. "0 2 * * *" (02:00 daily), or @hourly...')
    add.add_argument("--tz", default="UTC", help="IANA time zone the cron fields are read in (default UTC)")
    add.add_argument(
        "-p", "--parameter", dest="parameters", nargs=2, action="append", default=[], metavar=("NAME", "VALUE")
    )
    add.add_argument("--sweep", action="append", default=[], metavar="NAME=V1,V2", help="each run is a sweep")
    add.add_argument("--zip", action="store_true", help="pair the swept values instead of every combination")
    add.add_argument("--parallel", type=int, help="a sweep's runs at once")
    add.add_argument("--name")
    add.add_argument("--backend")
    add.add_argument("--kernel")
    add.add_argument(
        "--fresh", action="store_true", help="every run runs every step again, ignoring cached results (tag `cache`)"
    )
    add.add_argument("--json", action="store_true")
    common(add)
    add.set_defaults(fn=cmd_add)

    ls = commands.add_parser("ls", help="list your schedules with their next and last runs")
    ls.add_argument("--json", action="store_true")
    common(ls)
    ls.set_defaults(fn=cmd_ls)

    for name, body, said, words in (
        ("pause", {"paused": True}, lambda s: "paused", "stop firing it (until resume)"),
        ("resume", {"paused": False}, lambda s: f"next run {when(s)}", "fire it again, from now on"),
        (
            "snapshot",
            {"snapshot": True},
            lambda s: f"runs the notebook as it is now (snapshot taken {s['snapshot_taken']})",
            "take a new snapshot of its notebook (runs use the notebook as it is now)",
        ),
    ):
        p = commands.add_parser(name, help=words)
        p.add_argument("schedule", metavar="ID")
        common(p)
        p.set_defaults(fn=_change(body, said))

    rm = commands.add_parser("rm", help="delete schedules (the jobs they ran stay)")
    rm.add_argument("schedules", nargs="+", metavar="ID")
    common(rm)
    rm.set_defaults(fn=cmd_rm)
