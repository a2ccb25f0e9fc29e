"""Plan a notebook: its cell tags -> a DAG of steps, each with cells, resources and hand-offs.

How cells become steps (Kale's rules, from kubeflow-kale/kale
``backend/kale/processors/nbprocessor.py`` ``NotebookProcessor.parse_notebook``):

- Only code cells count; markdown and raw cells are ignored.
- ``step:X`` (or ``block:X``) opens step X; the untagged cells after it belong to X. A later
  cell tagged ``step:X`` again adds its cells to X.
- ``imports``, ``functions`` and ``parameters``/``pipeline-parameters`` cells are blocks too:
  the untagged cells after them join them (as in Kale), and they run at the start of every
  step (parameters, then imports and functions, in notebook order).
- ``skip`` drops that one cell; the untagged cells after it join the block above it.
- Untagged code cells before the first tagged cell belong to no step and are not run, as
  in Kale; they are listed in `Plan.skipped_cells` and in a warning.
- ``pipeline-metrics`` marks a cell of the step above it (and the untagged cells after it
  join that step too); the panel shows those cells as the step's metrics.
- ``after:Y``/``prev:Y`` and resource tags may sit on any cell of a step and apply to the
  step (Kale only reads ``prev`` on the cell that opens a step; reading all of them
  accepts every Kale notebook). They may name steps defined further down.
- A notebook without any ``step:``/``block:`` tag is one step, ``main``: every code cell
  except the parameters cells, ``skip`` cells and papermill's stale ``injected-parameters``
  cells, in notebook order (its slice keeps the parameters cell where it is).

Notebook-wide defaults live in the notebook's metadata::

    "metadata": {
      "jupyter_ext": {
        "resources": {"gpu": 1, "memory": "16Gi", "cpu": "4", "image": "...",
                      "extra_limits": {"example.com/fpga": "1"}},
        "image": "python:3.11-slim",   # shorthand for resources.image
        "timeout": "1h",               # or seconds
        "retries": 1,
        "cache": true                  # cache every step not tagged `cache:off` (cache.py)
      }
    }

Unknown keys are errors (so a misspelt key is not silently ignored). Kale's own metadata is
read too: ``kubeflow_notebook.docker_image`` is a default image and the ``limit:`` entries of
``kubeflow_notebook.steps_defaults`` are default limits. Precedence, most specific first:
the step's tags, ``jupyter_ext`` metadata, Kale metadata, then `plan_notebook(defaults=)`
(the job's resources). Timeout and retries come from tags and metadata only; the
orchestrator applies the job's own.

Everything is validated before anything runs, and every problem is reported at once: one
`ValidationError` whose ``details`` lists each ``{cell, step, tag, message}``. `survey` reads
the same way without refusing (the Lab's tag check, check.py, shows what it finds).

Why this module is long: Kale's rules for which cell goes where, the notebook-wide defaults
and the graph checks are one algorithm, read top to bottom; the tag grammar (tags.py) and the
hand-offs (handoff.py) are already apart.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

import nbformat
from pydantic import BaseModel, ConfigDict, StrictBool, field_validator

from .. import models, quantity
from ..errors import NotFound, ValidationError
from ..models import Resources, StepSpec
from . import handoff
from .tags import CellTags, Problem, Setting, apply_limit, cell_label, collect_tags, raise_problems, suggest

MAIN = "main"
METADATA_KEY = "jupyter_ext"
KALE_METADATA_KEY = "kubeflow_notebook"


@dataclass
class PlannedStep:
    """One step of the plan. `cells` index the original notebook's cells."""

    name: str
    after: list[str] = field(default_factory=list)
    resources: Resources = field(default_factory=Resources)
    timeout: float | None = None
    retries: int = 0
    cells: list[int] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # input -> step whose saved value is loaded
    origins: dict[str, int] = field(default_factory=dict)  # output -> last cell of this step binding it
    metrics_cells: list[int] = field(default_factory=list)  # cells tagged pipeline-metrics
    asked: dict[str, tuple[str, int]] = field(default_factory=dict)  # "gpu", a limit key... -> (tag, cell)
    cache: bool | None = None  # True: tag `cache` or metadata jupyter_ext.cache; False: `cache:off`; None: neither

    def to_spec(self) -> StepSpec:
        """The step as the API and the orchestrator store it."""
        return StepSpec(
            name=self.name,
            after=list(self.after),
            resources=self.resources,
            timeout=self.timeout,
            retries=self.retries,
            cells=list(self.cells),
            inputs=list(self.inputs),
            outputs=list(self.outputs),
            sources=dict(self.sources),
            cache=self.cache,
        )


