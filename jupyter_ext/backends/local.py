"""The embedded backend: each step attempt is a local process in its own session.

The runner appends its events to `<attempt_dir>/events.jsonl`; one tail thread follows the
files of every running attempt (the local analogue of one watch per namespace) and hands
new events to the event loop, so nothing is lost while the server is down and a restarted
server simply continues from the last event it stored. GPUs come from a configured pool
through CUDA_VISIBLE_DEVICES; a concurrency limit bounds how many attempts run at once.
The warm pool of standby runners, and the process facts (is a pid still ours), are in standby.py;
the runner the command line keeps warm between commands is in keepwarm.py.

Why this module is long: the backend is one state machine (slots and GPUs handed out in order, the
tail thread that follows every attempt, spawn/adopt/settle/cancel of an attempt) plus its options;
the warm pool and process facts already live in standby.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from traitlets import Float, Int, List, Unicode, Union, default

from ..errors import BackendError, ValidationError
from ..layout import AttemptFiles
from ..models import Resources
from ..runner.emitter import parse_line
from . import keepwarm
from .base import Backend, EventsOrOutcome, Handle, Outcome, StepLaunch, handoff_env, runner_argv
from .standby import StandbyPool, kill_kernel, killpg, pool_memory, spawn_logged, sweep_standby_folders
from .standby import alive as _alive
from .standby import proc_start_time as _proc_start_time

_END = object()


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
                event["location"] = str(AttemptFiles(w.attempt_dir).artifacts / event["path"])
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


class LocalHandle(Handle):
    """One attempt's process (stored with the step, and in `<attempt_dir>/handle.json`)."""

    backend: str = "local"
    key: str  # job/step/attempt
    pid: int
    start_time: str | None = None  # of `pid`, to tell it from a reused pid
    gpus: list[str] = []
    warm: bool = False  # a standby runner took it


