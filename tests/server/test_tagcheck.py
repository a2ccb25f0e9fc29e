"""`POST tags/check`: the Lab's one source of the tag grammar (cell chips, step editor, a run's cells)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from tests.conftest import check_response


def code(*tags: Any) -> dict[str, Any]:
    return {"cell_type": "code", "metadata": {"tags": list(tags)}, "source": ""}


def markdown() -> dict[str, Any]:
    return {"cell_type": "markdown", "metadata": {}, "source": "notes"}


async def check(api: Any, cells: list[dict[str, Any]], **more: Any) -> dict[str, Any]:
    body = await api.call("POST", "tags", "check", body={"cells": cells, **more})
    check_response("/tags/check", "POST", 200, body)
    return body


async def test_good_tags_give_each_cell_its_step_and_the_steps_their_resources(api: Any) -> None:
    cells = [
        code("imports"),  # 0
        markdown(),  # 1
        code("step:load", "memory:2Gi", "hide-input"),  # 2
        code(),  # 3: continues load
        code("block:train", "prev:load", "limit:nvidia.com/gpu:2", "timeout:2h"),  # 4 (Kale's words)
        code("skip"),  # 5
    ]
    body = await check(api, cells, metadata={"jupyter_ext": {"image": "python:3.12-slim", "retries": 1}})
    assert body["problems"] == [] and not body["single"] and body["edit"] is None
    by_index = {c["index"]: c for c in body["cells"]}
    assert by_index[0] == {
        "index": 0,
        "tags": ["imports"],
        "role": "imports",
        "step": None,
        "opens": False,
        "problems": [],
    }
    assert by_index[1]["tags"] is None, "a markdown cell is no code cell"
    assert [(c["step"], c["opens"]) for c in body["cells"]] == [
        (None, False),
        (None, False),
        ("load", True),
        ("load", False),
        ("train", True),
        (None, False),
    ]
    load, train = body["steps"]
    assert load["cells"] == [2, 3] and load["openers"] == [2] and load["settings"] == {"memory": "2Gi"}
    assert load["resources"]["memory"] == "2Gi" and load["resources"]["image"] == "python:3.12-slim"
    assert load["retries"] == 1, "the notebook's defaults apply"
    assert train["after"] == ["load"] and train["settings"] == {"gpu": "2", "timeout": "2h"}
    assert train["limits"] == {"nvidia.com/gpu": "2"} and train["timeout"] == 7200.0
    assert body["edges"] == [{"source": "load", "target": "train"}]
    assert body["prelude_cells"] == [0] and body["skipped_cells"] == [5]
    # Untagged: one step, main, every code cell but skip and parameters.
    single = await check(api, [code("parameters"), code(), code("skip"), code()])
    assert single["single"] and [s["name"] for s in single["steps"]] == ["main"]
    assert single["steps"][0]["cells"] == [1, 3] and single["parameters_cells"] == [0]


@pytest.mark.parametrize(
    ("tag", "words"),
    [
        ("gpu:two", "cell 2: tag 'gpu:two' is invalid: 'two' is not a whole number of GPUs; use e.g. 2"),
        ("memory:-4Gi", "cell 2: tag 'memory:-4Gi' is invalid: '-4Gi' is negative"),
        ("timeout:soon", "cell 2: tag 'timeout:soon' is invalid: 'soon' is not a duration"),
        ("setp:train", "cell 2: tag 'setp:train' is not a jupyter-ext tag; did you mean 'step:train'?"),
        ("fuctions", "cell 2: tag 'fuctions' is not a jupyter-ext tag; did you mean 'functions'?"),
        ("Imports", "cell 2: tag 'Imports' is not a jupyter-ext tag; did you mean 'imports'? (tags are lower case)"),
        ("gpus:2", "cell 2: tag 'gpus:2' is not a jupyter-ext tag; did you mean 'gpu:2'?"),
        ("step", "cell 2: tag 'step' needs a value, e.g. 'step:train'"),
        ("step:bad name", "cell 2: tag 'step:bad name' has an invalid step name 'bad name'"),
        ("limit:gpu", "cell 2: tag 'limit:gpu' is not KEY:VALUE"),
        ("image:a b", "cell 2: tag 'image:a b' needs an image reference without spaces"),
    ],
)
async def test_each_bad_tag_names_its_cell_and_tag(api: Any, tag: str, words: str) -> None:
    body = await check(api, [markdown(), code("step:a", tag), code("step:b")])
    assert [p["message"][: len(words)] for p in body["problems"]] == [words]
    problem = body["problems"][0]
    assert problem["cell"] == 1 and problem["tag"] == tag
    assert body["cells"][1]["problems"] == [problem], "the problem is on its cell too"
    assert body["cells"][1]["step"] == "a" and body["cells"][2]["problems"] == []


async def test_unknown_after_cycles_and_cell_level_conflicts(api: Any) -> None:
    body = await check(api, [code("step:load"), code("step:train", "after:lod"), code("step:report", "after:nothing")])
    assert [(p["cell"], p["tag"], p["message"]) for p in body["problems"]] == [
        (1, "after:lod", "cell 2: tag 'after:lod' names no step; did you mean 'load'?"),
        (2, "after:nothing", "cell 3: tag 'after:nothing' names no step; steps are: 'load', 'train', 'report'"),
    ]
    assert body["steps"][1]["after"] == ["lod"] and body["edges"] == []

    body = await check(api, [code("step:a", "after:c"), code("step:b", "after:a"), code("step:c", "after:b")])
    (cycle,) = body["problems"]
    assert cycle["cell"] == 0 and cycle["tag"] == "after:c"
    assert cycle["message"].startswith("cell 1: steps 'a' -> 'b' -> 'c' -> 'a' form a cycle, so none of them can start")
    assert "'after:c' on cell 1" in cycle["message"]
    assert {(e["source"], e["target"]) for e in body["edges"]} == {("c", "a"), ("a", "b"), ("b", "c")}

    body = await check(api, [code("step:a", "gpu:1"), code("gpu:2"), code("imports", "step:b")])
    messages = [p["message"] for p in body["problems"]]
    assert any(m.startswith("cell 2: tag 'gpu:2' conflicts with tag 'gpu:1' on cell 1") for m in messages), messages
    assert any(m.startswith("cell 3: tags 'imports' and 'step:b' give the cell two roles") for m in messages)
    # Metadata problems name no cell.
    body = await check(api, [code("step:a")], metadata={"jupyter_ext": {"retires": 2}})
    assert [(p["cell"], p["message"]) for p in body["problems"]] == [
        (
            None,
            "notebook metadata.jupyter_ext.retires: unknown field; "
            "allowed fields are cache, image, resources, retries, timeout",
        )
    ]


async def test_the_step_editor_form_is_checked_and_its_tags_computed(api: Any) -> None:
    cells = [
        code("imports"),
        code("step:load", "cpu:2", "hide-input"),
        code("memory:1Gi"),  # a setting on a later cell of the step: moves to the opener
        code("step:train", "prev:load"),
        code("step:report", "after:train"),
    ]
    form = {
        "name": "fetch",
        "after": "",
        "gpu": "1",
        "memory": "4Gi",
        "cpu": "",
        "image": "",
        "timeout": "",
        "retries": "",
    }
    body = await check(api, cells, edit={"cell": 1, "form": form})
    assert body["edit"] == {
        "errors": {},
        "changes": [
            {"cell": 1, "tags": ["step:fetch", "gpu:1", "memory:4Gi", "hide-input"]},
            {"cell": 2, "tags": []},
            {"cell": 3, "tags": ["step:train", "after:fetch"]},
        ],
    }
    bad = {**form, "name": "train", "gpu": "two", "memory": "lots", "timeout": "2 hours please", "image": "a b"}
    errors = (await check(api, cells, edit={"cell": 1, "form": bad}))["edit"]["errors"]
    assert errors == {
        "name": "name: step 'train' already starts at cell 4; pick another name",
        "gpu": "gpu: 'two' is not a whole number of GPUs; use e.g. 2",
        "memory": errors["memory"],
        "timeout": errors["timeout"],
        "image": "image: 'a b' has spaces; give an image reference such as python:3.11-slim",
    }
    assert errors["memory"].startswith("memory: 'lots' is not a Kubernetes quantity")
    assert errors["timeout"].startswith("timeout: '2 hours please' is not a duration")
    edit = (await check(api, cells, edit={"cell": 1, "form": {**form, "name": "load", "after": "repotr"}}))["edit"]
    assert edit == {"errors": {"after": "after: 'repotr' names no step; did you mean 'report'?"}, "changes": []}
    edit = (await check(api, cells, edit={"cell": 1, "form": {**form, "name": "load", "after": "report"}}))["edit"]
    assert edit["errors"]["after"].startswith(
        "after: steps 'load' -> 'train' -> 'report' -> 'load' would form a cycle, so none of them could start"
    )
    edit = (await check(api, cells, edit={"cell": 0, "form": form}))["edit"]
    assert edit["errors"]["name"] == (
        "cell 1 is an imports cell (tag 'imports'); remove that tag before making the cell a step"
    )
    # Remove step: the cell joins the block above; after: tags naming the step go too.
    edit = (await check(api, cells, edit={"cell": 3, "remove": True}))["edit"]
    assert edit == {"errors": {}, "changes": [{"cell": 3, "tags": []}, {"cell": 4, "tags": ["step:report"]}]}


async def test_bad_bodies_are_refused_naming_the_field(api: Any) -> None:
    for body, field in (
        ({}, "cells"),
        ({"cells": "x"}, "cells"),
        ({"cells": [{"metadata": {}}]}, "cells.0.cell_type"),
        ({"cells": [code()], "edit": {"cell": 0}}, "edit"),
        ({"cells": [code()], "edit": {"cell": 0, "remove": True, "form": {}}}, "edit"),
        ({"cells": [code()], "extra": 1}, "extra"),
    ):
        error = await api.call("POST", "tags", "check", body=body, expect=400)
        check_response("/tags/check", "POST", 400, error)
        assert error["field"] == field, error
    error = await api.call(
        "POST", "tags", "check", body={"cells": [markdown()], "edit": {"cell": 0, "remove": True}}, expect=400
    )
    assert error["message"] == "edit.cell: cell 1 is not a code cell; the step editor edits code cells"
    error = await api.call(
        "POST", "tags", "check", body={"cells": [code()], "edit": {"cell": 5, "remove": True}}, expect=400
    )
    assert "is past the last cell" in error["message"]
    # Tags that are not a list of strings are problems of the cell, not a broken request.
    body = await check(api, [{"cell_type": "code", "metadata": {"tags": "step:a"}}, code(7, "skip")])
    assert [p["cell"] for p in body["problems"]] == [0, 1]


async def test_refused_without_credentials_or_xsrf(api: Any, jp_http_port: int, jp_base_url: str) -> None:
    url = f"http://localhost:{jp_http_port}{jp_base_url}jupyter-ext/api/tags/check"
    payload = json.dumps({"cells": [code("step:a")]})
    client = AsyncHTTPClient()
    with pytest.raises(HTTPClientError) as info:
        await client.fetch(url, method="POST", body=payload)
    assert info.value.code == 403 and info.value.response is not None
    check_response("/tags/check", "POST", 403, json.loads(info.value.response.body))
    # A browser's session: the login cookie, and the XSRF token on every POST.
    token_header = (await api.fetch("jupyter-ext", "api", "info", method="GET")).request.headers["Authorization"]
    token = token_header.split()[-1]
    login = await client.fetch(f"{url.rsplit('/jupyter-ext/', 1)[0]}/jupyter-ext/api/info?token={token}")
    cookies = "; ".join(c.split(";", 1)[0] for c in login.headers.get_list("Set-Cookie"))
    assert cookies, "the token in the URL logs the browser in with a cookie"
    with pytest.raises(HTTPClientError) as info:
        await client.fetch(url, method="POST", body=payload, headers={"Cookie": cookies})
    assert info.value.code == 403 and "xsrf" in info.value.response.body.decode().lower()
    xsrf = "0123456789abcdef" * 2
    ok = await client.fetch(
        url, method="POST", body=payload, headers={"Cookie": f"{cookies}; _xsrf={xsrf}", "X-XSRFToken": xsrf}
    )
    assert json.loads(ok.body)["steps"][0]["name"] == "a"


async def test_a_body_over_the_limit_is_refused(api: Any, jp_serverapp: Any) -> None:
    limit = jp_serverapp.web_app.settings["jupyter_ext"].max_request_bytes
    big = json.dumps({"cells": [code("x" * 1000)] * (limit // 1000 + 1)})
    error = await api.call("POST", "tags", "check", body=big, expect=413)
    check_response("/tags/check", "POST", 413, error)
    assert "max_request_bytes" in error["message"]
