"""JupyterHub integration: every user's server runs steps as Jobs with its own Kubernetes account.

In ``jupyterhub_config.py`` (on zero-to-jupyterhub: a ``hub.extraConfig`` entry that sorts last):

    from jupyter_ext.hub import configure_kubespawner
    configure_kubespawner(c, artifact_store="s3://ml-artifacts/{username}")

Then, for each user, before KubeSpawner creates the user's pod:

1. ``pre_spawn_hook`` (`setup`): the pod will run as the user's own ServiceAccount, with its
   token mounted (the extension in the pod talks to the API server).
2. ``modify_pod_hook`` (`modify_pod`), where the namespace is final (after profiles and
   ``enable_user_namespaces``): create-or-patch, in the pod's namespace, the ServiceAccount,
   a Role allowing exactly what the kubernetes backend does (``ROLE_RULES`` of
   backends/kubernetes/rbac.py, the one table its RBAC preflight reads too; the Role of
   docs/kubernetes.md) and a RoleBinding; then the environment the extension reads
   (backend, namespace, the user's image, home claim, artifact store, service account).

Hooks the admin set before calling `configure_kubespawner` keep running: ours first, theirs
after (so theirs can still change the pod). Use ``enable_user_namespaces``: in a shared
namespace every user's account can see every user's pods and Jobs there.
The objects and the environment are built by pure functions, tested against literal dicts.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .backends.kubernetes.manifests import DEFAULT_HOME_MOUNT, LABEL_USER
from .backends.kubernetes.rbac import ROLE_RULES
from .backends.slugs import label_value, safe_slug

log = logging.getLogger(__name__)

MANAGED_BY = {"app.kubernetes.io/managed-by": "jupyter-ext-hub"}
NOTEBOOK_CONTAINER = "notebook"  # KubeSpawner's name for the user's container


@dataclass(frozen=True)
class UserAccess:
    """The Kubernetes objects that let one hub user's server run Jobs in one namespace."""

    username: str
    namespace: str
    name: str  # of the ServiceAccount, the Role and the RoleBinding alike

    @classmethod
    def of(cls, username: str, namespace: str, prefix: str = "jupyter-ext") -> UserAccess:
        """Names are per user (so a shared namespace still gets one account each), valid, never colliding."""
        return cls(username, namespace, safe_slug(f"{prefix}-{username}"))

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "labels": {**MANAGED_BY, LABEL_USER: label_value(self.username)},
            "annotations": {LABEL_USER: self.username},
        }

    def service_account(self) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": self.metadata()}

    def role(self) -> dict[str, Any]:
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": self.metadata(),
            "rules": [{k: list(v) for k, v in rule.items()} for rule in ROLE_RULES],
        }

    def role_binding(self) -> dict[str, Any]:
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": self.metadata(),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": self.name},
            "subjects": [{"kind": "ServiceAccount", "name": self.name, "namespace": self.namespace}],
        }


def extension_env(
    *,
    namespace: str,
    image: str,
    service_account: str,
    home_claim: str | None = None,
    home_mount: str = DEFAULT_HOME_MOUNT,
    home_rwo: bool = True,
    artifact_store: str | None = None,
) -> dict[str, str]:
    """The environment the extension reads in the user's server (see backends/kubernetes/backend.py)."""
    env = {
        "JUPYTER_EXT_BACKEND": "kubernetes",
        "JUPYTER_EXT_NAMESPACE": namespace,
        "JUPYTER_EXT_IMAGE": image,
        "JUPYTER_EXT_SERVICE_ACCOUNT": service_account,
        "JUPYTER_EXT_HOME_MOUNT": home_mount,
    }
    if home_claim:
        env["JUPYTER_EXT_HOME_CLAIM"] = home_claim
        env["JUPYTER_EXT_HOME_RWO"] = "1" if home_rwo else "0"
    if artifact_store:
        env["JUPYTER_EXT_ARTIFACT_STORE"] = artifact_store
    return env


def home_claim(pod_spec: dict[str, Any], mount_path: str, container: str = NOTEBOOK_CONTAINER) -> str | None:
    """The PersistentVolumeClaim mounted at `mount_path` in the user's container (a camelCase pod spec)."""
    containers = pod_spec.get("containers") or []
    main = next((c for c in containers if c.get("name") == container), containers[0] if containers else {})
    mounts = main.get("volumeMounts") or []
    mounted = {m.get("name") for m in mounts if m.get("mountPath", "").rstrip("/") == mount_path}
    for volume in pod_spec.get("volumes") or []:
        claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        if claim and volume.get("name") in mounted:
            return str(claim)
    return None


