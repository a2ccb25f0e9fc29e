"""`POST plan`: the submit dialog's preview of a notebook's steps, parameters and problems."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell

from jupyter_ext.notebook.parameters import cell_parameters
from tests.conftest import check_response
from tests.notebooks import _write


async def test_plan_lists_steps_cells_resources_and_parameters(api: Any, notebooks: Path) -> None:
    _write(
        notebooks,
        "pipeline.ipynb",
        [
            new_code_cell(
                "epochs = 3  # how long\nlr: float = 0.5\nname = 'run'\nseed = None\nstart = time.time()",
                metadata={"tags": ["parameters"]},
            ),
            new_markdown_cell("notes"),
            new_code_cell("data = list(range(epochs))", metadata={"tags": ["step:load", "memory:2Gi"]}),
            new_code_cell("total = sum(data)"),
            new_code_cell(
                "print(total)",
                metadata={"tags": ["block:train", "prev:load", "gpu:1", "timeout:2h", "retries:2", "hide-input"]},
            ),
        ],
    )
    plan = await api.call("POST", "plan", body={"notebook": "pipeline.ipynb"})
    check_response("/plan", "POST", 200, plan)
    assert plan["error"] is None and plan["backend"] == "local" and not plan["single"]
    nb = nbformat.read(notebooks / "pipeline.ipynb", as_version=4)
    load, train = plan["steps"]
    assert load["name"] == "load" and load["after"] == []
    assert load["cells"] == [{"index": 2, "id": nb.cells[2].id}, {"index": 3, "id": nb.cells[3].id}]
    assert load["resources"]["memory"] == "2Gi" and load["resources"]["gpu"] == 0
    assert train == {
        "name": "train",
        "after": ["load"],
        "cells": [{"index": 4, "id": nb.cells[4].id}],
        "resources": {"gpu": 1, "memory": None, "cpu": None, "image": None, "extra_limits": {}},
        "timeout": 7200.0,
        "retries": 2,
    }
    by_name = {p["name"]: p for p in plan["parameters"]}
    assert list(by_name) == ["epochs", "lr", "name", "seed", "start"]
    assert by_name["epochs"] == {
        "name": "epochs",
        "value": 3,
        "literal": True,
        "default": "3",
        "type": "int",
        "help": "how long",
        "cell": 0,
    }
    assert by_name["lr"]["type"] == "float" and by_name["name"]["value"] == "run"
    assert by_name["seed"]["type"] == "None" and by_name["seed"]["literal"] is True
    assert by_name["start"] == {
        "name": "start",
        "value": None,
        "literal": False,
        "default": "time.time()",
        "type": "expression",
        "help": "",
        "cell": 0,
    }
    # Nothing was stored.
    assert (await api.call("GET", "jobs"))["jobs"] == []


async def test_plan_reports_the_planner_refusal_naming_cell_and_tag(api: Any, notebooks: Path) -> None:
    _write(
        notebooks,
        "typo.ipynb",
        [
            new_code_cell("a = 1", metadata={"tags": ["parameters"]}),
            new_code_cell("x = a", metadata={"tags": ["step:one"]}),
            new_code_cell("y = 2", metadata={"tags": ["setp:two", "after:onee"]}),
        ],
    )
    plan = await api.call("POST", "plan", body={"notebook": "typo.ipynb"})
    check_response("/plan", "POST", 200, plan)
    assert plan["steps"] == [] and [p["name"] for p in plan["parameters"]] == ["a"]
    error = plan["error"]
    assert error["cell"] == 2 and error["reason"] == "Bad Request"
    tags = {d["tag"]: d["message"] for d in error["details"]}
    assert "did you mean 'step:two'" in tags["setp:two"]
    assert "names no step; did you mean 'one'" in tags["after:onee"]


async def test_plan_checks_the_backend_limits(api: Any, notebooks: Path) -> None:
    _write(notebooks, "big.ipynb", [new_code_cell("pass", metadata={"tags": ["step:huge", "gpu:8"]})])
    plan = await api.call("POST", "plan", body={"notebook": "big.ipynb"})
    check_response("/plan", "POST", 200, plan)
    assert (
        plan["error"]["step"] == "huge"
        and "asks for 8 GPUs but the local backend has 2 GPUs" in plan["error"]["message"]
    )


async def test_plan_refuses_bad_requests_like_submit_does(api: Any, notebooks: Path, tmp_path: Path) -> None:
    (tmp_path / "outside.ipynb").write_text((notebooks / "quick.ipynb").read_text())
    for body, status, text in [
        ({"notebook": "../outside.ipynb"}, 400, "leaves the server root"),
        ({"notebook": "missing.ipynb"}, 404, "does not exist"),
        ({"notebook": "quick.txt"}, 400, "notebook: 'quick.txt' is not a notebook; give a path ending in .ipynb"),
        ({"notebook": "quick.ipynb", "backend": "mars"}, 400, "'mars' is not configured"),
        ({"notebook": "quick.ipynb", "cells": []}, 400, "cells: unknown field"),
    ]:
        answer = await api.call("POST", "plan", body=body, expect=status)
        check_response("/plan", "POST", status, answer)
        assert text in answer["message"], answer
    (notebooks / "broken.ipynb").write_text("{not json")
    answer = await api.call("POST", "plan", body={"notebook": "broken.ipynb"}, expect=400)
    assert answer["field"] == "notebook" and "is not a valid notebook" in answer["message"]


async def test_plan_needs_authentication(jp_fetch: Any, api: Any) -> None:
    from tornado.httpclient import HTTPClientError

    try:
        await jp_fetch("jupyter-ext", "api", "plan", method="POST", body=b"{}", headers={"Authorization": ""})
    except HTTPClientError as exc:
        assert exc.code == 403
    else:  # pragma: no cover - the assertion below explains the failure
        raise AssertionError("an unauthenticated POST plan was answered")


def test_parameters_of_a_cell_that_does_not_parse_are_none() -> None:
    assert cell_parameters("x = (", 0) == []
    assert [p["name"] for p in cell_parameters("a, b = 1, 2\nc = d = 3\nx.y = 1\nz = {1, 2}\nw = 1j", 0)] == [
        "z",
        "w",
    ]
    assert [p["literal"] for p in cell_parameters("z = {1, 2}\nw = 1j\nv = float('nan')", 0)] == [False, False, False]
