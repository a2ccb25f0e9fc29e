"""The Lab's tag check: a notebook's cells as the browser holds them now -> what the tags say.

`POST /jupyter-ext/api/tags/check` answers with this, so the Lab keeps no second copy of the
grammar: the cell chips, the step editor and a run's cells all read the server's answer. It is
the planner's own reading (`plan.survey`, over `tags.py` and `quantity.py`), made lenient: every
problem is collected (naming the cell and the tag, with "did you mean" suggestions), and each
cell still gets its step, so chips show the whole notebook while one tag is wrong.

With an ``edit`` the answer also says what saving the step editor's form on a cell would write
(``changes``: the cell's canonical tags first, every tag that is not ours kept, a renamed step
renamed in every ``after:``) and what is wrong with the form, field by field (``errors``).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .. import quantity
from ..errors import JupyterExtError, ValidationError
from ..models import _Strict, parse
from .plan import MAIN, Survey, _cycles, survey
from .tags import STEP_NAME, CellTags, cell_label, suggest

#: The most cells a check may send (a notebook with more is not edited by hand).
MAX_CELLS = 20_000
#: What the step editor writes, in this order, after `step:` and `after:`.
SETTING_NAMES = ("gpu", "memory", "cpu", "image", "timeout", "retries")
FORM_FIELDS = ("name", "after", *SETTING_NAMES)

_ROLE_WORDS = {
    "parameters": "the parameters cell",
    "imports": "an imports cell",
    "functions": "a functions cell",
    "skip": "switched off (skip)",
    "injected": "papermill's injected-parameters cell",
}


class CheckCell(BaseModel):
    """One cell as nbformat writes it; only its type and its metadata's ``tags`` are read."""

    model_config = ConfigDict(extra="allow")

    cell_type: str = Field(..., max_length=100)
    metadata: dict[str, Any] = Field(default_factory=dict)


class StepForm(_Strict):
    """The step editor's form, each field as typed (empty: not set)."""

    # Kept as typed: the checks strip what they read, and a length is the length sent (openapi maxLength).
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    name: str = Field("", max_length=1000)
    after: str = Field("", max_length=10_000)
    gpu: str = Field("", max_length=1000)
    memory: str = Field("", max_length=1000)
    cpu: str = Field("", max_length=1000)
    image: str = Field("", max_length=1000)
    timeout: str = Field("", max_length=1000)
    retries: str = Field("", max_length=1000)


class Edit(_Strict):
    """Save `form` on code cell `cell`, or remove the step that cell opens."""

    # strict: a JSON integer (2.0 is one too) and true/false, as openapi.yaml says ("1" or "yes" are refused)
    cell: int = Field(..., ge=0, strict=True)
    form: StepForm | None = None
    remove: bool = Field(False, strict=True)

    @field_validator("cell", mode="before")
    @classmethod
    def _whole(cls, v: object) -> object:
        return int(v) if isinstance(v, float) and v.is_integer() else v

    @model_validator(mode="after")
    def _one(self) -> Edit:
        if self.remove and "form" in self.model_fields_set:  # form: null too, as openapi.yaml says
            raise ValueError("give form (save the step) or remove: true (remove the step), not both")
        if self.form is None and not self.remove:
            raise ValueError("give either form (save the step) or remove: true (remove the step)")
        return self


class TagCheckSpec(_Strict):
    """What `POST tags/check` takes: the notebook's cells and metadata as the Lab holds them."""

    cells: list[CheckCell] = Field(..., max_length=MAX_CELLS)
    metadata: dict[str, Any] = Field(default_factory=dict)
    edit: Edit | None = None


def check_notebook(data: object) -> dict[str, Any]:
    """The body of `POST tags/check` for request body `data` (raises ValidationError on a bad body)."""
    spec = parse(TagCheckSpec, data)
    cells = [{"cell_type": c.cell_type, "metadata": c.metadata} for c in spec.cells]
    found = survey({"cells": cells, "metadata": spec.metadata})
    body = _view(found)
    body["edit"] = None
    if spec.edit is not None:
        body["edit"] = _edit(found, spec.edit)
    return body


