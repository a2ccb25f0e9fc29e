"""The Backend contract: submit a step attempt, stream its runner events, learn how it ended.

The orchestrator owns job and step state; a backend only runs one attempt of one step at a
time per handle and reports what happened. Handles are JSON-able dicts stored with the step,
so a restarted server can `adopt` them and resume the event stream where it stopped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from traitlets import Float
from traitlets.config import LoggingConfigurable

from ..models import Resources


@dataclass
class StepLaunch:
    """Everything a backend needs to start one attempt of one step."""

    job_id: str
    step: str
    attempt: int
    user: str
    notebook: str  # the step's own notebook (sliced, hand-off cells added)
    attempt_dir: str  # events, logs, artifacts and hand-off outputs of this attempt
    workdir: str  # the kernel's working directory (the user's notebook folder)
    parameters: dict[str, Any] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)
    env: dict[str, str] = field(default_factory=dict)
    kernel: str | None = None
    timeout: float | None = None
    html: bool = True  # keep an HTML copy of the executed notebook (not for single cells)


def runner_argv(
    launch: StepLaunch,
    *,
    notebook: str,
    attempt_dir: str,
    workdir: str,
    parameters_file: str | None = None,
    python: str = "python",
    events_stdout: bool = False,
) -> list[str]:
    """`python -m jupyter_ext.runner ...` for one attempt, as an argv (never a shell line).

    With `events_stdout` the events go to stdout only (the pod log is the channel); otherwise
    to `<attempt_dir>/events.jsonl`, which the local backend follows."""
    argv = [python, "-m", "jupyter_ext.runner", "--notebook", notebook, "--attempt-dir", attempt_dir]
    argv += ["--workdir", workdir, "--job", launch.job_id, "--step", launch.step, "--attempt", str(launch.attempt)]
    if parameters_file is not None:
        argv += ["--parameters-file", parameters_file]
    if launch.kernel:
        argv += ["--kernel", launch.kernel]
    if not launch.html:
        argv.append("--no-html")
    if events_stdout:
        argv += ["--events-stdout", "--no-events-file"]
    return argv


@dataclass
class Outcome:
    """How an attempt ended, as far as the backend can tell."""

    exit_code: int | None
    reason: str | None = None  # e.g. "killed", "OOMKilled", "lost"; None when it simply exited
    # The backend knows better than the runner's own step.end (the memory cgroup killed the
    # kernel, the event channel could not be read): `reason` is the step's error, whatever it said.
    final: bool = False
    code: str | None = None  # the reason code of docs/events.md (oom, lost, ...) when `final`


class Backend(LoggingConfigurable):
    """Runs step attempts somewhere. Subclasses write what differs; the orchestrator does the rest."""

    name = "base"

    cancel_grace = Float(
        5.0,
        config=True,
        help="Seconds a cancelled step gets to stop cleanly (SIGTERM) before it is killed.",
    )

    #: Called (on the event loop) whenever `queue()` changes; the orchestrator sets it.
    on_queue_change: Callable[[], None] | None = None

    async def start(self) -> None:
        """Start shared machinery (watches, tail threads). Called once by the app."""

    async def stop(self) -> None:
        """Stop shared machinery. Running steps keep running; a later start adopts them."""

    def check(self, step: str, resources: Resources) -> None:
        """Raise ValidationError (naming `step`) when the request can never be satisfied here."""

    async def preflight(self, steps: list[tuple[str, Resources]]) -> None:
        """Ask the backend (e.g. the cluster) whether these steps can run; raise ValidationError naming
        the step when they cannot. Called once per submission, before anything is stored."""

    async def submit(self, launch: StepLaunch) -> dict[str, Any]:
        """Start the attempt (waiting for capacity if needed) and return its handle."""
        raise NotImplementedError

    def events(self, handle: dict[str, Any], after: int) -> AsyncIterator[list[dict[str, Any]]]:
        """Batches of runner events with `n > after`, in order; ends when the attempt is over."""
        raise NotImplementedError

    async def outcome(self, handle: dict[str, Any]) -> Outcome:
        """How the attempt ended; call after `events` is exhausted."""
        raise NotImplementedError

    async def cancel(self, handle: dict[str, Any]) -> None:
        """Stop the attempt: politely, then by force after `cancel_grace`."""
        raise NotImplementedError

    async def adopt(self, handle: dict[str, Any]) -> bool:
        """Take back an attempt started before a restart; False when nothing of it remains."""
        return False

    def capacity(self) -> dict[str, Any]:
        """What this backend can run, for `GET info`."""
        return {}

    def queue(self) -> list[tuple[str, str]]:
        """(job id, step) of the attempts waiting in `submit` for capacity, next first. Backends
        whose queue is elsewhere (a cluster's scheduler) have none here."""
        return []