@dataclass
class Plan:
    """The steps of a notebook, in topological order (ties broken by position in the notebook).

    `parameters_cell`: the first parameters cell (papermill injects after the last of
    `parameters_cells`). `prelude_cells`: the ``imports``/``functions`` cells (and the untagged
    cells that follow them) run at the start of every step. `skipped_cells`: code cells that
    never run (``skip``, papermill's stale injected cell, untagged cells before the first tag).
    `single`: the notebook has no step tags and is the one step ``main``.
    `warnings`: ``{cell, step, message}`` worth showing, none of which stops the run.
    """

    steps: list[PlannedStep]
    parameters_cell: int | None
    prelude_cells: list[int]
    skipped_cells: list[int]
    parameters_cells: list[int] = field(default_factory=list)
    single: bool = False
    warnings: list[dict[str, Any]] = field(default_factory=list)

    def step(self, name: str) -> PlannedStep:
        """The step called `name` (NotFound naming the known steps otherwise)."""
        for step in self.steps:
            if step.name == name:
                return step
        known = [s.name for s in self.steps]
        raise NotFound(f"step {name!r} is not in this notebook{suggest(name, known)}", step=name)

    def order(self) -> list[str]:
        """Step names in an order where every step comes after the steps it runs after."""
        return _topological([s.name for s in self.steps], {s.name: s.after for s in self.steps})

    def graph(self) -> dict[str, Any]:
        """Nodes and edges for the UI; an edge carries the variables loaded along it."""
        nodes = [
            {
                "id": s.name,
                "cells": list(s.cells),
                "metrics_cells": list(s.metrics_cells),
                "resources": s.resources.model_dump(exclude_defaults=True),
                "timeout": s.timeout,
                "retries": s.retries,
                "inputs": list(s.inputs),
                "outputs": list(s.outputs),
            }
            for s in self.steps
        ]
        edges = [
            {
                "source": parent,
                "target": s.name,
                "variables": sorted(v for v, src in s.sources.items() if src == parent),
            }
            for s in self.steps
            for parent in s.after
        ]
        return {"nodes": nodes, "edges": edges}


