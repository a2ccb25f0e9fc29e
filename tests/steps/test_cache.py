"""Cached steps end to end on the local backend, real kernels (jupyter_ext/cache.py)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from jupyter_ext.models import JobSpec
from jupyter_ext.users import local_user
from jupyter_ext.views import job_view
from tests.harness import stdout, until

pytestmark = pytest.mark.slow
KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
LOAD = (
    "import base64, random\nfrom IPython.display import Image, display\n"
    "data = list(range(n))\nprint('load', data, random.random())\n"
    f"display(Image(data=base64.b64decode('{PNG}')))"
)


def write(root: Path, name: str, report: str = "print('report', total)", report_tags: tuple[str, ...] = ()) -> str:
    """Three steps, cached by the notebook's metadata: load reads n, train reads lr, report neither.
    load prints a random number: a run of it is told from a replay by what it prints."""
    nb = new_notebook(metadata={**KERNEL, "jupyter_ext": {"cache": True}})
    for tags, source in [
        (["imports"], "import math"),
        (["parameters"], "n = 4\nlr = 0.5"),
        (["step:load"], LOAD),
        (["step:train", "after:load"], "total = sum(data) * lr\nprint('train', total)"),
        (["step:report", "after:train", *report_tags], report),
    ]:
        nb.cells.append(new_code_cell(source, metadata={"tags": tags}))
    nbformat.write(nb, root / name)
    return name


async def run(h: Any, nb: str, user: str = "tester", **spec: Any) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    job, _ = await h.orch.submit(JobSpec(notebook=nb, **spec), user)
    events = await h.events(job["id"])
    view = job_view(await h.store.get_job(job["id"]))
    assert view["status"] == "succeeded", (view["error"], [e for e in events if e["type"] == "log"])
    return job["id"], events, view


def ran(events: list[dict[str, Any]]) -> list[str]:
    return [e["step"] for e in events if e["type"] == "step.start"]


def cached(events: list[dict[str, Any]]) -> dict[str, str]:
    return {e["step"]: e["from"]["job"] for e in events if e["type"] == "step.cached"}


def outputs(events: list[dict[str, Any]], step: str) -> list[tuple[Any, ...]]:
    return [
        (e["cell_index"], json.dumps(e["output"], sort_keys=True))
        for e in events
        if e.get("step") == step and e["type"] == "cell.output"
    ]


def cache_of(view: dict[str, Any]) -> dict[str, Any]:
    return {s["name"]: s["cache"] for s in view["steps"]}


async def test_only_what_changed_runs_again(make: Any, tmp_path: Path) -> None:
    h = await make(gpus=[], warm_pool=1)
    nb = write(tmp_path, "three.ipynb")
    first, events1, view1 = await run(h, nb, user=local_user())
    assert ran(events1) == ["load", "train", "report"] and cached(events1) == {}
    for step in view1["steps"]:
        assert step["cache"]["hit"] is False and step["cache"]["from"] is None
        assert step["cache"]["key"].startswith("v1:")

    # edit only the last step: only it runs; the first two come from the first job, as they were
    write(tmp_path, "three.ipynb", report="print('report', total, 'edited')")
    second, events2, view2 = await run(h, nb, user=local_user())
    assert ran(events2) == ["report"]
    assert cached(events2) == {"load": first, "train": first}
    hits = cache_of(view2)
    assert hits["load"]["hit"] and hits["load"]["from"] == {"job": first, "step": "load", "attempt": 1}
    assert hits["load"]["key"] == cache_of(view1)["load"]["key"]
    assert hits["report"]["hit"] is False and hits["report"]["key"] != cache_of(view1)["report"]["key"]
    for step in ("load", "train"):
        assert outputs(events2, step) == outputs(events1, step), f"{step} shows what the first run showed"
    assert stdout([e for e in events2 if e["step"] == "report"]) == "report 3.0 edited\n"
    ends = {e["step"]: e for e in events2 if e["type"] == "step.end"}
    assert ends["load"]["status"] == "succeeded" and ends["load"]["cached_from"]["job"] == first
    assert "cached_from" not in ends["report"]
    steps2 = {s["name"]: s for s in view2["steps"]}
    assert steps2["load"]["status"] == "succeeded" and steps2["load"]["started"] and steps2["load"]["finished"]

    # the image output names this job's own copy of the artifact, which lives in this job's folder
    image = next(e for e in events2 if e["type"] == "cell.output" and e.get("artifact"))
    listed = {a["name"]: a for a in await h.store.artifacts(second)}
    assert image["artifact"] in listed and "load__executed.ipynb" in listed
    for name in (image["artifact"], "load__executed.ipynb"):
        path = Path(listed[name]["path"])
        assert path.is_file() and path.is_relative_to(h.orch.job_dir(second)), path

    # `jupyter-ext status` says where a step came from
    env = {**os.environ, "JUPYTER_EXT_DATA_DIR": str(tmp_path / "data"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt")}
    status = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "jupyter_ext.cli", "status", second, "--local"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert status.returncode == 0, status.stderr
    assert f"succeeded (cached from job {first})" in status.stdout
    assert status.stdout.count("cached from job") == 2

    # a parameter only the middle step reads: the middle and the last run, the first is reused
    _, events3, view3 = await run(h, nb, user=local_user(), parameters={"lr": 1.0})
    assert ran(events3) == ["train", "report"] and cached(events3) == {"load": first}
    assert stdout([e for e in events3 if e["step"] == "report"]) == "report 6.0 edited\n"
    assert [s["cache"]["hit"] for s in view3["steps"]] == [True, False, False]

    # fresh: everything runs again (and its results enter the cache too)
    fourth, events4, view4 = await run(h, nb, user=local_user(), fresh=True)
    assert ran(events4) == ["load", "train", "report"] and cached(events4) == {}
    assert [s["cache"]["hit"] for s in view4["steps"]] == [False, False, False]
    _, events5, _ = await run(h, nb, user=local_user())
    assert ran(events5) == [] and set(cached(events5).values()) == {fourth}, "the newest entry is used"


async def test_a_shared_step_runs_once_while_the_others_wait(make: Any, tmp_path: Path) -> None:
    """Two jobs at once (a sweep's children): the step both need runs in one of them only."""
    h = await make(gpus=[], max_concurrent=4)
    nb = write(tmp_path, "shared.ipynb")
    jobs = [(await h.orch.submit(JobSpec(notebook=nb, parameters={"lr": lr}), "tester"))[0] for lr in (1.0, 2.0)]
    done = await asyncio.gather(*(h.events(j["id"]) for j in jobs))
    loads = [ran(events).count("load") for events in done]
    assert sorted(loads) == [0, 1], "load ran once"
    runner = jobs[loads.index(1)]["id"]
    waiter = done[loads.index(0)]
    assert cached(waiter) == {"load": runner}
    assert ran(waiter) == ["train", "report"], "lr differs: train and report run in both"
    for job in jobs:
        assert (await h.store.get_job(job["id"]))["status"] == "succeeded"


async def test_cache_off_always_runs_and_another_user_never_hits(make: Any, tmp_path: Path) -> None:
    h = await make(gpus=[], warm_pool=1)
    nb = write(tmp_path, "off.ipynb", report_tags=("cache:off",))
    _, events1, view1 = await run(h, nb)
    assert ran(events1) == ["load", "train", "report"]
    assert cache_of(view1)["report"] is None, "a step that is not cached has no cache record"
    first = view1["id"]
    _, events2, _ = await run(h, nb)
    assert ran(events2) == ["report"] and cached(events2) == {"load": first, "train": first}
    _, events3, view3 = await run(h, nb, user="somebody-else")
    assert ran(events3) == ["load", "train", "report"] and cached(events3) == {}
    assert all(s["cache"] is None or s["cache"]["hit"] is False for s in view3["steps"])


async def test_deleting_the_cached_job_makes_the_next_run_a_miss(make: Any, tmp_path: Path) -> None:
    h = await make(gpus=[], warm_pool=1)
    nb = write(tmp_path, "gone.ipynb")
    first, _, _ = await run(h, nb)
    second, events2, _ = await run(h, nb)
    assert ran(events2) == [] and set(cached(events2).values()) == {first}
    await h.orch.delete(first, "tester")
    # what the second job reused is its own (hard-linked) copy: it outlives the first job
    listed = {a["name"]: a["path"] for a in await h.store.artifacts(second)}
    assert Path(listed["load__executed.ipynb"]).is_file()
    assert any(h.orch.layout.handoff_dir(second, "load", 1).glob("*.pkl"))
    _, events3, view3 = await run(h, nb)
    assert ran(events3) == ["load", "train", "report"] and cached(events3) == {}, "hits never enter the cache"
    assert [s["cache"]["hit"] for s in view3["steps"]] == [False, False, False]


async def test_a_job_cancelled_while_its_step_waits_for_the_same_step_elsewhere_ends_cancelled(
    make: Any, tmp_path: Path
) -> None:
    h = await make(gpus=[], max_concurrent=4)
    nb = write(tmp_path, "slow.ipynb")
    source = nbformat.read(tmp_path / nb, as_version=4)
    source.cells[2].source = "import time\ntime.sleep(3)\n" + LOAD
    nbformat.write(source, tmp_path / nb)
    first, _ = await h.orch.submit(JobSpec(notebook=nb), "tester")
    await until("the first job's load to start", lambda: _started(h, first["id"], "load"))
    second, _ = await h.orch.submit(JobSpec(notebook=nb), "tester")
    await until("the second job's load to wait", lambda: _waits(h, second["id"], "load"))
    await h.orch.cancel(second["id"], "tester")
    await h.events(second["id"])
    job = await h.store.get_job(second["id"])
    assert job["status"] == "cancelled"
    assert [s["status"] for s in job["steps"]] == ["cancelled", "cancelled", "cancelled"]
    assert job["steps"][0]["error"]["reason"] == "cancelled"
    events1 = await h.events(first["id"])
    assert ran(events1) == ["load", "train", "report"], "the job that ran the step is not disturbed"


async def _started(h: Any, job_id: str, step: str) -> bool:
    return any(e["type"] == "step.start" and e["step"] == step for e in await h.store.events(job_id))


async def _waits(h: Any, job_id: str, step: str) -> bool:
    return (job_id, step) in h.orch._waiting


def test_the_cli_says_where_a_step_came_from_and_runs_fresh(tmp_path: Path) -> None:
    nb = tmp_path / write(tmp_path, "cli.ipynb")
    env = {**os.environ, "JUPYTER_EXT_DATA_DIR": str(tmp_path / "data"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "jupyter_ext.cli", *args], capture_output=True, text=True, env=env, timeout=180
        )
        assert done.returncode == 0, done.stderr
        return done

    cli("run", str(nb), "--local")
    first = json.loads(cli("ls", "--json", "--local").stdout)[0]["id"]
    again = cli("run", str(nb), "--local")
    assert f"[load] cached from job {first}" in again.stderr and f"[train] cached from job {first}" in again.stderr
    assert "[load] started" not in again.stderr
    assert "[load] load [0, 1, 2, 3]" in again.stdout, "the cached step's outputs are printed as they were"
    fresh = cli("run", str(nb), "--local", "--fresh")
    assert "cached from" not in fresh.stderr
    assert all(f"[{step}] started" in fresh.stderr for step in ("load", "train", "report"))


async def test_a_hit_cut_short_by_a_crash_is_not_replayed_again_after_the_restart(make: Any, tmp_path: Path) -> None:
    """A hit's events and its step row are one transaction: a server that dies right after storing
    them leaves a succeeded row, and the next server (reconcile) does not replay the cells again. A
    hit whose events an older version stored without the row is finished from those events."""
    from jupyter_ext.cache import replayed

    h = await make(gpus=[], warm_pool=1)
    nb = write(tmp_path, "crash.ipynb")
    first, events1, _ = await run(h, nb)

    # the server dies just after the hit of `load` is stored: its emit never returns
    real, stored = h.orch.step_cache._emit, asyncio.Event()

    async def dies_after_storing(job_id: str, events: list[dict[str, Any]], **kw: Any) -> list[dict[str, Any]]:
        await real(job_id, events, **kw)
        if any(e["type"] == "step.cached" for e in events):
            stored.set()
            await asyncio.Event().wait()
        return []

    h.orch.step_cache._emit = dies_after_storing
    second, _ = await h.orch.submit(JobSpec(notebook=nb), "tester")
    await asyncio.wait_for(stored.wait(), 120)
    await h.orch.stop()
    for task in asyncio.all_tasks():
        if task.get_name().startswith(f"step {second['id']}/"):
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    h2 = await make(gpus=[], warm_pool=1)  # a new server over the same store and data folder
    events2 = await h2.events(second["id"])
    view2 = job_view(await h2.store.get_job(second["id"]))
    assert view2["status"] == "succeeded", view2["error"]
    for step in ("load", "train", "report"):
        assert outputs(events2, step) == outputs(events1, step), f"{step}'s cells are shown once"
    assert [e["step"] for e in events2 if e["type"] == "step.cached"] == ["load", "train", "report"]
    assert ran(events2) == []
    for row in view2["steps"]:
        assert row["status"] == "succeeded" and row["cache"]["hit"] is True, row
        assert row["cache"]["from"] == {"job": first, "step": row["name"], "attempt": 1}

    # an older version stored a hit's events, then died before the row said so
    third, _ = await h2.orch.submit(JobSpec(notebook=nb), "tester", drive=False)
    source = {"job": first, "step": "load", "attempt": 1}
    spec = next(s for s in third["steps"] if s["name"] == "load")["spec"]
    await asyncio.to_thread(h2.orch.step_cache._link, source, third["id"], "load", spec["outputs"])
    kept = [e for e in events1 if e.get("step") == "load" and e["type"] in ("cell.start", "cell.output", "cell.end")]
    artifacts = h2.orch.layout.attempt(third["id"], "load", 1).artifacts
    await h2.store.append_events(
        third["id"],
        [
            {"type": "step.cached", "step": "load", "from": source, "key": cache_of(view2)["load"]["key"]},
            *replayed(kept, step="load", artifacts=artifacts),
            {"type": "step.end", "step": "load", "attempt": 1, "status": "succeeded", "cached_from": source},
        ],
    )
    h2.orch.drive(third["id"])  # what reconcile does for an unfinished job
    events3 = await h2.events(third["id"])
    view3 = job_view(await h2.store.get_job(third["id"]))
    assert view3["status"] == "succeeded", view3["error"]
    assert outputs(events3, "load") == outputs(events1, "load"), "load's cells are shown once"
    assert [e["step"] for e in events3 if e["type"] == "step.cached"] == ["load", "train", "report"]
    assert ran(events3) == []
    load = next(s for s in view3["steps"] if s["name"] == "load")
    assert load["status"] == "succeeded"
    assert load["cache"] == {"key": cache_of(view2)["load"]["key"], "hit": True, "from": source}
    assert load["started"] and load["finished"]
