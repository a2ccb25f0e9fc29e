"""Sweeps and metrics without a kernel: combinations, the spec's refusals (each naming `sweep.NAME`),
the command line's `--sweep`, metric values, Kale's metrics cell, the store's rows and the views."""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from typing import Any

import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from jupyter_ext.cli_args import parse_sweep, sweep_spec
from jupyter_ext.cli_render import sweep_progress, sweep_table
from jupyter_ext.errors import ValidationError
from jupyter_ext.models import JobSpec, parse
from jupyter_ext.notebook import plan_notebook
from jupyter_ext.runner.metrics import (
    METRIC_MIME,
    kale_metric_names,
    kale_metrics,
    kale_value,
    metric_value,
    output_metric,
)
from jupyter_ext.store import Store
from jupyter_ext.sweeps import cache_every_step, check_swept_names, combinations, run_name
from jupyter_ext.views import job_list_view, job_view, safe_job_view

LOG = logging.getLogger("test")


# -- combinations -------------------------------------------------------------------------------------------
def test_grid_is_the_cartesian_product_in_the_order_given() -> None:
    runs = combinations({"lr": [0.1, 0.01, 0.001], "depth": [3, 5]})
    assert runs == [
        {"lr": 0.1, "depth": 3},
        {"lr": 0.1, "depth": 5},
        {"lr": 0.01, "depth": 3},
        {"lr": 0.01, "depth": 5},
        {"lr": 0.001, "depth": 3},
        {"lr": 0.001, "depth": 5},
    ]
    assert combinations({"depth": [5, 3], "lr": [1]}) == [{"depth": 5, "lr": 1}, {"depth": 3, "lr": 1}]


def test_zip_pairs_the_ith_values() -> None:
    assert combinations({"lr": [0.1, 0.2], "opt": ["sgd", "adam"]}, "zip") == [
        {"lr": 0.1, "opt": "sgd"},
        {"lr": 0.2, "opt": "adam"},
    ]


def test_run_names_show_the_combination() -> None:
    assert run_name("train", {"lr": 0.1, "depth": 3}) == "train lr=0.1 depth=3"
    assert run_name("t", {"opt": "adam", "flag": True, "layers": [64, 64]}) == "t opt=adam flag=True layers=[64, 64]"
    assert len(run_name("t", {"x": "y" * 500})) == 200


# -- the spec's refusals -------------------------------------------------------------------------------------
def refused(**spec: Any) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        parse(JobSpec, {"notebook": "train.ipynb", **spec})
    return caught.value


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ({"sweep": {"lr": []}}, "sweep.lr", "empty"),
        ({"sweep": {}}, "sweep", "at least one parameter"),
        ({"sweep": {"lr": 0.1}}, "sweep.lr", "list"),
        ({"sweep": {"1lr": [1]}}, "sweep.1lr", "identifier"),
        ({"sweep": {"class": [1]}}, "sweep.class", "keyword"),
        ({"sweep": {"lr": [1], "depth": [3, 5]}, "sweep_mode": "zip"}, "sweep.depth", "as many values"),
        ({"sweep": {"a": list(range(40)), "b": list(range(30))}}, "sweep.a", "1,200 runs"),
        ({"sweep": {"lr": [1, 2]}, "parameters": {"lr": 3}}, "sweep.lr", "both in parameters and in sweep"),
        ({"sweep": {"lr": [1]}, "from_step": "b", "rerun_of": "x"}, "sweep.lr", "re-run"),
        ({"sweep": {"lr": [1]}, "sweep_mode": "cartesian"}, "sweep_mode", "grid"),
        ({"sweep": {"lr": [1]}, "sweep_parallel": 0}, "sweep_parallel", "greater than or equal to 1"),
    ],
)
def test_a_bad_sweep_is_refused_naming_the_field(spec: dict[str, Any], field: str, words: str) -> None:
    error = refused(**spec)
    assert error.field == field, error.message
    assert words in error.message and error.message.startswith(field)


