"""The process kubelet (test-only) against the real apiserver, scheduler and Job controller.

These pin down the contract the product's Kubernetes backend is tested against: pods on the proc
node really run, their status and logs look like a kubelet's, and deletion/deadlines kill them.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from kubernetes_asyncio import client

from tests.kubernetes.conftest import Cluster

pytestmark = pytest.mark.k8s
CRI_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z) (.*)$")


def pod_spec(cluster: Cluster, code: str, **extra: Any) -> dict[str, Any]:
    """A pod spec on the proc node running `python -c code` (restartPolicy Never)."""
    container = {"name": "main", "image": "python:3", "command": ["python", "-c", code]}
    container |= extra.pop("container", {})
    return {"restartPolicy": "Never", "containers": [container], **cluster.pinned(), **extra}


def job(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"backoffLimit": 0, "template": {"spec": spec}}}


async def until(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    """Poll `check` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.2)


async def job_condition(batch: Any, name: str, ns: str, timeout: float = 30) -> client.V1JobCondition:
    async def check() -> Any:
        job = await batch.read_namespaced_job_status(name, ns)
        done = [c for c in job.status.conditions or [] if c.type in ("Complete", "Failed") and c.status == "True"]
        return done[0] if done else None

    return await until(check, timeout, f"job {name} to finish")


async def only_pod(core: Any, ns: str, job_name: str) -> client.V1Pod:
    async def check() -> Any:
        pods = (await core.list_namespaced_pod(ns, label_selector=f"job-name={job_name}")).items
        return pods[0] if len(pods) == 1 else None

    return await until(check, 30, f"the pod of job {job_name}")


async def read_log(core: Any, name: str, ns: str, **params: Any) -> str:
    """pods/log as text. Raw on purpose: with the default _preload_content=True the client
    json-decodes the body first, so a log that is just "12345\n" comes back as "12345"."""
    resp = await core.read_namespaced_pod_log(name, ns, _preload_content=False, **params)
    try:
        text = str(await resp.text())
    finally:
        resp.close()
    if resp.status != 200:  # e.g. 400 "no logs found" until the Logs object exists
        raise client.ApiException(status=resp.status, reason=text)
    return text


