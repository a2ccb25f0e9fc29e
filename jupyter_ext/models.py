"""The API schema: what clients send (JobSpec) and what they get back (Job, Step, Event).

Validation happens here, once, at the edge. `parse()` turns pydantic's errors into our
`ValidationError` whose message names the field (e.g. ``resources.memory``) and says what
a valid value looks like. Inside the server, records travel as these models or plain dicts.

Why this module is long: it is the whole wire schema, each model with the validators that name
its fields (a sweep's checks among them), read beside openapi.yaml; split up, the request models
would import the bounds and checks they share from each other.
"""

from __future__ import annotations

import json
import keyword
import re
import types
import typing
from enum import Enum
from typing import Any, Literal, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from . import quantity
from .contract import EVENT_VERSION, TERMINAL
from .errors import ValidationError, shown

#: Bounds on what a request may carry, checked at the edge (a clear 400 naming the field, not a
#: 500 later or minutes spent injecting a parameter).
MAX_DEPTH = 32  # nesting of a parameter value (lists/objects inside each other)
MAX_PARAMETER_VALUES = 100_000  # numbers, strings, lists and objects in one parameter, all levels
MAX_PARAMETERS_BYTES = 1_000_000  # all parameters together, as JSON
MAX_PATH_CHARS = 1024  # a notebook path or cell.workdir, relative to the server root
MAX_NAME_BYTES = 255  # one folder or file name of such a path (the filesystem's limit)
MAX_SWEEP_RUNS = 1000  # child jobs of one parameter sweep
DEFAULT_SWEEP_PARALLEL = 4  # a sweep's children running at once, unless `sweep_parallel` says

M = TypeVar("M", bound=BaseModel)


class Status(str, Enum):
    """Life of a job or a step. `not_run`: a step skipped because something upstream failed."""

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    not_run = "not_run"

    @property
    def terminal(self) -> bool:
        """Never changes again (contract.TERMINAL)."""
        return self.value in TERMINAL


def check_path(value: str, field: str) -> str:
    """A path a client sends (notebook, cell.workdir): refuse what no filesystem could open, before
    the server tries (a NUL byte, a name over 255 bytes, a path over 1024 characters)."""
    if "\x00" in value:
        raise ValueError("the path contains a NUL character")
    if len(value) > MAX_PATH_CHARS:
        raise ValueError(f"the path is {len(value)} characters long; at most {MAX_PATH_CHARS} are accepted")
    for name in re.split(r"[/\\]", value):
        if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise ValueError(f"the name {shown(name, 60)} is longer than {MAX_NAME_BYTES} bytes")
    return value


def check_variable_name(name: object, what: str) -> None:
    """A name a notebook can assign (`name = value`): an identifier and not a keyword."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"{what} {shown(name, 60)} is not a Python identifier (letters, digits, _)")
    if keyword.iskeyword(name):
        raise ValueError(f"{what} {name!r} is a Python keyword; a notebook cannot assign it (use e.g. {name + '_'!r})")


def depth_problem(value: Any, limit: int, max_values: int | None = None) -> str | None:
    """Why `value` (JSON-like) is too deep or too big, else None; iterative, so any input is safe."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    count = 0
    while stack:
        item, depth = stack.pop()
        count += 1
        if max_values is not None and count > max_values:
            return f"it holds more than {max_values:,} values; at most {max_values:,} are accepted"
        if isinstance(item, (list, tuple, set, frozenset, dict)):
            if depth >= limit:
                return f"it is nested more than {limit} levels deep; at most {limit} are accepted"
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return None