def test_a_cell_cannot_be_swept() -> None:
    with pytest.raises(ValidationError) as caught:
        parse(JobSpec, {"cell": {"source": "x = 1"}, "sweep": {"lr": [1]}})
    assert caught.value.field == "sweep.lr"


def test_a_good_sweep_is_kept_as_given() -> None:
    spec = parse(JobSpec, {"notebook": "t.ipynb", "sweep": {"lr": [0.1, 0.01]}, "sweep_mode": "zip"})
    assert spec.sweep == {"lr": [0.1, 0.01]} and spec.sweep_mode == "zip" and spec.sweep_parallel is None
    assert parse(JobSpec, {"notebook": "t.ipynb", "sweep": {"a": list(range(1000))}}).sweep is not None


def test_a_swept_name_must_be_a_parameter_of_the_notebook() -> None:
    nb = new_notebook(cells=[new_code_cell("lr = 0.1\ndepth = 3", metadata={"tags": ["parameters"]})])
    check_swept_names(nb, {"lr": [1], "depth": [2]}, "'t.ipynb'")
    with pytest.raises(ValidationError) as caught:
        check_swept_names(nb, {"lr": [1], "dept": [2]}, "'t.ipynb'")
    assert caught.value.field == "sweep.dept"
    assert caught.value.message.startswith("sweep.dept: 'dept' is not a parameter of 't.ipynb'; did you mean 'depth'")
    bare = new_notebook(cells=[new_code_cell("print(1)")])
    with pytest.raises(ValidationError) as caught:
        check_swept_names(bare, {"lr": [1]}, "'t.ipynb'")
    assert caught.value.field == "sweep.lr" and "no parameters cell" in caught.value.message


def test_every_step_is_cached_unless_tagged_cache_off() -> None:
    nb = new_notebook(
        cells=[
            new_code_cell("a = 1", metadata={"tags": ["step:a"]}),
            new_code_cell("b = 2", metadata={"tags": ["step:b", "cache:off"]}),
            new_code_cell("c = 3", metadata={"tags": ["step:c", "cache"]}),
        ]
    )
    steps = [planned.to_spec() for planned in plan_notebook(nb).steps]
    assert [s.cache for s in steps] == [None, False, True]
    cache_every_step(steps)
    assert [s.cache for s in steps] == [True, False, True]


# -- the command line ------------------------------------------------------------------------------------------
def test_sweep_values_are_parsed_like_parameter_values() -> None:
    assert parse_sweep("lr=0.1,0.01,1e-3") == ("lr", [0.1, 0.01, 0.001])
    assert parse_sweep("opt=sgd, adam") == ("opt", ["sgd", "adam"])
    assert parse_sweep("flag=True,false,None") == ("flag", [True, False, None])
    assert parse_sweep("layers=[[64,64],[128]]") == ("layers", [[64, 64], [128]])
    assert parse_sweep("pair=(1,2),[3,4],'a,b'") == ("pair", [(1, 2), [3, 4], "a,b"])
    assert parse_sweep("lr=") == ("lr", [])
    with pytest.raises(ValidationError, match="NAME=V1,V2"):
        parse_sweep("lr")


def test_sweep_options_make_the_spec() -> None:
    def args(*sweep: str, zip: bool = False, parallel: int | None = None) -> argparse.Namespace:
        return argparse.Namespace(sweep=list(sweep), zip=zip, parallel=parallel)

    assert sweep_spec(args()) == {}
    assert sweep_spec(args("lr=1,2", "depth=3", zip=True, parallel=2)) == {
        "sweep": {"lr": [1, 2], "depth": [3]},
        "sweep_mode": "zip",
        "sweep_parallel": 2,
    }
    with pytest.raises(ValidationError, match="given twice"):
        sweep_spec(args("lr=1", "lr=2"))
    with pytest.raises(ValidationError, match="go with --sweep"):
        sweep_spec(args(zip=True))


