"""Round trip of `%%remote --in x --out y` with `y = x + 1`, through a real kernel.

Cold: the first %%remote of a kernel (it opens its session and the warm runner pool).
Warm: the following ones, each followed by the same cell run in the kernel itself (the floor: a
kernel round trip). Also where the time goes, from the job's own event stamps.

    python bench/remote_latency.py [--runs 10] [--pause 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

from jupyter_client.manager import start_new_kernel


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--pause", type=float, default=2.0, help="idle seconds between warm runs (pool refill)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-remote-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_EXT_")}
    env["JUPYTER_EXT_DATA_DIR"] = os.path.join(tmp, "data")
    km, kc = start_new_kernel(kernel_name="python3", cwd=tmp, env=env)
    try:

        def run(code: str) -> float:
            t0 = time.perf_counter()
            reply = kc.execute_interactive(code, timeout=120, output_hook=lambda msg: None)
            if reply["content"]["status"] != "ok":
                raise RuntimeError(reply["content"])
            return time.perf_counter() - t0

        run("%load_ext jupyter_ext\nx = 41")
        cell = "%%remote --in x --out y\ny = x + 1"
        cold = run(cell)
        warm, here = [], []
        for _ in range(args.runs):
            time.sleep(args.pause)
            warm.append(run(cell))
            here.append(run("y = x + 1"))  # the peer: the same cell in this kernel, same round trip
        out: list[str] = []
        kc.execute_interactive(
            "import json\n_h = get_ipython().find_cell_magic('remote').__self__.jobs[-1]\n"
            "print(json.dumps([[e['type'], e['ts'], e.get('cell_index')] for e in _h.events]))",
            output_hook=lambda m: out.append(m["content"].get("text", "")) if m["msg_type"] == "stream" else None,
        )
        events = json.loads("".join(out))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    t0 = events[0][1]
    if args.json:
        print(
            json.dumps(
                {
                    "runs": args.runs,
                    "cold_s": cold,
                    "warm": summary(warm),
                    "in_kernel": summary(here),
                    "last_run": [{"type": kind, "at_s": ts - t0, "cell_index": idx} for kind, ts, idx in events],
                },
                indent=2,
            )
        )
        return 0
    print(f"%%remote --in x --out y (y = x + 1), local backend, {args.runs} warm runs:")
    print(f"  cold (first in the kernel): {cold:.3f}s")
    print(f"  warm median {statistics.median(warm):.3f}s, min {min(warm):.3f}s, max {max(warm):.3f}s (goal <= 0.15s)")
    print(
        f"  the same cell run in the kernel itself: median {statistics.median(here):.4f}s; "
        f"%%remote adds {statistics.median(warm) - statistics.median(here):.3f}s"
    )
    print("  where the last warm run's time went (seconds after job.queued):")
    for kind, ts, idx in events:
        if kind in ("job.start", "step.start", "cell.start", "cell.end", "artifact", "step.end", "job.end"):
            print(f"    {ts - t0:6.3f}  {kind}{'' if idx is None else f' (cell {idx})'}")
    return 0


def summary(times: list[float]) -> dict[str, float]:
    return {"median": statistics.median(times), "min": min(times), "max": max(times)}


if __name__ == "__main__":
    sys.exit(main())
