"""Kubernetes backend on the REAL node vs the KWOK process node, in one run.

Submit-to-first-output and submit-to-end for a trivial notebook (`print('hi')`), N runs each,
medians (and p90). The real node is `jx-real-0` of scripts/k8s/node.sh (kubelet + containerd +
runc, the step image from kernels/python already imported, inputs in a ConfigMap, outputs over
the pod log); the process node is KWOK's `kwok-proc-0` whose pods the test-only process kubelet
(tests/kubernetes/process_kubelet.py) runs as host processes with this interpreter.

    python bench/k8s_real.py [--runs 10]

Goal (issue 17): first output within 3 s of submit on the real node.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from jupyter_ext.backends.kubernetes import KubernetesBackend  # noqa: E402
from jupyter_ext.models import JobSpec  # noqa: E402
from jupyter_ext.orchestrator import Orchestrator  # noqa: E402
from jupyter_ext.store import AsyncStore, Store  # noqa: E402
from tests.kubernetes.conftest import _KubeletThread  # noqa: E402
from tests.kubernetes.process_kubelet import ProcessKubelet  # noqa: E402

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts" / "k8s"
CLUSTER = os.environ.get("CLUSTER_NAME", "jx-bench-real")


def script(*args: str) -> str:
    env = os.environ | {"CLUSTER_NAME": CLUSTER, "REAL_NODE_ENABLED": "1"}
    done = subprocess.run([str(SCRIPTS / args[0]), *args[1:]], env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode:
        raise SystemExit(f"{args[0]} {' '.join(args[1:])} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return done.stdout


async def one(orch: Orchestrator, store: AsyncStore, nb: str) -> tuple[float, float]:
    t0 = time.monotonic()
    job, _ = await orch.submit(JobSpec(notebook=nb), "bench")
    first = None
    while True:
        events = await store.events(job["id"])
        if first is None and any(e["type"] == "cell.output" for e in events):
            first = time.monotonic() - t0
        if any(e["type"] == "job.end" for e in events):
            break
        await asyncio.sleep(0.02)
    end = time.monotonic() - t0
    final = await orch.wait(job["id"])
    if final["status"] != "succeeded":
        raise SystemExit(f"bench job failed: {final['error']}")
    return first or end, end


async def measure(name: str, root: Path, runs: int, **settings: Any) -> dict[str, list[float]]:
    backend = KubernetesBackend(namespace="default", cancel_grace=5.0, **settings)
    store = AsyncStore(Store(root / name / "jobs.db"))
    orch = Orchestrator(
        store=store, backends={"kubernetes": backend}, default_backend="kubernetes", root_dir=root, data_dir=root / name
    )
    await orch.start()
    out: dict[str, list[float]] = {"first": [], "end": []}
    try:
        await one(orch, store, "trivial.ipynb")  # warm-up: image layers in the page cache, watches listed
        for _ in range(runs):
            await asyncio.sleep(1.0)  # idle between runs, like a person pressing Run
            first, end = await one(orch, store, "trivial.ipynb")
            out["first"].append(first)
            out["end"].append(end)
    finally:
        await orch.stop()
        await store.close()
    return out


def row(name: str, values: list[float]) -> str:
    p90 = sorted(values)[max(0, int(len(values) * 0.9) - 1)]
    return f"{name:<42} median {statistics.median(values):6.2f} s   p90 {p90:6.2f} s   (n={len(values)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="leave the cluster up afterwards")
    args = parser.parse_args()
    up = script("cluster.sh", "up")
    env = dict(line.removeprefix("export ").split("=", 1) for line in up.splitlines() if line.startswith("export "))
    for key, value in env.items():
        os.environ[key] = shlex.split(value.replace('"$PATH"', shlex.quote(os.environ.get("PATH", ""))))[0]
    root = Path(tempfile.mkdtemp(prefix="jx-bench-real-"))
    kernel = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nbformat.write(new_notebook(cells=[new_code_cell("print('hi')")], metadata=kernel), root / "trivial.ipynb")
    kubelet = ProcessKubelet(
        os.environ["JUPYTER_EXT_K8S_PROC_NODE"], root / "process-kubelet", kubeconfig=os.environ["KUBECONFIG"],
        path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    )  # fmt: skip
    thread = _KubeletThread(kubelet)
    thread.start()
    kubelet.ready.wait(60)
    try:
        real = asyncio.run(
            measure("real", root, args.runs, image=os.environ["JUPYTER_EXT_STEP_IMAGE"], python="python",
                    node_selector={"jupyter-ext.dev/node": "real"})
        )  # fmt: skip
        proc = asyncio.run(
            measure("proc", root, args.runs, image="jupyter-ext-test:not-pulled", python=sys.executable,
                    shared_paths=True, node_selector={"jupyter-ext.test/pool": "proc"},
                    tolerations=[{"key": "jupyter-ext.test/process-kubelet", "operator": "Exists",
                                  "effect": "NoSchedule"}])
        )  # fmt: skip
    finally:
        thread.stop()
        if not args.keep:
            script("cluster.sh", "down")
    print(f"trivial notebook, {args.runs} runs each after a warm-up, 1 s idle between runs (one run, this machine)")
    print(row("real node: submit -> first output", real["first"]))
    print(row("real node: submit -> end", real["end"]))
    print(row("KWOK process node: submit -> first output", proc["first"]))
    print(row("KWOK process node: submit -> end", proc["end"]))
    ratio = statistics.median(real["first"]) / statistics.median(proc["first"])
    print(f"real / process node, first output: {ratio:.2f}x; goal: real node first output <= 3 s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