# -- metric values ---------------------------------------------------------------------------------------------
def test_a_metric_is_a_finite_real_number() -> None:
    assert metric_value("acc", 0.5) == 0.5 and metric_value("n", 3) == 3 and isinstance(metric_value("n", 3), int)
    assert metric_value("acc", np.float32(0.25)) == 0.25 and metric_value("n", np.int64(7)) == 7
    for bad, error, words in [
        (True, TypeError, "is a bool"),
        (np.bool_(True), TypeError, "is a bool"),
        ("0.5", TypeError, "must be a real number, not str"),
        (None, TypeError, "must be a real number"),
        (1 + 2j, TypeError, "must be a real number"),
        (math.nan, ValueError, "nan"),
        (-math.inf, ValueError, "-inf"),
    ]:
        with pytest.raises(error) as caught:
            metric_value("accuracy", bad)
        assert "'accuracy'" in str(caught.value) and words in str(caught.value)


def test_log_metric_outside_a_kernel_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    import jupyter_ext

    jupyter_ext.log_metric("accuracy", 0.93)
    assert capsys.readouterr().out == "accuracy = 0.93\n"
    with pytest.raises(TypeError, match="'flag' is a bool"):
        jupyter_ext.log_metric("flag", True)
    with pytest.raises(ValueError, match="'loss' is nan"):
        jupyter_ext.log_metric("loss", float("nan"))
    with pytest.raises(TypeError, match="non-empty string"):
        jupyter_ext.log_metric("", 1)


def test_a_metric_output_is_read_back_only_when_valid() -> None:
    assert output_metric({METRIC_MIME: {"name": "acc", "value": 0.5}, "text/plain": "acc = 0.5"}) == ("acc", 0.5)
    assert output_metric({"text/plain": "acc = 0.5"}) is None
    assert output_metric({METRIC_MIME: {"name": "acc", "value": "high"}}) is None
    assert output_metric({METRIC_MIME: {"name": "", "value": 1}}) is None


def test_kale_metrics_cell_logs_each_printed_variable() -> None:
    source = "print(accuracy)\n\nprint(f1_score)\nprint(label)\nprint('not a variable')\nprint(accuracy)\n"
    assert kale_metric_names(source) == ["accuracy", "f1_score", "label"]
    assert kale_metric_names("print(") == []
    kernel = {"accuracy": "0.9", "f1_score": "3.0", "label": "None"}

    def evaluate(expressions: dict[str, str]) -> dict[str, Any]:
        assert set(expressions) == {"accuracy", "f1_score", "label"}
        return {n: {"status": "ok", "data": {"text/plain": kernel[n]}} for n in expressions}

    emitted: list[tuple[str, dict[str, Any]]] = []
    kale_metrics(source, evaluate, lambda kind, **f: emitted.append((kind, f)), {"cell_index": 4, "cell_id": "c"})
    assert emitted[:2] == [
        ("metric", {"name": "accuracy", "value": 0.9, "cell": 4, "cell_index": 4, "cell_id": "c"}),
        ("metric", {"name": "f1_score", "value": 3.0, "cell": 4, "cell_index": 4, "cell_id": "c"}),
    ]
    assert emitted[2][0] == "log" and "'label' is not a finite number" in emitted[2][1]["text"]
    assert kale_value({"status": "error", "ename": "NameError"}) is None
    assert kale_value({"status": "ok", "data": {"text/plain": "nan"}}) is None


