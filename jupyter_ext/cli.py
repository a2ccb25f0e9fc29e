"""`jupyter-ext`: run a notebook as a job and watch it, list jobs, follow logs, cancel, download.

    jupyter-ext run examples/train.ipynb -p epochs 5
    jupyter-ext ls
    jupyter-ext logs -f JOB
    jupyter-ext cancel JOB
    jupyter-ext artifacts JOB -o results/
    jupyter-ext rm JOB...
    jupyter-ext prune --older-than 30d

With a jupyter-ext server running (JupyterLab with the extension) the CLI talks to it, so
jobs show in the Lab panel; otherwise it runs jobs in this process, with the backends and
configuration a server would have (jupyter_server_config.py in the Jupyter config path,
JUPYTER_EXT_* defaults), keeping them in the same job database. `run --local` takes the standby
runner the previous command left warm (backends/keepwarm.py: one per data dir, gone after
`c.LocalBackend.keep_warm` idle seconds) and leaves one for the next. `run --detach` without a
server hands the job to a background process that outlives the command. `ls`, `logs`,
`cancel`, `artifacts`, `status`, `rm` and `prune` use the job database directly and start nothing.

Cells are named as JupyterLab numbers them: "cell 3" is the third cell of the notebook.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from . import __version__
from . import session as sessions
from .cli_args import parse_value, resolve_prefix, sweep_spec
from .cli_render import Renderer, duration, status_words, sweep_progress, sweep_table, table
from .contract import TERMINAL
from .errors import Conflict, JupyterExtError, NotFound, ValidationError
from .session import InProcessSession, Session


# -- sessions: a server, or this process (session.py) -----------------------------------------------------------
async def open_session(args: argparse.Namespace, root_dir: str | Path | None = None) -> Session:
    """The server if one is running (unless --local), else this process (nothing started); a
    short job id in `args.job` is made whole."""
    session = await sessions.open_session(
        local=getattr(args, "local", False), root_dir=root_dir, backend=getattr(args, "backend", None)
    )
    if isinstance(getattr(args, "job", None), str):
        try:
            args.job = await resolve_job(session, args.job)
        except BaseException:
            await session.close()
            raise
    return session


async def resolve_job(session: Session, given: str) -> str:
    """A job id, or the start of one as Lab's titles show it (`a1b2c3`): the one job of yours
    whose id starts with it; several or none are said with the ids that would do."""
    if len(given) >= 12 or not given:
        return given
    return resolve_prefix([str(j["id"]) for j in await session.jobs()], given, "job", "`jupyter-ext ls` lists them")


# -- commands -------------------------------------------------------------------------------------------------------
async def cmd_run(args: argparse.Namespace) -> int:
    path = Path(args.notebook).resolve()
    if path.is_dir():
        raise ValidationError(f"notebook: {args.notebook!r} is a folder; give the path of a notebook (.ipynb) in it")
    if not path.is_file():
        raise NotFound(f"notebook: {args.notebook!r} does not exist", field="notebook")
    session = await open_session(args, root_dir=path.parent)
    if session.url is not None:
        root = Path(session.root_dir or "/").resolve()
        if path.is_relative_to(root):
            notebook = path.relative_to(root).as_posix()
            print(f"submitting to the jupyter-ext server at {session.url}", file=sys.stderr)
        else:
            print(f"{path} is outside the running server's root {root}; running it here", file=sys.stderr)
            await session.close()
            session = InProcessSession(path.parent, args.backend)
            notebook = path.name
    else:
        notebook = path.name
    spec: dict[str, Any] = {"notebook": notebook, "parameters": {k: parse_value(v) for k, v in args.parameters}}
    for key in ("backend", "name", "timeout", "retries", "from_step", "rerun_of", "kernel"):
        if getattr(args, key) is not None:
            spec[key] = getattr(args, key)
    if args.fresh:
        spec["fresh"] = True
    spec.update(sweep_spec(args))
    resources = {k: getattr(args, k) for k in ("gpu", "memory", "cpu", "image") if getattr(args, k) is not None}
    if resources:
        spec["resources"] = resources
    try:
        plan = await _check_plan(session, notebook, args)
        if plan is None:
            return 2
        if args.detach and isinstance(session, InProcessSession):
            return await _detach(session, spec)
        if isinstance(session, InProcessSession) and len(plan.get("steps") or ()) == 1 and not args.sweep:
            session.without_warm_pool()  # its one runner starts with the step, and no spare beside it
        if isinstance(session, InProcessSession):
            # A runner the last command left ready takes the step, and one is left for the next
            # (`LocalBackend.keep_warm`; backends/keepwarm.py).
            _, backend = session.orchestrator.backend_named(args.backend)
            keep_warm_in = getattr(backend, "keep_warm_in", None)
            if keep_warm_in is not None:
                keep_warm_in(session.orchestrator.data_dir)
        await session.start()
        job = await session.submit(spec)
        if args.detach:
            print(job["id"])
            return 0
        return await follow(session, job, cancel_on_interrupt=True)
    finally:
        await session.close()


async def _check_plan(session: Session, notebook: str, args: argparse.Namespace) -> dict[str, Any] | None:
    """Before anything runs: the planner's warnings on stderr (errors with --strict: None), its
    errors raised; answers the plan."""
    plan = await session.plan(notebook, args.backend)
    error = plan.get("error")
    if error and not (args.kernel and error.get("field") == "kernel"):  # --kernel: submit checks that one
        raise ValidationError(error.get("message", "the notebook cannot run"), cell=error.get("cell"))
    warnings = plan.get("warnings") or []
    word = "error" if args.strict else "warning"
    for warning in warnings:
        print(f"jupyter-ext: {word}: {warning['message']}", file=sys.stderr)
    if warnings and args.strict:
        n = len(warnings)
        print(f"jupyter-ext: --strict: {n} warning{'s' if n > 1 else ''}, so nothing was run", file=sys.stderr)
        return None
    return plan


async def _detach(session: InProcessSession, spec: dict[str, Any]) -> int:
    """No server: store the job here (so every refusal is said now), then hand it to a background
    process that drives it to its end and outlives this command."""
    import subprocess

    job = await session.submit(spec, drive=False)
    log_path = session.orchestrator.layout.driver_log(job["id"])
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "jupyter_ext.cli", "_drive", job["id"]]
    if session.backend:
        argv += ["--backend", session.backend]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(  # noqa: S603, ASYNC220 - argv list, no shell; the CLI has no loop to block
            argv,
            cwd=session.root_dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not stopped by the terminal's Ctrl-C or hang-up
            close_fds=True,
        )
    print(job["id"])
    print(
        f"job {job['id']} runs in a background process (pid {proc.pid}, log {log_path}); "
        f"follow it with: jupyter-ext logs -f {job['id']}",
        file=sys.stderr,
    )
    return 0


async def cmd_drive(args: argparse.Namespace) -> int:
    """`_drive JOB` (internal, started by `run --detach` without a server): drive one stored job."""
    session = InProcessSession(backend=args.backend)
    try:
        if len((await session.job(args.job))["steps"]) == 1:
            session.without_warm_pool()  # as `run` without --detach
        job = await session.drive(args.job)
        return 0 if job["status"] == "succeeded" else 1
    finally:
        await session.close()


async def follow(session: Session, job: dict[str, Any], *, cancel_on_interrupt: bool, after: int = 0) -> int:
    """Print the job's events until it ends; exit status 0 only if it succeeded."""
    renderer = Renderer()
    renderer.job(job)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    interrupted = False

    def on_sigint() -> None:
        nonlocal interrupted
        interrupted = True
        if task is not None:
            task.cancel()

    loop.add_signal_handler(signal.SIGINT, on_sigint)
    status = "unknown"
    try:
        async for event in session.events(job["id"], after):
            renderer.event(event)
            if event["type"] == "job.end":
                status = event.get("status", "unknown")
    except asyncio.CancelledError:
        if not interrupted:
            raise
        if cancel_on_interrupt:
            print(f"\ninterrupted: cancelling job {job['id']}", file=sys.stderr)
            await session.cancel(job["id"])
            if isinstance(session, InProcessSession):  # this process drives it: see the cancel through
                await session.wait(job["id"])
        else:
            print(f"\nstopped following; job {job['id']} keeps running", file=sys.stderr)
        return 130
    finally:
        loop.remove_signal_handler(signal.SIGINT)
    if job.get("sweep") is not None:  # the results: one row per run
        print(sweep_table(await session.job(job["id"])))
    return 0 if status == "succeeded" else 1


