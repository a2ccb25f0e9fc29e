"""What a client is shown: stored rows as the API's `Job`, an artifact's listing, a notebook's plan.

One place for every reader of the API's shapes: the HTTP handlers answer with these, the in-process
session (the CLI and `%%remote` without a server) returns the very same dicts, so a client cannot
tell which of the two it talks to.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, cast

from .errors import JupyterExtError, cut
from .models import MAX_DEPTH, Job, Status, Step, depth_problem
from .records import ArtifactRecord, JobRecord

if TYPE_CHECKING:
    from .orchestrator import Orchestrator


def iso(ts: float | None) -> str | None:
    """A stored timestamp (seconds) as the API writes times: ISO 8601 in UTC with a `Z`."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def job_view(job: JobRecord) -> dict[str, Any]:
    """Store record -> API `Job`."""
    steps = [
        Step(
            name=s["name"],
            status=Status(s["status"]),
            after=s["spec"].get("after", []),
            resources=s["spec"].get("resources", {}),
            cells=s["spec"].get("cells", []),
            attempt=s["attempt"],
            retries=s["spec"].get("retries", 0),
            timeout=s["spec"].get("timeout"),
            started=iso(s["started"]),
            finished=iso(s["finished"]),
            exit_code=s["exit_code"],
            error=s["error"],
            reused_from=s["spec"].get("reused_from"),
            queue_position=s.get("queue_position") if s["status"] == "queued" else None,
        )
        for s in job["steps"]
    ]
    waiting = [s.queue_position for s in steps if s.queue_position is not None]
    return Job(
        id=job["id"],
        name=job["name"],
        notebook=job["notebook"],
        user=job["user"],
        backend=job["backend"],
        status=Status(job["status"]),
        parameters=job["parameters"],
        created=iso(job["created"]) or "",
        started=iso(job["started"]),
        finished=iso(job["finished"]),
        error=job["error"],
        last_seq=job["last_seq"],
        queue_position=min(waiting, default=None),
        steps=steps,
    ).model_dump(mode="json")


def safe_job_view(job: JobRecord, log: Any) -> dict[str, Any] | None:
    """`job_view`, for any stored row: a row that cannot be shown as it is (e.g. parameters nested
    deeper than the API can serialize, stored before the edge refused them) is shown repaired, with
    a log line; the row itself is kept. None only if not even its id can be shown."""
    try:
        return job_view(job)
    except Exception as exc:  # noqa: BLE001 - any stored row must not break the list
        log.warning("jupyter-ext: job %s cannot be shown as stored (%s); showing it repaired", job.get("id"), exc)
    try:
        return job_view(_repaired(job))
    except Exception:  # noqa: BLE001
        log.exception("jupyter-ext: job %s cannot be shown even repaired; left out of the answer", job.get("id"))
        return None


def _repaired(job: JobRecord) -> JobRecord:
    """A stored job with what cannot be shown replaced by words saying so."""

    def value(v: Any) -> Any:
        problem = depth_problem(v, MAX_DEPTH)
        return f"<not shown: {problem}>" if problem else v

    def obj(v: Any) -> dict[str, Any] | None:
        if v is None or (isinstance(v, dict) and not depth_problem(v, MAX_DEPTH)):
            return v
        return {"message": cut(str(v) if not isinstance(v, (dict, list)) else "<not shown>", 1000)}

    out: dict[str, Any] = dict(job)
    params = job.get("parameters")
    out["parameters"] = {str(k): value(v) for k, v in params.items()} if isinstance(params, dict) else {}
    out["error"] = obj(job.get("error"))
    steps = []
    for s in job.get("steps") or []:
        step: dict[str, Any] = dict(s)
        spec = step.get("spec")
        step["spec"] = {k: value(v) for k, v in spec.items()} if isinstance(spec, dict) else {}
        if depth_problem(step["spec"].get("reused_from"), MAX_DEPTH) or not isinstance(
            step["spec"].get("reused_from"), (dict, type(None))
        ):
            step["spec"]["reused_from"] = None
        step["error"] = obj(step.get("error"))
        steps.append(step)
    out["steps"] = steps
    return cast(JobRecord, out)


def artifact_view(artifact: ArtifactRecord) -> dict[str, Any]:
    """Stored artifact -> API `Artifact` (its path on disk is the server's business)."""
    return {"name": artifact["name"], "step": artifact["step"], "size": artifact["size"], "mime": artifact["mime"]}


def plan_view(orchestrator: Orchestrator, relative: str, backend_name: str) -> dict[str, Any]:
    """The API's `Plan` of a notebook: how it would run (its steps with their cells and resources,
    its parameters, the planner's warnings) and, as `error`, the problem a submit would be refused
    with. Stores nothing. Blocking (it reads and parses the notebook): call it in a thread."""
    from .notebook import plan_notebook
    from .notebook.parameters import notebook_parameters

    _, nb = orchestrator.read_notebook(relative)
    ids = [cell.get("id") for cell in nb.cells]
    body: dict[str, Any] = {
        "notebook": relative,
        "backend": backend_name,
        "steps": [],
        "parameters": notebook_parameters(nb),
        "warnings": [],
        "single": False,
        "error": None,
    }
    try:
        plan = plan_notebook(nb)
        orchestrator.check_kernel(nb, backend_name)
        for planned in plan.steps:
            orchestrator.check_resources(
                orchestrator.backends[backend_name], planned.name, planned.resources, planned.asked
            )
    except JupyterExtError as exc:
        body["error"] = exc.to_dict()
        return body
    body["single"] = plan.single
    body["warnings"] = plan.warnings
    body["steps"] = [
        {
            "name": s.name,
            "after": list(s.after),
            "cells": [{"index": i, "id": ids[i]} for i in s.cells],
            "resources": s.resources.model_dump(),
            "timeout": s.timeout,
            "retries": s.retries,
        }
        for s in plan.steps
    ]
    return body