# -- the store and the views -----------------------------------------------------------------------------------
def sweep_store(now: float | None = None) -> Store:
    store = Store(":memory:")
    now = now or time.time()
    step = [{"name": "main", "spec": {"name": "main"}}]
    sweep = {
        "id": "sweep1",
        "user": "ada",
        "name": "train",
        "notebook": "train.ipynb",
        "backend": "local",
        "parameters": {"epochs": 1},
        "spec": {"notebook": "train.ipynb", "sweep": {"lr": [0.1, 0.2]}, "sweep_mode": "grid", "sweep_parallel": 2},
        "created": now,
    }
    runs = [
        (
            {
                "id": f"run{i}",
                "user": "ada",
                "name": f"train lr={lr}",
                "notebook": "train.ipynb",
                "backend": "local",
                "parameters": {"epochs": 1, "lr": lr},
                "spec": {"notebook": "train.ipynb"},
                "created": now + (i + 1) * 1e-6,
            },
            step,
        )
        for i, lr in enumerate([0.1, 0.2])
    ]
    _, created = store.create_sweep(sweep, runs)
    assert created
    store.create_job(
        {"id": "plain", "user": "ada", "name": "x", "notebook": "x.ipynb", "backend": "local", "created": now + 1}, step
    )
    return store


def test_metrics_are_stored_with_their_events_and_the_job_shows_the_last_values() -> None:
    store = sweep_store()
    stored = store.append_events(
        "run0",
        [
            {"type": "metric", "step": "main", "name": "loss", "value": 2.0},
            {"type": "metric", "step": "main", "name": "acc", "value": 0.5},
            {"type": "metric", "step": "main", "name": "loss", "value": 1},
            {"type": "metric", "step": "main", "name": "odd", "value": True},  # no number: an event only
            {"type": "log", "text": "x"},
        ],
    )
    assert [e["seq"] for e in stored] == [1, 2, 3, 4, 5]
    assert store.metrics("run0") == {"loss": 1.0, "acc": 0.5}
    assert job_view(store.get_job("run0"))["metrics"] == {"loss": 1.0, "acc": 0.5}
    assert job_view(store.get_job("plain"))["metrics"] == {} and job_view(store.get_job("plain"))["sweep"] is None
    rows = store.db.execute("SELECT seq, step, name FROM metrics WHERE job_id='run0' ORDER BY seq").fetchall()
    assert [tuple(r) for r in rows] == [(1, "main", "loss"), (2, "main", "acc"), (3, "main", "loss")]


def test_the_list_shows_top_level_jobs_and_a_sweeps_runs_on_asking() -> None:
    store = sweep_store()
    top, _ = store.job_summaries("ada")
    assert [j["id"] for j in top] == ["plain", "sweep1"]
    runs, after = store.job_summaries("ada", parent="sweep1")
    assert [j["id"] for j in runs] == ["run1", "run0"] and after is None
    first, after = store.job_summaries("ada", parent="sweep1", limit=1)
    assert [j["id"] for j in first] == ["run1"] and after == "run1"
    assert [j["id"] for j in store.job_summaries("ada", parent="sweep1", before="run1")[0]] == ["run0"]
    assert store.job_summaries("bob", parent="sweep1")[0] == []
    assert [j["id"] for j in store.list_jobs("ada", top_level=True)] == ["plain", "sweep1"]
    assert len(store.list_jobs("ada")) == 4
    assert [r["id"] for r in store.sweep_runs("sweep1")] == ["run0", "run1"]
    for job_id in ("run0", "run1", "sweep1", "plain"):
        store.update_job(job_id, status="succeeded", finished=time.time())
    assert {j["id"] for j in store.finished_jobs("ada")} == {"sweep1", "plain"}, "runs go with their sweep"


