"""jupyter_ext.hub's pure parts: the RBAC objects, the environment, the home claim, hook chaining."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import yaml
from traitlets.config import Config

from jupyter_ext.backends.slugs import is_dns_label
from jupyter_ext.hub import (
    ROLE_RULES,
    HubIntegration,
    UserAccess,
    chain_modify_pod_hooks,
    chain_pre_spawn_hooks,
    configure_kubespawner,
    extension_env,
    home_claim,
)

ROOT = Path(__file__).resolve().parents[2]
META = {
    "name": "jupyter-ext-alice",
    "namespace": "jupyterhub-alice",
    "labels": {"app.kubernetes.io/managed-by": "jupyter-ext-hub", "jupyter-ext/user": "alice"},
    "annotations": {"jupyter-ext/user": "alice"},
}


def test_service_account_role_and_binding_are_exactly_these() -> None:
    access = UserAccess.of("alice", "jupyterhub-alice")
    assert access.service_account() == {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": META}
    assert access.role() == {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": META,
        "rules": [
            {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "watch", "delete"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get", "delete"]},
            {"apiGroups": [""], "resources": ["resourcequotas"], "verbs": ["get", "list"]},
        ],
    }
    assert access.role_binding() == {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": META,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "jupyter-ext-alice"},
        "subjects": [{"kind": "ServiceAccount", "name": "jupyter-ext-alice", "namespace": "jupyterhub-alice"}],
    }


def test_role_is_the_one_documented_in_docs_kubernetes_md() -> None:
    text = (ROOT / "docs" / "kubernetes.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    roles = [b for b in blocks if isinstance(b, dict) and b.get("kind") == "Role"]
    assert len(roles) == 1
    assert roles[0]["rules"] == ROLE_RULES


def test_names_are_valid_and_distinct_for_awkward_usernames() -> None:
    names = {UserAccess.of(u, "hub").name for u in ("Ada@Example.org", "ada@example.org", "ada-example-org", "a" * 80)}
    assert len(names) == 4
    assert all(is_dns_label(n) for n in names)
    odd = UserAccess.of("Ada@Example.org", "hub")
    assert odd.metadata()["annotations"] == {"jupyter-ext/user": "Ada@Example.org"}
    assert re.fullmatch(r"Ada-Example\.org---[0-9a-f]{8}", odd.metadata()["labels"]["jupyter-ext/user"])


def test_environment_with_and_without_a_home_claim() -> None:
    base = {
        "JUPYTER_EXT_BACKEND": "kubernetes",
        "JUPYTER_EXT_NAMESPACE": "jupyterhub-alice",
        "JUPYTER_EXT_IMAGE": "quay.io/jupyter/scipy-notebook:2025-01-01",
        "JUPYTER_EXT_SERVICE_ACCOUNT": "jupyter-ext-alice",
        "JUPYTER_EXT_HOME_MOUNT": "/home/jovyan",
    }
    kw: dict[str, Any] = {
        "namespace": "jupyterhub-alice",
        "image": "quay.io/jupyter/scipy-notebook:2025-01-01",
        "service_account": "jupyter-ext-alice",
    }
    assert extension_env(**kw) == base
    assert extension_env(**kw, home_claim="claim-alice", home_rwo=True, artifact_store="s3://b/alice") == {
        **base,
        "JUPYTER_EXT_HOME_CLAIM": "claim-alice",
        "JUPYTER_EXT_HOME_RWO": "1",
        "JUPYTER_EXT_ARTIFACT_STORE": "s3://b/alice",
    }
    rwx = extension_env(**kw, home_claim="nfs-home", home_mount="/home/alice", home_rwo=False)
    assert rwx["JUPYTER_EXT_HOME_RWO"] == "0" and rwx["JUPYTER_EXT_HOME_MOUNT"] == "/home/alice"


def test_home_claim_is_the_claim_mounted_at_home_in_the_notebook_container() -> None:
    spec = {
        "containers": [
            {"name": "sidecar", "volumeMounts": [{"name": "other", "mountPath": "/home/jovyan"}]},
            {
                "name": "notebook",
                "volumeMounts": [
                    {"name": "scratch", "mountPath": "/scratch"},
                    {"name": "volume-alice", "mountPath": "/home/jovyan/"},
                ],
            },
        ],
        "volumes": [
            {"name": "other", "persistentVolumeClaim": {"claimName": "not-this"}},
            {"name": "scratch", "persistentVolumeClaim": {"claimName": "scratch-claim"}},
            {"name": "volume-alice", "persistentVolumeClaim": {"claimName": "claim-alice"}},
        ],
    }
    assert home_claim(spec, "/home/jovyan") == "claim-alice"
    assert home_claim(spec, "/scratch") == "scratch-claim"
    assert home_claim(spec, "/data") is None
    empty_dir = {"containers": [{"name": "notebook", "volumeMounts": [{"name": "h", "mountPath": "/home/jovyan"}]}]}
    assert home_claim({**empty_dir, "volumes": [{"name": "h", "emptyDir": {}}]}, "/home/jovyan") is None


def test_chained_hooks_run_in_order_sync_or_async() -> None:
    seen: list[str] = []

    def first(spawner: Any, pod: dict[str, Any]) -> None:  # edits in place, returns None
        seen.append("first")
        pod["by"] = ["first"]

    async def second(spawner: Any, pod: dict[str, Any]) -> dict[str, Any]:
        seen.append("second")
        return {**pod, "by": [*pod["by"], "second"]}

    pod = asyncio.run(chain_modify_pod_hooks(first, None, second)(object(), {}))
    assert pod == {"by": ["first", "second"]} and seen == ["first", "second"]

    async def pre(spawner: list[str]) -> None:
        spawner.append("async")

    calls: list[str] = []
    asyncio.run(chain_pre_spawn_hooks(lambda s: s.append("sync"), pre)(calls))
    assert calls == ["sync", "async"]


def test_configure_kubespawner_keeps_the_admins_hooks() -> None:
    c = Config()
    admin_pre_calls: list[Any] = []
    c.Spawner.pre_spawn_hook = admin_pre_calls.append  # set on Spawner: KubeSpawner inherits it

    def admin_pod_hook(spawner: Any, pod: Any) -> Any:
        return pod

    c.KubeSpawner.modify_pod_hook = admin_pod_hook
    hub = configure_kubespawner(c, artifact_store="file:///srv/artifacts/{username}", home_rwo=False)
    assert hub == HubIntegration(artifact_store="file:///srv/artifacts/{username}", home_rwo=False)
    assert c.KubeSpawner.pre_spawn_hook is not admin_pre_calls.append
    assert c.KubeSpawner.modify_pod_hook is not admin_pod_hook

    class Spawner:  # just the attributes `setup` reads and writes
        class user:
            name = "alice"

        namespace = "jupyterhub-alice"
        enable_user_namespaces = True

    spawner = Spawner()
    asyncio.run(c.KubeSpawner.pre_spawn_hook(spawner))
    assert admin_pre_calls == [spawner]  # the admin's hook still ran, after ours
    assert spawner.service_account == "jupyter-ext-alice"  # type: ignore[attr-defined]
    assert spawner.automount_service_account_token is True  # type: ignore[attr-defined]

    fresh = Config()
    configure_kubespawner(fresh)
    assert callable(fresh.KubeSpawner.pre_spawn_hook) and callable(fresh.KubeSpawner.modify_pod_hook)


def test_the_backend_defaults_to_what_the_hub_sets(monkeypatch: Any) -> None:
    from jupyter_ext.app import JupyterExt

    monkeypatch.delenv("JUPYTER_EXT_BACKEND", raising=False)
    assert JupyterExt().backend == "local"
    monkeypatch.setenv("JUPYTER_EXT_BACKEND", "kubernetes")
    assert JupyterExt().backend == "kubernetes"
    assert JupyterExt(backend="local").backend == "local"  # configuration still wins