# -- notebook-wide defaults --------------------------------------------------------------------------------------
class NotebookDefaults(BaseModel):
    """``metadata.jupyter_ext`` of a notebook (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    resources: Resources | None = None
    image: str | None = None
    timeout: float | None = None
    retries: int | None = None
    cache: StrictBool | None = None

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, v: object) -> float | None:
        return None if v is None else models._bare(quantity.parse_duration, v, "timeout")

    @field_validator("retries", mode="before")
    @classmethod
    def _retries(cls, v: object) -> int | None:
        return None if v is None else models._bare(quantity.parse_retries, v, "retries")


@dataclass
class _Defaults:
    resources: Resources | None = None
    timeout: float | None = None
    retries: int | None = None
    cache: bool | None = None


def _notebook_defaults(metadata: Any, defaults: Resources | None, problems: list[Problem]) -> _Defaults:
    result = _Defaults()
    ours: dict[str, Any] = {}
    raw = metadata.get(METADATA_KEY) if hasattr(metadata, "get") else None
    where = f"metadata.{METADATA_KEY}"
    if raw is not None:
        try:
            parsed = models.parse(NotebookDefaults, raw, where=where)
        except ValidationError as exc:
            for detail in exc.details or [{"message": exc.message}]:
                field_name = detail.get("field")
                text = f"{field_name}: {detail['message']}" if field_name else detail["message"]
                problems.append(Problem(f"notebook {text}"))
            parsed = NotebookDefaults()
        result.timeout, result.retries, result.cache = parsed.timeout, parsed.retries, parsed.cache
        if parsed.resources is not None:
            ours = parsed.resources.model_dump(exclude_unset=True)
        if parsed.image is not None:
            if ours.get("image") not in (None, parsed.image):
                problems.append(
                    Problem(
                        f"notebook {where}: 'image' ({parsed.image!r}) and 'resources.image' "
                        f"({ours['image']!r}) disagree; keep one"
                    )
                )
            ours.setdefault("image", parsed.image)

    kale = _kale_defaults(metadata, problems)
    base = defaults
    if kale:
        base = Resources.model_validate(kale).merged_over(base)
    if ours:
        base = Resources.model_validate(ours).merged_over(base)
    result.resources = base
    return result


def _kale_defaults(metadata: Any, problems: list[Problem]) -> dict[str, Any]:
    kale = metadata.get(KALE_METADATA_KEY) if hasattr(metadata, "get") else None
    if not isinstance(kale, dict):
        return {}
    found: dict[str, Any] = {}
    image = kale.get("docker_image")
    if isinstance(image, str) and image.strip() and not any(c.isspace() for c in image.strip()):
        found["image"] = image.strip()
    entries = kale.get("steps_defaults")
    if isinstance(entries, list):
        where = f"notebook metadata {KALE_METADATA_KEY}.steps_defaults"
        tags = CellTags(cell=-1)
        for entry in entries:
            if isinstance(entry, str) and entry.startswith("limit:"):
                try:
                    apply_limit(entry, entry.removeprefix("limit:"), where, tags)
                except ValidationError as exc:
                    problems.append(Problem(exc.message, tag=entry))
        found.update({name: s.value for name, s in tags.settings.items()})
        if tags.limits:
            found["extra_limits"] = {key: value for key, (value, _) in tags.limits.items()}
    return found


# -- building the steps ------------------------------------------------------------------------------------------
@dataclass
class _Draft:
    """A step while cells are being assigned to it."""

    name: str
    first_cell: int
    cells: list[int] = field(default_factory=list)
    after: dict[str, tuple[str, int]] = field(default_factory=dict)  # step -> (tag, cell)
    settings: dict[str, tuple[Setting, int]] = field(default_factory=dict)
    limits: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # key -> (value, tag, cell)
    metrics_cells: list[int] = field(default_factory=list)
    cache: bool | None = None  # `cache` on a cell of the step (True); `cache:off` on any (False) wins

    def absorb(self, tags: CellTags, index: int, problems: list[Problem]) -> None:
        """Take the step settings of cell `index`, reporting ones that contradict earlier cells."""
        if tags.cache is not None and self.cache is not False:
            self.cache = tags.cache[0]
        for name, tag in tags.after.items():
            self.after.setdefault(name, (tag, index))
        for name, setting in tags.settings.items():
            old = self.settings.get(name)
            if old is None:
                self.settings[name] = (setting, index)
            elif old[0].key != setting.key:
                problems.append(_conflict(index, setting.tag, old[0].tag, old[1], name, self.name))
        for key, (value, tag) in tags.limits.items():
            previous = self.limits.get(key)
            if previous is None:
                self.limits[key] = (value, tag, index)
            elif previous[0] != value:
                problems.append(_conflict(index, tag, previous[1], previous[2], f"limit {key}", self.name))

    def resources(self) -> Resources:
        data: dict[str, Any] = {n: s.value for n, (s, _) in self.settings.items() if n not in ("timeout", "retries")}
        if self.limits:
            data["extra_limits"] = {key: value for key, (value, _, _) in self.limits.items()}
        return Resources.model_validate(data)


def _conflict(cell: int, tag: str, old_tag: str, old_cell: int, what: str, step: str) -> Problem:
    return Problem(
        f"{cell_label(cell)}: tag {tag!r} conflicts with tag {old_tag!r} on {cell_label(old_cell)}: "
        f"both set the {what} of step {step!r}; keep one",
        cell=cell,
        step=step,
        tag=tag,
    )


def cell_source(cell: Any) -> str:
    """A cell's source as one string (nbformat allows a list of lines)."""
    text = cell.get("source", "")
    return "".join(text) if isinstance(text, list) else str(text)


