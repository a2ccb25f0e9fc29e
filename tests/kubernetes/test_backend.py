"""The Kubernetes backend against the real control plane: Jobs, the pod log as the event
channel, scheduling diagnostics, out-of-memory hint, cancel. Pods run on the process kubelet."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from jupyter_ext.backends.kubernetes import KubernetesBackend
from jupyter_ext.errors import ValidationError
from jupyter_ext.models import JobSpec
from jupyter_ext.orchestrator import Orchestrator
from jupyter_ext.store import AsyncStore, Store
from tests.kubernetes.conftest import CLUSTER_NAME, Cluster

pytestmark = [pytest.mark.k8s, pytest.mark.slow]
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts" / "k8s"
KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def write(root: Path, name: str, cells: list[tuple[list[str], str]]) -> str:
    nb = new_notebook(metadata=KERNEL, cells=[new_code_cell(src, metadata={"tags": tags}) for tags, src in cells])
    nbformat.write(nb, root / name)
    return name


async def scenario(cluster: Cluster, namespace: str, root: Path, body: Any, **options: Any) -> Any:
    pinned = cluster.pinned()
    settings: dict[str, Any] = {
        "namespace": namespace,
        "shared_paths": True,  # the process kubelet runs pods on this machine: same paths
        "image": "jupyter-ext-test:not-pulled",
        "python": sys.executable,
        "node_selector": pinned["nodeSelector"],
        "tolerations": pinned["tolerations"],
        "cancel_grace": 2.0,
    }
    backend = KubernetesBackend(**(settings | options))
    store = AsyncStore(Store(root / "data" / "jobs.db"))
    orch = Orchestrator(
        store=store,
        backends={"kubernetes": backend},
        default_backend="kubernetes",
        root_dir=root,
        data_dir=root / "data",
    )
    await orch.start()
    try:
        return await body(orch, store, backend)
    finally:
        await orch.stop()
        await store.close()


def run(cluster: Cluster, namespace: str, root: Path, body: Any, **options: Any) -> Any:
    return asyncio.run(asyncio.wait_for(scenario(cluster, namespace, root, body, **options), 240))


async def cluster_sh(command: str) -> None:
    """`scripts/k8s/cluster.sh COMMAND` on the test cluster (restart-kwok, restart-apiserver)."""
    proc = await asyncio.create_subprocess_exec(
        str(SCRIPTS / "cluster.sh"),
        command,
        env={**os.environ, "CLUSTER_NAME": CLUSTER_NAME},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()[-3000:]


def test_two_steps_run_as_jobs_with_events_from_the_pod_log(
    k8s_cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    nb = write(
        tmp_path,
        "two.ipynb",
        [
            (["step:prep"], "data = list(range(5))\nprint('prepared', len(data), flush=True)"),
            (
                ["step:train", "prev:prep"],
                "import time\nfor i in range(3):\n    print('epoch', i, flush=True)\n    time.sleep(0.3)\n"
                "total = sum(data)\nprint('total', total)",
            ),
        ],
    )

    async def body(orch: Orchestrator, store: AsyncStore, backend: KubernetesBackend) -> None:
        job, _ = await orch.submit(JobSpec(notebook=nb), "ada")
        final = await orch.wait(job["id"])
        assert final["status"] == "succeeded", final["error"]
        events = await store.events(job["id"])
        texts = "".join(e["output"]["text"] for e in events if e["type"] == "cell.output")
        assert texts == "prepared 5\nepoch 0\nepoch 1\nepoch 2\ntotal 10\n"
        seqs = [e["seq"] for e in events]
        assert seqs == list(range(1, len(seqs) + 1))
        assert [e["step"] for e in events if e["type"] == "step.start"] == ["prep", "train"]
        names = {a["name"] for a in await store.artifacts(job["id"])}
        assert {"prep__executed.ipynb", "train__executed.ipynb"} <= names
        jobs = await backend.batch.list_namespaced_job(namespace)
        assert len(jobs.items) == 2 and all(j.spec.backoff_limit == 0 for j in jobs.items)
        assert backend.capacity()["watches"] <= 6, "one watch per kind per namespace, not per job"

    run(k8s_cluster, namespace, tmp_path, body)


def test_unschedulable_gpu_request_reaches_the_user_and_cancel_removes_the_job(
    k8s_cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    nb = write(tmp_path, "gpu.ipynb", [(["step:train", "gpu:8"], "print('never')")])

    async def body(orch: Orchestrator, store: AsyncStore, backend: KubernetesBackend) -> None:
        job, _ = await orch.submit(JobSpec(notebook=nb), "ada")
        message = None
        for _ in range(60):
            events = await store.events(job["id"])
            found = [e for e in events if e["type"] == "log" and e.get("reason") == "unschedulable"]
            if found:
                message = found[0]["text"]
                break
            await asyncio.sleep(0.5)
        assert message and "Insufficient nvidia.com/gpu" in message and "Waiting for a machine" in message, message
        await orch.cancel(job["id"], "ada")
        final = await orch.wait(job["id"])
        assert final["status"] == "cancelled"
        for _ in range(40):
            if not (await backend.batch.list_namespaced_job(namespace)).items:
                break
            await asyncio.sleep(0.25)
        assert not (await backend.batch.list_namespaced_job(namespace)).items, "cancel deletes the Job"

    run(k8s_cluster, namespace, tmp_path, body, preflight_checks=False)


def test_killed_like_oom_gives_the_memory_hint(k8s_cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    nb = write(
        tmp_path,
        "oom.ipynb",
        [
            (
                ["step:big", "memory:1Gi"],
                "import os, signal\nprint('allocating', flush=True)\nos.kill(os.getppid(), signal.SIGKILL)",
            )
        ],
    )

    async def body(orch: Orchestrator, store: AsyncStore, backend: KubernetesBackend) -> None:
        job, _ = await orch.submit(JobSpec(notebook=nb), "ada")
        final = await orch.wait(job["id"])
        assert final["status"] == "failed"
        assert final["steps"][0]["exit_code"] == 137
        message = final["error"]["message"]
        assert "Out of memory: step 'big' used more than its memory limit of 1Gi" in message, message
        assert final["error"]["reason"] == "oom", final["error"]
        assert "`memory:` tag on step 'big'" in message, message

    run(k8s_cluster, namespace, tmp_path, body)


def test_log_stream_drop_resumes_without_gap_or_duplicate(k8s_cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    nb = write(
        tmp_path,
        "long.ipynb",
        [(["step:talk"], "import time\nfor i in range(30):\n    print('line', i, flush=True)\n    time.sleep(0.2)")],
    )

    async def body(orch: Orchestrator, store: AsyncStore, backend: KubernetesBackend) -> None:
        job, _ = await orch.submit(JobSpec(notebook=nb), "ada")
        for _ in range(120):
            events = await store.events(job["id"])
            if sum(1 for e in events if e["type"] == "cell.output") >= 5:
                break
            await asyncio.sleep(0.25)
        # Restarting KWOK ends every open log stream while the pod keeps running.
        await cluster_sh("restart-kwok")
        final = await orch.wait(job["id"])
        assert final["status"] == "succeeded", final["error"]
        events = await store.events(job["id"])
        text = "".join(e["output"]["text"] for e in events if e["type"] == "cell.output")
        assert text == "".join(f"line {i}\n" for i in range(30))
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))

    run(k8s_cluster, namespace, tmp_path, body)


def test_server_restart_adopts_the_job_and_resumes_its_log(
    k8s_cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    nb = write(
        tmp_path,
        "adopt.ipynb",
        [(["step:talk"], "import time\nfor i in range(25):\n    print('line', i, flush=True)\n    time.sleep(0.2)")],
    )
    state: dict[str, Any] = {}

    async def first(orch: Orchestrator, store: AsyncStore, backend: KubernetesBackend) -> None:
        job, _ = await orch.submit(JobSpec(notebook=nb), "ada")
        state["id"] = job["id"]
        for _ in range(120):
            events = await store.events(job["id"])
            if sum(1 for e in events if e["type"] == "cell.output") >= 4:
                return  # the server goes away here (its orchestrator stops; the Job keeps running)
            await asyncio.sleep(0.25)
        raise AssertionError("no output")

    async def second(orch: Orchestrator, store: AsyncStore, backend: KubernetesBackend) -> None:
        final = await orch.wait(state["id"])
        assert final["status"] == "succeeded", final["error"]
        events = await store.events(state["id"])
        text = "".join(e["output"]["text"] for e in events if e["type"] == "cell.output")
        assert text == "".join(f"line {i}\n" for i in range(25))
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert sum(1 for e in events if e["type"] == "step.start") == 1
        assert len((await backend.batch.list_namespaced_job(namespace)).items) == 1, "adopted, not created again"

    run(k8s_cluster, namespace, tmp_path, first)
    run(k8s_cluster, namespace, tmp_path, second)


def test_preflight_refuses_what_no_node_or_quota_can_take(k8s_cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    gpu = write(tmp_path, "gpu8.ipynb", [(["step:prep"], "x = 1"), (["step:train", "prev:prep", "gpu:8"], "y = x")])
    cpu = write(tmp_path, "cpu2.ipynb", [(["step:crunch", "cpu:2"], "z = 1")])

    async def body(orch: Orchestrator, store: AsyncStore, backend: KubernetesBackend) -> None:
        with pytest.raises(ValidationError) as info:
            await orch.submit(JobSpec(notebook=gpu), "ada")
        assert info.value.step == "train"
        assert "asks for 8 nvidia.com/gpu but the largest node offers 4 nvidia.com/gpu" in str(info.value)
        await backend.core.create_namespaced_resource_quota(
            namespace, {"metadata": {"name": "small"}, "spec": {"hard": {"requests.cpu": "1"}}}
        )
        for _ in range(40):  # the quota controller fills in status.hard
            quota = await backend.core.read_namespaced_resource_quota("small", namespace)
            if quota.status and quota.status.hard:
                break
            await asyncio.sleep(0.25)
        with pytest.raises(ValidationError) as info:
            await orch.submit(JobSpec(notebook=cpu), "ada")
        assert "step 'crunch' asks for 2 CPU but ResourceQuota 'small'" in str(info.value)
        assert await store.list_jobs() == [], "nothing was submitted"
        assert not (await backend.batch.list_namespaced_job(namespace)).items

    run(k8s_cluster, namespace, tmp_path, body)


def test_cpu_then_gpu_step_on_a_node_that_advertises_gpus(k8s_cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    nb = write(
        tmp_path,
        "cpu_gpu.ipynb",
        [
            (["step:prep", "cpu:500m", "memory:256Mi"], "rows = [1, 2, 3]"),
            (["step:train", "prev:prep", "gpu:2", "memory:1Gi"], "print('training on', len(rows), 'rows', flush=True)"),
        ],
    )

    async def body(orch: Orchestrator, store: AsyncStore, backend: KubernetesBackend) -> None:
        # The process-kubelet node advertises 4 GPUs (fake, named as such: nothing here has a GPU;
        # what is tested is the scheduler's accounting and our manifests).
        patch = {"status": {"capacity": {"nvidia.com/gpu": "4"}, "allocatable": {"nvidia.com/gpu": "4"}}}
        await backend.core.patch_node_status(k8s_cluster.proc_node, patch)
        job, _ = await orch.submit(JobSpec(notebook=nb), "ada")
        final = await orch.wait(job["id"])
        assert final["status"] == "succeeded", final["error"]
        events = await store.events(job["id"])
        assert [e["output"]["text"] for e in events if e["type"] == "cell.output"] == ["training on 3 rows\n"]
        pods = {p["metadata"]["labels"]["jupyter-ext/step"]: p for p in backend.pods.objects.values()}  # type: ignore[union-attr]
        limits = pods["train"]["spec"]["containers"][0]["resources"]["limits"]
        assert limits["nvidia.com/gpu"] == "2" and "nvidia.com/gpu" not in pods["prep"]["spec"]["containers"][0][
            "resources"
        ].get("limits", {})
        assert pods["train"]["spec"]["nodeName"] == k8s_cluster.proc_node, "bound by the real scheduler"
        assert {"prep__executed.ipynb", "train__executed.html"} <= {a["name"] for a in await store.artifacts(job["id"])}

    run(k8s_cluster, namespace, tmp_path, body)


def _documented_role() -> dict[str, Any]:
    import yaml

    doc = (Path(__file__).resolve().parents[2] / "docs" / "kubernetes.md").read_text()
    block = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    return dict(yaml.safe_load(block))


def test_an_account_with_only_the_documented_role_runs_jobs_and_one_without_is_told(
    k8s_cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    import yaml

    cells = [(["step:hello"], "print('hello from a restricted account', flush=True)")]
    for root in (tmp_path / "a", tmp_path / "b"):
        root.mkdir()
        nb = write(root, "rbac.ipynb", cells)

    async def kubeconfig_for(account: str, bind: bool) -> str:
        async with k8s_cluster.clients() as (api, core, _):
            from kubernetes_asyncio import client

            rbac = client.RbacAuthorizationV1Api(api)
            await core.create_namespaced_service_account(namespace, {"metadata": {"name": account}})
            if bind:
                role = _documented_role()
                role["metadata"] = {"name": f"{account}-role"}
                await rbac.create_namespaced_role(namespace, role)
                await rbac.create_namespaced_role_binding(
                    namespace,
                    {
                        "metadata": {"name": f"{account}-binding"},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"{account}-role"},
                        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
                    },
                )
            token = await core.create_namespaced_service_account_token(account, namespace, {"spec": {}})
        admin = yaml.safe_load(Path(k8s_cluster.kubeconfig).read_text())
        context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
        cluster = next(c for c in admin["clusters"] if c["name"] == context["context"]["cluster"])
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [cluster],
            "users": [{"name": account, "user": {"token": token.status.token}}],
            "contexts": [
                {"name": account, "context": {"cluster": cluster["name"], "user": account, "namespace": namespace}}
            ],
            "current-context": account,
        }
        path = tmp_path / f"{account}.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        return str(path)

    allowed = asyncio.run(kubeconfig_for("runner-ok", bind=True))
    denied = asyncio.run(kubeconfig_for("runner-none", bind=False))

    async def ok(orch: Orchestrator, store: AsyncStore, backend: KubernetesBackend) -> None:
        job, _ = await orch.submit(JobSpec(notebook=nb), "ada")
        final = await orch.wait(job["id"])
        assert final["status"] == "succeeded", final["error"]
        texts = [e["output"]["text"] for e in await store.events(job["id"]) if e["type"] == "cell.output"]
        assert texts == ["hello from a restricted account\n"]

    async def refused(orch: Orchestrator, store: AsyncStore, backend: KubernetesBackend) -> None:
        with pytest.raises(ValidationError) as info:
            await orch.submit(JobSpec(notebook=nb), "ada")
        assert "step 'hello' cannot run: this server may not create jobs" in str(info.value)
        assert "docs/kubernetes.md" in str(info.value)
        assert await store.list_jobs() == []

    run(k8s_cluster, namespace, tmp_path / "a", ok, kubeconfig=allowed)
    run(k8s_cluster, namespace, tmp_path / "b", refused, kubeconfig=denied)
