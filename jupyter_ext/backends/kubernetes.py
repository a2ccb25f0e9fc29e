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
import json
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from traitlets import Any as AnyTrait
from traitlets import Bool, Dict, Float, Int, List, Unicode, default

from .. import quantity
from ..errors import BackendError, ValidationError
from ..models import Resources
from ..runner.emitter import parse_line
from .base import Backend, Outcome, StepLaunch
from .k8s_manifests import CONTAINER_NAME, JobOptions, label_selector, make_job, resource_summary, runner_command
from .slugs import job_name

SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
TERMINAL_PHASES = ("Succeeded", "Failed")
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

    namespace = Unicode(help="Namespace of step Jobs (default: the server pod's own, else 'default').").tag(config=True)

    @default("namespace")
    def _default_namespace(self) -> str:
        try:
            return SA_NAMESPACE.read_text().strip()
        except OSError:
            return os.environ.get("JUPYTER_EXT_NAMESPACE", "default")

    image = Unicode(help="Image of steps that set no `image:` (default: $JUPYTER_IMAGE, the user's own).").tag(
        config=True
    )

    @default("image")
    def _default_image(self) -> str:
        return os.environ.get("JUPYTER_IMAGE") or "quay.io/jupyter/base-notebook:latest"

    gpu_resource = Unicode("nvidia.com/gpu", help="Extended resource `gpu:N` is requested as.").tag(config=True)
    python = Unicode("python", help="Python of the step image that runs `-m jupyter_ext.runner`.").tag(config=True)
    service_account = Unicode(None, allow_none=True, help="Service account of step pods.").tag(config=True)
    automount_service_account_token = Bool(False, help="Mount the API token into step pods.").tag(config=True)
    node_selector = Dict(help="nodeSelector of every step pod.").tag(config=True)
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
        self._access_checked_until = 0.0
        self._nodes_cache: tuple[float, list[dict[str, float]]] | None = None
        self._preflight_lock = asyncio.Lock()

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
        )

    def check(self, step: str, resources: Resources) -> None:
        resource_summary(resources, self.gpu_resource, step)  # raises naming the step on a bad limit
        if not self.shared_paths:
            raise ValidationError(
                f"step {step!r}: the kubernetes backend needs the server's data folder shared with step pods "
                "(c.KubernetesBackend.shared_paths with a shared volume); ask your administrator",
                step=step,
            )

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

        attempt_dir = Path(launch.attempt_dir)
        params = attempt_dir / "parameters.json"

        def prepare() -> None:
            (attempt_dir / "artifacts").mkdir(parents=True, exist_ok=True)
            params.write_text(json.dumps(launch.parameters))

        await asyncio.to_thread(prepare)
        env = dict(launch.env)
        env["JUPYTER_EXT_ARTIFACTS_DIR"] = str(attempt_dir / "artifacts")
        launch = StepLaunch(**{**launch.__dict__, "env": env})
        command = runner_command(
            launch,
            notebook=launch.notebook,
            attempt_dir=launch.attempt_dir,
            workdir=launch.workdir,
            parameters_file=str(params),
            python=self.python,
        )
        manifest = await self.build_job(launch, command)
        name = manifest["metadata"]["name"]
        try:
            await self.batch.create_namespaced_job(self.namespace, manifest, _request_timeout=self.request_timeout)  # type: ignore[arg-type]
        except ApiException as exc:
            if exc.status != 409:  # 409: created before a restart; adopt it
                raise BackendError(f"could not create the Job of step {launch.step!r}: {_reason(exc)}") from None
        return {
            "backend": self.name,
            "namespace": self.namespace,
            "job_name": name,
            "attempt_dir": launch.attempt_dir,
            "step": launch.step,
            "started": time.time(),
        }

    async def build_job(self, launch: StepLaunch, command: list[str]) -> dict[str, Any]:
        """The Job manifest of an attempt, after the operator's `modify_pod_hook` (may be async)."""
        manifest = make_job(launch, self.options(), command=command)
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
        # 1. Until the pod runs: tell the user what the scheduler and kubelet say about it.
        while True:
            pod = self._pod(handle)
            phase = (pod or {}).get("status", {}).get("phase")
            if pod is not None and phase not in (None, "Pending"):
                break
            diagnostics = self._diagnostics(pod, seen_diagnostics) if pod else []
            if diagnostics:
                yield diagnostics
            try:
                await self.pods.wait_for(lambda: False, timeout=1.0)
            except asyncio.TimeoutError:
                pass
            if not await self.adopt(handle):  # from the Jobs watch: no API call per job
                self._outcomes[self._key(handle)] = Outcome(None, "the step's Job was deleted")
                return
        # 2. Follow the log until the pod has ended and the log is drained.
        async for batch in self._follow_log(handle, pod["metadata"]["name"], after):
            yield batch
        self._outcomes[self._key(handle)] = self._outcome_of(self._pod(handle), handle)

    def _diagnostics(self, pod: dict[str, Any], seen: set[str]) -> list[dict[str, Any]]:
        assert self.events_reflector is not None
        out = []
        for event in self.events_reflector.objects.values():
            involved = event.get("involvedObject", {})
            if involved.get("name") != pod["metadata"]["name"] or event.get("reason") not in DIAGNOSTIC_REASONS:
                continue
            key = f"{event['metadata'].get('uid')}:{event.get('count')}:{event.get('message')}"
            if key in seen:
                continue
            seen.add(key)
            out.append(
                {
                    "type": "log",
                    "stream": "stderr",
                    "reason": event.get("reason"),
                    "text": f"{event.get('reason')}: {event.get('message', '').strip()}\n",
                }
            )
        return out

    async def _follow_log(self, handle: dict[str, Any], pod: str, after: int) -> AsyncIterator[list[dict[str, Any]]]:
        assert self.pods is not None
        since: str | None = None
        last_n = after
        drain_attempts = 0

        def ended() -> bool:
            current = self._pod(handle)
            return current is None or current.get("status", {}).get("phase") in TERMINAL_PHASES

        while True:
            final = ended()
            read_failed = False
            queue: asyncio.Queue[list[dict[str, Any]] | None] = asyncio.Queue()

            async def read(follow: bool, queue: asyncio.Queue[list[dict[str, Any]] | None]) -> None:
                nonlocal since, read_failed
                # Called through call_api: the generated read_namespaced_pod_log has no sinceTime.
                query: list[tuple[str, str]] = [("container", CONTAINER_NAME), ("timestamps", "true")]
                if follow:
                    query.append(("follow", "true"))
                if since:
                    query.append(("sinceTime", since))
                try:
                    resp: Any = await self.api.call_api(
                        "/api/v1/namespaces/{namespace}/pods/{name}/log",
                        "GET",
                        path_params={"namespace": handle["namespace"], "name": pod},
                        query_params=query,
                        auth_settings=["BearerToken"],
                        _preload_content=False,
                        _request_timeout=None if follow else self.request_timeout,
                    )
                    try:
                        if resp.status != 200:
                            body = (await resp.read())[:300].decode("utf-8", "replace")
                            raise BackendError(f"pods/log answered {resp.status}: {body}")
                        while True:
                            line = await resp.content.readline()
                            if not line:
                                break
                            stamp, _, text = line.decode("utf-8", "replace").partition(" ")
                            if not LOG_STAMP.fullmatch(stamp):
                                continue
                            since = stamp
                            event = parse_line(text)
                            if event is not None:
                                queue.put_nowait([event])
                    finally:
                        resp.release()
                except Exception as exc:  # noqa: BLE001 - a dropped stream is resumed below
                    read_failed = True
                    self.log.warning("jupyter-ext: reading the log of pod %s failed: %r", pod, exc)
                finally:
                    queue.put_nowait(None)

            reader = asyncio.create_task(read(not final, queue))
            # Once the pod has ended, the last read runs to its end (nothing to race against).
            watcher = asyncio.create_task(self.pods.wait_for(ended) if not final else asyncio.Event().wait())
            try:
                while True:
                    getter = asyncio.create_task(queue.get())
                    done, _ = await asyncio.wait({getter, watcher}, return_when=asyncio.FIRST_COMPLETED)
                    if getter in done:
                        batch = getter.result()
                        if batch is None:
                            break
                        fresh = [e for e in batch if int(e.get("n", 0)) > last_n]
                        if fresh:
                            last_n = max(int(e["n"]) for e in fresh)
                            for event in fresh:
                                if event.get("type") == "artifact" and "path" in event:
                                    event["location"] = str(Path(handle["attempt_dir"]) / "artifacts" / event["path"])
                            yield fresh
                    else:
                        getter.cancel()
                        # The pod ended while we followed: stop following, then drain what is left.
                        reader.cancel()
                        await asyncio.gather(reader, return_exceptions=True)
                        break
            finally:
                watcher.cancel()
                reader.cancel()
            if final and not read_failed:
                return
            if final:
                drain_attempts += 1
                if drain_attempts > 10:
                    self.log.warning("jupyter-ext: gave up reading the rest of pod %s's log", pod)
                    return
            await asyncio.sleep(0.5)  # the stream dropped (or the API was away): resume from `since`

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
                    return Outcome(137, f"the step ran out of memory: raise `memory:` on step {handle['step']!r}")
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
