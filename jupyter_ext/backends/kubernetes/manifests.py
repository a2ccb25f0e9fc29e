"""Kubernetes manifests for one step attempt, as plain JSON-able dicts built by pure functions.

Nothing here talks to a cluster or imports a client library: `make_job` and
`make_inputs_configmap` turn a `StepLaunch` and the operator's `JobOptions` into the
objects the backend creates, and the tests compare them with literal dicts.

One attempt is one batch/v1 Job (``backoffLimit: 0``: retries belong to the orchestrator)
whose only container runs the step runner. Inputs the pod cannot read from the server's
disk (the step's notebook, its parameters, small hand-off variables) travel in a ConfigMap
mounted read-only at `INPUTS_DIR`; `SCRATCH_DIR` is an emptyDir the runner may write its
attempt folder to, whatever the image lets uid `run_as_user` write.

Operator escape hatches, as in kubespawner: `extra_container_config` and `extra_pod_config`
are applied last with `deep_merge` (dicts merge key by key, lists and other values replace,
``None`` removes a key). Keys are Kubernetes' own camelCase JSON names (``nodeSelector``).
"""

from __future__ import annotations

import base64
import copy
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from ... import quantity
from ...errors import ValidationError
from ..base import StepLaunch, runner_argv
from ..slugs import job_name, label_value
from .resources import container_resources, is_gpu_key

MANAGED_BY = "jupyter-ext"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_JOB = "jupyter-ext/job"
LABEL_STEP = "jupyter-ext/step"
LABEL_ATTEMPT = "jupyter-ext/attempt"
LABEL_USER = "jupyter-ext/user"
CONTAINER_NAME = "runner"
INPUTS_DIR = "/var/run/jupyter-ext/inputs"
SCRATCH_DIR = "/var/run/jupyter-ext/attempt"
SHM_DIR = "/dev/shm"  # noqa: S108 - a path inside the step's container, not a temp file of ours
SHM_VOLUME = "jupyter-ext-shm"
INPUTS_VOLUME = "jupyter-ext-inputs"
SCRATCH_VOLUME = "jupyter-ext-attempt"
HOME_VOLUME = "jupyter-ext-home"
DEFAULT_HOME_MOUNT = "/home/jovyan"  # where JupyterHub's docker-stacks images keep the user's home
HOSTNAME_TOPOLOGY = "kubernetes.io/hostname"
# ConfigMaps hold at most 1 MiB (data + binaryData, raw bytes); keep room for keys and metadata.
MAX_INPUTS_BYTES = 900 * 1024
# Where the operator points large inputs instead; named in the error message.
ARTIFACT_STORE_SETTING = "c.KubernetesBackend.artifact_store"
# The server's credentials never reach a step, even if something put them in its env.
SECRET_ENV_PREFIXES = ("JUPYTER_TOKEN", "JUPYTERHUB_API_TOKEN", "JPY_")

_MI = 2**20
_CONFIGMAP_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}")