def check_parameters(parameters: dict[str, Any]) -> None:
    """Parameter names a notebook can assign, values papermill can inject in reasonable time."""
    total = 0
    for name, value in parameters.items():
        field = f"parameters.{name}" if isinstance(name, str) else "parameters"
        try:
            check_variable_name(name, "parameter name")
        except ValueError as exc:
            raise ValidationError(f"{field}: {exc}", field=field) from None
        problem = depth_problem(value, MAX_DEPTH, MAX_PARAMETER_VALUES)
        if problem is None:
            total += len(json.dumps(value, default=repr))
            if total > MAX_PARAMETERS_BYTES:
                problem = f"the parameters are over {MAX_PARAMETERS_BYTES:,} bytes as JSON; at most that is accepted"
        if problem:
            raise ValidationError(f"{field}: {problem} (hand large data to a notebook as a file instead)", field=field)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Resources(_Strict):
    """What one step asks for. Quantities use Kubernetes syntax ('16Gi', '500m')."""

    gpu: int = Field(0, description="Whole number of GPUs")
    memory: str | None = Field(None, description="Memory, e.g. '16Gi'")
    cpu: str | None = Field(None, description="CPU cores, e.g. '4' or '500m'")
    image: str | None = Field(None, description="Container image for Kubernetes steps")
    extra_limits: dict[str, str] = Field(default_factory=dict, description="Raw limits, e.g. Kale's limit:KEY:VALUE")

    @field_validator("gpu", mode="before")
    @classmethod
    def _gpu(cls, v: object) -> int:
        return _bare(quantity.parse_gpu, v, "gpu")

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, v: object) -> str | None:
        if v is None:
            return None
        _bare(quantity.parse_memory, v, "memory")
        return str(v).strip()

    @field_validator("cpu", mode="before")
    @classmethod
    def _cpu(cls, v: object) -> str | None:
        if v is None:
            return None
        _bare(quantity.parse_cpu, v, "cpu")
        return str(v).strip()

    @field_validator("image", mode="before")
    @classmethod
    def _image(cls, v: object) -> str | None:
        if v is None:
            return None
        if not isinstance(v, str) or not v.strip() or any(c.isspace() for c in v.strip()):
            raise ValueError(f"{shown(v)} is not an image reference; use e.g. 'python:3.11-slim'")
        return v.strip()

    def memory_bytes(self) -> int | None:
        return None if self.memory is None else quantity.parse_memory(self.memory)

    def cpu_cores(self) -> float | None:
        return None if self.cpu is None else quantity.parse_cpu(self.cpu)

    def merged_over(self, base: Resources | None) -> Resources:
        """These resources, with unset fields taken from `base` (notebook or job defaults)."""
        if base is None:
            return self
        data = base.model_dump()
        mine = self.model_dump(exclude_unset=True)
        data.update(mine)
        data["extra_limits"] = {**base.extra_limits, **self.extra_limits}
        return Resources.model_validate(data)


class StepSpec(_Strict):
    """One step as planned from the notebook's tags."""

    name: str
    after: list[str] = Field(default_factory=list)
    resources: Resources = Field(default_factory=Resources)
    timeout: float | None = Field(None, description="Seconds before the step is stopped")
    retries: int = 0
    cells: list[int] = Field(default_factory=list, description="Indices of the original notebook's cells")
    inputs: list[str] = Field(default_factory=list, description="Variables loaded from earlier steps")
    outputs: list[str] = Field(default_factory=list, description="Variables saved for later steps")
    sources: dict[str, str] = Field(default_factory=dict, description="Input variable -> the step it comes from")
    reused_from: dict[str, Any] | None = Field(
        None, description="Set on a re-run: {job, attempt} of the earlier job whose result this step reuses"
    )
    cache: bool | None = Field(
        None,
        description="True: reuse an earlier run's result when the step's inputs did not change (cache.py); "
        "False: tagged `cache:off`, never (not even in a sweep); None: not asked for",
    )

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, v: object) -> float | None:
        return None if v is None else _bare(quantity.parse_duration, v, "timeout")

    @field_validator("retries", mode="before")
    @classmethod
    def _retries(cls, v: object) -> int:
        return _bare(quantity.parse_retries, v, "retries")