# -- applying the objects ---------------------------------------------------------------------------------------
async def _create_or_patch(
    create: Callable[..., Awaitable[Any]],
    patch: Callable[..., Awaitable[Any]],
    body: dict[str, Any],
    patch_body: dict[str, Any],
    timeout: float,
) -> None:
    from kubernetes_asyncio.client.exceptions import ApiException

    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    try:
        await asyncio.wait_for(create(namespace, body), timeout)
        return
    except ApiException as exc:
        if exc.status != 409:  # 409: it exists (an earlier spawn, or a concurrent one): bring it up to date
            raise
    # A JSON merge patch replaces lists whole: the Role's rules become exactly ours.
    await asyncio.wait_for(patch(name, namespace, patch_body, _content_type="application/merge-patch+json"), timeout)


async def ensure_user_access(
    api: Any, access: UserAccess, *, create_namespace: bool = False, timeout: float = 30
) -> None:
    """Create (or bring up to date) `access`'s ServiceAccount, Role and RoleBinding; idempotent.

    `api` is a kubernetes_asyncio ApiClient. KubeSpawner creates user namespaces itself before
    `modify_pod_hook`; `create_namespace` is for callers without it.
    """
    from kubernetes_asyncio import client
    from kubernetes_asyncio.client.exceptions import ApiException

    # Typed Any: the generated annotations want model objects; plain dicts serialise the same.
    core: Any = client.CoreV1Api(api)
    rbac: Any = client.RbacAuthorizationV1Api(api)
    if create_namespace:
        try:
            await asyncio.wait_for(core.create_namespace({"metadata": {"name": access.namespace}}), timeout)
        except ApiException as exc:
            if exc.status != 409:
                raise
    meta = {"metadata": {k: v for k, v in access.metadata().items() if k in ("labels", "annotations")}}
    # Only our labels on the ServiceAccount: its secrets and imagePullSecrets may be someone else's.
    await _create_or_patch(
        core.create_namespaced_service_account,
        core.patch_namespaced_service_account,
        access.service_account(),
        meta,
        timeout,
    )
    role = access.role()
    await _create_or_patch(
        rbac.create_namespaced_role, rbac.patch_namespaced_role, role, {**meta, "rules": role["rules"]}, timeout
    )
    binding = access.role_binding()
    # roleRef cannot change, and ours is always the same Role: only subjects (and labels) are patched.
    await _create_or_patch(
        rbac.create_namespaced_role_binding,
        rbac.patch_namespaced_role_binding,
        binding,
        {**meta, "subjects": binding["subjects"]},
        timeout,
    )


# -- the KubeSpawner hooks -------------------------------------------------------------------------------------------
async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def chain_pre_spawn_hooks(*hooks: Callable[[Any], Any] | None) -> Callable[[Any], Awaitable[None]]:
    """One ``pre_spawn_hook`` running each hook in turn (sync or async)."""
    present = [h for h in hooks if h is not None]

    async def pre_spawn_hook(spawner: Any) -> None:
        for hook in present:
            await _maybe_await(hook(spawner))

    return pre_spawn_hook


def chain_modify_pod_hooks(*hooks: Callable[[Any, Any], Any] | None) -> Callable[[Any, Any], Awaitable[Any]]:
    """One ``modify_pod_hook`` passing the pod through each hook in turn (a hook returning None keeps it)."""
    present = [h for h in hooks if h is not None]

    async def modify_pod_hook(spawner: Any, pod: Any) -> Any:
        for hook in present:
            result = await _maybe_await(hook(spawner, pod))
            pod = pod if result is None else result
        return pod

    return modify_pod_hook


