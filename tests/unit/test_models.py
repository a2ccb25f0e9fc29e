"""Validation at the edge: every error names the field and says what is valid."""

from __future__ import annotations

import json

import pytest

from jupyter_ext.cli import parse_value
from jupyter_ext.errors import ValidationError
from jupyter_ext.models import JobSpec, PlanSpec, Resources, parse


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


# -- issue 12: inputs that broke the server, refused at the edge (POST jobs, POST plan, the CLI's -p) ------------
def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("body", "field", "text"),
    [
        ({"notebook": "a.ipynb", "parameters": {"class": 1}}, "parameters.class", "'class' is a Python keyword"),
        ({"notebook": "a.ipynb", "parameters": {"a-b": 1}}, "parameters.a-b", "not a Python identifier"),
        ({"notebook": "a.ipynb", "parameters": {"x": _nested(33)}}, "parameters.x", "more than 32 levels deep"),
        ({"notebook": "a.ipynb", "parameters": {"x": [0] * 100_001}}, "parameters.x", "more than 100,000 values"),
        ({"notebook": "a.ipynb", "parameters": {"x": "y" * 1_000_001}}, "parameters.x", "1,000,000 bytes"),
        ({"notebook": "a" * 300 + ".ipynb"}, "notebook", "longer than 255 bytes"),
        ({"notebook": "é" * 130 + ".ipynb"}, "notebook", "longer than 255 bytes"),  # 260 bytes in UTF-8
        ({"notebook": "d/" * 600 + "a.ipynb"}, "notebook", "at most 1024"),
        ({"cell": {"source": "1", "workdir": "w" * 256}}, "cell.workdir", "longer than 255 bytes"),
        ({"cell": {"source": "1", "workdir": "w\x00"}}, "cell.workdir", "NUL"),
        ({"cell": {"source": "1", "inputs": {"for": "AA=="}}}, "cell.inputs", "'for' is a Python keyword"),
        ({"notebook": "a.ipynb", "resources": {"gpus": 1}}, "resources.gpus", "cpu, extra_limits, gpu, image, memory"),
        ({"cell": {"sorce": "1"}}, "cell.source", "cell.sorce: unknown field; allowed fields are inputs, outputs,"),
        ({}, "notebook", "notebook: this field is required"),
        ({"notebook": "a.ipynb", "cell": {"source": "1"}}, "notebook", "either notebook or cell"),
    ],
)
def test_hostile_inputs_are_refused_naming_the_field(body: dict, field: str, text: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse(JobSpec, body)
    assert info.value.field == field and text in str(info.value), str(info.value)[:300]
    assert len(str(info.value)) < 1000, "values are not echoed in full"


def test_a_bad_cell_is_reported_as_itself_only() -> None:
    with pytest.raises(ValidationError) as info:
        parse(JobSpec, {"cell": {"source": 1}})
    assert [d["field"] for d in info.value.details] == ["cell.source"], info.value.details


def test_parameters_within_the_bounds_pass() -> None:
    spec = parse(JobSpec, {"notebook": "a.ipynb", "parameters": {"x": _nested(32), "match": [0] * 99_000}})
    assert spec.parameters["match"] == [0] * 99_000  # a soft keyword is a name a notebook can assign


def test_cli_parameters_go_through_the_same_check() -> None:
    """`jupyter-ext run -p class 1` builds this spec and parses it as JobSpec (session.InProcessSession.submit)."""
    with pytest.raises(ValidationError) as info:
        parse(JobSpec, {"notebook": "a.ipynb", "parameters": {"class": parse_value("1")}})
    assert info.value.field == "parameters.class"


def test_echoed_values_are_cut() -> None:
    with pytest.raises(ValidationError) as info:
        parse(JobSpec, {"notebook": "x" * 10_000_000})
    body = json.dumps(info.value.to_dict())
    assert len(body) < 1000 and "10000000 characters long" in body
    with pytest.raises(ValidationError) as info:
        parse(JobSpec, {"notebook": "a.ipynb", "resources": {"memory": "9" * 10_000_000 + "GG"}})
    body = json.dumps(info.value.to_dict())
    assert len(body) < 2000 and "…(10000002 characters)" in str(info.value) and "use e.g." in body


@pytest.mark.parametrize(
    ("body", "field", "text"),
    [
        ({"notebook": "a.ipynb", "backend": []}, "backend", "valid string"),
        ({"notebook": "a\x00.ipynb"}, "notebook", "NUL"),
        ({"notebook": "a" * 300 + ".ipynb"}, "notebook", "longer than 255 bytes"),
        ({"notebook": "a.txt"}, "notebook", "'a.txt' is not a notebook; give a path ending in .ipynb"),
        ({"notebook": "a.ipynb", "cells": []}, "cells", "unknown field; allowed fields are backend, notebook"),
    ],
)
def test_plan_spec_refuses_what_job_spec_refuses(body: dict, field: str, text: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse(PlanSpec, body)
    assert info.value.field == field and text in str(info.value)


def test_spaces_around_the_notebook_path_are_dropped_by_jobs_and_plan_alike() -> None:
    assert parse(JobSpec, {"notebook": "  a.ipynb\n"}).notebook == "a.ipynb"
    assert parse(PlanSpec, {"notebook": "  a.ipynb\n"}).notebook == "a.ipynb"
