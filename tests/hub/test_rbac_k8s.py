"""jupyter_ext.hub's RBAC on the real control plane of scripts/k8s.

A real KubeSpawner (JupyterHub's, from PyPI; `_mock` only supplies the hub user object) is
configured by `configure_kubespawner` and builds alice's and bob's pods: our hooks create the
ServiceAccount, Role and RoleBinding in each user's namespace. Then SubjectAccessReviews say
what each account may do, and the extension's own preflight runs with alice's token.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client, config
from traitlets.config import Config

from jupyter_ext.backends.kubernetes import KubernetesBackend
from jupyter_ext.errors import ValidationError
from jupyter_ext.hub import ROLE_RULES, UserAccess, configure_kubespawner, ensure_user_access
from jupyter_ext.models import Resources
from tests.kubernetes.conftest import Cluster

pytestmark = [pytest.mark.k8s, pytest.mark.hub, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


class HubUser:
    """What KubeSpawner reads of JupyterHub's User object."""

    def __init__(self, name: str) -> None:
        self.name, self.id, self.url = name, hash(name) % 10_000, f"/user/{name}/"


def hub_config(prefix: str, admin_seen: list[dict[str, str]]) -> Config:
    c = Config()
    c.KubeSpawner.enable_user_namespaces = True
    c.KubeSpawner.user_namespace_template = prefix + "-{username}"
    c.KubeSpawner.image = "quay.io/jupyter/scipy-notebook:2025-03-14"
    c.KubeSpawner.pvc_name_template = "claim-{username}"
    c.KubeSpawner.storage_pvc_ensure = True
    c.KubeSpawner.storage_capacity = "1Gi"
    c.KubeSpawner.start_timeout = 90
    c.KubeSpawner.volumes = [{"name": "home", "persistentVolumeClaim": {"claimName": "claim-{username}"}}]
    c.KubeSpawner.volume_mounts = [{"name": "home", "mountPath": "/home/jovyan"}]

    def admin_hook(spawner: Any, pod: Any) -> Any:  # the admin's own hook, set before ours: it must still run
        admin_seen.append({e.name: e.value for e in pod.spec.containers[0].env or []})
        pod.metadata.labels["site/team"] = "ml"
        return pod

    c.KubeSpawner.modify_pod_hook = admin_hook
    configure_kubespawner(c, artifact_store="s3://artifacts/{username}")
    return c


async def spawn(c: Config, user: str, cluster: Cluster) -> Any:
    """What JupyterHub does to start `user`'s server: pre_spawn_hook, then KubeSpawner.start(), for real.

    KubeSpawner creates the namespace, the home PVC (bound to a PV made here) and the pod, after
    our modify_pod_hook; KWOK runs the pod. Returns (the spawner, the pod as the API server has it).
    """
    from kubespawner import KubeSpawner

    spawner = KubeSpawner(config=c, user=HubUser(user), _mock=True)
    async with cluster.clients() as (_, core, _):
        await core.create_persistent_volume(
            {
                "metadata": {"name": f"{spawner.namespace}-home"},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "hostPath": {"path": f"/tmp/{spawner.namespace}"},
                    "claimRef": {"namespace": spawner.namespace, "name": f"claim-{user}"},
                },
            }
        )
        await spawner.run_pre_spawn_hook()
        await asyncio.wait_for(spawner.start(), 120)
        return spawner, await core.read_namespaced_pod(spawner.pod_name, spawner.namespace)


async def allowed(
    api: Any, user: str, namespace: str, verb: str, resource: str, group: str = "", sub: str = ""
) -> bool:
    attrs = {"namespace": namespace, "verb": verb, "group": group, "resource": resource, "subresource": sub}
    review = await client.AuthorizationV1Api(api).create_subject_access_review(
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {"user": user, "resourceAttributes": attrs},
        }
    )
    return bool(review.status.allowed)


