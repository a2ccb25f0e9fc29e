"""`python -m jupyter_ext.runner`: execute one step attempt and emit its events.

Exit status: 0 the notebook ran to the end; 1 a cell raised or the kernel died; 2 the runner
could not start the notebook (bad input, missing kernel); 143 cancelled (SIGTERM).

A step that does not succeed says why in its `step.end`: `reason` is one of `exception` (a cell
raised, or the runner could not run the notebook), `cancelled`, `oom` (the kernel was killed by
the memory cgroup's limit, `limit_bytes` says which) or `kernel_died` (the kernel ended some other
way; `signal` names the signal that killed it). docs/events.md lists the fields.

`__main__.py` picks this (`run`) or a warm runner (standby.py, which then calls `run` too).
"""

from __future__ import annotations

import argparse
import base64
import json
import mimetypes
import os
import platform
import select
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from ..contract import ATTEMPT_ARTIFACTS, ATTEMPT_EVENTS, ATTEMPT_KERNEL_PID
from . import cgroup, transfer
from .cancel import Cancelled, Canceller, StepCancelled
from .emitter import Emitter

mimetypes.add_type("application/x-ipynb+json", ".ipynb")
EXECUTED = "executed.ipynb"
EXECUTED_HTML = "executed.html"
CELL_OUTPUTS = "outputs/"  # where a %%remote cell's job saves its --out values (notebook/slice.py)
INLINE_BYTES = transfer.CHUNK  # the largest of them sent in its `artifact` event


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m jupyter_ext.runner", description=__doc__)
    p.add_argument("--notebook", required=True, help="the step's notebook")
    p.add_argument("--attempt-dir", required=True, help="where events, artifacts and the executed notebook go")
    p.add_argument("--workdir", default=None, help="the kernel's working directory (default: the notebook's)")
    p.add_argument("--job", required=True)
    p.add_argument("--step", default="main")
    p.add_argument("--attempt", type=int, default=1)
    p.add_argument("--parameters-file", default=None, help="JSON object of papermill parameters")
    p.add_argument("--kernel", default=None, help="kernel name (default: the notebook's, else python3)")
    p.add_argument("--events-stdout", action="store_true", help="also write events to stdout (pod log)")
    p.add_argument("--no-events-file", action="store_true", help="write events only to stdout")
    p.add_argument("--no-html", action="store_true", help="do not list an HTML copy of the executed notebook")
    return p.parse_args(argv)


def choose_kernel(nb: Any, requested: str | None, emitter: Emitter) -> str:
    """The kernel to run: the one asked for, else the notebook's if installed, else python3."""
    if requested:
        return requested
    from jupyter_client.kernelspec import KernelSpecManager

    wanted = nb.get("metadata", {}).get("kernelspec", {}).get("name")
    available = set(KernelSpecManager().find_kernel_specs())
    if wanted and wanted in available:
        return str(wanted)
    fallback = "python3"
    if wanted:
        emitter.emit(
            "log",
            stream="stderr",
            text=f"kernel {wanted!r} is not installed where the step runs; using {fallback!r}\n",
        )
    return fallback


def notebook_language(nb: Any, kernel: str) -> str | None:
    """The notebook's language, else the kernel's: papermill refuses a notebook whose metadata names
    no language ("No language found"), which notebooks written by other tools often lack."""
    meta = nb.get("metadata", {})
    language = meta.get("kernelspec", {}).get("language") or meta.get("language_info", {}).get("name")
    if language:
        return str(language)
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        return str(KernelSpecManager().get_kernel_spec(kernel).language)
    except NoSuchKernel:
        return None