@dataclass
class Survey:
    """What a notebook's tags say, read leniently: every problem collected, nothing raised.

    `plan_notebook` refuses a notebook with `problems`; the Lab's tag check (check.py) shows
    them, with each cell's step, while the user edits. `cycles` are also in `problems`.
    """

    cells: list[Any]
    parsed: dict[int, CellTags]
    single: bool
    drafts: dict[str, _Draft]
    parameters: list[int]
    prelude: list[int]
    skipped: list[int]
    warnings: list[dict[str, Any]]
    problems: list[Problem]
    cycles: list[Problem]
    defaults: _Defaults


def survey(nb: Any, *, defaults: Resources | None = None) -> Survey:
    """Read `nb`'s metadata and cell tags into steps (see the module docstring), collecting
    every problem instead of raising."""
    problems: list[Problem] = []
    metadata = nb.get("metadata", {}) or {}
    base = _notebook_defaults(metadata, defaults, problems)

    cells = nb.get("cells", []) or []
    parsed: dict[int, CellTags] = {}
    # A cell with a bad tag may have meant to open another step (`setp:b`): its resources are not
    # given to the step above, no cycle is drawn while tags are unreadable, and a step only a typo
    # names is not "unknown", so the typo is the error shown (no made-up cycle or conflict).
    unread: set[str] = set()
    metadata_problems = len(problems)
    for index, cell in enumerate(cells):
        if cell.get("cell_type") != "code":
            continue
        tags = (cell.get("metadata") or {}).get("tags")
        parsed[index], found = collect_tags(tags, index)
        problems.extend(found)
        for problem in found:
            if problem.tag:
                unread.add(problem.tag.partition(":")[2])
        if found:  # its `after:` tags still name steps (or not), but no cycle is drawn through it
            parsed[index].settings.clear()
            parsed[index].limits.clear()
    tag_problems = len(problems) > metadata_problems

    single = not any(t.role == "step" for t in parsed.values())
    builder = _build_single if single else _build_steps
    drafts, parameters, prelude, skipped, warnings = builder(parsed, problems)

    known = list(drafts)
    for draft in drafts.values():
        for name, (tag, index) in draft.after.items():
            if name not in drafts and name not in unread:
                problems.append(
                    Problem(
                        f"{cell_label(index)}: tag {tag!r} names no step{suggest(name, known)}",
                        cell=index,
                        step=draft.name,
                        tag=tag,
                    )
                )
    cycles = [] if tag_problems else _cycles(drafts)  # a cycle through unreadable cells would be made up
    problems.extend(cycles)
    return Survey(cells, parsed, single, drafts, parameters, prelude, skipped, warnings, problems, cycles, base)


def plan_notebook(nb: nbformat.NotebookNode, *, defaults: Resources | None = None) -> Plan:
    """Plan `nb` (see the module docstring). Raises ValidationError listing every problem."""
    found = survey(nb, defaults=defaults)
    raise_problems(found.problems)
    drafts, base, parameters = found.drafts, found.defaults, found.parameters
    parents = {name: [a for a in d.after if a in drafts] for name, d in drafts.items()}
    order = _topological(sorted(drafts, key=lambda n: drafts[n].first_cell), parents)
    steps = []
    for name in order:
        draft = drafts[name]
        timeout = draft.settings.get("timeout")
        retries = draft.settings.get("retries")
        steps.append(
            PlannedStep(
                name=name,
                after=parents[name],
                resources=draft.resources().merged_over(base.resources),
                timeout=timeout[0].value if timeout else base.timeout,
                retries=retries[0].value if retries else (base.retries or 0),
                cells=list(draft.cells),
                metrics_cells=list(draft.metrics_cells),
                cache=draft.cache if draft.cache is not None else (True if base.cache else None),
                asked={
                    **{key: (tag, cell) for key, (_, tag, cell) in draft.limits.items()},
                    **{name: (setting.tag, cell) for name, (setting, cell) in draft.settings.items()},
                },
            )
        )
    plan = Plan(
        steps=steps,
        parameters_cell=parameters[0] if parameters else None,
        prelude_cells=found.prelude,
        skipped_cells=found.skipped,
        parameters_cells=parameters,
        single=found.single,
        warnings=found.warnings,
    )
    if len(steps) > 1 and _is_python(nb.get("metadata", {}) or {}):
        _handoffs(plan, found.cells)
    return plan


