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
JUPYTER_EXT_* defaults), keeping them in the same job database. `run --detach` without a
server hands the job to a background process that outlives the command. `ls`, `logs`,
`cancel`, `artifacts`, `status`, `rm` and `prune` use the job database directly and start nothing.

Cells are named as JupyterLab numbers them: "cell 3" is the third cell of the notebook.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TextIO

from . import __version__
from .errors import Conflict, JupyterExtError, NotFound, ValidationError

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


# -- rendering events for a terminal --------------------------------------------------------------------------
class Renderer:
    """Prints events as a person wants to read them: outputs as they come, a line per cell."""

    def __init__(self, out: TextIO = sys.stdout, err: TextIO = sys.stderr, color: bool | None = None) -> None:
        self.out, self.err = out, err
        self.color = out.isatty() if color is None else color
        self.multi_step = False
        self.step_cells: dict[str, list[int]] = {}
        self.started = time.time()

    def _c(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def _plain(self, text: str) -> str:
        return text if self.color else ANSI.sub("", text)

    def job(self, job: dict[str, Any]) -> None:
        self.multi_step = len(job.get("steps", [])) > 1
        for step in job.get("steps", []):
            self.step_cells[step["name"]] = list(step.get("cells", []))
        steps = ", ".join(s["name"] for s in job.get("steps", []))
        self.err.write(self._c(f"job {job['id']} ({job['name']}) on {job['backend']}: steps {steps}\n", "2"))

    def event(self, e: dict[str, Any]) -> None:
        kind, step = e["type"], e.get("step") or "main"
        prefix = f"[{step}] " if self.multi_step else ""
        if kind == "cell.start" and e.get("cell_index") is not None:
            own = self.step_cells.get(step, [])
            where = f"{own.index(e['cell_index']) + 1}/{len(own)}" if e["cell_index"] in own else "setup"
            self.err.write(self._c(f"{prefix}── cell {e['cell_index'] + 1} ({where}) ──\n", "2"))
        elif kind == "cell.output":
            self._output(e, prefix)
        elif kind == "log":
            self.err.write(prefix + self._plain(e.get("text", "")))
        elif kind == "step.start" and self.multi_step:
            self.err.write(self._c(f"{prefix}started (attempt {e.get('attempt', 1)})\n", "36"))
        elif kind == "step.retry":
            msg = (e.get("error") or {}).get("message", "failed")
            self.err.write(self._c(f"{prefix}attempt {e.get('attempt')} failed ({msg}); retrying\n", "33"))
        elif kind == "step.end" and self.multi_step:
            colour = "32" if e.get("status") == "succeeded" else "31"
            self.err.write(self._c(f"{prefix}{e.get('status')}\n", colour))
        elif kind == "job.end":
            self._end(e)
        self.out.flush()
        self.err.flush()

    def _output(self, e: dict[str, Any], prefix: str) -> None:
        output = e.get("output") or {}
        otype = output.get("output_type")
        if otype == "stream":
            target = self.err if output.get("name") == "stderr" else self.out
            # parallel steps interleave: say whose line each is
            target.write(_prefixed(self._plain(_text(output.get("text"))), prefix))
        elif otype == "error":
            self.out.write(_prefixed(self._plain("\n".join(output.get("traceback", []))) + "\n", prefix))
        else:
            data = output.get("data", {})
            if e.get("artifact"):
                self.out.write(self._c(f"{prefix}[image: {e['artifact']}]\n", "35"))
            elif "text/plain" in data and not e.get("update"):
                self.out.write(_prefixed(_text(data["text/plain"]) + "\n", prefix))
            elif "text/html" in data:
                self.out.write(self._c(f"{prefix}[html output: see the executed notebook artifact]\n", "35"))

    def _end(self, e: dict[str, Any]) -> None:
        status = e.get("status")
        error = e.get("error") or {}
        if status == "succeeded":
            self.err.write(self._c(f"job {e['job']} succeeded\n", "32"))
        else:
            where = f" in step {error['step']!r}" if error.get("step") and self.multi_step else ""
            message = error.get("message", status)
            self.err.write(self._c(f"job {e['job']} {status}{where}: {message}\n", "31"))


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def _prefixed(text: str, prefix: str) -> str:
    """Every line of `text` led by `prefix` ('[step] ' in a job of several steps)."""
    return "".join(prefix + line for line in text.splitlines(keepends=True)) if prefix else text


# -- parameters -------------------------------------------------------------------------------------------------
def parse_value(raw: str) -> Any:
    """`-p name value`: numbers, booleans, None, JSON/Python literals as such; anything else a string."""
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(raw)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return raw


# -- sessions: a server, or this process ---------------------------------------------------------------------------
def server_config() -> Any:
    """The configuration jupyter_server would give the extension: jupyter_jupyter_ext_config, then
    jupyter_config and jupyter_server_config (.py and .json) from the Jupyter config path (later
    files win, the server's over the extension's). Cheap: no server module is imported."""
    from jupyter_core.application import JupyterApp
    from traitlets.config import Config

    merged = Config()
    for name in ("jupyter_jupyter_ext_config", "jupyter_server_config"):
        loader = JupyterApp(config_file_name=name)
        loader.load_config_file()
        merged.merge(loader.config)
    return merged


def configured_app(config: Any = None) -> Any:
    """The server extension's app (`JupyterExt`) with that configuration, without a server; its
    traits add the JUPYTER_EXT_* environment defaults themselves."""
    from .app import JupyterExt

    return JupyterExt(config=server_config() if config is None else config)


def database_path(config: Any) -> Path:
    """Where `JupyterExt` keeps the job database under `config` (its data_dir/db_path defaults),
    found without importing the server (`ls` must be quick)."""
    from jupyter_core.paths import jupyter_data_dir

    ours = config.JupyterExt if "JupyterExt" in config else {}
    if ours.get("db_path"):
        return Path(ours["db_path"])
    data_dir = (
        ours.get("data_dir") or os.environ.get("JUPYTER_EXT_DATA_DIR") or Path(jupyter_data_dir()) / "jupyter_ext"
    )
    return Path(data_dir) / "jobs.db"


class InProcess:
    """This process: the job database directly, and, to run jobs, an orchestrator with the
    backends the app's configuration builds (`JupyterExt.make_backends`, as the server does).
    Nothing is started until `start()`: reading jobs touches no runner and no kernel."""

    def __init__(self, root_dir: str | Path | None = None, backend: str | None = None) -> None:
        from .store import AsyncStore, Store

        self.config = server_config()
        self.store = AsyncStore(Store(database_path(self.config)))
        self.root_dir = Path(root_dir or os.getcwd())
        self.backend = backend  # asked for on the command line: built even if the config does not enable it
        self._orchestrator: Any = None
        self.started = False

    @property
    def orchestrator(self) -> Any:
        """Built on first use (running or cancelling a job), with the backends the app builds."""
        if self._orchestrator is None:
            from .orchestrator import Orchestrator

            app = configured_app(self.config)
            try:
                backends = app.make_backends([self.backend] if self.backend else [])
            except ValueError as exc:
                raise ValidationError(f"backend: {exc}", field="backend") from None
            self._orchestrator = Orchestrator(
                store=self.store,
                backends=backends,
                default_backend=app.backend,
                root_dir=self.root_dir,
                data_dir=app.data_dir,
            )
        return self._orchestrator

    async def start(self, backend: str | None = None) -> None:
        """Start the backend jobs will run on (the local one's warm runner, a cluster's watches)."""
        _, chosen = self.orchestrator.backend_named(backend or self.backend)
        await chosen.start()
        self.started = True

    async def close(self) -> None:
        if self.started:
            await self.orchestrator.stop()
        await self.store.close()

    @property
    def user(self) -> str:
        return _local_user()

    async def plan(self, notebook: str, backend: str | None) -> dict[str, Any]:
        """What `POST plan` answers: steps, parameters, warnings, and the error a submit would get."""
        from .handlers import _plan_view

        name, _ = self.orchestrator.backend_named(backend)
        return await asyncio.to_thread(_plan_view, self.orchestrator, notebook, name)

    async def submit(self, spec: dict[str, Any], drive: bool = True) -> dict[str, Any]:
        from .handlers import job_view
        from .models import JobSpec, parse

        job, _ = await self.orchestrator.submit(parse(JobSpec, spec), self.user, drive=drive)
        return job_view(job)

    async def jobs(self) -> list[dict[str, Any]]:
        from .handlers import job_view

        return [job_view(j) for j in await self.store.list_jobs(self.user)]

    async def job(self, job_id: str) -> dict[str, Any]:
        from .handlers import job_view

        return job_view(await self.store.get_job(job_id, self.user))

    def _drives(self, job_id: str) -> bool:
        return self._orchestrator is not None and job_id in self._orchestrator._drivers

    async def cancel(self, job_id: str) -> dict[str, Any]:
        from .backends.local import LocalBackend
        from .handlers import job_view

        if self._drives(job_id):
            return job_view(await self.orchestrator.cancel(job_id, self.user))
        # A job another process drives (a server, a detached run): record the request, which that
        # process reads, and stop its running steps directly.
        job = await self.store.get_job(job_id, self.user)
        if job["status"] in ("queued", "running"):
            await self.store.update_job(job_id, cancel_requested=1)
            running = [s["handle"] for s in job["steps"] if s["status"] == "running" and s["handle"]]
            backend = self.orchestrator.backends.get(job["backend"]) if running else None
            if backend is not None:
                local = isinstance(backend, LocalBackend)  # stops a process by its pid: needs no start
                if not local:
                    await backend.start()
                try:
                    for handle in running:
                        await backend.cancel(handle)
                finally:
                    if not local:
                        await backend.stop()
        return job_view(await self.store.get_job(job_id))

    async def delete(self, job_id: str) -> None:
        await self.orchestrator.delete(job_id, self.user)

    async def prune(self, older_than: str | None, keep: int | None, dry_run: bool = False) -> list[str]:
        from .retention import parse_age

        age = parse_age(older_than) if older_than is not None else None
        deleted: list[str] = await self.orchestrator.prune(self.user, older_than=age, keep=keep, dry_run=dry_run)
        return deleted

    async def artifacts(self, job_id: str) -> list[dict[str, Any]]:
        await self.store.get_job(job_id, self.user)
        return [{k: a[k] for k in ("name", "step", "size", "mime")} for a in await self.store.artifacts(job_id)]

    async def download(self, job_id: str, name: str, target: Path, progress: Any = None) -> None:
        import shutil

        from . import executed_html

        artifact = await self.store.artifact(job_id, name)
        await executed_html.ensure(self.store, job_id, artifact)  # an HTML copy is made when first asked for
        await asyncio.to_thread(shutil.copyfile, artifact["path"], target)
        if progress is not None:
            progress(artifact["size"])

    async def events(self, job_id: str, after: int = 0) -> AsyncIterator[dict[str, Any]]:
        """Live from this process's orchestrator when it drives the job, else from the database."""
        queue = self._orchestrator.hub.subscribe(job_id) if self._drives(job_id) else None
        try:
            while True:
                backlog = await self.store.events(job_id, after, 5000)
                for event in backlog:
                    after = event["seq"]
                    yield event
                    if event["type"] == "job.end":
                        return
                if backlog:
                    continue
                if queue is not None and self._drives(job_id):
                    await queue.get()
                else:
                    job = await self.store.get_job(job_id)
                    if job["status"] in ("succeeded", "failed", "cancelled") and job["last_seq"] <= after:
                        return
                    await asyncio.sleep(0.25)  # another process writes the database: look again shortly
        finally:
            if queue is not None:
                self._orchestrator.hub.unsubscribe(job_id, queue)


def _local_user() -> str:
    """`app.local_user` (the owner of this account's jobs), without importing the server."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid{os.getuid()}"


async def open_session(args: argparse.Namespace, root_dir: str | Path | None = None) -> Any:
    """The server if one is running (unless --local), else this process (nothing started)."""
    from .client import find_server

    session: Any = None
    if not getattr(args, "local", False):
        session = await find_server()
    if session is None:
        session = InProcess(root_dir, getattr(args, "backend", None))
    if isinstance(getattr(args, "job", None), str):
        try:
            args.job = await resolve_job(session, args.job)
        except BaseException:
            await close_session(session)
            raise
    return session


async def resolve_job(session: Any, given: str) -> str:
    """A job id, or the start of one as Lab's titles show it (`a1b2c3`): the one job of yours
    whose id starts with it; several or none are said with the ids that would do."""
    if len(given) >= 12 or not given:
        return given
    matches = [j["id"] for j in await session.jobs() if str(j["id"]).startswith(given)]
    if len(matches) == 1:
        return str(matches[0])
    if not matches:
        raise NotFound(f"no job {given!r}: none of your job ids starts with it; `jupyter-ext ls` lists them")
    listed = ", ".join(matches[:10]) + (", ..." if len(matches) > 10 else "")
    raise ValidationError(f"{given!r} starts {len(matches)} job ids ({listed}); give more of the id")


async def close_session(session: Any) -> None:
    if isinstance(session, InProcess):
        await session.close()


# -- commands -------------------------------------------------------------------------------------------------------
async def cmd_run(args: argparse.Namespace) -> int:
    from .client import ServerClient

    path = Path(args.notebook).resolve()
    if path.is_dir():
        raise ValidationError(f"notebook: {args.notebook!r} is a folder; give the path of a notebook (.ipynb) in it")
    if not path.is_file():
        raise NotFound(f"notebook: {args.notebook!r} does not exist", field="notebook")
    session = await open_session(args, root_dir=path.parent)
    if isinstance(session, ServerClient):
        root = Path(session.root_dir or "/").resolve()
        if path.is_relative_to(root):
            notebook = path.relative_to(root).as_posix()
            print(f"submitting to the jupyter-ext server at {session.url}", file=sys.stderr)
        else:
            print(f"{path} is outside the running server's root {root}; running it here", file=sys.stderr)
            session = InProcess(path.parent, args.backend)
            notebook = path.name
    else:
        notebook = path.name
    spec: dict[str, Any] = {"notebook": notebook, "parameters": {k: parse_value(v) for k, v in args.parameters}}
    for key in ("backend", "name", "timeout", "retries", "from_step", "rerun_of", "kernel"):
        if getattr(args, key) is not None:
            spec[key] = getattr(args, key)
    resources = {k: getattr(args, k) for k in ("gpu", "memory", "cpu", "image") if getattr(args, k) is not None}
    if resources:
        spec["resources"] = resources
    try:
        if not await _check_plan(session, notebook, args):
            return 2
        if isinstance(session, InProcess):
            if args.detach:
                return await _detach(session, spec)
            await session.start()
        job = await session.submit(spec)
        if args.detach:
            print(job["id"])
            return 0
        return await follow(session, job, cancel_on_interrupt=True)
    finally:
        await close_session(session)


async def _check_plan(session: Any, notebook: str, args: argparse.Namespace) -> bool:
    """Before anything runs: the planner's warnings on stderr (errors with --strict), its errors raised."""
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
        return False
    return True


async def _detach(session: InProcess, spec: dict[str, Any]) -> int:
    """No server: store the job here (so every refusal is said now), then hand it to a background
    process that drives it to its end and outlives this command."""
    import subprocess

    job = await session.submit(spec, drive=False)
    log_path = session.orchestrator.job_dir(job["id"]) / "driver.log"
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
    session = InProcess(backend=args.backend)
    try:
        job = await session.store.get_job(args.job)
        await session.start(job["backend"])
        session.orchestrator.drive(args.job)
        job = await session.orchestrator.wait(args.job)
        return 0 if job["status"] == "succeeded" else 1
    finally:
        await session.close()


async def follow(session: Any, job: dict[str, Any], *, cancel_on_interrupt: bool, after: int = 0) -> int:
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
            if isinstance(session, InProcess):
                await session.orchestrator.wait(job["id"])
        else:
            print(f"\nstopped following; job {job['id']} keeps running", file=sys.stderr)
        return 130
    finally:
        loop.remove_signal_handler(signal.SIGINT)
    return 0 if status == "succeeded" else 1


async def cmd_ls(args: argparse.Namespace) -> int:
    session = await open_session(args)
    try:
        jobs = await session.jobs()
    finally:
        await close_session(session)
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
                _status(j),
                j["backend"],
                f"{done}/{len(j['steps'])}",
                j["created"][:19].replace("T", " "),
                _duration(j),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _status(job_or_step: dict[str, Any]) -> str:
    """'queued (3rd in line)' while waiting for a slot, else the status."""
    place = job_or_step.get("queue_position")
    if job_or_step["status"] != "queued" or not place:
        return str(job_or_step["status"])
    suffix = "th" if 10 <= place % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(place % 10, "th")
    return f"queued ({place}{suffix} in line)"


async def cmd_status(args: argparse.Namespace) -> int:
    session = await open_session(args)
    try:
        job = await session.job(await resolve_job(session, args.job))
    finally:
        await close_session(session)
    if args.json:
        print(json.dumps(job, indent=2))
        return 0
    print(f"job {job['id']} ({job['name']}) on {job['backend']}: {_status(job)}, {_duration(job)}")
    if job.get("error") and job["status"] != "succeeded":
        print(f"  {job['error'].get('message', '')}")
    rows = [("STEP", "STATUS", "ATTEMPT", "DURATION")]
    for s in job["steps"]:
        rows.append((s["name"], _status(s), str(s["attempt"]), _duration(s)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
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
        await close_session(session)
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
        await close_session(session)
    verb = "would delete" if args.dry_run else "deleted"
    n = len(deleted)
    print(f"{verb} {n} finished job{'s' if n != 1 else ''}{': ' if deleted else ''}{' '.join(deleted)}")
    return 0


def _duration(job: dict[str, Any]) -> str:
    from datetime import datetime, timezone

    if not job.get("started"):
        return "-"
    start = datetime.fromisoformat(job["started"].replace("Z", "+00:00"))
    end = (
        datetime.fromisoformat(job["finished"].replace("Z", "+00:00"))
        if job.get("finished")
        else datetime.now(timezone.utc)
    )
    seconds = int((end - start).total_seconds())
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


async def cmd_logs(args: argparse.Namespace) -> int:
    session = await open_session(args)
    try:
        job = await session.job(args.job)
        if args.follow:
            return await follow(session, job, cancel_on_interrupt=False, after=args.after)
        renderer = Renderer()
        renderer.job(job)
        if isinstance(session, InProcess):
            events = await session.store.events(args.job, args.after, 10**9)
        else:
            events = (await session.request("GET", f"jobs/{args.job}/events", after=args.after, limit=20000))["events"]
        for event in events:
            if args.json:
                print(json.dumps(event))
            else:
                renderer.event(event)
        return 0
    finally:
        await close_session(session)


async def cmd_cancel(args: argparse.Namespace) -> int:
    session = await open_session(args)
    try:
        job = await session.cancel(args.job)
    finally:
        await close_session(session)
    print(f"job {job['id']}: {job['status']}{' (cancelling)' if job['status'] in ('queued', 'running') else ''}")
    return 0


async def cmd_artifacts(args: argparse.Namespace) -> int:
    from tqdm import tqdm

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
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        total = sum(a["size"] for a in artifacts)
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"{len(artifacts)} artifacts", file=sys.stderr) as bar:
            for a in artifacts:
                await session.download(args.job, a["name"], out / a["name"], bar.update)
        print(f"saved {len(artifacts)} artifact(s) to {out}", file=sys.stderr)
        return 0
    finally:
        await close_session(session)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyter-ext", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"jupyter-ext {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,ls,status,logs,cancel,artifacts,rm,prune}")

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
    return parser


def main(argv: list[str] | None = None) -> int:
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
