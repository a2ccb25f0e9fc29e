"""The parameters a notebook declares: the assignments of its ``parameters`` cells.

The submit dialog prefills one input per parameter, so each comes with its value as JSON
when it is a plain literal (numbers, text, booleans, None, lists and dicts of them) and
with the source text otherwise (``os.getcwd()`` cannot be shown as a value). papermill's
own `inspect` reads lines with a regex and glues a following statement onto a list
literal; `ast` reads what Python reads.
"""

from __future__ import annotations

import ast
import io
import json
import tokenize
from typing import Any

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


__all__ = ["cell_parameters", "notebook_parameters"]
