"""What a client is shown: stored rows as the API's `Job`, an artifact's listing, a notebook's plan.

One place for every reader of the API's shapes: the HTTP handlers answer with these, the in-process
session (the CLI and `%%remote` without a server) returns the very same dicts, so a client cannot
tell which of the two it talks to.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, cast

from .errors import JupyterExtError, cut
from .models import DEFAULT_SWEEP_PARALLEL, MAX_DEPTH, Job, Resources, Status, Step, Sweep, depth_problem
from .records import ArtifactRecord, JobRecord, JobSummary, StepSummary

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
            cache=s.get("cache"),
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
        parent=job.get("parent"),
        metrics=job.get("metrics") or {},
        sweep=_sweep_model(job.get("sweep")),
    ).model_dump(mode="json")


def sweep_view(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    """A sweep job's `sweep` block from what the store read (Store._sweeps): its runs in the order of
    their combinations, each with the swept parameters' values, status, duration and last metrics;
    the names of every metric logged; how many runs are in each status."""
    if raw is None:
        return None
    names = list(raw["names"])
    counts = {s.value: 0 for s in Status if s is not Status.not_run}
    metrics: list[str] = []
    children = []
    for child in raw["children"]:
        counts[child["status"]] = counts.get(child["status"], 0) + 1
        metrics.extend(m for m in child["metrics"] if m not in metrics)
        started, finished = child["started"], child["finished"]
        params = child["parameters"] if isinstance(child["parameters"], dict) else {}
        children.append(
            {
                "id": child["id"],
                "name": child["name"],
                "parameters": {n: params[n] for n in names if n in params},
                "status": child["status"],
                "started": iso(started),
                "finished": iso(finished),
                "duration": round(finished - started, 3) if started is not None and finished is not None else None,
                "metrics": dict(child["metrics"]),
            }
        )
    return {
        "mode": raw["mode"],
        "parallel": raw["parallel"] or DEFAULT_SWEEP_PARALLEL,
        "parameters": names,
        "metrics": metrics,
        "counts": counts,
        "children": children,
    }


def _sweep_model(raw: dict[str, Any] | None) -> Sweep | None:
    view = sweep_view(raw)
    return None if view is None else Sweep.model_validate(view)


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


_STATUSES = frozenset(s.value for s in Status)
_RESOURCES: dict[str, dict[str, Any]] = {}  # stored resources (as JSON) -> as `Resources` shows them
_RESOURCES_KEPT = 1024


def job_list_view(jobs: list[JobSummary], log: Any) -> list[dict[str, Any]]:
    """A page of the list as API `Job`s: the very dicts `safe_job_view` answers, built without a
    pydantic model per job and step (a page of 200 jobs took longer to validate than to read).
    A row holding anything the fast path does not vouch for (a status, type or nesting the models
    would convert or refuse) goes through `safe_job_view`; a test compares the two on every kind of
    row. Jobs that cannot be shown at all are left out, as `safe_job_view` leaves them."""
    out = []
    for job in jobs:
        view = _fast_view(job) or safe_job_view(cast(JobRecord, job), log)
        if view is not None:
            out.append(view)
    return out


_FRAGMENTS: dict[tuple[Any, ...], str] = {}  # a summary's fingerprint -> its view as JSON ("": left out)
_FRAGMENTS_KEPT = 2048  # ten pages of 200: about 3 MiB of JSON


def job_list_json(jobs: list[JobSummary], after: str | None, log: Any) -> str:
    """The list's answer, `{"jobs": [...], "next": ...}`, as the JSON text tornado would write for
    `{"jobs": job_list_view(jobs), "next": after}`; each job's part is made once per version of its
    stored rows (its summary's fingerprint) and reused while they stay the same, so a page of
    finished jobs costs little more than reading it."""
    parts = []
    for job in jobs:
        key = job["fingerprint"]
        text = _FRAGMENTS.get(key)
        if text is None:
            view = _fast_view(job) or safe_job_view(cast(JobRecord, job), log)
            text = "" if view is None else _json(view)
            if len(_FRAGMENTS) >= _FRAGMENTS_KEPT:
                _FRAGMENTS.clear()
            _FRAGMENTS[key] = text
        if text:
            parts.append(text)
    return f'{{"jobs": [{", ".join(parts)}], "next": {_json(after)}}}'


def _json(value: Any) -> str:
    """As tornado's json_encode writes it (`</` escaped, for pages that embed it)."""
    return json.dumps(value).replace("</", "<\\/")


def _fast_view(job: JobSummary) -> dict[str, Any] | None:
    """The job's view (it shares the summary's values: change neither), or None where the slow way
    must decide (what the models would convert, refuse or repair)."""
    try:
        return _fast_view_of(job)
    except Exception:  # noqa: BLE001 - e.g. a timestamp stored as text: the slow way says what it is
        return None


def _fast_view_of(job: JobSummary) -> dict[str, Any] | None:
    params, error = job["parameters"], job["error"]
    if (
        job["status"] not in _STATUSES
        or type(job["id"]) is not str
        or type(job["name"]) is not str
        or type(job["notebook"]) is not str
        or type(job["user"]) is not str
        or type(job["backend"]) is not str
        or type(job["last_seq"]) is not int
        or type(params) is not dict
        or not (error is None or type(error) is dict)
        or depth_problem(params, MAX_DEPTH - 1)
        or (error is not None and depth_problem(error, MAX_DEPTH - 1))
    ):
        return None
    steps = []
    for s in job["steps"]:
        step = _fast_step(s)
        if step is None:
            return None
        steps.append(step)
    sweep = job.get("sweep")
    if sweep is not None and (
        any(c["status"] not in _STATUSES for c in sweep["children"])
        or any(depth_problem(c["parameters"], MAX_DEPTH - 2) for c in sweep["children"])
    ):
        return None
    waiting = [s["queue_position"] for s in steps if s["queue_position"] is not None]
    return {
        "id": job["id"],
        "name": job["name"],
        "notebook": job["notebook"],
        "user": job["user"],
        "backend": job["backend"],
        "status": job["status"],
        "parameters": params,
        "created": iso(job["created"]) or "",
        "started": iso(job["started"]),
        "finished": iso(job["finished"]),
        "error": error,
        "last_seq": job["last_seq"],
        "queue_position": min(waiting, default=None),
        "steps": steps,
        "parent": job.get("parent"),
        "metrics": dict(job.get("metrics") or {}),
        "sweep": sweep_view(sweep),
    }


def _fast_step(s: StepSummary) -> dict[str, Any] | None:
    spec, error = s["spec"], s["error"]
    if (
        type(spec) is not dict
        or type(s["name"]) is not str
        or s["status"] not in _STATUSES
        or not (error is None or type(error) is dict)
    ):
        return None
    after, cells = spec.get("after", []), spec.get("cells", [])
    retries, timeout, reused = spec.get("retries", 0), spec.get("timeout"), spec.get("reused_from")
    position = s["queue_position"] if s["status"] == "queued" else None
    cache = s.get("cache")
    if (
        type(after) is not list
        or any(type(a) is not str for a in after)
        or type(cells) is not list
        or any(type(c) is not int for c in cells)
        or type(retries) is not int
        or not (timeout is None or type(timeout) is float)
        or not (reused is None or (type(reused) is dict and not depth_problem(reused, MAX_DEPTH - 1)))
        or not (cache is None or (type(cache) is dict and not depth_problem(cache, MAX_DEPTH - 1)))
        or (error is not None and depth_problem(error, MAX_DEPTH - 1))
        or type(s["attempt"]) is not int
        or not (s["exit_code"] is None or type(s["exit_code"]) is int)
        or not (position is None or type(position) is int)
    ):
        return None
    resources = _resources(spec.get("resources", {}))
    if resources is None:
        return None
    return {
        "name": s["name"],
        "status": s["status"],
        "after": after,
        "resources": resources,
        "cells": cells,
        "attempt": s["attempt"],
        "retries": retries,
        "timeout": timeout,
        "started": iso(s["started"]),
        "finished": iso(s["finished"]),
        "exit_code": s["exit_code"],
        "error": error,
        "reused_from": reused,
        "queue_position": position,
        "cache": cache,
    }


def _resources(stored: Any) -> dict[str, Any] | None:
    """Stored step resources as `Resources` shows them (validated once per distinct value, then
    remembered); None if the model refuses them."""
    key = repr(stored)  # of JSON-loaded values: equal reprs, equal values (1, 1.0 and True differ)
    shown = _RESOURCES.get(key)
    if shown is None:
        try:
            shown = Resources.model_validate(stored).model_dump(mode="json")
        except Exception:  # noqa: BLE001 - the slow path says what is wrong
            return None
        if len(_RESOURCES) >= _RESOURCES_KEPT:
            _RESOURCES.clear()
        _RESOURCES[key] = shown
    return {**shown, "extra_limits": dict(shown["extra_limits"])}


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
        if depth_problem(step.get("cache"), MAX_DEPTH) or not isinstance(step.get("cache"), (dict, type(None))):
            step["cache"] = None
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
