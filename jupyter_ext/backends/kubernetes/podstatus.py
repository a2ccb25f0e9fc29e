"""Reading a step's pod: what its status says while it waits (told to the user as `log` events)
and, once it has ended, how (the attempt's `Outcome`: OOMKilled, deadline, eviction, exit code).

Pure functions of the pod and Event objects as Kubernetes' JSON (the reflectors' copies); the
backend passes them in, nothing here talks to the cluster.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ... import reasons
from ...reasons import oom_words
from ..base import Outcome
from .manifests import CONTAINER_NAME

TERMINAL_PHASES = ("Succeeded", "Failed")
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


def phase(pod: dict[str, Any] | None) -> str | None:
    return (pod or {}).get("status", {}).get("phase")


def has_ended(pod: dict[str, Any] | None) -> bool:
    """The pod is gone or in a terminal phase: its log will not grow any more."""
    return pod is None or phase(pod) in TERMINAL_PHASES


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


class Pending:
    """What the user is told while a step's pod waits to run, and when waiting becomes failing.

    Each scheduler/kubelet Event once per reason and message (a back-off repeats the same one
    with a growing count), each unusual waiting reason once, and an image that cannot be pulled
    at once; after `image_pull_grace` seconds of failed pulls (None: never) the step fails.
    """

    def __init__(self, step: str, image_pull_grace: float | None) -> None:
        self.step = step
        self.image_pull_grace = image_pull_grace
        self.seen: set[str] = set()
        self.waiting_told: set[str] = set()
        self.pull_failing_since: float | None = None

    def look(
        self, pod: dict[str, Any] | None, events: Iterable[dict[str, Any]], now: float
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The `log` events to tell now, and the step's error when it can never start."""
        step = self.step
        batch = self.diagnostics(pod, events) if pod else []
        waiting = container_waiting(pod)
        if waiting is not None and waiting[0] in PULL_FAILURES:
            reason, message, image = waiting
            grace = self.image_pull_grace
            if self.pull_failing_since is None:
                self.pull_failing_since = now
                words = reasons.image_pull_waiting_words(step, image, reason, message, grace)
                batch.append(reasons.diagnostic(reason, message, step, text=words))
            elif grace is not None and now - self.pull_failing_since >= grace:
                return batch, reasons.image_pull_failed_words(step, image, reason, message, grace)
        else:
            self.pull_failing_since = None  # pulled after all (a registry hiccup)
            if waiting is not None and waiting[0] not in QUIET_WAITING and waiting[0] not in self.waiting_told:
                self.waiting_told.add(waiting[0])
                batch.append(reasons.diagnostic(waiting[0], waiting[1], step))
        return batch, None

    def diagnostics(self, pod: dict[str, Any], events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for event in events:
            involved = event.get("involvedObject", {})
            if involved.get("name") != pod["metadata"]["name"] or event.get("reason") not in DIAGNOSTIC_REASONS:
                continue
            key = f"{event.get('reason')}:{event.get('message')}"
            if key in self.seen:
                continue
            self.seen.add(key)
            out.append(reasons.diagnostic(str(event.get("reason")), str(event.get("message") or ""), self.step))
        return out


def outcome_of(pod: dict[str, Any] | None, step: str) -> Outcome:
    """How the attempt ended, from its pod's final status."""
    if pod is None:
        return Outcome(None, "the step's pod is gone (deleted before it finished)", code=reasons.LOST)
    status = pod.get("status", {})
    reason = status.get("reason")
    code = reasons.k8s_code(reason) if reason else None
    if code == reasons.TIMEOUT:  # DeadlineExceeded: activeDeadlineSeconds
        return Outcome(None, reasons.timeout_words(step, None), code=code)
    if code == reasons.EVICTED:  # Evicted, preempted, the node shut down
        return Outcome(None, reasons.evicted_words(step, status.get("message")), code=code)
    for container in status.get("containerStatuses", []) or []:
        terminated = (container.get("state") or {}).get("terminated")
        if terminated:
            code = terminated.get("exitCode")
            if terminated.get("reason") == "OOMKilled" or code == 137:
                # OOMKilled with exit code 0 too: the kernel (a child of the runner) was the one killed
                return Outcome(137, oom_words(step, memory_limit(pod)), final=True, code=reasons.OOM)
            return Outcome(code, None if code == 0 else terminated.get("reason"))
    return Outcome(0 if status.get("phase") == "Succeeded" else None, status.get("message"))


def settled(outcome: Outcome, step: str, unreadable: str | None, saw_end: bool) -> Outcome:
    """The outcome, unless the pod log could not be read to its end: success without the runner's
    own word is not success (the notebook never saw it run), so that attempt is `lost`."""
    if outcome.final or (unreadable is None and (outcome.exit_code != 0 or saw_end)):
        return outcome
    return Outcome(None, reasons.pod_log_lost_words(step, unreadable), final=True, code=reasons.LOST)


def memory_limit(pod: dict[str, Any]) -> str | None:
    for container in pod.get("spec", {}).get("containers", []) or []:
        if container.get("name") == CONTAINER_NAME:
            return ((container.get("resources") or {}).get("limits") or {}).get("memory")
    return None
