"""Shared fixtures: example notebooks, OpenAPI validation."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

pytest_plugins = ["pytest_jupyter.jupyter_server"]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SPEC = yaml.safe_load((ROOT / "jupyter_ext" / "openapi.yaml").read_text())


def check_response(path: str, method: str, status: int, body: Any) -> None:
    """Validate a response body against openapi.yaml (path is the spec's template, e.g. /jobs/{job_id})."""
    operation = SPEC["paths"][path][method.lower()]
    assert str(status) in operation["responses"], f"{method} {path} -> {status} is not documented"
    response = operation["responses"][str(status)]
    if "$ref" in response:
        response = SPEC["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
    content = response.get("content", {}).get("application/json")
    if content is None:
        return
    schema = {**content["schema"], "components": SPEC["components"]}
    Draft202012Validator(schema).validate(body)


@pytest.fixture
def notebooks(tmp_path: Path) -> Path:
    """A server root holding copies of the example notebooks plus test notebooks."""
    root = tmp_path / "root"
    root.mkdir()
    for nb in EXAMPLES.glob("*.ipynb"):
        shutil.copy(nb, root / nb.name)
    from tests.notebooks import write_test_notebooks

    write_test_notebooks(root)
    return root


_SERVER_ENV = ("JUPYTER_EXT_SERVER_URL", "JUPYTER_EXT_TOKEN", "JUPYTER_EXT_ROOT_DIR", "JUPYTERHUB_USER")


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Never touch the developer's own job database; no server address leaks between tests
    (a server extension started in this process publishes its address for its kernels)."""
    monkeypatch.setenv("JUPYTER_EXT_DATA_DIR", str(tmp_path / "jupyter-ext-data"))
    monkeypatch.setenv("JUPYTER_EXT_KEEP_WARM", "0")  # no runner outlives a command (test_keep_warm.py turns it on)
    for name in _SERVER_ENV:
        os.environ.pop(name, None)
    yield
    for name in _SERVER_ENV:
        os.environ.pop(name, None)


@pytest.fixture
def server(notebooks: Path, tmp_path: Path) -> Any:
    """A real `jupyter server` process with jupyter-ext (started by the test with .start())."""
    from tests.server.realserver import Server

    home = tmp_path / "home"
    home.mkdir()
    srv = Server(notebooks, tmp_path / "data", home)
    yield srv
    srv.stop()


@pytest.fixture
def make(tmp_path: Path, jp_asyncio_loop: Any) -> Any:
    """Factory of in-process orchestrators on the local backend (see tests/harness.py)."""
    from tests.harness import Harness

    made: list[Any] = []

    async def factory(**backend: Any) -> Any:
        h = Harness(tmp_path, tmp_path / "data", **backend)
        await h.orch.start()
        made.append(h)
        return h

    yield factory

    async def cleanup() -> None:
        for h in made:
            # A test that failed half way leaves its jobs running (steps outlive their server by
            # design, to be adopted): cancel them, so no runner or kernel outlives the test.
            for job in await h.store.list_jobs(statuses=("queued", "running")):
                try:
                    await h.orch.cancel(job["id"], None)
                    await asyncio.wait_for(h.orch.wait(job["id"]), 120)
                except Exception:  # noqa: BLE001 - clean-up goes on; the test already said what failed
                    pass
            await h.orch.stop()
            await h.store.close()

    jp_asyncio_loop.run_until_complete(cleanup())
