"""The Kubernetes backend: one batch/v1 Job per step attempt, events over the pod log.

Here: the settings (`c.KubernetesBackend.*`) and the life of an attempt (submit its Job and
inputs, adopt after a restart, follow, cancel). Beside it, one concern per module as in
kubespawner: `reflector` (one watch per namespace per kind, never a poll per job), `preflight`
(RBAC from `rbac.RULES`, node sizes, quotas), `transport` (files in and out: shared paths, the
artifact store, or a ConfigMap in and the log out), `podlog` (the pod log as the event channel),
`podstatus` (what a pod's status says: waiting, and how it ended), `manifests` and `resources`
(the objects, as pure functions).

With shared paths the step's notebook, parameters and attempt folder are the server's own
paths, so pods must see the server's data folder at the same path (e.g. a shared volume
mounted there through `extra_volumes`/`extra_volume_mounts`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from traitlets import Any as AnyTrait
from traitlets import Bool, Dict, Float, Int, List, Unicode, default

from ... import reasons
from ...errors import BackendError
from ...models import Resources
from ...runner import transfer
from ..base import Backend, EventsOrOutcome, Handle, Outcome, StepLaunch
from ..slugs import job_name
from . import podstatus, transport
from .manifests import (
    DEFAULT_HOME_MOUNT,
    MAX_INPUTS_BYTES,
    JobOptions,
    label_selector,
    make_inputs_configmap,
    make_job,
    runner_command,
)
from .podlog import PodLog
from .preflight import Preflight
from .reflector import Reflector
from .resources import resource_summary
from .transport import Mode

SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def parse_selector(text: str) -> dict[str, str]:
    """`a=b,c=d` -> {"a": "b", "c": "d"} (the form of $JUPYTER_EXT_NODE_SELECTOR)."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"JUPYTER_EXT_NODE_SELECTOR: {part!r} is not key=value")
        out[key.strip()] = value.strip()
    return out


def _own_namespace() -> str | None:
    """The namespace of the pod this server runs in (its service account's), None outside a pod."""
    try:
        return SA_NAMESPACE.read_text().strip() or None
    except OSError:
        return None


class KubernetesHandle(Handle):
    """One attempt's Job (stored with the step; what older servers stored reads as it is)."""

    backend: str = "kubernetes"
    namespace: str
    job_name: str
    transport: Mode = "shared"
    outputs: str | None = None  # `store` transport: where the runner puts its outputs


