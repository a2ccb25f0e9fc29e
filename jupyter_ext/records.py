"""What the store hands back: a job, its steps, its artifacts, as typed dicts.

`TypedDict`, not pydantic: the rows stay the plain dicts they always were at run time (every
`job["status"]` keeps working, views copy them with `dict(...)`, nothing is validated twice),
while mypy checks every key the orchestrator, the views and the CLI read. The API's own models
(what clients send and get back) are pydantic, in models.py; these are the server's inside.

A leaf: the standard library only, so backends, views and the CLI can all name these types.
"""

from __future__ import annotations

from typing import Any, TypedDict


class StepRecord(TypedDict):
    """One row of `steps`: a step of a job, its current attempt and where that attempt runs."""

    job_id: str
    name: str
    position: int  # in the job's plan (steps are listed in this order)
    status: str  # a models.Status value
    spec: dict[str, Any]  # models.StepSpec, dumped
    attempt: int  # the current attempt (0: none started yet)
    started: float | None
    finished: float | None
    exit_code: int | None
    error: dict[str, Any] | None  # {"message", "reason"?, "cell_index"?, ...}
    handle: dict[str, Any] | None  # the backend's handle of the running attempt
    consumed: int  # runner events of the current attempt already stored
    queue_position: int | None  # place in the backend's line for a slot (1: next)
    cache: dict[str, Any] | None  # {"key", "hit", "from": {"job", "step", "attempt"}?}; None: not cached


class JobRecord(TypedDict):
    """One row of `jobs` with its steps in plan order."""

    id: str
    user: str
    name: str
    notebook: str
    backend: str
    status: str  # a models.Status value
    parameters: dict[str, Any]
    spec: dict[str, Any]  # models.JobSpec, dumped, plus `workdir`
    created: float
    started: float | None
    finished: float | None
    error: dict[str, Any] | None
    idempotency_key: str | None
    last_seq: int  # seq of the job's newest stored event
    cancel_requested: int  # 0 or 1
    parent: str | None  # the sweep job this job is a child of
    steps: list[StepRecord]
    metrics: dict[str, float]  # each metric's last value (Store.metrics)
    #: a sweep job's runs as views.py shows them (Store._sweeps: {mode, parallel, names, children}); None: no sweep
    sweep: dict[str, Any] | None


class StepSummary(TypedDict):
    """A step as a list shows it (Store.job_summaries): a StepRecord without its backend handle."""

    job_id: str
    name: str
    position: int
    status: str
    spec: dict[str, Any]
    attempt: int
    started: float | None
    finished: float | None
    exit_code: int | None
    error: dict[str, Any] | None
    queue_position: int | None
    cache: dict[str, Any] | None


class JobSummary(TypedDict):
    """A job as a list shows it (Store.job_summaries): what the API's `Job` holds, so no spec (a
    `%%remote` job's holds its cell's source), no idempotency key."""

    id: str
    user: str
    name: str
    notebook: str
    backend: str
    status: str
    parameters: dict[str, Any]
    created: float
    started: float | None
    finished: float | None
    error: dict[str, Any] | None
    last_seq: int
    parent: str | None
    steps: list[StepSummary]
    metrics: dict[str, float]
    sweep: dict[str, Any] | None
    #: The stored rows it was made from: equal fingerprints, equal summaries (and equal views).
    #: Summaries are shared between calls (Store caches them by it): never change one.
    fingerprint: tuple[Any, ...]


class FinishedJob(TypedDict):
    """What retention chooses from (Store.finished_jobs)."""

    id: str
    user: str
    created: float
    finished: float | None
    status: str


class ArtifactRecord(TypedDict):
    """One row of `artifacts`: a file a step (or the whole job) produced, stored in the job's folder."""

    name: str  # unique in the job: `<step>__<path>` unless the job has one step
    step: str
    path: str  # where it is on disk (JobLayout.artifact_file checks it before it is served)
    size: int
    mime: str
    created: float
