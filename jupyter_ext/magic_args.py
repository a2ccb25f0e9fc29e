"""The `%%remote` argument line: `gpu=2 memory=16Gi --in df,model --out model --async`.

Both `key=value` and `--key value` (or `--key=value`) are accepted. Anything else is a usage
error that names the argument, and nothing is submitted. Values are validated here, once,
with the same parsers the API uses, so `gpu=two` fails before any job exists.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from .errors import ValidationError
from .models import Resources, parse

VALUED = ("gpu", "memory", "cpu", "image", "timeout", "retries", "backend", "in", "out", "name")
FLAGS = ("async",)
USAGE = (
    "usage: %%remote [gpu=N] [memory=16Gi] [cpu=4] [image=REF] [timeout=2h] [retries=N] [backend=NAME] "
    "[--in a,b] [--out c,d] [--name NAME] [--async]"
)


@dataclass
class RemoteArgs:
    resources: dict[str, Any] = field(default_factory=dict)
    timeout: str | None = None
    retries: str | None = None
    backend: str | None = None
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    name: str | None = None
    asynchronous: bool = False


def _names(value: str, option: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    for n in names:
        if not n.isidentifier():
            raise ValidationError(f"--{option}: {n!r} is not a variable name\n{USAGE}", field=option)
    if not names:
        raise ValidationError(
            f"--{option}: give variable names separated by commas, e.g. --{option} df,model", field=option
        )
    return names


def parse_remote_args(line: str) -> RemoteArgs:
    """Parse the magic's line; raises ValidationError naming the offending argument."""
    try:
        tokens = shlex.split(line)
    except ValueError as exc:
        raise ValidationError(f"cannot read the arguments ({exc})\n{USAGE}") from None
    values: dict[str, str] = {}
    flags: set[str] = set()
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("--"):
            key, eq, value = token[2:].partition("=")
            if key in FLAGS and not eq:
                flags.add(key)
                i += 1
                continue
            if key not in VALUED:
                raise ValidationError(f"unknown argument {token!r}\n{USAGE}", field=key)
            if not eq:
                if i + 1 >= len(tokens) or tokens[i + 1].startswith("--"):
                    raise ValidationError(f"argument {token!r} needs a value\n{USAGE}", field=key)
                value = tokens[i + 1]
                i += 1
        elif "=" in token:
            key, _, value = token.partition("=")
            if key not in VALUED:
                raise ValidationError(f"unknown argument {key!r}\n{USAGE}", field=key)
        else:
            raise ValidationError(
                f"unexpected argument {token!r}; write key=value or --key value\n{USAGE}", field=token
            )
        if key in values:
            raise ValidationError(f"argument {key!r} is given twice", field=key)
        values[key] = value
        i += 1
    args = RemoteArgs(asynchronous="async" in flags)
    resources: dict[str, Any] = {k: values[k] for k in ("gpu", "memory", "cpu", "image") if k in values}
    if resources:
        parse(Resources, resources)  # raises naming e.g. `gpu`
        args.resources = resources
    if "timeout" in values or "retries" in values:
        from .models import JobSpec

        probe: dict[str, Any] = {"notebook": "x.ipynb"}
        probe.update({k: values[k] for k in ("timeout", "retries") if k in values})
        parse(JobSpec, probe)
        args.timeout, args.retries = values.get("timeout"), values.get("retries")
    args.backend = values.get("backend")
    args.name = values.get("name")
    if "in" in values:
        args.inputs = _names(values["in"], "in")
    if "out" in values:
        args.outputs = _names(values["out"], "out")
    return args
