"""End-to-end latency of a trivial notebook job: raw papermill vs jupyter-scheduler vs jupyter-ext.

All three are measured in the same run on the same machine:
  papermill      `python -m papermill in.ipynb out.ipynb -k python3` (a fresh process each time)
  scheduler      jupyter-scheduler's REST API (POST /scheduler/jobs, then GET until COMPLETED,
                 polling every 50 ms as a client must: it has no push channel), installed by this
                 script into its own virtual environment under ~/.cache/jupyter-ext/bench/
  jupyter-ext    our REST API (POST /jupyter-ext/api/jobs, then the WebSocket until job.end)
plus the print-to-client latency of jupyter-ext's live stream (a cell prints its own clock;
the WebSocket client subtracts it from the arrival time): p50 / p95; bursts (`--burst 10,100`:
that many jobs submitted at once to each server, makespan from the first submit to the last
end); and the resident memory of each server with everything it started (jupyter-ext's warm
runner pool apart), idle after the runs.

    python bench/core_latency.py [--runs 5] [--burst 10,100] [--skip-scheduler] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_notebook
from procs import rss_by_pid  # bench/procs.py, beside this script
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

PAUSE = 3.0
SCHEDULER_SPEC = "jupyter-scheduler>=2.7,<3"
CACHE = Path(os.environ.get("JUPYTER_EXT_CACHE", Path.home() / ".cache" / "jupyter-ext")) / "bench"
TOKEN = "bench-token"
KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}

#: Seconds one jupyter-scheduler job may take before the bench gives up on it (it has no push channel:
#: a job whose process died is polled for ever otherwise).
JOB_LIMIT = 600.0


def write_notebooks(root: Path) -> None:
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1 + 1\nprint(x)")], metadata=KERNEL), root / "trivial.ipynb")
    printer = "import time\nfor i in range(40):\n    print(f'T {time.time():.6f}', flush=True)\n    time.sleep(0.05)"
    nbformat.write(new_notebook(cells=[new_code_cell(printer)], metadata=KERNEL), root / "printer.ipynb")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class JupyterServer:
    """A `jupyter server` process from a given interpreter with one extension enabled."""

    def __init__(self, python: str, root: Path, extension: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [
            python,
            "-m",
            "jupyter_server",
            "--no-browser",
            f"--port={self.port}",
            "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={TOKEN}",
            f"--ServerApp.root_dir={root}",
            f"--ServerApp.jpserver_extensions={{'{extension}': True}}",
        ]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        self.log = open(root / f"{extension}.log", "wb")  # noqa: SIM115 - closed in stop()
        # Each server gets only its own interpreter's packages (no PYTHONPATH from the caller).
        base_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" or extension == "jupyter_ext"}
        self.proc = subprocess.Popen(cmd, env={**base_env, **env}, stdout=self.log, stderr=subprocess.STDOUT)  # noqa: S603

    async def wait_ready(self, path: str) -> None:
        http = AsyncHTTPClient()
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                await http.fetch(self.url(path), headers=self.headers)
                return
            except Exception:  # noqa: BLE001 - not up yet
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited; see {self.log.name}") from None
                await asyncio.sleep(0.2)
        raise RuntimeError("server did not start")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {TOKEN}", "Content-Type": "application/json"}

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def time_papermill(root: Path, runs: int) -> list[float]:
    times = []
    for i in range(runs + 1):
        time.sleep(PAUSE)
        t0 = time.perf_counter()
        subprocess.run(  # noqa: S603 - fixed argv
            [
                sys.executable,
                "-m",
                "papermill",
                str(root / "trivial.ipynb"),
                str(root / f"pm-{i}.ipynb"),
                "-k",
                "python3",
                "--no-progress-bar",
            ],
            check=True,
            capture_output=True,
        )
        if i:  # the first run warms the disk cache for everyone
            times.append(time.perf_counter() - t0)
    return times


async def ext_job(server: JupyterServer, notebook: str, on_event: Any = None) -> float:
    http = AsyncHTTPClient()
    t0 = time.perf_counter()
    resp = await http.fetch(
        server.url("jupyter-ext/api/jobs"),
        method="POST",
        headers=server.headers,
        body=json.dumps({"notebook": notebook}),
    )
    job = json.loads(resp.body)
    ws_url = server.url(f"jupyter-ext/api/jobs/{job['id']}/events/stream").replace("http", "ws", 1)
    conn = await websocket_connect(
        HTTPRequest(ws_url, headers=server.headers, connect_timeout=900, request_timeout=900)
    )
    status = None
    while True:
        message = await conn.read_message()
        if message is None:
            break
        event = json.loads(message)
        if on_event is not None:
            on_event(event, time.time())
        if event["type"] == "job.end":
            status = event["status"]
            break
    elapsed = time.perf_counter() - t0
    conn.close()
    if status != "succeeded":
        raise RuntimeError(f"jupyter-ext job {job['id']} ended {status}")
    return elapsed


async def time_ext(root: Path, runs: int, bursts: list[int], extra: dict[str, Any]) -> tuple[list[float], list[float]]:
    data = Path(tempfile.mkdtemp(prefix="bench-ext-data-"))
    server = JupyterServer(sys.executable, root, "jupyter_ext", {"JUPYTER_EXT_DATA_DIR": str(data)})
    try:
        await server.wait_ready("jupyter-ext/api/info")
        await asyncio.sleep(PAUSE)
        extra["memory_idle_start"] = memory(server)
        times = []
        for i in range(runs + 1):
            await asyncio.sleep(PAUSE)
            t = await ext_job(server, "trivial.ipynb")
            if i:
                times.append(t)
        latencies: list[float] = []

        def on_event(event: dict[str, Any], arrived: float) -> None:
            out = event.get("output") or {}
            if event["type"] == "cell.output" and out.get("output_type") == "stream":
                for line in out["text"].splitlines():
                    if line.startswith("T "):
                        latencies.append(arrived - float(line[2:]))

        await asyncio.sleep(PAUSE)
        await ext_job(server, "printer.ipynb", on_event)
        await asyncio.sleep(PAUSE)
        extra["memory"] = memory(server)
        for count in bursts:
            await asyncio.sleep(PAUSE)
            try:
                extra[f"burst_{count}"] = await ext_burst(server, count)
            except Exception as exc:  # noqa: BLE001 - recorded; the other measures still count
                extra[f"burst_{count}_error"] = repr(exc)[:300]
        return times, latencies
    finally:
        server.stop()


def scheduler_python() -> str:
    venv = CACHE / "scheduler-venv"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if not stamp.exists() or stamp.read_text() != SCHEDULER_SPEC:
        print(f"installing {SCHEDULER_SPEC} into {venv} (once)...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)  # noqa: S603
        subprocess.run([str(python), "-m", "pip", "install", "-q", SCHEDULER_SPEC, "ipykernel"], check=True)  # noqa: S603
        stamp.write_text(SCHEDULER_SPEC)
    return str(python)


async def time_scheduler(root: Path, runs: int, bursts: list[int], extra: dict[str, Any]) -> list[float]:
    python = scheduler_python()
    home = Path(tempfile.mkdtemp(prefix="bench-scheduler-"))
    env = {"JUPYTER_DATA_DIR": str(home / "data"), "JUPYTER_RUNTIME_DIR": str(home / "runtime")}
    for folder in env.values():
        Path(folder).mkdir(parents=True, exist_ok=True)
    server = JupyterServer(python, root, "jupyter_scheduler", env)
    http = AsyncHTTPClient()
    try:
        await server.wait_ready("scheduler/jobs")
        times = []
        for i in range(runs + 1):
            body = {
                "input_uri": "trivial.ipynb",
                "name": f"bench-{i}",
                "runtime_environment_name": "python3",
                "output_formats": ["ipynb"],
            }
            t0 = time.perf_counter()
            resp = await http.fetch(
                server.url("scheduler/jobs"), method="POST", headers=server.headers, body=json.dumps(body)
            )
            job_id = json.loads(resp.body)["job_id"]
            seen_running = False
            give_up = time.monotonic() + JOB_LIMIT
            while True:
                if time.monotonic() > give_up:  # a job whose process died stays STOPPED for ever
                    raise RuntimeError(f"jupyter-scheduler job {job_id} did not end within {JOB_LIMIT:.0f} s")
                job = json.loads(
                    (await http.fetch(server.url(f"scheduler/jobs/{job_id}"), headers=server.headers)).body
                )
                # A new job reads STOPPED until its process marks it IN_PROGRESS; only later is STOPPED final.
                seen_running |= job["status"] == "IN_PROGRESS"
                if job["status"] in ("COMPLETED", "FAILED") or (job["status"] == "STOPPED" and seen_running):
                    break
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - t0
            if job["status"] != "COMPLETED":
                raise RuntimeError(f"jupyter-scheduler job ended {job['status']}: {job.get('status_message')}")
            if i:
                times.append(elapsed)
        await asyncio.sleep(PAUSE)
        extra["memory"] = memory(server)
        for count in bursts:
            await asyncio.sleep(PAUSE)
            try:
                extra[f"burst_{count}"] = await scheduler_burst(server, count, str(count))
            except Exception as exc:  # noqa: BLE001 - recorded; the other measures still count
                extra[f"burst_{count}_error"] = repr(exc)[:300]
        return times
    finally:
        server.stop()


def memory(server: JupyterServer) -> dict[str, int]:
    """The server process's resident bytes, and all its descendants' (the warm pool: standby
    runners and their kernels, plus anything else it keeps running)."""
    tree = rss_by_pid(server.proc.pid)
    own = tree.pop(server.proc.pid, 0)
    return {"server_rss_bytes": own, "children_rss_bytes": sum(tree.values()), "children": len(tree)}


async def ext_burst(server: JupyterServer, count: int) -> float:
    """`count` jobs submitted at once; seconds from the first submit to the last job's end."""
    t0 = time.perf_counter()
    await asyncio.gather(*(ext_job(server, "trivial.ipynb") for _ in range(count)))
    return time.perf_counter() - t0


