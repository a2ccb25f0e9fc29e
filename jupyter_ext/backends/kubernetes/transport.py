"""How a step attempt's files reach its pod and come back.

Three ways, chosen per attempt (`choose`):
- `shared`: the pod sees the server's folders at the same paths (`shared_paths`, or every folder
  of the attempt under the mounted home claim); nothing moves.
- `store`: inputs are put in the artifact store (an fsspec URL) before the Job is created, the
  runner puts its outputs there, and the server fetches each artifact before its event is stored
  and the hand-off variables before `step.end` (the next step's inputs are read from here).
- `configmap`: inputs (notebook, parameters, hand-off variables) travel in a ConfigMap owned by
  the Job; outputs come back over the pod log as `file` events, written into the attempt folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from ...contract import HANDOFF_IN_ENV, HANDOFF_OUT_ENV
from ...errors import BackendError
from ...layout import AttemptFiles
from ...runner import transfer
from ..base import StepLaunch
from .manifests import INPUTS_DIR, SCRATCH_DIR, job_owner_references

Mode = Literal["shared", "store", "configmap"]
NOTEBOOK_KEY = "step.ipynb"
PARAMETERS_KEY = "parameters.json"


def choose(
    launch: StepLaunch, *, shared_paths: bool, artifact_store: str, home_claim: str | None, home_mount: str
) -> Mode:
    """Shared when configured (`shared_paths`), or when the home claim is mounted and every folder
    of the attempt lies under its mount path (the pod sees them at the same paths); else through
    the artifact store when one is configured; else a ConfigMap in, the log out."""
    if shared_paths:
        return "shared"
    if artifact_store:
        return "store"
    if home_claim:
        home = PurePosixPath(home_mount)
        paths = [launch.attempt_dir, launch.notebook, launch.workdir]
        if all(PurePosixPath(p).is_relative_to(home) for p in paths):
            return "shared"
    return "configmap"


@dataclass
class Placement:
    """Where the pod finds an attempt's files, and what must be sent for it to find them there."""

    mode: Mode
    env: dict[str, str]  # the step's environment, with the transport's variables
    paths: dict[str, str]  # notebook, attempt_dir, workdir, parameters_file: as the pod sees them
    files: dict[str, bytes] = field(default_factory=dict)  # inputs the pod cannot read from our disk
    inputs_url: str | None = None  # `store`: where `files` go
    outputs: str | None = None  # `store`: where the runner puts its outputs


def handoff_keys(handoff_in: dict[str, str]) -> dict[str, str]:
    """Input variable -> its file name among the inputs (by position: names need not be ConfigMap keys)."""
    return {var: f"handoff.{i}.pkl" for i, var in enumerate(sorted(handoff_in))}


def place(
    launch: StepLaunch,
    mode: Mode,
    *,
    artifact_store: str = "",
    home_claim: str | None = None,
    home_mount: str = "",
    log_outputs_max_bytes: int = transfer.DEFAULT_LOG_BUDGET,
) -> Placement:
    """The placement of an attempt's files; writes its parameters file (blocking: run it in a thread)."""
    attempt_dir = Path(launch.attempt_dir)
    attempt = AttemptFiles(attempt_dir)
    params = attempt.parameters
    attempt.artifacts.mkdir(parents=True, exist_ok=True)
    params.write_text(json.dumps(launch.parameters))
    env = dict(launch.env)
    if mode == "shared":
        env["JUPYTER_EXT_ARTIFACTS_DIR"] = str(attempt.artifacts)
        if launch.handoff_in:
            env[HANDOFF_IN_ENV] = json.dumps(launch.handoff_in)
        paths = {"notebook": launch.notebook, "attempt_dir": launch.attempt_dir, "workdir": launch.workdir}
        paths["parameters_file"] = str(params)
        return Placement(mode, env, paths)
    # The pod sees none of the server's folders: inputs under `inputs`, the rest in its scratch folder.
    inputs = INPUTS_DIR if mode == "configmap" else f"{SCRATCH_DIR}/inputs"
    env.update({"JUPYTER_EXT_ARTIFACTS_DIR": f"{SCRATCH_DIR}/artifacts", HANDOFF_OUT_ENV: f"{SCRATCH_DIR}/handoff"})
    keys = handoff_keys(launch.handoff_in)
    if keys:
        env[HANDOFF_IN_ENV] = json.dumps({var: f"{inputs}/{key}" for var, key in keys.items()})
    workdir = launch.workdir
    if not (home_claim and PurePosixPath(workdir).is_relative_to(PurePosixPath(home_mount))):
        workdir = SCRATCH_DIR
    paths = {
        "notebook": f"{inputs}/{NOTEBOOK_KEY}",
        "attempt_dir": SCRATCH_DIR,
        "workdir": workdir,
        "parameters_file": f"{inputs}/{PARAMETERS_KEY}",
    }
    files = {NOTEBOOK_KEY: Path(launch.notebook).read_bytes(), PARAMETERS_KEY: params.read_bytes()}
    for var, key in keys.items():
        source = Path(launch.handoff_in[var])
        if source.is_file():  # a missing one fails in the kernel with a message naming the variable
            files[key] = source.read_bytes()
    placement = Placement(mode, env, paths, files)
    if mode == "store":
        prefix = transfer.join(artifact_store, launch.job_id, launch.step, f"attempt-{launch.attempt}")
        placement.inputs_url = env[transfer.ENV_INPUTS_URL] = transfer.join(prefix, "inputs")
        env[transfer.ENV_INPUTS_DIR] = inputs
        placement.outputs = env[transfer.ENV_OUTPUTS] = transfer.join(prefix, "outputs")
    else:
        env[transfer.ENV_OUTPUTS] = transfer.OUTPUTS_LOG
        env[transfer.ENV_OUTPUTS_MAX] = str(log_outputs_max_bytes)
    return placement


