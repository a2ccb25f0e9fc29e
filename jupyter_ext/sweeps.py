"""Parameter sweeps: one notebook run once per combination of parameter values.

    POST jobs {"notebook": "train.ipynb", "sweep": {"lr": [0.1, 0.01], "depth": [3, 5]}}
    jupyter-ext run train.ipynb --sweep lr=0.1,0.01 --sweep depth=3,5 [--zip] [--parallel N]

A sweep is one **sweep job** (the parent: `spec.sweep` set, no steps) and one **run** per
combination: an ordinary job whose `parent` is the sweep job's id, whose parameters are the sweep's
`parameters` overlaid with its combination, named `"<name> lr=0.1 depth=3"`. Every run is created
up front, in the order of the combinations (`grid`: the cartesian product in the order given; `zip`:
the i-th values together), so a sweep's table lists every row from the start. Each run's steps are
cached (`StepSpec.cache`) unless tagged `cache:off`: a step that reads no swept parameter has the
same key in every run, runs once, and the other runs take its result from the step cache.

The sweep job's own driver (`drive_sweep`, started by the orchestrator like any job's driver)
drives at most `sweep_parallel` runs at once (default 4); a failing run does not stop the others.
It is `queued`, then `running` from the first run it starts, then `succeeded` when every run
succeeded, `failed` when one did not, `cancelled` when it was cancelled (its runs with it). Its
event stream says `sweep.child` (`child`: the run's id) when a run is created and when it ends.
After a server restart the orchestrator re-drives the sweep job (not its runs: their sweep does,
running ones first). Deleting or pruning a sweep deletes its runs (upkeep.py); its runs are listed
only on asking (`GET jobs?parent=ID`).

Submitting checks everything before storing anything: the spec (models.JobSpec: values, zip
lengths, at most 1000 runs, no name both swept and fixed), the swept names against the notebook's
parameters (field `sweep.NAME`), then the notebook is planned and sliced once and the job folder
copied for each run. The sweep job and its runs are stored in one transaction (Store.create_sweep).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat

from .contract import TERMINAL
from .errors import ValidationError
from .models import DEFAULT_SWEEP_PARALLEL, JobSpec, StepSpec
from .notebook.parameters import check_parameters
from .records import JobRecord
from .store import new_job_id

if TYPE_CHECKING:
    from .orchestrator import Orchestrator

log = logging.getLogger("jupyter_ext")

#: How often a sweep's driver looks whether another process asked to cancel it (the server's own
#: cancel reaches it at once).
CANCEL_POLL = 1.0
#: The most characters of a run's name (the API's limit on a job name).
NAME_CHARS = 200


# -- combinations ------------------------------------------------------------------------------------------
def combinations(sweep: dict[str, list[Any]], mode: str = "grid") -> list[dict[str, Any]]:
    """The runs of a sweep, each as {name: value}: `grid`, the cartesian product in the order given
    (the last name varies fastest); `zip`, the i-th values of every name together."""
    names = list(sweep)
    if mode == "zip":
        return [dict(zip(names, values, strict=True)) for values in zip(*sweep.values(), strict=True)]
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*sweep.values())]


def shown_value(value: Any) -> str:
    """A parameter value as a run's name and the CLI's table show it: text as it is, else Python's repr."""
    return value if isinstance(value, str) else repr(value)


def run_name(base: str, combination: dict[str, Any]) -> str:
    """`"train lr=0.1 depth=3"`, cut to NAME_CHARS."""
    name = " ".join([base, *(f"{k}={shown_value(v)}" for k, v in combination.items())])
    return name if len(name) <= NAME_CHARS else name[: NAME_CHARS - 1] + "…"


def check_swept_names(nb: Any, sweep: dict[str, list[Any]], notebook: str) -> None:
    """Refuse a swept name the notebook does not declare as a parameter (as `parameters` are
    refused), the error naming the field `sweep.NAME`."""
    try:
        check_parameters(nb, sweep, notebook)
    except ValidationError as exc:
        field = (exc.field or "").replace("parameters.", "sweep.", 1) or f"sweep.{next(iter(sweep))}"
        message = exc.message.replace(exc.field or "parameters", field, 1) if exc.field else exc.message
        raise ValidationError(message, field=field) from None


def cache_every_step(steps: list[StepSpec]) -> None:
    """A sweep's runs cache every step not tagged `cache:off` (the planner's `cache=False`), so the
    steps that read no swept parameter run once for the whole sweep."""
    for step in steps:
        step.cache = step.cache is not False


