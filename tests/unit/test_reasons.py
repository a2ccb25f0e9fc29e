"""Reason codes and the words beside them, made in one place (jupyter_ext/reasons.py)."""

from __future__ import annotations

from signal import SIGKILL

import pytest

from jupyter_ext import reasons
from jupyter_ext.contract import REASONS


@pytest.mark.parametrize(
    ("raw", "message", "code"),
    [
        ("FailedScheduling", "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.", "unschedulable"),
        ("FailedCreate", 'pods "x" is forbidden: exceeded quota: compute', "unschedulable"),
        ("CreateContainerConfigError", 'secret "creds" not found', "unschedulable"),
        ("ErrImagePull", 'rpc error: pull access denied for "x"', "image_pull"),
        ("ImagePullBackOff", 'Back-off pulling image "x:1"', "image_pull"),
        ("InvalidImageName", "", "image_pull"),
        ("Failed", 'Failed to pull image "x:1": not found', "image_pull"),
        ("BackOff", 'Back-off pulling image "x:1"', "image_pull"),
        ("BackOff", "Back-off restarting failed container runner", "lost"),
        ("CrashLoopBackOff", "back-off 10s restarting failed container", "lost"),
        ("Evicted", "The node was low on resource: memory.", "evicted"),
        ("Preempting", "Preempted by a pod of higher priority", "evicted"),
        ("DeadlineExceeded", "Job was active longer than specified deadline", "timeout"),
        ("OOMKilled", "", "oom"),
        ("OOMKilling", "Memory cgroup out of memory: Killed process 12", "oom"),
        ("SomethingNew", "", "lost"),
        (None, "", "lost"),
    ],
)
def test_raw_kubernetes_reasons_map_to_one_code(raw: str | None, message: str, code: str) -> None:
    assert reasons.k8s_code(raw, message) == code
    assert code in REASONS


def test_every_mapped_code_is_a_contract_code() -> None:
    assert set(reasons.K8S_CODES.values()) <= set(REASONS)
    with pytest.raises(AssertionError):
        reasons.error("OOMKilled", "raw reasons never reach the wire")


def test_a_diagnostic_event_carries_the_code_and_plain_words() -> None:
    event = reasons.diagnostic("FailedScheduling", "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. ", "two")
    assert event["type"] == "log" and event["reason"] == "unschedulable"
    assert event["text"].startswith("Waiting for a machine: no node of the cluster has enough free GPUs for step 'two'")
    assert event["text"].endswith(
        "(Kubernetes: FailedScheduling: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu.)\n"
    )
    tainted = reasons.diagnostic("FailedScheduling", "0/1 nodes: 1 node(s) had untolerated taint", None)
    assert "no node of the cluster accepts the step" in tainted["text"]
    pull = reasons.diagnostic("ImagePullBackOff", 'Back-off pulling image "x:nope"', "s")
    assert pull["reason"] == "image_pull" and pull["text"].startswith("The image of step 's' could not be downloaded")
    evicted = reasons.diagnostic("Evicted", "The node was low on resource: memory.", "s")
    assert evicted["reason"] == "evicted" and "to free resources" in evicted["text"]


def test_a_step_that_ended_unreported_says_so_without_exit_code_none() -> None:
    message = reasons.ended_words("train", None, "the pod was deleted")
    assert message == "step 'train' stopped before its process reported an exit code: the pod was deleted"
    assert "None" not in message
    assert reasons.ended_words("train", 3, None) == "step 'train' ended with exit code 3"
    assert reasons.ended_words("t", 137, "OOMKilled") == "step 't' ended with exit code 137 (OOMKilled)"


def test_timeout_words_name_the_limit_in_tag_units() -> None:
    assert reasons.timeout_words("main", 2) == "step 'main' timed out after 2s; raise `timeout:` on step 'main'"
    assert reasons.timeout_words("x", 7200).startswith("step 'x' timed out after 2h")
    assert reasons.timeout_words("x", None) == "step 'x' ran past its timeout; raise `timeout:` on step 'x'"
    assert [reasons.human_seconds(s) for s in (90, 120, 3600, 0.5)] == ["90s", "2m", "1h", "0.5s"]


