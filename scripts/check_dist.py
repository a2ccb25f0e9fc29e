"""Check a release build: the wheel's files against an allow-list, the sdist's against a deny-list.

    python scripts/check_dist.py dist/jupyter_ext-X.tar.gz dist/jupyter_ext-X-py3-none-any.whl

The wheel holds the Python package (no tests), its metadata, the server extension's config under
etc/jupyter and the production labextension under share/jupyter/labextensions (no source maps, no
development build log). It ships no kernelspec of its own: the local backend runs the kernels
Jupyter lists (ipykernel, a dependency, provides python3); kernels/ holds the step images'
kernel.json files, which are built into images, not installed. The sdist holds the sources and
that same prebuilt labextension (so building a wheel from it needs no Node.js), never a virtual
environment, node_modules, compiled lib/ or a build output. Used by `make dist`
(scripts/dist.sh) and tests/unit/test_packaging.py.
"""

from __future__ import annotations

import re
import sys
import tarfile
import zipfile
from pathlib import Path

LABEXT = "share/jupyter/labextensions/jupyter-ext/"

# Every file of the wheel must match one of these ({dist} is jupyter_ext-VERSION).
WHEEL_ALLOWED = [
    r"jupyter_ext/([a-z_][a-z0-9_]*/)*[a-z_][a-z0-9_]*\.py",
    r"jupyter_ext/openapi\.yaml",
    r"{dist}\.dist-info/(METADATA|WHEEL|RECORD|entry_points\.txt|licenses/LICENSE)",
    r"{dist}\.data/data/etc/jupyter/jupyter_server_config\.d/jupyter_ext\.json",
    r"{dist}\.data/data/" + re.escape(LABEXT) + r"(package\.json|install\.json)",
    r"{dist}\.data/data/" + re.escape(LABEXT) + r"static/[A-Za-z0-9_.-]+\.js",
    r"{dist}\.data/data/" + re.escape(LABEXT) + r"static/third-party-licenses\.json",
]

# ...and these must be there.
WHEEL_REQUIRED = [
    r"jupyter_ext/__init__\.py",
    r"jupyter_ext/_version\.py",
    r"jupyter_ext/openapi\.yaml",
    r"{dist}\.dist-info/licenses/LICENSE",
    r"{dist}\.data/data/etc/jupyter/jupyter_server_config\.d/jupyter_ext\.json",
    r"{dist}\.data/data/" + re.escape(LABEXT) + r"package\.json",
    r"{dist}\.data/data/" + re.escape(LABEXT) + r"install\.json",
    r"{dist}\.data/data/" + re.escape(LABEXT) + r"static/remoteEntry\.[0-9a-f]+\.js",
    r"{dist}\.data/data/" + re.escape(LABEXT) + r"static/style\.js",
]

# No file of the wheel may match these, even where the allow-list would let it through.
WHEEL_DENIED = [r"(^|/)tests?/", r"(^|/)test_[^/]*\.py$", r"(^|/)conftest\.py$", r"\.map$", r"__pycache__"]

# The sdist: no file under these.
SDIST_DENIED = [
    r"(^|/)node_modules/",
    r"(^|/)\.venv/",
    r"^labextension/lib/",
    r"^labextension/\.yarn/",
    r"^\.git/",
    r"^\.github/",
    r"^dist/",
    r"(^|/)__pycache__/",
    r"\.map$",
    r"^jupyter_ext/labextension/build_log\.json$",
]
SDIST_REQUIRED = [
    r"pyproject\.toml",
    r"LICENSE",
    r"README\.md",
    r"CHANGELOG\.md",
    r"install\.json",
    r"labextension/package\.json",
    r"labextension/yarn\.lock",
    r"labextension/src/index\.ts",
    r"jupyter-config/server-config/jupyter_ext\.json",
    r"jupyter_ext/_version\.py",
    r"jupyter_ext/labextension/package\.json",
    r"jupyter_ext/labextension/static/remoteEntry\.[0-9a-f]+\.js",
]


def wheel_problems(names: list[str], dist: str) -> list[str]:
    """What is wrong with a wheel holding `names` (dist: its 'jupyter_ext-VERSION' prefix)."""
    allowed = [re.compile(p.replace("{dist}", re.escape(dist)) + "$") for p in WHEEL_ALLOWED]
    denied = [re.compile(p) for p in WHEEL_DENIED]
    problems = [f"not on the wheel's allow-list: {n}" for n in names if not any(a.match(n) for a in allowed)]
    problems += [f"never in a wheel: {n}" for n in names if any(d.search(n) for d in denied)]
    for pattern in WHEEL_REQUIRED:
        rx = re.compile(pattern.replace("{dist}", re.escape(dist)) + "$")
        if not any(rx.match(n) for n in names):
            problems.append(f"missing from the wheel: {pattern.replace('{dist}', dist)}")
    return problems


def sdist_problems(names: list[str]) -> list[str]:
    """What is wrong with an sdist holding `names` (relative to its top folder)."""
    denied = [re.compile(p) for p in SDIST_DENIED]
    problems = [f"never in the sdist: {n}" for n in names if any(d.search(n) for d in denied)]
    for pattern in SDIST_REQUIRED:
        if not any(re.fullmatch(pattern, n) for n in names):
            problems.append(f"missing from the sdist: {pattern}")
    return problems


def wheel_names(path: Path) -> tuple[list[str], str]:
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if not n.endswith("/")]
    # jupyter_ext-0.1.0-py3-none-any.whl -> jupyter_ext-0.1.0
    return names, "-".join(path.name.split("-")[:2])


def sdist_names(path: Path) -> list[str]:
    with tarfile.open(path) as t:
        members = [m.name for m in t.getmembers() if m.isfile()]
    return [m.split("/", 1)[1] for m in members if "/" in m]


def main(argv: list[str]) -> int:
    problems: list[str] = []
    for arg in argv:
        path = Path(arg)
        if path.name.endswith(".whl"):
            names, dist = wheel_names(path)
            found = wheel_problems(names, dist)
        elif path.name.endswith(".tar.gz"):
            names = sdist_names(path)
            found = sdist_problems(names)
        else:
            found = [f"neither a wheel nor an sdist: {path}"]
            names = []
        problems += [f"{path.name}: {p}" for p in found]
        if not found:
            print(f"{path.name}: {len(names)} files, as allowed")
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
