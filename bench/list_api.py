"""`GET /jupyter-ext/api/jobs` at scale: p50 / p95 with 1,000 and 10,000 jobs in the store.

For each size a fresh database is filled through the Store API (what the orchestrator writes:
a job row with its spec and parameters, 1-4 steps with their specs, a few events per job, every
job finished; one job in ten belongs to another user, one in five is a `%%remote` cell job whose
spec carries the cell's source), then a real `jupyter server` with jupyter-ext is started on it
(as bench/core_latency.py starts one) and the list is asked for REQUESTS times, one request at a
time, as the Lab panel asks for it (no arguments: the newest page), then with `?limit=20`. Then
every page is walked once through the `next` cursor: pages after the first are ones the server has
made nothing of yet (it remembers each job's JSON by the rows it came from, so a repeated page
mostly costs the reads).

    python bench/list_api.py [--sizes 1000,10000] [--requests 200] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from core_latency import JupyterServer, pct  # noqa: E402
from tornado.httpclient import AsyncHTTPClient  # noqa: E402

from jupyter_ext.models import JobSpec, Resources, StepSpec  # noqa: E402
from jupyter_ext.store import Store, new_job_id  # noqa: E402
from jupyter_ext.users import local_user  # noqa: E402

GOAL_MS = 50.0
CELL = "import numpy as np\nx = np.arange(1000)\ny = (x ** 2).sum()\nprint(y)\n" * 20


def fill(db: Path, count: int, owner: str, seed: int = 14) -> dict[str, int]:
    """`count` finished jobs, the newest last, written as the orchestrator writes them."""
    rng = random.Random(seed)
    store = Store(db)
    now = time.time() - count * 60
    mine = 0
    for i in range(count):
        user = owner if i % 10 else "someone-else"
        mine += user == owner
        job_id = new_job_id()
        cell_job = i % 5 == 0
        params = {"alpha": rng.random(), "epochs": rng.randint(1, 100), "dataset": f"s3://bucket/data/{i}.parquet"}
        if cell_job:
            spec = JobSpec.model_validate({"cell": {"source": CELL, "outputs": ["y"], "workdir": "work"}})
            names = ["cell"]
        else:
            spec = JobSpec(notebook=f"notebooks/train-{i % 37}.ipynb", parameters=params)
            names = ["prepare", "train", "evaluate", "report"][: rng.randint(1, 4)]
        steps = [
            {
                "name": name,
                "spec": StepSpec(
                    name=name,
                    after=names[:k][-1:],
                    resources=Resources(gpu=k % 2, memory="4Gi", cpu="2"),
                    cells=list(range(k * 6, k * 6 + 6)),
                    inputs=["frame"] if k else [],
                    outputs=["frame"],
                    timeout=3600.0,
                ).model_dump(),
            }
            for k, name in enumerate(names)
        ]
        created = now + i * 60
        store.create_job(
            {
                "id": job_id,
                "user": user,
                "name": "%%remote" if cell_job else f"train-{i % 37}",
                "notebook": "%%remote in work" if cell_job else spec.notebook,
                "backend": "local",
                "parameters": {} if cell_job else params,
                "spec": {**spec.model_dump(exclude={"cell": {"inputs"}}), "workdir": f"/data/jobs/{job_id}"},
                "created": created,
            },
            steps,
        )
        events: list[dict[str, Any]] = [{"type": "job.queued"}]
        for name in names:
            events += [
                {"type": "step.start", "step": name},
                {"type": "cell.start", "step": name, "cell": 0},
                {"type": "cell.output", "step": name, "output": {"output_type": "stream", "text": "ok\n"}},
                {"type": "cell.end", "step": name, "cell": 0},
                {"type": "step.end", "step": name, "status": "succeeded"},
            ]
        events.append({"type": "job.end", "status": "succeeded"})
        store.append_events(job_id, events)
        for k, name in enumerate(names):
            store.update_step(
                job_id, name, status="succeeded", attempt=1, started=created + k, finished=created + k + 1, exit_code=0
            )
        store.update_job(job_id, status="succeeded", started=created, finished=created + len(names) + 1)
    store.close()
    return {"jobs": count, "mine": mine}


async def measure(server: JupyterServer, requests: int, query: str = "") -> dict[str, Any]:
    http = AsyncHTTPClient()
    url = server.url(f"jupyter-ext/api/jobs{query}")
    for _ in range(5):  # warm: connection, the page cache
        await http.fetch(url, headers=server.headers)
    times = []
    size = shown = 0
    for _ in range(requests):
        t0 = time.perf_counter()
        resp = await http.fetch(url, headers=server.headers)
        times.append((time.perf_counter() - t0) * 1000)
        size, shown = len(resp.body), len(json.loads(resp.body)["jobs"])
    return {
        "p50_ms": pct(times, 0.5),
        "p95_ms": pct(times, 0.95),
        "max_ms": max(times),
        "requests": requests,
        "jobs_shown": shown,
        "bytes": size,
    }


async def walk(server: JupyterServer) -> dict[str, Any]:
    """Every page of 200, oldest last, each asked for once: pages the server has not made before
    (nothing of them remembered), as a client paging back through its history meets them."""
    http = AsyncHTTPClient()
    times = []
    before = None
    jobs = 0
    while True:
        url = server.url("jupyter-ext/api/jobs" + (f"?before={before}" if before else ""))
        t0 = time.perf_counter()
        resp = await http.fetch(url, headers=server.headers)
        times.append((time.perf_counter() - t0) * 1000)
        page = json.loads(resp.body)
        jobs += len(page["jobs"])
        before = page["next"]
        if before is None:
            break
    return {
        "p50_ms": pct(times, 0.5),
        "p95_ms": pct(times, 0.95),
        "max_ms": max(times),
        "pages": len(times),
        "jobs": jobs,
    }


async def run_size(count: int, requests: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bench-list-root-"))
    data = Path(tempfile.mkdtemp(prefix="bench-list-data-"))
    t0 = time.perf_counter()
    filled = fill(data / "jobs.db", count, local_user())
    fill_s = time.perf_counter() - t0
    env = {"JUPYTER_EXT_DATA_DIR": str(data)}
    server = JupyterServer(sys.executable, root, "jupyter_ext", env)
    try:
        await server.wait_ready("jupyter-ext/api/info")
        default = await measure(server, requests)
        small = await measure(server, requests, "?limit=20")
        first = await walk(server)  # the pages after the first: made for the first time
    finally:
        server.stop()
    return {**filled, "fill_s": fill_s, "default": default, "limit_20": small, "first_pages": first}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated job counts")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--json", action="store_true", help="print one JSON object (for bench/table.py)")
    args = parser.parse_args()
    results: dict[str, Any] = {"goal_p95_ms": GOAL_MS, "machine": f"{os.cpu_count()} cpus", "sizes": {}}
    for count in (int(s) for s in args.sizes.split(",")):
        print(f"filling a store with {count} jobs, then {args.requests} GET jobs...", file=sys.stderr)
        results["sizes"][str(count)] = await run_size(count, args.requests)
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"\n{'jobs in store':>13} {'query':>10} {'shown':>6} {'KiB':>6} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7}")
    for count, r in results["sizes"].items():
        for label, key in (("(default)", "default"), ("limit=20", "limit_20")):
            m = r[key]
            print(
                f"{count:>13} {label:>10} {m['jobs_shown']:>6} {m['bytes'] / 1024:6.0f} "
                f"{m['p50_ms']:7.1f} {m['p95_ms']:7.1f} {m['max_ms']:7.1f}"
            )
    for count, r in results["sizes"].items():
        w = r["first_pages"]
        print(
            f"{count:>13} every page once ({w['pages']} pages of 200, {w['jobs']} jobs): "
            f"p50 {w['p50_ms']:.1f} ms, p95 {w['p95_ms']:.1f} ms, max {w['max_ms']:.1f} ms"
        )
    worst = max(r["default"]["p95_ms"] for r in results["sizes"].values())
    print(f"\nworst p95 {worst:.1f} ms; goal <= {GOAL_MS:g} ms: {'met' if worst <= GOAL_MS else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
