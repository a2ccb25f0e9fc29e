"""Step inputs in, outputs out, when the step's pod cannot see the server's disk.

The Kubernetes backend moves a step's files one of three ways (`KubernetesBackend.transport`):

- ``shared``: pod and server see the same paths (a shared volume); nothing to move.
- ``configmap``: small inputs are mounted from a ConfigMap owned by the Job; outputs (hand-off
  variables, artifacts) come back over the event channel, the pod log, as `file` events of
  base64 chunks, which the server writes into the attempt folder and does not store.
- ``store``: an fsspec URL both sides reach (``s3://bucket/prefix``, ``gs://...``, or a
  path on a volume both mount). The server writes inputs under ``<attempt>/inputs/``; the
  runner copies them in before the step and its outputs to ``<attempt>/outputs/`` after it.

The runner's side is driven by environment variables set by the backend (none set: the
runner moves nothing). This module is imported by the runner in every step: fsspec is
imported only where a store is used.
"""

from __future__ import annotations

import base64
import os
import posixpath
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..contract import HANDOFF_OUT_ENV

ENV_INPUTS_URL = "JUPYTER_EXT_INPUTS_URL"  # a store folder copied to ENV_INPUTS_DIR before the step
ENV_INPUTS_DIR = "JUPYTER_EXT_INPUTS_DIR"
ENV_OUTPUTS = "JUPYTER_EXT_OUTPUTS"  # "log", or a store folder that receives handoff/ and artifacts/
ENV_OUTPUTS_MAX = "JUPYTER_EXT_OUTPUTS_MAX_BYTES"  # budget of files sent over the log
OUTPUTS_LOG = "log"
KINDS = ("handoff", "artifacts")  # hand-off first: later steps need them, artifacts are nice to have
# Raw bytes per `file` event: ~43 KiB of base64, well below the line limits of log readers.
CHUNK = 32 * 1024
DEFAULT_LOG_BUDGET = 8 * 2**20


def store_fs(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) of a store URL or local path."""
    try:
        from fsspec.core import url_to_fs
    except ImportError as exc:  # pragma: no cover - fsspec is a dependency of jupyter-ext
        raise RuntimeError("the artifact store needs fsspec: pip install fsspec (and s3fs or gcsfs)") from exc
    fs, path = url_to_fs(url)
    return fs, str(path).rstrip("/")


def _makedirs(fs: Any, path: str) -> None:
    """Parent folders, where the filesystem has folders (object stores have none: left alone)."""
    protocols = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
    if "file" in protocols:
        fs.makedirs(posixpath.dirname(path), exist_ok=True)


def join(url: str, *parts: str) -> str:
    """A URL (or path) below `url`; parts are POSIX relative paths."""
    return "/".join([url.rstrip("/"), *(p.strip("/") for p in parts)])


def safe_relpath(path: object) -> str | None:
    """`path` if it is a plain relative POSIX path with no '..', '.' or empty parts; else None."""
    if not isinstance(path, str) or not path or "\\" in path or "\x00" in path:
        return None
    parts = path.split("/")
    if any(p in ("..", ".", "") for p in parts):
        return None
    return path


# -- server side ------------------------------------------------------------------------------------------------
def put_files(url: str, files: dict[str, bytes]) -> None:
    """Write `files` (relative path -> bytes) below `url` (blocking: run it in a thread)."""
    fs, root = store_fs(url)
    for rel, data in files.items():
        target = posixpath.join(root, rel)
        _makedirs(fs, target)
        fs.pipe_file(target, data)


def get_tree(url: str, local: Path) -> list[str]:
    """Copy every file below `url` into `local`; returns the relative paths copied (blocking)."""
    fs, root = store_fs(url)
    if not fs.exists(root):
        return []
    copied = []
    for remote in sorted(fs.find(root)):
        rel = safe_relpath(posixpath.relpath(remote, root))
        if rel is None:
            continue
        target = local / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(remote, str(target))
        copied.append(rel)
    return copied


def get_file(url: str, local: Path) -> bool:
    """Copy one file from the store; False when it is not there (blocking)."""
    fs, path = store_fs(url)
    if not fs.isfile(path):
        return False
    local.parent.mkdir(parents=True, exist_ok=True)
    fs.get_file(path, str(local))
    return True


def write_chunk(attempt_dir: Path, event: dict[str, Any]) -> str | None:
    """Write one `file` event's chunk into `attempt_dir/<kind>/<path>`; the path written, or None
    when the event is malformed (never a path outside the attempt folder). Idempotent, so a
    resumed log may deliver a chunk twice (blocking)."""
    kind, rel = event.get("kind"), safe_relpath(event.get("path"))
    offset = event.get("offset")
    if kind not in KINDS or rel is None or not isinstance(offset, int) or offset < 0:
        return None
    try:
        data = base64.b64decode(str(event.get("data", "")), validate=True)
    except ValueError:
        return None
    target = attempt_dir / kind / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "r+b" if target.exists() else "wb") as fh:
        fh.seek(offset)
        fh.write(data)
        if event.get("last"):
            fh.truncate(offset + len(data))
    return f"{kind}/{rel}"


# -- runner side (inside the step's pod) -------------------------------------------------------------------------
def fetch_inputs() -> list[str]:
    """Copy the store's inputs folder into the local inputs folder, if the backend asked for it."""
    url, local = os.environ.get(ENV_INPUTS_URL), os.environ.get(ENV_INPUTS_DIR)
    if not url or not local:
        return []
    return get_tree(url, Path(local))


def _outputs(artifacts_dir: Path) -> Iterator[tuple[str, str, Path]]:
    folders = {"handoff": os.environ.get(HANDOFF_OUT_ENV), "artifacts": str(artifacts_dir)}
    for kind in KINDS:
        folder = folders[kind]
        if not folder or not Path(folder).is_dir():
            continue
        base = Path(folder)
        for path in sorted(p for p in base.rglob("*") if p.is_file() and not p.is_symlink()):
            if path.name.endswith(".partial"):
                continue
            yield kind, path.relative_to(base).as_posix(), path


def ship_outputs(emitter: Any, artifacts_dir: Path) -> None:
    """Send the step's hand-off variables and artifacts where the backend asked (no-op if it did not)."""
    target = os.environ.get(ENV_OUTPUTS)
    if not target:
        return
    if target != OUTPUTS_LOG:
        fs, root = store_fs(target)
        for kind, rel, path in _outputs(artifacts_dir):
            remote = posixpath.join(root, kind, rel)
            _makedirs(fs, remote)
            fs.put_file(str(path), remote)
        return
    budget = int(os.environ.get(ENV_OUTPUTS_MAX) or DEFAULT_LOG_BUDGET)
    for kind, rel, path in _outputs(artifacts_dir):
        size = path.stat().st_size
        if size > budget:
            emitter.emit(
                "log",
                stream="stderr",
                text=f"jupyter-ext: {kind}/{rel} ({size} bytes) is not sent back: the step's outputs may "
                f"use {budget} more bytes of the pod log; configure c.KubernetesBackend.artifact_store "
                "for large outputs\n",
            )
            continue
        budget -= size
        with open(path, "rb") as fh:
            offset = 0
            while True:
                data = fh.read(CHUNK)
                last = offset + len(data) >= size
                emitter.emit(
                    "file",
                    kind=kind,
                    path=rel,
                    offset=offset,
                    size=size,
                    last=last,
                    data=base64.b64encode(data).decode("ascii"),
                )
                offset += len(data)
                if last:
                    break