# -- submit ------------------------------------------------------------------------------------------------
async def submit_sweep(
    orchestrator: Orchestrator,
    spec: JobSpec,
    user: str,
    *,
    drive: bool = True,
    snapshot: Path | None = None,
    schedule: str | None = None,
) -> tuple[JobRecord, bool]:
    """Check, plan and store a sweep job with all its runs, then drive it (unless `drive` is false:
    another process will). Answers (the sweep job, created) as `Orchestrator.submit` does; a
    schedule's sweep passes `snapshot` and `schedule` as it would to `submit` (kept in every run's spec)."""
    assert spec.sweep is not None and spec.notebook is not None
    backend_name, backend = orchestrator.backend_named(spec.backend)
    runs = combinations(spec.sweep, spec.sweep_mode)
    sweep_id = new_job_id()
    run_ids = [new_job_id() for _ in runs]

    def remove_folders() -> None:
        for job_id in (sweep_id, *run_ids):
            shutil.rmtree(orchestrator.job_dir(job_id), True)

    try:
        path, steps, asked = await asyncio.to_thread(
            _prepare, orchestrator, spec, run_ids, user, backend_name, snapshot
        )
        for step in steps:
            orchestrator.check_resources(backend, step.name, step.resources, asked.get(step.name))
        await backend.preflight([(s.name, s.resources) for s in steps])
    except BaseException:
        await asyncio.to_thread(remove_folders)
        raise
    base = spec.name or Path(spec.notebook).stem
    now = time.time()
    dumped = {**spec.model_dump(), **({"schedule": schedule} if schedule else {})}
    sweep_record = {
        "id": sweep_id,
        "user": user,
        "name": base,
        "notebook": spec.notebook,
        "backend": backend_name,
        "parameters": spec.parameters,
        "spec": {**dumped, "workdir": str(path.parent)},
        "idempotency_key": spec.idempotency_key,
        "created": now,
    }
    step_rows = [{"name": s.name, "spec": s.model_dump(), "status": "queued", "attempt": 0} for s in steps]
    children = []
    for index, (run_id, combination) in enumerate(zip(run_ids, runs, strict=True)):
        parameters = {**spec.parameters, **combination}
        name = run_name(base, combination)
        run_spec = {
            **dumped,
            "parameters": parameters,
            "name": name,
            "idempotency_key": None,
            "sweep": None,
            "sweep_mode": "grid",
            "sweep_parallel": None,
            "workdir": str(path.parent),
        }
        record = {
            "id": run_id,
            "user": user,
            "name": name,
            "notebook": spec.notebook,
            "backend": backend_name,
            "parameters": parameters,
            "spec": run_spec,
            "created": now + (index + 1) * 1e-6,  # the runs list in the order of their combinations
        }
        children.append((record, step_rows))
    job, created = await orchestrator.store.create_sweep(sweep_record, children)
    if not created:
        await asyncio.to_thread(remove_folders)
        return job, False
    names = [s.name for s in steps]
    for run_id in run_ids:
        await _emit(orchestrator, run_id, [{"type": "job.queued", "steps": names, "backend": backend_name}])
    await _emit(
        orchestrator,
        sweep_id,
        [{"type": "job.queued", "steps": [], "backend": backend_name, "runs": len(runs)}]
        + [
            {
                "type": "sweep.child",
                "child": run_id,
                "name": record["name"],
                "parameters": combination,
                "status": "queued",
            }
            for run_id, combination, (record, _) in zip(run_ids, runs, children, strict=True)
        ],
    )
    if drive:
        orchestrator.drive(sweep_id)
    return await orchestrator.store.get_job(sweep_id), True


def _prepare(
    orchestrator: Orchestrator,
    spec: JobSpec,
    run_ids: list[str],
    user: str,
    backend_name: str,
    snapshot: Path | None,
) -> tuple[Path, list[StepSpec], dict[str, Any]]:
    """Plan and slice the notebook into the first run's folder (prepare.py, which checks the fixed
    parameters), check the swept names against the notebook it copied there, then copy that folder
    for every other run: step notebooks do not depend on parameters (thread)."""
    assert spec.sweep is not None and spec.notebook is not None
    fixed = spec.model_copy(update={"sweep": None})
    path, steps, asked = orchestrator.builder.prepare(fixed, run_ids[0], user, backend_name, snapshot=snapshot)
    nb = nbformat.read(orchestrator.layout.notebook(run_ids[0]), as_version=4)
    check_swept_names(nb, spec.sweep, repr(spec.notebook))
    cache_every_step(steps)
    source = orchestrator.job_dir(run_ids[0])
    for run_id in run_ids[1:]:
        shutil.copytree(source, orchestrator.job_dir(run_id))
    return path, steps, asked


async def _emit(orchestrator: Orchestrator, job_id: str, events: list[dict[str, Any]]) -> None:
    stored = await orchestrator.store.append_events(job_id, events)
    orchestrator.fanout.publish(job_id, stored)


