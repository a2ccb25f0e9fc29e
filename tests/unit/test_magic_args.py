"""The %%remote argument line (pure parsing; the magic itself is tested with a real kernel)."""

from __future__ import annotations

import pytest

from jupyter_ext.errors import ValidationError
from jupyter_ext.magic_args import parse_remote_args


def test_both_spellings() -> None:
    a = parse_remote_args("gpu=2 memory=16Gi --in df,model --out model --async")
    b = parse_remote_args("--gpu 2 --memory=16Gi in=df,model --out model --async")
    for args in (a, b):
        assert args.resources == {"gpu": "2", "memory": "16Gi"}
        assert args.inputs == ["df", "model"] and args.outputs == ["model"] and args.asynchronous


def test_everything() -> None:
    args = parse_remote_args("cpu=500m image=python:3.11 timeout=1h retries=2 backend=local --name train")
    assert args.resources == {"cpu": "500m", "image": "python:3.11"}
    assert (args.timeout, args.retries, args.backend, args.name) == ("1h", "2", "local", "train")
    assert not args.asynchronous and args.inputs == []


def test_no_expansion_of_dollar_or_braces() -> None:
    assert parse_remote_args("--name '{x}$y'").name == "{x}$y"


@pytest.mark.parametrize(
    ("line", "field", "text"),
    [
        ("gpus=2", "gpus", "unknown argument 'gpus'"),
        ("--frobnicate", "frobnicate", "unknown argument '--frobnicate'"),
        ("gpu=two", "gpu", "gpu: 'two' is not a whole number of GPUs"),
        ("gpu=-1", "gpu", "negative"),
        ("memory=lots", "memory", "not a Kubernetes quantity"),
        ("timeout=soon", "timeout", "not a duration"),
        ("--in", "in", "needs a value"),
        ("--in 1x", "in", "'1x' is not a variable name"),
        ("stray", "stray", "unexpected argument 'stray'"),
        ("gpu=1 gpu=2", "gpu", "given twice"),
        ("--name 'unclosed", None, "cannot read the arguments"),
    ],
)
def test_usage_errors_name_the_argument(line: str, field: str | None, text: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_remote_args(line)
    assert text in str(info.value) and info.value.field == field