def collect_artifacts(artifacts_dir: Path, emitter: Emitter, already: set[str]) -> None:
    """One `artifact` event per file under the artifacts folder (sorted, so re-runs are stable).
    A %%remote cell's `--out` value (`outputs/NAME.pkl`, notebook/slice.py) of at most INLINE_BYTES
    rides its event as `data` (base64), so the magic has it with the job's end, without asking."""
    if not artifacts_dir.is_dir():
        return
    for path in sorted(p for p in artifacts_dir.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = path.relative_to(artifacts_dir).as_posix()
        mime = mimetypes.guess_type(rel)[0] or "application/octet-stream"
        size = path.stat().st_size
        extra: dict[str, Any] = {}
        if rel.startswith(CELL_OUTPUTS) and rel.endswith(".pkl") and size <= INLINE_BYTES:
            data = path.read_bytes()
            size, extra["data"] = len(data), base64.b64encode(data).decode()
        emitter.emit("artifact", path=rel, size=size, mime=mime, **extra)


def run(args: argparse.Namespace, km: Any = None, kc: Any = None) -> int:
    """Run one step attempt; with `km`, in that already started kernel (the warm pool's)."""
    cancel = Canceller()
    cancel.install()  # first: a cancel during start-up must not kill us before step.end
    attempt_dir = Path(args.attempt_dir)
    attempt_dir.mkdir(parents=True, exist_ok=True)
    artifacts_dir = Path(os.environ.get("JUPYTER_EXT_ARTIFACTS_DIR") or attempt_dir / ATTEMPT_ARTIFACTS)
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    os.environ["JUPYTER_EXT_ARTIFACTS_DIR"] = str(artifacts_dir)
    os.environ.setdefault("JUPYTER_EXT_KERNEL_PID_FILE", str(attempt_dir / ATTEMPT_KERNEL_PID))
    emitter = Emitter(
        args.job,
        args.step,
        args.attempt,
        path=None if args.no_events_file else str(attempt_dir / ATTEMPT_EVENTS),
        stream=sys.stdout if args.events_stdout else None,
    )
    memory_before = cgroup.current()
    started = time.time()
    status, code, error = "succeeded", 0, None
    executed = artifacts_dir / EXECUTED
    saved: set[str] = set()
    try:
        emitter.emit("step.start", pid=os.getpid(), host=platform.node(), python=platform.python_version())
        import nbformat
        import papermill
        from nbclient.exceptions import DeadKernelError
        from papermill.exceptions import PapermillExecutionError

        from .engine import KernelDied

        transfer.fetch_inputs()  # from the artifact store, when the backend put the inputs there
        nb = nbformat.read(args.notebook, as_version=4)
        parameters: dict[str, Any] = {}
        if args.parameters_file:
            parameters = json.loads(Path(args.parameters_file).read_text())
        kernel = choose_kernel(nb, args.kernel, emitter)
        workdir = args.workdir or str(Path(args.notebook).resolve().parent)
        warm: dict[str, Any] = {}
        if km is not None and not _alive(km):
            # The warm kernel died while it waited (the OOM killer, a stray kill): this step gets a
            # fresh one rather than failing on a death that is not its own.
            _forget(km)
            km = None
        if km is not None and km.kernel_name == kernel:
            # The kernel started before this step was known: give it the step's folder and env first.
            env = {k: v for k, v in os.environ.items() if k.startswith("JUPYTER_EXT_") or k == "CUDA_VISIBLE_DEVICES"}
            warm = {"km": km, "kc": kc, "setup_code": _setup_code(workdir, env)}
            _write_kernel_pid(km)
        elif km is not None:
            km.shutdown_kernel(now=True)
            km = None

        def execute(warm: dict[str, Any]) -> Any:
            return papermill.execute_notebook(
                args.notebook,
                str(executed),
                parameters=parameters,
                engine_name="jupyter_ext",
                kernel_name=kernel,
                language=notebook_language(nb, kernel),
                cwd=workdir,
                progress_bar=False,
                log_output=False,
                emitter=emitter,
                artifacts_dir=str(artifacts_dir),
                cancel=cancel,
                **warm,
            )

        try:
            before = emitter.count
            try:
                result = execute(warm)
            except DeadKernelError:
                if not warm or emitter.count != before:
                    raise
                # The warm kernel died after the check above and before the step's first cell (a
                # kill racing the hand-over): not the step's death; a fresh kernel runs the step.
                print("jupyter-ext: the warm kernel died before the step began; starting a fresh one", file=sys.stderr)
                _forget(km)
                km, warm = None, {}
                result = execute(warm)
            saved = set(getattr(result, "saved_artifacts", set()) or set())
        except PapermillExecutionError as exc:
            status, code = "failed", 1
            error = _cell_error(exc, emitter)
        except KernelDied as exc:
            status, code = "failed", 1
            error = kernel_died_error(exc, args.step, memory_before, cgroup.current())
    except (Cancelled, StepCancelled):
        status = "cancelled"
    except Exception as exc:  # noqa: BLE001 - anything else is a runner failure the user must see
        status, code = "failed", 2
        error = {
            "reason": "exception",
            "ename": type(exc).__name__,
            "evalue": str(exc),
            "message": f"the step could not run: {type(exc).__name__}: {exc}",
            "traceback": traceback.format_exception(exc),
        }
    finally:
        # From here the runner finishes on its own: a second SIGTERM must not lose the events below.
        cancel.uninstall()
        if km is not None:
            stop_kernel(km)
    if cancel.requested.is_set():
        # Whatever the kernel was doing when the cancel came: the user stopped it.
        status, code, error = "cancelled", 143, {"reason": "cancelled", "message": "cancelled"}
    try:  # before the artifact events, so each artifact is on the server when its event arrives
        transfer.ship_outputs(emitter, artifacts_dir)
    except Exception as exc:  # noqa: BLE001 - the step's own status stands; say what was not sent back
        emitter.emit("log", stream="stderr", text=f"jupyter-ext: could not send the step's outputs back: {exc!r}\n")
        if status == "succeeded":
            status, code = "failed", 2
            error = {"reason": "exception", "message": f"the step's outputs could not be sent back: {exc!r}"}
    collect_artifacts(artifacts_dir, emitter, saved)
    if executed.exists() and not args.no_html and not (artifacts_dir / EXECUTED_HTML).exists():
        # Listed now, written by the server when first downloaded (jupyter_ext/executed_html.py).
        emitter.emit("artifact", path=EXECUTED_HTML, size=0, mime="text/html", deferred=True)
    end: dict[str, Any] = {"status": status, "exit_code": code, "error": error}
    if error is not None and error.get("reason"):
        end["reason"] = error["reason"]
    emitter.emit("step.end", **end, duration=round(time.time() - started, 3))
    emitter.close()
    return code


def kernel_died_error(
    exc: Any, step: str, before: cgroup.MemoryCgroup | None, after: cgroup.MemoryCgroup | None
) -> dict[str, Any]:
    """The step's error when its kernel died: out of memory when the memory cgroup killed it (the
    kernel is our child, so neither the container nor the pod reports OOMKilled), else how it died.
    Plain words and no traceback: the runner did nothing wrong."""
    where = {k: v for k, v in exc.ids.items() if k in ("cell_index", "cell_id")}
    killed = exc.signal == signal.SIGKILL
    if killed and cgroup.oom_killed(before, after):
        limit = after.limit if after is not None else None
        words = f"the memory limit of {cgroup.human_bytes(limit)}" if limit else "the machine's memory"
        return {
            **where,
            "reason": "oom",
            "limit_bytes": limit,
            "signal": "SIGKILL",
            "message": f"step {step!r} ran out of memory: its kernel was stopped when it reached {words}; "
            f"raise `memory:` on step {step!r}",
        }
    how = str(exc)
    hint = " (a SIGKILL often means the machine ran out of memory)" if killed and after is None else ""
    error: dict[str, Any] = {**where, "reason": "kernel_died", "message": f"{how}{hint}"}
    if exc.signal is not None:
        try:
            error["signal"] = signal.Signals(exc.signal).name
        except ValueError:
            error["signal"] = str(exc.signal)
    elif exc.returncode is not None:
        error["kernel_exit_code"] = exc.returncode
    return error


def compile_validator() -> None:
    """Build nbformat's notebook validator now. fastjsonschema compiles it on the first read or
    write of a notebook in a process (0.15 s of CPU), and a step reads and writes notebooks at
    once: a warm runner (standby.py) does it while its kernel starts, before any step arrives."""
    import nbformat

    nbformat.validate(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell()]))


