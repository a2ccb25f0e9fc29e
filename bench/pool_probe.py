"""The local backend's warm pool: chain gaps, bursts, and what the pool costs in memory.

Runs on the embedded local backend (in this process, no server), trivial one-cell steps:
  1. chain: a 3-step chain (a -> b -> c, a variable handed down each time); the gap between a
     step's `step.end` and the next step's first `cell.start` (runner clocks, same machine).
     The pool is let fill between runs, so this is the idle-machine gap.
  2. burst: N trivial one-step jobs submitted at once; makespan from the first submit to the
     last job's end (the concurrency limit is the backend's, see --max-concurrent).
  3. memory: resident memory of the ready standby runners and their kernels, and of this process.

    python bench/pool_probe.py [--runs 3] [--burst 10] [--warm-pool N] [--max-concurrent N] [--json]

`--warm-pool` left out uses the backend's default. `--json` prints one JSON object (for the bench
table) instead of text. The before of issue 14, against the last commit's package in the same run:
    mkdir /tmp/before && git archive HEAD jupyter_ext | tar -x -C /tmp/before
    cp jupyter_ext/_version.py /tmp/before/jupyter_ext/
    PYTHONPATH=/tmp/before python bench/pool_probe.py --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_notebook
from procs import rss_tree  # bench/procs.py, beside this script

from jupyter_ext.backends.local import LocalBackend
from jupyter_ext.models import JobSpec
from jupyter_ext.orchestrator import Orchestrator
from jupyter_ext.store import AsyncStore, Store

KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def write(root: Path, name: str, cells: list[tuple[list[str], str]]) -> str:
    nb = new_notebook(metadata=KERNEL, cells=[new_code_cell(src, metadata={"tags": tags}) for tags, src in cells])
    nbformat.write(nb, root / name)
    return name


def pool_pids(backend: LocalBackend) -> list[int]:
    pool = backend._pool  # noqa: SLF001 - a probe looks inside
    with pool.lock:
        return [p.pid for p in pool.procs if p.poll() is None]


async def pool_full(backend: LocalBackend, timeout: float = 120) -> int:
    """Wait until the pool holds its target of runners that are ready (kernel started)."""
    pool = backend._pool  # noqa: SLF001
    ready = getattr(pool, "ready_count", None)
    target = getattr(pool, "target", lambda: pool.size)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = ready() if ready else len(pool_pids(backend))
        if n >= target():
            break
        await asyncio.sleep(0.1)
    if ready is None:
        await asyncio.sleep(6)  # the old pool does not say when its runners are warm
    return len(pool_pids(backend))


async def finish(orch: Orchestrator, store: AsyncStore, job_id: str) -> list[dict[str, Any]]:
    await orch.wait(job_id)
    job = await store.get_job(job_id)
    if job["status"] != "succeeded":
        raise RuntimeError(f"job {job_id}: {job['status']}: {job['error']}")
    return await store.events(job_id)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="chains to run (default 3)")
    parser.add_argument("--burst", type=int, default=10, help="jobs submitted at once (default 10)")
    parser.add_argument("--warm-pool", type=int, default=None, help="explicit pool size (default: the backend's)")
    parser.add_argument("--max-concurrent", type=int, default=None, help="(default: the backend's)")
    parser.add_argument(
        "--single",
        action="store_true",
        help="a pool of one runner that does not grow for coming steps (the pool before issue 14, on today's runner)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-pool-"))
    options: dict[str, Any] = {"gpus": []}
    if args.warm_pool is not None:
        options["warm_pool"] = args.warm_pool
    if args.max_concurrent is not None:
        options["max_concurrent"] = args.max_concurrent
    if args.single:
        options["warm_pool"] = 1
    backend = LocalBackend(**options)
    if args.single:
        backend.expect_steps = None  # type: ignore[assignment,method-assign]  # the orchestrator's hint is skipped
    store = AsyncStore(Store(root / "data" / "jobs.db"))
    orch = Orchestrator(
        store=store, backends={"local": backend}, default_backend="local", root_dir=root, data_dir=root / "data"
    )
    result: dict[str, Any] = {
        "max_concurrent": backend.max_concurrent,
        "warm_pool": backend.warm_pool,
        "single": args.single,
    }
    await orch.start()
    try:
        ready = await pool_full(backend)
        pids = pool_pids(backend)
        result["pool_ready"] = ready
        result["pool_rss_bytes"] = sum(rss_tree(p) for p in pids)
        result["server_rss_bytes"] = rss_tree(os.getpid()) - result["pool_rss_bytes"]

        chain = write(
            root,
            "chain.ipynb",
            [(["step:a"], "x = 1"), (["step:b", "prev:a"], "y = x + 1"), (["step:c", "prev:b"], "print(y + 1)")],
        )
        gaps: list[float] = []
        starts: list[float] = []  # step end -> the next step's runner says step.start (server + backend share)
        walls: list[float] = []
        for _ in range(args.runs):
            await pool_full(backend)
            t0 = time.time()
            job, _ = await orch.submit(JobSpec(notebook=chain), "bench")
            events = await finish(orch, store, job["id"])
            walls.append(time.time() - t0)
            ends = {e["step"]: float(e["ts"]) for e in events if e["type"] == "step.end"}
            begun = {e["step"]: float(e["ts"]) for e in events if e["type"] == "step.start"}
            starts += [begun["b"] - ends["a"], begun["c"] - ends["b"]]
            first: dict[str, float] = {}
            for e in events:
                if e["type"] == "cell.start":
                    first.setdefault(e["step"], float(e["ts"]))
            gaps += [first["b"] - ends["a"], first["c"] - ends["b"]]
        result["chain_gap_s"] = {"median": statistics.median(gaps), "max": max(gaps), "all": gaps}
        result["chain_start_gap_s"] = {"median": statistics.median(starts), "max": max(starts)}
        result["chain_wall_s"] = statistics.median(walls)

        one = write(root, "one.ipynb", [([], "print(1)")])
        await pool_full(backend)
        t0 = time.monotonic()
        jobs = [(await orch.submit(JobSpec(notebook=one), "bench"))[0]["id"] for _ in range(args.burst)]
        await asyncio.gather(*(finish(orch, store, j) for j in jobs))
        result["burst"] = {"jobs": args.burst, "makespan_s": time.monotonic() - t0}
    finally:
        await orch.stop()
        await store.close()
    if args.json:
        print(json.dumps(result))
        return 0
    mib = 1024 * 1024
    print(f"local backend: max_concurrent {result['max_concurrent']}, warm_pool {result['warm_pool']}")
    print(
        f"  pool: {result['pool_ready']} ready runner(s), {result['pool_rss_bytes'] / mib:.0f} MiB resident "
        f"(server process {result['server_rss_bytes'] / mib:.0f} MiB)"
    )
    gap = result["chain_gap_s"]
    print(
        f"  chain of 3, {args.runs} runs: gap step end -> next first cell median {gap['median']:.3f}s, "
        f"max {gap['max']:.3f}s (of which to the runner's step.start: median "
        f"{result['chain_start_gap_s']['median']:.3f}s); chain wall median {result['chain_wall_s']:.2f}s"
    )
    print(f"  {args.burst} jobs at once: makespan {result['burst']['makespan_s']:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