_Built = tuple[dict[str, _Draft], list[int], list[int], list[int], list[dict[str, Any]]]


def _build_single(parsed: dict[int, CellTags], problems: list[Problem]) -> _Built:
    """No step tags: everything is step `main`."""
    main = _Draft(name=MAIN, first_cell=min(parsed, default=0))
    parameters: list[int] = []
    skipped: list[int] = []
    for index, tags in parsed.items():
        if tags.role in ("skip", "injected"):
            skipped.append(index)
            continue
        if tags.role == "parameters":
            parameters.append(index)
            if tags.has_step_settings:
                problems.append(_misplaced(tags, "a parameters cell"))
            continue
        main.cells.append(index)
        main.absorb(tags, index, problems)
        if tags.metrics:
            main.metrics_cells.append(index)
    return {MAIN: main}, parameters, [], skipped, []


def _build_steps(parsed: dict[int, CellTags], problems: list[Problem]) -> _Built:
    """Kale's rules: each cell joins the block its tags name, or the block above it."""
    drafts: dict[str, _Draft] = {}
    parameters: list[int] = []
    prelude: list[int] = []
    skipped: list[int] = []
    leading: list[int] = []
    # The block untagged cells join: ("imports"|"functions"|"parameters", None) or ("step", NAME).
    current: tuple[str, str | None] | None = None
    last_step: str | None = None
    for index, tags in parsed.items():
        role = tags.role
        if role in ("skip", "injected"):
            skipped.append(index)
            continue
        if role in ("imports", "functions", "parameters"):
            current = (role, None)
        elif role == "step" and tags.step is not None:
            if tags.step not in drafts:
                drafts[tags.step] = _Draft(name=tags.step, first_cell=index)
            current, last_step = ("step", tags.step), tags.step
        elif tags.metrics:
            if last_step is None:
                problems.append(
                    Problem(
                        f"{cell_label(index)}: the 'pipeline-metrics' cell comes before any step; move it below the "
                        "step whose results it reports",
                        cell=index,
                        tag="pipeline-metrics",
                    )
                )
                continue
            current = ("step", last_step)
        if current is None:
            leading.append(index)
            if tags.has_step_settings:
                problems.append(_misplaced(tags, "a cell before the first step"))
            continue
        kind, step_name = current
        if step_name is None:
            (parameters if kind == "parameters" else prelude).append(index)
            if tags.has_step_settings or tags.metrics:
                what = {"parameters": "the parameters cell", "imports": "an imports cell"}.get(kind, "a functions cell")
                problems.append(_misplaced(tags, what, metrics=tags.metrics))
            continue
        draft = drafts[step_name]
        draft.cells.append(index)
        draft.absorb(tags, index, problems)
        if tags.metrics:
            draft.metrics_cells.append(index)
    warnings: list[dict[str, Any]] = []
    if leading:
        listed = ", ".join(str(i + 1) for i in leading)
        warnings.append(
            {
                "cell": leading[0],
                "step": None,
                "message": f"cells {listed} come before the first tagged cell and belong to no step, so they do "
                "not run (as in Kale); tag them 'imports' or 'step:NAME' to run them",
            }
        )
    skipped = sorted(skipped + leading)
    return drafts, parameters, prelude, skipped, warnings


def _misplaced(tags: CellTags, where: str, metrics: bool = False) -> Problem:
    found = tags.step_tags() + (["pipeline-metrics"] if metrics else [])
    listed = ", ".join(repr(t) for t in found)
    return Problem(
        f"{cell_label(tags.cell)}: tag{'s' if len(found) > 1 else ''} {listed} ha{'ve' if len(found) > 1 else 's'} "
        f"no effect on {where}; put {'them' if len(found) > 1 else 'it'} on a cell of a step",
        cell=tags.cell,
        tag=found[0] if found else None,
    )