class LocalBackend(Backend[LocalHandle]):
    """Runs each step attempt as `python -m jupyter_ext.runner` on this machine."""

    name = "local"
    handle_type = LocalHandle

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
        help="Most runner processes kept ready with papermill loaded and a python3 kernel started, so a "
        "step starts in a fraction of a second instead of a few seconds (each runs one step, so every step "
        "still gets a fresh interpreter). Default: `max_concurrent`, within `warm_pool_memory`; refilled in "
        "the background as soon as one is taken. 0 turns the pool off.",
    ).tag(config=True)

    @default("warm_pool")
    def _default_warm_pool(self) -> int:
        return self.max_concurrent

    warm_pool_memory = Union(
        [Int(), Unicode()],
        default_value="",
        help="Memory the ready runners (and their kernels) of the warm pool may hold together: bytes, or a "
        "quantity such as '2Gi'; measured on the runners themselves. Default (''): an eighth of the "
        "machine's memory (or of the server's memory cgroup limit).",
    ).tag(config=True)

    warm_pool_idle = Float(
        300.0,
        help="Seconds without a step taken from the warm pool after which it shrinks to "
        "`warm_pool_idle_size` runners; it grows back when steps come again. 0 never shrinks it.",
    ).tag(config=True)

    warm_pool_idle_size = Int(
        1, help="Runners the warm pool keeps while idle (see `warm_pool_idle`); 0 keeps none."
    ).tag(config=True)

    keep_warm = Float(
        help="Seconds a runner left ready by `jupyter-ext run --local` waits for the next such command "
        "before it exits (it holds a started python3 kernel, ~100-150 MB, meanwhile; each runner still "
        "runs one step, in a fresh interpreter). Only the command line leaves one; the server has its "
        "warm pool. 0 leaves none. Default: $JUPYTER_EXT_KEEP_WARM, else 300.",
    ).tag(config=True)

    @default("keep_warm")
    def _default_keep_warm(self) -> float:
        try:
            return float(os.environ.get("JUPYTER_EXT_KEEP_WARM", "300"))
        except ValueError:
            return 300.0

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
        self._reaping: set[asyncio.Task[None]] = set()
        self._expected: dict[str, int] = {}  # job id -> its steps still to start (expect_steps)
        self._warm_dir: Path | None = None  # keep_warm_in: the command line's kept-warm runners
        self._pool = StandbyPool(
            self.python,
            self.warm_pool,
            self._base_env,
            self.log,
            memory=pool_memory(self.warm_pool_memory),
            idle=self.warm_pool_idle,
            idle_size=min(self.warm_pool, self.warm_pool_idle_size),
        )

    def expect_steps(self, job_id: str, steps: int) -> None:
        """The orchestrator's hint: `steps` of this job are still to start. The warm pool grows to
        what all jobs expect (within its memory cap), so a chain's next step finds a ready runner."""
        if steps > 0:
            self._expected[job_id] = steps
        else:
            self._expected.pop(job_id, None)
        self._pool.expect(sum(self._expected.values()))

    def keep_warm_in(self, data_dir: str | Path) -> None:
        """Claim a runner a previous command left ready, and leave one ready when this backend stops
        (`keep_warm` seconds): for a command that runs a job and ends (keepwarm.py). Off when
        `keep_warm` is 0 or `<data_dir>/warm` is not this user's own 0700 folder."""
        if self.keep_warm > 0:
            self._warm_dir = keepwarm.warm_folder(data_dir)

    def _warm_tag(self) -> str:
        return keepwarm.runner_tag(self.python, self._base_env())

    # -- lifecycle --------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._tailer is None:
            self._tailer = _Tailer(self.poll_interval)
            self._tailer.start()
        swept = await asyncio.to_thread(sweep_standby_folders)
        if swept:
            self.log.info("jupyter-ext: removed %d standby folder(s) left by servers that are gone", len(swept))
        await asyncio.to_thread(self._pool.start)

    async def stop(self) -> None:
        if self._reaping:
            # Steps that reported their end are exiting; give them a moment so none is left a zombie.
            await asyncio.wait(list(self._reaping), timeout=5)
        if self._tailer is not None:
            self._tailer.stop()
            self._tailer = None
        await asyncio.to_thread(self._pool.close)
        if self._warm_dir is not None:
            await asyncio.to_thread(
                keepwarm.leave, self._warm_dir, self.python, self._warm_tag(), self._base_env(), self.keep_warm
            )

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
    def _key(launch: StepLaunch) -> str:
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

    async def submit(self, launch: StepLaunch) -> LocalHandle:
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

    # -- one attempt --------------------------------------------------------------------------------------------
    def _spawn(self, launch: StepLaunch, key: str, gpus: list[str]) -> LocalHandle:
        attempt_dir = Path(launch.attempt_dir)
        existing = self._existing(attempt_dir)
        if existing is not None:
            return existing
        files = AttemptFiles(attempt_dir)
        files.artifacts.mkdir(parents=True, exist_ok=True)
        params_file = files.parameters
        params_file.write_text(json.dumps(launch.parameters))
        step_env = {**launch.env, **handoff_env(launch.handoff_in)}
        step_env.update(
            JUPYTER_EXT_JOB=launch.job_id,
            JUPYTER_EXT_STEP=launch.step,
            JUPYTER_EXT_ATTEMPT=str(launch.attempt),
            JUPYTER_EXT_ARTIFACTS_DIR=str(files.artifacts),
            JUPYTER_EXT_KERNEL_PID_FILE=str(files.kernel_pid),
            JUPYTER_EXT_RUNNER_LOG=str(files.runner_log),
        )
        if self.gpus or launch.resources.gpu:
            # An empty value hides every GPU from a CPU step, so it cannot take a GPU step's device.
            step_env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        argv = self._command(launch, params_file)
        kept = None
        if self._warm_dir is not None and (self.warm_pool <= 0 or self._pool.ready_count() == 0):
            # Ready now, unlike a pool runner still starting (the command line's pool starts with it).
            kept = keepwarm.claim(self._warm_dir, self._warm_tag(), argv[3:], step_env)
        proc = self._pool.take(argv[3:], step_env) if kept is None and self.warm_pool > 0 else None
        warm = proc is not None or kept is not None
        if kept is not None:
            # A runner a previous command left: not our child; followed by pid + start time, as adopted.
            pid, start_time = kept
        else:
            if proc is None:
                env = {**self._base_env(), **step_env}
                try:
                    proc = spawn_logged(argv, launch.workdir, env, files.runner_log, subprocess.DEVNULL)
                except OSError as exc:
                    raise BackendError(f"could not start step {launch.step!r}: {exc}", step=launch.step) from exc
            self._procs[key] = proc
            pid, start_time = proc.pid, _proc_start_time(proc.pid)
        handle = LocalHandle(
            key=key,
            pid=pid,
            start_time=start_time,
            attempt_dir=str(attempt_dir),
            step=launch.step,
            gpus=gpus,
            warm=warm,
            started=time.time(),
        )
        files.handle.write_text(json.dumps(handle.stored()))
        return handle

    def _existing(self, attempt_dir: Path) -> LocalHandle | None:
        """The handle of this attempt if a previous server started it just before it died."""
        try:
            handle = LocalHandle.model_validate_json(AttemptFiles(attempt_dir).handle.read_text())
        except (OSError, ValueError):
            return None
        if _alive(handle.pid, handle.start_time) or AttemptFiles(attempt_dir).events.exists():
            return handle
        return None

    async def adopt(self, handle: LocalHandle) -> bool:
        events_file = AttemptFiles(Path(handle.attempt_dir)).events
        alive = await asyncio.to_thread(_alive, handle.pid, handle.start_time)
        if not alive and not await asyncio.to_thread(events_file.exists):
            return False
        async with self._changed:
            self._slots[handle.key] = list(handle.gpus)
        return True

    async def events(self, handle: LocalHandle, after: int) -> AsyncIterator[EventsOrOutcome]:
        assert self._tailer is not None, "LocalBackend.start() was not called"
        key = handle.key
        queue: asyncio.Queue[Any] = asyncio.Queue()
        watch = _Watch(
            key=key,
            path=AttemptFiles(Path(handle.attempt_dir)).events,
            after=after,
            loop=asyncio.get_running_loop(),
            queue=queue,
            pid=handle.pid,
            start_time=handle.start_time,
            proc=self._procs.get(key),
            attempt_dir=Path(handle.attempt_dir),
        )
        self._tailer.add(watch)
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    break
                yield item
        finally:
            # Also when the consumer stops early: the slot is given back either way.
            self._tailer.remove(key)
            outcome = await self._settle(watch)
        yield outcome

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

    async def cancel(self, handle: LocalHandle) -> None:
        pid, start_time = handle.pid, handle.start_time

        async def alive() -> bool:  # /proc reads stay off the event loop
            return await asyncio.to_thread(_alive, pid, start_time)

        if not await alive():
            return
        killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.cancel_grace
        # A process that is not our child cannot be awaited; look every 100 ms during the grace period.
        while time.monotonic() < deadline and await alive():  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        if await alive():
            killpg(pid, signal.SIGKILL)
            await asyncio.to_thread(kill_kernel, AttemptFiles(Path(handle.attempt_dir)).kernel_pid)
