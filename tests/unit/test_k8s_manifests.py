"""Step Jobs and input ConfigMaps, compared with literal manifests."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import fields
from typing import Any

import pytest

from jupyter_ext.backends.base import StepLaunch
from jupyter_ext.backends.kubernetes.manifests import (
    INPUTS_DIR,
    MAX_INPUTS_BYTES,
    JobOptions,
    deep_merge,
    label_selector,
    make_inputs_configmap,
    make_job,
    runner_command,
)
from jupyter_ext.backends.kubernetes.resources import resource_summary
from jupyter_ext.errors import ValidationError
from jupyter_ext.models import Resources

IMAGE = "ghcr.io/example/jupyter-ext-runner:1.0"
LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def launch(**overrides: Any) -> StepLaunch:
    values: dict[str, Any] = {
        "job_id": "3f2a9c1b7d4e",
        "step": "train",
        "attempt": 1,
        "user": "alice",
        "notebook": "/srv/jobs/3f2a9c1b7d4e/train.ipynb",
        "attempt_dir": "/srv/jobs/3f2a9c1b7d4e/train/1",
        "workdir": "/home/alice",
        "resources": Resources(gpu=1, memory="16Gi", cpu="4"),
        "env": {"JUPYTER_EXT_HANDOFF_OUT": "/var/run/jupyter-ext/attempt/handoff"},
        "timeout": 3600.0,
    }
    values.update(overrides)
    return StepLaunch(**values)


def job(step: StepLaunch | None = None, **opts: Any) -> dict[str, Any]:
    options = JobOptions(**{"namespace": "jupyter", "image": IMAGE, **opts})
    return make_job(step or launch(), options, command=["python", "-m", "jupyter_ext.runner"])


def pod(manifest: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return spec


def container(manifest: dict[str, Any]) -> dict[str, Any]:
    only: dict[str, Any] = pod(manifest)["containers"][0]
    return only


def env(manifest: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(manifest)["env"]}


def test_typical_gpu_step() -> None:
    step = launch()
    command = runner_command(step, notebook=f"{INPUTS_DIR}/step.ipynb", parameters_file=f"{INPUTS_DIR}/params.json")
    manifest = make_job(
        step,
        JobOptions(namespace="jupyter", image=IMAGE),
        command=command,
        inputs_configmap="jx-3f2a9c1b7d4e-train-1-ccd603bd",
    )
    labels = {
        "app.kubernetes.io/managed-by": "jupyter-ext",
        "jupyter-ext/job": "3f2a9c1b7d4e",
        "jupyter-ext/step": "train",
        "jupyter-ext/attempt": "1",
        "jupyter-ext/user": "alice",
    }
    annotations = {
        "jupyter-ext/job": "3f2a9c1b7d4e",
        "jupyter-ext/step": "train",
        "jupyter-ext/attempt": "1",
        "jupyter-ext/user": "alice",
    }
    assert manifest == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "jx-3f2a9c1b7d4e-train-1-ccd603bd",
            "namespace": "jupyter",
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {
                    "restartPolicy": "Never",
                    "activeDeadlineSeconds": 3600,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 1000,
                        "runAsGroup": 100,
                        "fsGroup": 100,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "runner",
                            "image": IMAGE,
                            "command": [
                                "python",
                                "-m",
                                "jupyter_ext.runner",
                                "--notebook",
                                "/var/run/jupyter-ext/inputs/step.ipynb",
                                "--attempt-dir",
                                "/var/run/jupyter-ext/attempt",
                                "--workdir",
                                "/var/run/jupyter-ext/attempt",
                                "--job",
                                "3f2a9c1b7d4e",
                                "--step",
                                "train",
                                "--attempt",
                                "1",
                                "--parameters-file",
                                "/var/run/jupyter-ext/inputs/params.json",
                                "--events-stdout",
                                "--no-events-file",
                            ],
                            "env": [
                                {"name": "JUPYTER_EXT_HANDOFF_OUT", "value": "/var/run/jupyter-ext/attempt/handoff"},
                                {"name": "PYTHONUNBUFFERED", "value": "1"},
                                {"name": "JUPYTER_EXT_JOB", "value": "3f2a9c1b7d4e"},
                                {"name": "JUPYTER_EXT_STEP", "value": "train"},
                                {"name": "JUPYTER_EXT_ATTEMPT", "value": "1"},
                            ],
                            "resources": {
                                "requests": {"cpu": "4", "memory": "16Gi"},
                                "limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
                            },
                            "volumeMounts": [
                                {"name": "jupyter-ext-shm", "mountPath": "/dev/shm"},
                                {"name": "jupyter-ext-inputs", "mountPath": INPUTS_DIR, "readOnly": True},
                                {"name": "jupyter-ext-attempt", "mountPath": "/var/run/jupyter-ext/attempt"},
                            ],
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                                "readOnlyRootFilesystem": False,
                            },
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                        }
                    ],
                    "volumes": [
                        {"name": "jupyter-ext-shm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}},
                        {"name": "jupyter-ext-inputs", "configMap": {"name": "jx-3f2a9c1b7d4e-train-1-ccd603bd"}},
                        {"name": "jupyter-ext-attempt", "emptyDir": {}},
                    ],
                },
            },
        },
    }
    assert json.loads(json.dumps(manifest)) == manifest


def test_cpu_only_step_has_no_gpu_and_hides_the_nodes_gpus() -> None:
    manifest = job(launch(resources=Resources(cpu="500m", memory="1G")))
    assert container(manifest)["resources"] == {
        "requests": {"cpu": "500m", "memory": "1000000000"},
        "limits": {"cpu": "500m", "memory": "1000000000"},
    }
    assert env(manifest)["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert pod(manifest)["volumes"][0]["emptyDir"]["sizeLimit"] == "476Mi"
    assert "NVIDIA_VISIBLE_DEVICES" not in env(job())


def test_gpus_under_the_configured_vendor_key() -> None:
    manifest = job(launch(resources=Resources(gpu=2)), gpu_resource="amd.com/gpu")
    assert container(manifest)["resources"] == {"limits": {"amd.com/gpu": "2"}}
    assert "NVIDIA_VISIBLE_DEVICES" not in env(manifest)
    # A Kale notebook written for NVIDIA: its limit is the step's GPU count, on this cluster's key.
    kale = Resources(gpu=2, extra_limits={"nvidia.com/gpu": "2", "example.com/fpga": "1"})
    manifest = job(launch(resources=kale), gpu_resource="amd.com/gpu")
    assert container(manifest)["resources"] == {"limits": {"amd.com/gpu": "2", "example.com/fpga": "1"}}


def test_gpu_steps_get_the_gpu_node_selector_and_tolerations() -> None:
    gpu_toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    opts: dict[str, Any] = {
        "node_selector": {"pool": "jobs"},
        "gpu_node_selector": {"gpu": "a100"},
        "tolerations": [{"key": "jobs", "operator": "Exists"}],
        "gpu_tolerations": [gpu_toleration],
    }
    gpu_pod = pod(job(**opts))
    assert gpu_pod["nodeSelector"] == {"pool": "jobs", "gpu": "a100"}
    assert gpu_pod["tolerations"] == [{"key": "jobs", "operator": "Exists"}, gpu_toleration]
    cpu_pod = pod(job(launch(resources=Resources(cpu="1")), **opts))
    assert cpu_pod["nodeSelector"] == {"pool": "jobs"}
    assert cpu_pod["tolerations"] == [{"key": "jobs", "operator": "Exists"}]


def test_memory_and_cpu_limits_from_kale() -> None:
    manifest = job(launch(resources=Resources(cpu="1", memory="2Gi", extra_limits={"cpu": "2", "memory": "4Gi"})))
    assert container(manifest)["resources"] == {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"cpu": "2", "memory": "4Gi"},
    }
    with pytest.raises(ValidationError, match="limit:memory:1Gi is below memory:2Gi") as exc:
        job(launch(resources=Resources(memory="2Gi", extra_limits={"memory": "1Gi"})))
    assert exc.value.step == "train" and exc.value.field == "resources.extra_limits.memory"


def test_timeout_rounds_up_and_no_timeout_means_no_deadline() -> None:
    assert pod(job(launch(timeout=90.5)))["activeDeadlineSeconds"] == 91
    assert "activeDeadlineSeconds" not in pod(job(launch(timeout=None)))


def test_image_of_the_step_beats_the_default() -> None:
    assert container(job(launch(resources=Resources(image="python:3.12-slim"))))["image"] == "python:3.12-slim"
    assert container(job())["image"] == IMAGE
    with pytest.raises(ValidationError, match="step 'train' has no image") as exc:
        job(image="")
    assert exc.value.field == "resources.image"


def test_security_context_exact() -> None:
    manifest = job()
    assert pod(manifest)["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 100,
        "fsGroup": 100,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container(manifest)["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": False,
    }
    custom = pod(job(run_as_user=None, run_as_group=None, fs_group=2000))["securityContext"]
    assert custom == {"runAsNonRoot": True, "fsGroup": 2000, "seccompProfile": {"type": "RuntimeDefault"}}


def test_service_account_and_its_token() -> None:
    default = pod(job())
    assert default["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in default
    configured = pod(job(service_account="steps", automount_service_account_token=True))
    assert configured["automountServiceAccountToken"] is True
    assert configured["serviceAccountName"] == "steps"


def test_extra_pod_and_container_config_deep_merge() -> None:
    manifest = job(
        tolerations=[{"key": "a", "operator": "Exists"}],
        extra_pod_config={
            "tolerations": [{"key": "b", "operator": "Exists"}],
            "securityContext": {"runAsUser": 4242, "seccompProfile": None},
            "priorityClassName": "batch",
        },
        extra_container_config={"securityContext": {"readOnlyRootFilesystem": True}, "workingDir": "/data"},
    )
    assert pod(manifest)["tolerations"] == [{"key": "b", "operator": "Exists"}]
    assert pod(manifest)["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 4242,
        "runAsGroup": 100,
        "fsGroup": 100,
    }
    assert pod(manifest)["priorityClassName"] == "batch"
    assert container(manifest)["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }
    assert container(manifest)["workingDir"] == "/data"


def test_deep_merge_changes_neither_argument() -> None:
    base = {"a": {"b": [1], "c": 1}}
    extra = {"a": {"b": [2], "d": {"e": 1}}}
    assert deep_merge(base, extra) == {"a": {"b": [2], "c": 1, "d": {"e": 1}}}
    assert base == {"a": {"b": [1], "c": 1}} and extra == {"a": {"b": [2], "d": {"e": 1}}}


def test_env_precedence_and_no_server_secrets() -> None:
    step = launch(
        env={
            "JUPYTER_TOKEN": "server-secret",
            "JUPYTERHUB_API_TOKEN": "hub-secret",
            "JPY_API_TOKEN": "hub-secret",
            "MODE": "from-launch",
            "JUPYTER_EXT_STEP": "spoofed",
        }
    )
    secret_ref = {"secretKeyRef": {"name": "wandb", "key": "api-key"}}
    values = env(
        job(
            step,
            extra_env={"MODE": "from-operator", "REGION": "eu", "WANDB_API_KEY": {"valueFrom": secret_ref}},
        )
    )
    assert values == {
        "MODE": "from-launch",
        "REGION": "eu",
        "WANDB_API_KEY": secret_ref,
        "PYTHONUNBUFFERED": "1",
        "JUPYTER_EXT_STEP": "train",
        "JUPYTER_EXT_JOB": "3f2a9c1b7d4e",
        "JUPYTER_EXT_ATTEMPT": "1",
    }


def test_labels_are_valid_for_awkward_names_and_annotations_keep_them() -> None:
    manifest = job(launch(job_id="JOB-Upper-ID", step="Train Model/v2", user="alice@example.com"))
    labels = manifest["metadata"]["labels"]
    assert all(LABEL_VALUE.fullmatch(v) and len(v) <= 63 for v in labels.values())
    assert labels["jupyter-ext/job"] == "JOB-Upper-ID"
    assert labels["jupyter-ext/step"] == "Train-Model-v2---31540e3c"
    assert manifest["metadata"]["annotations"] == {
        "jupyter-ext/job": "JOB-Upper-ID",
        "jupyter-ext/step": "Train Model/v2",
        "jupyter-ext/attempt": "1",
        "jupyter-ext/user": "alice@example.com",
    }
    name = manifest["metadata"]["name"]
    assert NAME.fullmatch(name) and len(name) <= 63
    assert label_selector("JOB-Upper-ID", "Train Model/v2", 1) == (
        "app.kubernetes.io/managed-by=jupyter-ext,jupyter-ext/job=JOB-Upper-ID,"
        "jupyter-ext/step=Train-Model-v2---31540e3c,jupyter-ext/attempt=1"
    )


def test_operator_labels_cannot_override_ours_and_user_falls_back() -> None:
    manifest = job(
        launch(user=""),
        user="hub-bob",
        extra_labels={"team": "ml", "jupyter-ext/job": "spoofed"},
        extra_annotations={"owner": "ml"},
    )
    labels = manifest["metadata"]["labels"]
    assert labels["team"] == "ml" and labels["jupyter-ext/job"] == "3f2a9c1b7d4e"
    assert labels["jupyter-ext/user"] == "hub-bob"
    assert manifest["spec"]["template"]["metadata"]["annotations"]["owner"] == "ml"


def test_extra_volumes_and_shm_default() -> None:
    manifest = job(
        launch(resources=Resources()),
        extra_volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        extra_volume_mounts=[{"name": "data", "mountPath": "/data"}],
        ttl_seconds_after_finished=None,
        image_pull_policy="IfNotPresent",
    )
    assert pod(manifest)["volumes"][0] == {
        "name": "jupyter-ext-shm",
        "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"},
    }
    assert pod(manifest)["volumes"][-1] == {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}
    assert container(manifest)["volumeMounts"][-1] == {"name": "data", "mountPath": "/data"}
    assert container(manifest)["imagePullPolicy"] == "IfNotPresent"
    assert container(manifest)["resources"] == {}
    assert "ttlSecondsAfterFinished" not in manifest["spec"]
    small = job(launch(resources=Resources(memory="100Mi")))
    assert pod(small)["volumes"][0]["emptyDir"]["sizeLimit"] == "64Mi"


def test_command_must_be_an_argv() -> None:
    options = JobOptions(image=IMAGE)
    with pytest.raises(TypeError):
        make_job(launch(), options, command="python -m jupyter_ext.runner")  # type: ignore[arg-type]


def test_inputs_configmap() -> None:
    files = {"step.ipynb": b'{"cells": []}', "params.json": b"{}"}
    assert make_inputs_configmap("jx-a-1-abc", "jx-a-1-abc", files, "1234-uid", namespace="jupyter") == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "jx-a-1-abc",
            "namespace": "jupyter",
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "jx-a-1-abc", "uid": "1234-uid"}],
        },
        "immutable": True,
        "binaryData": {
            "step.ipynb": base64.b64encode(b'{"cells": []}').decode(),
            "params.json": "e30=",
        },
    }
    assert "ownerReferences" not in make_inputs_configmap("c", "j", files, None)["metadata"]
    with pytest.raises(ValueError):
        make_inputs_configmap("c", "j", {"../x": b""}, None)


def test_inputs_configmap_size_limit_names_the_fix() -> None:
    make_inputs_configmap("c", "j", {"a": b"x" * MAX_INPUTS_BYTES}, None)
    with pytest.raises(ValidationError, match=r"artifact store \(c\.KubernetesBackend\.artifact_store\)") as exc:
        make_inputs_configmap("c", "j", {"a": b"x" * MAX_INPUTS_BYTES, "b": b"x"}, None, step="train")
    assert "the inputs of step 'train'" in exc.value.message
    assert "come to 901 KiB, more than the 900 KiB" in exc.value.message
    assert exc.value.step == "train"


def test_resource_summary_in_numbers() -> None:
    summary = resource_summary(Resources(gpu=2, memory="16Gi", cpu="500m"), "nvidia.com/gpu")
    assert summary == {"cpu": 0.5, "memory": 16 * 2**30, "nvidia.com/gpu": 2}
    assert resource_summary(Resources(), "nvidia.com/gpu") == {}
    kale = Resources(extra_limits={"memory": "4Gi", "example.com/fpga": "1"})
    assert resource_summary(kale, "amd.com/gpu") == {"memory": 4 * 2**30, "example.com/fpga": 1}


def test_every_option_is_documented() -> None:
    for option in fields(JobOptions):
        text = option.metadata.get("help", "")
        assert text and "\n" not in text, option.name
    assert JobOptions().node_selector is not JobOptions().node_selector