# -- drive ---------------------------------------------------------------------------------------------------
async def drive_sweep(orchestrator: Orchestrator, sweep_id: str) -> None:
    """Drive a sweep job's runs, at most `sweep_parallel` at once, until every run ended; then end
    the sweep job. Runs already running (after a restart) are driven first; a run that ended while
    no server drove the sweep is said to have ended (`sweep.child`) first."""
    store = orchestrator.store
    job = await store.get_job(sweep_id)
    parallel = int(job["spec"].get("sweep_parallel") or DEFAULT_SWEEP_PARALLEL)
    swept = list(job["spec"].get("sweep") or {})
    runs = await store.sweep_runs(sweep_id)
    said = {
        e.get("child")
        for e in await store.events(sweep_id, 0, 100_000)
        if e["type"] == "sweep.child" and e.get("status") != "queued"
    }
    for run in runs:
        if run["status"] in TERMINAL and run["id"] not in said:
            await _announce(orchestrator, sweep_id, swept, await store.get_job(run["id"]))
    pending = [r for r in runs if r["status"] not in TERMINAL]
    pending.sort(key=lambda r: r["status"] != "running")  # stable: the rest stay in combination order
    waits: dict[str, asyncio.Task[JobRecord]] = {}
    cancelled = False
    while True:
        if not cancelled and await _cancel_asked(orchestrator, sweep_id):
            cancelled = True
            await cancel_runs(orchestrator, sweep_id)
            for run in await store.sweep_runs(sweep_id):  # every run cancelled is being driven to its end
                if run["status"] not in TERMINAL and run["id"] not in waits:
                    waits[run["id"]] = asyncio.create_task(orchestrator.wait(run["id"]))
            pending = []
        while pending and len(waits) < parallel:
            run = pending.pop(0)
            if await store.mark_started(sweep_id, time.time()):
                await _emit(orchestrator, sweep_id, [{"type": "job.start"}])
            orchestrator.drive(run["id"])
            waits[run["id"]] = asyncio.create_task(orchestrator.wait(run["id"]), name=f"sweep {sweep_id} run")
        if not waits:
            break
        done, _ = await asyncio.wait(waits.values(), timeout=CANCEL_POLL, return_when=asyncio.FIRST_COMPLETED)
        for run_id in [i for i, t in waits.items() if t in done]:
            task = waits.pop(run_id)
            try:
                ended = task.result()
            except Exception:  # noqa: BLE001 - one run's trouble must not stop the sweep
                log.exception("jupyter-ext: waiting for run %s of sweep %s failed", run_id, sweep_id)
                continue
            if ended["status"] not in TERMINAL:
                continue  # not driven here after all (the server is stopping): the next start re-drives it
            await _announce(orchestrator, sweep_id, swept, ended)
    if any(r["status"] not in TERMINAL for r in await store.sweep_runs(sweep_id)):
        return  # stopping: the sweep stays running, and is driven again at the next start
    await _finish(orchestrator, sweep_id, cancelled)


async def _announce(orchestrator: Orchestrator, sweep_id: str, swept: list[str], run: JobRecord) -> None:
    """`sweep.child` on the sweep's stream: the run ended (its status, error and last metrics)."""
    combination = {k: run["parameters"].get(k) for k in swept if k in run["parameters"]}
    event = {
        "type": "sweep.child",
        "child": run["id"],
        "name": run["name"],
        "parameters": combination,
        "status": run["status"],
        "error": run["error"],
        "metrics": run.get("metrics") or {},
    }
    await _emit(orchestrator, sweep_id, [event])


async def _cancel_asked(orchestrator: Orchestrator, sweep_id: str) -> bool:
    """Cancelled here (Orchestrator.cancel), or by another process sharing the store (`jupyter-ext cancel`)."""
    if orchestrator.cancelling(sweep_id):
        return True
    _, asked = await orchestrator.store.job_state(sweep_id)
    return asked


async def cancel_runs(orchestrator: Orchestrator, sweep_id: str) -> None:
    """Cancel every run of the sweep that has not ended and was not cancelled yet (a run never
    started ends `cancelled` without running)."""
    for run in await orchestrator.store.sweep_runs(sweep_id):
        if run["status"] not in TERMINAL and not run["cancel_requested"]:
            await orchestrator.cancel(run["id"], None)


async def _finish(orchestrator: Orchestrator, sweep_id: str, cancelled: bool) -> None:
    """End the sweep job: cancelled, failed when a run did not succeed (the error names the first),
    else succeeded."""
    runs = await orchestrator.store.sweep_runs(sweep_id)
    not_ok = [r for r in runs if r["status"] != "succeeded"]
    error: dict[str, Any] | None = None
    if cancelled or (await orchestrator.store.job_state(sweep_id))[1]:
        status = "cancelled"
    elif not_ok:
        status = "failed"
        first = await orchestrator.store.get_job(not_ok[0]["id"])
        why = (first.get("error") or {}).get("message") or first["status"]
        error = {
            "message": f"{len(not_ok)} of {len(runs)} runs did not succeed; the first, {first['name']!r} "
            f"({first['id']}): {why}",
            "job": first["id"],
        }
    else:
        status = "succeeded"
    await orchestrator.store.update_job(sweep_id, status=status, finished=time.time(), error=error)
    await _emit(orchestrator, sweep_id, [{"type": "job.end", "status": status, "error": error}])
