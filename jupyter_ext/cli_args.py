"""The command line's values: `-p NAME VALUE` and `--sweep NAME=V1,V2` (`run`, and `schedule add`).

-p epochs 5                 -> 5            (numbers, booleans, None, JSON/Python literals as such)
-p name hello               -> "hello"      (anything else a string)
--sweep lr=0.1,0.01         -> {"lr": [0.1, 0.01]}
--sweep layers=[[64],[128]] -> {"layers": [[64], [128]]}  (values with commas: a JSON list)
"""

from __future__ import annotations

import argparse
import ast
import json
from typing import Any

from .errors import NotFound, ValidationError


# -- parameters -------------------------------------------------------------------------------------------------
def parse_value(raw: str) -> Any:
    """`-p name value`: numbers, booleans, None, JSON/Python literals as such; anything else a string."""
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(raw)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return raw


def parse_sweep(raw: str) -> tuple[str, list[Any]]:
    """`--sweep lr=0.1,0.01`: the name and its values, each parsed as a `-p` value. A value holding
    commas is written as a JSON list (`--sweep layers=[[64,64],[128]]`) or quoted (`'a,b'`)."""
    name, sep, rest = raw.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ValidationError(f"--sweep: {raw!r} is not NAME=V1,V2,...; e.g. --sweep lr=0.1,0.01", field="sweep")
    whole = parse_value(rest.strip()) if rest.strip().startswith("[") else None
    if isinstance(whole, list):
        return name, whole
    return name, [parse_value(part.strip()) for part in _split_commas(rest) if part.strip()]


def _split_commas(text: str) -> list[str]:
    """`text` cut at the commas outside brackets and quotes."""
    parts: list[str] = []
    current: list[str] = []
    depth, quote = 0, ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def sweep_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The `sweep`, `sweep_mode` and `sweep_parallel` of `run`'s spec from --sweep, --zip, --parallel."""
    if not args.sweep:
        if args.zip or args.parallel is not None:
            raise ValidationError("--zip and --parallel go with --sweep NAME=V1,V2,...", field="sweep")
        return {}
    sweep: dict[str, list[Any]] = {}
    for raw in args.sweep:
        name, values = parse_sweep(raw)
        if name in sweep:
            raise ValidationError(f"--sweep: {name!r} is given twice; list all its values once", field=f"sweep.{name}")
        sweep[name] = values
    spec: dict[str, Any] = {"sweep": sweep}
    if args.zip:
        spec["sweep_mode"] = "zip"
    if args.parallel is not None:
        spec["sweep_parallel"] = args.parallel
    return spec


def resolve_prefix(ids: list[str], given: str, what: str, listing: str) -> str:
    """An id, or the start of one as titles show it (`a1b2c3`): the one of `ids` (the user's jobs or
    schedules, `what`) that starts with it; several or none are said with the ids that would do,
    and `listing`, the command that lists them."""
    if len(given) >= 12 or not given:
        return given
    matches = [i for i in ids if str(i).startswith(given)]
    if len(matches) == 1:
        return str(matches[0])
    if not matches:
        raise NotFound(f"no {what} {given!r}: none of your {what} ids starts with it; {listing}")
    listed = ", ".join(matches[:10]) + (", ..." if len(matches) > 10 else "")
    raise ValidationError(f"{given!r} starts {len(matches)} {what} ids ({listed}); give more of the id")
