"""Cached steps: a step whose inputs did not change reuses an earlier run's result.

A step is cached when the planner says so (`StepSpec.cache`: the tag ``cache``, or the notebook's
metadata ``jupyter_ext.cache: true``, and no ``cache:off``; a sweep's children cache every step
not ``cache:off``). Before its first attempt the orchestrator asks `StepCache.begin`:

- the step's **key** (`step_key`, pure): sha256 over its sliced source (the code cells of its
  ``step.ipynb`` as slice.py wrote it: the ``imports``/``functions`` cells, the hand-off cells,
  the step's own cells; the parameters cells without their parameter assignments), the values of
  the parameters the step *reads* (names its code reads, found as handoff.py finds them; the
  notebook's default, or the job's value), the content hash of each hand-off file it loads (from
  the producing step of this job, so a change upstream changes every key below it), its image and
  its kernel, and its name. Prefixed ``v1:``: a change of what goes in is a new version;
- a **hit**: the newest entry of `step_cache` of the same user with that key whose job still
  exists and whose step row is still that succeeded attempt. Its hand-off files and artifacts are
  hard-linked into this job (so deleting that job later breaks nothing), `step.cached` is sent,
  then that attempt's cell, log, artifact and metric events (the cells show what that run showed;
  an artifact's `location` is this job's linked copy), then a `step.end` carrying `cached_from`.
  The step row is `succeeded` with the cached attempt's number, so later steps load the linked
  hand-off files like any other. The events and the row change in one transaction; a restart that
  finds a hit's events under a row still `queued` (written apart by an older version) finishes the
  row from them rather than replaying the cells twice;
- a **miss**: the step runs; `steps.cache` says `{key, hit: false, from: null}`, and when it
  succeeds the entry (user, key, job, step, attempt) goes into `step_cache`. Only runs enter the
  cache, never hits: an entry disappears with its job (the foreign key), by `rm`, `prune` or
  `keep_jobs`, and the next run is a miss.

Single flight: while a step with the same (user, key) runs in this orchestrator, another one
waits for it to end, then looks again (a sweep's shared upstream step runs once while its
siblings wait). A job spec's ``fresh`` skips the look-up (the run still enters the cache); a fresh
sweep's runs still share what a sibling of the same sweep ran.

What is not seen by the key: files the step reads and the clock (tag such a step ``cache:off``),
and hand-off values that pickle differently each run (those steps miss, never wrongly hit).
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .layout import JobLayout, link_file
from .models import StepSpec
from .notebook.handoff import CellSyntaxError, scan_cell, to_python
from .notebook.parameters import PARAMETER_TAGS
from .records import JobRecord, StepRecord
from .store import AsyncStore

log = logging.getLogger("jupyter_ext")

KEY_VERSION = "v1"
#: The events of the cached attempt that are sent again into the job that reuses it.
REPLAYED = frozenset({"cell.start", "cell.output", "cell.clear", "cell.end", "log", "artifact", "metric"})
_CANDIDATES = 10  # entries tried, newest first, before a look-up counts as a miss


# -- the key (pure) ------------------------------------------------------------------------------------------------
def step_key(
    step_nb: Mapping[str, Any],
    notebook: Mapping[str, Any],
    *,
    step: str,
    parameters: Mapping[str, Any],
    handoffs: Mapping[str, str],
    image: str | None,
    kernel: str | None,
) -> str:
    """The cache key of step `step`: `step_nb` is its notebook as slice.py wrote it, `notebook` the
    job's notebook as submitted (which cells are parameters cells), `parameters` the job's,
    `handoffs` each input variable -> the sha256 of the file it is loaded from, `kernel` the job's
    (None: the notebook's own). See the module docstring."""
    source, read, defaults = _read_step(step_nb, notebook)
    values: dict[str, Any] = {}
    for name in sorted(set(defaults) | set(parameters)):
        if read is not None and name not in read:
            continue
        if name in parameters:
            values[name] = ["value", _canonical(parameters[name])]
        else:
            values[name] = list(defaults[name])
    metadata = step_nb.get("metadata") or {}
    kernelspec = metadata.get("kernelspec") or {}
    material = {
        "step": step,
        "source": source,
        "parameters": values,
        "handoffs": dict(sorted(handoffs.items())),
        "image": image or "",
        "kernel": kernel or kernelspec.get("name") or "",
    }
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr)
    return f"{KEY_VERSION}:{hashlib.sha256(text.encode()).hexdigest()}"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr)


