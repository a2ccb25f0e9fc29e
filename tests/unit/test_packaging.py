"""Release packaging (issue 16): one version, one repository name, the dist checks able to fail.

The release build itself (`make dist`, then the wheel installed into a fresh venv and loaded in
Chromium) is ui-tests/tests/packaging.spec.ts, run by `make test-ui`.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import tomllib

import jupyter_ext

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_JSON = json.loads((ROOT / "labextension" / "package.json").read_text())


def check_dist() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_dist", ROOT / "scripts" / "check_dist.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_version_is_package_json_s_alone() -> None:
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert PYPROJECT["tool"]["hatch"]["version"] == {"source": "nodejs", "path": "labextension/package.json"}
    assert "hatch-nodejs-version" in " ".join(PYPROJECT["build-system"]["requires"])
    version = PACKAGE_JSON["version"]
    assert jupyter_ext.__version__ == version
    # What the build backend itself reads (and would write on `hatch version X`).
    shown = subprocess.run(
        [sys.executable, "-m", "hatchling", "version"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == version
    # An install's _version.py (written by the build) is not left behind by a version bump.
    written = ROOT / "jupyter_ext" / "_version.py"
    if written.exists():
        assert re.search(rf"""__version__ = VERSION = ['"]{re.escape(version)}['"]""", written.read_text()), (
            f"{written} is from another version: reinstall (make reinstalls when package.json changes)"
        )


def test_the_repository_is_named_once_and_binder_points_to_it() -> None:
    source = PYPROJECT["project"]["urls"]["Source"]
    owner_name = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+)", source)
    assert owner_name, source
    repo = owner_name.group(1)
    assert PACKAGE_JSON["repository"]["url"] == f"{source}.git"
    assert PACKAGE_JSON["homepage"] == PYPROJECT["project"]["urls"]["Homepage"] == source
    assert PACKAGE_JSON["bugs"]["url"] == PYPROJECT["project"]["urls"]["Issues"]
    links = 0
    for doc in (ROOT / "README.md", ROOT / "binder" / "README.md"):
        text = doc.read_text()
        assert "OWNER" not in text, doc
        for m in re.finditer(r"https://mybinder\.org/v2/gh/([^/\s)]+/[^/\s)]+)/", text):
            assert m.group(1) == repo, f"{doc}: {m.group(0)}"
            links += 1
        for m in re.finditer(r"https://github\.com/([\w.-]+/[\w.-]+?)(?:\.git)?(?=[/)\s#]|$)", text):
            assert m.group(1) == repo or not m.group(1).endswith("/jupyter-ext"), f"{doc}: {m.group(0)}"
    assert links >= 2, "the README and binder/README.md each have a Binder badge"


def test_the_wheel_allow_list_refuses_tests_maps_and_strays_and_wants_the_extension() -> None:
    cd = check_dist()
    dist = "jupyter_ext-1.2.3"
    ext = f"{dist}.data/data/share/jupyter/labextensions/jupyter-ext/"
    good = [
        "jupyter_ext/__init__.py",
        "jupyter_ext/_version.py",
        "jupyter_ext/runner/main.py",
        "jupyter_ext/openapi.yaml",
        f"{dist}.dist-info/METADATA",
        f"{dist}.dist-info/RECORD",
        f"{dist}.dist-info/WHEEL",
        f"{dist}.dist-info/entry_points.txt",
        f"{dist}.dist-info/licenses/LICENSE",
        f"{dist}.data/data/etc/jupyter/jupyter_server_config.d/jupyter_ext.json",
        f"{ext}package.json",
        f"{ext}install.json",
        f"{ext}static/remoteEntry.0123abcd.js",
        f"{ext}static/style.js",
        f"{ext}static/lib_index_js.0123abcd.js",
        f"{ext}static/third-party-licenses.json",
    ]
    assert cd.wheel_problems(good, dist) == []
    # Without __init__.py and remoteEntry, with tests, a source map, a dev build log, a stray copy.
    bad = [n for n in good if not n.endswith(("__init__.py", "remoteEntry.0123abcd.js"))] + [
        "tests/unit/test_x.py",
        "jupyter_ext/tests/test_y.py",
        f"{ext}static/remoteEntry.0123abcd.js.map",
        f"{ext}build_log.json",
        "jupyter_ext/labextension/package.json",
    ]
    text = "\n".join(cd.wheel_problems(bad, dist))
    for name in ("tests/unit/test_x.py", "jupyter_ext/tests/test_y.py", ".js.map", "build_log.json"):
        assert name in text, text
    assert "not on the wheel's allow-list: jupyter_ext/labextension/package.json" in text
    assert "missing from the wheel: jupyter_ext/__init__\\.py" in text
    assert "static/remoteEntry" in text and "missing" in text


def test_the_sdist_check_refuses_node_modules_and_wants_the_prebuilt_extension() -> None:
    cd = check_dist()
    names = [
        "pyproject.toml",
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
        "install.json",
        "labextension/package.json",
        "labextension/yarn.lock",
        "labextension/src/index.ts",
        "jupyter-config/server-config/jupyter_ext.json",
        "jupyter_ext/_version.py",
        "jupyter_ext/labextension/package.json",
        "jupyter_ext/labextension/static/remoteEntry.0123abcd.js",
    ]
    assert cd.sdist_problems(names) == []
    problems = "\n".join(cd.sdist_problems([*names[:-1], "labextension/node_modules/x/index.js", ".venv/bin/python"]))
    assert "never in the sdist: labextension/node_modules/x/index.js" in problems
    assert "never in the sdist: .venv/bin/python" in problems
    assert "missing from the sdist: jupyter_ext/labextension/static/remoteEntry" in problems
