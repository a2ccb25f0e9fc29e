"""Nothing is kept forever (issue 12): the executed HTML is made when asked for, jobs are deleted
with their files (DELETE, prune, c.JupyterExt.keep_jobs) and only ever the user's own, and uploads
no job took expire. Waits are on conditions with generous deadlines, never on timing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tests.conftest import check_response
from tests.harness import until

pytestmark = pytest.mark.slow

KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


@pytest.fixture
def jp_server_config(data_dir: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    extra = getattr(request, "param", {})
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_ext": True}},
        "JupyterExt": {"data_dir": str(data_dir), **extra},
        "LocalBackend": {"cancel_grace": 2.0, "gpus": []},
    }


def ext(jp_serverapp: Any) -> Any:
    return jp_serverapp.web_app.settings["jupyter_ext"]


def html_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.html"))


async def test_the_executed_html_is_listed_and_made_when_first_downloaded(
    api: Any, data_dir: Path, notebooks: Path
) -> None:
    job = await api.submit("quick.ipynb")
    assert (await api.wait(job["id"]))["status"] == "succeeded"
    job_dir = data_dir / "jobs" / job["id"]
    by_name = {a["name"]: a for a in (await api.call("GET", "jobs", job["id"], "artifacts"))["artifacts"]}
    assert by_name["executed.html"]["mime"] == "text/html" and by_name["executed.html"]["size"] == 0
    assert html_files(job_dir) == [], "no HTML is written until someone asks for it"
    first = await api.call("GET", "jobs", job["id"], "artifacts", "executed.html")
    assert first.headers["Content-Type"] == "text/html" and b"first 1" in first.body and b"<html" in first.body
    (made,) = html_files(job_dir)
    stamp = made.stat().st_mtime_ns
    listing = await api.call("GET", "jobs", job["id"], "artifacts")
    check_response("/jobs/{job_id}/artifacts", "GET", 200, listing)
    assert {a["name"]: a["size"] for a in listing["artifacts"]}["executed.html"] == len(first.body)
    again = await api.call("GET", "jobs", job["id"], "artifacts", "executed.html")
    assert again.body == first.body and made.stat().st_mtime_ns == stamp, "made once, then kept"

    cells = [
        new_code_cell("a = 20", metadata={"tags": ["step:load"]}),
        new_code_cell("print('total', a + 22)", metadata={"tags": ["step:report", "after:load"]}),
    ]
    nbformat.write(new_notebook(cells=cells, metadata=KERNEL), notebooks / "two.ipynb")
    two = await api.submit("two.ipynb")
    assert (await api.wait(two["id"]))["status"] == "succeeded"
    names = {a["name"] for a in (await api.call("GET", "jobs", two["id"], "artifacts"))["artifacts"]}
    assert {"load__executed.html", "report__executed.html", "job__executed.html"} <= names
    assert html_files(data_dir / "jobs" / two["id"]) == []
    combined = await api.call("GET", "jobs", two["id"], "artifacts", "job__executed.html")
    assert b"total 42" in combined.body


async def test_delete_and_prune_remove_only_your_finished_jobs_with_their_files(
    api: Any, jp_serverapp: Any, data_dir: Path
) -> None:
    store = ext(jp_serverapp).store
    old, new = await api.submit("quick.ipynb"), await api.submit("quick.ipynb")
    for job in (old, new):
        assert (await api.wait(job["id"]))["status"] == "succeeded"
    await store.update_job(old["id"], finished=time.time() - 3 * 86400)
    theirs, _ = await store.create_job(
        {"id": "theirs000001", "user": "someone-else", "name": "n", "notebook": "quick.ipynb", "backend": "local"},
        [{"name": "main", "spec": {"name": "main"}}],
    )
    await store.update_job(theirs["id"], status="succeeded", finished=time.time() - 3 * 86400)
    running = await api.submit("slow.ipynb", parameters={"ticks": 4000, "delay": 0.05})
    await api.stream(running["id"], until="cell.output")

    # Another user's job does not exist for you: not deleted, not listed, not pruned.
    await api.call("DELETE", "jobs", theirs["id"], expect=404)
    refused = await api.call("DELETE", "jobs", running["id"], expect=409)
    assert running["id"] in refused["message"] and f"jupyter-ext cancel {running['id']}" in refused["message"]

    dry = await api.call("POST", "jobs", "prune", body={"older_than": "2d", "dry_run": True})
    assert dry == {"deleted": [old["id"]], "dry_run": True}
    assert (data_dir / "jobs" / old["id"]).is_dir()
    pruned = await api.call("POST", "jobs", "prune", body={"older_than": "2d"})
    assert pruned == {"deleted": [old["id"]], "dry_run": False}
    await api.call("GET", "jobs", old["id"], expect=404)
    assert not (data_dir / "jobs" / old["id"]).exists(), "its step folders and artifacts went with it"
    await api.call("GET", "jobs", new["id"])

    everything = await api.call("POST", "jobs", "prune", body={"keep": 0})
    assert everything["deleted"] == [new["id"]], "running jobs are never pruned"
    assert not (data_dir / "jobs" / new["id"]).exists()
    assert (await store.get_job(theirs["id"]))["user"] == "someone-else"
    assert (await api.call("GET", "jobs", running["id"]))["status"] == "running"

    for body in ({}, {"older_than": "soon"}, {"keep": -1}, {"keep": 1, "extra": 1}, {"keep": 1, "dry_run": "no"}):
        await api.call("POST", "jobs", "prune", body=body, expect=400)
    await api.call("POST", "jobs", running["id"], "cancel")
    assert (await api.wait(running["id"]))["status"] == "cancelled"
    await api.call("DELETE", "jobs", running["id"], expect=204)
    assert not (data_dir / "jobs" / running["id"]).exists()


@pytest.mark.parametrize("jp_server_config", [{"keep_jobs": {"count": 1}, "cleanup_interval": 0.1}], indirect=True)
async def test_keep_jobs_deletes_old_finished_jobs_in_the_background(api: Any, data_dir: Path) -> None:
    ids = []
    for _ in range(3):
        job = await api.submit("quick.ipynb")
        assert (await api.wait(job["id"]))["status"] in ("succeeded",)
        ids.append(job["id"])

    async def only_the_newest() -> bool:
        # The row goes first, then the job's folder (in a thread): both must go.
        listed = [j["id"] for j in (await api.call("GET", "jobs"))["jobs"]]
        return listed == [ids[-1]] and not any((data_dir / "jobs" / i).exists() for i in ids[:-1])

    await until("keep_jobs to leave only the newest job, row and folder", only_the_newest)
    assert (data_dir / "jobs" / ids[-1]).is_dir()


@pytest.mark.parametrize("jp_server_config", [{"upload_ttl": 0.3, "cleanup_interval": 0.1}], indirect=True)
async def test_uploads_no_job_took_expire(api: Any, data_dir: Path) -> None:
    upload = await api.call("PUT", "uploads", body=b"\x80\x04K\x01." * 1000, expect=201)
    files = list((data_dir / "uploads").rglob(upload["upload"]))
    assert len(files) == 1 and files[0].stat().st_size == upload["size"]

    async def gone() -> bool:
        return not files[0].exists()

    await until("the upload to expire", gone)
    refused = await api.call(
        "POST",
        "jobs",
        body={"cell": {"source": "print(x)", "inputs": {"x": f"upload:{upload['upload']}"}}},
        expect=400,
    )
    assert "no upload" in refused["message"]
