"""Under JupyterHub the Kubernetes backend takes its defaults from the env the hub sets
(jupyter_ext/hub.py); explicit configuration always wins. Manifests compared with literal dicts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from traitlets.config import Config

from jupyter_ext.backends.base import StepLaunch
from jupyter_ext.backends.kubernetes import KubernetesBackend
from jupyter_ext.backends.kubernetes import backend as kubernetes
from jupyter_ext.backends.kubernetes.manifests import JobOptions, home_affinity, make_job
from jupyter_ext.errors import ValidationError

HUB_ENV = {
    "JUPYTERHUB_USER": "ada@example.org",
    "JUPYTER_EXT_NAMESPACE": "jhub-ada",
    "JUPYTER_EXT_IMAGE": "registry.example.org/ada/lab:2",
    "JUPYTER_EXT_HOME_CLAIM": "claim-ada",
    "JUPYTER_EXT_HOME_MOUNT": "/home/ada",
    "JUPYTER_EXT_HOME_RWO": "1",
    "JUPYTER_EXT_ARTIFACT_STORE": "s3://bucket/jupyter-ext",
    "JUPYTER_EXT_SERVICE_ACCOUNT": "jupyter-ext-ada",
}
ALL_ENV = [*HUB_ENV, "JUPYTER_IMAGE", "JUPYTER_IMAGE_SPEC", "HOSTNAME"]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> pytest.MonkeyPatch:
    for name in ALL_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(kubernetes, "SA_NAMESPACE", tmp_path / "no-such-file")
    return monkeypatch


def launch(**overrides: Any) -> StepLaunch:
    values: dict[str, Any] = {
        "job_id": "j1",
        "step": "train",
        "attempt": 1,
        "user": "",
        "notebook": "/home/ada/.local/share/jupyter/jupyter-ext/jobs/j1/steps/train/step.ipynb",
        "attempt_dir": "/home/ada/.local/share/jupyter/jupyter-ext/jobs/j1/steps/train/attempt-1",
        "workdir": "/home/ada/project",
    }
    values.update(overrides)
    return StepLaunch(**values)


def test_hub_env_gives_the_defaults(env: pytest.MonkeyPatch) -> None:
    for name, value in HUB_ENV.items():
        env.setenv(name, value)
    backend = KubernetesBackend()
    assert backend.namespace == "jhub-ada"
    assert backend.image == "registry.example.org/ada/lab:2"
    assert backend.home_claim == "claim-ada"
    assert backend.home_mount == "/home/ada"
    assert backend.home_read_write_once is True
    assert backend.artifact_store == "s3://bucket/jupyter-ext"
    assert backend.service_account == "jupyter-ext-ada"
    opts = backend.options()
    assert opts.user == "ada@example.org"
    assert (opts.namespace, opts.service_account, opts.home_claim) == ("jhub-ada", "jupyter-ext-ada", "claim-ada")


def test_explicit_config_wins_over_the_env(env: pytest.MonkeyPatch) -> None:
    for name, value in HUB_ENV.items():
        env.setenv(name, value)
    config = Config()
    config.KubernetesBackend.namespace = "ml-jobs"
    config.KubernetesBackend.image = "img:1"
    config.KubernetesBackend.home_claim = None
    config.KubernetesBackend.home_read_write_once = False
    config.KubernetesBackend.artifact_store = ""
    config.KubernetesBackend.service_account = "runner"
    backend = KubernetesBackend(config=config)
    assert (backend.namespace, backend.image, backend.home_claim) == ("ml-jobs", "img:1", None)
    assert (backend.home_read_write_once, backend.artifact_store, backend.service_account) == (False, "", "runner")


def test_image_falls_back_to_the_users_image_then_a_public_one(env: pytest.MonkeyPatch) -> None:
    assert KubernetesBackend().image == "quay.io/jupyter/base-notebook:latest"
    env.setenv("JUPYTER_IMAGE_SPEC", "spec/image:1")
    assert KubernetesBackend().image == "spec/image:1"
    env.setenv("JUPYTER_IMAGE", "user/image:2")
    assert KubernetesBackend().image == "user/image:2"
    env.setenv("JUPYTER_EXT_IMAGE", "steps/image:3")
    assert KubernetesBackend().image == "steps/image:3"


def test_namespace_from_the_env_then_the_pods_own_then_default(env: pytest.MonkeyPatch, tmp_path: Any) -> None:
    assert KubernetesBackend().namespace == "default"
    own = tmp_path / "namespace"
    own.write_text("jhub\n")
    env.setattr(kubernetes, "SA_NAMESPACE", own)
    assert KubernetesBackend().namespace == "jhub"
    env.setenv("JUPYTER_EXT_NAMESPACE", "jhub-ada")
    assert KubernetesBackend().namespace == "jhub-ada"
    assert KubernetesBackend().home_mount == "/home/jovyan"
    assert KubernetesBackend().home_read_write_once is False
    assert KubernetesBackend().service_account is None


def test_home_claim_makes_paths_under_it_shared_else_a_store_or_a_configmap(env: pytest.MonkeyPatch) -> None:
    assert KubernetesBackend().transport(launch()) == "configmap"
    assert KubernetesBackend(shared_paths=True).transport(launch()) == "shared"
    assert KubernetesBackend(artifact_store="/mnt/store").transport(launch()) == "store"
    home = KubernetesBackend(home_claim="claim-ada", home_mount="/home/ada")
    assert home.transport(launch()) == "shared"
    assert home.transport(launch(workdir="/srv/data")) == "configmap", "a folder the pod cannot see"
    assert KubernetesBackend(home_claim="claim-ada", home_mount="/home/bob").transport(launch()) == "configmap"


def job_for(**opts: Any) -> dict[str, Any]:
    options = JobOptions(namespace="jhub-ada", image="img", **opts)
    return make_job(launch(user="ada"), options, command=["python", "-m", "jupyter_ext.runner"])


def test_home_claim_is_mounted_at_the_same_path() -> None:
    manifest = job_for(home_claim="claim-ada", home_mount="/home/ada")
    spec = manifest["spec"]["template"]["spec"]
    assert spec["volumes"][-1] == {"name": "jupyter-ext-home", "persistentVolumeClaim": {"claimName": "claim-ada"}}
    assert spec["containers"][0]["volumeMounts"][-1] == {"name": "jupyter-ext-home", "mountPath": "/home/ada"}
    assert "affinity" not in spec, "ReadWriteMany claims need no affinity"
    assert manifest["metadata"]["labels"]["jupyter-ext/user"] == "ada"


def test_read_write_once_home_requires_the_users_node_by_pod_labels() -> None:
    labels = {"component": "singleuser-server", "hub.jupyter.org/username": "ada"}
    spec = job_for(home_claim="claim-ada", home_read_write_once=True, home_pod_labels=labels)["spec"]["template"]
    assert spec["spec"]["affinity"] == {
        "podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {
                        "matchLabels": {"component": "singleuser-server", "hub.jupyter.org/username": "ada"}
                    },
                    "topologyKey": "kubernetes.io/hostname",
                }
            ]
        }
    }
    other_ns = JobOptions(
        namespace="jobs", home_claim="c", home_read_write_once=True, home_pod_labels=labels, home_pod_namespace="jhub"
    )
    term = home_affinity(other_ns)["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["namespaces"] == ["jhub"]


def test_read_write_once_home_by_node_name_and_merged_with_the_operators_affinity() -> None:
    operator = {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 1, "preference": {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["a"]}]}}
            ]
        }
    }
    spec = job_for(home_claim="claim-ada", home_read_write_once=True, home_node="node-7", affinity=operator)
    assert spec["spec"]["template"]["spec"]["affinity"] == {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-7"]}]}
                ]
            },
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 1, "preference": {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["a"]}]}}
            ],
        }
    }


def test_read_write_once_home_without_a_known_node_is_an_error_naming_the_step() -> None:
    with pytest.raises(ValidationError) as info:
        job_for(home_claim="claim-ada", home_read_write_once=True)
    assert info.value.step == "train"
    assert "ReadWriteOnce home claim 'claim-ada'" in info.value.message
    assert "c.KubernetesBackend.user_pod_labels" in info.value.message


def test_build_job_uses_configured_user_pod_labels(env: pytest.MonkeyPatch) -> None:
    backend = KubernetesBackend(
        namespace="jhub-ada", image="img", home_claim="claim-ada", home_read_write_once=True, user_pod_labels={"a": "b"}
    )
    job = asyncio.run(backend.build_job(launch(), ["python"]))
    term = job["spec"]["template"]["spec"]["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term == [{"labelSelector": {"matchLabels": {"a": "b"}}, "topologyKey": "kubernetes.io/hostname"}]