# -- the graph ---------------------------------------------------------------------------------------------------
def _cycles(drafts: dict[str, _Draft]) -> list[Problem]:
    """One problem per distinct cycle of after:/prev: edges, naming its path and tags."""
    problems: list[Problem] = []
    seen_cycles: set[frozenset[str]] = set()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for parent in drafts[name].after:
            if parent not in drafts:
                continue
            if state.get(parent) == 1:
                cycle = path[path.index(parent) :]
                key = frozenset(cycle)
                if key not in seen_cycles:
                    seen_cycles.add(key)
                    problems.append(_cycle_problem(cycle, drafts))
            elif parent not in state:
                visit(parent)
        path.pop()
        state[name] = 2

    for name in sorted(drafts, key=lambda n: drafts[n].first_cell):
        if name not in state:
            visit(name)
    return problems


def _cycle_problem(cycle: list[str], drafts: dict[str, _Draft]) -> Problem:
    # `cycle` follows after-edges backwards (step -> the step it runs after); show run order.
    runs = list(reversed(cycle))
    start = min(range(len(runs)), key=lambda i: drafts[runs[i]].first_cell)
    runs = runs[start:] + runs[:start]
    shown = " -> ".join(repr(n) for n in runs + [runs[0]])
    tags = []
    for i, name in enumerate(cycle):
        parent = cycle[(i + 1) % len(cycle)]
        tag, cell = drafts[name].after[parent]
        tags.append((cell, tag, name))
    tags.sort()
    listed = ", ".join(f"{tag!r} on {cell_label(cell)}" for cell, tag, _ in tags)
    cell, tag, step = tags[0]
    return Problem(
        f"{cell_label(cell)}: steps {shown} form a cycle, so none of them can start; remove one of the tags {listed}",
        cell=cell,
        step=step,
        tag=tag,
    )


def _topological(names: list[str], parents: dict[str, list[str]]) -> list[str]:
    """Kahn's algorithm; among ready steps the one listed first in `names` goes first."""
    rank = {n: i for i, n in enumerate(names)}
    waiting = {n: len([p for p in parents.get(n, []) if p in rank]) for n in names}
    children: dict[str, list[str]] = {n: [] for n in names}
    for name in names:
        for parent in parents.get(name, []):
            if parent in rank:
                children[parent].append(name)
    ready = [(rank[n], n) for n in names if waiting[n] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, name = heapq.heappop(ready)
        order.append(name)
        for child in children[name]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, (rank[child], child))
    if len(order) != len(names):
        stuck = ", ".join(repr(n) for n in names if n not in order)
        raise ValidationError(f"steps {stuck} depend on each other in a cycle")
    return order


# -- hand-offs ---------------------------------------------------------------------------------------------------
def _is_python(metadata: Any) -> bool:
    kernelspec = metadata.get("kernelspec") or {}
    info = metadata.get("language_info") or {}
    language = kernelspec.get("language") or info.get("name") or "python"
    return str(language).lower().startswith("python")


def _handoffs(plan: Plan, cells: list[Any]) -> None:
    codes = [handoff.StepCode(name=s.name, cells=s.cells, after=s.after) for s in plan.steps]
    sources = {i: cell_source(c) for i, c in enumerate(cells) if c.get("cell_type") == "code"}
    shared = plan.parameters_cells + plan.prelude_cells
    flows, notes = handoff.analyze_steps(codes, sources, shared)
    errors = [Problem(n.message, cell=n.cell, step=n.step) for n in notes if n.error]
    raise_problems(errors)
    plan.warnings.extend({"cell": n.cell, "step": n.step, "message": n.message} for n in notes)
    for step in plan.steps:
        flow = flows[step.name]
        step.inputs, step.sources = flow.inputs, flow.sources
        step.outputs, step.origins = flow.outputs, flow.origins


__all__ = ["NotebookDefaults", "Plan", "PlannedStep", "Survey", "plan_notebook", "survey"]