def _source(cell: Mapping[str, Any]) -> str:
    text = cell.get("source", "")
    return "".join(text) if isinstance(text, list) else str(text)


def _parameter_cells(notebook: Mapping[str, Any]) -> set[int]:
    """Indices of the submitted notebook's parameters cells."""
    found = set()
    for index, cell in enumerate(notebook.get("cells", []) or []):
        tags = (cell.get("metadata") or {}).get("tags") or []
        if cell.get("cell_type") == "code" and isinstance(tags, list) and any(t in PARAMETER_TAGS for t in tags):
            found.add(index)
    return found


def _is_python(metadata: Mapping[str, Any]) -> bool:
    kernelspec = metadata.get("kernelspec") or {}
    info = metadata.get("language_info") or {}
    return str(kernelspec.get("language") or info.get("name") or "python").lower().startswith("python")


def _split_parameters(source: str) -> tuple[str, dict[str, tuple[str, str]], bool]:
    """A parameters cell -> (its code other than the parameter assignments, each parameter's default
    as ("value", JSON) when a literal else ("expression", its code), readable?)."""
    try:
        code = to_python(source)
        tree = ast.parse(code)
    except Exception:  # noqa: BLE001 - not Python: the whole cell counts as source
        return source, {}, False
    rest: list[str] = []
    defaults: dict[str, tuple[str, str]] = {}
    for statement in tree.body:
        target: ast.expr | None = None
        value: ast.expr | None = None
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, value = statement.targets[0], statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            target, value = statement.target, statement.value
        if isinstance(target, ast.Name) and value is not None:
            defaults.pop(target.id, None)
            defaults[target.id] = _default(value)
        else:
            rest.append(ast.unparse(statement))
    return "\n".join(rest), defaults, True


def _default(node: ast.expr) -> tuple[str, str]:
    try:
        value = ast.literal_eval(node)
        return "value", json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return "expression", ast.unparse(node)


