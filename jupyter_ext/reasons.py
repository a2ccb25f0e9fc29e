"""Why a step failed, as a code and in plain words, made in this one place (docs/events.md).

Every failing `step.end` carries a `reason` code of contract.REASONS (beside it, and as its
error's `reason`), `job.end`'s error carries its failing step's, and every diagnostic `log`
event (a Kubernetes scheduling, image-pull, eviction... problem while a step waits) carries one.
The words a person reads beside the code (`error.message`, a diagnostic's `text`) are made here,
on the server, once: the runner reports facts (the code, the cell, the limit, the signal), the
backends report what Kubernetes said, and the functions below turn both into sentences. Clients
(the Lab, the CLI, the magics) show those words and key any presentation on the code, never on
the English.

The raw Kubernetes reasons (FailedScheduling, ErrImagePull, Evicted, DeadlineExceeded,
OOMKilled, ...) are mapped to codes here too (`k8s_code`), so no other module reads them for
meaning.
"""

from __future__ import annotations

import re
from typing import Any, Final

from . import quantity
from .contract import REASONS
from .notebook.tags import cell_label

OOM: Final = "oom"
UNSCHEDULABLE: Final = "unschedulable"
IMAGE_PULL: Final = "image_pull"
TIMEOUT: Final = "timeout"
EVICTED: Final = "evicted"
CANCELLED: Final = "cancelled"
EXCEPTION: Final = "exception"
LOST: Final = "lost"
KERNEL_DIED: Final = "kernel_died"
assert set(REASONS) == {OOM, UNSCHEDULABLE, IMAGE_PULL, TIMEOUT, EVICTED, CANCELLED, EXCEPTION, LOST, KERNEL_DIED}

#: Raw Kubernetes reasons (of Events, of a container's waiting/terminated state, of a pod's
#: status) -> our codes. `Failed` and `BackOff` say which by their message (`k8s_code`).
K8S_CODES: Final[dict[str, str]] = {
    "FailedScheduling": UNSCHEDULABLE,
    "Unschedulable": UNSCHEDULABLE,
    "FailedCreate": UNSCHEDULABLE,  # the Job controller could not make the pod (a quota)
    "CreateContainerConfigError": UNSCHEDULABLE,  # a secret/config map the pod asks for is missing
    "CreateContainerError": UNSCHEDULABLE,
    "ErrImagePull": IMAGE_PULL,
    "ImagePullBackOff": IMAGE_PULL,
    "InvalidImageName": IMAGE_PULL,
    "ErrImageNeverPull": IMAGE_PULL,
    "Evicted": EVICTED,
    "Preempting": EVICTED,
    "Preempted": EVICTED,
    "NodeLost": EVICTED,
    "NodeShutdown": EVICTED,
    "Terminated": EVICTED,  # a pod's status reason after a graceful node shutdown
    "DeadlineExceeded": TIMEOUT,
    "OOMKilled": OOM,
    "OOMKilling": OOM,
    "CrashLoopBackOff": LOST,  # the runner dies as it starts, before it can say anything
    "RunContainerError": LOST,
}
_PULL_WORDS = re.compile(r"pull|image", re.I)


def k8s_code(raw: str | None, message: str = "") -> str:
    """The reason code of a raw Kubernetes reason; `message` decides the generic ones (`Failed`,
    `BackOff`: an image pull, or a container that keeps dying). Unknown reasons are `lost`."""
    raw = raw or ""
    if raw in K8S_CODES:
        return K8S_CODES[raw]
    if raw in ("Failed", "BackOff") and _PULL_WORDS.search(message):
        return IMAGE_PULL
    return LOST


def error(code: str, message: str, **facts: Any) -> dict[str, Any]:
    """A step's (or attempt's) `error`: the code, the words, and any facts beside them."""
    assert code in REASONS, code
    return {**facts, "reason": code, "message": message}


# -- the words of each code ---------------------------------------------------------------------------------