# -- the answer ---------------------------------------------------------------------------------------------------
def _view(found: Survey) -> dict[str, Any]:
    step_of = {index: d.name for d in found.drafts.values() for index in d.cells}
    cells: list[dict[str, Any]] = []
    for index, cell in enumerate(found.cells):
        tags = found.parsed.get(index)
        if tags is None:  # markdown and raw cells
            cells.append({"index": index, "tags": None, "role": None, "step": None, "opens": False, "problems": []})
            continue
        step = step_of.get(index)
        cells.append(
            {
                "index": index,
                "tags": _tag_list(cell),
                "role": tags.role,
                "step": step,
                "opens": _opens(tags) is not None and step == tags.step,
                "problems": [p.to_dict() for p in found.problems if p.cell == index],
            }
        )
    steps = []
    for name, draft in found.drafts.items():
        try:
            resources: dict[str, Any] | None = (
                draft.resources().merged_over(found.defaults.resources).model_dump(mode="json")
            )
        except (JupyterExtError, ValueError):  # shown as problems already
            resources = None
        timeout = draft.settings.get("timeout")
        retries = draft.settings.get("retries")
        steps.append(
            {
                "name": name,
                "first_cell": draft.first_cell,
                "openers": [i for i in draft.cells if _opens(found.parsed[i]) == name],
                "cells": list(draft.cells),
                "metrics_cells": list(draft.metrics_cells),
                "after": list(draft.after),
                "settings": {n: _written(n, s.tag, s.value) for n, (s, _) in draft.settings.items()},
                "limits": {key: value for key, (value, _, _) in draft.limits.items()},
                "resources": resources,
                "timeout": timeout[0].value if timeout else found.defaults.timeout,
                "retries": retries[0].value if retries else (found.defaults.retries or 0),
            }
        )
    edges = [
        {"source": parent, "target": name}
        for name, draft in found.drafts.items()
        for parent in draft.after
        if parent in found.drafts
    ]
    return {
        "single": found.single,
        "cells": cells,
        "steps": steps,
        "edges": edges,
        "problems": [p.to_dict() for p in found.problems],
        "warnings": found.warnings,
        "parameters_cells": list(found.parameters),
        "prelude_cells": list(found.prelude),
        "skipped_cells": list(found.skipped),
    }


def _opens(tags: CellTags) -> str | None:
    """The step a cell's ``step:``/``block:`` tag opens (None: it opens none)."""
    return tags.step if tags.role == "step" else None


def _written(name: str, tag: str, value: Any) -> str:
    """A step setting as its tag wrote it (a Kale ``limit:`` gives its amount)."""
    if tag.startswith("limit:"):
        return str(value)
    return tag.partition(":")[2].strip()


def _tag_list(cell: dict[str, Any]) -> list[str]:
    tags = (cell.get("metadata") or {}).get("tags")
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


# -- the step editor ----------------------------------------------------------------------------------------------
def _edit(found: Survey, edit: Edit) -> dict[str, Any]:
    index = edit.cell
    if index not in found.parsed:
        what = "is not a code cell" if index < len(found.cells) else f"is past the last cell ({len(found.cells)})"
        raise ValidationError(
            f"edit.cell: {cell_label(index)} {what}; the step editor edits code cells", field="edit.cell"
        )
    if edit.form is None:
        return {"errors": {}, "changes": _changes(found, _remove(found, index))}
    errors = _form_errors(found, index, edit.form)
    changes = {} if errors else _apply(found, index, edit.form)
    return {"errors": errors, "changes": _changes(found, changes)}


def _changes(found: Survey, changes: dict[int, list[str]]) -> list[dict[str, Any]]:
    """Only the cells whose tags differ, in notebook order."""
    out = []
    for index in sorted(changes):
        if changes[index] != _tag_list(found.cells[index]):
            out.append({"cell": index, "tags": changes[index]})
    return out


def split_names(text: str) -> list[str]:
    """The names in an ``after`` field: comma- or space-separated, each once."""
    return list(dict.fromkeys(n for n in re.split(r"[\s,]+", text) if n))


def _current(found: Survey, index: int) -> str | None:
    """The step cell `index` opens now (None: it opens none)."""
    name = _opens(found.parsed[index])
    return name if name in found.drafts else None


def _form_errors(found: Survey, index: int, form: StepForm) -> dict[str, str]:
    """What is wrong with the form, field by field (the rules of tags.py and plan.py)."""
    errors: dict[str, str] = {}
    tags = found.parsed[index]
    current = _current(found, index)
    name = form.name.strip()
    if tags.role is not None and tags.role != "step":
        errors["name"] = (
            f"{cell_label(index)} is {_ROLE_WORDS[tags.role]} (tag {tags.role_tag!r}); "
            "remove that tag before making the cell a step"
        )
    elif not name:
        errors["name"] = "name: give the step a name, e.g. train"
    elif not STEP_NAME.fullmatch(name):
        errors["name"] = (
            f"name: {name!r} is not a step name; use 1 to 63 letters, digits, '_', '-' or '.' (e.g. 'train')"
        )
    elif name != current and name in found.drafts and not found.single:
        first = found.drafts[name].first_cell
        errors["name"] = f"name: step {name!r} already starts at {cell_label(first)}; pick another name"
    known = [n for n in found.drafts if n != current and not (found.single and n == MAIN)]
    after = split_names(form.after)
    for parent in after:
        if not STEP_NAME.fullmatch(parent):
            errors["after"] = f"after: {parent!r} is not a step name"
        elif parent == name:
            errors["after"] = f"after: step {name!r} cannot run after itself"
        elif parent not in known:
            errors["after"] = f"after: {parent!r} names no step{suggest(parent, known)}"
        if "after" in errors:
            break
    if "after" not in errors and "name" not in errors and after:
        # The graph as it would be: plan the edited tags and look for a cycle through this step.
        edited = [dict(c) for c in found.cells]
        for cell, tags_after in _apply(found, index, form).items():
            edited[cell] = {**edited[cell], "metadata": {**(edited[cell].get("metadata") or {}), "tags": tags_after}}
        loops = _cycles(_through(survey({"cells": edited, "metadata": {}}).drafts, name))
        if loops:
            why = loops[0].message.partition(": ")[2].replace("form a cycle", "would form a cycle", 1)
            errors["after"] = "after: " + why.replace("none of them can start", "none of them could start", 1)
    for field in ("gpu", "memory", "cpu", "timeout", "retries"):
        value = getattr(form, field).strip()
        if not value:
            continue
        try:
            _PARSERS[field](value, field)
        except ValidationError as exc:
            errors[field] = exc.message
        except (ValueError, ArithmeticError):
            errors[field] = f"{field}: {value[:20]!r}... is not a sensible {field}"
    image = form.image.strip()
    if any(c.isspace() for c in image):
        errors["image"] = f"image: {image!r} has spaces; give an image reference such as python:3.11-slim"
    return errors


