"""Kubernetes backend at scale: watch connections and API calls per job for N concurrent jobs.

Uses the real control plane of scripts/k8s (built and cached by scripts/k8s/build.sh). Pods
land on KWOK's simulated nodes, which complete them at once, and a KWOK ClusterLogs object
serves every pod a recorded runner event stream as its log, so the whole path (Jobs, the
pod and event watches, pod-log follow, outcome) runs for each job without N real processes.

    python bench/k8s_scale.py [--jobs 200] [--transport shared|configmap]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from jupyter_ext.backends.kubernetes import KubernetesBackend
from jupyter_ext.models import JobSpec
from jupyter_ext.orchestrator import Orchestrator
from jupyter_ext.runner.emitter import LINE_PREFIX
from jupyter_ext.store import AsyncStore, Store

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts" / "k8s"
CLUSTER = "jx-bench"


def script(*args: str) -> str:
    env = os.environ | {"CLUSTER_NAME": CLUSTER}
    done = subprocess.run([str(SCRIPTS / args[0]), *args[1:]], env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode:
        raise SystemExit(f"{args[0]} {' '.join(args[1:])} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return done.stdout


def recorded_log(path: Path) -> None:
    """A runner's event stream for a one-cell step, as a CRI log file."""
    events = [
        {"type": "step.start", "pid": 1, "host": "kwok", "python": "3"},
        {"type": "cell.start", "cell_index": 0, "cell_id": "c0", "source": "print('hi')"},
        {
            "type": "cell.output",
            "cell_index": 0,
            "cell_id": "c0",
            "output": {"output_type": "stream", "name": "stdout", "text": "hi\n"},
        },
        {"type": "cell.end", "cell_index": 0, "cell_id": "c0", "status": "ok", "duration": 0.01, "execution_count": 1},
        {"type": "step.end", "status": "succeeded", "exit_code": 0, "error": None, "duration": 0.1},
    ]
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
    lines = []
    for n, event in enumerate(events, 1):
        body = {"v": 1, "job": "recorded", "step": "main", "attempt": 1, "n": n, "ts": time.time(), **event}
        lines.append(f"{stamp} stdout F {LINE_PREFIX}{json.dumps(body)}")
    path.write_text("\n".join(lines) + "\n")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument(
        "--transport",
        choices=["shared", "configmap"],
        default="shared",
        help="how step inputs travel: shared paths, or a ConfigMap per Job (one more API call per job)",
    )
    args = parser.parse_args()
    script("build.sh")
    up = script("cluster.sh", "up")
    for line in up.splitlines():
        if line.startswith("export "):
            key, value = line.removeprefix("export ").split("=", 1)
            os.environ[key] = shlex.split(value.replace('"$PATH"', shlex.quote(os.environ.get("PATH", ""))))[0]
    root = Path(tempfile.mkdtemp(prefix="bench-k8s-"))
    recorded_log(root / "runner.log")
    nbformat.write(new_notebook(cells=[new_code_cell("print('hi')")]), root / "hi.ipynb")
    namespace = f"bench-{os.getpid()}"
    backend = KubernetesBackend(namespace=namespace, shared_paths=args.transport == "shared", image="bench:not-pulled")
    store = AsyncStore(Store(root / "data" / "jobs.db"))
    orch = Orchestrator(
        store=store,
        backends={"kubernetes": backend},
        default_backend="kubernetes",
        root_dir=root,
        data_dir=root / "data",
    )
    try:
        await backend.start()
        from kubernetes_asyncio import client

        await backend.core.create_namespace({"metadata": {"name": namespace}})  # type: ignore[arg-type]
        await client.CustomObjectsApi(backend.api).create_cluster_custom_object(
            "kwok.x-k8s.io",
            "v1alpha1",
            "clusterlogs",
            {
                "apiVersion": "kwok.x-k8s.io/v1alpha1",
                "kind": "ClusterLogs",
                "metadata": {"name": namespace},
                "spec": {
                    "selector": {"matchNamespaces": [namespace]},
                    "logs": [{"logsFile": str(root / "runner.log")}],
                },
            },
        )
        calls: Counter[str] = Counter()
        original = backend.api.call_api

        async def counting(path: str, method: str, *a: Any, **kw: Any) -> Any:
            calls[f"{method} {path}"] += 1
            return await original(path, method, *a, **kw)

        backend.api.call_api = counting
        await orch.start()
        started = time.perf_counter()
        jobs = await asyncio.gather(*(orch.submit(JobSpec(notebook="hi.ipynb"), "bench") for _ in range(args.jobs)))
        finals = await asyncio.gather(*(orch.wait(job["id"]) for job, _ in jobs))
        wall = time.perf_counter() - started
        statuses = Counter(f["status"] for f in finals)
        outputs = 0
        for job, _ in jobs:
            outputs += sum(1 for e in await store.events(job["id"]) if e["type"] == "cell.output")
        total = sum(calls.values())
        print(
            f"{args.jobs} concurrent one-step jobs on KWOK nodes: {dict(statuses)} in {wall:.1f}s, "
            f"{outputs} outputs stored"
        )
        print(
            f"watch connections opened: {backend.capacity()['watches']} "
            "(Jobs, pods and Events of one namespace, whatever the number of jobs)"
        )
        print(f"API calls: {total} ({total / args.jobs:.1f} per job)")
        for key, count in calls.most_common():
            print(f"  {count / args.jobs:6.2f}/job  {count:5d}  {key}")
    finally:
        await orch.stop()
        await store.close()
        script("cluster.sh", "down")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
