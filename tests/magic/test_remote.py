"""`%%remote` driven through a real kernel (jupyter_client), in-process and through a server."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import start_new_kernel

pytestmark = pytest.mark.slow


class Kernel:
    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.data_dir = Path(env.get("JUPYTER_EXT_DATA_DIR", ""))
        full = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_EXT_SERVER")}
        full.update(env)
        self.km, self.kc = start_new_kernel(kernel_name="python3", cwd=str(cwd), env=full)

    def run(self, code: str, timeout: float = 120) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Execute; returns (reply content, iopub messages with arrival times)."""
        outputs: list[dict[str, Any]] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] in ("stream", "display_data", "execute_result", "error", "update_display_data"):
                outputs.append({"type": msg["msg_type"], "at": time.time(), **msg["content"]})

        reply = self.kc.execute_interactive(code, output_hook=hook, timeout=timeout)
        return reply["content"], outputs

    def value(self, expr: str) -> str:
        reply, outputs = self.run(f"print(repr({expr}))")
        assert reply["status"] == "ok", reply
        return "".join(o["text"] for o in outputs if o["type"] == "stream").strip()

    def stop(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def text(outputs: list[dict[str, Any]]) -> str:
    return "".join(o.get("text", "") for o in outputs if o["type"] == "stream")


STATUS_MIME = "application/vnd.jupyter-ext.job-status+json"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def statuses(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The status line's states, in order."""
    return [
        o["data"][STATUS_MIME]
        for o in outputs
        if o["type"] in ("display_data", "update_display_data") and STATUS_MIME in o.get("data", {})
    ]


def step_error(data_dir: Path, job_id: str) -> dict[str, Any]:
    """The error the remote step reported (its step.end event), as the runner wrote it."""
    path = data_dir / "jobs" / job_id / "steps" / "cell" / "attempt-1" / "events.jsonl"
    events = [json.loads(line) for line in path.read_text().splitlines()]
    return next(e for e in events if e["type"] == "step.end")["error"]


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[Kernel]:
    k = Kernel(tmp_path, {"JUPYTER_EXT_DATA_DIR": str(tmp_path / "data")})
    reply, _ = k.run("%load_ext jupyter_ext")
    assert reply["status"] == "ok", reply
    yield k
    k.stop()


def test_round_trip_of_numbers_dataframes_and_functions(kernel: Kernel) -> None:
    kernel.run("import pandas as pd\nx = 41\ndf = pd.DataFrame({'a': [1, 2, 3]})\ndef double(v):\n    return v * 2")
    reply, outputs = kernel.run(
        "%%remote --in x,df,double --out y,df2,f\n"
        "y = x + 1\ndf2 = df.assign(b=df.a * 10)\nf = lambda v: double(v) + 1\nprint('remote says', y)"
    )
    assert reply["status"] == "ok", reply
    assert "remote says 42" in text(outputs)
    assert kernel.value("y") == "42"
    assert kernel.value("df2.b.tolist()") == "[10, 20, 30]"
    assert kernel.value("f(20)") == "41", "a closure over a sent function comes back and runs here"


def test_outputs_arrive_live_in_order(kernel: Kernel) -> None:
    started = time.time()
    reply, outputs = kernel.run(
        "%%remote\nimport time\nfor i in range(4):\n    print('line', i, flush=True)\n    time.sleep(0.5)\n"
        "from IPython.display import HTML\ndisplay(HTML('<b>rich</b>'))"
    )
    finished = time.time()
    assert reply["status"] == "ok", reply
    lines = [o for o in outputs if o["type"] == "stream" and "line" in o.get("text", "")]
    assert "".join(o["text"] for o in lines) == "".join(f"line {i}\n" for i in range(4))
    assert lines[0]["at"] < finished - 1.0, "the first line arrives while the remote cell still runs"
    html = [o for o in outputs if o["type"] == "display_data" and "text/html" in o["data"]]
    assert html and html[0]["data"]["text/html"] == "<b>rich</b>"
    # the status line: shown at once, updated in place, ending in the final state
    mime = "application/vnd.jupyter-ext.job-status+json"
    status = [o for o in outputs if o["type"] in ("display_data", "update_display_data") and mime in o["data"]]
    assert status[0]["type"] == "display_data" and status[0]["data"][mime]["state"] == "queued"
    assert status[-1]["type"] == "update_display_data" and status[-1]["data"][mime]["state"] == "succeeded"
    assert status[-1]["data"][mime]["cells"] == 1 and status[-1]["data"][mime]["cancellable"] is False
    assert {o["transient"]["display_id"] for o in status} == {status[0]["transient"]["display_id"]}
    assert started < lines[0]["at"]


def test_remote_failure_reraises_with_type_and_traceback(kernel: Kernel) -> None:
    reply, outputs = kernel.run("%%remote\nprint('before')\nraise ValueError('bad input 7')")
    assert reply["status"] == "error"
    assert reply["ename"] == "RemoteValueError" and reply["evalue"] == "bad input 7"
    assert "before" in text(outputs)
    reply, outputs = kernel.run(
        "try:\n    get_ipython().run_cell_magic('remote', '', \"raise KeyError('k')\")\n"
        "except KeyError as exc:\n    print('caught', type(exc).__name__, exc.job_id != '')"
    )
    assert "caught RemoteKeyError True" in text(outputs), "except KeyError catches the remote KeyError"
    jobs, out = kernel.run("%remote_jobs")
    assert text(out).count("failed") == 2, "the failed jobs stay inspectable"


def test_remote_error_shows_the_remote_traceback_as_ipython_would(kernel: Kernel) -> None:
    reply, outputs = kernel.run("%%remote\nd = {}\nd['missing']")
    assert reply["status"] == "error" and reply["ename"] == "RemoteKeyError"
    assert reply["evalue"] == "'missing'", "str() is the remote error's own text, no traceback packed in"
    job_id = statuses(outputs)[0]["job"]
    sent = step_error(kernel.data_dir, job_id)["traceback"]
    assert sent and reply["traceback"] == sent, "the remote kernel's traceback lines, ANSI colours as sent"
    errors = [o for o in outputs if o["type"] == "error"]
    assert len(errors) == 1 and errors[0]["traceback"] == sent
    shown = ANSI.sub("", "\n".join(reply["traceback"]))
    assert "d['missing']" in shown and "KeyError: 'missing'" in shown
    assert "jupyter_ext" not in shown and "magics.py" not in shown and "run_cell_magic" not in shown
    assert "\\n" not in shown, "no traceback packed into one line of literal \\n"


def test_remote_errors_do_not_name_the_job_notebook_cell(kernel: Kernel) -> None:
    """The job's one-cell notebook numbers the %%remote cell 'cell 0' (or 'cell 1'); that is not where it is
    in the user's notebook, so the words say 'the %%remote cell'."""
    reply, outputs = kernel.run("%%remote\nraise KeyError()")
    assert reply["status"] == "error" and reply["ename"] == "RemoteKeyError"
    job_id = statuses(outputs)[0]["job"]
    assert re.match(r"cell \d+ raised", step_error(kernel.data_dir, job_id)["message"]), "the job's own words"
    words = reply["evalue"] + "\n" + ANSI.sub("", "\n".join(reply["traceback"]))
    assert not re.search(r"\bcell \d", words), words
    assert reply["evalue"] == "the %%remote cell raised KeyError: "
    reply, outputs = kernel.run("%%remote\n%no_such_magic_here")
    assert reply["status"] == "error"
    words = reply["evalue"] + "\n" + ANSI.sub("", "\n".join(reply["traceback"]))
    assert not re.search(r"\bcell \d", words), words
    assert "no_such_magic_here" in words and "jupyter_ext" not in words


def test_a_cancelled_cell_says_so_in_one_neutral_line(kernel: Kernel) -> None:
    """Cancelled from elsewhere (as Lab's Cancel button does) while the cell waits: no error traceback."""
    reply, _ = kernel.run(
        "import threading, time\n"
        "magics = get_ipython().magics_manager.registry['RemoteMagics']\n"
        "def _cancel_when_running():\n"
        "    deadline = time.time() + 60\n"
        "    while time.time() < deadline and not (magics.jobs and magics.jobs[-1].logs()):\n"
        "        time.sleep(0.1)\n"
        "    magics.jobs[-1].cancel()\n"
        "threading.Thread(target=_cancel_when_running, daemon=True).start()"
    )
    assert reply["status"] == "ok", reply
    reply, outputs = kernel.run("%%remote\nimport time\nprint('started', flush=True)\ntime.sleep(60)")
    assert "started" in text(outputs)
    job_id = statuses(outputs)[0]["job"]
    assert reply["status"] == "error", "a cancelled cell stops Run All like an interrupt"
    assert reply["ename"] == "RemoteCancelled" and reply["evalue"] == f"job {job_id} cancelled"
    assert reply["traceback"] == [f"%%remote: job {job_id} cancelled"], "one neutral line, no red, no frames"
    assert statuses(outputs)[-1]["state"] == "cancelled"
    # the same for an --async handle's result()
    reply, _ = kernel.run(
        "h = get_ipython().run_cell_magic('remote', '--async', 'import time\\ntime.sleep(60)')\n"
        "time.sleep(1)\nh.cancel()\nh.result()"
    )
    assert reply["status"] == "error" and reply["ename"] == "RemoteCancelled", reply
    assert len(reply["traceback"]) == 1 and reply["traceback"][0].endswith(" cancelled")
    assert "Error" not in reply["traceback"][0]


def test_usage_errors_submit_nothing(kernel: Kernel) -> None:
    for line, message in [
        ("gpus=2", "unknown argument 'gpus'"),
        ("gpu=two", "not a whole number of GPUs"),
        ("--in missing_var", "variable 'missing_var' is not defined"),
    ]:
        reply, _ = kernel.run(f"%%remote {line}\nprint('never')")
        assert reply["status"] == "error" and reply["ename"] == "UsageError", reply
        assert message in reply["evalue"]
    kernel.run("import threading\nlock = threading.Lock()")
    reply, _ = kernel.run("%%remote --in lock\nprint(lock)")
    assert reply["ename"] == "UsageError" and "cannot send 'lock' (_thread.lock)" in reply["evalue"]
    _, out = kernel.run("%remote_jobs")
    assert "no jobs yet" in text(out)


def test_interrupt_cancels_the_remote_job(kernel: Kernel) -> None:
    result: dict[str, Any] = {}

    def run() -> None:
        result["reply"], result["outputs"] = kernel.run(
            "%%remote\nimport time\nfor i in range(300):\n    print(i, flush=True)\n    time.sleep(0.1)"
        )

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.time() + 60
    while time.time() < deadline and not list(kernel.data_dir.glob("jobs/*/steps/cell/attempt-1/events.jsonl")):
        time.sleep(0.2)
    time.sleep(1.0)  # the remote cell is printing
    kernel.km.interrupt_kernel()
    thread.join(90)
    reply, outputs = result["reply"], result["outputs"]
    job_id = statuses(outputs)[0]["job"]
    assert reply["status"] == "error", "an interrupt stops Run All"
    assert reply["traceback"] == [f"%%remote: job {job_id} cancelled"], "one short line, no frames of ours"
    assert reply["ename"] == "RemoteInterrupted"
    assert statuses(outputs)[-1]["state"] == "cancelled", "the status line ends final"
    stderr = "".join(o["text"] for o in outputs if o["type"] == "stream" and o["name"] == "stderr")
    assert "Traceback" not in stderr and "queue.py" not in stderr
    _, out = kernel.run("%remote_jobs")
    assert "cancelled" in text(out)


def test_async_handle(kernel: Kernel) -> None:
    reply, outputs = kernel.run(
        "h = get_ipython().run_cell_magic('remote', '--async --out z', 'import time\\ntime.sleep(1)\\nz = 7')"
    )
    assert reply["status"] == "ok", reply
    assert kernel.value("h.status") in ("'queued'", "'running'")
    assert kernel.value("h.result()") == "{'z': 7}"
    assert kernel.value("(h.status, z)") == "('succeeded', 7)"
    reply, _ = kernel.run(
        "h2 = get_ipython().run_cell_magic('remote', '--async --out w', 'print(\"hi\")\\nw = 3')\nvals = await h2"
    )
    assert reply["status"] == "ok", reply
    assert kernel.value("(vals, w, h2.logs())") == "({'w': 3}, 3, 'hi\\n')"


def test_small_outputs_come_back_with_the_end_of_the_job(kernel: Kernel) -> None:
    """An --out value of at most 32 KiB rides its `artifact` event, so the magic asks nothing more;
    a larger one is downloaded as before."""
    kernel.run("_m = get_ipython().find_cell_magic('remote').__self__")
    reply, _ = kernel.run("%%remote --out small,big\nsmall = 41 + 1\nbig = bytes(100_000)")
    assert reply["status"] == "ok", reply
    assert kernel.value("(small, len(big))") == "(42, 100000)"
    sent = "sorted(e['name'] for e in _m.jobs[-1].events if e['type'] == 'artifact' and 'data' in e)"
    assert kernel.value(sent) == "['outputs__small.pkl']"
    refuse = "def refuse(*args):\n    raise AssertionError('asked the session for the artifacts')\n"
    reply, _ = kernel.run(refuse + "_m.session.artifacts = refuse\n_m.session.download = refuse")
    assert reply["status"] == "ok", reply
    reply, _ = kernel.run("%%remote --out y\ny = [1, 2, 3]")
    assert reply["status"] == "ok", reply
    assert kernel.value("y") == "[1, 2, 3]", "the value came with the job's end, without another request"


def test_submits_through_a_running_server(server: Any, notebooks: Path) -> None:
    from tests.server.realserver import TOKEN

    server.start()
    k = Kernel(
        notebooks,
        {
            "JUPYTER_EXT_SERVER_URL": f"http://127.0.0.1:{server.port}/",
            "JUPYTER_EXT_TOKEN": TOKEN,
            "JUPYTER_EXT_ROOT_DIR": str(notebooks),
        },
    )
    try:
        k.run("%load_ext jupyter_ext")
        reply, outputs = k.run("a = 2\nimport numpy as np\nbig = np.arange(500_000)\n")
        reply, outputs = k.run("%%remote --in a --out b\nb = a ** 10\nprint(open('quick.ipynb').read()[:1])")
        assert reply["status"] == "ok", reply
        assert k.value("b") == "1024"
        reply, _ = k.run("%%remote --in big --out total\ntotal = int(big.sum())")
        assert reply["status"] == "ok", reply
        assert k.value("total") == str(sum(range(500_000))), "a 4 MB input goes through an upload"
        assert text(outputs).strip() == "{", "the remote cell runs in the kernel's folder"
        mime = "application/vnd.jupyter-ext.job-status+json"
        status = [o["data"][mime] for o in outputs if mime in o.get("data", {})]
        assert status and all(s["cancellable"] for s in status), "through a server the status line can cancel"
    finally:
        k.stop()
    jobs = server.get("jobs").json()["jobs"]
    assert [j["name"] for j in jobs] == ["%%remote", "%%remote"] and {j["status"] for j in jobs} == {"succeeded"}
    uploads = server.data_dir / "uploads"
    assert uploads.is_dir(), "the 4 MB input was uploaded, not put in the job spec"
    assert not [p for p in uploads.rglob("*") if p.is_file()], "the upload was taken by its job"