def test_oom_words_from_a_quantity_or_from_bytes() -> None:
    assert reasons.oom_words("big", "1Gi") == (
        "Out of memory: step 'big' used more than its memory limit of 1Gi and was stopped. "
        "Raise it with a `memory:` tag on step 'big' (e.g. `memory:2Gi`)."
    )
    assert "memory limit of 128Mi" in reasons.oom_words("t", 128 << 20)
    assert "(e.g. `memory:4Gi`)" in reasons.oom_words("t", None)


def test_the_runner_reports_facts_and_the_server_makes_the_words() -> None:
    stderr = {2: "Traceback...\n\x1b[31mUsageError\x1b[0m: Line magic function `%nope` not found.\n"}
    raised = reasons.step_error(
        {"reason": "exception", "cell_index": 2, "ename": "CellExecutionError", "evalue": "", "message": "x"},
        "main",
        stderr,
    )
    assert raised["message"] == "cell 3 raised UsageError: Line magic function `%nope` not found."
    oom = reasons.step_error({"reason": "oom", "cell_index": 1, "limit_bytes": 1 << 30, "message": "?"}, "t")
    assert oom["reason"] == "oom" and oom["message"].startswith(
        "Out of memory: step 't' used more than its memory limit of 1Gi"
    )
    died = reasons.step_error(
        {"reason": "kernel_died", "cell_index": 1, "message": "the kernel died (killed by SIGKILL)"}, "t"
    )
    assert died["message"] == "the kernel died (killed by SIGKILL) (cell 2 was running)"
    unknown = reasons.step_error({"message": "the step could not run: boom"}, "t")
    assert unknown == {"reason": "exception", "message": "the step could not run: boom"}


def test_a_runner_step_end_gets_its_code_beside_it_before_it_is_stored() -> None:
    stderr: dict[int, str] = {}
    out = reasons.in_words(
        {
            "type": "cell.output",
            "cell_index": 0,
            "output": {"output_type": "stream", "name": "stderr", "text": ["a", "b"]},
        },
        "main",
        stderr,
    )
    assert stderr == {0: "ab"} and out["type"] == "cell.output"
    end = reasons.in_words(
        {
            "type": "step.end",
            "n": 9,
            "status": "failed",
            "error": {"reason": "kernel_died", "message": "the kernel died"},
        },
        "main",
        stderr,
    )
    assert end["reason"] == "kernel_died" and end["error"]["reason"] == "kernel_died" and end["n"] == 9
    ok = {"type": "step.end", "status": "succeeded", "error": None}
    assert reasons.in_words(ok, "main", stderr) is ok


def test_the_runners_oom_report_under_a_fake_cgroup_gets_the_servers_words() -> None:
    """The runner (a leaf in the pod) reports `oom` and the limit; the words the user reads are the
    server's, the same as for a container Kubernetes reports OOMKilled."""
    from jupyter_ext.runner import cgroup
    from jupyter_ext.runner.main import kernel_died_error

    class Died(Exception):
        signal, returncode = SIGKILL, None
        ids = {"cell_index": 3, "cell_id": "c3"}

    report = kernel_died_error(
        Died("the kernel died (killed by SIGKILL)"),
        "train",
        cgroup.MemoryCgroup(2, "/x", 128 << 20, 0),
        cgroup.MemoryCgroup(2, "/x", 128 << 20, 1),
    )
    end = reasons.in_words({"type": "step.end", "status": "failed", "error": report}, "train", {})
    assert end["reason"] == "oom" and end["error"]["limit_bytes"] == 128 << 20 and end["error"]["cell_index"] == 3
    assert end["error"]["message"] == reasons.oom_words("train", "128Mi")
    assert end["error"]["message"].startswith("Out of memory: step 'train' used more than its memory limit of 128Mi")