class CellSpec(_Strict):
    """One cell run on its own (the `%%remote` magic): its code and the variables in and out."""

    source: str = Field(..., max_length=1_000_000)
    inputs: dict[str, str] = Field(default_factory=dict, description="name -> base64 of a cloudpickle")
    outputs: list[str] = Field(default_factory=list, description="names to send back")
    workdir: str = Field("", description="the cell's working directory, relative to the server root")
    versions: dict[str, str] = Field(default_factory=dict, description="python and library versions of the sender")

    @field_validator("inputs", "outputs")
    @classmethod
    def _names(cls, v: Any) -> Any:
        for name in v:
            check_variable_name(name, "variable name")
        return v

    @field_validator("workdir")
    @classmethod
    def _workdir(cls, v: str) -> str:
        return check_path(v, "cell.workdir")


class JobSpec(_Strict):
    """What a client submits: `POST /jupyter-ext/api/jobs` (a notebook, or one cell)."""

    cell: CellSpec | None = Field(None, description="Instead of a notebook: one cell with its inputs")
    notebook: str | None = Field(None, description="Path of the notebook, relative to the server root")
    parameters: dict[str, Any] = Field(default_factory=dict)
    backend: str | None = None
    name: str | None = Field(None, max_length=200)
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)
    resources: Resources | None = Field(None, description="Defaults for steps that set none")
    timeout: float | None = None
    retries: int | None = None
    from_step: str | None = Field(None, description="Re-run from this step, reusing earlier hand-offs")
    rerun_of: str | None = Field(None, description="Job whose hand-offs a re-run reuses")
    fresh: bool = Field(
        False, description="Run every step again, ignoring cached results (new results still enter the cache)"
    )
    kernel: str | None = Field(
        None,
        max_length=200,
        description="Kernel to run the notebook with instead of its own (e.g. 'python3'); without it a "
        "notebook whose kernel the backend does not have is refused",
    )
    sweep: dict[str, list[Any]] | None = Field(
        None,
        description="A parameter sweep: parameter name -> the values to try. One sweep job with one child "
        "job per combination (sweeps.py)",
    )
    sweep_mode: Literal["grid", "zip"] = Field(
        "grid", description="grid: every combination (in the order given); zip: the i-th values together"
    )
    sweep_parallel: int | None = Field(
        None, ge=1, le=MAX_SWEEP_RUNS, description=f"Children running at once (default {DEFAULT_SWEEP_PARALLEL})"
    )

    @field_validator("notebook")
    @classmethod
    def _notebook(cls, v: str | None) -> str | None:
        return None if v is None else notebook_path(v)

    @model_validator(mode="after")
    def _one_of(self) -> JobSpec:
        # After the fields: a bad `cell` is reported as itself, not also as a missing notebook.
        if self.notebook is None and self.cell is None:
            message = "this field is required: a path under the server root, e.g. 'examples/train.ipynb'"
            raise ValidationError(
                f"notebook: {message}", field="notebook", details=[{"field": "notebook", "message": message}]
            )
        if self.notebook is not None and self.cell is not None:
            message = "give either notebook or cell, not both"
            raise ValidationError(
                f"notebook: {message}", field="notebook", details=[{"field": "notebook", "message": message}]
            )
        return self

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, v: dict[str, Any]) -> dict[str, Any]:
        check_parameters(v)
        return v

    @field_validator("sweep")
    @classmethod
    def _sweep_values(cls, v: dict[str, list[Any]] | None) -> dict[str, list[Any]] | None:
        if v is None:
            return None
        if not v:
            raise ValidationError(
                'sweep: give at least one parameter and its values, e.g. {"lr": [0.1, 0.01]}', field="sweep"
            )
        for name, values in v.items():
            field = f"sweep.{name}"
            try:
                check_variable_name(name, "parameter name")
            except ValueError as exc:
                raise ValidationError(f"{field}: {exc}", field=field) from None
            if not values:
                raise ValidationError(f"{field}: the list of values is empty; give at least one value", field=field)
            try:
                check_parameters({name: values})
            except ValidationError as exc:
                raise ValidationError(exc.message.replace(f"parameters.{name}", field, 1), field=field) from None
        return v

    @model_validator(mode="after")
    def _sweep(self) -> JobSpec:
        if self.sweep is None:
            return self
        first = next(iter(self.sweep))
        if self.cell is not None:
            message = f"sweep.{first}: a sweep runs a notebook, not a %%remote cell"
            raise ValidationError(message, field=f"sweep.{first}")
        if self.from_step or self.rerun_of:
            raise ValidationError(
                f"sweep.{first}: a sweep cannot re-run from a step (from_step/rerun_of); run the sweep whole "
                "(its children reuse unchanged steps through the step cache)",
                field=f"sweep.{first}",
            )
        for name in self.sweep:
            if name in self.parameters:
                raise ValidationError(
                    f"sweep.{name}: {name!r} is both in parameters and in sweep; give it in one of them",
                    field=f"sweep.{name}",
                )
        lengths = {name: len(values) for name, values in self.sweep.items()}
        if self.sweep_mode == "zip":
            for name, n in lengths.items():
                if n != lengths[first]:
                    raise ValidationError(
                        f"sweep.{name}: zip pairs the i-th values of every swept parameter, so they need as many "
                        f"values each; {first!r} has {lengths[first]}, {name!r} has {n} (or use grid)",
                        field=f"sweep.{name}",
                    )
            runs = lengths[first]
        else:
            runs = 1
            for n in lengths.values():
                runs *= n
        if runs > MAX_SWEEP_RUNS:
            widest = max(lengths, key=lambda k: lengths[k])
            shape = " x ".join(str(n) for n in lengths.values())
            raise ValidationError(
                f"sweep.{widest}: the sweep makes {runs:,} runs ({shape}); at most {MAX_SWEEP_RUNS:,} are accepted; "
                "give fewer values",
                field=f"sweep.{widest}",
            )
        return self

    @field_validator("kernel")
    @classmethod
    def _kernel(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9._-]+", v):
            raise ValueError(
                f"{shown(v)} is not a kernel name; use a name `jupyter kernelspec list` shows, e.g. 'python3'"
            )
        return v

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, v: object) -> float | None:
        return None if v is None else _bare(quantity.parse_duration, v, "timeout")

    @field_validator("retries", mode="before")
    @classmethod
    def _retries(cls, v: object) -> int | None:
        return None if v is None else _bare(quantity.parse_retries, v, "retries")