async def scheduler_job(server: JupyterServer, name: str) -> None:
    http = AsyncHTTPClient()
    body = {
        "input_uri": "trivial.ipynb",
        "name": name,
        "runtime_environment_name": "python3",
        "output_formats": ["ipynb"],
    }
    resp = await http.fetch(server.url("scheduler/jobs"), method="POST", headers=server.headers, body=json.dumps(body))
    job_id = json.loads(resp.body)["job_id"]
    seen_running = False
    give_up = time.monotonic() + JOB_LIMIT
    while True:
        if time.monotonic() > give_up:  # a job whose process died stays STOPPED/IN_PROGRESS for ever
            raise RuntimeError(f"jupyter-scheduler job {job_id} did not end within {JOB_LIMIT:.0f} s")
        job = json.loads((await http.fetch(server.url(f"scheduler/jobs/{job_id}"), headers=server.headers)).body)
        # A new job reads STOPPED until its process marks it IN_PROGRESS; only later is STOPPED final.
        seen_running |= job["status"] == "IN_PROGRESS"
        if job["status"] in ("COMPLETED", "FAILED") or (job["status"] == "STOPPED" and seen_running):
            break
        await asyncio.sleep(0.05)
    if job["status"] != "COMPLETED":
        raise RuntimeError(f"jupyter-scheduler job ended {job['status']}: {job.get('status_message')}")


