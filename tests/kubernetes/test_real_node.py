"""Step pods as real containers: the node `jx-real-0` of scripts/k8s/node.sh (kubelet built from
k8s.io/kubernetes, Debian's containerd + runc, a CNI bridge), running the step image built from
kernels/python/Dockerfile by scripts/k8s/images.sh. Inputs travel in a ConfigMap, outputs over the
pod log: the pods do not see the server's disk. The kubelet rotates container logs at 1 MiB
(tests/kubernetes/conftest.py), so every test here also runs under log rotation."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

import pytest

from jupyter_ext.backends.kubernetes import KubernetesBackend
from jupyter_ext.models import JobSpec
from jupyter_ext.orchestrator import Orchestrator
from jupyter_ext.store import AsyncStore
from tests.kubernetes.conftest import Cluster
from tests.kubernetes.test_backend import scenario, write

pytestmark = [pytest.mark.k8s, pytest.mark.slow]
REAL = {"jupyter-ext.dev/node": "real"}


def run(cluster: Cluster, namespace: str, root: Path, body: Any, timeout: float = 300, **options: Any) -> Any:
    """test_backend's scenario with the real node's settings: the step image, no shared paths."""
    image = os.environ.get("JUPYTER_EXT_STEP_IMAGE")
    assert image, "cluster.sh up exports JUPYTER_EXT_STEP_IMAGE (the step image on the real node)"
    real = {"image": image, "python": "python", "node_selector": REAL, "shared_paths": False, "cancel_grace": 20.0}
    return asyncio.run(asyncio.wait_for(scenario(cluster, namespace, root, body, **(real | options)), timeout))


def texts(events: list[dict[str, Any]]) -> str:
    return "".join(
        "".join(e["output"]["text"]) if isinstance(e["output"]["text"], list) else e["output"]["text"]
        for e in events
        if e["type"] == "cell.output" and "text" in e["output"]
    )


PNG = (
    "import base64\nfrom IPython.display import Image, display\n"
    "display(Image(data=base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ'"
    "'AAAABJRU5ErkJggg==')))\n"
)


def test_a_parameterised_notebook_runs_in_a_container_with_outputs_artifacts_and_html(
    k8s_cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    nb = write(
        tmp_path,
        "hello.ipynb",
        [
            (["parameters"], "name = 'world'\nrepeat = 1"),
            ([], "for i in range(repeat):\n    print(f'hello {name} {i}', flush=True)"),
            (
                [],
                "import os, pathlib\n"
                "p = pathlib.Path(os.environ['JUPYTER_EXT_ARTIFACTS_DIR'], 'greeting.txt')\n"
                "p.write_text('hi ' + name)\n" + PNG,
            ),
        ],
    )

    async def body(orch: Orchestrator, store: AsyncStore, backend: KubernetesBackend) -> None:
        job, _ = await orch.submit(JobSpec(notebook=nb, parameters={"name": "pod", "repeat": 3}), "ada")
        final = await orch.wait(job["id"])
        assert final["status"] == "succeeded", final["error"]
        events = await store.events(job["id"])
        assert texts(events) == "hello pod 0\nhello pod 1\nhello pod 2\n"
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        images = [e for e in events if e["type"] == "cell.output" and "image/png" in e["output"].get("data", {})]
        assert len(images) == 1
        stored = {a["name"]: await store.artifact(job["id"], a["name"]) for a in await store.artifacts(job["id"])}
        assert "greeting.txt" in stored, sorted(stored)
        assert Path(stored["greeting.txt"]["path"]).read_text() == "hi pod"
        assert "executed.ipynb" in stored and "executed.html" in stored, sorted(stored)
        assert "hello pod 2" in Path(stored["executed.ipynb"]["path"]).read_text()
        pods = (await backend.core.list_namespaced_pod(namespace)).items
        assert {p.spec.node_name for p in pods} == {"jx-real-0"}, "the step ran on the real node"
        statuses = [c for p in pods for c in (p.status.container_statuses or [])]
        assert statuses and all(c.container_id.startswith("containerd://") for c in statuses)

    run(k8s_cluster, namespace, tmp_path, body)


def test_a_dataframe_is_handed_from_one_container_to_the_next(
    k8s_cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    nb = write(
        tmp_path,
        "frames.ipynb",
        [
            (["imports"], "import pandas as pd"),
            (["step:load"], "df = pd.DataFrame({'x': range(1, 5), 'y': list('abcd')})\nprint(len(df), flush=True)"),
            (["step:total", "after:load"], "print(int(df['x'].sum()), ''.join(df['y']), type(df).__name__)"),
        ],
    )

    async def body(orch: Orchestrator, store: AsyncStore, backend: KubernetesBackend) -> None:
        job, _ = await orch.submit(JobSpec(notebook=nb), "ada")
        final = await orch.wait(job["id"])
        assert final["status"] == "succeeded", final["error"]
        assert texts(await store.events(job["id"])) == "4\n10 abcd DataFrame\n"
        pods = (await backend.core.list_namespaced_pod(namespace)).items
        assert len({p.metadata.name for p in pods}) == 2 and {p.spec.node_name for p in pods} == {"jx-real-0"}

    run(k8s_cluster, namespace, tmp_path, body)


def test_a_step_over_its_memory_limit_is_stopped_by_the_cgroup_and_told_in_plain_words(
    k8s_cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    nb = write(
        tmp_path,
        "oom.ipynb",
        [
            (["step:big", "memory:128Mi"], "print('before', flush=True)"),
            ([], "blob = b'x' * (1536 * 1024 * 1024)\nprint('after', flush=True)"),
        ],
    )

    async def body(orch: Orchestrator, store: AsyncStore, backend: KubernetesBackend) -> None:
        job, _ = await orch.submit(JobSpec(notebook=nb), "ada")
        final = await orch.wait(job["id"])
        assert final["status"] == "failed"
        events = await store.events(job["id"])
        assert texts(events) == "before\n", "nothing printed after the allocation"
        step = final["steps"][0]
        message = step["error"]["message"]
        assert "out of memory" in message.lower() and "128Mi" in message and "`memory:`" in message, message
        assert "DeadKernelError" not in message and "Traceback" not in message, message
        ends = [e for e in events if e["type"] == "step.end"]
        assert ends[-1]["status"] == "failed" and ends[-1]["error"]["message"] == message

    run(k8s_cluster, namespace, tmp_path, body)


def test_cancel_reaches_the_runner_in_the_container_and_ends_cancelled_within_the_grace(
    k8s_cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    nb = write(
        tmp_path,
        "slow.ipynb",
        [([], "import time\nfor i in range(600):\n    print('tick', i, flush=True)\n    time.sleep(0.5)")],
    )

    async def body(orch: Orchestrator, store: AsyncStore, backend: KubernetesBackend) -> None:
        job, _ = await orch.submit(JobSpec(notebook=nb), "ada")
        for _ in range(1200):  # until the first tick is stored (generous: a cold node under load)
            if "tick 0" in texts(await store.events(job["id"])):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the step never printed")
        loop = asyncio.get_running_loop()
        asked = loop.time()
        await orch.cancel(job["id"], "ada")
        final = await orch.wait(job["id"])
        took = loop.time() - asked
        assert final["status"] == "cancelled"
        events = await store.events(job["id"])
        ends = [e for e in events if e["type"] == "step.end"]
        runner_end = [e for e in ends if "duration" in e]  # the runner's own (the server's has none)
        assert runner_end and runner_end[0]["status"] == "cancelled", f"the runner's own step.end: {ends}"
        words = " ".join(str(e) for e in events)
        assert "SIGKILL" not in words and "killed by signal" not in words
        grace = 30  # the pod's terminationGracePeriodSeconds (Kubernetes' default; we set none)
        assert took < grace, f"cancelled on its own within the pod's grace ({took:.1f}s of {grace}s)"

    run(k8s_cluster, namespace, tmp_path, body)


def test_the_runtime_enforces_the_security_context_and_mounts_no_token(
    k8s_cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    nb = write(
        tmp_path,
        "who.ipynb",
        [
            (
                [],
                "import os, re\n"
                "status = open('/proc/self/status').read()\n"
                "print('uid', os.getuid(), 'euid', os.geteuid())\n"
                "print('NoNewPrivs', re.search(r'NoNewPrivs:\\s*(\\d)', status).group(1))\n"
                "print('token', os.path.exists('/var/run/secrets/kubernetes.io/serviceaccount/token'))\n"
                "print('home', os.environ['HOME'], os.access(os.environ['HOME'], os.W_OK))",
            )
        ],
    )

    async def body(orch: Orchestrator, store: AsyncStore, backend: KubernetesBackend) -> None:
        job, _ = await orch.submit(JobSpec(notebook=nb), "ada")
        final = await orch.wait(job["id"])
        assert final["status"] == "succeeded", final["error"]
        assert texts(await store.events(job["id"])) == (
            "uid 1000 euid 1000\nNoNewPrivs 1\ntoken False\nhome /home/jovyan True\n"
        )

    run(k8s_cluster, namespace, tmp_path, body)


def test_an_image_the_runtime_cannot_find_reaches_the_cell_and_the_job_is_removed(
    k8s_cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    nb = write(tmp_path, "img.ipynb", [(["image:docker.io/jupyter-ext/not-here:0.0.1"], "print('never')")])

    async def body(orch: Orchestrator, store: AsyncStore, backend: KubernetesBackend) -> None:
        job, _ = await orch.submit(JobSpec(notebook=nb), "ada")
        final = await orch.wait(job["id"])
        assert final["status"] == "failed"
        message = final["steps"][0]["error"]["message"]
        assert "docker.io/jupyter-ext/not-here:0.0.1" in message and "could not be pulled" in message, message
        assert re.search(r"ErrImagePull|ImagePullBackOff|ErrImageNeverPull", message), message
        logs = "".join(e.get("text", "") for e in await store.events(job["id"]) if e["type"] == "log")
        assert "cannot be pulled" in logs, "the user was told while the step waited"
        jobs = (await backend.batch.list_namespaced_job(namespace)).items
        live = [j for j in jobs if not j.metadata.deletion_timestamp]
        assert not live, "the Job is cleaned up after the grace"

    run(k8s_cluster, namespace, tmp_path, body, image_pull_grace=5.0)


@pytest.mark.timeout(1200)
def test_no_event_is_lost_when_the_kubelet_rotates_the_log_under_a_flood(
    k8s_cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    # 20 MB in 20,000 flushed lines, with the kubelet rotating the container log at 1 MiB
    nb = write(
        tmp_path,
        "flood.ipynb",
        [([], "for i in range(20000):\n    print(f'{i:06d} ' + 'x' * 993, flush=True)")],
    )

    async def body(orch: Orchestrator, store: AsyncStore, backend: KubernetesBackend) -> None:
        job, _ = await orch.submit(JobSpec(notebook=nb), "ada")
        final = await orch.wait(job["id"])
        assert final["status"] == "succeeded", final["error"]
        lines = texts(await store.events(job["id"])).splitlines()
        numbers = [int(line[:6]) for line in lines]
        missing = sorted(set(range(20000)) - set(numbers))
        assert not missing, f"{len(missing)} lines lost, first {missing[:5]}"
        assert numbers == list(range(20000)), "each line once, in order"

    run(k8s_cluster, namespace, tmp_path, body, timeout=900)


def test_a_pod_log_that_cannot_be_read_fails_the_step_in_words_instead_of_passing(
    k8s_cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    # Without an address the API server cannot reach the node's kubelet: pods/log answers 500
    # ("no preferred addresses found") while the container runs and succeeds.
    nb = write(tmp_path, "quiet.ipynb", [([], "print('you will not see me', flush=True)")])

    async def set_addresses(backend: KubernetesBackend, addresses: list[dict[str, str]]) -> None:
        # a JSON patch (a list body): a strategic merge would keep the addresses it does not name
        await backend.core.patch_node_status(
            "jx-real-0", [{"op": "replace", "path": "/status/addresses", "value": addresses}]
        )
        node = await backend.core.read_node("jx-real-0")
        assert [a.address for a in node.status.addresses or []] == [a["address"] for a in addresses]

    async def body(orch: Orchestrator, store: AsyncStore, backend: KubernetesBackend) -> None:
        await set_addresses(backend, [])
        try:
            job, _ = await orch.submit(JobSpec(notebook=nb), "ada")
            final = await orch.wait(job["id"])
        finally:
            await set_addresses(backend, [{"type": "InternalIP", "address": "127.0.0.1"}])
        assert final["status"] == "failed", "a step whose events never arrived is not a success"
        message = final["steps"][0]["error"]["message"]
        assert "could not be read from the pod log" in message and "500" in message, message
        pods = (await backend.core.list_namespaced_pod(namespace)).items
        assert [p.status.phase for p in pods] == ["Succeeded"], "the container itself succeeded"

    run(k8s_cluster, namespace, tmp_path, body)


def test_the_cli_runs_a_notebook_on_the_real_node_with_only_the_cluster_env(
    k8s_cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    # `eval "$(scripts/k8s/cluster.sh env)"` (the fixture exported it), then the command of
    # docs/kubernetes.md, with no other configuration
    import subprocess
    import sys

    nb = write(tmp_path, "cli.ipynb", [(["parameters"], "name = 'x'"), ([], "print('hello', name, flush=True)")])
    env = os.environ | {"JUPYTER_EXT_NAMESPACE": namespace, "JUPYTER_EXT_SERVER_URL": "", "HOME": str(tmp_path)}
    cli = [sys.executable, "-m", "jupyter_ext.cli", "run", "--local", "--backend", "kubernetes", nb]
    cli += ["-p", "name", "pod"]
    done = subprocess.run(cli, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout == "hello pod\n", done.stdout
    assert "on kubernetes" in done.stderr and "succeeded" in done.stderr, done.stderr

    async def pods() -> list[Any]:
        async with k8s_cluster.clients() as (_, core, _):
            return (await core.list_namespaced_pod(namespace)).items

    ran = asyncio.run(pods())
    assert ran and {p.spec.node_name for p in ran} == {"jx-real-0"}