def notebook_path(v: str) -> str:
    """The `notebook` of `POST jobs` and `POST plan` (spaces around it already stripped)."""
    if not v:
        raise ValueError("give the path of a notebook under the server root, e.g. 'examples/train.ipynb'")
    check_path(v, "notebook")
    if not v.endswith(".ipynb"):
        raise ValueError(f"{shown(v)} is not a notebook; give a path ending in .ipynb")
    return v


class PlanSpec(_Strict):
    """What `POST /jupyter-ext/api/plan` takes: a notebook and optionally the backend to check."""

    notebook: str = Field(..., description="Path of the notebook, relative to the server root")
    backend: str | None = None

    @field_validator("notebook")
    @classmethod
    def _notebook(cls, v: str) -> str:
        return notebook_path(v)


class Step(BaseModel):
    """A step as the API shows it."""

    name: str
    status: Status
    after: list[str] = Field(default_factory=list)
    resources: Resources = Field(default_factory=Resources)
    cells: list[int] = Field(default_factory=list)
    attempt: int = 0
    retries: int = 0
    timeout: float | None = None
    started: str | None = None
    finished: str | None = None
    exit_code: int | None = None
    error: dict[str, Any] | None = None
    reused_from: dict[str, Any] | None = Field(
        None, description="On a re-run: {job, attempt} of the earlier job whose result this step reuses"
    )
    queue_position: int | None = Field(
        None, description="While queued waiting for a slot on its backend: its place in line (1: next)"
    )
    cache: dict[str, Any] | None = Field(
        None,
        description="A cached step: {key, hit, from: {job, step, attempt} | null}; null when the step is not cached",
    )


