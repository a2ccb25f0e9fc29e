"""The embedded backend: each step attempt is a local process in its own session.

The runner appends its events to `<attempt_dir>/events.jsonl`; one tail thread follows the
files of every running attempt (the local analogue of one watch per namespace) and hands
new events to the event loop, so nothing is lost while the server is down and a restarted
server simply continues from the last event it stored. GPUs come from a configured pool
through CUDA_VISIBLE_DEVICES; a concurrency limit bounds how many attempts run at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from traitlets import Float, Int, List, Unicode, default

from ..errors import BackendError, ValidationError
from ..models import Resources
from ..runner.emitter import parse_line
from .base import Backend, Outcome, StepLaunch, runner_argv

_END = object()
STANDBY_PREFIX = "jupyter-ext-standby-"
STANDBY_OWNER = "owner.json"  # {"pid", "start_time"} of the server process the folder belongs to


def _proc_start_time(pid: int) -> str | None:
    """Start time of `pid` in clock ticks since boot (tells a live process from a reused pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has finished; only its parent's wait() remains
        return None
    return fields[19]


def _alive(pid: int, start_time: str | None) -> bool:
    current = _proc_start_time(pid)
    return current is not None and (start_time is None or current == start_time)


def _standby_in_use(folder: Path) -> bool:
    """Whether the server that made this standby folder still runs. A folder without an owner
    file (made before there was one) counts as in use while any process works in it."""
    try:
        owner = json.loads((folder / STANDBY_OWNER).read_text())
        return _alive(int(owner["pid"]), owner.get("start_time"))
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError):
        return False  # unreadable or torn: nobody can be using it as theirs
    resolved = str(folder.resolve())
    for cwd in Path("/proc").glob("[0-9]*/cwd"):
        try:
            target = os.readlink(cwd)
        except OSError:
            continue
        if target == resolved or target.startswith(resolved + os.sep):
            return True
    return False


