"""What goes wrong around a step, against the real control plane: the API server restarting
under our watches, an image that cannot be pulled, a container that restarts."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from jupyter_ext.backends.base import Outcome
from jupyter_ext.backends.kubernetes import RESTART_STRIDE, KubernetesBackend
from jupyter_ext.backends.kubernetes.manifests import LABEL_MANAGED_BY, MANAGED_BY
from jupyter_ext.models import JobSpec
from jupyter_ext.orchestrator import Orchestrator
from jupyter_ext.runner.emitter import LINE_PREFIX
from jupyter_ext.store import AsyncStore
from tests.kubernetes.conftest import Cluster
from tests.kubernetes.test_backend import cluster_sh, run, write

pytestmark = [pytest.mark.k8s, pytest.mark.slow]


def test_restarting_the_api_server_during_a_watch_loses_no_transition(
    k8s_cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    nb = write(
        tmp_path,
        "restart.ipynb",
        [
            (["step:first"], "import time\nfor i in range(12):\n    print('a', i, flush=True)\n    time.sleep(0.25)"),
            (["step:second", "prev:first"], "print('b done', flush=True)"),
        ],
    )

    async def body(orch: Orchestrator, store: AsyncStore, backend: KubernetesBackend) -> None:
        job, _ = await orch.submit(JobSpec(notebook=nb), "ada")
        for _ in range(900):
            events = await store.events(job["id"])
            if any(e["type"] == "cell.output" for e in events):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("first step never ran")
        assert backend.pods is not None
        watches_before = backend.capacity()["watches"]
        started = time.monotonic()
        await cluster_sh("restart-apiserver")  # the first step keeps running meanwhile
        away = time.monotonic() - started
        final = await orch.wait(job["id"])
        assert final["status"] == "succeeded", final["error"]
        assert backend.capacity()["watches"] > watches_before, "the watches were really cut and re-opened"
        events = await store.events(job["id"])
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        texts = "".join(e["output"]["text"] for e in events if e["type"] == "cell.output")
        assert texts == "".join(f"a {i}\n" for i in range(12)) + "b done\n"
        transitions = [(e["type"], e["step"]) for e in events if e["type"] in ("step.start", "step.end")]
        assert transitions == [
            ("step.start", "first"),
            ("step.end", "first"),
            ("step.start", "second"),
            ("step.end", "second"),
        ], f"each transition once (API server away {away:.1f}s)"
        assert [e["type"] for e in events].count("job.end") == 1

    run(k8s_cluster, namespace, tmp_path, body)


def test_an_image_that_cannot_be_pulled_is_named_and_fails_the_step(
    k8s_cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    image = "registry.invalid/team/no-such-image:1.0"
    nb = write(tmp_path, "pull.ipynb", [(["step:train", f"image:{image}"], "print('never')")])

    async def body(orch: Orchestrator, store: AsyncStore, backend: KubernetesBackend) -> None:
        job, _ = await orch.submit(JobSpec(notebook=nb), "ada")
        final = await asyncio.wait_for(orch.wait(job["id"]), 60)
        assert final["status"] == "failed"
        message = final["error"]["message"]
        assert f"step 'train' failed: its image {image!r} could not be pulled for 3s" in message, message
        assert final["error"]["reason"] == "image_pull", final["error"]
        events = await store.events(job["id"])
        told = [e for e in events if e["type"] == "log" and e.get("reason") == "image_pull"]
        assert told, "the user was told while the step waited"
        assert f"step 'train' cannot start: its image {image!r} cannot be pulled" in told[0]["text"]
        assert "the step fails if it cannot be pulled within 3s" in told[0]["text"]
        assert told[0]["seq"] < next(e["seq"] for e in events if e["type"] == "step.end")
        assert [e["type"] for e in events].count("step.end") == 1
        jobs = backend.jobs
        assert jobs is not None
        with contextlib.suppress(TimeoutError):  # the backend's own watch of Jobs sees the deletion
            await jobs.wait_for(lambda: not jobs.objects, timeout=10)
        assert not (await backend.batch.list_namespaced_job(namespace)).items, "the Job was deleted"

    run(k8s_cluster, namespace, tmp_path, body, image_pull_grace=3.0)


def emitting(tag: str, count: int) -> str:
    """Python printing `count` runner-format events (like `--events-stdout`) tagged `tag`."""
    return (
        f"import json\nfor n in range(1, {count + 1}):\n"
        f"    print({LINE_PREFIX!r} + json.dumps({{'type': 'log', 'n': n, 'text': {tag!r} + str(n)}}), flush=True)\n"
    )


def test_previous_container_log_is_read_after_a_restart(k8s_cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    """A container restarted in place (restartPolicy OnFailure; the process kubelet restarts it):
    its first run's events are read from `previous=true`, none lost or doubled. The backend only
    starts reading once the restart has happened, so the previous log is the only way to them."""
    marker = tmp_path / "ran-once"
    script = (
        f"import pathlib, sys\nif pathlib.Path({str(marker)!r}).exists():\n"
        + textwrap.indent(emitting("second-", 3), "    ")
        # a runner ends with its own step.end (without one the backend fails the step: its
        # events did not all arrive)
        + f"    print({LINE_PREFIX!r} + json.dumps({{'type': 'step.end', 'n': 4, 'status': 'ok'}}), flush=True)\n"
        + "    sys.exit(0)\n"
        + emitting("first-", 5)
        + f"pathlib.Path({str(marker)!r}).write_text('ran')\nsys.exit(3)\n"
    )
    pinned = k8s_cluster.pinned()
    name = "jx-restart-test"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{name}-pod", "labels": {LABEL_MANAGED_BY: MANAGED_BY, "job-name": name}},
        "spec": {
            "restartPolicy": "OnFailure",
            "containers": [{"name": "runner", "image": "not-pulled", "command": [sys.executable, "-c", script]}],
            **pinned,
        },
    }

    async def body() -> None:
        backend = KubernetesBackend(namespace=namespace, kubeconfig=k8s_cluster.kubeconfig, preflight_checks=False)
        await backend.start()
        try:
            await backend.core.create_namespaced_pod(namespace, pod)
            assert backend.pods is not None

            def restarted() -> bool:
                current = backend.pods.objects.get(f"{name}-pod")  # type: ignore[union-attr]
                statuses = ((current or {}).get("status") or {}).get("containerStatuses") or []
                return bool(statuses) and statuses[0].get("restartCount") == 1

            await backend.pods.wait_for(restarted, timeout=60)
            # A handle as an older server stored it (no backend, transport or started): it still loads.
            handle = backend.load_handle(
                {"namespace": namespace, "job_name": name, "step": "s", "attempt_dir": str(tmp_path)}
            )
            got: list[dict[str, Any]] = []
            outcomes: list[Outcome] = []
            async for item in backend.events(handle, 0):
                if isinstance(item, Outcome):
                    outcomes.append(item)
                else:
                    assert not outcomes, "the outcome is the last item"
                    got += item
            texts = [e["text"] for e in got if e["type"] == "log"]
            assert texts == [f"first-{i}" for i in range(1, 6)] + [f"second-{i}" for i in range(1, 4)]
            assert [e["n"] for e in got][-4:] == [RESTART_STRIDE + i for i in (1, 2, 3, 4)]
            assert [o.exit_code for o in outcomes] == [0]
        finally:
            await backend.stop()

    asyncio.run(asyncio.wait_for(body(), 120))
