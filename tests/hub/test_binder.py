"""binder/ replayed the way mybinder builds it, in a fresh virtual environment, then every binder notebook run.

repo2docker makes a conda environment from binder/environment.yml and runs binder/postBuild
in the checked-out repository. Here: the conda part must be only Python, Node.js and pip
(checked against this machine's), the pip part is installed into a new venv, and postBuild
runs in a copy of the repository (the files git would commit). The copy carries the
labextension already built by `make` (jupyter_ext/labextension), so hatch-jupyter-builder
skips its `jlpm build:prod` (skip-if-exists) instead of spending minutes on webpack; the wheel
is still built and installed by postBuild's own `pip install .`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.hub, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
BINDER = ROOT / "binder"


def sh(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{args} failed ({p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}"
    return p


def repo_copy(dest: Path) -> Path:
    """The repository as mybinder checks it out (tracked and new, non-ignored files) + the built labextension."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    built = ROOT / "jupyter_ext" / "labextension"
    assert (built / "static" / "style.js").exists(), "build the labextension first (make .venv/.installed-test)"
    shutil.copytree(built, dest / "jupyter_ext" / "labextension", symlinks=False)
    return dest


@pytest.mark.timeout(600)  # two pip installs into a new venv: ~1.5 min here, more on a busy machine
def test_binder_installs_the_extension_and_runs_every_notebook(tmp_path: Path) -> None:
    env_file = yaml.safe_load((BINDER / "environment.yml").read_text())
    conda = [d for d in env_file["dependencies"] if isinstance(d, str)]
    pip_deps = next(d["pip"] for d in env_file["dependencies"] if isinstance(d, dict))
    assert sorted(re.split(r"[=<>]", d)[0] for d in conda) == ["nodejs", "pip", "python"]
    python_pin = next(d.split("=", 1)[1] for d in conda if d.startswith("python="))
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == python_pin, "replay with the pinned Python"
    node = shutil.which("node")
    assert node, "Node.js is needed (binder's environment.yml has nodejs)"
    node_major = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip().lstrip("v")
    assert node_major.split(".")[0] == next(d.split("=", 1)[1] for d in conda if d.startswith("nodejs="))

    timings: dict[str, float] = {}
    start = time.monotonic()
    repo = repo_copy(tmp_path / "repo")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "VIRTUAL_ENV", "PYTHON"))}
    env |= {
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "VIRTUAL_ENV": str(venv),
        "HOME": str(tmp_path / "home"),  # nothing from the developer's ~/.jupyter or ~/.local
        "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip")),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "JUPYTER_EXT_DATA_DIR": str(tmp_path / "jobs"),
        "JUPYTER_EXT_KEEP_WARM": "0",  # `run --local` leaves no runner behind (LocalBackend.keep_warm)
    }
    sh([str(venv / "bin" / "pip"), "install", "-q", *pip_deps], cwd=repo, env=env, timeout=600)
    timings["environment"] = time.monotonic() - start
    sh(["bash", str(repo / "binder" / "postBuild")], cwd=repo / "binder", env=env, timeout=600)
    timings["postBuild"] = time.monotonic() - start - timings["environment"]

    # Installed into the venv (not imported from the copy), server extension and labextension enabled.
    code = "import jupyter_ext; print(jupyter_ext.__file__)"
    where = sh([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path, env=env, timeout=60)
    assert where.stdout.strip().startswith(str(venv)), where.stdout
    lab = sh([str(venv / "bin" / "jupyter"), "labextension", "list"], cwd=tmp_path, env=env, timeout=120)
    listing = re.sub(r"\x1b\[[0-9;]*m", "", lab.stdout + lab.stderr)  # no colours
    assert re.search(r"jupyter-ext v\S+ enabled\s+OK", listing), listing
    server = sh([str(venv / "bin" / "jupyter"), "server", "extension", "list"], cwd=tmp_path, env=env, timeout=120)
    assert re.search(r"jupyter_ext\s+enabled", re.sub(r"\x1b\[[0-9;]*m", "", server.stdout + server.stderr))
    assert (venv / "share" / "jupyter" / "labextensions" / "jupyter-ext" / "static" / "style.js").exists()

    notebooks = sorted((repo / "binder" / "examples").glob("*.ipynb"))
    expected = {"hello.ipynb": "hello world 2", "pipeline.ipynb": "[count] the 3"}
    assert [n.name for n in notebooks] == sorted(expected)
    jupyter_ext_cli = str(venv / "bin" / "jupyter-ext")
    for nb in notebooks:
        t0 = time.monotonic()
        run = sh([jupyter_ext_cli, "run", nb.name, "--local"], cwd=nb.parent, env=env, timeout=300)
        timings[nb.name] = time.monotonic() - t0
        out = run.stdout + run.stderr
        assert re.search(r"job \w+ succeeded", out) and expected[nb.name] in out, out
    listed = sh([jupyter_ext_cli, "ls", "--local"], cwd=tmp_path, env=env, timeout=60).stdout
    assert listed.count("succeeded") == len(notebooks), listed
    print("binder replay timings (s):", {k: round(v, 1) for k, v in timings.items()})