async def kubeconfig_for(cluster: Cluster, account: str, namespace: str, path: Path) -> str:
    """A kubeconfig holding a short-lived token of a ServiceAccount (TokenRequest API)."""
    async with cluster.clients() as (_, core, _):
        token = await core.create_namespaced_service_account_token(
            account, namespace, {"spec": {"expirationSeconds": 600}}
        )
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    server = next(c for c in admin["clusters"] if c["name"] == context["context"]["cluster"])
    user = {"name": account, "user": {"token": token.status.token}}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [server],
        "users": [user],
        "contexts": [{"name": "me", "context": {"cluster": server["name"], "user": account}}],
        "current-context": "me",
    }
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_each_users_account_runs_jobs_in_their_namespace_only(
    k8s_cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # KubeSpawner loads the default kubeconfig (in a hub: the in-cluster account); kubernetes_asyncio
    # read $KUBECONFIG when it was imported, before the cluster fixture set it.
    monkeypatch.setattr("kubernetes_asyncio.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", k8s_cluster.kubeconfig)
    prefix = f"hub-{uuid.uuid4().hex[:6]}"
    admin_seen: list[dict[str, str]] = []
    c = hub_config(prefix, admin_seen)
    ns = {u: f"{prefix}-{u}" for u in ("alice", "bob")}
    sa = {u: f"system:serviceaccount:{ns[u]}:jupyter-ext-{u}" for u in ns}

    async def main() -> None:
        spawned = {u: await spawn(c, u, k8s_cluster) for u in ns}
        alice, alice_pod = spawned["alice"]
        assert alice_pod.metadata.namespace == ns["alice"] and alice_pod.status.phase == "Running"
        assert alice_pod.spec.service_account_name == "jupyter-ext-alice"
        assert alice_pod.spec.automount_service_account_token is True
        env = {e.name: e.value for e in alice_pod.spec.containers[0].env}
        assert {k: v for k, v in env.items() if k.startswith("JUPYTER_EXT_")} == {
            "JUPYTER_EXT_BACKEND": "kubernetes",
            "JUPYTER_EXT_NAMESPACE": ns["alice"],
            "JUPYTER_EXT_IMAGE": "quay.io/jupyter/scipy-notebook:2025-03-14",
            "JUPYTER_EXT_SERVICE_ACCOUNT": "jupyter-ext-alice",
            "JUPYTER_EXT_HOME_MOUNT": "/home/jovyan",
            "JUPYTER_EXT_HOME_CLAIM": "claim-alice",
            "JUPYTER_EXT_HOME_RWO": "1",  # KubeSpawner's default storage_access_modes
            "JUPYTER_EXT_ARTIFACT_STORE": "s3://artifacts/alice",
        }
        assert env["JUPYTERHUB_USER"] == "alice"
        # the admin's hook ran after ours (it saw our environment) and its change stayed
        assert admin_seen[0]["JUPYTER_EXT_NAMESPACE"] == ns["alice"] and alice_pod.metadata.labels["site/team"] == "ml"

        async with k8s_cluster.clients() as (api, core, _):
            rbac = client.RbacAuthorizationV1Api(api)
            role = await rbac.read_namespaced_role("jupyter-ext-alice", ns["alice"])
            assert api.sanitize_for_serialization(role)["rules"] == ROLE_RULES
            # idempotent, and it repairs: an edited Role gets exactly our rules back on the next spawn
            await rbac.patch_namespaced_role(
                "jupyter-ext-alice",
                ns["alice"],
                {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]},
                _content_type="application/merge-patch+json",
            )
            await alice.stop()
            await asyncio.wait_for(alice.start(), 120)  # the next spawn of the same user
            role = await rbac.read_namespaced_role("jupyter-ext-alice", ns["alice"])
            assert api.sanitize_for_serialization(role)["rules"] == ROLE_RULES
            await ensure_user_access(api, UserAccess.of("alice", ns["alice"]))  # nothing left to create: 409s

            for user, mine, other in ((sa["alice"], ns["alice"], ns["bob"]), (sa["bob"], ns["bob"], ns["alice"])):
                assert await allowed(api, user, mine, "create", "jobs", "batch")
                assert await allowed(api, user, mine, "get", "pods", sub="log")
                assert await allowed(api, user, mine, "watch", "events")
                for verb, resource, group, sub in (
                    ("create", "jobs", "batch", ""),
                    ("list", "jobs", "batch", ""),
                    ("list", "pods", "", ""),
                    ("get", "pods", "", "log"),
                    ("delete", "jobs", "batch", ""),
                ):
                    assert not await allowed(api, user, other, verb, resource, group, sub), (user, other, verb)
                # and nothing beyond the Role, even at home
                assert not await allowed(api, user, mine, "create", "pods")
                assert not await allowed(api, user, mine, "get", "secrets")
                assert not await allowed(api, user, mine, "create", "rolebindings", "rbac.authorization.k8s.io")

        # The extension's own preflight, run as alice's account: passes at home, refuses in bob's namespace.
        alice_account = UserAccess.of("alice", ns["alice"])
        kubeconfig = await kubeconfig_for(k8s_cluster, alice_account.name, ns["alice"], tmp_path / "alice.kubeconfig")
        for namespace, ok in ((ns["alice"], True), (ns["bob"], False)):
            backend = KubernetesBackend(kubeconfig=kubeconfig, namespace=namespace, shared_paths=True)
            try:
                if ok:
                    await backend.preflight([("train", Resources(cpu="1", memory="1Gi"))])
                else:
                    with pytest.raises(
                        ValidationError, match=r"step 'train' cannot run: this server may not create jobs"
                    ):
                        await backend.preflight([("train", Resources(cpu="1", memory="1Gi"))])
            finally:
                await backend.stop()

        async with k8s_cluster.clients() as (_, core, _):
            for user, namespace in ns.items():
                await spawned[user][0].stop()
                await core.delete_namespace(namespace)
                await core.delete_persistent_volume(f"{namespace}-home")

    asyncio.run(main())


