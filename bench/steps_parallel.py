"""Steps from tags: how much the DAG's parallelism saves, and what a 100 MB hand-off costs.

Runs on the embedded local backend (in this process, no server):
  1. a diamond notebook (a -> b, a -> c, b + c -> d; each step sleeps SLEEP seconds):
     wall time of the job (submit -> end) vs its critical path (3 x SLEEP: a, then b or c,
     then d; 1.0 would be no overhead at all) and vs the sum of its steps' times (1.0 means
     no parallelism; with b and c overlapping it approaches 3/4).
  2. two-step notebooks that hand a 100 MB NumPy array (resp. a tiny int) from the first
     step to the second: the difference of their wall times is the hand-off overhead.

    python bench/steps_parallel.py [--sleep 3] [--mb 100] [--skip-handoff] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from jupyter_ext.backends.local import LocalBackend
from jupyter_ext.models import JobSpec
from jupyter_ext.orchestrator import Orchestrator
from jupyter_ext.store import AsyncStore, Store
from jupyter_ext.views import job_view

KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def write(root: Path, name: str, cells: list[tuple[list[str], str]]) -> str:
    nb = new_notebook(metadata=KERNEL, cells=[new_code_cell(src, metadata={"tags": tags}) for tags, src in cells])
    nbformat.write(nb, root / name)
    return name


def seconds(start: str | None, end: str | None) -> float:
    assert start and end
    parse = datetime.fromisoformat
    return (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds()


async def run(orch: Orchestrator, store: AsyncStore, notebook: str) -> dict[str, Any]:
    job, _ = await orch.submit(JobSpec(notebook=notebook), "bench")
    await orch.wait(job["id"])
    view = job_view(await store.get_job(job["id"]))
    if view["status"] != "succeeded":
        raise RuntimeError(f"{notebook}: {view['status']}: {view['error']}")
    return view


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sleep", type=float, default=3.0)
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-handoff", action="store_true", help="only the diamond")
    parser.add_argument("--json", action="store_true", help="print one JSON object (for bench/table.py)")
    args = parser.parse_args()
    say = (lambda *a, **k: None) if args.json else print
    result: dict[str, Any] = {"sleep_s": args.sleep, "runs": args.runs}
    root = Path(tempfile.mkdtemp(prefix="bench-steps-"))
    store = AsyncStore(Store(root / "data" / "jobs.db"))
    orch = Orchestrator(
        store=store,
        backends={"local": LocalBackend(max_concurrent=4, gpus=[])},
        default_backend="local",
        root_dir=root,
        data_dir=root / "data",
    )
    await orch.start()
    try:
        diamond = write(
            root,
            "diamond.ipynb",
            [
                (["imports"], "import time"),
                (["step:a"], f"time.sleep({args.sleep})\nbase = 1"),
                (["step:b", "prev:a"], f"time.sleep({args.sleep})\nleft = base + 1"),
                (["step:c", "prev:a"], f"time.sleep({args.sleep})\nright = base + 2"),
                (["step:d", "prev:b", "prev:c"], f"time.sleep({args.sleep})\nprint(left + right)"),
            ],
        )
        ratios, walls, sums = [], [], []
        critical = 3 * args.sleep
        for _ in range(args.runs):
            t0 = time.time()
            job = await run(orch, store, diamond)
            wall = time.time() - t0
            total = sum(seconds(s["started"], s["finished"]) for s in job["steps"])
            walls.append(wall)
            sums.append(total)
            ratios.append(wall / total)
        result["diamond"] = {
            "wall_s": statistics.median(walls),
            "critical_path_s": critical,
            "wall_over_critical": statistics.median(walls) / critical,
            "sum_of_steps_s": statistics.median(sums),
            "wall_over_sum": statistics.median(ratios),
        }
        say(f"diamond (every step sleeps {args.sleep:g}s), {args.runs} runs:")
        say(f"  wall time (submit -> end) median {statistics.median(walls):.2f}s, critical path {critical:.2f}s")
        say(f"  wall / critical path: {statistics.median(walls) / critical:.2f} (1.00 = no overhead)")
        say(f"  wall / sum of step times ({statistics.median(sums):.2f}s): {statistics.median(ratios):.2f}")
        if args.skip_handoff:
            if args.json:
                print(json.dumps(result))
            return 0

        n = args.mb * 1024 * 1024 // 8
        big = write(
            root,
            "big.ipynb",
            [
                (["imports"], "import numpy as np"),
                (["step:make"], f"arr = np.ones({n}, dtype=np.float64)"),
                (["step:use", "prev:make"], "print(float(arr.sum()))"),
            ],
        )
        small = write(
            root,
            "small.ipynb",
            [
                (["imports"], "import numpy as np"),
                (["step:make"], f"arr = int(np.ones({n}, dtype=np.float64).sum())"),
                (["step:use", "prev:make"], "print(float(arr))"),
            ],
        )
        big_t, small_t = [], []
        for _ in range(args.runs):
            small_t.append(seconds(*(lambda j: (j["started"], j["finished"]))(await run(orch, store, small))))
            big_t.append(seconds(*(lambda j: (j["started"], j["finished"]))(await run(orch, store, big))))
        overhead = statistics.median(big_t) - statistics.median(small_t)
        result["handoff"] = {"mb": args.mb, "big_s": statistics.median(big_t), "small_s": statistics.median(small_t)}
        if args.json:
            print(json.dumps(result))
            return 0
        print(f"hand-off of a {args.mb} MB array between two steps, {args.runs} runs:")
        print(f"  job with the array {statistics.median(big_t):.2f}s, with an int {statistics.median(small_t):.2f}s")
        print(
            f"  overhead {overhead:.2f}s ({args.mb / overhead:.0f} MB/s save + load)"
            if overhead > 0
            else "  overhead below noise"
        )
    finally:
        await orch.stop()
        await store.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