def _opt(default: Any, help: str) -> Any:
    """A JobOptions field with its one-line help (the backend reuses it for its traits)."""
    if isinstance(default, dict | list):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class JobOptions:
    """The operator's configuration of step Jobs (the KubernetesBackend traits, as plain data)."""

    namespace: str = _opt("default", "Namespace the step Jobs and their input ConfigMaps are created in.")
    image: str = _opt("", "Image of steps that set no `image:`; it needs jupyter-ext, papermill and ipykernel.")
    gpu_resource: str = _opt("nvidia.com/gpu", "Extended resource a step's `gpu:N` is requested as (e.g. amd.com/gpu).")
    gpu_node_selector: dict[str, str] = _opt({}, "nodeSelector added (to node_selector) for steps that ask for GPUs.")
    gpu_tolerations: list[dict[str, Any]] = _opt([], "Tolerations added for steps that ask for GPUs (GPU taints).")
    service_account: str | None = _opt(None, "Service account step pods run as; None: the namespace's default.")
    automount_service_account_token: bool = _opt(False, "Mount the service account's API token into step pods.")
    node_selector: dict[str, str] = _opt({}, "nodeSelector of every step pod.")
    tolerations: list[dict[str, Any]] = _opt([], "Tolerations of every step pod.")
    affinity: dict[str, Any] | None = _opt(None, "Affinity of every step pod (a Kubernetes Affinity object).")
    image_pull_policy: str | None = _opt(None, "imagePullPolicy of the step container; None: Kubernetes' default.")
    extra_env: dict[str, Any] = _opt({}, "Env of every step: NAME -> value, or NAME -> {'valueFrom': {...}}.")
    extra_volumes: list[dict[str, Any]] = _opt([], "Volumes added to every step pod.")
    extra_volume_mounts: list[dict[str, Any]] = _opt([], "Volume mounts added to the step container.")
    ttl_seconds_after_finished: int | None = _opt(3600, "Seconds a finished Job and its pod are kept; None: forever.")
    run_as_user: int | None = _opt(1000, "uid step containers run as; None: the image's (which must be non-root).")
    run_as_group: int | None = _opt(100, "Primary gid step containers run as; None: the image's.")
    fs_group: int | None = _opt(100, "Group that owns mounted volumes, so the step can write them.")
    shm_fraction: float = _opt(0.5, "Share of a step's memory its shared memory may use (counted against it).")
    shm_min: str = _opt("64Mi", "Smallest shared memory of a step that sets memory.")
    shm_default: str = _opt("1Gi", "Shared memory of a step that sets no memory.")
    extra_labels: dict[str, str] = _opt({}, "Labels added to every Job and pod (ours win on a clash).")
    extra_annotations: dict[str, str] = _opt({}, "Annotations added to every Job and pod (ours win on a clash).")
    extra_pod_config: dict[str, Any] = _opt({}, "Deep-merged into the pod spec last (dicts merge, lists replace).")
    extra_container_config: dict[str, Any] = _opt({}, "Deep-merged into the step container last, likewise.")
    user: str = _opt("", "User named in labels when a launch names none (e.g. this server's hub user).")
    home_claim: str | None = _opt(None, "PersistentVolumeClaim of the user's home, mounted into every step pod.")
    home_mount: str = _opt(DEFAULT_HOME_MOUNT, "Where the home claim is mounted: the same path as in the user's pod.")
    home_read_write_once: bool = _opt(False, "The home claim is ReadWriteOnce: step pods must run on the user's node.")
    home_pod_labels: dict[str, str] = _opt({}, "Labels of the user's pod; step pods require affinity to its node.")
    home_pod_namespace: str | None = _opt(None, "Namespace of the user's pod, when not the jobs' namespace.")
    home_node: str | None = _opt(None, "The user's node, when its pod's labels are unknown (node affinity).")


# -- helpers ----------------------------------------------------------------------------------------------


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """`base` updated with `extra`: dicts merge recursively, anything else replaces, None removes.

    Lists replace rather than append, so an operator can take out what we put in (e.g. a
    toleration); to add, repeat ours. Neither argument is changed.
    """
    merged = copy.deepcopy(dict(base))
    for key, value in extra.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def shm_size(memory_limit: str | None, opts: JobOptions) -> str:
    """Size of the step's shared memory (`SHM_DIR`), as a quantity string.

    `shm_fraction` of the memory limit rounded down to MiB, at least `shm_min` (but never
    above the limit), or `shm_default` when the step sets no memory.
    """
    if memory_limit is None:
        return quantity.format_bytes(quantity.parse_memory(opts.shm_default, "shm_default"))
    memory = quantity.parse_memory(memory_limit)
    share = int(Fraction(memory) * Fraction(opts.shm_fraction)) // _MI * _MI
    size = min(memory, max(share, quantity.parse_memory(opts.shm_min, "shm_min")))
    return quantity.format_bytes(size)


