"""Steps from cell tags, end to end on the local backend: Kale notebooks run unchanged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from tests.harness import span, stdout

pytestmark = pytest.mark.slow
KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def tagged(root: Path, name: str, cells: list[tuple[list[str], str]]) -> str:
    nb = new_notebook(metadata=KERNEL)
    for tags, source in cells:
        nb.cells.append(new_markdown_cell(source) if tags == ["md"] else new_code_cell(source, metadata={"tags": tags}))
    nbformat.write(nb, root / name)
    return name


def chain(root: Path) -> str:
    return tagged(
        root,
        "chain.ipynb",
        [
            (["imports"], "import numpy as np"),
            (["pipeline-parameters"], "n = 5"),
            (["md"], "## Load"),
            (["step:load"], "data = np.arange(n)\nprint('loaded', len(data))"),
            (["step:train", "prev:load"], "total = int(data.sum())\nprint('total', total)"),
            ([], "print('still train', total)"),
            (["step:report", "prev:train"], "print('report', total * 2)"),
        ],
    )


def by_step(events: list[dict[str, Any]], step: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("step") == step]


async def test_kale_chain_hands_variables_down_and_maps_outputs_to_original_cells(make: Any, tmp_path: Path) -> None:
    h = await make(gpus=[])
    job_id = await h.run(chain(tmp_path))
    events = await h.events(job_id)
    job = await h.store.get_job(job_id)
    assert job["status"] == "succeeded", job["error"]
    assert [s["name"] for s in job["steps"]] == ["load", "train", "report"]
    assert [s["spec"]["after"] for s in job["steps"]] == [[], ["load"], ["train"]]
    assert stdout(by_step(events, "load")) == "loaded 5\n"
    assert stdout(by_step(events, "train")) == "total 10\nstill train 10\n"
    assert stdout(by_step(events, "report")) == "report 20\n"
    # every output points at the cell of the ORIGINAL notebook that printed it
    where = {e["output"]["text"]: e["cell_index"] for e in events if e["type"] == "cell.output"}
    assert where == {"loaded 5\n": 3, "total 10\n": 4, "still train 10\n": 5, "report 20\n": 6}
    assert [e["step"] for e in events if e["type"] == "step.start"] == ["load", "train", "report"]


async def test_pipeline_parameters_overridden(make: Any, tmp_path: Path) -> None:
    h = await make(gpus=[])
    events = await h.events(await h.run(chain(tmp_path), parameters={"n": 3}))
    assert stdout(by_step(events, "train")).startswith("total 3\n")


async def test_diamond_runs_the_middle_steps_in_parallel(make: Any, tmp_path: Path) -> None:
    # two warm runners: b and c both start warm, so their overlap is not hostage to a cold start on a busy machine
    h = await make(gpus=[], max_concurrent=4, warm_pool=2)
    nb = tagged(
        tmp_path,
        "diamond.ipynb",
        [
            (["step:a"], "base = 10"),
            (["step:b", "prev:a"], "import time\ntime.sleep(5)\nleft = base + 1"),
            (["step:c", "prev:a"], "import time\ntime.sleep(5)\nright = base + 2"),
            (["step:d", "prev:b", "prev:c"], "print(left + right)"),
        ],
    )
    job_id = await h.run(nb)
    events = await h.events(job_id)
    assert (await h.store.get_job(job_id))["status"] == "succeeded"
    assert stdout(by_step(events, "d")) == "23\n"
    b, c = span(by_step(events, "b")), span(by_step(events, "c"))
    assert b[0] < c[1] and c[0] < b[1], f"b {b} and c {c} must overlap in time"
    a_end = span(by_step(events, "a"))[1]
    d_start = span(by_step(events, "d"))[0]
    assert a_end <= min(b[0], c[0]) and d_start >= max(b[1], c[1])


async def test_handoff_of_arrays_frames_models_and_closures(make: Any, tmp_path: Path) -> None:
    h = await make(gpus=[])
    nb = tagged(
        tmp_path,
        "types.ipynb",
        [
            (["imports"], "import numpy as np\nimport pandas as pd"),
            (
                ["step:make"],
                "arr = np.arange(6).reshape(2, 3)\ndf = pd.DataFrame({'x': [1, 2]})\n"
                "from sklearn.linear_model import LinearRegression\n"
                "model = LinearRegression().fit([[0], [1], [2]], [0, 2, 4])\nk = 3\nscale = lambda v: v * k",
            ),
            (
                ["step:use", "prev:make"],
                "print(arr.sum(), df.x.sum(), round(float(model.predict([[3]])[0]), 3), scale(2))",
            ),
        ],
    )
    job_id = await h.run(nb)
    events = await h.events(job_id)
    job = await h.store.get_job(job_id)
    assert job["status"] == "succeeded", job["error"]
    assert stdout(by_step(events, "use")) == "15 3 6.0 6\n"
    assert set(job["steps"][1]["spec"]["inputs"]) >= {"arr", "df", "model", "scale"}


async def test_unpicklable_handoff_names_variable_type_step_and_cell(make: Any, tmp_path: Path) -> None:
    h = await make(gpus=[])
    nb = tagged(
        tmp_path,
        "lock.ipynb",
        [
            (["step:open"], "import threading\nlock = threading.Lock()"),
            (["step:use", "prev:open"], "print(lock)"),
        ],
    )
    job_id = await h.run(nb)
    await h.events(job_id)
    job = await h.store.get_job(job_id)
    assert job["status"] == "failed"
    steps = {s["name"]: s for s in job["steps"]}
    assert steps["open"]["status"] == "failed" and steps["use"]["status"] == "not_run"
    message = job["error"]["evalue"]
    assert "cannot hand off variable 'lock' (_thread.lock) from step 'open' (defined in cell 1)" in message
    assert "not run because step 'open' failed" in steps["use"]["error"]["message"]


async def test_rerun_from_a_step_reuses_earlier_handoffs(make: Any, tmp_path: Path) -> None:
    h = await make(gpus=[])
    first = await h.run(chain(tmp_path))
    first_events = await h.events(first)
    first_job = await h.store.get_job(first)
    assert first_job["status"] == "succeeded", (first_job["error"], [e for e in first_events if e["type"] == "log"])
    second = await h.run(chain(tmp_path), from_step="train", rerun_of=first)
    events = await h.events(second)
    job = await h.store.get_job(second)
    assert job["status"] == "succeeded", job["error"]
    assert [e["step"] for e in events if e["type"] == "step.start"] == ["train", "report"], "load is not run again"
    assert job["steps"][0]["spec"]["reused_from"]["job"] == first
    assert stdout(by_step(events, "report")) == "report 20\n"


def test_bad_tags_are_refused_before_anything_runs(tmp_path: Path) -> None:
    nb = tagged(
        tmp_path,
        "bad.ipynb",
        [(["setp:train"], "x = 1"), (["step:b", "prev:nope"], "y = 2"), (["step:c", "memory:16GG"], "z = 3")],
    )
    env = {"JUPYTER_EXT_DATA_DIR": str(tmp_path / "data"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt")}
    result = subprocess.run(
        [sys.executable, "-m", "jupyter_ext.cli", "run", str(tmp_path / nb)],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, **env},
        timeout=120,
    )
    assert result.returncode == 2
    for part in ("cell 1", "setp:train", "step:train", "prev:nope", "16GG"):
        assert part in result.stderr, (part, result.stderr)
    listing = subprocess.run(
        [sys.executable, "-m", "jupyter_ext.cli", "ls", "--json"],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, **env},
    )
    assert json.loads(listing.stdout) == [], "a job with errors is never partly submitted"


def test_cli_prints_each_steps_output_under_its_name_and_reruns_from_a_step(tmp_path: Path) -> None:
    nb = tmp_path / chain(tmp_path)
    env = {
        **__import__("os").environ,
        "JUPYTER_EXT_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"),
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "jupyter_ext.cli", *args], capture_output=True, text=True, env=env, timeout=180
        )

    first = cli("run", str(nb))
    assert first.returncode == 0, first.stderr
    assert (
        "[load] loaded 5\n" in first.stdout
        and "[train] total 10\n" in first.stdout
        and "[report] report 20\n" in first.stdout
    )
    job_id = json.loads(cli("ls", "--json").stdout)[0]["id"]
    again = cli("run", str(nb), "--from-step", "report", "--rerun-of", job_id)
    assert again.returncode == 0, again.stderr
    assert "[report] report 20\n" in again.stdout
    assert "[load] started" not in again.stderr and "[train] started" not in again.stderr


async def test_a_failed_step_marks_every_step_below_it_not_run(make: Any, tmp_path: Path) -> None:
    """load -> train -> report: when load fails, report (two levels down) must not stay queued."""
    h = await make(gpus=[])
    nb = tagged(
        tmp_path,
        "fails.ipynb",
        [
            (["step:load"], "raise RuntimeError('no data')"),
            (["step:train", "prev:load"], "print('train')"),
            (["step:report", "prev:train"], "print('report')"),
        ],
    )
    job_id = await h.run(nb)
    await h.events(job_id)
    job = await h.store.get_job(job_id)
    steps = {s["name"]: s for s in job["steps"]}
    assert job["status"] == "failed"
    assert [steps[n]["status"] for n in ("load", "train", "report")] == ["failed", "not_run", "not_run"]
    assert "not run because step 'train' not run" in steps["report"]["error"]["message"]


async def test_a_notebook_without_kernelspec_metadata_runs_with_python3(make: Any, tmp_path: Path) -> None:
    """Notebooks written by other tools often carry no kernelspec; papermill alone refuses them."""
    h = await make(gpus=[])
    nb = new_notebook()
    nb.cells.append(new_code_cell("print('no metadata', 1 + 1)"))
    nbformat.write(nb, tmp_path / "bare.ipynb")
    job_id = await h.run("bare.ipynb")
    events = await h.events(job_id)
    job = await h.store.get_job(job_id)
    assert job["status"] == "succeeded", job["error"]
    assert stdout(events) == "no metadata 2\n"