def sweep_standby_folders(tmp: str | Path | None = None) -> list[Path]:
    """Remove this account's `jupyter-ext-standby-*` folders whose server is gone (killed, or a
    version that never cleaned up); answers those removed. Blocking: run it in a thread."""
    removed = []
    for folder in Path(tmp or tempfile.gettempdir()).glob(f"{STANDBY_PREFIX}*"):
        try:
            if not folder.is_dir() or folder.is_symlink() or folder.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        if not _standby_in_use(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def detect_gpus() -> list[str]:
    """GPU ids visible to the server: CUDA_VISIBLE_DEVICES if set, else `nvidia-smi -L`, else none."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in (s.strip() for s in visible.split(",")) if g and g != "-1"]
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


@dataclass
class _Watch:
    """One attempt being followed by the tail thread."""

    key: str
    path: Path
    after: int
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Any]
    pid: int
    start_time: str | None
    proc: subprocess.Popen[bytes] | None
    attempt_dir: Path
    pos: int = 0
    partial: bytes = b""
    end_event: dict[str, Any] | None = None
    done: bool = False
    gone_checks: int = 0


class _Tailer(threading.Thread):
    """Follows every running attempt's events file; one thread for the whole backend."""

    def __init__(self, interval: float) -> None:
        super().__init__(name="jupyter-ext-local-tail", daemon=True)
        self.interval = interval
        self.watches: dict[str, _Watch] = {}
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = False

    def add(self, watch: _Watch) -> None:
        with self.lock:
            self.watches[watch.key] = watch
        self.wake.set()

    def remove(self, key: str) -> None:
        with self.lock:
            self.watches.pop(key, None)

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()

    def run(self) -> None:
        while not self.stopping:
            with self.lock:
                watches = list(self.watches.values())
            busy = False
            for w in watches:
                try:
                    busy |= self._step(w)
                except Exception as exc:  # noqa: BLE001 - one broken file must not stop the others
                    self._deliver(w, [{"type": "log", "stream": "stderr", "text": f"event stream broken: {exc}\n"}])
                    self._finish(w)
            if not busy:
                self.wake.wait(self.interval)
                self.wake.clear()

    def _read(self, w: _Watch) -> list[dict[str, Any]]:
        try:
            with open(w.path, "rb") as f:
                f.seek(w.pos)
                data = f.read()
        except FileNotFoundError:
            return []
        if not data:
            return []
        w.pos += len(data)
        data = w.partial + data
        lines = data.split(b"\n")
        w.partial = lines.pop()
        events = []
        for raw in lines:
            event = parse_line(raw.decode("utf-8", "replace"))
            if event is None or int(event.get("n", 0)) <= w.after:
                continue
            if event.get("type") == "artifact" and "path" in event:
                event["location"] = str(w.attempt_dir / "artifacts" / event["path"])
            events.append(event)
            if event.get("type") == "step.end":
                w.end_event = event
        return events

    def _step(self, w: _Watch) -> bool:
        events = self._read(w)
        if events:
            self._deliver(w, events)
        if w.end_event is not None:
            self._finish(w)
            return True
        if not self._running(w):
            # The process is gone: read once more (its last write may have raced the check).
            w.gone_checks += 1
            if w.gone_checks >= 2 and not events:
                self._finish(w)
        return bool(events)

    def _running(self, w: _Watch) -> bool:
        if w.proc is not None:
            return w.proc.poll() is None
        return _alive(w.pid, w.start_time)

    def _deliver(self, w: _Watch, events: list[dict[str, Any]]) -> None:
        w.loop.call_soon_threadsafe(w.queue.put_nowait, events)

    def _finish(self, w: _Watch) -> None:
        w.done = True
        self.remove(w.key)
        w.loop.call_soon_threadsafe(w.queue.put_nowait, _END)


class LocalBackend(Backend):
    """Runs each step attempt as `python -m jupyter_ext.runner` on this machine."""

    name = "local"

    max_concurrent = Int(
        help="How many step attempts may run at once (default: the number of CPUs, at least 2).",
    ).tag(config=True)

    @default("max_concurrent")
    def _default_max_concurrent(self) -> int:
        return max(2, os.cpu_count() or 1)

    gpus = List(
        Unicode(),
        help=(
            "GPU ids handed to steps through CUDA_VISIBLE_DEVICES. Default: CUDA_VISIBLE_DEVICES of "
            "the server if set, else the GPUs `nvidia-smi -L` lists, else none."
        ),
    ).tag(config=True)

    @default("gpus")
    def _default_gpus(self) -> list[str]:
        return detect_gpus()

    python = Unicode(
        sys.executable,
        help="Python interpreter that runs the step runner (it needs jupyter-ext, papermill and ipykernel).",
    ).tag(config=True)

    warm_pool = Int(
        1,
        help="Runner processes kept ready with papermill loaded and a python3 kernel started, so a "
        "step starts in a fraction of a second instead of a few seconds. 0 turns the pool off.",
    ).tag(config=True)

    poll_interval = Float(
        0.02,
        help="Seconds between looks at the event files of running steps when nothing new arrived.",
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tailer: _Tailer | None = None
        self._slots: dict[str, list[str]] = {}  # attempt key -> GPUs it holds
        self._queue: dict[str, int] = {}  # attempt key -> GPUs it waits for, first come first
        self._changed = asyncio.Condition()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._outcomes: dict[str, Outcome] = {}
        self._reaping: set[asyncio.Task[None]] = set()
        self._standby: list[subprocess.Popen[bytes]] = []
        self._standby_lock = threading.Lock()
        self._standby_dir: Path | None = None

    # -- lifecycle --------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._tailer is None:
            self._tailer = _Tailer(self.poll_interval)
            self._tailer.start()
        swept = await asyncio.to_thread(sweep_standby_folders)
        if swept:
            self.log.info("jupyter-ext: removed %d standby folder(s) left by servers that are gone", len(swept))
        await asyncio.to_thread(self._refill)

    async def stop(self) -> None:
        if self._reaping:
            # Steps that reported their end are exiting; give them a moment so none is left a zombie.
            await asyncio.wait(list(self._reaping), timeout=5)
        if self._tailer is not None:
            self._tailer.stop()
            self._tailer = None
        await asyncio.to_thread(self._drain_standby)
        folder, self._standby_dir = self._standby_dir, None
        if folder is not None:
            # Its runners have exited; a step one of them took works in the step's own folders.
            await asyncio.to_thread(shutil.rmtree, folder, True)

    def capacity(self) -> dict[str, Any]:
        return {
            "max_concurrent": self.max_concurrent,
            "gpus": len(self.gpus),
            "running": len(self._slots),
            "queued": len(self._queue),
        }

    def queue(self) -> list[tuple[str, str]]:
        out = []
        for key in self._queue:
            job_id, rest = key.split("/", 1)
            out.append((job_id, rest.rsplit("/", 1)[0]))
        return out

    def check(self, step: str, resources: Resources) -> None:
        if resources.gpu > len(self.gpus):
            have = f"{len(self.gpus)} GPU{'s' if len(self.gpus) != 1 else ''}"
            raise ValidationError(
                f"step {step!r} asks for {resources.gpu} GPUs but the local backend has {have}; "
                f"lower `gpu:` on step {step!r}, or run it on the kubernetes backend",
                step=step,
                field="resources.gpu",
            )

    # -- capacity ---------------------------------------------------------------------------------------
    def _free_gpus(self) -> list[str]:
        held = {g for gpus in self._slots.values() for g in gpus}
        return [g for g in self.gpus if g not in held]

    def _fits(self, n_gpus: int) -> bool:
        return len(self._slots) < self.max_concurrent and len(self._free_gpus()) >= n_gpus

    def _turn(self, key: str) -> bool:
        """Whether `key` is the first waiting attempt that fits now (one asking for GPUs that are
        taken lets those behind it that fit go first)."""
        return next((k for k, n in self._queue.items() if self._fits(n)), None) == key

    async def _acquire(self, key: str, n_gpus: int) -> list[str]:
        """A slot (and `n_gpus` GPUs) for the attempt, in the order attempts asked."""
        async with self._changed:
            self._queue[key] = n_gpus
            self._tell_queue()
            try:
                await self._changed.wait_for(lambda: self._turn(key))
                gpus = self._free_gpus()[:n_gpus]
                self._slots[key] = gpus
                return gpus
            finally:
                del self._queue[key]
                self._tell_queue()
                self._changed.notify_all()  # the next in line may fit too (or fit now it left)

    def _tell_queue(self) -> None:
        if self.on_queue_change is not None:
            self.on_queue_change()

    async def _release(self, key: str) -> None:
        async with self._changed:
            self._slots.pop(key, None)
            self._changed.notify_all()

    # -- running -----------------------------------------------------------------------------------------
    @staticmethod
    def _key(handle_or_launch: Any) -> str:
        if isinstance(handle_or_launch, dict):
            return str(handle_or_launch["key"])
        launch = handle_or_launch
        return f"{launch.job_id}/{launch.step}/{launch.attempt}"

    def _command(self, launch: StepLaunch, params_file: Path) -> list[str]:
        return runner_argv(
            launch,
            notebook=launch.notebook,
            attempt_dir=launch.attempt_dir,
            workdir=launch.workdir,
            parameters_file=str(params_file),
            python=self.python,
        )

    async def submit(self, launch: StepLaunch) -> dict[str, Any]:
        key = self._key(launch)
        gpus = await self._acquire(key, launch.resources.gpu)
        try:
            return await asyncio.to_thread(self._spawn, launch, key, gpus)
        except BaseException:
            await self._release(key)
            raise

    @staticmethod
    def _base_env() -> dict[str, str]:
        """The server's environment minus its own secrets (the token never reaches a step)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER_TOKEN", "JPY_", "JUPYTER_EXT_"))}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    # -- warm pool ------------------------------------------------------------------------------------------
    def _refill(self) -> None:
        """Start standby runners until the pool is full (runs in a thread)."""
        with self._standby_lock:
            self._standby = [p for p in self._standby if p.poll() is None]
            if self._standby_dir is None and self.warm_pool > 0:
                self._standby_dir = Path(tempfile.mkdtemp(prefix=STANDBY_PREFIX))
                me = {"pid": os.getpid(), "start_time": _proc_start_time(os.getpid())}
                (self._standby_dir / STANDBY_OWNER).write_text(json.dumps(me))
            while len(self._standby) < self.warm_pool:
                assert self._standby_dir is not None
                log = open(self._standby_dir / f"standby-{time.time_ns()}.log", "ab")  # noqa: SIM115
                try:
                    proc = subprocess.Popen(  # noqa: S603 - argv list, no shell
                        [self.python, "-m", "jupyter_ext.runner", "--standby", str(self._standby_dir)],
                        cwd=self._standby_dir,
                        env=self._base_env(),
                        stdin=subprocess.PIPE,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                        close_fds=True,
                    )
                except OSError as exc:
                    self.log.warning("jupyter-ext: could not start a standby runner: %s", exc)
                    return
                finally:
                    log.close()
                self._standby.append(proc)

    def _take_standby(self, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes] | None:
        """Hand a step to a waiting runner; None when none is alive."""
        message = (json.dumps({"argv": argv, "env": env}) + "\n").encode()
        with self._standby_lock:
            while self._standby:
                proc = self._standby.pop(0)
                if proc.poll() is not None or proc.stdin is None:
                    continue
                try:
                    proc.stdin.write(message)
                    proc.stdin.close()
                except OSError:
                    continue
                return proc
        return None

    def _drain_standby(self) -> None:
        with self._standby_lock:
            procs, self._standby = self._standby, []
        for proc in procs:
            try:
                if proc.stdin is not None:
                    proc.stdin.close()  # end of input: it shuts its kernel down and exits
                proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                _killpg(proc.pid, signal.SIGKILL)

    # -- one attempt --------------------------------------------------------------------------------------------
    def _spawn(self, launch: StepLaunch, key: str, gpus: list[str]) -> dict[str, Any]:
        attempt_dir = Path(launch.attempt_dir)
        existing = self._existing(attempt_dir)
        if existing is not None:
            return existing
        (attempt_dir / "artifacts").mkdir(parents=True, exist_ok=True)
        params_file = attempt_dir / "parameters.json"
        params_file.write_text(json.dumps(launch.parameters))
        step_env = dict(launch.env)
        step_env.update(
            JUPYTER_EXT_JOB=launch.job_id,
            JUPYTER_EXT_STEP=launch.step,
            JUPYTER_EXT_ATTEMPT=str(launch.attempt),
            JUPYTER_EXT_ARTIFACTS_DIR=str(attempt_dir / "artifacts"),
            JUPYTER_EXT_KERNEL_PID_FILE=str(attempt_dir / "kernel.pid"),
            JUPYTER_EXT_RUNNER_LOG=str(attempt_dir / "runner.log"),
        )
        if self.gpus or launch.resources.gpu:
            # An empty value hides every GPU from a CPU step, so it cannot take a GPU step's device.
            step_env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        argv = self._command(launch, params_file)
        proc = self._take_standby(argv[3:], step_env) if self.warm_pool > 0 else None
        warm = proc is not None
        if proc is None:
            log = open(attempt_dir / "runner.log", "ab")  # noqa: SIM115 - handed to the child, closed below
            try:
                proc = subprocess.Popen(  # noqa: S603 - argv list, no shell; every part is ours or a path
                    argv,
                    cwd=launch.workdir,
                    env={**self._base_env(), **step_env},
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as exc:
                raise BackendError(f"could not start step {launch.step!r}: {exc}", step=launch.step) from exc
            finally:
                log.close()
        self._procs[key] = proc
        handle = {
            "backend": self.name,
            "key": key,
            "pid": proc.pid,
            "start_time": _proc_start_time(proc.pid),
            "attempt_dir": str(attempt_dir),
            "gpus": gpus,
            "warm": warm,
            "started": time.time(),
        }
        (attempt_dir / "handle.json").write_text(json.dumps(handle))
        if warm:
            self._refill()
        return handle

    def _existing(self, attempt_dir: Path) -> dict[str, Any] | None:
        """The handle of this attempt if a previous server started it just before it died."""
        try:
            handle: dict[str, Any] = json.loads((attempt_dir / "handle.json").read_text())
        except (OSError, ValueError):
            return None
        if _alive(int(handle["pid"]), handle.get("start_time")) or (attempt_dir / "events.jsonl").exists():
            return handle
        return None

    async def adopt(self, handle: dict[str, Any]) -> bool:
        key = self._key(handle)
        events_file = Path(handle["attempt_dir"]) / "events.jsonl"
        alive = await asyncio.to_thread(_alive, int(handle["pid"]), handle.get("start_time"))
        if not alive and not await asyncio.to_thread(events_file.exists):
            return False
        async with self._changed:
            self._slots[key] = list(handle.get("gpus", []))
        return True

    async def events(self, handle: dict[str, Any], after: int) -> AsyncIterator[list[dict[str, Any]]]:
        assert self._tailer is not None, "LocalBackend.start() was not called"
        key = self._key(handle)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        watch = _Watch(
            key=key,
            path=Path(handle["attempt_dir"]) / "events.jsonl",
            after=after,
            loop=asyncio.get_running_loop(),
            queue=queue,
            pid=int(handle["pid"]),
            start_time=handle.get("start_time"),
            proc=self._procs.get(key),
            attempt_dir=Path(handle["attempt_dir"]),
        )
        self._tailer.add(watch)
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    break
                yield item
        finally:
            self._tailer.remove(key)
            self._outcomes[key] = await self._settle(watch)

    async def _settle(self, w: _Watch) -> Outcome:
        proc = self._procs.pop(w.key, None)
        if w.end_event is not None:
            # The runner said how it ended; reap the process in the background (it may still be
            # unwinding its interpreter) and only then give its slot back.
            if proc is not None:
                task = asyncio.create_task(self._reap(w.key, proc))
                self._reaping.add(task)
                task.add_done_callback(self._reaping.discard)
            else:
                await self._release(w.key)
            return Outcome(exit_code=int(w.end_event.get("exit_code") or 0))
        code: int | None = None
        if proc is not None:
            try:
                code = await asyncio.to_thread(proc.wait, 30)
            except subprocess.TimeoutExpired:
                code = None
        await self._release(w.key)
        if code is not None and code < 0:
            return Outcome(exit_code=128 - code, reason=f"killed by signal {signal.Signals(-code).name}")
        if code is not None:
            return Outcome(exit_code=code, reason="the runner exited without reporting an end")
        return Outcome(exit_code=None, reason="lost: the step's process ended without reporting how")

    async def _reap(self, key: str, proc: subprocess.Popen[bytes]) -> None:
        try:
            await asyncio.to_thread(proc.wait, 60)
        except subprocess.TimeoutExpired:
            self.log.warning("jupyter-ext: step process %s still running 60s after it reported its end", proc.pid)
        finally:
            await self._release(key)

    async def outcome(self, handle: dict[str, Any]) -> Outcome:
        return self._outcomes.pop(self._key(handle), Outcome(exit_code=None, reason="lost"))

    async def cancel(self, handle: dict[str, Any]) -> None:
        pid, start_time = int(handle["pid"]), handle.get("start_time")

        async def alive() -> bool:  # /proc reads stay off the event loop
            return await asyncio.to_thread(_alive, pid, start_time)

        if not await alive():
            return
        _killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.cancel_grace
        # A process that is not our child cannot be awaited; look every 100 ms during the grace period.
        while time.monotonic() < deadline and await alive():  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        if await alive():
            _killpg(pid, signal.SIGKILL)
            await asyncio.to_thread(_kill_kernel, Path(handle["attempt_dir"]) / "kernel.pid")


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_kernel(pid_file: Path) -> None:
    """The kernel runs in its own session; after a SIGKILL of the runner nobody else stops it."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"kernel" in cmdline:
        _killpg(pid, signal.SIGKILL)
