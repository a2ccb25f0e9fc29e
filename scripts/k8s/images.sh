#!/usr/bin/env bash
# Build (or reuse) the images the real node of scripts/k8s/cluster.sh runs, without a registry:
#
#   pause      the sandbox image, built from k8s.io/kubernetes's own build/pause/linux/pause.c
#              (a static binary, gcc -static) on an empty base
#   stand-in   python:3.11.10-slim-bookworm: a LOCAL STAND-IN under the official image's name
#              (that image cannot be pulled here). mmdebstrap bookworm + Debian's Python 3.11,
#              with a venv at /usr/local so /usr/local/bin/python and pip exist where the
#              official image has them. It is not the official image: the Python patch version
#              differs (Debian's 3.11.2) and it carries no build toolchain.
#   step       kernels/python/Dockerfile, built unchanged (buildah bud --pull-never) from a
#              context of kernels/ plus dist/ with a wheel of this tree
#
# Each is cached by the hash of what went into it (an OCI archive under
# $JUPYTER_EXT_IMAGE_CACHE, default ~/.cache/jupyter-ext/images/) and rebuilt only when that
# changes. buildah keeps its own storage there too (never /var/lib/containers).
#
#   scripts/k8s/images.sh build          build what is missing; prints NAME=REF lines
#   scripts/k8s/images.sh import SOCK    build, then import all three into the containerd at SOCK
#                                        (namespace k8s.io) unless already there
#   scripts/k8s/images.sh refs           print NAME=REF lines (no build)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
K8S_VERSION="${K8S_VERSION:-v1.33.13}"
CACHE="${JUPYTER_EXT_IMAGE_CACHE:-$HOME/.cache/jupyter-ext/images}"
read -r -a NICE <<<"${NICE:-nice -n 10}"
BUILDAH=(buildah --root "$CACHE/buildah/root" --runroot "$CACHE/buildah/run" --storage-driver overlay)
BASE_REF="docker.io/library/python:3.11.10-slim-bookworm"
PAUSE_VERSION="3.10"
START=$(date +%s)
log() { printf '[k8s-images %4ss] %s\n' "$(($(date +%s) - START))" "$*" >&2; }

mkdir -p "$CACHE"
# Short names (FROM python:...) resolve to docker.io, only from local storage (--pull-never).
export CONTAINERS_REGISTRIES_CONF="$CACHE/registries.conf"
printf 'unqualified-search-registries = ["docker.io"]\nshort-name-mode = "permissive"\n' >"$CONTAINERS_REGISTRIES_CONF"

