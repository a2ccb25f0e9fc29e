"""The cell-tag grammar: one cell's tags -> what the cell is and what it asks for.

The grammar is the "Cell tags" table of DESIGN.md, a superset of Kale's tag language so Kale
notebooks run unchanged:

==========================================  =============================================
``step:NAME`` / ``block:NAME``              the cell starts (or continues) step NAME
``after:NAME`` / ``prev:NAME``              the step runs after step NAME
``imports``, ``functions``                  prepended to every step
``parameters`` / ``pipeline-parameters``    the papermill parameters cell
``skip``                                    never run remotely
``pipeline-metrics``                        the step's metrics cell (shown in the panel)
``cache`` / ``cache:off``                   reuse the step's earlier result when its inputs did
                                            not change (cache.py) / always run it (wins over
                                            ``cache`` and the notebook's ``jupyter_ext.cache``)
``gpu:N`` ``memory:16Gi`` ``cpu:4``         resources of the step the cell belongs to
``image:REF`` ``timeout:2h`` ``retries:N``
``limit:KEY:VALUE``                         a raw Kubernetes limit (Kale)
``annotation:K:V``, ``label:K:V``           Kale pod metadata: accepted, no effect here
``injected-parameters``                     papermill's injected cell of an earlier run:
                                            dropped (papermill injects a fresh one)
==========================================  =============================================

Tags that are not ours are ignored (people tag cells for other reasons: ``hide-input``,
``remove-cell``...), unless they look like a misspelling of ours (``setp:train``,
``gpus:2``, ``memroy:4Gi``, ``fuctions``): those are errors that suggest the right tag.
A misspelt prefix only counts as ours when its value would be valid for the tag it
resembles, so ``memo:check this`` stays someone else's tag.

Every problem names the cell (as Lab numbers it: 1-based over all cells; the ``cell`` field of a
problem stays the 0-based index) and the tag, and says what would be valid.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from .. import quantity
from ..errors import ValidationError

Role = Literal["step", "imports", "functions", "parameters", "skip", "injected"]

STEP_NAME = re.compile(r"[A-Za-z0-9_.-]{1,63}")
_LIMIT_KEY = re.compile(r"[A-Za-z0-9_.\-/]+")

# Tags without a value.
BARE_TAGS = {
    "imports": "imports",
    "functions": "functions",
    "parameters": "parameters",
    "pipeline-parameters": "parameters",
    "skip": "skip",
    "injected-parameters": "injected",
    "pipeline-metrics": "metrics",
    "cache": "cache",
}
# Tags of the form PREFIX:VALUE, with an example value for messages.
PREFIX_TAGS = {
    "step": "train",
    "block": "train",
    "after": "load",
    "prev": "load",
    "gpu": "1",
    "memory": "16Gi",
    "cpu": "4",
    "image": "python:3.11-slim",
    "timeout": "2h",
    "retries": "2",
    "limit": "nvidia.com/gpu:1",
    "annotation": "KEY:VALUE",
    "label": "KEY:VALUE",
    "cache": "off",
}
# Near misses difflib would not catch (too short or a different word), mapped to our tag.
_SYNONYMS = {
    "mem": "memory",
    "ram": "memory",
    "gpus": "gpu",
    "cpus": "cpu",
    "retry": "retries",
    "depends": "after",
    "depends-on": "after",
    "params": "parameters",
    "param": "parameters",
    "cached": "cache",
    "caching": "cache",
}
# How close an unknown tag must be to one of ours to count as a misspelling (difflib ratio).
_TYPO_CUTOFF_PREFIX = 0.75
_TYPO_CUTOFF_BARE = 0.85

_ROLES: dict[str, Role] = {
    "step": "step",
    "imports": "imports",
    "functions": "functions",
    "parameters": "parameters",
    "skip": "skip",
    "injected": "injected",
}


@dataclass(frozen=True)
class Setting:
    """One resource-like value a tag sets: `value` as Resources/StepSpec take it, `key` to compare."""

    value: Any
    key: Any
    tag: str


@dataclass
class CellTags:
    """What one code cell's tags say. `role` None: the cell continues whatever block is above."""

    cell: int
    role: Role | None = None
    step: str | None = None
    metrics: bool = False
    after: dict[str, str] = field(default_factory=dict)  # step name -> the tag that named it
    settings: dict[str, Setting] = field(default_factory=dict)  # "gpu", "memory", ... -> value
    limits: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (value, tag)
    ignored: list[str] = field(default_factory=list)  # tags that are not ours, or have no effect here
    role_tag: str | None = None  # the tag that gave the cell its role
    cache: tuple[bool, str] | None = None  # `cache` (True) or `cache:off` (False, wins), with its tag

    @property
    def has_step_settings(self) -> bool:
        """Whether the cell carries anything that only makes sense on a step."""
        return bool(self.after or self.settings or self.limits or self.cache)

    def step_tags(self) -> list[str]:
        """The tags that configure a step (for messages about where they may go)."""
        tags = list(self.after.values()) + [s.tag for s in self.settings.values()]
        return tags + [tag for _, tag in self.limits.values()] + ([self.cache[1]] if self.cache else [])


