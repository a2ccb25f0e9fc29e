"""Validation at the edge: every error names the field and says what is valid."""

from __future__ import annotations

import pytest

from jupyter_ext.cli import parse_value
from jupyter_ext.errors import ValidationError
from jupyter_ext.models import JobSpec, Resources, parse


@pytest.mark.parametrize(
    ("body", "field", "text"),
    [
        ({"notebook": "a.ipynb", "resources": {"gpu": -1}}, "resources.gpu", "negative"),
        ({"notebook": "a.ipynb", "resources": {"gpu": "two"}}, "resources.gpu", "not a whole number"),
        ({"notebook": "a.ipynb", "resources": {"memory": "16GG"}}, "resources.memory", "not a Kubernetes quantity"),
        ({"notebook": "a.ipynb", "resources": {"cpu": "0.0001"}}, "resources.cpu", "finer than a millicore"),
        ({"notebook": "a.ipynb", "resources": {"image": "has space"}}, "resources.image", "not an image reference"),
        ({"notebook": "a.ipynb", "timeout": "soon"}, "timeout", "not a duration"),
        ({"notebook": "a.ipynb", "retries": -1}, "retries", "not a whole number of retries"),
        ({"notebook": "a.txt"}, "notebook", "ending in .ipynb"),
        ({"notebook": "a.ipynb", "idempotency_key": ""}, "idempotency_key", "at least 1"),
    ],
)
def test_errors_name_the_field(body: dict, field: str, text: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse(JobSpec, body)
    assert info.value.field == field and text in str(info.value) and str(info.value).startswith(field)


def test_valid_spec_normalises() -> None:
    spec = parse(JobSpec, {"notebook": "a.ipynb", "timeout": "1h30m", "resources": {"gpu": "2", "memory": "16Gi"}})
    assert spec.timeout == 5400 and spec.resources is not None and spec.resources.gpu == 2
    assert spec.resources.memory_bytes() == 16 * 2**30


def test_resources_merge_over_defaults() -> None:
    base = Resources(gpu=1, memory="8Gi", extra_limits={"a": "1"})
    mine = Resources.model_validate({"memory": "16Gi", "extra_limits": {"b": "2"}})
    merged = mine.merged_over(base)
    assert merged.gpu == 1 and merged.memory == "16Gi" and merged.extra_limits == {"a": "1", "b": "2"}


@pytest.mark.parametrize(
    ("raw", "value"),
    [("5", 5), ("0.5", 0.5), ("true", True), ("True", True), ("None", None), ("[1, 2]", [1, 2]), ("hello", "hello")],
)
def test_cli_parameter_values(raw: str, value: object) -> None:
    assert parse_value(raw) == value