def stop_kernel(km: Any) -> None:
    """`km.shutdown_kernel(now=True)` without its nap: jupyter_client kills the kernel's process
    group, then polls every 0.1 s until the process is gone, so every warm step ended 0.1 s late.
    Here the group is killed and the process reaped first; the shutdown then finds it gone and only
    cleans up (connection file, ports)."""
    process = getattr(getattr(km, "provisioner", None), "process", None)
    if process is not None and process.poll() is None:
        try:
            km.signal_kernel(signal.SIGKILL)  # its process group, as shutdown_kernel(now=True) kills it
            _wait_exit(process, 5)
        except (OSError, RuntimeError, subprocess.TimeoutExpired):
            pass  # shutdown_kernel below tries again its own way
    km.shutdown_kernel(now=True)


def _wait_exit(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Reap `process` the moment it exits (Popen.wait with a timeout naps between polls)."""
    try:
        fd = os.pidfd_open(process.pid)  # Linux: readable once the process has exited
    except (AttributeError, OSError):
        process.wait(timeout)
        return
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    process.wait(timeout)


def _setup_code(workdir: str, env: dict[str, str]) -> str:
    """Code run silently in a pre-started kernel before the first cell (no shell strings involved:
    the values are JSON literals, which Python reads as the same str/dict values)."""
    return (
        "import os as _je_os\n"
        f"_je_os.environ.update({json.dumps(env)})\n"
        f"_je_os.chdir({json.dumps(workdir)})\n"
        "del _je_os\n"
    )


def _write_kernel_pid(km: Any) -> None:
    pid = getattr(getattr(km, "provisioner", None), "pid", None)
    target = os.environ.get("JUPYTER_EXT_KERNEL_PID_FILE")
    if pid and target:
        Path(target).write_text(str(pid))


def _cell_error(exc: Any, emitter: Emitter) -> dict[str, Any]:
    """papermill's error fields, located by the failing cell's own `cell.end` event."""
    where = emitter.last_cell_error or {}
    cell_index = where.get("cell_index")
    ename, evalue = getattr(exc, "ename", "Error"), getattr(exc, "evalue", "")
    place = f"cell {cell_index}" if cell_index is not None else "a cell"
    return {
        "reason": "exception",
        "cell_index": cell_index,
        "cell_id": where.get("cell_id"),
        "ename": ename,
        "evalue": evalue,
        "traceback": list(getattr(exc, "traceback", []) or []),
        "message": f"{place} raised {ename}: {evalue}",
    }


def _alive(km: Any) -> bool:
    try:
        return bool(km.is_alive())
    except Exception:  # noqa: BLE001 - a manager that cannot say is treated as dead
        return False


def _forget(km: Any) -> None:
    """Let go of a dead kernel's manager (its connection file, ports), whatever state it is in."""
    try:
        km.shutdown_kernel(now=True)
    except Exception:  # noqa: BLE001, S110 - nothing is left to stop
        pass
