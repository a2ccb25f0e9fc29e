"""The Kubernetes backend's last word on a manifest: cancel grace and the operator's hook."""

from __future__ import annotations

import asyncio
from typing import Any

from jupyter_ext.backends.base import StepLaunch
from jupyter_ext.backends.kubernetes import KubernetesBackend


def launch() -> StepLaunch:
    return StepLaunch(
        job_id="j1", step="train", attempt=1, user="ada", notebook="/d/s.ipynb", attempt_dir="/d/a", workdir="/d"
    )


def test_cancel_grace_becomes_the_pods_termination_grace() -> None:
    backend = KubernetesBackend(namespace="ns", image="img", cancel_grace=7.0)
    job = asyncio.run(backend.build_job(launch(), ["python", "-m", "jupyter_ext.runner"]))
    assert job["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 7


def test_modify_pod_hook_sync_and_async() -> None:
    seen: list[Any] = []

    def edit(backend: Any, step: StepLaunch, pod: dict[str, Any]) -> None:
        seen.append(step.step)
        pod["metadata"]["labels"]["team"] = "vision"

    async def replace(backend: Any, step: StepLaunch, pod: dict[str, Any]) -> dict[str, Any]:
        return {**pod, "spec": {**pod["spec"], "priorityClassName": "batch-low"}}

    job = asyncio.run(KubernetesBackend(namespace="ns", image="img", modify_pod_hook=edit).build_job(launch(), ["x"]))
    assert seen == ["train"] and job["spec"]["template"]["metadata"]["labels"]["team"] == "vision"
    job = asyncio.run(
        KubernetesBackend(namespace="ns", image="img", modify_pod_hook=replace).build_job(launch(), ["x"])
    )
    assert job["spec"]["template"]["spec"]["priorityClassName"] == "batch-low"
    assert job["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