def human_seconds(seconds: float) -> str:
    """7200 -> '2h', 120 -> '2m', 90 -> '90s' (the units `timeout:` tags use)."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


def timeout_words(step: str, seconds: float | None) -> str:
    if seconds:
        return f"step {step!r} timed out after {human_seconds(seconds)}; raise `timeout:` on step {step!r}"
    return f"step {step!r} ran past its timeout; raise `timeout:` on step {step!r}"


def oom_words(step: str, limit: str | int | None) -> str:
    """Out of memory: what happened, the limit (a quantity like `1Gi`, or bytes), the tag to raise."""
    if isinstance(limit, int):
        limit = quantity.format_bytes(limit)
    at = f"its memory limit of {limit}" if limit else "the memory it could get"
    return (
        f"Out of memory: step {step!r} used more than {at} and was stopped. "
        f"Raise it with a `memory:` tag on step {step!r} (e.g. `memory:{_doubled(limit)}`)."
    )


def _doubled(limit: str | None) -> str:
    if not limit:
        return "4Gi"
    m = re.fullmatch(r"(\d+)([A-Za-z]*)", limit)
    return f"{int(m.group(1)) * 2}{m.group(2)}" if m else limit


def kernel_died_words(how: str | None, cell_index: int | None = None) -> str:
    """The kernel ended without an exception (`how`: the runner's account, "the kernel died (killed by SIGKILL)")."""
    words = how or "the kernel died"
    return f"{words} ({cell_label(cell_index)} was running)" if isinstance(cell_index, int) else words


def cell_raised_words(cell_index: int | None, ename: str, evalue: str) -> str:
    place = cell_label(cell_index) if isinstance(cell_index, int) else "a cell"
    return f"{place} raised {ename}: {evalue}"


def remote_cell_words(error: dict[str, Any]) -> str:
    """A `%%remote` cell's error, said by the magic: the job's words name the cell by its place in
    the one-cell job notebook ("cell 1 raised"), which is not where it is in the user's notebook."""
    if error.get("reason", EXCEPTION) == EXCEPTION and error.get("ename") and isinstance(error.get("cell_index"), int):
        return f"the %%remote cell raised {error['ename']}: {error.get('evalue') or ''}"
    return str(error.get("message") or "")


def cancelled_words(before_start: bool = False) -> str:
    return "cancelled before it started" if before_start else "cancelled"


def lost_words(step: str, why: str | None = None) -> str:
    """A step whose process or output went away without saying how it ended."""
    return f"step {step!r} stopped before its process reported how it ended" + (f": {why}" if why else "")


def ended_words(step: str, exit_code: int | None, why: str | None) -> str:
    """Why a step's process ended without success, for someone who does not know Kubernetes."""
    if exit_code is None:
        return f"step {step!r} stopped before its process reported an exit code" + (f": {why}" if why else "")
    return f"step {step!r} ended with exit code {exit_code}" + (f" ({why})" if why else "")


def server_lost_words() -> str:
    return "the step's process was lost while the server was down"


def internal_words(exc: BaseException | None) -> str:
    """The server itself failed (a bug): said as such, never blamed on the notebook."""
    if exc is None:
        return "internal error while running the job; see the server log"
    return f"internal error running the step: {exc}"


def not_run_words(upstream: str, status: str) -> str:
    """Why a step was skipped (`not_run` is no failure: no code)."""
    return f"not run because step {upstream!r} {status.replace('_', ' ')}"


def ended_error(step: str, outcome: Any) -> dict[str, Any]:
    """The error of an attempt whose runner did not say how it ended: the backend's code (`lost`
    when it has none: the process or its output went away) and words."""
    return error(outcome.code or LOST, ended_words(step, outcome.exit_code, outcome.reason))


def pod_log_lost_words(step: str, why: str | None) -> str:
    why = f" ({why})" if why else ""
    return (
        f"step {step!r}: its output could not be read from the pod log{why}, so what it did is "
        "unknown; the step is failed rather than reported as a success with no output. Check that "
        "the API server can reach the node's kubelet (`kubectl logs` of the step's pod)."
    )


def evicted_words(step: str, detail: str | None) -> str:
    why = (detail or "").strip().rstrip(".") or "to free resources"
    return f"the node evicted step {step!r} ({why}); run it again"


def image_pull_waiting_words(step: str, image: str, raw: str, detail: str, grace: float | None) -> str:
    then = "" if grace is None else f"; the step fails if it cannot be pulled within {grace:g}s"
    return (
        f"step {step!r} cannot start: its image {image!r} cannot be pulled ({raw}: {detail}); "
        f"check the `image:` tag of step {step!r} (or c.KubernetesBackend.image){then}"
    )


def image_pull_failed_words(step: str, image: str, raw: str, detail: str, grace: float) -> str:
    return (
        f"step {step!r} failed: its image {image!r} could not be pulled for "
        f"{grace:g}s ({raw}: {detail}); check the `image:` tag of step {step!r} "
        "(or c.KubernetesBackend.image) and that the cluster may pull it"
    )


_SHORT: Final = (
    (re.compile(r"Insufficient [\w.-]+/gpu", re.I), "GPUs"),
    (re.compile(r"Insufficient memory", re.I), "memory"),
    (re.compile(r"Insufficient cpu", re.I), "CPU"),
)
_UNMATCHED: Final = re.compile(r"taint|affinity|selector", re.I)


def diagnostic_words(raw: str, detail: str, step: str | None) -> str:
    """What Kubernetes says about a waiting step (an Event, a waiting reason), in a notebook user's words,
    with Kubernetes' own words after them."""
    name = f"step {step!r}" if step else "the step"
    said = f"(Kubernetes: {raw}: {detail})" if detail else f"(Kubernetes: {raw})"
    code = k8s_code(raw, detail)
    if code == UNSCHEDULABLE and raw == "FailedScheduling":
        short = [what for pattern, what in _SHORT if pattern.search(detail)]
        if short:
            return (
                f"Waiting for a machine: no node of the cluster has enough free {' and '.join(short)} for {name} "
                f"right now. It starts when one frees up; ask for less if it never does. {said}"
            )
        if _UNMATCHED.search(detail):
            return (
                f"Waiting for a machine: no node of the cluster accepts {name} (node selector or tolerations "
                f"do not match any node). {said}"
            )
        return f"Waiting for a machine: the cluster cannot place {name} yet. {said}"
    if code == UNSCHEDULABLE:
        return f"{name} cannot start as asked: Kubernetes cannot create its pod or container. {said}"
    if code == IMAGE_PULL:
        return (
            f"The image of {name} could not be downloaded: check its name and tag (the `image:` tag) "
            f"and that the cluster may pull it. {said}"
        )
    if code == OOM:
        return f"The machine ran out of memory while running {name}; raise its `memory:`. {said}"
    if code == EVICTED:
        return f"The machine stopped {name} to free resources (usually memory or disk). {said}"
    if raw in ("BackOff", "CrashLoopBackOff"):
        return f"The container of {name} keeps crashing as it starts; see the step's log. {said}"
    return f"Kubernetes reports a problem with {name}. {said}"


def diagnostic(raw: str, detail: str, step: str | None, text: str | None = None) -> dict[str, Any]:
    """A diagnostic `log` event (no `n`: stored as it comes): its code, and its words (`text`, else made here)."""
    detail = detail.strip()
    return {
        "type": "log",
        "stream": "stderr",
        "reason": k8s_code(raw, detail),
        "text": (text if text is not None else diagnostic_words(raw, detail, step)) + "\n",
    }


# -- the runner's report, in the server's words ------------------------------------------------------------

_ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit)): ?(.*)$")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def step_error(error: dict[str, Any], step: str, stderr: dict[int, str] | None = None) -> dict[str, Any]:
    """The error of a runner's `step.end` as a person reads it: its code kept (`exception` when the
    runner gave none), its message made here from the facts beside it: the cell as Lab numbers it,
    the memory limit, and the real error where the kernel only printed it (a line magic's
    UsageError reaches papermill as an empty CellExecutionError, its text on the cell's stderr)."""
    code = error.get("reason") if error.get("reason") in REASONS else EXCEPTION
    index = error.get("cell_index")
    if code == OOM:
        return {**error, "reason": code, "message": oom_words(step, error.get("limit_bytes"))}
    if code == KERNEL_DIED:
        how = str(error.get("message") or "") or None
        return {**error, "reason": code, "message": kernel_died_words(how, index)}
    if code != EXCEPTION or not isinstance(index, int):
        return {**error, "reason": code}
    ename, evalue = error.get("ename") or "Error", error.get("evalue") or ""
    if ename == "CellExecutionError" and not evalue:
        lines = [line.strip() for line in ANSI.sub("", (stderr or {}).get(index, "")).splitlines() if line.strip()]
        found = next((m for m in map(_ERROR_LINE.match, reversed(lines)) if m), None)
        if found is not None:
            ename, evalue = found.group(1), found.group(2)
        elif lines:
            ename, evalue = "error", lines[-1]
    return {
        **error,
        "reason": code,
        "ename": ename,
        "evalue": evalue,
        "message": cell_raised_words(index, ename, evalue),
    }


def in_words(event: dict[str, Any], step: str, stderr: dict[int, str]) -> dict[str, Any]:
    """One event of a runner, before it is stored: a failing `step.end` gets its code beside it
    and its error in the server's words (`step_error`); a cell's stderr is noted in `stderr`
    (cell -> the end of what it wrote) for errors the kernel only printed."""
    kind = event.get("type")
    if kind == "cell.output" and isinstance(event.get("cell_index"), int):
        output = event.get("output") or {}
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            text = output.get("text")
            text = "".join(text) if isinstance(text, list) else str(text or "")
            stderr[event["cell_index"]] = (stderr.get(event["cell_index"], "") + text)[-4000:]
    elif kind == "step.end" and isinstance(event.get("error"), dict):
        said = step_error(event["error"], step, stderr)
        return {**event, "error": said, "reason": said["reason"]}
    return event