def pod_labels(launch: StepLaunch, opts: JobOptions) -> dict[str, str]:
    """Labels of the Job and its pod: the operator's, then ours (valid label values, slugged)."""
    return {
        **opts.extra_labels,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_JOB: label_value(launch.job_id),
        LABEL_STEP: label_value(launch.step),
        LABEL_ATTEMPT: str(launch.attempt),
        LABEL_USER: label_value(launch.user or opts.user),
    }


def pod_annotations(launch: StepLaunch, opts: JobOptions) -> dict[str, str]:
    """Annotations of the Job and its pod: the raw job id, step name, attempt and user."""
    return {
        **opts.extra_annotations,
        LABEL_JOB: launch.job_id,
        LABEL_STEP: launch.step,
        LABEL_ATTEMPT: str(launch.attempt),
        LABEL_USER: launch.user or opts.user,
    }


def label_selector(job_id: str | None = None, step: str | None = None, attempt: int | None = None) -> str:
    """A label selector for our Jobs and pods, narrowed to a job, a step and an attempt if given."""
    parts = [f"{LABEL_MANAGED_BY}={MANAGED_BY}"]
    if job_id is not None:
        parts.append(f"{LABEL_JOB}={label_value(job_id)}")
    if step is not None:
        parts.append(f"{LABEL_STEP}={label_value(step)}")
    if attempt is not None:
        parts.append(f"{LABEL_ATTEMPT}={attempt}")
    return ",".join(parts)


def _env(launch: StepLaunch, opts: JobOptions, limits: Mapping[str, str]) -> list[dict[str, Any]]:
    env: dict[str, Any] = {}
    if opts.gpu_resource.startswith("nvidia.com/") and not any(k.startswith("nvidia.com/") for k in limits):
        # CUDA images set NVIDIA_VISIBLE_DEVICES=all; on a GPU node the NVIDIA runtime would
        # then hand every GPU to a step that asked for none (the local backend hides them too).
        env["NVIDIA_VISIBLE_DEVICES"] = "void"
    env.update(opts.extra_env)
    env.update(launch.env)
    env.update(
        PYTHONUNBUFFERED="1",
        JUPYTER_EXT_JOB=launch.job_id,
        JUPYTER_EXT_STEP=launch.step,
        JUPYTER_EXT_ATTEMPT=str(launch.attempt),
    )
    out = []
    for name, value in env.items():
        if name.startswith(SECRET_ENV_PREFIXES):
            continue
        if isinstance(value, Mapping):
            out.append({"name": name, **copy.deepcopy(dict(value))})
        else:
            out.append({"name": name, "value": str(value)})
    return out


def runner_command(
    launch: StepLaunch,
    *,
    notebook: str,
    attempt_dir: str = SCRATCH_DIR,
    workdir: str = SCRATCH_DIR,
    parameters_file: str | None = None,
    python: str = "python",
) -> list[str]:
    """The runner's argv inside the pod: events go to stdout only, since the pod log is the channel."""
    return runner_argv(
        launch,
        notebook=notebook,
        attempt_dir=attempt_dir,
        workdir=workdir,
        parameters_file=parameters_file,
        python=python,
        events_stdout=True,
    )


# -- the objects ----------------------------------------------------------------------------------------------