@dataclass(frozen=True)
class HubIntegration:
    """The two hooks, with the admin's choices.

    artifact_store: URL of the artifact store; ``{username}`` becomes the user's name as a slug.
    home_mount: where the user's home claim is mounted in the user's container (and step pods).
    home_rwo: whether that claim is ReadWriteOnce (step pods then go to the user's node); None:
        KubeSpawner's ``storage_access_modes`` for its own claim, else True (the safe guess).
    prefix: start of the names of the per-user ServiceAccount, Role and RoleBinding.
    """

    artifact_store: str | None = None
    home_mount: str = DEFAULT_HOME_MOUNT
    home_rwo: bool | None = None
    prefix: str = "jupyter-ext"

    def access(self, spawner: Any) -> UserAccess:
        return UserAccess.of(spawner.user.name, spawner.namespace, self.prefix)

    def setup(self, spawner: Any) -> None:
        """pre_spawn_hook: the user's pod runs as the user's account, with its token (the extension needs it)."""
        spawner.service_account = self.access(spawner).name
        spawner.automount_service_account_token = True
        if not getattr(spawner, "enable_user_namespaces", False):
            spawner.log.warning(
                "jupyter-ext: users share namespace %s, so each user's account can see all pods and Jobs in it; "
                "set c.KubeSpawner.enable_user_namespaces = True to keep users apart",
                spawner.namespace,
            )

    async def modify_pod(self, spawner: Any, pod: Any) -> Any:
        """modify_pod_hook: ensure the user's RBAC in the pod's namespace, then point the pod and extension at it."""
        from kubernetes_asyncio import client

        access = self.access(spawner)
        api = spawner.api.api_client  # KubeSpawner's own client: same credentials, same event loop
        await ensure_user_access(api, access, timeout=float(getattr(spawner, "k8s_api_request_timeout", 30)))
        pod.spec.service_account_name = access.name
        pod.spec.automount_service_account_token = True
        spec = api.sanitize_for_serialization(pod.spec)
        claim = home_claim(spec, self.home_mount.rstrip("/"))
        rwo = self.home_rwo
        if rwo is None:
            own = claim is not None and claim == getattr(spawner, "pvc_name", None)
            rwo = "ReadWriteOnce" in (getattr(spawner, "storage_access_modes", None) or []) if own else True
        store = self.artifact_store.format(username=safe_slug(spawner.user.name)) if self.artifact_store else None
        container = next((c for c in pod.spec.containers if c.name == NOTEBOOK_CONTAINER), pod.spec.containers[0])
        env = extension_env(
            namespace=access.namespace,
            image=container.image,
            service_account=access.name,
            home_claim=claim,
            home_mount=self.home_mount,
            home_rwo=rwo,
            artifact_store=store,
        )
        container.env = [e for e in container.env or [] if getattr(e, "name", None) not in env] + [
            client.V1EnvVar(name=k, value=v) for k, v in env.items()
        ]
        return pod


def configure_kubespawner(
    c: Any,
    *,
    artifact_store: str | None = None,
    home_mount: str = DEFAULT_HOME_MOUNT,
    home_rwo: bool | None = None,
    prefix: str = "jupyter-ext",
) -> HubIntegration:
    """Wire jupyter-ext into a KubeSpawner hub config `c`, keeping hooks already set there.

    Call it after setting your own ``pre_spawn_hook``/``modify_pod_hook`` (on z2jh, in the
    ``hub.extraConfig`` entry whose key sorts last); see `HubIntegration` for the options.
    """
    hub = HubIntegration(artifact_store=artifact_store, home_mount=home_mount, home_rwo=home_rwo, prefix=prefix)
    theirs_pre = _configured(c, "pre_spawn_hook")
    theirs_pod = _configured(c, "modify_pod_hook")
    c.KubeSpawner.pre_spawn_hook = chain_pre_spawn_hooks(hub.setup, theirs_pre)
    c.KubeSpawner.modify_pod_hook = chain_modify_pod_hooks(hub.modify_pod, theirs_pod)
    return hub


def _configured(c: Any, name: str) -> Any:
    """The hook an admin set on KubeSpawner (or on Spawner, which KubeSpawner inherits), else None."""
    for section in ("KubeSpawner", "Spawner"):
        if section in c and name in c[section]:
            value = c[section][name]
            if callable(value):
                return value
    return None


__all__ = [
    "ROLE_RULES",
    "HubIntegration",
    "UserAccess",
    "chain_modify_pod_hooks",
    "chain_pre_spawn_hooks",
    "configure_kubespawner",
    "ensure_user_access",
    "extension_env",
    "home_claim",
]