def _through(drafts: dict[str, Any], name: str) -> dict[str, Any]:
    """The steps on a cycle with step `name`: those it runs after that also run after it."""

    def reach(start: str, parents: dict[str, list[str]]) -> set[str]:
        seen, todo = {start}, [start]
        while todo:
            for parent in parents.get(todo.pop(), []):
                if parent in drafts and parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
        return seen

    up = {n: list(d.after) for n, d in drafts.items()}
    down: dict[str, list[str]] = {}
    for n, parents in up.items():
        for parent in parents:
            down.setdefault(parent, []).append(n)
    return {n: drafts[n] for n in reach(name, up) & reach(name, down)} if name in drafts else {}


_PARSERS = {
    "gpu": quantity.parse_gpu,
    "memory": quantity.parse_memory,
    "cpu": quantity.parse_cpu,
    "timeout": quantity.parse_duration,
    "retries": quantity.parse_retries,
}


def _limit_field(key: str) -> str | None:
    """The GPU/memory/CPU field a Kale ``limit:KEY:VALUE`` sets, if any (as tags.apply_limit reads it)."""
    return "gpu" if key.endswith("/gpu") else key if key in ("memory", "cpu") else None


def _is_step_setting(tag: str) -> bool:
    """Whether `tag` is one the step editor owns (it rewrites them; every other tag is kept)."""
    prefix, sep, value = tag.partition(":")
    if not sep:
        return False
    if prefix in ("after", "prev") or prefix in SETTING_NAMES:
        return True
    return prefix == "limit" and _limit_field(value.rpartition(":")[0]) is not None


def _is_step_tag(tag: str) -> bool:
    return tag.startswith(("step:", "block:"))


def canonical_tags(form: StepForm) -> list[str]:
    """The tags of a step form, in order: ``step:``, ``after:``, then the settings."""
    out = [f"step:{form.name.strip()}", *(f"after:{a}" for a in split_names(form.after))]
    for field in SETTING_NAMES:
        value = re.sub(r"\s+", "", getattr(form, field))
        if value:
            out.append(f"{field}:{value}")
    return out


def _apply(found: Survey, index: int, form: StepForm) -> dict[int, list[str]]:
    """Tags to write when the editor saves `form` on cell `index`: the cell gets the canonical
    tags first and keeps every other tag; step settings on other cells of the step move to it;
    a renamed step is renamed in every ``after:``/``prev:`` and in the cells that reopen it."""
    old = _current(found, index)
    name = form.name.strip()
    kept = [t for t in _tag_list(found.cells[index]) if not _is_step_tag(t) and not _is_step_setting(t)]
    changes = {index: canonical_tags(form) + kept}
    members = set(found.drafts[old].cells) if old is not None else set()
    for i in found.parsed:
        if i == index:
            continue
        tags = _tag_list(found.cells[i])
        if i in members:
            tags = [t for t in tags if not _is_step_setting(t)]
            if old != name:
                tags = [f"step:{name}" if t in (f"step:{old}", f"block:{old}") else t for t in tags]
        if old is not None and old != name:
            renamed = [f"after:{name}" if t in (f"after:{old}", f"prev:{old}") else t for t in tags]
            tags = [t for k, t in enumerate(renamed) if renamed.index(t) == k or not t.startswith("after:")]
        changes[i] = tags
    return changes


def _remove(found: Survey, index: int) -> dict[int, list[str]]:
    """Tags to write when "Remove step" is pressed on cell `index`: the cell loses its step tag
    and step settings (it joins the block above again); when no other cell opens that step, the
    ``after:``/``prev:`` tags naming it go too."""
    name = _current(found, index)
    if name is None:
        return {}
    changes = {index: [t for t in _tag_list(found.cells[index]) if not _is_step_tag(t) and not _is_step_setting(t)]}
    others = [i for i in found.drafts[name].cells if i != index and _opens(found.parsed[i]) == name]
    if not others:
        for i in found.parsed:
            if i != index:
                changes[i] = [t for t in _tag_list(found.cells[i]) if t not in (f"after:{name}", f"prev:{name}")]
    return changes


__all__ = ["MAX_CELLS", "StepForm", "TagCheckSpec", "canonical_tags", "check_notebook", "split_names"]
