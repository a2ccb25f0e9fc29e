"""The parameters a notebook declares: the assignments of its ``parameters`` cells.

The submit dialog prefills one input per parameter, so each comes with its value as JSON
when it is a plain literal (numbers, text, booleans, None, lists and dicts of them) and
with the source text otherwise (``os.getcwd()`` cannot be shown as a value). papermill's
own `inspect` reads lines with a regex and glues a following statement onto a list
literal; `ast` reads what Python reads.
"""

from __future__ import annotations

import ast
import difflib
import io
import json
import tokenize
from collections.abc import Mapping
from typing import Any

from ..errors import ValidationError
from .plan import cell_source
from .tags import BARE_TAGS

PARAMETER_TAGS = tuple(tag for tag, role in BARE_TAGS.items() if role == "parameters")


def _comments(source: str) -> dict[int, str]:
    """Line number -> the comment at the end of that line."""
    found: dict[int, str] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                found[token.start[0]] = token.string.lstrip("#").strip()
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return found


def _literal(node: ast.expr) -> tuple[bool, Any]:
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):  # tuples of sets, complex numbers, nan...
        return False, None
    return True, value


def _type_name(value: Any, literal: bool, annotation: ast.expr | None, source: str) -> str:
    if annotation is not None:
        return ast.get_source_segment(source, annotation) or "expression"
    if not literal:
        return "expression"
    return "None" if value is None else type(value).__name__


def cell_parameters(source: str, cell: int) -> list[dict[str, Any]]:
    """The top-level `name = value` / `name: type = value` statements of one cell, in order."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    comments = _comments(source)
    found: list[dict[str, Any]] = []
    for statement in tree.body:
        annotation: ast.expr | None = None
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, value_node = statement.targets[0], statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            target, value_node, annotation = statement.target, statement.value, statement.annotation
        else:
            continue
        if not isinstance(target, ast.Name):
            continue
        literal, value = _literal(value_node)
        found.append(
            {
                "name": target.id,
                "value": value if literal else None,
                "literal": literal,
                "default": ast.get_source_segment(source, value_node) or "",
                "type": _type_name(value, literal, annotation, source),
                "help": comments.get(statement.end_lineno or statement.lineno, ""),
                "cell": cell,
            }
        )
    return found


def notebook_parameters(nb: Any) -> list[dict[str, Any]]:
    """Every parameter of the notebook's parameters cells; a later assignment of a name wins."""
    by_name: dict[str, dict[str, Any]] = {}
    for index, cell in enumerate(nb.get("cells", []) or []):
        if cell.get("cell_type") != "code":
            continue
        tags = (cell.get("metadata") or {}).get("tags") or []
        if not isinstance(tags, list) or not any(t in PARAMETER_TAGS for t in tags if isinstance(t, str)):
            continue
        for parameter in cell_parameters(cell_source(cell), index):
            by_name.pop(parameter["name"], None)
            by_name[parameter["name"]] = parameter
    return list(by_name.values())


def _parameters_cells(nb: Any) -> list[str]:
    sources = []
    for cell in nb.get("cells", []) or []:
        if cell.get("cell_type") != "code":
            continue
        tags = (cell.get("metadata") or {}).get("tags") or []
        if isinstance(tags, list) and any(t in PARAMETER_TAGS for t in tags if isinstance(t, str)):
            sources.append(cell_source(cell))
    return sources


def _bound(target: ast.expr) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Tuple | ast.List):
        return [name for element in target.elts for name in _bound(element)]
    if isinstance(target, ast.Starred):
        return _bound(target.value)
    return []


def declared_names(source: str) -> set[str] | None:
    """Every name a parameters cell binds at top level (`a, b = 1, 2` too); None when the cell is
    not Python even with its IPython lines (`%matplotlib`, `!pip`) left out."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        lines = ["pass" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
        try:
            tree = ast.parse("\n".join(lines))
        except SyntaxError:
            return None
    names: set[str] = set()
    for statement in tree.body:
        if isinstance(statement, ast.Assign):
            for target in statement.targets:
                names.update(_bound(target))
        elif isinstance(statement, ast.AnnAssign | ast.AugAssign):
            names.update(_bound(statement.target))
    return names


def check_parameters(nb: Any, given: Mapping[str, Any], notebook: str = "the notebook") -> None:
    """Refuse parameter names the notebook does not declare, before anything runs (papermill would
    only log "Passed unknown parameter" and run with the defaults). Each unknown name is reported
    with the notebook's parameters, closest first."""
    if not given:
        return
    sources = _parameters_cells(nb)
    first = next(iter(given))
    if not sources:
        listed = ", ".join(repr(n) for n in given)
        raise ValidationError(
            f"parameters: {notebook} has no parameters cell, so {listed} would change nothing; tag the cell "
            "that sets the defaults 'parameters' (in JupyterLab: select it, open the property inspector "
            "(the gear icon in the right sidebar) and add the tag 'parameters'), or run it without parameters",
            field=f"parameters.{first}",
        )
    declared: set[str] = set()
    for source in sources:
        names = declared_names(source)
        if names is None:
            return  # a cell we cannot read: let papermill decide, as it would without us
        declared |= names
    unknown = [name for name in given if name not in declared]
    if not unknown:
        return
    known = sorted(declared)
    lines = []
    for name in unknown:
        ranked = difflib.get_close_matches(name, known, n=len(known), cutoff=0.0)
        ranked += [k for k in known if k not in ranked]
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        its = f"did you mean {close[0]!r}? Its" if close else "its"
        lines.append(
            f"{name!r} is not a parameter of {notebook}; {its} parameters are (closest first): " + ", ".join(ranked)
        )
    if not known:
        lines = [f"{name!r} is not a parameter of {notebook}: its parameters cell sets nothing" for name in unknown]
    raise ValidationError(f"parameters.{unknown[0]}: " + "; ".join(lines), field=f"parameters.{unknown[0]}")


__all__ = ["cell_parameters", "check_parameters", "declared_names", "notebook_parameters"]