async def cmd_ls(args: argparse.Namespace) -> int:
    session = await open_session(args)
    try:
        jobs = await session.jobs()
    finally:
        await session.close()
    if args.json:
        print(json.dumps(jobs, indent=2))
        return 0
    if not jobs:
        print("no jobs yet; start one with: jupyter-ext run NOTEBOOK.ipynb", file=sys.stderr)
        return 0
    rows = [("ID", "NAME", "STATUS", "BACKEND", "STEPS", "CREATED", "DURATION")]
    for j in jobs[: args.limit]:
        done = sum(1 for s in j["steps"] if s["status"] == "succeeded")
        rows.append(
            (
                j["id"],
                j["name"][:30],
                status_words(j),
                j["backend"],
                sweep_progress(j) if j.get("sweep") else f"{done}/{len(j['steps'])}",
                j["created"][:19].replace("T", " "),
                duration(j),
            )
        )
    print(table(rows))
    return 0


async def cmd_status(args: argparse.Namespace) -> int:
    session = await open_session(args)
    try:
        job = await session.job(await resolve_job(session, args.job))
    finally:
        await session.close()
    if args.json:
        print(json.dumps(job, indent=2))
        return 0
    what = "sweep" if job.get("sweep") is not None else "job"
    print(f"{what} {job['id']} ({job['name']}) on {job['backend']}: {status_words(job)}, {duration(job)}")
    if job.get("error") and job["status"] != "succeeded":
        print(f"  {job['error'].get('message', '')}")
    if job.get("sweep") is not None:
        counts = ", ".join(f"{n} {s}" for s, n in job["sweep"]["counts"].items() if n)
        print(f"  {len(job['sweep']['children'])} runs ({job['sweep']['mode']}): {counts}")
        print(sweep_table(job, indent="  "))
        return 0
    rows = [("STEP", "STATUS", "ATTEMPT", "DURATION")]
    for s in job["steps"]:
        cached = (s.get("cache") or {}).get("from") if (s.get("cache") or {}).get("hit") else None
        words = f"{status_words(s)} (cached from job {cached['job']})" if cached else status_words(s)
        rows.append((s["name"], words, str(s["attempt"]), duration(s)))
    print(table(rows, indent="  "))
    return 0


