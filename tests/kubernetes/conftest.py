"""Fixtures for tests against the real control plane of scripts/k8s (KWOK nodes + process kubelet).

The tests here never skip: a missing toolchain or a failed build/start fails them, with the
script's output in the message. The (possibly 8-16 min cold) build runs once, after collection
and outside any per-test timeout; `cluster.sh up` and the process kubelet are session fixtures.

Knobs: JUPYTER_EXT_K8S_TEST_CLUSTER (cluster name, default jupyter-ext-pytest, so a developer's
own `jupyter-ext` cluster is never touched), JUPYTER_EXT_K8S_KEEP=1 (leave it up afterwards).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client, config

from tests.kubernetes.process_kubelet import ProcessKubelet

HERE = Path(__file__).resolve().parent
SCRIPTS = HERE.parents[1] / "scripts" / "k8s"
CLUSTER_NAME = os.environ.get("JUPYTER_EXT_K8S_TEST_CLUSTER", "jupyter-ext-pytest")
_build_error: str | None = None


def _script(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    # the real node rotates container logs at 1 MiB, so tests see rotation under the event channel
    env = os.environ | {
        "CLUSTER_NAME": CLUSTER_NAME,
        "NODE_CONTAINER_LOG_MAX_SIZE": os.environ.get("NODE_CONTAINER_LOG_MAX_SIZE", "1Mi"),
    }
    return subprocess.run([str(SCRIPTS / args[0]), *args[1:]], env=env, capture_output=True, text=True, timeout=timeout)


def _explain(what: str, p: subprocess.CompletedProcess[str]) -> str:
    return (
        f"{what} failed (exit {p.returncode})\n--- stdout ---\n{p.stdout[-4000:]}\n--- stderr ---\n{p.stderr[-8000:]}"
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the binaries (0.2 s when cached) before any test runs, if a k8s test was selected."""
    global _build_error
    if any(HERE in Path(str(item.path)).parents for item in session.items):
        p = _script("build.sh", timeout=3600)
        _build_error = _explain("scripts/k8s/build.sh", p) if p.returncode else None


@dataclass
class Cluster:
    """What a test needs: the admin kubeconfig, the process-kubelet node and the kubelet itself."""

    kubeconfig: str
    proc_node: str
    kubelet: ProcessKubelet

    @asynccontextmanager
    async def clients(self) -> AsyncIterator[tuple[client.ApiClient, Any, Any]]:
        """(ApiClient, CoreV1Api, BatchV1Api) for the current event loop (each test uses asyncio.run).

        The APIs are typed Any: kubernetes_asyncio's annotations want model objects, while the
        tests pass plain dict bodies (which it serialises the same way).
        """
        cfg = client.Configuration()
        await config.load_kube_config(config_file=self.kubeconfig, client_configuration=cfg, persist_config=False)
        async with client.ApiClient(cfg) as api:
            yield api, client.CoreV1Api(api), client.BatchV1Api(api)

    def pinned(self) -> dict[str, object]:
        """Pod-spec fields that put a pod on the process-kubelet node through the real scheduler."""
        return {
            "nodeSelector": {"jupyter-ext.test/pool": "proc"},
            "tolerations": [{"key": "jupyter-ext.test/process-kubelet", "operator": "Exists", "effect": "NoSchedule"}],
        }


class _KubeletThread(threading.Thread):
    """The process kubelet on its own event loop, so synchronous tests and fixtures can use it."""

    def __init__(self, kubelet: ProcessKubelet) -> None:
        super().__init__(name="process-kubelet (test-only)", daemon=True)
        self.kubelet = kubelet
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            await self.kubelet.run()

        try:
            asyncio.run(main())
        except BaseException as e:  # reported by the fixture
            self.error = e
            self.kubelet.ready.set()

    def stop(self) -> None:
        if self.loop and self.is_alive():
            self.loop.call_soon_threadsafe(self.kubelet.stop)
        self.join(30)


@pytest.fixture(scope="session")
def k8s_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """`cluster.sh up` (its own cluster name), KUBECONFIG/PATH exported, process kubelet running."""
    if _build_error:
        pytest.fail(_build_error, pytrace=False)
    up = _script("cluster.sh", "up", timeout=600)
    if up.returncode:
        _script("cluster.sh", "down", timeout=120)
        pytest.fail(_explain("scripts/k8s/cluster.sh up", up), pytrace=False)
    exported = dict(
        line.removeprefix("export ").split("=", 1) for line in up.stdout.splitlines() if line.startswith("export ")
    )
    saved = {k: os.environ.get(k) for k in exported}
    for key, value in exported.items():  # values are shell-quoted; PATH is '<bin>':"$PATH"
        os.environ[key] = shlex.split(value.replace('"$PATH"', shlex.quote(os.environ.get("PATH", ""))))[0]
    kubeconfig, node = os.environ["KUBECONFIG"], os.environ["JUPYTER_EXT_K8S_PROC_NODE"]
    # the pods' `python` is this interpreter (the venv may not be on PATH when run as .venv/bin/python)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    kubelet = ProcessKubelet(node, tmp_path_factory.mktemp("process-kubelet"), kubeconfig=kubeconfig, path=path)
    thread = _KubeletThread(kubelet)
    thread.start()
    try:
        if not kubelet.ready.wait(60) or thread.error:
            pytest.fail(f"process kubelet did not start: {thread.error!r}", pytrace=False)
        yield Cluster(kubeconfig, node, kubelet)
    finally:
        thread.stop()
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        if os.environ.get("JUPYTER_EXT_K8S_KEEP") != "1":
            down = _script("cluster.sh", "down", timeout=120)
            assert down.returncode == 0, _explain("scripts/k8s/cluster.sh down", down)
    if thread.error:
        pytest.fail(f"process kubelet crashed: {thread.error!r}", pytrace=False)


@pytest.fixture
def namespace(k8s_cluster: Cluster) -> Iterator[str]:
    """A fresh namespace per test (deleted without waiting; the cluster goes at session end)."""
    name = f"t-{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        async with k8s_cluster.clients() as (_, core, _):
            await core.create_namespace({"metadata": {"name": name}})

    async def delete() -> None:
        async with k8s_cluster.clients() as (_, core, _):
            await core.delete_namespace(name)

    asyncio.run(create())
    yield name
    asyncio.run(delete())
