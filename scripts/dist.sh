#!/usr/bin/env bash
# The release build (`make dist`): an sdist made from a clean copy of the tree, then the wheel
# built FROM that sdist, then `twine check` and scripts/check_dist.py's lists.
#
#   scripts/dist.sh [OUTDIR]        (default: dist/; PYTHON: the Python with build and twine)
#
# The copy holds the files git would commit (tracked and new, not ignored; nothing that `make`
# left in jupyter_ext/labextension, labextension/lib or node_modules), so the sdist build runs
# `jlpm install` + `jlpm build:prod` (minified, no source maps) and the sdist carries that
# labextension; the wheel built from the sdist reuses it (hatch-jupyter-builder's skip-if-exists).
# `python -m build` makes each in an isolated environment from PyPI (what Jupyter Releaser does);
# DIST_NO_ISOLATION=1 builds with $PYTHON's own packages instead (offline, faster).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$(mkdir -p "${1:-$ROOT/dist}" && cd "${1:-$ROOT/dist}" && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
# jlpm comes with jupyterlab: the build environment's (isolated) or $PYTHON's.
export PATH="$(dirname "$PYTHON"):$PATH"
# The lockfile is the release's: refuse to change it.
export YARN_ENABLE_IMMUTABLE_INSTALLS=1
# The packages jlpm already fetched for this tree (checked against yarn.lock's checksums).
if [[ -z ${YARN_CACHE_FOLDER:-} && -d $ROOT/labextension/.yarn/cache ]]; then
  export YARN_CACHE_FOLDER="$ROOT/labextension/.yarn/cache"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/jupyter-ext-dist.XXXXXX")"
trap 'rm -rf "$work"' EXIT
src="$work/jupyter-ext"
mkdir -p "$src"
start=$SECONDS

(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard) |
  while IFS= read -r -d '' f; do
    # A tracked file deleted in the working tree is not part of it.
    if [[ -f "$ROOT/$f" ]]; then
      mkdir -p "$src/$(dirname "$f")"
      cp -p "$ROOT/$f" "$src/$f"
    fi
  done
echo "dist: clean copy of the tree in $((SECONDS - start)) s ($(find "$src" -type f | wc -l) files)"

version="$(cd "$ROOT" && "$PYTHON" -c 'import json; print(json.load(open("labextension/package.json"))["version"])')"
rm -f "$OUT"/jupyter_ext-"$version".tar.gz "$OUT"/jupyter_ext-"$version"-*.whl

isolation=()
[[ ${DIST_NO_ISOLATION:-0} == 1 ]] && isolation=(--no-isolation)
# No target named: build makes the sdist, then the wheel from that sdist.
"$PYTHON" -m build "${isolation[@]}" --outdir "$OUT" "$src"
echo "dist: sdist and wheel built in $((SECONDS - start)) s"

sdist="$OUT/jupyter_ext-$version.tar.gz"
wheel="$OUT/jupyter_ext-$version-py3-none-any.whl"
[[ -f $sdist && -f $wheel ]] || { echo "dist: expected $sdist and $wheel" >&2; ls -l "$OUT" >&2; exit 1; }
"$PYTHON" -m twine check --strict "$sdist" "$wheel"
"$PYTHON" "$ROOT/scripts/check_dist.py" "$sdist" "$wheel"
echo "dist: $(du -h "$sdist" | cut -f1) $sdist"
echo "dist: $(du -h "$wheel" | cut -f1) $wheel"
echo "dist: done in $((SECONDS - start)) s"