async def cmd_rm(args: argparse.Namespace) -> int:
    """Delete finished jobs with their files; a queued or running one is refused (cancel it first)."""
    session = await open_session(args)
    refused = 0
    try:
        for given in args.jobs:
            try:
                job_id = await resolve_job(session, given)
                await session.delete(job_id)
            except (Conflict, NotFound, ValidationError) as exc:
                refused += 1
                print(f"jupyter-ext: {exc}", file=sys.stderr)
                continue
            print(f"deleted job {job_id}")
    finally:
        await session.close()
    return 1 if refused else 0


async def cmd_prune(args: argparse.Namespace) -> int:
    """Delete your finished jobs older than --older-than and/or after your --keep newest ones."""
    from .retention import parse_age

    if args.older_than is None and args.keep is None:
        raise ValidationError("prune: give --older-than (e.g. 30d) and/or --keep N")
    if args.older_than is not None:
        parse_age(args.older_than, "--older-than")  # said here, before anything is asked of a server
    session = await open_session(args)
    try:
        deleted = await session.prune(args.older_than, args.keep, args.dry_run)
    finally:
        await session.close()
    verb = "would delete" if args.dry_run else "deleted"
    n = len(deleted)
    print(f"{verb} {n} finished job{'s' if n != 1 else ''}{': ' if deleted else ''}{' '.join(deleted)}")
    return 0


async def cmd_logs(args: argparse.Namespace) -> int:
    session = await open_session(args)
    try:
        job = await session.job(args.job)
        if args.follow:
            return await follow(session, job, cancel_on_interrupt=False, after=args.after)
        renderer = Renderer()
        renderer.job(job)
        for event in await session.history(args.job, args.after):
            if args.json:
                print(json.dumps(event))
            else:
                renderer.event(event)
        return 0
    finally:
        await session.close()


async def cmd_cancel(args: argparse.Namespace) -> int:
    session = await open_session(args)
    try:
        job = await session.cancel(args.job)
    finally:
        await session.close()
    print(f"job {job['id']}: {job['status']}{'' if job['status'] in TERMINAL else ' (cancelling)'}")
    return 0


