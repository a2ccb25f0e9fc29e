"""Parameter sweeps and metrics end to end: real kernels on the local backend, the API of a real
jupyter-server (pytest-jupyter), and the command line."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from jupyter_ext.models import JobSpec
from jupyter_ext.views import job_view
from tests.conftest import check_response
from tests.harness import until
from tests.server.conftest import Api, api, data_dir, jp_root_dir, jp_server_config  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow
KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
SWEEP = {"lr": [0.1, 0.2, 0.3], "depth": [3, 5]}


def tagged(root: Path, name: str, cells: list[tuple[list[str], str]]) -> str:
    nb = new_notebook(metadata=KERNEL)
    nb.cells = [new_code_cell(source, metadata={"tags": tags}) for tags, source in cells]
    nbformat.write(nb, root / name)
    return name


def two_steps(root: Path) -> str:
    """`prep` reads no swept parameter (it appends a line to `marker` each time it really runs);
    `train` reads lr and depth, logs metrics, and fails for lr=0.2, depth=5."""
    return tagged(
        root,
        "sweep.ipynb",
        [
            (["parameters"], "lr = 0.1\ndepth = 3\nmarker = ''"),
            (["imports"], "from jupyter_ext import log_metric"),
            (["step:prep"], "with open(marker, 'a') as f:\n    f.write('prep\\n')\nbase = 10"),
            (
                ["step:train", "prev:prep"],
                "if lr == 0.2 and depth == 5:\n    raise ValueError('diverged')\n"
                "score = base + lr * depth\nlog_metric('score', score)\nlog_metric('steps', depth * 2)\nscore",
            ),
        ],
    )


def last_metrics(events: list[dict[str, Any]]) -> dict[str, float]:
    values: dict[str, float] = {}
    for e in events:
        if e["type"] == "metric":
            values[e["name"]] = e["value"]
    return values


async def test_a_3x2_sweep_shares_its_upstream_step_and_tables_its_metrics(make: Any, tmp_path: Path) -> None:
    h = await make(gpus=[], max_concurrent=3, warm_pool=2)
    marker = tmp_path / "prep-ran.txt"
    spec = JobSpec(notebook=two_steps(tmp_path), parameters={"marker": str(marker)}, sweep=SWEEP, sweep_parallel=3)
    sweep, created = await h.orch.submit(spec, "tester")
    assert created and sweep["status"] == "queued" and sweep["steps"] == []
    # Every run exists from the start, queued, in the order of the combinations.
    first = job_view(sweep)["sweep"]
    assert [c["parameters"] for c in first["children"]] == [
        {"lr": lr, "depth": depth} for lr in SWEEP["lr"] for depth in SWEEP["depth"]
    ]
    assert first["parameters"] == ["lr", "depth"] and first["mode"] == "grid" and first["parallel"] == 3
    assert sum(first["counts"].values()) == 6 and first["counts"]["succeeded"] == 0

    sweep_events = await h.events(sweep["id"])
    final = job_view(await h.store.get_job(sweep["id"]))
    table = final["sweep"]
    by_params = {(c["parameters"]["lr"], c["parameters"]["depth"]): c for c in table["children"]}
    assert by_params[(0.2, 5)]["status"] == "failed"
    assert [c["status"] for k, c in by_params.items() if k != (0.2, 5)] == ["succeeded"] * 5
    assert final["status"] == "failed" and final["error"]["job"] == by_params[(0.2, 5)]["id"]
    assert "1 of 6 runs did not succeed" in final["error"]["message"]
    assert table["counts"] == {"queued": 0, "running": 0, "succeeded": 5, "failed": 1, "cancelled": 0}
    assert table["metrics"] == ["score", "steps"]

    # The table's values are what each run logged (its own `metric` events), and the runs are the
    # sweep's parameters overlaid on the fixed ones.
    for (lr, depth), child in by_params.items():
        run = await h.store.get_job(child["id"])
        assert run["parent"] == sweep["id"] and run["parameters"] == {"marker": str(marker), "lr": lr, "depth": depth}
        assert child["name"] == f"sweep lr={lr} depth={depth}"
        logged = last_metrics(await h.events(child["id"]))
        assert child["metrics"] == logged == run["metrics"]
        if (lr, depth) != (0.2, 5):
            assert logged == {"score": pytest.approx(10 + lr * depth), "steps": depth * 2}
            assert child["duration"] is not None and child["duration"] >= 0
        else:
            assert logged == {}

    # `prep` reads no swept parameter: it really ran once; the other runs took it from the cache.
    assert marker.read_text() == "prep\n"
    prep_starts = cached = 0
    for child in table["children"]:
        events = await h.events(child["id"])
        prep_starts += sum(1 for e in events if e["type"] == "step.start" and e["step"] == "prep")
        cached += sum(1 for e in events if e["type"] == "step.cached" and e["step"] == "prep")
    assert (prep_starts, cached) == (1, 5)

    # At most sweep_parallel runs at once.
    spans = []
    for child in table["children"]:
        run = await h.store.get_job(child["id"])
        spans.append((run["started"], run["finished"]))
    for start, _ in spans:
        assert sum(1 for s, f in spans if s <= start < f) <= 3

    kinds = [e["type"] for e in sweep_events]
    assert kinds[0] == "job.queued" and kinds[-1] == "job.end" and "job.start" in kinds
    made = [e for e in sweep_events if e["type"] == "sweep.child" and e["status"] == "queued"]
    ended = [e for e in sweep_events if e["type"] == "sweep.child" and e["status"] != "queued"]
    assert [e["child"] for e in made] == [c["id"] for c in table["children"]]
    assert [e["name"] for e in made] == [c["name"] for c in table["children"]]
    assert sorted(e["child"] for e in ended) == sorted(c["id"] for c in table["children"])
    for e in ended:
        assert e["metrics"] == by_params[(e["parameters"]["lr"], e["parameters"]["depth"])]["metrics"]


async def test_a_fresh_sweep_runs_its_shared_step_once_again(make: Any, tmp_path: Path) -> None:
    """`fresh` ignores what earlier jobs cached, yet the runs of the fresh sweep still share their
    upstream step among themselves: it runs once more, not once per run."""
    h = await make(gpus=[], max_concurrent=2, warm_pool=1)
    marker = tmp_path / "prep-ran.txt"
    notebook = two_steps(tmp_path)
    small = {"lr": [0.1, 0.3], "depth": [3]}  # no failing combination
    first, _ = await h.orch.submit(
        JobSpec(notebook=notebook, parameters={"marker": str(marker)}, sweep=small), "tester"
    )
    await h.events(first["id"])
    assert marker.read_text() == "prep\n"
    again, _ = await h.orch.submit(
        JobSpec(notebook=notebook, parameters={"marker": str(marker)}, sweep=small, fresh=True), "tester"
    )
    await h.events(again["id"])
    assert (await h.store.get_job(again["id"]))["status"] == "succeeded"
    assert marker.read_text() == "prep\n" * 2
    sources = []
    for child in job_view(await h.store.get_job(again["id"]))["sweep"]["children"]:
        run = await h.store.get_job(child["id"])
        prep = next(s for s in run["steps"] if s["name"] == "prep")
        sources.append((prep["cache"] or {}).get("from"))
    hits = [s for s in sources if s]
    assert len(hits) == 1 and len(sources) == 2
    # The hit came from its sibling in this sweep, not from the earlier sweep.
    assert (await h.store.get_job(hits[0]["job"]))["parent"] == again["id"]


async def test_zip_pairs_values_and_kale_metrics_are_logged(make: Any, tmp_path: Path) -> None:
    h = await make(gpus=[], max_concurrent=2, warm_pool=2)
    nb = tagged(
        tmp_path,
        "kale.ipynb",
        [
            (["pipeline-parameters"], "lr = 0.1\nopt = 'sgd'"),
            (["step:train"], "accuracy = 1 - lr\nlabel = opt"),
            (["pipeline-metrics"], "print(accuracy)\nprint(label)"),
        ],
    )
    spec = JobSpec(notebook=nb, sweep={"lr": [0.1, 0.4], "opt": ["sgd", "adam"]}, sweep_mode="zip")
    sweep, _ = await h.orch.submit(spec, "tester")
    await h.events(sweep["id"])
    view = job_view(await h.store.get_job(sweep["id"]))
    assert view["status"] == "succeeded", view["error"]
    rows = [(c["parameters"], c["metrics"], c["status"]) for c in view["sweep"]["children"]]
    assert rows == [
        ({"lr": 0.1, "opt": "sgd"}, {"accuracy": pytest.approx(0.9)}, "succeeded"),
        ({"lr": 0.4, "opt": "adam"}, {"accuracy": pytest.approx(0.6)}, "succeeded"),
    ]
    events = await h.events(view["sweep"]["children"][1]["id"])
    printed = [e["output"]["text"] for e in events if e["type"] == "cell.output" and e.get("cell_index") == 2]
    assert "".join(printed) == "0.6\nadam\n", "the metrics cell's own output stays"
    metric = next(e for e in events if e["type"] == "metric")
    assert metric["step"] == "train" and metric["cell"] == 2 and metric["name"] == "accuracy"
    assert any("'label' is not a finite number" in e.get("text", "") for e in events if e["type"] == "log")


async def test_log_metric_keeps_its_output_and_refuses_what_is_not_a_number(make: Any, tmp_path: Path) -> None:
    h = await make(gpus=[])
    nb = tagged(
        tmp_path,
        "metrics.ipynb",
        [
            ([], "import jupyter_ext\njupyter_ext.log_metric('loss', 0.5)\njupyter_ext.log_metric('loss', 0.25)"),
            ([], "jupyter_ext.log_metric('flag', True)"),
        ],
    )
    job_id = await h.run(nb)
    events = await h.events(job_id)
    job = await h.store.get_job(job_id)
    assert job["status"] == "failed" and job["metrics"] == {"loss": 0.25}
    shown = [e["output"] for e in events if e["type"] == "cell.output" and e["cell_index"] == 0]
    assert [o["data"]["text/plain"] for o in shown] == ["loss = 0.5", "loss = 0.25"]
    assert shown[0]["data"]["application/vnd.jupyter-ext.metric+json"] == {"name": "loss", "value": 0.5}
    assert [(e["name"], e["value"], e["cell"]) for e in events if e["type"] == "metric"] == [
        ("loss", 0.5, 0),
        ("loss", 0.25, 0),
    ]
    assert "metric 'flag' is a bool" in job["error"]["message"]


def slow_notebook(root: Path, seconds: float) -> str:
    return tagged(
        root,
        "slow.ipynb",
        [
            (["parameters"], "n = 0"),
            ([], f"import time\ntime.sleep({seconds})\nfrom jupyter_ext import log_metric\nlog_metric('n', n)"),
        ],
    )


def test_a_sweep_goes_on_after_a_server_restart(server: Any) -> None:
    """A real `jupyter server` killed with SIGKILL while a run of the sweep runs, then started again:
    the running run is adopted (not started twice), the queued ones run, the sweep ends."""
    server.start()
    sweep = server.post(
        "jobs",
        {"notebook": "slow.ipynb", "sweep": {"ticks": [6, 2, 3]}, "parameters": {"delay": 0.3}, "sweep_parallel": 1},
    ).json()
    assert sweep["status"] == "queued", sweep
    first = sweep["sweep"]["children"][0]["id"]
    deadline = time.time() + 60
    while time.time() < deadline:
        events = server.get(f"jobs/{first}/events").json()["events"]
        if sum(1 for e in events if e["type"] == "cell.output") >= 2:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the first run produced no output")
    server.kill()
    server.start()
    deadline = time.time() + 120
    while time.time() < deadline:
        view = server.get(f"jobs/{sweep['id']}").json()
        if view["status"] not in ("queued", "running"):
            break
        time.sleep(0.2)
    assert view["status"] == "succeeded", view
    assert [(c["parameters"], c["status"]) for c in view["sweep"]["children"]] == [
        ({"ticks": 6}, "succeeded"),
        ({"ticks": 2}, "succeeded"),
        ({"ticks": 3}, "succeeded"),
    ]
    for child in view["sweep"]["children"]:  # each run's step started once: the running one was adopted
        events = server.get(f"jobs/{child['id']}/events").json()["events"]
        assert sum(1 for e in events if e["type"] == "step.start") == 1, child
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    events = server.get(f"jobs/{sweep['id']}/events").json()["events"]
    ended = [e["child"] for e in events if e["type"] == "sweep.child" and e["status"] != "queued"]
    assert sorted(ended) == sorted(c["id"] for c in view["sweep"]["children"])
    assert sum(1 for e in events if e["type"] == "job.end") == 1


async def test_cancelling_a_sweep_cancels_its_runs(make: Any, tmp_path: Path) -> None:
    h = await make(gpus=[])
    spec = JobSpec(notebook=slow_notebook(tmp_path, 30), sweep={"n": [1, 2, 3]}, sweep_parallel=1)
    sweep, _ = await h.orch.submit(spec, "tester")
    await until("a run to start", lambda: _any_running(h, sweep["id"]))
    await h.orch.cancel(sweep["id"], "tester")
    await asyncio.wait_for(h.orch.wait(sweep["id"]), 120)
    view = job_view(await h.store.get_job(sweep["id"]))
    assert view["status"] == "cancelled"
    assert [c["status"] for c in view["sweep"]["children"]] == ["cancelled"] * 3
    never = await h.events(view["sweep"]["children"][2]["id"])
    assert not [e for e in never if e["type"] == "step.start"], "a run not started is cancelled without running"


async def _any_running(h: Any, sweep_id: str) -> bool:
    return any(r["status"] == "running" for r in await h.store.sweep_runs(sweep_id))


# -- over the API ---------------------------------------------------------------------------------------------
async def test_the_api_refuses_a_bad_sweep_naming_the_field(api: Api) -> None:  # noqa: F811
    cases = [
        ({"sweep": {"y": [1, 2]}}, "sweep.y", "'y' is not a parameter of 'quick.ipynb'"),
        ({"sweep": {"x": []}}, "sweep.x", "empty"),
        ({"sweep": {"x": [1, 2]}, "parameters": {"x": 3}}, "sweep.x", "both in parameters and in sweep"),
        ({"sweep": {"x": [1, 2], "z": [1]}, "sweep_mode": "zip"}, "sweep.z", "as many values"),
        ({"sweep": {"x": list(range(1001))}}, "sweep.x", "1,001 runs"),
    ]
    for extra, field, words in cases:
        body = await api.submit("quick.ipynb", expect=400, **extra)
        check_response("/jobs", "POST", 400, body)
        assert body["field"] == field and words in body["message"], body
    assert (await api.call("GET", "jobs"))["jobs"] == [], "nothing was stored"


async def test_a_sweep_over_the_api(api: Api, jp_serverapp: Any, tmp_path: Path) -> None:  # noqa: F811
    sweep = await api.submit("quick.ipynb", sweep={"x": [1, 2]}, sweep_parallel=2)
    check_response("/jobs", "POST", 201, sweep)
    assert [c["status"] for c in sweep["sweep"]["children"]] == ["queued", "queued"]
    final = await api.wait(sweep["id"])
    check_response("/jobs/{job_id}", "GET", 200, final)
    assert final["status"] == "succeeded" and [c["parameters"] for c in final["sweep"]["children"]] == [
        {"x": 1},
        {"x": 2},
    ]
    listed = await api.call("GET", "jobs")
    check_response("/jobs", "GET", 200, listed)
    assert [j["id"] for j in listed["jobs"]] == [sweep["id"]], "the list shows the sweep, not its runs"
    assert listed["jobs"][0] == final
    runs = await api.call("GET", "jobs", params={"parent": sweep["id"]})
    check_response("/jobs", "GET", 200, runs)
    assert [j["parameters"] for j in runs["jobs"]] == [{"x": 2}, {"x": 1}] and runs["next"] is None
    assert all(j["parent"] == sweep["id"] and j["status"] == "succeeded" for j in runs["jobs"])
    page = await api.call("GET", "jobs", params={"parent": sweep["id"], "limit": 1})
    assert [j["id"] for j in page["jobs"]] == [runs["jobs"][0]["id"]] and page["next"] == runs["jobs"][0]["id"]

    # Another user's sweep, or none: 404 naming the field; its runs stay out of sight.
    store = jp_serverapp.web_app.settings["jupyter_ext"].store.sync
    store.create_sweep(
        {"id": "theirs", "user": "someone-else", "name": "t", "notebook": "t", "backend": "local", "spec": {}},
        [({"id": "theirrun", "user": "someone-else", "name": "t", "notebook": "t", "backend": "local"}, [])],
    )
    for parent in ("theirs", "nosuchjob"):
        refused = await api.call("GET", "jobs", params={"parent": parent}, expect=404)
        check_response("/jobs", "GET", 404, refused)
        assert refused["field"] == "parent"
    assert (await api.call("GET", "jobs", params={"parent": "../x"}, expect=400))["field"] == "parent"

    # A run is deleted with its sweep, not alone.
    alone = await api.call("DELETE", "jobs", runs["jobs"][0]["id"], expect=409)
    assert "delete the sweep" in alone["message"]
    await api.call("DELETE", "jobs", sweep["id"], expect=204)
    for run in runs["jobs"]:
        await api.call("GET", "jobs", run["id"], expect=404)


# -- the command line -----------------------------------------------------------------------------------------
def test_the_cli_runs_a_sweep_and_prints_its_table(tmp_path: Path) -> None:
    nb = tagged(
        tmp_path,
        "cli.ipynb",
        [
            (["parameters"], "lr = 0.1\ndepth = 3"),
            ([], "from jupyter_ext import log_metric\nassert depth != 4\nlog_metric('score', lr * depth)"),
        ],
    )
    env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_EXT_DATA_DIR": str(tmp_path / "data"),
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "jupyter_ext.cli", *args], capture_output=True, text=True, env=env, timeout=300
        )

    result = cli("run", str(tmp_path / nb), "--sweep", "lr=0.5,2", "--sweep", "depth=3,4", "--parallel", "2")
    assert result.returncode == 1, result.stderr  # depth=4 fails
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == ["RUN", "lr", "depth", "score", "STATUS", "DURATION"]
    rows = [line.split()[1:5] for line in lines[1:]]
    assert rows == [
        ["0.5", "3", "1.5", "succeeded"],
        ["0.5", "4", "-", "failed"],
        ["2", "3", "6", "succeeded"],
        ["2", "4", "-", "failed"],
    ]
    assert "sweep " in result.stderr and "4 runs (grid over lr, depth), 2 at once" in result.stderr
    assert "score=1.5" in result.stderr and "[4/4]" in result.stderr
    assert "2 of 4 runs did not succeed" in result.stderr

    listing = cli("ls")
    assert listing.returncode == 0 and len(listing.stdout.strip().splitlines()) == 2, listing.stdout
    assert "4/4 runs" in listing.stdout and "failed" in listing.stdout
    sweep_id = listing.stdout.strip().splitlines()[1].split()[0]
    status = cli("status", sweep_id)
    assert status.returncode == 0 and f"sweep {sweep_id}" in status.stdout
    assert "2 succeeded, 2 failed" in status.stdout and "score" in status.stdout
    shown = json.loads(cli("status", sweep_id, "--json").stdout)
    assert [c["metrics"] for c in shown["sweep"]["children"]] == [{"score": 1.5}, {}, {"score": 6.0}, {}]

    zipped = cli("run", str(tmp_path / nb), "--sweep", "lr=1,2", "--sweep", "depth=3,5", "--zip")
    assert zipped.returncode == 0, zipped.stderr
    assert [line.split()[1:4] for line in zipped.stdout.strip().splitlines()[1:]] == [["1", "3", "3"], ["2", "5", "10"]]
    refused = cli("run", str(tmp_path / nb), "--sweep", "lr=1,2", "--sweep", "depth=3", "--zip")
    assert refused.returncode == 2 and "sweep.depth" in refused.stderr
