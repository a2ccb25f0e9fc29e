"""The step images in kernels/: linted, and their contents tested as a local environment (no
container engine here): a fresh virtual environment from the same requirements, jupyter-ext
from a wheel of this tree, the same kernel.json; the runner then executes a notebook in it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from jupyter_ext.runner.emitter import parse_line

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
IMAGES = sorted(p.parent for p in (ROOT / "kernels").glob("*/Dockerfile"))


def test_there_is_a_cpu_and_a_cuda_image() -> None:
    assert {p.name for p in IMAGES} == {"python", "python-cuda"}


@pytest.mark.parametrize("image", IMAGES, ids=lambda p: p.name)
def test_dockerfile_lints_clean_and_runs_as_non_root(image: Path) -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    lint = subprocess.run([hadolint, str(image / "Dockerfile")], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    text = (image / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", text, re.M)
    assert base and ":" in base[1] and not base[1].endswith(":latest"), "pinned base image"
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].isdigit() and users[-1] != "0", "the last USER is a numeric non-root uid"
    for source in re.findall(r"^COPY (kernels/\S+)", text, re.M):
        assert (ROOT / source).exists(), f"{source} is copied but missing"
    assert json.loads((image / "kernel.json").read_text())["language"] == "python"


def test_the_image_environment_runs_a_step(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    env = {**os.environ, "HATCH_JUPYTER_BUILDER_SKIP_NPM": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(ROOT)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    venv = tmp_path / "image-env"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    for args in (
        ["-r", str(ROOT / "kernels" / "python" / "requirements.txt")],
        ["--no-deps", *map(str, dist.glob("*.whl"))],
    ):
        done = subprocess.run([*pip, *args], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
    kernels = venv / "share" / "jupyter" / "kernels" / "python3"
    kernels.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "kernels" / "python" / "kernel.json", kernels / "kernel.json")

    nb = new_notebook(
        cells=[
            new_code_cell("n = 2", metadata={"tags": ["parameters"]}),
            new_code_cell("import sys\nprint(sys.prefix, n * 21)"),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    nbformat.write(nb, tmp_path / "step.ipynb")
    (tmp_path / "params.json").write_text('{"n": 3}')
    run_env = {
        "PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin:/bin",
        "HOME": str(tmp_path),
        "JUPYTER_PATH": str(venv / "share" / "jupyter"),
    }
    result = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "jupyter_ext.runner",
            "--notebook",
            str(tmp_path / "step.ipynb"),
            "--attempt-dir",
            str(tmp_path / "attempt"),
            "--job",
            "j1",
            "--parameters-file",
            str(tmp_path / "params.json"),
            "--kernel",
            "python3",
            "--events-stdout",
            "--no-events-file",
        ],
        capture_output=True,
        text=True,
        env=run_env,
        timeout=300,
    )
    events = [e for e in map(parse_line, result.stdout.splitlines()) if e]
    assert events and events[-1]["type"] == "step.end", result.stdout[-2000:] + result.stderr[-2000:]
    assert events[-1]["status"] == "succeeded", events[-1]
    outputs = [e["output"]["text"] for e in events if e["type"] == "cell.output"]
    assert outputs == [f"{venv} 63\n"], "the kernel runs in the image environment with the injected parameter"
