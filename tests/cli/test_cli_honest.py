"""`jupyter-ext` says what it knows (issue 11): warnings, refusals and errors as they are, before
anything runs; read-only commands start nothing; a detached run without a server really runs.

Every test runs the real CLI in a subprocess against real kernels and papermill, with no server
to find (a fresh runtime dir) and a fresh job database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

pytestmark = pytest.mark.slow

KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jupyter_ext.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=timeout,
    )


def write(root: Path, name: str, cells: list[Any], metadata: dict[str, Any] | None = None) -> Path:
    path = root / name
    nbformat.write(new_notebook(cells=cells, metadata=metadata or KERNEL), path)
    return path


def code(source: str, *tags: str) -> Any:
    return new_code_cell(source, metadata={"tags": list(tags)} if tags else {})


@pytest.fixture
def isolated(tmp_path: Path) -> dict[str, str]:
    """No server can be found; jobs go to a fresh database; temp files land in a folder we watch."""
    (tmp_path / "tmp").mkdir()
    (tmp_path / "config").mkdir()
    return {
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_EXT_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "TMPDIR": str(tmp_path / "tmp"),
    }


def jobs(env: dict[str, str]) -> list[dict[str, Any]]:
    listing = cli("ls", "--json", env=env)
    assert listing.returncode == 0, listing.stderr
    return json.loads(listing.stdout)


def wait_for(what: str, check: Any, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


# -- 1. planner warnings --------------------------------------------------------------------------------------
def uses_a_sibling(root: Path) -> Path:
    return write(
        root,
        "sibling.ipynb",
        [code("x = 1", "step:a"), code("y = 2", "step:b"), code("print(x + y)", "step:c", "after:b")],
    )


def test_planner_warnings_are_printed_before_the_run(tmp_path: Path, isolated: dict[str, str]) -> None:
    result = cli("run", str(uses_a_sibling(tmp_path)), env=isolated)
    warning = "jupyter-ext: warning: cell 3: step 'c' uses 'x', which step 'a' defines"
    assert warning in result.stderr and "add the tag 'after:a'" in result.stderr
    assert result.stderr.index(warning) < result.stderr.index("job "), "the warning comes before the job starts"
    assert result.returncode == 1 and "NameError" in result.stdout  # what the warning predicted


def test_strict_makes_warnings_errors_and_runs_nothing(tmp_path: Path, isolated: dict[str, str]) -> None:
    result = cli("run", "--strict", str(uses_a_sibling(tmp_path)), env=isolated)
    assert result.returncode == 2
    assert "jupyter-ext: error: cell 3: step 'c' uses 'x'" in result.stderr
    assert "--strict: 1 warning, so nothing was run" in result.stderr
    assert jobs(isolated) == []


# -- 2. unknown parameters --------------------------------------------------------------------------------------
def test_a_mistyped_parameter_is_refused_naming_the_known_ones(notebooks: Path, isolated: dict[str, str]) -> None:
    result = cli("run", str(notebooks / "hello.ipynb"), "-p", "nmae", "Ada", env=isolated)
    assert result.returncode == 2, result.stderr
    assert "'nmae' is not a parameter of 'hello.ipynb'; did you mean 'name'?" in result.stderr
    assert "its parameters are (closest first): name, " in result.stderr.replace("Its", "its")
    assert "count" in result.stderr and "delay" in result.stderr
    assert jobs(isolated) == [], "nothing ran"


def test_parameters_for_a_notebook_without_a_parameters_cell_are_refused(
    notebooks: Path, isolated: dict[str, str]
) -> None:
    result = cli("run", str(notebooks / "fails.ipynb"), "-p", "x", "1", env=isolated)
    assert result.returncode == 2
    assert "'fails.ipynb' has no parameters cell, so 'x' would change nothing" in result.stderr
    assert "add the tag 'parameters'" in result.stderr
    assert jobs(isolated) == []


# -- 3. a kernel that is not installed ------------------------------------------------------------------------------
def test_a_notebook_whose_kernel_is_missing_is_refused_unless_a_kernel_is_chosen(
    tmp_path: Path, isolated: dict[str, str]
) -> None:
    r_kernel = {"kernelspec": {"name": "ir", "display_name": "R", "language": "R"}}
    nb = write(tmp_path, "analysis.ipynb", [code("print('ran with', 6 * 7)")], r_kernel)
    refused = cli("run", str(nb), env=isolated)
    assert refused.returncode == 2
    assert "the notebook's kernel 'ir' (R) is not installed here (installed kernels: " in refused.stderr
    assert "python3" in refused.stderr and "--kernel" in refused.stderr
    assert jobs(isolated) == []

    chosen = cli("run", "--kernel", "python3", str(nb), env=isolated)
    assert chosen.returncode == 0, chosen.stderr
    assert "ran with 42" in chosen.stdout

    unknown = cli("run", "--kernel", "nosuchkernel", str(nb), env=isolated)
    assert unknown.returncode == 2 and "kernel: 'nosuchkernel' is not installed here" in unknown.stderr


# -- 4. the whole notebook, markdown included --------------------------------------------------------------------------
def test_markdown_stays_in_the_executed_notebook_and_its_html(notebooks: Path, isolated: dict[str, str]) -> None:
    result = cli("run", str(notebooks / "hello.ipynb"), "-p", "count", "1", env=isolated)
    assert result.returncode == 0, result.stderr
    job_id = jobs(isolated)[0]["id"]
    out = notebooks.parent / "got"
    got = cli("artifacts", job_id, "executed.ipynb", "executed.html", "-o", str(out), env=isolated)
    assert got.returncode == 0, got.stderr
    executed = nbformat.read(out / "executed.ipynb", as_version=4)
    original = nbformat.read(notebooks / "hello.ipynb", as_version=4)
    assert executed.cells[0].cell_type == "markdown"
    assert executed.cells[0].source == original.cells[0].source
    assert "Hello, jupyter-ext" in (out / "executed.html").read_text()


def test_a_multi_step_job_also_gets_one_executed_notebook(tmp_path: Path, isolated: dict[str, str]) -> None:
    nb = write(
        tmp_path,
        "pipeline.ipynb",
        [
            new_markdown_cell("# Pipeline"),
            code("n = 2", "parameters"),
            new_markdown_cell("## Load"),
            code("data = list(range(n))\nprint('loaded', data)", "step:load"),
            code("print('noise')", "skip"),
            new_markdown_cell("## Report"),
            code("print('total', sum(data))", "step:report", "after:load"),
        ],
    )
    result = cli("run", str(nb), "-p", "n", "4", env=isolated)
    assert result.returncode == 0, result.stderr
    job_id = jobs(isolated)[0]["id"]
    listing = cli("artifacts", job_id, env=isolated).stdout
    names = {line.split()[0] for line in listing.splitlines()}
    assert {"load__executed.ipynb", "report__executed.ipynb", "job__executed.ipynb", "job__executed.html"} <= names

    out = tmp_path / "got"
    assert cli("artifacts", job_id, "job__executed.ipynb", "-o", str(out), env=isolated).returncode == 0
    whole = nbformat.read(out / "job__executed.ipynb", as_version=4)
    original = nbformat.read(nb, as_version=4)
    kinds = [c.cell_type for c in whole.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    assert kinds == [c.cell_type for c in original.cells], "every cell of the notebook, in its order"
    injected = [i for i, c in enumerate(whole.cells) if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected == [2] and "n = 4" in whole.cells[2].source, "papermill's cell after the parameters cell"

    def text(cell: Any) -> str:
        return "".join(o.get("text", "") for o in cell.outputs)

    by_source = {c.source: c for c in whole.cells}
    assert text(by_source["data = list(range(n))\nprint('loaded', data)"]) == "loaded [0, 1, 2, 3]\n"
    assert text(by_source["print('total', sum(data))"]) == "total 6\n"
    assert by_source["print('noise')"].outputs == [] and by_source["print('noise')"].execution_count is None
    assert [c.source for c in whole.cells if c.cell_type == "markdown"] == ["# Pipeline", "## Load", "## Report"]


# -- 5. run --detach without a server ---------------------------------------------------------------------------------
def test_detach_without_a_server_runs_in_the_background(notebooks: Path, isolated: dict[str, str]) -> None:
    started = time.monotonic()
    detached = cli(
        "run", "--detach", str(notebooks / "slow.ipynb"), "-p", "ticks", "4", "-p", "delay", "0.2", env=isolated
    )
    assert detached.returncode == 0, detached.stderr
    job_id = detached.stdout.strip()
    assert time.monotonic() - started < 30, "detach returns without waiting for the job"
    assert "runs in a background process" in detached.stderr and f"jupyter-ext logs -f {job_id}" in detached.stderr

    follow = cli("logs", "-f", job_id, env=isolated, timeout=180)
    assert follow.returncode == 0, follow.stderr
    assert "tick 3\n" in follow.stdout and "done\n" in follow.stdout
    assert jobs(isolated)[0]["status"] == "succeeded"

    long = cli(
        "run", "--detach", str(notebooks / "slow.ipynb"), "-p", "ticks", "600", "-p", "delay", "0.1", env=isolated
    )
    long_id = long.stdout.strip()
    wait_for(
        "the background job to print",
        lambda: "tick 1" in cli("logs", long_id, env=isolated).stdout,
    )
    cancelled = cli("cancel", long_id, env=isolated)
    assert cancelled.returncode == 0, cancelled.stderr
    wait_for(
        "the background job to end cancelled",
        lambda: next(j for j in jobs(isolated) if j["id"] == long_id)["status"] == "cancelled",
        timeout=60,
    )


# -- 6. read-only commands start nothing ------------------------------------------------------------------------------
def test_read_only_commands_start_no_runner_and_no_kernel(
    notebooks: Path, isolated: dict[str, str], tmp_path: Path
) -> None:
    assert cli("run", str(notebooks / "quick.ipynb"), env=isolated).returncode == 0
    job_id = jobs(isolated)[0]["id"]
    # Any runner the CLI starts goes through this interpreter wrapper (the in-process CLI reads the
    # same config a server would), and the warm pool makes a /tmp/jupyter-ext-standby-* folder.
    started = tmp_path / "runners-started"
    wrapper = tmp_path / "python-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {started}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    (tmp_path / "config" / "jupyter_server_config.py").write_text(f"c.LocalBackend.python = {str(wrapper)!r}\n")
    for entry in Path(isolated["TMPDIR"]).iterdir():
        entry.rename(tmp_path / f"earlier-{entry.name}")  # what the run itself left (none, normally)

    timings = {}
    for command in (["ls"], ["logs", job_id], ["artifacts", job_id], ["cancel", job_id]):
        begin = time.monotonic()
        result = cli(*command, env=isolated)
        timings[command[0]] = time.monotonic() - begin
        assert result.returncode == 0, (command, result.stderr)
    assert list(Path(isolated["TMPDIR"]).iterdir()) == [], "no standby folder (or anything else) in the temp dir"
    assert not started.exists(), "no runner process (so no kernel) was started"
    # Times are printed, not asserted (a loaded machine is no failure): it took 7-11 s for `ls` with
    # a runner and a kernel; that no runner started is what the asserts above check.
    print("read-only command times (s):", {k: round(v, 2) for k, v in timings.items()})

    # Nor is anything imported that runs jobs or talks to a server: what a command imports is most
    # of its time (bench/cli_latency.py).
    for command in (["ls"], ["status", job_id], ["logs", job_id], ["artifacts", job_id]):
        assert imported_by(command, isolated) & HEAVY == set(), command


# What a read-only command without a server must not import: a server, an HTTP client, the notebook
# format and its schema validators, papermill, kernels and their messaging, the orchestrator, backends.
HEAVY = {
    "jupyter_server",
    "tornado",
    "nbformat",
    "jsonschema",
    "nbconvert",
    "papermill",
    "jupyter_client",
    "zmq",
    "tqdm",
    "jupyter_ext.app",
    "jupyter_ext.orchestrator",
    "jupyter_ext.backends",
    "jupyter_ext.runner.main",
}


def imported_by(command: list[str], env: dict[str, str]) -> set[str]:
    """The modules (and their parents) a CLI command has imported when it returns."""
    script = (
        "import contextlib, io, json, sys\n"
        "from jupyter_ext.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    code = main({command!r})\n"
        "parents = {'.'.join(m.split('.')[:n]) for m in list(sys.modules) for n in (1, 2, 3)}\n"
        "print(json.dumps({'code': code, 'modules': sorted(parents)}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ, **env}, timeout=120
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["code"] == 0, (command, result.stderr)
    return set(answer["modules"])


def test_a_one_step_run_starts_its_runner_and_no_spare(
    notebooks: Path, isolated: dict[str, str], tmp_path: Path
) -> None:
    """Without a server, `run` of a one-step notebook starts one runner, with the step: a warm pool
    would start a spare to replace the one taken, and the command waited for it at its end."""
    started = tmp_path / "runners-started"
    wrapper = tmp_path / "python-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {started}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    (tmp_path / "config" / "jupyter_server_config.py").write_text(f"c.LocalBackend.python = {str(wrapper)!r}\n")
    result = cli("run", str(notebooks / "quick.ipynb"), env=isolated)
    assert result.returncode == 0, result.stderr
    assert "first 1" in result.stdout
    runners = started.read_text().splitlines()
    assert len(runners) == 1 and "--standby" not in runners[0], runners


def test_jobs_are_named_by_the_short_id_lab_shows(notebooks: Path, isolated: dict[str, str]) -> None:
    assert cli("run", str(notebooks / "quick.ipynb"), env=isolated).returncode == 0
    job_id = jobs(isolated)[0]["id"]
    short = job_id[:6]  # as Lab's tab titles and panel rows show it
    logs = cli("logs", short, env=isolated)
    assert logs.returncode == 0 and "first 1" in logs.stdout, logs.stderr
    listed = cli("artifacts", short, env=isolated)
    assert listed.returncode == 0 and "executed.ipynb" in listed.stdout, listed.stderr
    other = next(c for c in "0123456789abcdef" if c != job_id[0])
    missing = cli("logs", other * 6, env=isolated)
    assert missing.returncode == 2 and f"no job {other * 6!r}: none of your job ids starts with it" in missing.stderr


# -- 7. errors as they are ---------------------------------------------------------------------------------------------
def test_a_folder_is_not_reported_as_missing(tmp_path: Path, isolated: dict[str, str]) -> None:
    folder = tmp_path / "experiments.ipynb"
    folder.mkdir()
    result = cli("run", str(folder), env=isolated)
    assert result.returncode == 2 and "is a folder; give the path of a notebook" in result.stderr
    assert "does not exist" not in result.stderr


def test_a_gpu_limit_refusal_names_the_tag_that_asked(tmp_path: Path, isolated: dict[str, str]) -> None:
    nb = write(
        tmp_path, "gpu.ipynb", [code("import os", "imports"), code("x = 1", "step:train", "limit:nvidia.com/gpu:2")]
    )
    result = cli("run", str(nb), env={**isolated, "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 2
    assert "asks for 2 GPUs" in result.stderr
    assert "the tag 'limit:nvidia.com/gpu:2' on cell 2" in result.stderr
    assert "lower `gpu:`" not in result.stderr


def test_a_line_magic_error_shows_the_real_error(tmp_path: Path, isolated: dict[str, str]) -> None:
    nb = write(tmp_path, "magic.ipynb", [code("print('before')"), code("%nosuchmagic 3")])
    result = cli("run", str(nb), env=isolated)
    assert result.returncode == 1
    assert "failed: cell 2 raised UsageError: Line magic function `%nosuchmagic` not found" in result.stderr
    assert "CellExecutionError" not in result.stderr


def test_multi_step_results_and_tracebacks_carry_the_step(tmp_path: Path, isolated: dict[str, str]) -> None:
    nb = write(
        tmp_path,
        "two.ipynb",
        [code("40 + 2", "step:first"), code("raise KeyError('missing')", "step:second", "after:first")],
    )
    result = cli("run", str(nb), env=isolated)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert "[first] 42" in lines, result.stdout
    traceback = [line for line in lines if "KeyError" in line]
    assert traceback and all(line.startswith("[second] ") for line in traceback), result.stdout
    assert all(line.startswith("[") for line in lines if line.strip()), result.stdout
