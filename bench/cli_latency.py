"""How long `jupyter-ext` takes from the command line, against peers measured in the same run.

Read-only commands without a server (`ls`, `status`, `logs`, `artifacts` of a finished job) against
the interpreter's own start (`python -c pass`), and `jupyter-ext run --local` of a trivial one-cell
notebook against raw `python -m papermill` of the same notebook, the two interleaved run by run.
`run --local` is timed as a user meets it when running notebooks one after the other: the command
before it left a runner ready (`LocalBackend.keep_warm`), and the script waits for that runner to be
ready before timing either command (so no runner is starting beside the one timed). The cold
`run --local` (`JUPYTER_EXT_KEEP_WARM=0`: a runner and kernel started by the command) is printed too.
Like hyperfine: N runs each, after one warm-up, the median (and min, max) printed, then the ratios;
also the median CPU seconds of each command with all its processes, which load does not inflate.

    python bench/cli_latency.py [--runs 7] [--json]

Everything runs in a fresh temp folder: a fresh job database, no server to find (a fresh runtime
dir), no user configuration (a fresh config dir), a fresh TMPDIR.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CELL = {"cell_type": "code", "execution_count": None, "id": "one", "metadata": {}, "outputs": [], "source": "print(42)"}
NOTEBOOK = {
    "cells": [CELL],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}


CPU: list[float] = []  # CPU seconds (user + system) of each timed command and its children, in order


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    """Wall seconds of one command; its CPU seconds (all its processes: they are waited for by
    then, a runner and kernel included) go to CPU, which a loaded machine does not inflate."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    begin = time.perf_counter()
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)  # noqa: S603
    took = time.perf_counter() - begin
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr}")
    return took


def wait_kept_warm(warm: Path, timeout: float = 120.0) -> None:
    """Until the runner the last `run --local` left is listening (`ready-*.sock`, none `starting-*`)."""
    deadline = time.monotonic() + timeout
    while not (glob.glob(str(warm / "ready-*.sock")) and not glob.glob(str(warm / "starting-*"))):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no kept-warm runner became ready in {warm} within {timeout:.0f}s")
        time.sleep(0.05)


def summary(times: list[float], cpu: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(times),
        "min": min(times),
        "max": max(times),
        "runs": len(times),
        "cpu_median": statistics.median(cpu),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    for name in ("runtime", "data", "config", "tmp"):
        (tmp / name).mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_EXT_")}
    env.update(
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
        JUPYTER_EXT_DATA_DIR=str(tmp / "data"),
        JUPYTER_CONFIG_DIR=str(tmp / "config"),
        TMPDIR=str(tmp / "tmp"),
    )
    notebook = tmp / "trivial.ipynb"
    notebook.write_text(json.dumps(NOTEBOOK))
    python = sys.executable
    cli = [python, "-m", "jupyter_ext.cli"]

    # One finished job for the read-only commands (also the warm-up of `run --local`).
    timed([*cli, "run", "--local", str(notebook)], env, tmp)
    wait_kept_warm(tmp / "data" / "warm")  # the runner it left, ready before anything is timed
    listing = subprocess.run([*cli, "ls", "--json"], env=env, cwd=tmp, capture_output=True, text=True, check=True)  # noqa: S603
    job_id = json.loads(listing.stdout)[0]["id"]

    commands: dict[str, list[str]] = {
        "python -c pass": [python, "-c", "pass"],
        "jupyter-ext ls": [*cli, "ls"],
        "jupyter-ext status JOB": [*cli, "status", job_id],
        "jupyter-ext logs JOB": [*cli, "logs", job_id],
        "jupyter-ext artifacts JOB": [*cli, "artifacts", job_id],
    }
    results: dict[str, Any] = {}
    for label, argv in commands.items():
        timed(argv, env, tmp)  # warm-up (file cache)
        del CPU[:]
        results[label] = summary([timed(argv, env, tmp) for _ in range(args.runs)], CPU[:])

    papermill = [python, "-m", "papermill", "--no-progress-bar", str(notebook), str(tmp / "out.ipynb")]
    run_local = [*cli, "run", "--local", str(notebook)]
    warm = tmp / "data" / "warm"
    cold_env = {**env, "JUPYTER_EXT_KEEP_WARM": "0"}
    timed(papermill, env, tmp)
    pm_times, ext_times, cold_times, pm_cpu, ext_cpu, cold_cpu = [], [], [], [], [], []
    try:
        for _ in range(args.runs):  # interleaved: load on the machine weighs on all alike
            wait_kept_warm(warm)  # the runner the last `run --local` left: ready, not starting
            pm_times.append(timed(papermill, env, tmp))
            pm_cpu.append(CPU[-1])
            ext_times.append(timed(run_local, env, tmp))  # takes the kept-warm runner, leaves one
            ext_cpu.append(CPU[-1])
            wait_kept_warm(warm)
            cold_times.append(timed(run_local, cold_env, tmp))  # starts its own; the kept one waits
            cold_cpu.append(CPU[-1])
    finally:  # the kept-warm runner would otherwise wait out its 300 s
        stop = [python, "-m", "jupyter_ext.backends.keepwarm", "stop", str(warm)]
        subprocess.run(stop, env=env, stdout=subprocess.DEVNULL, check=False)  # noqa: S603
    results["python -m papermill"] = summary(pm_times, pm_cpu)
    results["jupyter-ext run --local"] = summary(ext_times, ext_cpu)
    results["jupyter-ext run --local, cold"] = summary(cold_times, cold_cpu)

    floor = results["python -c pass"]["median"]
    ratios = {label: results[label]["median"] / floor for label in commands if label.startswith("jupyter-ext")}
    papermill_median = results["python -m papermill"]["median"]
    ratios["run --local / papermill"] = results["jupyter-ext run --local"]["median"] / papermill_median
    ratios["run --local, cold / papermill"] = results["jupyter-ext run --local, cold"]["median"] / papermill_median

    if args.json:
        print(json.dumps({"results": results, "ratios": ratios}, indent=2))
        return 0
    print(f"jupyter-ext from the command line, no server, {args.runs} runs each (median, min-max; CPU):")
    for label, r in results.items():
        print(f"  {label:28} {r['median']:6.3f}s  ({r['min']:.3f}-{r['max']:.3f})  CPU {r['cpu_median']:.3f}s")
    print("ratios:")
    for label, ratio in ratios.items():
        against = "papermill" if "papermill" in label else "python -c pass"
        print(f"  {label:28} {ratio:5.2f}x {'' if 'papermill' in label else against}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