class KubernetesBackend(Backend[KubernetesHandle]):
    """Runs each step attempt as a batch/v1 Job on a Kubernetes cluster."""

    name = "kubernetes"
    handle_type = KubernetesHandle

    namespace = Unicode(
        help="Namespace of step Jobs (default: $JUPYTER_EXT_NAMESPACE, else the server pod's own namespace, "
        "else 'default')."
    ).tag(config=True)

    @default("namespace")
    def _default_namespace(self) -> str:
        if os.environ.get("JUPYTER_EXT_NAMESPACE"):
            return os.environ["JUPYTER_EXT_NAMESPACE"]
        return _own_namespace() or "default"

    image = Unicode(
        help="Image of steps that set no `image:` (default: $JUPYTER_EXT_IMAGE, else $JUPYTER_IMAGE or "
        "$JUPYTER_IMAGE_SPEC, the user's own image under JupyterHub)."
    ).tag(config=True)

    @default("image")
    def _default_image(self) -> str:
        for name in ("JUPYTER_EXT_IMAGE", "JUPYTER_IMAGE", "JUPYTER_IMAGE_SPEC"):
            if os.environ.get(name):
                return os.environ[name]
        return "quay.io/jupyter/base-notebook:latest"

    gpu_resource = Unicode("nvidia.com/gpu", help="Extended resource `gpu:N` is requested as.").tag(config=True)
    python = Unicode("python", help="Python of the step image that runs `-m jupyter_ext.runner`.").tag(config=True)
    service_account = Unicode(
        None, allow_none=True, help="Service account of step pods (default: $JUPYTER_EXT_SERVICE_ACCOUNT, else none)."
    ).tag(config=True)

    @default("service_account")
    def _default_service_account(self) -> str | None:
        return os.environ.get("JUPYTER_EXT_SERVICE_ACCOUNT") or None

    automount_service_account_token = Bool(False, help="Mount the API token into step pods.").tag(config=True)
    node_selector = Dict(
        help="nodeSelector of every step pod (default: $JUPYTER_EXT_NODE_SELECTOR, `key=value[,key=value]`)."
    ).tag(config=True)

    @default("node_selector")
    def _default_node_selector(self) -> dict[str, str]:
        return parse_selector(os.environ.get("JUPYTER_EXT_NODE_SELECTOR", ""))

    tolerations = List(Dict(), help="Tolerations of every step pod.").tag(config=True)
    extra_pod_config = Dict(help="Merged into every pod spec (dicts merge, lists replace).").tag(config=True)
    extra_container_config = Dict(help="Merged into the step container.").tag(config=True)
    extra_volumes = List(Dict(), help="Volumes added to every step pod.").tag(config=True)
    extra_volume_mounts = List(Dict(), help="Volume mounts added to the step container.").tag(config=True)
    shared_paths = Bool(
        False,
        help="Step pods see the server's data folder (and the notebooks' folder) at the same paths, "
        "through a shared volume in extra_volumes/extra_volume_mounts.",
    ).tag(config=True)
    artifact_store = Unicode(
        "",
        help="fsspec URL (s3://bucket/prefix, gs://..., or a path on a volume that the server and step pods "
        "both mount) through which step inputs go in and outputs come out when paths are not shared "
        "(default: $JUPYTER_EXT_ARTIFACT_STORE). Empty: small inputs travel in a ConfigMap owned by the Job "
        "and outputs over the pod log.",
    ).tag(config=True)

    @default("artifact_store")
    def _default_artifact_store(self) -> str:
        return os.environ.get("JUPYTER_EXT_ARTIFACT_STORE", "")

    configmap_max_bytes = Int(
        MAX_INPUTS_BYTES,
        help=f"Largest step inputs (notebook, parameters, hand-off variables) sent in a ConfigMap when no "
        f"artifact store is configured; at most {MAX_INPUTS_BYTES} (ConfigMaps hold 1 MiB). Larger inputs "
        "are refused with an error naming the step.",
    ).tag(config=True)
    log_outputs_max_bytes = Int(
        transfer.DEFAULT_LOG_BUDGET,
        help="Without shared paths or an artifact store, a step's hand-off variables and artifacts come back "
        "over its pod log, up to this many bytes; larger files are left out with a message.",
    ).tag(config=True)
    home_claim = Unicode(
        None,
        allow_none=True,
        help="PersistentVolumeClaim of the user's home, mounted into step pods at home_mount "
        "(default: $JUPYTER_EXT_HOME_CLAIM).",
    ).tag(config=True)

    @default("home_claim")
    def _default_home_claim(self) -> str | None:
        return os.environ.get("JUPYTER_EXT_HOME_CLAIM") or None

    home_mount = Unicode(
        help="Mount path of home_claim, the same as in the user's pod (default: $JUPYTER_EXT_HOME_MOUNT, "
        "else /home/jovyan). Steps whose folders lie under it use them as they are."
    ).tag(config=True)

    @default("home_mount")
    def _default_home_mount(self) -> str:
        return os.environ.get("JUPYTER_EXT_HOME_MOUNT") or DEFAULT_HOME_MOUNT

    home_read_write_once = Bool(
        help="home_claim is ReadWriteOnce: step pods get required affinity to the user's node "
        "(default: $JUPYTER_EXT_HOME_RWO == '1')."
    ).tag(config=True)

    @default("home_read_write_once")
    def _default_home_rwo(self) -> bool:
        return os.environ.get("JUPYTER_EXT_HOME_RWO", "") == "1"

    user_pod_labels = Dict(
        help="Labels of the user's own pod, for the affinity of home_read_write_once (default: read from "
        "this server's pod, $HOSTNAME in its namespace, when it runs in one)."
    ).tag(config=True)
    image_pull_grace = Float(
        120.0,
        allow_none=True,
        help="Seconds a step's pod may stay in ErrImagePull/ImagePullBackOff before the step fails "
        "(the user is told at once either way); None: wait until the step's timeout.",
    ).tag(config=True)
    ttl_seconds_after_finished = Int(3600, help="Finished Jobs are deleted this long after they end.").tag(config=True)
    kubeconfig = Unicode(
        None, allow_none=True, help="kubeconfig file when not in a cluster (default: $KUBECONFIG, else ~/.kube/config)."
    ).tag(config=True)
    modify_pod_hook = AnyTrait(
        None,
        allow_none=True,
        help="Callable (backend, launch, pod_template) -> pod_template or None (edit in place), may be "
        "async; runs last on every step pod, like KubeSpawner's modify_pod_hook.",
    ).tag(config=True)
    preflight_checks = Bool(
        True,
        help="Before submitting, check RBAC (SelfSubjectAccessReview), that some node can ever fit each "
        "step (allocatable), and that ResourceQuotas would admit it.",
    ).tag(config=True)
    request_timeout = Float(30, help="Seconds before a Kubernetes API call is given up.").tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.api: Any = None
        self.pods: Reflector | None = None
        self.events_reflector: Reflector | None = None
        self.jobs: Reflector | None = None
        self._preflight: Preflight | None = None
        self._own_pod: tuple[dict[str, str], str | None] | None = None

    # -- lifecycle --------------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.api is not None:
            return
        from kubernetes_asyncio import client, config

        cfg = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=cfg)
        except config.ConfigException:
            # KUBECONFIG is read now, not when the library was imported.
            await config.load_kube_config(
                config_file=self.kubeconfig or os.environ.get("KUBECONFIG") or None,
                client_configuration=cfg,
                persist_config=False,
            )
        self.api = client.ApiClient(cfg)
        self.core = client.CoreV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        timeout = self.request_timeout
        ours = label_selector()
        self.pods = Reflector(self.core.list_namespaced_pod, self.namespace, timeout=timeout, label_selector=ours)
        self.events_reflector = Reflector(
            self.core.list_namespaced_event, self.namespace, timeout=timeout, field_selector="involvedObject.kind=Pod"
        )
        self.jobs = Reflector(self.batch.list_namespaced_job, self.namespace, timeout=timeout, label_selector=ours)
        self._preflight = Preflight(self.api, self.core, self.namespace, self.gpu_resource, timeout)
        self.pods.start(self.api)
        self.events_reflector.start(self.api)
        self.jobs.start(self.api)

    async def stop(self) -> None:
        for reflector in (self.pods, self.events_reflector, self.jobs):
            if reflector is not None:
                await reflector.stop()
        if self.api is not None:
            await self.api.close()
            self.api = None

    def options(self) -> JobOptions:
        return JobOptions(
            namespace=self.namespace,
            image=self.image,
            gpu_resource=self.gpu_resource,
            service_account=self.service_account,
            automount_service_account_token=self.automount_service_account_token,
            node_selector=dict(self.node_selector),
            tolerations=list(self.tolerations),
            extra_pod_config=dict(self.extra_pod_config),
            extra_container_config=dict(self.extra_container_config),
            extra_volumes=list(self.extra_volumes),
            extra_volume_mounts=list(self.extra_volume_mounts),
            ttl_seconds_after_finished=self.ttl_seconds_after_finished,
            user=os.environ.get("JUPYTERHUB_USER", ""),
            home_claim=self.home_claim,
            home_mount=self.home_mount,
            home_read_write_once=self.home_read_write_once,
            home_pod_labels=dict(self.user_pod_labels),
        )

    def check(self, step: str, resources: Resources) -> None:
        resource_summary(resources, self.gpu_resource, step)  # raises naming the step on a bad limit

    def transport(self, launch: StepLaunch) -> Mode:
        """How the attempt's files reach the pod and come back: "shared", "store" or "configmap"."""
        return transport.choose(
            launch,
            shared_paths=self.shared_paths,
            artifact_store=self.artifact_store,
            home_claim=self.home_claim,
            home_mount=self.home_mount,
        )

    async def preflight(self, steps: list[tuple[str, Resources]]) -> None:
        if not self.preflight_checks or not steps:
            return
        await self.start()
        needs = {name: resource_summary(res, self.gpu_resource, name) for name, res in steps}
        assert self._preflight is not None
        await self._preflight.run(needs, configmaps=not (self.shared_paths or self.artifact_store))

    # -- one attempt ---------------------------------------------------------------------------------------------
    async def submit(self, launch: StepLaunch) -> KubernetesHandle:
        from kubernetes_asyncio.client.exceptions import ApiException

        await self.start()
        placement = await asyncio.to_thread(
            transport.place,
            launch,
            self.transport(launch),
            artifact_store=self.artifact_store,
            home_claim=self.home_claim,
            home_mount=self.home_mount,
            log_outputs_max_bytes=self.log_outputs_max_bytes,
        )
        configmap: dict[str, Any] | None = None
        if placement.mode == "store":
            await transport.put_inputs(placement, launch.step, self.artifact_store)
        elif placement.mode == "configmap":
            # Named like the Job. Raises, naming the step and the settings, when the inputs are too
            # large for a ConfigMap. Its owner (the Job's uid) is known once the Job exists.
            cm_name = job_name(launch.job_id, launch.step, launch.attempt)
            configmap = make_inputs_configmap(
                cm_name,
                cm_name,
                placement.files,
                None,
                namespace=self.namespace,
                step=launch.step,
                max_bytes=self.configmap_max_bytes,
            )
        launch = dataclasses.replace(launch, env=placement.env)
        command = runner_command(launch, python=self.python, **placement.paths)
        manifest = await self.build_job(
            launch, command, inputs_configmap=configmap["metadata"]["name"] if configmap else None
        )
        name = manifest["metadata"]["name"]
        try:
            created = await self.batch.create_namespaced_job(
                self.namespace,
                manifest,  # type: ignore[arg-type]
                _request_timeout=self.request_timeout,
            )
            uid = created.metadata.uid
        except ApiException as exc:
            if exc.status != 409:  # 409: created before a restart; adopt it
                raise BackendError(
                    f"could not create the Job of step {launch.step!r}: {transport.api_reason(exc)}"
                ) from None
            uid = None
        if configmap is not None:
            configmap["metadata"]["labels"] = dict(manifest["metadata"]["labels"])
            await transport.create_inputs_configmap(
                self.core, self.batch, self.namespace, launch.step, name, uid, configmap, self.request_timeout
            )
        return KubernetesHandle(
            transport=placement.mode,
            outputs=placement.outputs,
            namespace=self.namespace,
            job_name=name,
            attempt_dir=launch.attempt_dir,
            step=launch.step,
            started=time.time(),
        )

    async def build_job(
        self, launch: StepLaunch, command: list[str], *, inputs_configmap: str | None = None
    ) -> dict[str, Any]:
        """The Job manifest of an attempt, after the operator's `modify_pod_hook` (may be async)."""
        opts = self.options()
        if opts.home_claim and opts.home_read_write_once and not opts.home_pod_labels:
            opts.home_pod_labels, opts.home_pod_namespace = await self._own_pod_labels()
        manifest = make_job(launch, opts, command=command, inputs_configmap=inputs_configmap)
        pod = manifest["spec"]["template"]
        # Deleting a Job deletes its pods with their own grace period: make that our cancel grace.
        pod["spec"].setdefault("terminationGracePeriodSeconds", int(self.cancel_grace))
        if self.modify_pod_hook is not None:
            result = self.modify_pod_hook(self, launch, pod)
            if asyncio.iscoroutine(result):
                result = await result
            if result is not None:
                manifest["spec"]["template"] = result
        return manifest

    async def _own_pod_labels(self) -> tuple[dict[str, str], str | None]:
        """Labels and namespace of the pod this server runs in ($HOSTNAME), once; ({}, None) if unknown."""
        if self._own_pod is None:
            from kubernetes_asyncio.client.exceptions import ApiException

            self._own_pod = ({}, None)
            name = os.environ.get("HOSTNAME", "")
            namespace = await asyncio.to_thread(_own_namespace) or self.namespace
            if name and self.api is not None:
                try:
                    pod = await self.core.read_namespaced_pod(name, namespace, _request_timeout=self.request_timeout)
                    self._own_pod = (dict(pod.metadata.labels or {}), namespace)
                except ApiException as exc:
                    self.log.warning(
                        "jupyter-ext: cannot read this server's pod %s/%s: %s", namespace, name, exc.reason
                    )
        return self._own_pod

    def _pod(self, handle: KubernetesHandle) -> dict[str, Any] | None:
        assert self.pods is not None
        for pod in self.pods.objects.values():
            if pod["metadata"].get("labels", {}).get("job-name") == handle.job_name:
                return pod
        return None

    async def adopt(self, handle: KubernetesHandle) -> bool:
        assert self.jobs is not None
        await self.jobs.first_list.wait()
        return handle.job_name in self.jobs.objects

    async def events(self, handle: KubernetesHandle, after: int) -> AsyncIterator[EventsOrOutcome]:
        assert self.pods is not None and self.events_reflector is not None
        await self.pods.first_list.wait()
        step = handle.step
        pending = podstatus.Pending(step, self.image_pull_grace)
        # 1. Until the pod runs: tell the user what the scheduler and kubelet say about it.
        while True:
            pod = self._pod(handle)
            if pod is not None and podstatus.phase(pod) not in (None, "Pending"):
                break
            batch, error = pending.look(pod, self.events_reflector.objects.values(), time.monotonic())
            if error is not None:
                said = reasons.error(reasons.IMAGE_PULL, error)
                end = {
                    "type": "step.end",
                    "status": "failed",
                    "exit_code": None,
                    "error": said,
                    "reason": said["reason"],
                }
                yield [*batch, end]
                await self.cancel(handle)
                yield Outcome(None, error, code=reasons.IMAGE_PULL)
                return
            if batch:
                yield batch
            try:
                await self.pods.wait_for(lambda: False, timeout=1.0)
            except asyncio.TimeoutError:
                pass
            if not await self.adopt(handle):  # from the Jobs watch: no API call per job
                yield Outcome(None, "the step's Job was deleted", code=reasons.LOST)
                return
        # 2. Follow the log until the pod has ended and the log is drained.
        log = PodLog(
            self.api,
            self.pods,
            handle.namespace,
            pod["metadata"]["name"],
            lambda: self._pod(handle),
            after=after,
            request_timeout=self.request_timeout,
            log=self.log,
        )
        attempt_dir = Path(handle.attempt_dir)
        async for batch in log.follow():
            received = await transport.receive(
                batch, attempt_dir=attempt_dir, outputs=handle.outputs, step=step, log=self.log
            )
            if received:
                yield received
        yield podstatus.settled(podstatus.outcome_of(self._pod(handle), step), step, log.unreadable, log.saw_end)

    async def cancel(self, handle: KubernetesHandle) -> None:
        from kubernetes_asyncio.client.exceptions import ApiException

        try:
            await self.batch.delete_namespaced_job(
                handle.job_name,
                handle.namespace,
                propagation_policy="Background",
                _request_timeout=self.request_timeout,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise BackendError(
                    f"could not delete the Job of step {handle.step!r}: {transport.api_reason(exc)}"
                ) from None

    def capacity(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "watches": sum(r.watches_started for r in (self.pods, self.events_reflector, self.jobs) if r),
        }
