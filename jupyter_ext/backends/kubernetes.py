"""The Kubernetes backend: one batch/v1 Job per step attempt, events over the pod log.

- One shared API client (in-cluster config first, then kubeconfig).
- One watch per namespace per kind (pods of ours, their Events), never a poll per job:
  `Reflector` lists, then watches from the resourceVersion, re-lists on 410 Gone, restarts
  periodically and backs off on errors.
- The pod log IS the event channel: followed with timestamps, resumed with `sinceTime`
  after a drop, de-duplicated by the runner's `n`. A log stream is ended by the pod's
  phase, not by the stream closing (some kubelets, and KWOK, keep it open forever).
- Scheduling problems (FailedScheduling, image pulls) reach the user as `log` events while
  the pod waits; how a pod ended (OOMKilled, deadline, eviction) becomes the outcome's reason.

Paths: the step's notebook, parameters and attempt folder are the server's own paths, so
pods must see the server's data folder at the same path (`shared_paths`, e.g. a shared
volume mounted there through `extra_volumes`/`extra_volume_mounts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from traitlets import Any as AnyTrait
from traitlets import Bool, Dict, Float, Int, List, Unicode, default

from .. import quantity
from ..errors import BackendError, ValidationError
from ..models import Resources
from ..runner import transfer
from ..runner.emitter import parse_line
from .base import Backend, Outcome, StepLaunch
from .k8s_manifests import (
    CONTAINER_NAME,
    DEFAULT_HOME_MOUNT,
    INPUTS_DIR,
    MAX_INPUTS_BYTES,
    SCRATCH_DIR,
    JobOptions,
    job_owner_references,
    label_selector,
    make_inputs_configmap,
    make_job,
    resource_summary,
    runner_command,
)
from .slugs import job_name

SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
TERMINAL_PHASES = ("Succeeded", "Failed")
LOG_DRAIN_ATTEMPTS = 8  # reads of an ended pod's log (backing off to 4 s, about 20 s in all) before giving up
LOG_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
DIAGNOSTIC_REASONS = (
    "FailedScheduling",
    "Failed",
    "BackOff",
    "ErrImagePull",
    "ImagePullBackOff",
    "Evicted",
    "OOMKilling",
)


PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
QUIET_WAITING = ("ContainerCreating", "PodInitializing")  # the normal start of every pod
RESTART_STRIDE = 10**9  # events of the container that restarted r times are numbered from r * this
MAX_LOG_LINE = 64 * 2**20


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


def _log(text: str, reason: str | None = None) -> dict[str, Any]:
    """A `log` event on stderr from the backend itself (no `n`: stored as it comes)."""
    event: dict[str, Any] = {"type": "log", "stream": "stderr", "text": text}
    if reason:
        event["reason"] = reason
    return event


def restart_count(pod: dict[str, Any] | None) -> int:
    """restartCount of the step container (0 when unknown)."""
    for status in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER_NAME:
            return int(status.get("restartCount") or 0)
    return 0


def container_waiting(pod: dict[str, Any] | None) -> tuple[str, str, str] | None:
    """(reason, message, image) of the step container while it waits to start, else None."""
    for status in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        if status.get("name") != CONTAINER_NAME:
            continue
        waiting = (status.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            image = status.get("image") or next(
                (
                    c.get("image", "")
                    for c in (pod or {}).get("spec", {}).get("containers", [])
                    if c.get("name") == CONTAINER_NAME
                ),
                "",
            )
            return str(waiting["reason"]), str(waiting.get("message") or "").strip(), str(image)
    return None


@dataclass(frozen=True)
class LogRead:
    """One pods/log request: of the container that has restarted `instance` times."""

    previous: bool
    follow: bool
    instance: int


@dataclass
class _LogState:
    since: str | None  # timestamp of the last line read: where a new request starts
    last_n: int  # highest event number passed on
    reading: int  # restart count of the container being read
    failed: bool = False
    error: str | None = None  # why the last read failed
    saw_end: bool = False  # the runner's step.end arrived


def plan_log_reads(restarts: int, reading: int, final: bool) -> list[LogRead]:
    """Which log requests come next, given the container's restartCount and the one being read.

    Same container: read (follow unless the pod has ended) the current log. It restarted:
    first the rest of the previous container's log (`previous=true`, not followed), then the
    current one. Containers older than the previous one are gone from the node: their unread
    events are lost (Kubernetes keeps one previous log).
    """
    current = LogRead(previous=False, follow=not final, instance=restarts)
    if restarts > reading:
        return [LogRead(previous=True, follow=False, instance=restarts - 1), current]
    return [current]


async def _lines(content: Any) -> AsyncIterator[bytes]:
    """Lines of a response body, however long (an image output is one long event line)."""
    buf = bytearray()
    while True:
        chunk = await content.readany()
        if not chunk:
            if buf:
                yield bytes(buf)
            return
        start = len(buf)
        buf += chunk
        while (end := buf.find(b"\n", start)) >= 0:
            yield bytes(buf[: end + 1])
            del buf[: end + 1]
            start = 0
        if len(buf) > MAX_LOG_LINE:  # not one of ours: drop it rather than grow without bound
            buf.clear()


class Reflector:
    """A local copy of one kind of object in one namespace, kept current by a single watch."""

    def __init__(self, list_fn: Callable[..., Any], namespace: str, *, timeout: float, **selectors: str) -> None:
        self.list_fn = list_fn
        self.namespace = namespace
        self.selectors = selectors
        self.timeout = timeout
        self.objects: dict[str, dict[str, Any]] = {}
        self.changed = asyncio.Condition()
        self.task: asyncio.Task[None] | None = None
        self.watches_started = 0  # for the benchmark: watch connections opened
        self.first_list = asyncio.Event()

    def start(self, api: Any) -> None:
        self.api = api
        self.task = asyncio.create_task(self._run(), name=f"jupyter-ext reflector {self.list_fn.__name__}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def _run(self) -> None:
        from kubernetes_asyncio import watch
        from kubernetes_asyncio.client.exceptions import ApiException

        backoff = 0.5
        while True:
            try:
                listing = await self.list_fn(self.namespace, _request_timeout=self.timeout, **self.selectors)
                self.objects = {o.metadata.name: self.api.sanitize_for_serialization(o) for o in listing.items}
                version = listing.metadata.resource_version
                self.first_list.set()
                await self._notify()
                while True:  # watch from that version; a server-side timeout restarts it periodically
                    self.watches_started += 1
                    stream = watch.Watch().stream(
                        self.list_fn,
                        self.namespace,
                        resource_version=version,
                        timeout_seconds=300,
                        _request_timeout=330,
                        **self.selectors,
                    )
                    async with stream as events:
                        async for event in events:
                            obj = self.api.sanitize_for_serialization(event["object"])
                            name = obj["metadata"]["name"]
                            version = obj["metadata"].get("resourceVersion", version)
                            if event["type"] == "DELETED":
                                self.objects.pop(name, None)
                            else:
                                self.objects[name] = obj
                            await self._notify()
                    backoff = 0.5
            except asyncio.CancelledError:
                raise
            except ApiException as exc:
                if exc.status != 410:  # 410 Gone: our version is too old; re-list at once
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30)
            except Exception:  # noqa: BLE001 - network trouble: back off and re-list
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30)

    async def wait_for(self, predicate: Callable[[], Any], timeout: float | None = None) -> Any:
        async with self.changed:
            return await asyncio.wait_for(self.changed.wait_for(predicate), timeout)


class KubernetesBackend(Backend):
    """Runs each step attempt as a batch/v1 Job on a Kubernetes cluster."""

    name = "kubernetes"

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
        self._outcomes: dict[str, Outcome] = {}
        self._unreadable: dict[str, str] = {}  # attempts whose pod log could not be read to its end
        self._access_checked_until = 0.0
        self._nodes_cache: tuple[float, list[dict[str, float]]] | None = None
        self._preflight_lock = asyncio.Lock()
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
        self.pods = Reflector(
            self.core.list_namespaced_pod, self.namespace, timeout=self.request_timeout, label_selector=label_selector()
        )
        self.events_reflector = Reflector(
            self.core.list_namespaced_event,
            self.namespace,
            timeout=self.request_timeout,
            field_selector="involvedObject.kind=Pod",
        )
        self.jobs = Reflector(
            self.batch.list_namespaced_job,
            self.namespace,
            timeout=self.request_timeout,
            label_selector=label_selector(),
        )
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

    def transport(self, launch: StepLaunch) -> str:
        """How the attempt's files reach the pod and come back: "shared", "store" or "configmap".

        Shared when configured (`shared_paths`), or when the home claim is mounted and every
        folder of the attempt lies under its mount path (the pod sees them at the same paths);
        else through the artifact store when one is configured; else a ConfigMap in, the log out.
        """
        if self.shared_paths:
            return "shared"
        if self.artifact_store:
            return "store"
        if self.home_claim:
            home = PurePosixPath(self.home_mount)
            paths = [launch.attempt_dir, launch.notebook, launch.workdir]
            if all(PurePosixPath(p).is_relative_to(home) for p in paths):
                return "shared"
        return "configmap"

    async def preflight(self, steps: list[tuple[str, Resources]]) -> None:
        if not self.preflight_checks or not steps:
            return
        await self.start()
        first = steps[0][0]
        needs = {name: resource_summary(res, self.gpu_resource, name) for name, res in steps}
        async with self._preflight_lock:  # concurrent submissions share one check
            if time.monotonic() > self._access_checked_until:  # RBAC rarely changes: check every 5 minutes
                await self._preflight_access(first)
                self._access_checked_until = time.monotonic() + 300
            await self._preflight_nodes(needs)
        await self._preflight_quotas(needs)

    async def _preflight_access(self, step: str) -> None:
        from kubernetes_asyncio import client

        auth = client.AuthorizationV1Api(self.api)
        for group, resource, sub, verb in (
            ("batch", "jobs", None, "create"),
            ("batch", "jobs", None, "delete"),
            ("", "pods", None, "list"),
            ("", "pods", None, "watch"),
            ("", "pods", "log", "get"),
            ("", "events", None, "list"),
            *([("", "configmaps", None, "create")] if not (self.shared_paths or self.artifact_store) else []),
        ):
            attrs: dict[str, Any] = {"namespace": self.namespace, "verb": verb, "group": group, "resource": resource}
            if sub:
                attrs["subresource"] = sub
            review = await auth.create_self_subject_access_review(
                {"spec": {"resourceAttributes": attrs}},  # type: ignore[arg-type]
                _request_timeout=self.request_timeout,
            )
            if not review.status.allowed:
                what = f"{resource}/{sub}" if sub else resource
                raise ValidationError(
                    f"step {step!r} cannot run: this server may not {verb} {what} in namespace {self.namespace!r} "
                    "(Kubernetes RBAC); ask your administrator to bind the jupyter-ext Role (docs/kubernetes.md)",
                    step=step,
                )

    async def _preflight_nodes(self, needs: dict[str, dict[str, Any]]) -> None:
        from kubernetes_asyncio.client.exceptions import ApiException

        if self._nodes_cache is not None and time.monotonic() - self._nodes_cache[0] < 30:
            sizes = self._nodes_cache[1]
        else:
            try:
                nodes = (await self.core.list_node(_request_timeout=self.request_timeout)).items
            except ApiException as exc:
                if exc.status == 403:
                    return  # may not list nodes (a user namespace): the scheduler will say it instead
                raise
            sizes = [self._allocatable(n.status.allocatable or {}) for n in nodes if not n.spec.unschedulable]
            self._nodes_cache = (time.monotonic(), sizes)
        for step, need in needs.items():
            if any(all(size.get(k, 0) >= v for k, v in need.items() if k in size) for size in sizes):
                continue
            parts = []
            for key, value in need.items():
                best = max((size.get(key, 0) for size in sizes), default=0)
                if value > best:
                    parts.append(f"{_show(key, value)} but the largest node offers {_show(key, best)}")
            raise ValidationError(
                f"step {step!r} can never be scheduled: it asks for {'; '.join(parts) or 'more than any node has'}; "
                f"lower its resources (e.g. `gpu:`/`memory:` tags)",
                step=step,
            )

    def _allocatable(self, alloc: dict[str, str]) -> dict[str, float]:
        def parsed(parse: Callable[[object, str], float], key: str) -> float:
            try:
                return parse(alloc[key], key) if key in alloc else 0.0
            except ValidationError:
                return 0.0

        return {
            "cpu": parsed(quantity.parse_cpu, "cpu"),
            "memory": parsed(quantity.parse_memory, "memory"),
            self.gpu_resource: float(alloc.get(self.gpu_resource, 0) or 0),
        }

    async def _preflight_quotas(self, needs: dict[str, dict[str, Any]]) -> None:
        from kubernetes_asyncio.client.exceptions import ApiException

        try:
            quotas = (await self.core.list_namespaced_resource_quota(self.namespace)).items
        except ApiException as exc:
            if exc.status == 403:
                return
            raise
        keys: dict[str, tuple[str, ...]] = {
            "cpu": ("requests.cpu", "cpu", "limits.cpu"),
            "memory": ("requests.memory", "memory", "limits.memory"),
        }
        keys[self.gpu_resource] = (f"requests.{self.gpu_resource}",)
        parse = {"cpu": quantity.parse_cpu, "memory": quantity.parse_memory}
        for quota in quotas:
            hard, used = quota.status.hard or {}, quota.status.used or {}
            for step, need in needs.items():
                for key, value in need.items():
                    for qkey in keys.get(key, ()):
                        if qkey not in hard:
                            continue
                        convert = parse.get(key, lambda v, f: int(v))

                        def amount(text: str, convert: Callable[..., float] = convert, qkey: str = qkey) -> float:
                            return 0.0 if str(text).strip() in ("", "0") else convert(text, qkey)

                        left = amount(hard[qkey]) - amount(used.get(qkey, "0"))
                        if value > left:
                            raise ValidationError(
                                f"step {step!r} asks for {_show(key, value)} but ResourceQuota "
                                f"{quota.metadata.name!r} in namespace {self.namespace!r} has {_show(key, left)} "
                                f"left of {qkey}={hard[qkey]}; lower the step's resources or wait for other jobs",
                                step=step,
                            )

    # -- one attempt ---------------------------------------------------------------------------------------------
    @staticmethod
    def _key(handle: dict[str, Any]) -> str:
        return str(handle["job_name"])

    async def submit(self, launch: StepLaunch) -> dict[str, Any]:
        from kubernetes_asyncio.client.exceptions import ApiException

        await self.start()
        mode = self.transport(launch)
        attempt_dir = Path(launch.attempt_dir)
        params = attempt_dir / "parameters.json"

        def prepare() -> dict[str, bytes]:
            (attempt_dir / "artifacts").mkdir(parents=True, exist_ok=True)
            params.write_text(json.dumps(launch.parameters))
            return {} if mode == "shared" else _input_files(launch, params)

        files = await asyncio.to_thread(prepare)
        env = dict(launch.env)
        handle: dict[str, Any] = {"transport": mode}
        configmap: dict[str, Any] | None = None
        if mode == "shared":
            env["JUPYTER_EXT_ARTIFACTS_DIR"] = str(attempt_dir / "artifacts")
            paths = {"notebook": launch.notebook, "attempt_dir": launch.attempt_dir, "workdir": launch.workdir}
            paths["parameters_file"] = str(params)
        else:
            # The pod sees none of the server's folders: inputs under `inputs`, the rest in its scratch folder.
            inputs = INPUTS_DIR if mode == "configmap" else f"{SCRATCH_DIR}/inputs"
            env.update(
                JUPYTER_EXT_ARTIFACTS_DIR=f"{SCRATCH_DIR}/artifacts",
                JUPYTER_EXT_HANDOFF_OUT=f"{SCRATCH_DIR}/handoff",
            )
            handoff = _handoff_keys(launch)
            if handoff:
                env["JUPYTER_EXT_HANDOFF_IN"] = json.dumps({var: f"{inputs}/{key}" for var, key in handoff.items()})
            else:
                env.pop("JUPYTER_EXT_HANDOFF_IN", None)
            workdir = launch.workdir
            if not (self.home_claim and PurePosixPath(workdir).is_relative_to(PurePosixPath(self.home_mount))):
                workdir = SCRATCH_DIR
            paths = {
                "notebook": f"{inputs}/{NOTEBOOK_KEY}",
                "attempt_dir": SCRATCH_DIR,
                "workdir": workdir,
                "parameters_file": f"{inputs}/{PARAMETERS_KEY}",
            }
            if mode == "store":
                prefix = transfer.join(self.artifact_store, launch.job_id, launch.step, f"attempt-{launch.attempt}")
                env[transfer.ENV_INPUTS_URL] = transfer.join(prefix, "inputs")
                env[transfer.ENV_INPUTS_DIR] = inputs
                env[transfer.ENV_OUTPUTS] = handle["outputs"] = transfer.join(prefix, "outputs")
                try:
                    await asyncio.to_thread(transfer.put_files, env[transfer.ENV_INPUTS_URL], files)
                except Exception as exc:  # noqa: BLE001 - any store error: say which store and step
                    raise BackendError(
                        f"could not write the inputs of step {launch.step!r} to the artifact store "
                        f"{self.artifact_store!r}: {exc}"
                    ) from None
            else:
                env[transfer.ENV_OUTPUTS] = transfer.OUTPUTS_LOG
                env[transfer.ENV_OUTPUTS_MAX] = str(self.log_outputs_max_bytes)
                # Named like the Job. Raises, naming the step and the settings, when the inputs are too
                # large for a ConfigMap. Its owner (the Job's uid) is known once the Job exists.
                cm_name = job_name(launch.job_id, launch.step, launch.attempt)
                configmap = make_inputs_configmap(
                    cm_name,
                    cm_name,
                    files,
                    None,
                    namespace=self.namespace,
                    step=launch.step,
                    max_bytes=self.configmap_max_bytes,
                )
        launch = StepLaunch(**{**launch.__dict__, "env": env})
        command = runner_command(launch, python=self.python, **paths)
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
                raise BackendError(f"could not create the Job of step {launch.step!r}: {_reason(exc)}") from None
            uid = None
        if configmap is not None:
            configmap["metadata"]["labels"] = dict(manifest["metadata"]["labels"])
            await self._create_inputs(launch, name, uid, configmap)
        handle.update(
            backend=self.name,
            namespace=self.namespace,
            job_name=name,
            attempt_dir=launch.attempt_dir,
            step=launch.step,
            started=time.time(),
        )
        return handle

    async def _create_inputs(self, launch: StepLaunch, job: str, uid: str | None, body: dict[str, Any]) -> None:
        """The inputs ConfigMap, owned by the Job so it goes when the Job goes (TTL, cancel)."""
        from kubernetes_asyncio.client.exceptions import ApiException

        try:
            if uid is None:  # the Job existed already (a restart): own it by that Job
                uid = (
                    await self.batch.read_namespaced_job(job, self.namespace, _request_timeout=self.request_timeout)
                ).metadata.uid
            body["metadata"]["ownerReferences"] = job_owner_references(job, uid)
            await self.core.create_namespaced_config_map(self.namespace, body, _request_timeout=self.request_timeout)  # type: ignore[arg-type]
        except ApiException as exc:
            if exc.status == 409:
                return
            with contextlib.suppress(ApiException):  # the pod would wait for its inputs forever
                await self.batch.delete_namespaced_job(job, self.namespace, propagation_policy="Background")
            raise BackendError(
                f"could not create the inputs ConfigMap of step {launch.step!r}: {_reason(exc)}"
            ) from None

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

    def _pod(self, handle: dict[str, Any]) -> dict[str, Any] | None:
        assert self.pods is not None
        for pod in self.pods.objects.values():
            if pod["metadata"].get("labels", {}).get("job-name") == handle["job_name"]:
                return pod
        return None

    async def adopt(self, handle: dict[str, Any]) -> bool:
        assert self.jobs is not None
        await self.jobs.first_list.wait()
        return handle["job_name"] in self.jobs.objects

    async def events(self, handle: dict[str, Any], after: int) -> AsyncIterator[list[dict[str, Any]]]:
        assert self.pods is not None and self.events_reflector is not None
        await self.pods.first_list.wait()
        seen_diagnostics: set[str] = set()
        waiting_told: set[str] = set()
        pull_failing_since: float | None = None
        step = handle["step"]
        # 1. Until the pod runs: tell the user what the scheduler and kubelet say about it.
        while True:
            pod = self._pod(handle)
            phase = (pod or {}).get("status", {}).get("phase")
            if pod is not None and phase not in (None, "Pending"):
                break
            batch = self._diagnostics(pod, seen_diagnostics) if pod else []
            waiting = container_waiting(pod)
            if waiting is not None and waiting[0] in PULL_FAILURES:
                reason, message, image = waiting
                if pull_failing_since is None:
                    pull_failing_since = time.monotonic()
                    grace = self.image_pull_grace
                    then = "" if grace is None else f"; the step fails if it cannot be pulled within {grace:g}s"
                    batch.append(
                        _log(
                            f"step {step!r} cannot start: its image {image!r} cannot be pulled ({reason}: {message}); "
                            f"check the `image:` tag of step {step!r} (or c.KubernetesBackend.image){then}\n",
                            reason,
                        )
                    )
                elif (
                    self.image_pull_grace is not None and time.monotonic() - pull_failing_since >= self.image_pull_grace
                ):
                    error = (
                        f"step {step!r} failed: its image {image!r} could not be pulled for "
                        f"{self.image_pull_grace:g}s ({reason}: {message}); check the `image:` tag of step {step!r} "
                        "(or c.KubernetesBackend.image) and that the cluster may pull it"
                    )
                    end = {"type": "step.end", "status": "failed", "exit_code": None, "error": {"message": error}}
                    yield [*batch, end]
                    self._outcomes[self._key(handle)] = Outcome(None, error)
                    await self.cancel(handle)
                    return
            else:
                pull_failing_since = None  # pulled after all (a registry hiccup)
                if waiting is not None and waiting[0] not in QUIET_WAITING and waiting[0] not in waiting_told:
                    waiting_told.add(waiting[0])
                    batch.append(_log(f"step {step!r} waits: {waiting[0]}: {waiting[1]}\n", waiting[0]))
            if batch:
                yield batch
            try:
                await self.pods.wait_for(lambda: False, timeout=1.0)
            except asyncio.TimeoutError:
                pass
            if not await self.adopt(handle):  # from the Jobs watch: no API call per job
                self._outcomes[self._key(handle)] = Outcome(None, "the step's Job was deleted")
                return
        # 2. Follow the log until the pod has ended and the log is drained.
        key = self._key(handle)
        self._unreadable.pop(key, None)
        saw_end = [after > 0]  # resumed after the server restarted: step.end may be stored already
        async for batch in self._follow_log(handle, pod["metadata"]["name"], after, saw_end):
            yield batch
        outcome = self._outcome_of(self._pod(handle), handle)
        unreadable = self._unreadable.pop(key, None)
        if not outcome.final and (unreadable is not None or (outcome.exit_code == 0 and not saw_end[0])):
            # Success without the runner's own word is not success: the notebook never saw it run.
            why = f" ({unreadable})" if unreadable else ""
            outcome = Outcome(
                None,
                f"step {step!r}: its output could not be read from the pod log{why}, so what it did is "
                "unknown; the step is failed rather than reported as a success with no output. Check that "
                "the API server can reach the node's kubelet (`kubectl logs` of the step's pod).",
                final=True,
                code="lost",
            )
        self._outcomes[key] = outcome

    def _diagnostics(self, pod: dict[str, Any], seen: set[str]) -> list[dict[str, Any]]:
        assert self.events_reflector is not None
        out = []
        for event in self.events_reflector.objects.values():
            involved = event.get("involvedObject", {})
            if involved.get("name") != pod["metadata"]["name"] or event.get("reason") not in DIAGNOSTIC_REASONS:
                continue
            # once per reason and message: a back-off repeats the same event with a growing count
            key = f"{event.get('reason')}:{event.get('message')}"
            if key in seen:
                continue
            seen.add(key)
            out.append(_log(f"{event.get('reason')}: {event.get('message', '').strip()}\n", event.get("reason")))
        return out

    async def _follow_log(
        self, handle: dict[str, Any], pod: str, after: int, saw_end: list[bool] | None = None
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The runner's events from the pod log, in order, each once, until the pod has ended.

        Resumes with `sinceTime` after a drop and drops what was already seen by `n`. After a
        container restart (restartCount > the one being read) the previous container's log
        (`previous=true`) is read to its end before the new one is followed; the events of the
        container that has restarted r times are numbered from r * RESTART_STRIDE.
        """
        assert self.pods is not None
        # The container whose events were passed on last (0 at first): a restart since then is
        # caught up with below, whether it happened while we followed or while the server was down.
        state = _LogState(since=None, last_n=after, reading=after // RESTART_STRIDE)
        drain_attempts = 0

        def ended() -> bool:
            current = self._pod(handle)
            if current is None or current.get("status", {}).get("phase") in TERMINAL_PHASES:
                return True
            return restart_count(current) != state.reading  # a new container: re-plan the reads

        while True:
            current = self._pod(handle)
            final = current is None or current.get("status", {}).get("phase") in TERMINAL_PHASES
            state.failed = False
            for read in plan_log_reads(restart_count(current), state.reading, final):
                state.reading = read.instance
                async for batch in self._read_log(handle, pod, read, state, None if read.previous else ended):
                    received = await self._receive(handle, batch)
                    if saw_end is not None and state.saw_end:
                        saw_end[0] = True
                    if received:
                        yield received
            if final and not state.failed:
                return
            if current is None:
                # the pod is gone (deleted, or garbage-collected with its Job): so is its log
                if not state.saw_end:
                    self._unreadable[self._key(handle)] = state.error or "the pod was deleted"
                return
            if final:
                drain_attempts += 1
                if drain_attempts > LOG_DRAIN_ATTEMPTS:
                    self.log.warning("jupyter-ext: gave up reading the rest of pod %s's log", pod)
                    self._unreadable[self._key(handle)] = state.error or "the stream kept dropping"
                    return
            # the stream dropped (or the API was away): resume from `since`, backing off to 4 s
            await asyncio.sleep(min(4.0, 0.5 * 2 ** max(0, drain_attempts - 1)))

    async def _read_log(
        self,
        handle: dict[str, Any],
        pod: str,
        read: LogRead,
        state: _LogState,
        ended: Callable[[], bool] | None,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """One pods/log request; with `ended`, followed until the stream ends or `ended()` turns true."""
        assert self.pods is not None
        queue: asyncio.Queue[list[dict[str, Any]] | None] = asyncio.Queue()
        offset = read.instance * RESTART_STRIDE

        async def reader() -> None:
            # Called through call_api: the generated read_namespaced_pod_log has no sinceTime.
            query: list[tuple[str, str]] = [("container", CONTAINER_NAME), ("timestamps", "true")]
            if read.follow:
                query.append(("follow", "true"))
            if read.previous:
                query.append(("previous", "true"))
            if state.since:
                query.append(("sinceTime", state.since))
            try:
                resp: Any = await self.api.call_api(
                    "/api/v1/namespaces/{namespace}/pods/{name}/log",
                    "GET",
                    path_params={"namespace": handle["namespace"], "name": pod},
                    query_params=query,
                    auth_settings=["BearerToken"],
                    _preload_content=False,
                    _request_timeout=None if read.follow else self.request_timeout,
                )
                try:
                    if resp.status != 200:
                        body = (await resp.read())[:300].decode("utf-8", "replace")
                        raise BackendError(f"pods/log answered {resp.status}: {body}")
                    async for line in _lines(resp.content):
                        stamp, _, text = line.decode("utf-8", "replace").partition(" ")
                        if not LOG_STAMP.fullmatch(stamp):
                            continue
                        state.since = stamp
                        event = parse_line(text)
                        if event is not None and isinstance(event.get("n"), int):
                            if event.get("type") == "step.end":
                                state.saw_end = True
                            event["n"] += offset
                            queue.put_nowait([event])
                finally:
                    resp.release()
            except Exception as exc:  # noqa: BLE001 - a dropped stream is resumed by the caller
                if not read.previous:  # a previous container's log may be gone: nothing to resume
                    state.failed = True
                    state.error = str(exc) if isinstance(exc, BackendError) else repr(exc)
                self.log.warning("jupyter-ext: reading the log of pod %s failed: %r", pod, exc)
            finally:
                queue.put_nowait(None)

        task = asyncio.create_task(reader())
        # A finished read runs to its end (nothing to race against); a follow stops when `ended()`.
        watcher = asyncio.create_task(self.pods.wait_for(ended) if ended and read.follow else asyncio.Event().wait())
        try:
            while True:
                getter = asyncio.create_task(queue.get())
                done, _ = await asyncio.wait({getter, watcher}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()  # the pod ended (or restarted) while we followed: the caller drains
                    break
                batch = getter.result()
                if batch is None:
                    break
                # everything already read goes out as one batch (one store transaction, not one per line)
                ended_here = False
                while not queue.empty() and len(batch) < 2000:
                    more = queue.get_nowait()
                    if more is None:
                        ended_here = True
                        break
                    batch = batch + more
                fresh = [e for e in batch if int(e.get("n", 0)) > state.last_n]
                if fresh:
                    state.last_n = max(int(e["n"]) for e in fresh)
                    yield fresh
                if ended_here:
                    break
        finally:
            watcher.cancel()
            task.cancel()
            await asyncio.gather(task, watcher, return_exceptions=True)

    async def _receive(self, handle: dict[str, Any], batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Bring the files an event refers to onto the server before it is stored.

        `file` events (outputs over the log) are written into the attempt folder and not
        stored; with an artifact store, an `artifact` is fetched before its event is stored
        and the hand-off variables before `step.end` (the next step's inputs are read from here).
        """
        attempt_dir = Path(handle["attempt_dir"])
        outputs = handle.get("outputs")
        out = []
        for event in batch:
            kind = event.get("type")
            if kind == "file":
                if await asyncio.to_thread(transfer.write_chunk, attempt_dir, event) is None:
                    self.log.warning("jupyter-ext: ignored a malformed file event of step %s", handle["step"])
                continue
            if kind == "artifact" and "path" in event:
                rel = transfer.safe_relpath(event["path"])
                if rel is None:
                    continue
                event["location"] = str(attempt_dir / "artifacts" / rel)
                if outputs and not event.get("deferred"):  # a deferred one is made on the server, later
                    await self._fetch(handle, transfer.join(outputs, "artifacts", rel), Path(event["location"]))
            if kind == "step.end" and outputs:
                await self._fetch(handle, transfer.join(outputs, "handoff"), attempt_dir / "handoff", tree=True)
            out.append(event)
        return out

    async def _fetch(self, handle: dict[str, Any], url: str, local: Path, tree: bool = False) -> None:
        try:
            await asyncio.to_thread(transfer.get_tree if tree else transfer.get_file, url, local)
        except Exception as exc:  # noqa: BLE001 - a store error must not lose the step's events
            self.log.warning("jupyter-ext: could not fetch %s for step %s: %r", url, handle["step"], exc)

    def _outcome_of(self, pod: dict[str, Any] | None, handle: dict[str, Any]) -> Outcome:
        if pod is None:
            return Outcome(None, "the step's pod is gone (deleted before it finished)")
        status = pod.get("status", {})
        reason = status.get("reason")
        if reason == "DeadlineExceeded":
            return Outcome(None, "the step ran past its timeout (activeDeadlineSeconds)")
        if reason == "Evicted":
            return Outcome(None, f"the node evicted the step: {status.get('message', '')}")
        for container in status.get("containerStatuses", []) or []:
            terminated = (container.get("state") or {}).get("terminated")
            if terminated:
                code = terminated.get("exitCode")
                if terminated.get("reason") == "OOMKilled" or code == 137:
                    # OOMKilled with exit code 0 too: the kernel (a child of the runner) was the one killed
                    return Outcome(137, oom_words(handle["step"], _memory_limit(pod)), final=True, code="oom")
                return Outcome(code, None if code == 0 else terminated.get("reason"))
        return Outcome(0 if status.get("phase") == "Succeeded" else None, status.get("message"))

    async def outcome(self, handle: dict[str, Any]) -> Outcome:
        return self._outcomes.pop(self._key(handle), Outcome(None, "lost"))

    async def cancel(self, handle: dict[str, Any]) -> None:
        from kubernetes_asyncio.client.exceptions import ApiException

        try:
            await self.batch.delete_namespaced_job(
                handle["job_name"],
                handle["namespace"],
                propagation_policy="Background",
                _request_timeout=self.request_timeout,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise BackendError(f"could not delete the Job of step {handle['step']!r}: {_reason(exc)}") from None

    def capacity(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "watches": sum(r.watches_started for r in (self.pods, self.events_reflector, self.jobs) if r),
        }


NOTEBOOK_KEY = "step.ipynb"
PARAMETERS_KEY = "parameters.json"


def _memory_limit(pod: dict[str, Any]) -> str | None:
    for container in pod.get("spec", {}).get("containers", []) or []:
        if container.get("name") == CONTAINER_NAME:
            return ((container.get("resources") or {}).get("limits") or {}).get("memory")
    return None


def oom_words(step: str, limit: str | None) -> str:
    """The plain out-of-memory message: what happened, the limit, the tag to raise."""
    at = f" of {limit}" if limit else ""
    return (
        f"Out of memory: step {step!r} used more than its memory limit{at} and was stopped by the node. "
        f"Raise it with a `memory:` tag on step {step!r} (e.g. `memory:{_doubled(limit)}`)."
    )


def _doubled(limit: str | None) -> str:
    if not limit:
        return "4Gi"
    m = re.fullmatch(r"(\d+)([A-Za-z]*)", limit)
    return f"{int(m.group(1)) * 2}{m.group(2)}" if m else limit


def _handoff_keys(launch: StepLaunch) -> dict[str, str]:
    """Input variable -> its file name among the inputs (by position: names need not be ConfigMap keys)."""
    try:
        mapping = json.loads(launch.env.get("JUPYTER_EXT_HANDOFF_IN") or "{}")
    except ValueError:
        mapping = {}
    return {var: f"handoff.{i}.pkl" for i, var in enumerate(sorted(mapping))}


def _input_files(launch: StepLaunch, params: Path) -> dict[str, bytes]:
    """The files a pod that cannot see the server's disk needs: notebook, parameters, hand-off inputs."""
    files = {NOTEBOOK_KEY: Path(launch.notebook).read_bytes(), PARAMETERS_KEY: params.read_bytes()}
    mapping = json.loads(launch.env.get("JUPYTER_EXT_HANDOFF_IN") or "{}")
    for var, key in _handoff_keys(launch).items():
        source = Path(mapping[var])
        if source.is_file():  # a missing one fails in the kernel with a message naming the variable
            files[key] = source.read_bytes()
    return files


def _show(key: str, value: float) -> str:
    if key == "memory":
        return f"{value / 2**30:.3g}Gi memory"
    if key == "cpu":
        return f"{value:g} CPU"
    return f"{value:g} {key}"


def _reason(exc: Any) -> str:
    try:
        return str(json.loads(exc.body).get("message", exc.reason))
    except (TypeError, ValueError, AttributeError):
        return str(getattr(exc, "reason", exc))


__all__ = ["KubernetesBackend", "Reflector", "job_name"]