@dataclass
class Problem:
    """One thing wrong with the notebook; collected so the user sees all of them at once."""

    message: str
    cell: int | None = None
    step: str | None = None
    tag: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"cell": self.cell, "step": self.step, "tag": self.tag, "message": self.message}


def cell_label(index: int) -> str:
    """How a person names code cell `index` (0-based over all cells): as Lab numbers it, from 1.
    Payloads keep the 0-based index (`cell`); only words use this."""
    return f"cell {index + 1}"


def raise_problems(problems: list[Problem], what: str = "the notebook") -> None:
    """Raise one ValidationError listing every problem (no-op when there are none)."""
    if not problems:
        return
    first = problems[0]
    if len(problems) == 1:
        message = first.message
    else:
        lines = "\n".join(f"  - {p.message}" for p in problems)
        message = f"{what} has {len(problems)} problems:\n{lines}"
    raise ValidationError(message, cell=first.cell, step=first.step, details=[p.to_dict() for p in problems])


def parse_tags(tags: object, cell: int) -> CellTags:
    """Parse the tags of code cell number `cell`; raise ValidationError listing every bad tag."""
    result, problems = collect_tags(tags, cell)
    raise_problems(problems, f"{cell_label(cell)}")
    return result


def collect_tags(tags: object, cell: int) -> tuple[CellTags, list[Problem]]:
    """Parse the tags of one cell, returning the result and the problems instead of raising."""
    result = CellTags(cell=cell)
    problems: list[Problem] = []
    if tags is None:
        return result, problems
    if not isinstance(tags, list | tuple):
        problems.append(
            Problem(
                f"{cell_label(cell)}: metadata 'tags' must be a list of strings, got {type(tags).__name__}", cell=cell
            )
        )
        return result, problems
    roles: dict[str, str] = {}  # role -> first tag giving it
    steps: dict[str, str] = {}
    for tag in tags:
        if not isinstance(tag, str):
            problems.append(
                Problem(f"{cell_label(cell)}: tag {tag!r} is not text; cell tags are strings", cell=cell, tag=repr(tag))
            )
            continue
        try:
            _one(tag, f"{cell_label(cell)}", result, roles, steps)
        except ValidationError as exc:
            problems.append(Problem(exc.message, cell=cell, tag=tag))
    _settle_role(result, roles, steps, problems)
    return result, problems


def _settle_role(result: CellTags, roles: dict[str, str], steps: dict[str, str], problems: list[Problem]) -> None:
    cell = result.cell
    if len(steps) > 1:
        listed = ", ".join(repr(t) for t in steps.values())
        problems.append(
            Problem(
                f"{cell_label(cell)}: tags {listed} put the cell in {len(steps)} steps; a cell belongs to one step",
                cell=cell,
                tag=next(iter(steps.values())),
            )
        )
    if steps:
        name, tag = next(iter(steps.items()))
        result.step = name
        roles.setdefault("step", tag)
    # `skip` wins over everything (as in Kale): the user switched the cell off.
    # papermill's injected cell is the output of an earlier run: papermill replaces it.
    for winner in ("skip", "injected"):
        if winner in roles:
            result.role = _ROLES[winner]
            result.role_tag = roles[winner]
            result.step = None
            return
    if len(roles) > 1:
        listed = " and ".join(repr(t) for t in roles.values())
        problems.append(
            Problem(
                f"{cell_label(cell)}: tags {listed} give the cell two roles; keep one (split the cell if it does both)",
                cell=cell,
                tag=next(iter(roles.values())),
            )
        )
    if roles:
        role, tag = next(iter(roles.items()))
        result.role = _ROLES[role]
        result.role_tag = tag
        if role != "step":
            result.step = None


