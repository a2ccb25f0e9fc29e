"""The shipped OpenAPI description is itself valid and covers every route the server serves."""

from __future__ import annotations

import re

from openapi_spec_validator import validate

from jupyter_ext.handlers import API, NoRouteHandler, handlers
from tests.conftest import SPEC


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
