"""Issue 14's table in one run: every row measured now, peers (jupyter-scheduler, raw papermill)
in the same run, with the ratio and the goal, printed as one Markdown table.

Each part is a bench script run in its own process with `--json`, one after the other (never two
at once: they would time each other):
  core_latency.py    one job submit -> end, and bursts of 10 and 100 trivial jobs at once, on
                     jupyter-scheduler and jupyter-ext (real `jupyter server`s); raw papermill;
                     each server's resident memory, idle after its runs
  cli_latency.py     `jupyter-ext ls` without a server; `run --local` vs raw papermill
  remote_latency.py  `%%remote --in x --out y`, warm
  pool_probe.py      the gap between a step's end and the next step's first cell (chain); the
                     warm pool's resident memory
  steps_parallel.py  a diamond of 3 s steps: wall time vs its critical path
  list_api.py        GET jobs p95 with 1,000 and 10,000 jobs in the store

    python bench/table.py [--quick] [--json FILE]

`--quick`: fewer runs, no 100-job burst, 50 list requests (a few minutes instead of ~20). A part
that fails is shown as failed in its rows (with its last words on stderr); the others still run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MIB = 2**20


def run_part(script: str, *args: str, timeout: float = 3600) -> dict[str, Any]:
    """One bench script's `--json` answer (its progress goes to our stderr); {"error": ...} if it failed.
    A script without `--json` yet is run without it and its text kept as {"text": ...}."""
    argv = [sys.executable, str(HERE / script), *args]
    print(f"\n== {script} {' '.join(args)}", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    for attempt in ("--json", None):
        full = [*argv, attempt] if attempt else argv
        try:
            done = subprocess.run(full, capture_output=True, text=True, timeout=timeout)  # noqa: S603
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        sys.stderr.write(done.stderr[-4000:])
        if attempt and done.returncode == 2 and "unrecognized arguments: --json" in done.stderr:
            continue
        print(f"   ({time.monotonic() - t0:.0f} s)", file=sys.stderr, flush=True)
        if done.returncode != 0:
            return {"error": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"}
        if attempt is None:
            return {"text": done.stdout}
        for text in (done.stdout, *done.stdout.strip().splitlines()[-1:]):  # all of it, else its last line
            try:
                return dict(json.loads(text))
            except ValueError:
                continue
        return {"error": f"no JSON in its output: {done.stdout[-300:]!r}"}
    return {"error": "unreachable"}


def dig(data: dict[str, Any], *path: str | int) -> Any:
    """data[path[0]][path[1]]..., None where anything is missing."""
    for key in path:
        if isinstance(data, dict) and key in data:
            data = data[key]
        elif isinstance(data, list) and isinstance(key, int) and -len(data) <= key < len(data):
            data = data[key]
        else:
            return None
    return data


def median(values: Any) -> float | None:
    return statistics.median(values) if isinstance(values, list) and values else None


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 0.01:
        return f"{value * 1000:.1f} ms"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def ratio(ours: float | None, peer: float | None) -> float | None:
    return ours / peer if ours is not None and peer else None


def times(ours: float | None, peer: float | None) -> str:
    r = ratio(ours, peer)
    return "-" if r is None else f"{r:.2f}x"


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, ...]] = []

    def add(
        self,
        measure: str,
        scheduler: str,
        papermill: str,
        ours: str,
        against: float | None,
        goal: str,
        met: bool | None,
        note: str = "",
    ) -> None:
        shown = "-" if against is None else f"{against:.2f}x"
        verdict = {True: "yes", False: "**no**", None: "-"}[met]
        self.rows.append((measure, scheduler, papermill, ours, shown, goal, verdict, note))

    def markdown(self) -> str:
        head = (
            "measure",
            "jupyter-scheduler",
            "raw papermill",
            "jupyter-ext",
            "ratio",
            "goal",
            "met",
            "what was measured",
        )
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


def failed(part: dict[str, Any]) -> str:
    return f"failed: {part['error']}" if "error" in part else ""


def build(parts: dict[str, dict[str, Any]], quick: bool) -> Table:  # noqa: PLR0915 - one row after the other
    t = Table()
    core, cli, remote, pool, diamond, lists = (
        parts.get(k, {"error": "not run"}) for k in ("core", "cli", "remote", "pool", "diamond", "list")
    )
    at_most: Callable[[float | None, float], bool | None] = lambda v, goal: None if v is None else v <= goal  # noqa: E731

    pm = median(core.get("papermill"))
    sched, ours = median(core.get("jupyter-scheduler")), median(core.get("jupyter-ext"))
    r = ratio(ours, sched)
    t.add(
        "one job, back-to-back, submit -> end",
        seconds(sched),
        seconds(pm),
        seconds(ours),
        r,
        "<= 0.10x",
        at_most(r, 0.10),
        failed(core) or f"median of {core.get('runs')} after a warm-up, {core.get('pause', 3):g} s idle before each",
    )
    for count, goal in ((10, 0.33), (100, 0.33)):
        s = dig(core, "extra", "jupyter-scheduler", f"burst_{count}")
        o = dig(core, "extra", "jupyter-ext", f"burst_{count}")
        r = ratio(o, s)
        errors = [
            f"{name}: {dig(core, 'extra', name, f'burst_{count}_error')}"
            for name in ("jupyter-scheduler", "jupyter-ext")
            if dig(core, "extra", name, f"burst_{count}_error")
        ]
        note = (
            failed(core)
            or ("failed: " + "; ".join(errors) if errors else "")
            or (
                "skipped (--quick)"
                if quick and count == 100
                else "makespan: first submit -> last job's end; trivial one-cell notebook"
            )
        )
        t.add(
            f"{count} jobs submitted at once, makespan",
            seconds(s),
            "-",
            seconds(o),
            r,
            f"<= {goal}x",
            at_most(r, goal),
            note,
        )

    res = cli.get("results", {})
    ls, floor = dig(res, "jupyter-ext ls", "median"), dig(res, "python -c pass", "median")
    t.add(
        "`jupyter-ext ls` (no server)",
        "-",
        "-",
        seconds(ls),
        ratio(ls, floor),
        "<= 0.3 s",
        at_most(ls, 0.3),
        failed(cli) or f"median; ratio against `python -c pass` ({seconds(floor)})",
    )
    local, raw = dig(res, "jupyter-ext run --local", "median"), dig(res, "python -m papermill", "median")
    cold = dig(res, "jupyter-ext run --local, cold", "median")
    r = ratio(local, raw)
    t.add(
        "`jupyter-ext run --local` vs raw papermill",
        "-",
        seconds(raw),
        seconds(local),
        r,
        "<= 0.5x",
        at_most(r, 0.5),
        failed(cli)
        or "trivial notebook, interleaved runs, medians; the second of two commands in a row (the first left "
        f"a runner ready, `keep_warm`); without it (`JUPYTER_EXT_KEEP_WARM=0`): {seconds(cold)}, {times(cold, raw)}",
    )

    warm = dig(remote, "warm", "median") or dig(remote, "warm_median_s")
    if warm is None and "text" in remote:
        found = re.search(r"warm median ([0-9.]+)s", remote["text"])
        warm = float(found.group(1)) if found else None
    t.add(
        "`%%remote --in x --out y`, warm",
        "-",
        "-",
        seconds(warm),
        None,
        "<= 0.15 s",
        at_most(warm, 0.15),
        failed(remote)
        or (
            f"median round trip in a real kernel, local backend; the same cell run in the kernel itself: "
            f"{seconds(dig(remote, 'in_kernel', 'median'))}"
        ),
    )

    gap = dig(pool, "chain_gap_s", "median")
    t.add(
        "gap: a step's end -> the next step's first cell (chain)",
        "-",
        "-",
        seconds(gap),
        None,
        "<= 0.2 s idle",
        at_most(gap, 0.2),
        failed(pool) or f"median over a 3-step chain (max {seconds(dig(pool, 'chain_gap_s', 'max'))}), pool refilled",
    )

    d = diamond.get("diamond", {})
    r = d.get("wall_over_critical")
    t.add(
        "diamond of 3 s steps: wall vs critical path",
        "-",
        "-",
        seconds(d.get("wall_s")),
        r,
        "<= 1.1x",
        at_most(r, 1.1),
        failed(diamond)
        or f"submit -> end vs {seconds(d.get('critical_path_s'))}; wall / sum of steps {d.get('wall_over_sum', 0):.2f}",
    )

    def size_of(size: str) -> Any:
        return dig(lists, "sizes", size, "default", "bytes")

    for size in ("1000", "10000"):
        p95 = dig(lists, "sizes", size, "default", "p95_ms")
        p50 = dig(lists, "sizes", size, "default", "p50_ms")
        t.add(
            f"GET jobs p95, {int(size):,} jobs in the store",
            "-",
            "-",
            "-" if p95 is None else f"{p95:.1f} ms",
            None,
            "<= 50 ms",
            at_most(p95, 50.0),
            failed(lists) or f"newest page (200 jobs, {size_of(size) or 0:,} bytes), p50 {p50 or 0:.1f} ms",
        )

    def mib(value: Any) -> str:
        return "-" if value is None else f"{value / MIB:.0f} MiB"

    t.add(
        "server resident memory, idle after the runs",
        mib(dig(core, "extra", "jupyter-scheduler", "memory", "server_rss_bytes")),
        "-",
        mib(dig(core, "extra", "jupyter-ext", "memory", "server_rss_bytes")),
        ratio(
            dig(core, "extra", "jupyter-ext", "memory", "server_rss_bytes"),
            dig(core, "extra", "jupyter-scheduler", "memory", "server_rss_bytes"),
        ),
        "report",
        None,
        failed(core) or "the `jupyter server` process itself",
    )
    t.add(
        "warm pool resident memory",
        mib(dig(core, "extra", "jupyter-scheduler", "memory", "children_rss_bytes")),
        "-",
        mib(dig(core, "extra", "jupyter-ext", "memory", "children_rss_bytes")),
        None,
        "report",
        None,
        failed(core)
        or (
            f"the server's child processes ({dig(core, 'extra', 'jupyter-ext', 'memory', 'children')}: standby "
            f"runners and kernels); pool_probe: {dig(pool, 'pool_ready')} ready, {mib(dig(pool, 'pool_rss_bytes'))}"
        ),
    )
    return t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run (a few minutes)")
    parser.add_argument("--json", metavar="FILE", help="also write every part's raw answer to FILE")
    parser.add_argument("--skip-scheduler", action="store_true", help="no jupyter-scheduler (it installs once)")
    args = parser.parse_args()
    q = args.quick
    runs = "2" if q else "5"
    started = time.time()
    parts: dict[str, dict[str, Any]] = {}
    core = ["--runs", runs, "--burst", "10" if q else "10,100", "--pause", "2" if q else "3"]
    parts["core"] = run_part("core_latency.py", *core, *(["--skip-scheduler"] if args.skip_scheduler else []))
    parts["core"].setdefault("pause", 2.0 if q else 3.0)
    parts["cli"] = run_part("cli_latency.py", "--runs", "3" if q else "7")
    parts["remote"] = run_part("remote_latency.py", "--runs", "5" if q else "10")
    parts["pool"] = run_part("pool_probe.py", "--runs", "2" if q else "3")
    parts["diamond"] = run_part("steps_parallel.py", "--skip-handoff", "--sleep", "3", "--runs", "2" if q else "3")
    parts["list"] = run_part("list_api.py", "--requests", "50" if q else "200")
    table = build(parts, q)
    took = time.time() - started
    print(
        f"\nissue 14's table, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}, {os.cpu_count()} cpus, "
        f"{'--quick, ' if q else ''}{took / 60:.0f} min; ratio: jupyter-ext / the peer in the same run\n"
    )
    print(table.markdown())
    if args.json:
        Path(args.json).write_text(json.dumps(parts, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