def test_the_hub_clusterrole_of_the_docs_is_enough_to_set_up_a_user(k8s_cluster: Cluster, tmp_path: Path) -> None:
    """docs/jupyterhub.md's ClusterRole, bound to a hub account, lets it create (and re-apply) a user's objects."""
    text = (ROOT / "docs" / "jupyterhub.md").read_text()
    blocks = [d for b in re.findall(r"```yaml\n(.*?)```", text, re.S) for d in yaml.safe_load_all(b) if d]
    role = next(d for d in blocks if d.get("kind") == "ClusterRole")
    binding = next(d for d in blocks if d.get("kind") == "ClusterRoleBinding")
    suffix = uuid.uuid4().hex[:6]
    hub_ns, user_ns = f"hub-{suffix}", f"hub-{suffix}-carol"
    role["metadata"]["name"] = binding["roleRef"]["name"] = binding["metadata"]["name"] = f"jupyter-ext-hub-{suffix}"
    binding["subjects"][0]["namespace"] = hub_ns

    async def main() -> None:
        async with k8s_cluster.clients() as (api, core, _):
            rbac = client.RbacAuthorizationV1Api(api)
            await core.create_namespace({"metadata": {"name": hub_ns}})
            await core.create_namespaced_service_account(hub_ns, {"metadata": {"name": "hub"}})
            await rbac.create_cluster_role(role)
            await rbac.create_cluster_role_binding(binding)
        try:
            kubeconfig = await kubeconfig_for(k8s_cluster, "hub", hub_ns, tmp_path / "hub.kubeconfig")
            cfg = client.Configuration()
            await config.load_kube_config(config_file=kubeconfig, client_configuration=cfg, persist_config=False)
            async with client.ApiClient(cfg) as as_hub:
                carol = UserAccess.of("carol", user_ns)
                await ensure_user_access(as_hub, carol, create_namespace=True)
                await ensure_user_access(as_hub, carol, create_namespace=True)  # the next spawn: 409s, then patches
            async with k8s_cluster.clients() as (api, _, _):
                account = f"system:serviceaccount:{user_ns}:jupyter-ext-carol"
                assert await allowed(api, account, user_ns, "create", "jobs", "batch")
                assert not await allowed(
                    api, f"system:serviceaccount:{hub_ns}:default", user_ns, "create", "jobs", "batch"
                )
        finally:
            async with k8s_cluster.clients() as (api, core, _):
                rbac = client.RbacAuthorizationV1Api(api)
                await rbac.delete_cluster_role_binding(binding["metadata"]["name"])
                await rbac.delete_cluster_role(role["metadata"]["name"])
                for namespace in (hub_ns, user_ns):
                    await core.delete_namespace(namespace)

    asyncio.run(main())