async def scheduler_burst(server: JupyterServer, count: int, tag: str) -> float:
    t0 = time.perf_counter()
    await asyncio.gather(*(scheduler_job(server, f"burst-{tag}-{i}") for i in range(count)))
    return time.perf_counter() - t0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-scheduler", action="store_true")
    parser.add_argument("--burst", default="10", help="comma-separated sizes of bursts (jobs at once); '' for none")
    parser.add_argument("--json", action="store_true", help="print one JSON object (for bench/table.py)")
    parser.add_argument(
        "--pause",
        type=float,
        default=3.0,
        help="idle seconds before each timed job, for every system alike (a user does not submit "
        "back to back; it lets jupyter-ext's warm runner pool refill, which is what users meet)",
    )
    args = parser.parse_args()
    # A burst's polls must not queue in the client, nor a request to a server busy with 100 jobs time out.
    AsyncHTTPClient.configure(None, max_clients=1000, defaults={"connect_timeout": 900, "request_timeout": 900})
    global PAUSE
    PAUSE = args.pause
    root = Path(tempfile.mkdtemp(prefix="bench-root-"))
    write_notebooks(root)
    results: dict[str, Any] = {"runs": args.runs, "machine": f"{os.cpu_count()} cpus"}
    print(
        f"timing {args.runs} runs each (after one warm-up run) of a one-cell notebook, "
        f"{args.pause:g} s idle before each...",
        file=sys.stderr,
    )
    results["papermill"] = time_papermill(root, args.runs)
    bursts = [int(b) for b in args.burst.split(",") if b.strip()]
    results["extra"] = {"jupyter-ext": {}, "jupyter-scheduler": {}}
    results["jupyter-ext"], latencies = await time_ext(root, args.runs, bursts, results["extra"]["jupyter-ext"])
    if not args.skip_scheduler:
        results["jupyter-scheduler"] = await time_scheduler(
            root, args.runs, bursts, results["extra"]["jupyter-scheduler"]
        )
    if latencies:
        results["print_to_ws_ms"] = {"p50": pct(latencies, 0.5) * 1000, "p95": pct(latencies, 0.95) * 1000}
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"\n{'system':20} {'median s':>9} {'min s':>7} {'max s':>7}")
    for name in ("papermill", "jupyter-scheduler", "jupyter-ext"):
        if name in results:
            t = results[name]
            print(f"{name:20} {statistics.median(t):9.3f} {min(t):7.3f} {max(t):7.3f}")
    ours = statistics.median(results["jupyter-ext"])
    print()
    for peer in ("papermill", "jupyter-scheduler"):
        if peer in results:
            print(f"jupyter-ext / {peer}: {ours / statistics.median(results[peer]):.2f}x")
    if latencies:
        p50, p95 = pct(latencies, 0.5) * 1000, pct(latencies, 0.95) * 1000
        print(f"print-to-WebSocket latency over {len(latencies)} lines: p50 {p50:.1f} ms, p95 {p95:.1f} ms")
        results["print_to_ws_ms"] = {"p50": p50, "p95": p95, "n": len(latencies)}
    for count in bursts:
        line = [f"{count} jobs at once, makespan:"]
        for name in ("jupyter-scheduler", "jupyter-ext"):
            if f"burst_{count}" in results["extra"][name]:
                line.append(f"{name} {results['extra'][name][f'burst_{count}']:.2f} s")
        print(" ".join(line))
    for name in ("jupyter-scheduler", "jupyter-ext"):
        if "memory" in results["extra"][name]:
            m = results["extra"][name]["memory"]
            print(
                f"{name} resident: server {m['server_rss_bytes'] / 2**20:.0f} MiB, "
                f"{m['children']} child processes {m['children_rss_bytes'] / 2**20:.0f} MiB"
            )
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"core_latency-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