need() {
  local missing=()
  command -v buildah >/dev/null || missing+=(buildah)
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
  command -v gcc >/dev/null || missing+=(gcc)
  [[ -f /usr/lib/x86_64-linux-gnu/libc.a || -f /usr/lib/aarch64-linux-gnu/libc.a ]] || missing+=(libc6-dev)
  if ((${#missing[@]})); then
    log "installing ${missing[*]} with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
      { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; }
  fi
}

hash_of() { sha256sum | cut -c1-12; }

# ------------------------------------------------------------------ inputs and their hashes
pause_src() { go env GOMODCACHE 2>/dev/null | sed "s|\$|/k8s.io/kubernetes@$K8S_VERSION/build/pause/linux/pause.c|"; }
PAUSE_C=$(pause_src)
pause_hash() { { cat "$PAUSE_C"; echo "$PAUSE_VERSION"; sed -n '/^build_pause()/,/^}/p' "$0"; } | hash_of; }
# The stand-in's recipe is the function below: its text is its key.
base_hash() { sed -n '/^build_base()/,/^}/p' "$0" | hash_of; }
step_hash() {
  # what goes into the step image: the Dockerfile, its kernels/ files, the base, and every
  # file of the wheel's source (tracked or not, as in the working tree)
  {
    base_hash
    (cd "$ROOT" && git ls-files -co --exclude-standard -- kernels/python pyproject.toml jupyter_ext ':!jupyter_ext/labextension' |
      LC_ALL=C sort | while read -r f; do [[ -f $f ]] && { echo "$f"; cat "$f"; }; done)
  } | hash_of
}
# The one version (labextension/package.json, read by pyproject.toml's hatch-nodejs-version source).
VERSION=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$ROOT/labextension/package.json" | head -1)
[[ -n $VERSION ]] || VERSION=$(cd "$ROOT" && python3 -c 'import jupyter_ext; print(jupyter_ext.__version__)' 2>/dev/null || echo 0)

refs() {
  echo "PAUSE=docker.io/jupyter-ext/pause:$PAUSE_VERSION-$(pause_hash)"
  echo "BASE=$BASE_REF"
  echo "STEP=docker.io/jupyter-ext/python-step:$VERSION-$(step_hash)"
}

archive_of() { echo "$CACHE/$(tr '/:' '__' <<<"$1").tar"; }

# ------------------------------------------------------------------ builders
build_pause() {
  local ref=$1 tmp ctr
  [[ -f "$PAUSE_C" ]] || go mod download "k8s.io/kubernetes@$K8S_VERSION"
  tmp=$(mktemp -d)
  gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION-jupyter-ext" -o "$tmp/pause" "$PAUSE_C"
  strip "$tmp/pause"
  ctr=$("${BUILDAH[@]}" from scratch)
  "${BUILDAH[@]}" copy "$ctr" "$tmp/pause" /pause >/dev/null
  "${BUILDAH[@]}" config --entrypoint '["/pause"]' --user 65535:65535 "$ctr"
  "${BUILDAH[@]}" commit -q "$ctr" "$ref" >/dev/null
  "${BUILDAH[@]}" rm "$ctr" >/dev/null
  rm -rf "$tmp"
}

build_base() {
  # STAND-IN for python:3.11.10-slim-bookworm (see the header): same name, same paths
  # (/usr/local/bin/python, pip), Debian bookworm's Python 3.11 underneath.
  local ref=$1 tmp ctr
  tmp=$(mktemp -d)
  "${NICE[@]}" mmdebstrap --quiet --variant=minbase \
    --include=python3,python3-venv,python3-pip,ca-certificates,passwd,netbase,tzdata \
    --customize-hook='chroot "$1" python3 -m venv /usr/local' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    bookworm "$tmp/rootfs.tar" http://deb.debian.org/debian >&2
  ctr=$("${BUILDAH[@]}" from scratch)
  "${BUILDAH[@]}" add "$ctr" "$tmp/rootfs.tar" / >/dev/null
  "${BUILDAH[@]}" config --env PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --env PYTHON_VERSION=3.11 --cmd python3 \
    --label org.opencontainers.image.description="jupyter-ext local stand-in for $ref (not the official image)" "$ctr"
  "${BUILDAH[@]}" commit -q "$ctr" "$ref" >/dev/null
  "${BUILDAH[@]}" rm "$ctr" >/dev/null
  rm -rf "$tmp"
}

PY="${PYTHON:-$([[ -x $ROOT/.venv/bin/python ]] && echo "$ROOT/.venv/bin/python" || echo python3)}"
build_step() {
  local ref=$1 ctx
  "${BUILDAH[@]}" inspect --type image "$BASE_REF" >/dev/null 2>&1 ||
    "${BUILDAH[@]}" pull -q "docker-archive:$(archive_of "$BASE_REF")" >/dev/null
  ctx=$(mktemp -d)
  mkdir -p "$ctx/kernels" "$ctx/dist"
  cp -r "$ROOT/kernels/python" "$ctx/kernels/python"
  (cd "$ROOT" && HATCH_JUPYTER_BUILDER_SKIP_NPM=1 "${NICE[@]}" "$PY" -m pip wheel -q --no-deps \
    --no-build-isolation -w "$ctx/dist" . >&2) ||
    (cd "$ROOT" && HATCH_JUPYTER_BUILDER_SKIP_NPM=1 "${NICE[@]}" "$PY" -m pip wheel -q --no-deps -w "$ctx/dist" . >&2)
  # pip inside the build needs this machine's CA bundle (TLS through the registry proxy).
  local ca=/etc/ssl/certs/ca-certificates.crt vols=()
  if [[ -f $ca ]]; then
    printf '[global]\ncert = %s\n' "$ca" >"$ctx/pip.conf"
    vols=(-v "$ca:$ca:ro" -v "$ctx/pip.conf:/etc/pip.conf:ro")
  fi
  "${NICE[@]}" "${BUILDAH[@]}" bud -q --pull-never --isolation chroot --layers=false "${vols[@]}" \
    -f "$ctx/kernels/python/Dockerfile" -t "$ref" "$ctx" >&2
  rm -rf "$ctx"
}

ensure() {
  # ensure NAME REF: the image REF exists as an archive in the cache (built if not)
  local name=$1 ref=$2 out
  out=$(archive_of "$ref")
  if [[ -f $out ]]; then
    log "$name: cached ($ref)"
    return
  fi
  if ! "${BUILDAH[@]}" inspect --type image "$ref" >/dev/null 2>&1; then
    local t0
    t0=$(date +%s)
    log "$name: building $ref"
    "build_$name" "$ref"
    log "$name: built in $(($(date +%s) - t0))s"
  fi
  "${BUILDAH[@]}" push -q "$ref" "docker-archive:$out.tmp:$ref" >&2
  mv "$out.tmp" "$out"
  # keep one archive per image name: older hashes are dead weight
  local stem
  stem=$(archive_of "${ref%:*}:")
  for old in "${stem%.tar}"*.tar; do [[ $old == "$out" ]] || rm -f "$old"; done
}

cmd_build() {
  need
  # The refs are computed once: the step's hash covers the source tree, which may change while
  # the image builds (an editor, a test run); what is built is what is imported and named.
  local name ref refs_now
  refs_now=$(refs)
  while IFS='=' read -r name ref; do
    case $name in
      PAUSE) ensure pause "$ref" ;;
      BASE) if [[ ! -f $(archive_of "$ref") ]] || [[ ! -f "$CACHE/.base-$(base_hash)" ]]; then
              rm -f "$(archive_of "$ref")"; "${BUILDAH[@]}" rmi -f "$ref" >/dev/null 2>&1 || true
              ensure base "$ref"; rm -f "$CACHE"/.base-*; touch "$CACHE/.base-$(base_hash)"
            else log "base: cached ($ref, local stand-in)"; fi ;;
      STEP) ensure step "$ref" ;;
    esac
  done <<<"$refs_now"
  printf '%s\n' "$refs_now"
}

cmd_import() {
  local sock=$1 name ref refs_now
  refs_now=$(cmd_build)
  while IFS='=' read -r name ref; do
    [[ $name == BASE ]] && continue
    if ctr --address "$sock" -n k8s.io images ls -q | grep -qxF "$ref"; then
      log "$name: already in the node's containerd"
    else
      log "$name: importing into the node's containerd"
      ctr --address "$sock" -n k8s.io images import --no-unpack=false "$(archive_of "$ref")" >&2
    fi
  done <<<"$refs_now"
  printf '%s\n' "$refs_now"
}

case "${1:-}" in
  build) cmd_build ;;
  import) cmd_import "${2:?usage: $0 import CONTAINERD_SOCKET}" ;;
  refs) refs ;;
  *) echo "usage: $0 build|import SOCK|refs" >&2; exit 2 ;;
esac