def _one(tag: str, where: str, result: CellTags, roles: dict[str, str], steps: dict[str, str]) -> None:
    """Apply one tag to `result`; raise ValidationError (message only) if it is bad."""
    if tag in BARE_TAGS:
        kind = BARE_TAGS[tag]
        if kind == "metrics":
            result.metrics = True
        elif kind == "cache":
            _cache(result, True, tag)
        else:
            roles.setdefault(kind, tag)
        return
    prefix, sep, value = tag.partition(":")
    if not sep:
        if tag in PREFIX_TAGS:
            raise _bad(where, tag, f"needs a value, e.g. '{tag}:{PREFIX_TAGS[tag]}'")
        _check_typo_bare(tag, where)
        result.ignored.append(tag)
        return
    if prefix not in PREFIX_TAGS:
        _check_typo_prefix(tag, prefix, value, where)
        result.ignored.append(tag)
        return
    if prefix in ("step", "block"):
        if value == "":
            # Kale's extension can leave an empty `block:` tag behind; Kale treats it as no tag.
            result.ignored.append(tag)
            return
        steps.setdefault(_step_name(value, tag, where), tag)
    elif prefix in ("after", "prev"):
        result.after.setdefault(_step_name(value, tag, where), tag)
    elif prefix == "limit":
        apply_limit(tag, value, where, result)
    elif prefix in ("annotation", "label"):
        result.ignored.append(tag)  # Kale pod metadata: valid, but nothing here uses it
    elif prefix == "cache":
        if value != "off":
            raise _bad(
                where,
                tag,
                "is not a cache tag; use 'cache' to reuse the step's earlier result or 'cache:off' to always run it",
            )
        _cache(result, False, tag)
    else:
        _setting(prefix, value, tag, where, result)


def _cache(result: CellTags, on: bool, tag: str) -> None:
    """`cache` / `cache:off` on one cell: `cache:off` wins."""
    if result.cache is None or (result.cache[0] and not on):
        result.cache = (on, tag)


def _bad(where: str, tag: str, why: str) -> ValidationError:
    return ValidationError(f"{where}: tag {tag!r} {why}")


def _step_name(value: str, tag: str, where: str) -> str:
    if not STEP_NAME.fullmatch(value):
        raise _bad(
            where,
            tag,
            f"has an invalid step name {value!r}; use 1 to 63 letters, digits, '_', '-' or '.' (e.g. 'train')",
        )
    return value


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "gpu": quantity.parse_gpu,
    "memory": quantity.parse_memory,
    "cpu": quantity.parse_cpu,
    "timeout": quantity.parse_duration,
    "retries": quantity.parse_retries,
}


def _parsed(name: str, value: str, tag: str, where: str) -> Any:
    try:
        return _PARSERS[name](value, name)
    except ValidationError as exc:
        raise _bad(where, tag, "is invalid: " + exc.message.removeprefix(f"{name}: ")) from None
    except (ValueError, ArithmeticError):  # absurd values (thousands of digits) trip int()/float()
        raise _bad(where, tag, f"is invalid: {value[:20]!r}... is not a sensible {name}") from None


def _setting(name: str, value: str, tag: str, where: str, result: CellTags) -> None:
    if name == "image":
        if not value or any(c.isspace() for c in value):
            raise _bad(where, tag, "needs an image reference without spaces, e.g. 'image:python:3.11-slim'")
        setting = Setting(value, value, tag)
    else:
        parsed = _parsed(name, value, tag, where)
        # Resources keeps memory and cpu as the user wrote them; compare parsed amounts.
        setting = Setting(value.strip() if name in ("memory", "cpu") else parsed, parsed, tag)
    _put(result, name, setting, where)