async def log_text(core: Any, name: str, ns: str, needle: str) -> str:
    async def check() -> str | None:
        try:
            text = await read_log(core, name, ns)
        except client.ApiException:  # 400 until the Logs object exists
            return None
        return text if needle in text else None

    return await until(check, 30, f"{needle!r} in the log of {name}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_job_completes_and_its_log_is_served(k8s_cluster: Cluster, namespace: str) -> None:
    async def main() -> None:
        async with k8s_cluster.clients() as (api, core, batch):
            code = "print('hi'); import sys; sys.exit(0)"
            await batch.create_namespaced_job(namespace, job("hello", pod_spec(k8s_cluster, code)))
            cond = await job_condition(batch, "hello", namespace)
            assert cond.type == "Complete"
            pod = await only_pod(core, namespace, "hello")
            assert pod.spec.node_name == k8s_cluster.proc_node
            assert pod.status.phase == "Succeeded"
            term = pod.status.container_statuses[0].state.terminated
            assert (term.exit_code, term.reason) == (0, "Completed")
            assert term.started_at and term.finished_at
            conds = {c.type: c.status for c in pod.status.conditions}
            assert conds["PodScheduled"] == "True" and conds["Ready"] == "False"
            assert await read_log(core, pod.metadata.name, namespace) == "hi\n"

    asyncio.run(main())


def test_exit_137_is_oomkilled_and_fails_the_job(k8s_cluster: Cluster, namespace: str) -> None:
    async def main() -> None:
        async with k8s_cluster.clients() as (api, core, batch):
            code = "import sys; print('allocating', flush=True); sys.exit(137)"
            await batch.create_namespaced_job(namespace, job("oom", pod_spec(k8s_cluster, code)))
            cond = await job_condition(batch, "oom", namespace)
            assert (cond.type, cond.reason) == ("Failed", "BackoffLimitExceeded")
            pod = await only_pod(core, namespace, "oom")
            assert pod.status.phase == "Failed"
            term = pod.status.container_statuses[0].state.terminated
            assert (term.exit_code, term.reason) == (137, "OOMKilled")

    asyncio.run(main())


@pytest.mark.parametrize("policy", ["Foreground", "Background"])
def test_deleting_a_running_job_stops_its_process(k8s_cluster: Cluster, namespace: str, policy: str) -> None:
    async def main() -> None:
        async with k8s_cluster.clients() as (api, core, batch):
            code = "import os, time\nprint(os.getpid(), flush=True)\nwhile True: time.sleep(0.1)"
            await batch.create_namespaced_job(namespace, job("sleeper", pod_spec(k8s_cluster, code)))
            pod = await only_pod(core, namespace, "sleeper")
            pid = int(await log_text(core, pod.metadata.name, namespace, "\n"))
            assert pid_alive(pid)
            t0 = time.monotonic()
            await batch.delete_namespaced_job("sleeper", namespace, propagation_policy=policy)

            async def gone() -> bool:
                pods = await core.list_namespaced_pod(namespace, label_selector="job-name=sleeper")
                jobs = await batch.list_namespaced_job(namespace)
                return not pods.items and not jobs.items

            await until(gone, 30, "the job and its pod to disappear")
            assert not pid_alive(pid)
            assert time.monotonic() - t0 < 15  # SIGTERM ended it; no 30 s grace period was waited out

    asyncio.run(main())


def test_sigkill_after_the_grace_period(k8s_cluster: Cluster, namespace: str) -> None:
    async def main() -> None:
        async with k8s_cluster.clients() as (api, core, _):
            code = (
                "import os, signal, time\n"
                "signal.signal(signal.SIGTERM, lambda *a: print('TERM ignored', flush=True))\n"
                "print(os.getpid(), flush=True)\n"
                "while True: time.sleep(0.1)"
            )
            spec = pod_spec(k8s_cluster, code, terminationGracePeriodSeconds=2)
            await core.create_namespaced_pod(namespace, {"metadata": {"name": "stubborn"}, "spec": spec})
            pid = int((await log_text(core, "stubborn", namespace, "\n")).split()[0])
            t0 = time.monotonic()
            await core.delete_namespaced_pod("stubborn", namespace)
            await log_text(core, "stubborn", namespace, "TERM ignored")  # still Terminating, still served

            async def gone() -> bool:
                return not (await core.list_namespaced_pod(namespace)).items

            await until(gone, 20, "the pod to disappear")
            assert time.monotonic() - t0 >= 1.8
            assert not pid_alive(pid)

    asyncio.run(main())


def test_active_deadline_seconds(k8s_cluster: Cluster, namespace: str) -> None:
    async def main() -> None:
        async with k8s_cluster.clients() as (api, core, _):
            spec = pod_spec(k8s_cluster, "import time; time.sleep(60)", activeDeadlineSeconds=2)
            await core.create_namespaced_pod(namespace, {"metadata": {"name": "slow"}, "spec": spec})

            async def failed() -> Any:
                pod = await core.read_namespaced_pod("slow", namespace)
                return pod if pod.status.phase == "Failed" else None

            pod = await until(failed, 20, "the pod to fail")
            assert pod.status.reason == "DeadlineExceeded"
            term = pod.status.container_statuses[0].state.terminated
            assert (term.exit_code, term.reason) == (143, "Error")

    asyncio.run(main())


def test_follow_streams_timestamped_lines_while_running(k8s_cluster: Cluster, namespace: str) -> None:
    async def main() -> None:
        async with k8s_cluster.clients() as (api, core, _):
            code = "import time\nfor i in range(1, 7):\n    print(f'line {i}', flush=True)\n    time.sleep(0.6)"
            await core.create_namespaced_pod(
                namespace, {"metadata": {"name": "talker"}, "spec": pod_spec(k8s_cluster, code)}
            )
            await log_text(core, "talker", namespace, "line")
            resp = await core.read_namespaced_pod_log(
                "talker", namespace, follow=True, timestamps=True, _preload_content=False
            )
            got: list[tuple[float, str, str]] = []
            try:
                while len(got) < 6:
                    raw = await asyncio.wait_for(resp.content.readline(), 15)
                    m = CRI_TS.match(raw.decode().rstrip("\n"))
                    assert m, raw
                    got.append((time.monotonic(), m[1], m[2]))
                    if len(got) == 1:  # the process is still printing: the pod is Running
                        pod = await core.read_namespaced_pod("talker", namespace)
                        assert pod.status.phase == "Running", pod.status
                        assert pod.status.pod_ip and pod.status.container_statuses[0].state.running.started_at
                        assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "True"
            finally:
                resp.close()
            assert [text for _, _, text in got] == [f"line {i}" for i in range(1, 7)]
            assert got[-1][0] - got[0][0] > 1.5  # lines arrived as they were printed, not at the end
            # resume: sinceTime has whole-second precision on its way to the kubelet, so a reader
            # gets every line from that second on and drops the ones it already has
            since = got[2][1]
            text = await api.call_api(
                "/api/v1/namespaces/{namespace}/pods/{name}/log",
                "GET",
                path_params={"namespace": namespace, "name": "talker"},
                query_params=[("sinceTime", since), ("timestamps", "true")],
                response_types_map={200: "str"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
            )
            lines = [CRI_TS.match(line) for line in text.splitlines()]
            assert all(lines) and all(m[1] >= since[:19] for m in lines if m), text
            assert [m[2] for m in lines if m][-4:] == ["line 3", "line 4", "line 5", "line 6"]
            assert "line 1" not in text

    asyncio.run(main())


def test_env_and_configmap_volume_emulation(k8s_cluster: Cluster, namespace: str) -> None:
    async def main() -> None:
        async with k8s_cluster.clients() as (api, core, _):
            cm = {
                "metadata": {"name": "cfg"},
                "data": {"greeting": "hello"},
                "binaryData": {"blob": base64.b64encode(b"\x00\x01\x02").decode()},
            }
            await core.create_namespaced_config_map(namespace, cm)
            code = (
                "import os, sys\n"
                "print(open(sys.argv[1]).read(), len(open('/etc/cfg/blob', 'rb').read()))\n"
                "print(os.environ['B'], os.environ['POD'], os.path.isfile(os.environ['CFG']))\n"
                "print(os.getcwd() == os.environ['JUPYTER_EXT_TEST_ROOT'], 'KUBERNETES_SERVICE_HOST' in os.environ)\n"
                "print(os.path.isfile(os.environ['KUBECONFIG']))\n"
            )
            container = {
                "args": ["/etc/cfg/greeting"],
                "env": [
                    {"name": "A", "value": "x"},
                    {"name": "B", "value": "$(A)-y"},
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "CFG", "value": "/etc/cfg/greeting"},
                ],
                "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}],
            }
            spec = pod_spec(
                k8s_cluster, code, container=container, volumes=[{"name": "cfg", "configMap": {"name": "cfg"}}]
            )
            await core.create_namespaced_pod(namespace, {"metadata": {"name": "envy"}, "spec": spec})

            async def done() -> Any:
                pod = await core.read_namespaced_pod("envy", namespace)
                return pod if pod.status.phase in ("Succeeded", "Failed") else None

            pod = await until(done, 30, "the pod to finish")
            log = await read_log(core, "envy", namespace)
            assert pod.status.phase == "Succeeded", log
            assert log.splitlines() == ["hello 3", "x-y envy True", "True False", "True"]

    asyncio.run(main())
