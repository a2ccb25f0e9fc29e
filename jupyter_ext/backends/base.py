"""The Backend contract: submit a step attempt, stream its runner events, learn how it ended.

The orchestrator owns job and step state; a backend only runs one attempt of one step at a
time per handle and reports what happened. A `Handle` (a pydantic model: the common fields here,
each backend's own in its subclass) is stored with the step as flat JSON, so a restarted server
can `adopt` it and resume the event stream where it stopped. `events` yields batches of runner
events and ends with the attempt's `Outcome`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict
from traitlets import Float
from traitlets.config import LoggingConfigurable

from ..contract import HANDOFF_IN_ENV, REASONS
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
    # Input variable -> the file on the server holding its pickled value (a producing step's
    # hand-off output, or a cell job's input). The backend makes it reach the step's process.
    handoff_in: dict[str, str] = field(default_factory=dict)


def handoff_env(handoff_in: dict[str, str]) -> dict[str, str]:
    """The runner's `HANDOFF_IN_ENV` for these inputs (paths as the step's process sees them)."""
    return {HANDOFF_IN_ENV: json.dumps(handoff_in)} if handoff_in else {}


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


class Handle(BaseModel):
    """Where one attempt runs, as stored with its step (flat JSON: what older servers stored reads too).

    Backends subclass it with their own fields (`LocalHandle`: a process; `KubernetesHandle`: a
    Job); unknown keys are ignored so a newer handle still loads in an older field set.
    """

    model_config = ConfigDict(extra="ignore")

    backend: str = ""
    attempt_dir: str
    step: str = ""
    started: float = 0.0

    def stored(self) -> dict[str, Any]:
        """The JSON object stored with the step."""
        return self.model_dump(mode="json")


H = TypeVar("H", bound=Handle)


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, as far as the backend can tell: the last item `Backend.events` yields."""

    exit_code: int | None
    reason: str | None = None  # e.g. "killed", "OOMKilled", "lost"; None when it simply exited
    # The backend knows better than the runner's own step.end (the memory cgroup killed the
    # kernel, the event channel could not be read): `reason` is the step's error, whatever it said.
    final: bool = False
    code: str | None = None  # one of contract.REASONS (oom, lost, ...) when the backend knows it (reasons.py)

    def __post_init__(self) -> None:
        if self.code is not None and self.code not in REASONS:
            raise ValueError(f"unknown reason code {self.code!r}")


#: What `Backend.events` yields: batches of runner events, then, last, the attempt's `Outcome`.
EventsOrOutcome = list[dict[str, Any]] | Outcome


class Backend(LoggingConfigurable, Generic[H]):
    """Runs step attempts somewhere. Subclasses write what differs; the orchestrator does the rest."""

    name = "base"
    #: The handle type of this backend: `load_handle` reads stored handles with it.
    handle_type: ClassVar[type[Handle]] = Handle

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

    def load_handle(self, stored: dict[str, Any]) -> H:
        """A handle stored with a step (by this server or an older one), typed."""
        return self.handle_type.model_validate(stored)  # type: ignore[return-value]

    async def submit(self, launch: StepLaunch) -> H:
        """Start the attempt (waiting for capacity if needed) and return its handle."""
        raise NotImplementedError

    def events(self, handle: H, after: int) -> AsyncIterator[EventsOrOutcome]:
        """Batches of runner events with `n > after`, in order, then how the attempt ended (an
        `Outcome`, the last item). A consumer that stops early gets no outcome."""
        raise NotImplementedError

    async def cancel(self, handle: H) -> None:
        """Stop the attempt: politely, then by force after `cancel_grace`."""
        raise NotImplementedError

    async def adopt(self, handle: H) -> bool:
        """Take back an attempt started before a restart; False when nothing of it remains."""
        return False

    def capacity(self) -> dict[str, Any]:
        """What this backend can run, for `GET info`."""
        return {}

    def expect_steps(self, job_id: str, steps: int) -> None:
        """The orchestrator's hint: `steps` of this job are still to start (0: none, the job is done).
        A backend that can get ready ahead of time (the local warm pool) uses it; others ignore it."""

    def queue(self) -> list[tuple[str, str]]:
        """(job id, step) of the attempts waiting in `submit` for capacity, next first. Backends
        whose queue is elsewhere (a cluster's scheduler) have none here."""
        return []