class SweepChild(BaseModel):
    """One run of a sweep (a row of its table)."""

    id: str
    name: str
    parameters: dict[str, Any] = Field(default_factory=dict, description="The swept parameters' values")
    status: Status
    started: str | None = None
    finished: str | None = None
    duration: float | None = Field(None, description="Seconds from start to end (null until it ended)")
    metrics: dict[str, float] = Field(default_factory=dict, description="Each metric's last value")


class Sweep(BaseModel):
    """A sweep job's runs, in the order of their combinations."""

    mode: str
    parallel: int
    parameters: list[str] = Field(default_factory=list, description="The swept parameters' names")
    metrics: list[str] = Field(default_factory=list, description="Every metric name its runs logged")
    counts: dict[str, int] = Field(default_factory=dict, description="Runs per status")
    children: list[SweepChild] = Field(default_factory=list)


class Job(BaseModel):
    """A job as the API shows it."""

    id: str
    name: str
    notebook: str
    user: str
    backend: str
    status: Status
    parameters: dict[str, Any] = Field(default_factory=dict)
    created: str
    started: str | None = None
    finished: str | None = None
    error: dict[str, Any] | None = None
    last_seq: int = 0
    queue_position: int | None = Field(None, description="The best queue_position of its steps waiting for a slot")
    steps: list[Step] = Field(default_factory=list)
    parent: str | None = Field(None, description="The sweep job this job is a run of")
    metrics: dict[str, float] = Field(default_factory=dict, description="Each metric's last value")
    sweep: Sweep | None = Field(None, description="A sweep job's runs (null for other jobs)")


class Event(BaseModel):
    """One line of the event contract (see DESIGN.md). Type-specific fields ride along."""

    model_config = ConfigDict(extra="allow")

    v: int = EVENT_VERSION
    job: str
    step: str | None = None
    seq: int
    ts: float
    type: str


def _bare(fn: Any, v: object, field: str) -> Any:
    """Run a quantity parser inside a pydantic validator: its message, minus the field prefix."""
    try:
        return fn(v, field)
    except ValidationError as exc:
        raise ValueError(exc.message.removeprefix(f"{field}: ")) from None


def _loc(err: Any, prefix: str) -> str:
    parts = [str(p) for p in err.get("loc", ()) if not str(p).startswith("function-")]
    path = ".".join(parts)
    return f"{prefix}.{path}" if prefix and path else (prefix or path or "body")


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel]:
    """The model whose field `loc` names (`("resources",)` of JobSpec -> Resources): the fields an
    unknown key there is told about."""
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            return model
        candidates = [field.annotation]
        if typing.get_origin(field.annotation) in (typing.Union, types.UnionType):
            candidates = list(typing.get_args(field.annotation))
        inner = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if inner is None:
            return model
        model = inner
    return model


def parse(model: type[M], data: object, where: str = "") -> M:
    """Validate `data` as `model`, raising ValidationError whose message names each bad field."""
    if not isinstance(data, dict):
        raise ValidationError(
            f"{where or 'body'}: expected a JSON object, got {type(data).__name__}", field=where or None
        )
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        details = []
        for err in exc.errors():
            field = _loc(err, where)
            msg = str(err.get("msg", "invalid"))
            msg = msg.removeprefix("Value error, ")
            if err.get("type") == "extra_forbidden":
                allowed = ", ".join(sorted(_model_at(model, err.get("loc", ())[:-1]).model_fields))
                msg = f"unknown field; allowed fields are {allowed}"
            elif err.get("type") == "missing":
                msg = "this field is required"
            details.append({"field": field, "message": msg})
        text = "; ".join(f"{d['field']}: {d['message']}" for d in details)
        raise ValidationError(text, field=details[0]["field"], details=details) from None