def make_job(
    launch: StepLaunch, opts: JobOptions, *, command: list[str], inputs_configmap: str | None = None
) -> dict[str, Any]:
    """The batch/v1 Job that runs one attempt of one step; its name is `slugs.job_name(...)`.

    `command` is the container's argv (see `runner_command`), never a shell string.
    `inputs_configmap` names a ConfigMap mounted read-only at `INPUTS_DIR`.
    """
    if isinstance(command, str) or not command or not all(isinstance(part, str) for part in command):
        raise TypeError("command must be a non-empty list of strings (an argv, not a shell line)")
    image = launch.resources.image or opts.image
    if not image:
        raise ValidationError(
            f"step {launch.step!r} has no image: add an `image:` tag to step {launch.step!r}, "
            "or set c.KubernetesBackend.image",
            step=launch.step,
            field="resources.image",
        )
    resources = container_resources(launch.resources, opts.gpu_resource, launch.step)
    limits = resources.get("limits", {})
    wants_gpu = any(is_gpu_key(key, opts.gpu_resource) for key in limits)

    volumes: list[dict[str, Any]] = [
        {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": shm_size(limits.get("memory"), opts)}},
    ]
    mounts: list[dict[str, Any]] = [{"name": SHM_VOLUME, "mountPath": SHM_DIR}]
    if inputs_configmap is not None:
        volumes.append({"name": INPUTS_VOLUME, "configMap": {"name": inputs_configmap}})
        mounts.append({"name": INPUTS_VOLUME, "mountPath": INPUTS_DIR, "readOnly": True})
    volumes.append({"name": SCRATCH_VOLUME, "emptyDir": {}})
    mounts.append({"name": SCRATCH_VOLUME, "mountPath": SCRATCH_DIR})
    if opts.home_claim:
        volumes.append({"name": HOME_VOLUME, "persistentVolumeClaim": {"claimName": opts.home_claim}})
        mounts.append({"name": HOME_VOLUME, "mountPath": opts.home_mount})
    volumes += copy.deepcopy(opts.extra_volumes)
    mounts += copy.deepcopy(opts.extra_volume_mounts)

    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image,
        "command": list(command),
        "env": _env(launch, opts, limits),
        "resources": resources,
        "volumeMounts": mounts,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": False,
        },
        # A runner that dies before reporting leaves the tail of its log as the reason.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if opts.image_pull_policy:
        container["imagePullPolicy"] = opts.image_pull_policy
    container = deep_merge(container, opts.extra_container_config)

    pod_security: dict[str, Any] = {"runAsNonRoot": True}
    for key, value in (("runAsUser", opts.run_as_user), ("runAsGroup", opts.run_as_group), ("fsGroup", opts.fs_group)):
        if value is not None:
            pod_security[key] = value
    pod_security["seccompProfile"] = {"type": "RuntimeDefault"}

    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": opts.automount_service_account_token,
        # Service env vars (FOO_SERVICE_HOST, ...) of the namespace would only clutter the kernel.
        "enableServiceLinks": False,
        "securityContext": pod_security,
        "containers": [container],
        "volumes": volumes,
    }
    if launch.timeout is not None:
        # Counted from the pod's start on a node, so time spent waiting for a GPU is not lost;
        # the orchestrator enforces the step's timeout itself, this is the backstop.
        pod["activeDeadlineSeconds"] = math.ceil(launch.timeout)
    if opts.service_account:
        pod["serviceAccountName"] = opts.service_account
    node_selector = {**opts.node_selector, **(opts.gpu_node_selector if wants_gpu else {})}
    if node_selector:
        pod["nodeSelector"] = node_selector
    tolerations = [*opts.tolerations, *(opts.gpu_tolerations if wants_gpu else [])]
    if tolerations:
        pod["tolerations"] = copy.deepcopy(tolerations)
    affinity = home_affinity(opts, launch.step)
    if opts.affinity:
        affinity = deep_merge(affinity, opts.affinity) if affinity else copy.deepcopy(opts.affinity)
    if affinity:
        pod["affinity"] = affinity
    pod = deep_merge(pod, opts.extra_pod_config)

    job_labels = pod_labels(launch, opts)
    job_annotations = pod_annotations(launch, opts)
    spec: dict[str, Any] = {"backoffLimit": 0}
    if opts.ttl_seconds_after_finished is not None:
        spec["ttlSecondsAfterFinished"] = opts.ttl_seconds_after_finished
    spec["template"] = {"metadata": {"labels": dict(job_labels), "annotations": dict(job_annotations)}, "spec": pod}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(launch.job_id, launch.step, launch.attempt),
            "namespace": opts.namespace,
            "labels": job_labels,
            "annotations": job_annotations,
        },
        "spec": spec,
    }