def _read_step(
    step_nb: Mapping[str, Any], notebook: Mapping[str, Any]
) -> tuple[list[str], set[str] | None, dict[str, tuple[str, str]]]:
    """(the source that goes into the key, the names the step reads (None: any name, it could not
    be told), the parameters' defaults)."""
    parameter_cells = _parameter_cells(notebook)
    source: list[str] = []
    code: list[str] = []  # what is scanned for reads, in order
    defaults: dict[str, tuple[str, str]] = {}
    readable = _is_python(step_nb.get("metadata") or {})
    for cell in step_nb.get("cells", []) or []:
        if cell.get("cell_type") != "code":
            continue
        text = _source(cell)
        ours = (cell.get("metadata") or {}).get("jupyter_ext") or {}
        if isinstance(ours, Mapping) and ours.get("source_index") in parameter_cells:
            rest, found, parsed = _split_parameters(text)
            readable = readable and parsed
            for name, default in found.items():
                defaults.pop(name, None)
                defaults[name] = default
            source.append(rest)
            code.append(rest)
        else:
            source.append(text)
            code.append(text)
    if not readable:
        return source, None, defaults
    read: set[str] = set()
    surely: set[str] = set()
    try:
        for index, text in enumerate(code):
            names = scan_cell(text, index)
            read |= names.needs - surely
            surely |= names.definite
        # A default computed from another parameter (`steps = n * 2`) reads that one too.
        todo = [n for n in read if n in defaults and defaults[n][0] == "expression"]
        while todo:
            name = todo.pop()
            for needed in scan_cell(defaults[name][1], 0).needs:
                if needed in defaults and needed not in read:
                    read.add(needed)
                    if defaults[needed][0] == "expression":
                        todo.append(needed)
    except CellSyntaxError:
        return source, None, defaults
    return source, read, defaults


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes (blocking)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- hits, misses and single flight (the orchestrator's side) ----------------------------------------------------
@dataclass
class Flight:
    """A cached step that runs: its key, and whether it is the one others with that key wait for."""

    user: str
    key: str
    job_id: str
    step: str
    owner: bool


@dataclass
class Decision:
    """What `StepCache.begin` decided: `hit` (the step is done), `cancelled` (its job was cancelled
    while it waited for a step with its key), else run it (`flight`: report its end to `end`)."""

    hit: bool = False
    cancelled: bool = False
    flight: Flight | None = None


Emit = Callable[..., Awaitable[list[dict[str, Any]]]]
Wait = Callable[[Awaitable[Any]], Awaitable[bool]]


class StepCache:
    """Looks up, satisfies and records cached steps for one orchestrator (see the module docstring)."""

    def __init__(
        self,
        store: AsyncStore,
        layout: JobLayout,
        *,
        emit: Emit,
        started: Callable[[str, float], Awaitable[None]],
        link_handoff: Callable[[dict[str, Any], str, str], None],
    ) -> None:
        self.store = store
        self.layout = layout
        self._emit = emit
        self._started = started
        self._link_handoff = link_handoff
        self._flights: dict[tuple[str, str], asyncio.Event] = {}

    def running(self, user: str, key: str) -> bool:
        """Whether a step with this key runs now in this orchestrator."""
        return (user, key) in self._flights

    async def begin(
        self, job: JobRecord, step: StepRecord, spec: StepSpec, handoff_in: Mapping[str, str], wait: Wait
    ) -> Decision:
        """Before a step's first attempt: satisfy it from the cache, or say it runs. `handoff_in`:
        each input variable -> the file this job loads it from; `wait(awaitable)` waits the way the
        orchestrator can cancel (False: the job was cancelled meanwhile)."""
        if not spec.cache:
            return Decision()
        user, job_id, name = job["user"], job["id"], spec.name
        recorded = step.get("cache") or {}
        if step["status"] != "queued" or step["attempt"] > 1:
            # Adopted after a restart, or between retries: it already missed; it still enters the cache.
            if recorded.get("key") and not recorded.get("hit"):
                return Decision(flight=self._take(user, recorded["key"], job_id, name))
            return Decision()
        try:
            if await self._resumed(job, spec):
                return Decision(hit=True)
        except Exception:  # noqa: BLE001 - then it is looked up as if new
            log.exception("jupyter-ext: finishing step %s/%s from its stored cache hit failed", job_id, name)
        try:
            key = await asyncio.to_thread(self._key, job, spec, handoff_in)
        except Exception as exc:  # noqa: BLE001 - a step without a key simply runs
            log.warning("jupyter-ext: no cache key for step %s/%s (%s); running it", job_id, name, exc)
            return Decision()
        # `fresh` skips the look-up; a fresh sweep's runs still share what a sibling ran in this sweep.
        fresh, sweep = bool(job["spec"].get("fresh")), job.get("parent")
        while not fresh or sweep:
            event = self._flights.get((user, key))
            if event is not None:
                if not await wait(event.wait()):
                    return Decision(cancelled=True)
                continue
            try:
                if await self._lookup(job, spec, key, only_sweep=sweep if fresh else None):
                    return Decision(hit=True)
            except Exception:  # noqa: BLE001 - a look-up that fails is a miss: the step runs
                log.exception("jupyter-ext: looking up step %s/%s in the cache failed; running it", job_id, name)
            if (user, key) not in self._flights:
                break  # nobody started it while we looked: this step runs it
        flight = self._take(user, key, job_id, name)  # no await between the check and this
        await self.store.update_step(job_id, name, cache={"key": key, "hit": False, "from": None})
        return Decision(flight=flight)

    async def end(self, flight: Flight | None) -> None:
        """A step `begin` let run has ended: a success enters the cache; steps waiting for it look again."""
        if flight is None:
            return
        try:
            job = await self.store.get_job(flight.job_id)
            row = next((s for s in job["steps"] if s["name"] == flight.step), None)
            if row is not None and row["status"] == "succeeded":
                await self.store.cache_put(flight.user, flight.key, flight.job_id, flight.step, row["attempt"])
        except Exception:  # noqa: BLE001 - the job was deleted meanwhile, the store closed: nothing to keep
            log.warning("jupyter-ext: step %s/%s not kept in the cache", flight.job_id, flight.step, exc_info=True)
        finally:
            if flight.owner:
                event = self._flights.pop((flight.user, flight.key), None)
                if event is not None:
                    event.set()

    def _take(self, user: str, key: str, job_id: str, step: str) -> Flight:
        owner = (user, key) not in self._flights
        if owner:
            self._flights[(user, key)] = asyncio.Event()
        return Flight(user=user, key=key, job_id=job_id, step=step, owner=owner)

    def _key(self, job: JobRecord, spec: StepSpec, handoff_in: Mapping[str, str]) -> str:
        """The step's key, from its files (blocking). OSError when a hand-off file is missing."""
        import nbformat

        step_nb = nbformat.read(self.layout.step_notebook(job["id"], spec.name), as_version=4)
        notebook = nbformat.read(self.layout.notebook(job["id"]), as_version=4)
        missing = [v for v in spec.inputs if v not in handoff_in]
        if missing:
            raise ValueError(f"no hand-off file for {', '.join(missing)}")
        return step_key(
            step_nb,
            notebook,
            step=spec.name,
            parameters=job["parameters"],
            handoffs={var: file_digest(path) for var, path in handoff_in.items()},
            image=spec.resources.image,
            kernel=job["spec"].get("kernel"),
        )

    async def _lookup(self, job: JobRecord, spec: StepSpec, key: str, only_sweep: str | None = None) -> bool:
        """Satisfy the step from the newest usable entry with its key (`only_sweep`: one a run of that
        sweep made); False: none (a miss)."""
        for entry in await self.store.cache_candidates(job["user"], key, _CANDIDATES):
            if entry["job_id"] == job["id"] or (only_sweep is not None and entry.get("parent") != only_sweep):
                continue
            if await self._satisfy(job, spec, key, entry):
                return True
        return False

    async def _satisfy(self, job: JobRecord, spec: StepSpec, key: str, entry: dict[str, Any]) -> bool:
        job_id, name = job["id"], spec.name
        source = {"job": entry["job_id"], "step": entry["step"], "attempt": entry["attempt"]}
        events = [
            e
            for e in await self.store.step_events(source["job"], source["step"])
            if e.get("attempt") == source["attempt"] and e["type"] in REPLAYED
        ]
        if not events:
            return False  # deleted meanwhile (a run always says something: its cells, its executed notebook)
        try:
            linked = await asyncio.to_thread(self._link, source, job_id, name, spec.outputs)
        except OSError as exc:
            log.warning("jupyter-ext: cached step %s of job %s cannot be reused (%s)", name, source["job"], exc)
            linked = False
        if not linked:
            return False
        artifacts = self.layout.attempt(job_id, name, source["attempt"]).artifacts
        now = time.time()
        await self._started(job_id, now)
        sent = [
            {"type": "step.cached", "step": name, "from": source, "key": key},
            *replayed(events, step=name, artifacts=artifacts),
            _cached_end(name, source),
        ]
        # The events and the row in one transaction (apart, a crash between them replays the cells twice).
        await self._emit(
            job_id,
            [{**event, "ts": now} for event in sent],
            step=name,
            step_update=_hit_row(key, source, now, now),
        )
        return True

    async def _resumed(self, job: JobRecord, spec: StepSpec) -> bool:
        """A hit whose events are stored but whose row still says queued (a crash between the two,
        by a version that wrote them apart): finish the row from those events instead of looking up
        and replaying again. False: there is no such hit (or its hand-off files are gone)."""
        job_id, name = job["id"], spec.name
        events = await self.store.step_events(job_id, name)
        mark = next((e for e in reversed(events) if e["type"] == "step.cached"), None)
        if mark is None or not isinstance(mark.get("from"), dict):
            return False
        source = mark["from"]
        try:  # linked before the events were sent, so normally there already (a link kept is a no-op)
            linked = await asyncio.to_thread(self._link, source, job_id, name, spec.outputs)
        except OSError as exc:
            log.warning("jupyter-ext: cached step %s of job %s cannot be finished (%s)", name, job_id, exc)
            linked = False
        if not linked:
            return False
        started = float(mark.get("ts") or time.time())
        end = next((e for e in events if e["type"] == "step.end" and e["seq"] > mark["seq"]), None)
        await self._started(job_id, started)
        if end is None:
            now = time.time()
            row = _hit_row(mark.get("key"), source, started, now)
            await self._emit(job_id, [{**_cached_end(name, source), "ts": now}], step=name, step_update=row)
        else:
            await self.store.update_step(job_id, name, **_hit_row(mark.get("key"), source, started, float(end["ts"])))
        log.info("jupyter-ext: step %s/%s finished from its stored cache hit (not replayed again)", job_id, name)
        return True

    def _link(self, source: dict[str, Any], job_id: str, name: str, outputs: list[str]) -> bool:
        """Hard-link the cached attempt's hand-off files and artifacts into this job (blocking);
        False when a hand-off file later steps need is not there (its job was deleted meanwhile)."""
        self._link_handoff({"job": source["job"], "attempt": source["attempt"]}, job_id, name)
        for var in outputs:
            if not self.layout.handoff_file(job_id, name, source["attempt"], var).is_file():
                return False
        origin = self.layout.attempt(source["job"], source["step"], source["attempt"]).artifacts
        target = self.layout.attempt(job_id, name, source["attempt"]).artifacts
        for folder, _, files in os.walk(origin):
            for file in files:
                item = Path(folder) / file
                copy = target / item.relative_to(origin)
                copy.parent.mkdir(parents=True, exist_ok=True)
                link_file(item, copy)
        return True


def _cached_end(step: str, source: dict[str, Any]) -> dict[str, Any]:
    """The step.end of a step satisfied from the cache (`source`: the attempt it reused)."""
    end = {"type": "step.end", "step": step, "attempt": source["attempt"], "status": "succeeded"}
    return {**end, "exit_code": 0, "error": None, "cached_from": source}


def _hit_row(key: str | None, source: dict[str, Any], started: float, finished: float) -> dict[str, Any]:
    """The step row's fields once it is satisfied from the cache."""
    row = {"status": "succeeded", "attempt": source["attempt"], "started": started, "finished": finished}
    return {**row, "exit_code": 0, "error": None, "handle": None, "cache": {"key": key, "hit": True, "from": source}}


def replayed(events: list[dict[str, Any]], *, step: str, artifacts: Path) -> list[dict[str, Any]]:
    """A cached attempt's stored events as they are sent again in another job: without that job's
    `v`, `job`, `seq`, `ts` (new ones are given), an artifact's name (made again for this
    job) and `location` (this job's linked copy), an image output naming its artifact by path
    again (the store names it for this job)."""
    paths = {e["name"]: e["path"] for e in events if e["type"] == "artifact" and "name" in e and "path" in e}
    out = []
    for event in events:
        body = {k: v for k, v in event.items() if k not in ("v", "job", "seq", "ts")}
        body["step"] = step
        if event["type"] == "artifact":
            body.pop("name", None)
            if "path" in body:
                body["location"] = str(artifacts / body["path"])
        elif event["type"] == "cell.output" and body.get("artifact") in paths:
            body["artifact"] = paths[body["artifact"]]
        out.append(body)
    return out


__all__ = ["KEY_VERSION", "REPLAYED", "Decision", "Flight", "StepCache", "file_digest", "replayed", "step_key"]
