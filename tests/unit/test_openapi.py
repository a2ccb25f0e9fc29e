"""The shipped OpenAPI description is itself valid and covers every route the server serves."""

from __future__ import annotations

import re

import pytest
import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from jupyter_ext import reasons
from jupyter_ext.contract import REASONS
from jupyter_ext.errors import ValidationError
from jupyter_ext.handlers import API, NoRouteHandler, handlers
from jupyter_ext.models import parse
from jupyter_ext.notebook.check import TagCheckSpec
from tests.conftest import ROOT, SPEC

SPEC_FILE = ROOT / "jupyter_ext" / "openapi.yaml"


def test_spec_is_valid_openapi() -> None:
    validate(SPEC)


def test_every_route_is_documented() -> None:
    documented = set(SPEC["paths"])
    assert handlers[-1][1] is NoRouteHandler, "the catch-all (our JSON 404) comes last"
    for pattern, handler in handlers:
        if handler is NoRouteHandler:
            continue
        path = pattern.removeprefix(API)
        path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", path)
        assert path in documented, f"{path} is served but not in openapi.yaml"


def test_the_reason_codes_are_contract_reasons() -> None:
    """`Reason` (a step's `error.reason`, a failing `step.end`'s and a diagnostic `log`'s `reason`)
    lists exactly contract.REASONS, parsed from the shipped YAML itself."""
    spec = yaml.safe_load(SPEC_FILE.read_text())
    schemas = spec["components"]["schemas"]
    assert schemas["Reason"]["enum"] == list(REASONS)
    ref = {"$ref": "#/components/schemas/Reason"}
    assert schemas["StepError"]["properties"]["reason"] == ref
    assert schemas["StepError"]["required"] == ["message"], "a not_run step's error has words and no code"
    assert schemas["Event"]["properties"]["reason"]["$ref"] == ref["$ref"]
    step_error = {"$ref": "#/components/schemas/StepError"}
    for where in (schemas["Step"], schemas["Job"], schemas["Event"]):
        assert step_error in where["properties"]["error"]["oneOf"]


def test_step_errors_as_the_server_makes_them_fit_the_schema() -> None:
    validator = Draft202012Validator({"$ref": "#/components/schemas/StepError", "components": SPEC["components"]})
    made = [
        reasons.error(reasons.TIMEOUT, reasons.timeout_words("train", 7200)),
        reasons.step_error(
            {"reason": "exception", "cell_index": 2, "cell_id": "a1", "ename": "ValueError", "evalue": "bad"}, "s"
        ),
        reasons.step_error({"reason": "oom", "cell_index": None, "limit_bytes": 2**30, "signal": "SIGKILL"}, "s"),
        {**reasons.error(reasons.LOST, "gone"), "step": "train"},
        {"message": reasons.not_run_words("train", "failed")},
    ]
    for error in made:
        validator.validate(error)
    for code in REASONS:
        validator.validate(reasons.error(code, "words"))
    assert not validator.is_valid({"reason": "segfault", "message": "x"}), "a code outside REASONS"
    assert not validator.is_valid({"reason": "oom"}), "no words"


# Bodies of POST tags/check: the schema and the server's model (notebook/check.py) agree on each.
_CELLS = [{"cell_type": "code", "metadata": {"tags": ["step:a"]}}]
_TAG_CHECK_BODIES: list[tuple[object, bool]] = [
    ({"cells": _CELLS}, True),
    ({"cells": _CELLS, "edit": None, "metadata": {}}, True),
    ({"cells": _CELLS, "edit": {"cell": 0, "form": {"name": "a"}}}, True),
    ({"cells": _CELLS, "edit": {"cell": 0, "form": {"name": "a"}, "remove": False}}, True),
    ({"cells": _CELLS, "edit": {"cell": 0, "remove": True}}, True),
    ({"cells": _CELLS, "edit": {"cell": 2.0, "remove": True}}, True),  # 2.0 is a JSON integer
    ({"cells": [{"cell_type": "code", "id": "x", "source": "1"}]}, True),  # other nbformat keys pass
    ({}, False),
    ({"cells": _CELLS, "other": 1}, False),
    ({"cells": [{"metadata": {}}]}, False),
    ({"cells": [{"cell_type": 3}]}, False),
    ({"cells": [{"cell_type": "code", "metadata": None}]}, False),
    ({"cells": _CELLS, "metadata": None}, False),
    ({"cells": _CELLS, "edit": {"cell": "0", "remove": True}}, False),
    ({"cells": _CELLS, "edit": {"cell": True, "remove": True}}, False),
    ({"cells": _CELLS, "edit": {"cell": 1.5, "remove": True}}, False),
    ({"cells": _CELLS, "edit": {"cell": -1, "remove": True}}, False),
    ({"cells": _CELLS, "edit": {"cell": 0, "remove": "yes"}}, False),
    ({"cells": _CELLS, "edit": {"cell": 0, "remove": 1}}, False),
    ({"cells": _CELLS, "edit": {"cell": 0, "remove": True, "form": None}}, False),
    ({"cells": _CELLS, "edit": {"cell": 0, "remove": True, "form": {}}}, False),
    ({"cells": _CELLS, "edit": {"cell": 0, "form": None}}, False),
    ({"cells": _CELLS, "edit": {"cell": 0}}, False),
    ({"cells": _CELLS, "edit": {"cell": 0, "form": {"name": 1}}}, False),
    ({"cells": _CELLS, "edit": {"cell": 0, "form": {"colour": "red"}}}, False),
    ({"cells": _CELLS, "edit": {"cell": 0, "form": {"name": "a" * 1000 + " "}}}, False),
]


@pytest.mark.parametrize(("body", "valid"), _TAG_CHECK_BODIES)
def test_tag_check_schema_and_server_agree(body: object, valid: bool) -> None:
    schema = {**SPEC["paths"]["/tags/check"]["post"]["requestBody"]["content"]["application/json"]["schema"]}
    assert Draft202012Validator({**schema, "components": SPEC["components"]}).is_valid(body) is valid
    try:
        parse(TagCheckSpec, body)
    except ValidationError as exc:
        assert not valid, exc.message
        assert exc.field, "a refused body names the field"
    else:
        assert valid, "the server takes what the schema forbids"