async def put_inputs(placement: Placement, step: str, artifact_store: str) -> None:
    """`store`: put the attempt's inputs where the runner fetches them."""
    assert placement.inputs_url is not None
    try:
        await asyncio.to_thread(transfer.put_files, placement.inputs_url, placement.files)
    except Exception as exc:  # noqa: BLE001 - any store error: say which store and step
        raise BackendError(
            f"could not write the inputs of step {step!r} to the artifact store {artifact_store!r}: {exc}"
        ) from None


async def create_inputs_configmap(
    core: Any, batch: Any, namespace: str, step: str, job: str, uid: str | None, body: dict[str, Any], timeout: float
) -> None:
    """`configmap`: the inputs ConfigMap, owned by the Job so it goes when the Job goes (TTL, cancel)."""
    from kubernetes_asyncio.client.exceptions import ApiException

    try:
        if uid is None:  # the Job existed already (a restart): own it by that Job
            uid = (await batch.read_namespaced_job(job, namespace, _request_timeout=timeout)).metadata.uid
        body["metadata"]["ownerReferences"] = job_owner_references(job, uid or "")
        await core.create_namespaced_config_map(namespace, body, _request_timeout=timeout)
    except ApiException as exc:
        if exc.status == 409:
            return
        with contextlib.suppress(ApiException):  # the pod would wait for its inputs forever
            await batch.delete_namespaced_job(job, namespace, propagation_policy="Background")
        raise BackendError(f"could not create the inputs ConfigMap of step {step!r}: {api_reason(exc)}") from None


async def receive(
    batch: list[dict[str, Any]], *, attempt_dir: Path, outputs: str | None, step: str, log: logging.Logger | Any
) -> list[dict[str, Any]]:
    """Bring the files an event refers to onto the server before it is stored.

    `file` events (outputs over the log) are written into the attempt folder and not
    stored; with an artifact store, an `artifact` is fetched before its event is stored
    and the hand-off variables before `step.end` (the next step's inputs are read from here).
    """
    out = []
    for event in batch:
        kind = event.get("type")
        if kind == "file":
            if await asyncio.to_thread(transfer.write_chunk, attempt_dir, event) is None:
                log.warning("jupyter-ext: ignored a malformed file event of step %s", step)
            continue
        if kind == "artifact" and "path" in event:
            rel = transfer.safe_relpath(event["path"])
            if rel is None:
                continue
            event["location"] = str(AttemptFiles(attempt_dir).artifacts / rel)
            if outputs and not event.get("deferred"):  # a deferred one is made on the server, later
                await _fetch(transfer.join(outputs, "artifacts", rel), Path(event["location"]), step, log)
        if kind == "step.end" and outputs:
            await _fetch(transfer.join(outputs, "handoff"), AttemptFiles(attempt_dir).handoff, step, log, tree=True)
        out.append(event)
    return out


async def _fetch(url: str, local: Path, step: str, log: Any, tree: bool = False) -> None:
    try:
        await asyncio.to_thread(transfer.get_tree if tree else transfer.get_file, url, local)
    except Exception as exc:  # noqa: BLE001 - a store error must not lose the step's events
        log.warning("jupyter-ext: could not fetch %s for step %s: %r", url, step, exc)


def api_reason(exc: Any) -> str:
    """The API server's own words of a failed call."""
    try:
        return str(json.loads(exc.body).get("message", exc.reason))
    except (TypeError, ValueError, AttributeError):
        return str(getattr(exc, "reason", exc))