def _put(result: CellTags, name: str, setting: Setting, where: str) -> None:
    old = result.settings.get(name)
    if old is not None and old.key != setting.key:
        raise _bad(where, setting.tag, f"conflicts with tag {old.tag!r} on the same cell; keep one")
    result.settings.setdefault(name, setting)


def apply_limit(tag: str, value: str, where: str, result: CellTags) -> None:
    key, sep, amount = value.rpartition(":")
    if not sep or not _LIMIT_KEY.fullmatch(key) or not amount or any(c.isspace() for c in amount):
        raise _bad(where, tag, "is not KEY:VALUE; use e.g. 'limit:nvidia.com/gpu:1' or 'limit:memory:4Gi'")
    # Kale users ask for GPUs, memory and CPU with limits; they set our fields too.
    field_name = "gpu" if key.endswith("/gpu") else key if key in ("memory", "cpu") else None
    if field_name is not None:
        parsed = _parsed(field_name, amount, tag, where)
        stored = parsed if field_name == "gpu" else amount
        _put(result, field_name, Setting(stored, parsed, tag), where)
    old = result.limits.get(key)
    if old is not None and old[0] != amount:
        raise _bad(where, tag, f"conflicts with tag {old[1]!r} on the same cell; keep one")
    result.limits.setdefault(key, (amount, tag))


def _value_fits(prefix: str, value: str) -> bool:
    """Whether `value` would be valid for our tag `prefix` (so a near-miss prefix is a typo)."""
    if prefix in ("step", "block", "after", "prev"):
        return bool(STEP_NAME.fullmatch(value))
    if prefix == "image":
        return bool(value) and not any(c.isspace() for c in value)
    if prefix == "cache":
        return value == "off"
    if prefix == "limit":
        key, sep, amount = value.rpartition(":")
        return bool(sep and _LIMIT_KEY.fullmatch(key) and amount)
    if prefix in _PARSERS:
        try:
            _PARSERS[prefix](value, prefix)
        except (ValidationError, ValueError, ArithmeticError):
            return False
        return True
    return False  # annotation/label have no effect: a misspelling of them harms nothing


def _check_typo_prefix(tag: str, prefix: str, value: str, where: str) -> None:
    lowered = prefix.strip().lower()
    if lowered in BARE_TAGS and lowered not in PREFIX_TAGS:
        raise _bad(where, tag, f"is not a jupyter-ext tag; did you mean {lowered!r}? (it takes no value)")
    candidates = [lowered] if lowered in PREFIX_TAGS else []
    candidates += [_SYNONYMS[lowered]] if lowered in _SYNONYMS and _SYNONYMS[lowered] in PREFIX_TAGS else []
    candidates += difflib.get_close_matches(lowered, list(PREFIX_TAGS), n=3, cutoff=_TYPO_CUTOFF_PREFIX)
    for candidate in candidates:
        if _value_fits(candidate, value):
            raise _bad(where, tag, f"is not a jupyter-ext tag; did you mean '{candidate}:{value}'?")


def _check_typo_bare(tag: str, where: str) -> None:
    lowered = tag.strip().lower()
    if lowered in BARE_TAGS:
        raise _bad(where, tag, f"is not a jupyter-ext tag; did you mean {lowered!r}? (tags are lower case)")
    if lowered in PREFIX_TAGS:
        raise _bad(where, tag, f"needs a value, e.g. '{lowered}:{PREFIX_TAGS[lowered]}'")
    synonym = _SYNONYMS.get(lowered)
    if synonym in BARE_TAGS:
        raise _bad(where, tag, f"is not a jupyter-ext tag; did you mean {synonym!r}?")
    bare = [t for t in BARE_TAGS if t != "injected-parameters"]
    close = difflib.get_close_matches(lowered, bare, n=1, cutoff=_TYPO_CUTOFF_BARE)
    if close:
        raise _bad(where, tag, f"is not a jupyter-ext tag; did you mean {close[0]!r}?")


def suggest(name: str, known: list[str]) -> str:
    """'; did you mean 'x'?' for the closest of `known`, or the list of known names."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    if known:
        return "; steps are: " + ", ".join(repr(k) for k in known)
    return "; the notebook has no steps"