def home_affinity(opts: JobOptions, step: str = "") -> dict[str, Any]:
    """Affinity that puts a step pod on the user's node, when it mounts a ReadWriteOnce home claim.

    A ReadWriteOnce volume attaches to one node at a time, so the step must run where the
    user's pod runs: required pod affinity to that pod (its labels, topology
    ``kubernetes.io/hostname``), else required node affinity to the node by name. Neither
    known is an error naming the step and the settings, since the pod would never start.
    """
    if not (opts.home_claim and opts.home_read_write_once):
        return {}
    if opts.home_pod_labels:
        term: dict[str, Any] = {
            "labelSelector": {"matchLabels": dict(opts.home_pod_labels)},
            "topologyKey": HOSTNAME_TOPOLOGY,
        }
        if opts.home_pod_namespace and opts.home_pod_namespace != opts.namespace:
            term["namespaces"] = [opts.home_pod_namespace]
        return {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    if opts.home_node:
        match = {"key": "metadata.name", "operator": "In", "values": [opts.home_node]}
        return {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchFields": [match]}]}
            }
        }
    raise ValidationError(
        f"step {step!r} mounts the ReadWriteOnce home claim {opts.home_claim!r} but the node of your server "
        "is unknown; set c.KubernetesBackend.user_pod_labels (or home_read_write_once = False)",
        step=step or None,
        field="home_claim",
    )


def _human_bytes(n: int) -> str:
    return f"{n / _MI:.1f} MiB" if n >= _MI else f"{math.ceil(n / 1024)} KiB"


def job_owner_references(job_name: str, uid: str) -> list[dict[str, str]]:
    """ownerReferences making an object the Job's: Kubernetes deletes it with the Job."""
    return [{"apiVersion": "batch/v1", "kind": "Job", "name": job_name, "uid": uid}]


def make_inputs_configmap(
    name: str,
    job_name: str,
    files: Mapping[str, bytes],
    owner_uid: str | None,
    *,
    namespace: str | None = None,
    labels: Mapping[str, str] | None = None,
    step: str | None = None,
    max_bytes: int = MAX_INPUTS_BYTES,
) -> dict[str, Any]:
    """An immutable ConfigMap carrying a step's input files (mounted at `INPUTS_DIR` by the Job).

    With `owner_uid` (the created Job's metadata.uid) it is owned by the Job, so Kubernetes
    deletes it with the Job. Raises ValidationError when the files exceed `max_bytes` (at most
    `MAX_INPUTS_BYTES`).
    """
    max_bytes = min(max_bytes, MAX_INPUTS_BYTES)
    for key in files:
        if not _CONFIGMAP_KEY.fullmatch(key):
            raise ValueError(f"{key!r} is not a ConfigMap key: use letters, digits, '-', '_' and '.'")
    total = sum(len(data) for data in files.values())
    if total > max_bytes:
        who = f"step {step!r}" if step else "the step"
        limit = (
            f"the {_human_bytes(max_bytes)} a Kubernetes ConfigMap can carry"
            if max_bytes == MAX_INPUTS_BYTES
            else f"the {_human_bytes(max_bytes)} allowed in a ConfigMap (c.KubernetesBackend.configmap_max_bytes)"
        )
        raise ValidationError(
            f"the inputs of {who} (its notebook, parameters and hand-off variables) come to "
            f"{_human_bytes(total)}, more than {limit}; configure an artifact store "
            f"({ARTIFACT_STORE_SETTING}) so large inputs travel through it, or hand smaller variables to this step",
            step=step,
            field="inputs",
        )
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    if labels:
        metadata["labels"] = dict(labels)
    if owner_uid is not None:
        metadata["ownerReferences"] = job_owner_references(job_name, owner_uid)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "immutable": True,
        "binaryData": {key: base64.b64encode(data).decode("ascii") for key, data in files.items()},
    }
