"""The typed backend boundary: handles stored as flat JSON (older ones still load), outcomes with
known reason codes, and one RBAC table behind both the hub's Role and the backend's preflight."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jupyter_ext import hub
from jupyter_ext.backends.base import Outcome, StepLaunch, handoff_env
from jupyter_ext.backends.kubernetes import KubernetesBackend, KubernetesHandle
from jupyter_ext.backends.kubernetes.rbac import ROLE_RULES, RULES, access_checks
from jupyter_ext.backends.kubernetes.transport import place
from jupyter_ext.backends.local import LocalBackend, LocalHandle


def test_handles_stored_by_the_previous_server_load_typed() -> None:
    # Exactly what the dict-handle code stored with a step.
    local = {
        "backend": "local",
        "key": "j1/train/1",
        "pid": 4242,
        "start_time": "123",
        "attempt_dir": "/data/j1/steps/train/attempt-1",
        "gpus": ["0"],
        "warm": True,
        "started": 1700000000.5,
    }
    handle = LocalBackend(warm_pool=0, gpus=[]).load_handle(local)
    assert isinstance(handle, LocalHandle)
    assert (handle.pid, handle.gpus, handle.key, handle.step) == (4242, ["0"], "j1/train/1", "")
    k8s = {
        "transport": "store",
        "outputs": "s3://b/j1/train/attempt-1/outputs",
        "backend": "kubernetes",
        "namespace": "team",
        "job_name": "jx-j1-train-1",
        "attempt_dir": "/data/j1/steps/train/attempt-1",
        "step": "train",
        "started": 1700000000.5,
    }
    handle_k = KubernetesBackend(namespace="team").load_handle(k8s)
    assert isinstance(handle_k, KubernetesHandle)
    assert (handle_k.transport, handle_k.job_name, handle_k.outputs) == ("store", "jx-j1-train-1", k8s["outputs"])
    # and what is stored now reads back the same, through JSON
    for h, backend in ((handle, LocalBackend(warm_pool=0, gpus=[])), (handle_k, KubernetesBackend(namespace="t"))):
        assert backend.load_handle(json.loads(json.dumps(h.stored()))) == h
    assert handle_k.stored() == k8s


def test_a_handle_missing_what_its_backend_needs_is_refused() -> None:
    with pytest.raises(ValueError, match="job_name"):
        KubernetesBackend(namespace="t").load_handle({"attempt_dir": "/x", "namespace": "t"})


def test_outcome_codes_are_the_contract_s() -> None:
    assert Outcome(137, "out of memory", final=True, code="oom").code == "oom"
    with pytest.raises(ValueError, match="unknown reason code"):
        Outcome(1, "x", final=True, code="OOMKilled")


def test_hand_off_inputs_reach_the_runner_as_paths_it_can_read(tmp_path: Path) -> None:
    folder = tmp_path
    (folder / "step.ipynb").write_text("{}")
    saved = folder / "rows.pkl"
    saved.write_bytes(b"pickled")
    launch = StepLaunch(
        job_id="j",
        step="s",
        attempt=1,
        user="ada",
        notebook=str(folder / "step.ipynb"),
        attempt_dir=str(folder / "attempt"),
        workdir=str(folder),
        handoff_in={"rows": str(saved)},
    )
    assert json.loads(handoff_env(launch.handoff_in)["JUPYTER_EXT_HANDOFF_IN"]) == {"rows": str(saved)}
    assert handoff_env({}) == {}
    shared = place(launch, "shared")
    assert json.loads(shared.env["JUPYTER_EXT_HANDOFF_IN"]) == {"rows": str(saved)}
    sent = place(launch, "configmap")
    pod_paths = json.loads(sent.env["JUPYTER_EXT_HANDOFF_IN"])
    assert pod_paths == {"rows": "/var/run/jupyter-ext/inputs/handoff.0.pkl"}
    assert sent.files["handoff.0.pkl"] == b"pickled"
    assert "JUPYTER_EXT_HANDOFF_IN" not in place(StepLaunch(**{**launch.__dict__, "handoff_in": {}}), "configmap").env


def test_one_rbac_table_for_the_hub_s_role_and_the_preflight() -> None:
    assert hub.ROLE_RULES is ROLE_RULES
    checked = {(c.group, c.what, c.verb) for c in access_checks(configmaps=True)}
    granted = {(r["apiGroups"][0], r["resources"][0], v) for r in ROLE_RULES for v in r["verbs"]}
    # everything the preflight asks for is granted by the Role, and it asks for all but the quota reads
    assert checked <= granted
    assert granted - checked == {("", "resourcequotas", "get"), ("", "resourcequotas", "list")}
    without = {(c.group, c.what, c.verb) for c in access_checks(configmaps=False)}
    assert checked - without == {("", "configmaps", v) for v in ("create", "get", "delete")}
    # table order: the first refusal named is job creation, the first line of the Role
    first = access_checks(configmaps=False)[0]
    assert (first.verb, first.what) == ("create", "jobs")
    log = next(c for c in access_checks(configmaps=False) if c.subresource)
    assert log.attributes("ns") == {
        "namespace": "ns",
        "verb": "get",
        "group": "",
        "resource": "pods",
        "subresource": "log",
    }
    assert len(RULES) == len(ROLE_RULES)