def test_a_sweep_job_shows_its_runs_table() -> None:
    now = time.time()
    store = sweep_store(now)
    store.append_events("run0", [{"type": "metric", "step": "main", "name": "acc", "value": 0.75}])
    store.append_events("run1", [{"type": "metric", "step": "main", "name": "loss", "value": 0.5}])
    store.update_job("run0", status="succeeded", started=now, finished=now + 2.5)
    store.update_job("run1", status="running", started=now)
    view = job_view(store.get_job("sweep1"))
    assert view["parent"] is None and view["metrics"] == {} and view["steps"] == []
    assert view["sweep"] == {
        "mode": "grid",
        "parallel": 2,
        "parameters": ["lr"],
        "metrics": ["acc", "loss"],
        "counts": {"queued": 0, "running": 1, "succeeded": 1, "failed": 0, "cancelled": 0},
        "children": [
            {
                "id": "run0",
                "name": "train lr=0.1",
                "parameters": {"lr": 0.1},
                "status": "succeeded",
                "started": view["sweep"]["children"][0]["started"],
                "finished": view["sweep"]["children"][0]["finished"],
                "duration": 2.5,
                "metrics": {"acc": 0.75},
            },
            {
                "id": "run1",
                "name": "train lr=0.2",
                "parameters": {"lr": 0.2},
                "status": "running",
                "started": view["sweep"]["children"][1]["started"],
                "finished": None,
                "duration": None,
                "metrics": {"loss": 0.5},
            },
        ],
    }
    assert job_view(store.get_job("run0"))["parent"] == "sweep1"
    # The list's fast view is the job view, and follows the runs as they change (its cache is keyed
    # by what the sweep's rows were made from, the runs included).
    for _ in range(2):
        page, _ = store.job_summaries("ada")
        assert job_list_view(page, LOG) == [safe_job_view(store.get_job(j["id"]), LOG) for j in page]
    store.update_job("run1", status="failed", finished=now + 1)
    page, _ = store.job_summaries("ada")
    listed = {j["id"]: j for j in job_list_view(page, LOG)}
    assert listed["sweep1"]["sweep"]["counts"]["failed"] == 1
    assert listed["sweep1"] == job_view(store.get_job("sweep1"))
    assert sweep_progress(listed["sweep1"]) == "2/2 runs"
    table = sweep_table(listed["sweep1"]).splitlines()
    assert table[0].split() == ["RUN", "lr", "acc", "loss", "STATUS", "DURATION"]
    assert table[1].split() == ["run0", "0.1", "0.75", "-", "succeeded", "2s"]
    assert table[2].split() == ["run1", "0.2", "-", "0.5", "failed", "1s"]
    json.dumps(listed)


def test_an_idempotent_sweep_is_made_once() -> None:
    store = sweep_store()
    again, created = store.create_sweep(
        {"id": "other", "user": "ada", "name": "t", "notebook": "t", "backend": "local", "idempotency_key": "k"}, []
    )
    assert created
    same, created = store.create_sweep(
        {"id": "third", "user": "ada", "name": "t", "notebook": "t", "backend": "local", "idempotency_key": "k"}, []
    )
    assert not created and same["id"] == again["id"] == "other"


async def test_a_sweep_is_pruned_and_deleted_with_its_runs(tmp_path: Any) -> None:
    from jupyter_ext.errors import Conflict
    from jupyter_ext.layout import JobLayout
    from jupyter_ext.store import AsyncStore
    from jupyter_ext.upkeep import Upkeep

    sync = sweep_store(time.time() - 100)
    store = AsyncStore(sync)
    upkeep = Upkeep(store, JobLayout(tmp_path, tmp_path / "data"))
    try:
        with pytest.raises(Conflict, match="cancel it first"):
            await upkeep.delete("sweep1", "ada")
        for job_id in ("run0", "run1", "sweep1", "plain"):
            sync.update_job(job_id, status="succeeded", finished=time.time())
        with pytest.raises(Conflict, match="delete the sweep"):
            await upkeep.delete("run0", "ada")
        assert await upkeep.prune("ada", keep=1, dry_run=True) == ["sweep1"], "runs are never chosen alone"
        assert await upkeep.prune("ada", keep=1) == ["sweep1"]
        assert [j["id"] for j in sync.list_jobs("ada")] == ["plain"], "its runs went with it"
    finally:
        await store.close()