async def cmd_artifacts(args: argparse.Namespace) -> int:
    session = await open_session(args)
    try:
        artifacts = await session.artifacts(args.job)
        if args.names:
            known = {a["name"] for a in artifacts}
            missing = [n for n in args.names if n not in known]
            if missing:
                raise NotFound(f"job {args.job!r} has no artifact {missing[0]!r}; it has: {', '.join(sorted(known))}")
            artifacts = [a for a in artifacts if a["name"] in args.names]
        if args.output is None:
            for a in artifacts:
                print(f"{a['name']:40}  {a['step']:12}  {a['size']:>10}  {a['mime']}")
            return 0
        from tqdm import tqdm

        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        total = sum(a["size"] for a in artifacts)
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"{len(artifacts)} artifacts", file=sys.stderr) as bar:
            for a in artifacts:
                await session.download(args.job, a["name"], out / a["name"], bar.update)
        print(f"saved {len(artifacts)} artifact(s) to {out}", file=sys.stderr)
        return 0
    finally:
        await session.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyter-ext", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"jupyter-ext {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="{run,ls,status,logs,cancel,artifacts,rm,prune,schedule}"
    )

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--local", action="store_true", help="do not look for a running server; use this process")

    run = sub.add_parser("run", help="run a notebook as a job and print its outputs live")
    run.add_argument("notebook")
    run.add_argument(
        "-p", "--parameter", dest="parameters", nargs=2, action="append", default=[], metavar=("NAME", "VALUE")
    )
    run.add_argument("--backend")
    run.add_argument("--name")
    run.add_argument("--gpu")
    run.add_argument("--memory")
    run.add_argument("--cpu")
    run.add_argument("--image")
    run.add_argument("--timeout")
    run.add_argument("--retries")
    run.add_argument("--from-step", dest="from_step", help="re-run from this step (with --rerun-of)")
    run.add_argument("--rerun-of", dest="rerun_of", metavar="JOB", help="job whose earlier steps to reuse")
    run.add_argument(
        "--kernel",
        help="run with this kernel instead of the notebook's own (a notebook whose kernel is not installed is "
        "refused unless you choose one)",
    )
    run.add_argument("--fresh", action="store_true", help="run every step again, ignoring cached results (tag `cache`)")
    run.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="NAME=V1,V2",
        help="run once per value (repeat for a grid over several parameters); values parsed like -p's",
    )
    run.add_argument("--zip", action="store_true", help="with several --sweep: pair the i-th values instead of a grid")
    run.add_argument("--parallel", type=int, metavar="N", help="with --sweep: runs at once (default 4)")
    run.add_argument("--strict", action="store_true", help="treat the planner's warnings as errors: run nothing")
    run.add_argument(
        "--detach",
        action="store_true",
        help="print the job id and return at once (without a server, a background process runs the job)",
    )
    common(run)
    run.set_defaults(fn=cmd_run)

    drive = sub.add_parser("_drive")  # internal: the background process of `run --detach` without a server
    drive.add_argument("job")
    drive.add_argument("--backend")
    drive.set_defaults(fn=cmd_drive, local=True)

    ls = sub.add_parser("ls", help="list your jobs")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("--limit", type=int, default=50)
    common(ls)
    ls.set_defaults(fn=cmd_ls)

    logs = sub.add_parser("logs", help="print a job's outputs (-f: follow until it ends)")
    logs.add_argument("job")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("--after", type=int, default=0, help="only events after this sequence number")
    logs.add_argument("--json", action="store_true", help="raw events, one JSON object per line")
    common(logs)
    logs.set_defaults(fn=cmd_logs)

    cancel = sub.add_parser("cancel", help="cancel a queued or running job")
    cancel.add_argument("job")
    common(cancel)
    cancel.set_defaults(fn=cmd_cancel)

    arts = sub.add_parser("artifacts", help="list a job's artifacts, or download them with -o DIR")
    arts.add_argument("job")
    arts.add_argument("names", nargs="*", help="only these artifacts")
    arts.add_argument("-o", "--output", help="folder to download into")
    common(arts)
    arts.set_defaults(fn=cmd_artifacts)

    status = sub.add_parser("status", help="a job's status and its steps' (with their place in line while queued)")
    status.add_argument("job")
    status.add_argument("--json", action="store_true")
    common(status)
    status.set_defaults(fn=cmd_status)

    rm = sub.add_parser("rm", help="delete finished jobs with their events, artifacts and files")
    rm.add_argument("jobs", nargs="+", metavar="JOB")
    common(rm)
    rm.set_defaults(fn=cmd_rm)

    prune = sub.add_parser("prune", help="delete your old finished jobs (queued and running ones stay)")
    prune.add_argument("--older-than", dest="older_than", metavar="AGE", help="ended more than AGE ago: 30d, 2w, 12h")
    prune.add_argument("--keep", type=int, metavar="N", help="keep only your N newest finished jobs")
    prune.add_argument("--dry-run", action="store_true", help="only print what would be deleted")
    common(prune)
    prune.set_defaults(fn=cmd_prune)

    from .cli_schedule import add_schedule_parser

    add_schedule_parser(sub, common)  # `schedule add/ls/pause/resume/snapshot/rm`
    return parser


def main(argv: list[str] | None = None) -> int:
    from .runner.lazy_imports import defer_iri_grammar

    defer_iri_grammar()  # 1 s of `run`'s start (runner/lazy_imports.py)
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(args.fn(args))
    except JupyterExtError as exc:
        print(f"jupyter-ext: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
