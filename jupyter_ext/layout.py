"""Where everything of a job lives on disk, and which paths a client may name (the only place
either is written down).

    <data_dir>/
      jobs/<job>/
        notebook.ipynb                      the notebook as submitted (a %%remote cell: that cell)
        inputs/<var>.pkl                    a %%remote cell's inputs
        driver.log                          `jupyter-ext run --detach`'s driver process
        executed.ipynb, executed.html       the whole job's executed notebook (several steps)
        steps/<step>/
          step.ipynb                        what the runner executes (notebook/slice.py)
          attempt-<n>/                      one try of the step (AttemptFiles)
            events.jsonl, runner.log, handle.json, parameters.json, kernel.pid
            artifacts/                      files the step wrote (executed.ipynb among them)
            handoff/<var>.pkl               variables later steps load
      uploads/<sha256(user)[:16]>/<id>      an upload waiting for the job that takes it
      schedules/<id>/notebook.ipynb         a schedule's snapshot of its notebook (what its runs run)
      warm/ready-<tag>-<pid>.sock           a standby runner `run --local` left for the next command

Client-named paths (a notebook, a cell's working folder) are relative to the server root and
never lead outside it: no absolute path, no '..', no hidden part (unless allowed), no symlink
out, and a symlink loop is a 400 naming the field, not a 500.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from .contract import (
    ATTEMPT_ARTIFACTS,
    ATTEMPT_EVENTS,
    ATTEMPT_HANDOFF,
    ATTEMPT_KERNEL_PID,
    ATTEMPT_PARAMETERS,
    ATTEMPT_RUNNER_LOG,
)
from .errors import NotFound, ValidationError

JOBS = "jobs"
UPLOADS = "uploads"
SCHEDULES = "schedules"
SNAPSHOT = "notebook.ipynb"
NOTEBOOK = "notebook.ipynb"
STEP_NOTEBOOK = "step.ipynb"
HANDOFF = ATTEMPT_HANDOFF
ARTIFACTS = ATTEMPT_ARTIFACTS


def link_file(item: Path, copy: Path) -> None:
    """Give `copy` the bytes of `item` as a hard link (a copy where links cannot be made); a `copy`
    that is that link already stays (blocking). A job that reuses another's files keeps its own
    links, so deleting the other job later cannot break it."""
    try:
        os.link(item, copy)
    except FileExistsError:
        if not os.path.samefile(item, copy):
            shutil.copy2(item, copy)
    except OSError:
        shutil.copy2(item, copy)


def resolved(path: Path, relative: str, field: str) -> Path:
    """`path.resolve()`, a symlink loop (RuntimeError) or an unreadable path refused as the field's 400."""
    try:
        return path.resolve()
    except (RuntimeError, OSError) as exc:
        why = "a symlink loop" if isinstance(exc, RuntimeError) else (exc.strerror or str(exc))
        raise ValidationError(f"{field}: {relative!r} cannot be resolved: {why}", field=field) from None


@dataclass(frozen=True)
class AttemptFiles:
    """The files of one attempt of a step, under its `attempt_dir` (what a backend hands the
    runner, and reads back)."""

    dir: Path

    @property
    def events(self) -> Path:
        return self.dir / ATTEMPT_EVENTS

    @property
    def artifacts(self) -> Path:
        return self.dir / ARTIFACTS

    @property
    def handoff(self) -> Path:
        return self.dir / HANDOFF

    @property
    def kernel_pid(self) -> Path:
        return self.dir / ATTEMPT_KERNEL_PID

    @property
    def parameters(self) -> Path:
        return self.dir / ATTEMPT_PARAMETERS

    @property
    def runner_log(self) -> Path:
        return self.dir / ATTEMPT_RUNNER_LOG

    @property
    def handle(self) -> Path:
        return self.dir / "handle.json"


class JobLayout:
    """Every path of every job under `data_dir`, and the checks on paths clients name under `root_dir`."""

    def __init__(self, root_dir: str | Path, data_dir: str | Path, *, allow_hidden: bool = False) -> None:
        self.root_dir = Path(root_dir).resolve()
        self.data_dir = Path(data_dir)
        self.allow_hidden = allow_hidden

    # -- a job's folder --------------------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        return self.data_dir / JOBS / job_id

    def notebook(self, job_id: str) -> Path:
        """The notebook as submitted (its outputs are not this run's)."""
        return self.job_dir(job_id) / NOTEBOOK

    def input_file(self, job_id: str, name: str) -> Path:
        """A %%remote cell's input variable `name`, as the client sent it."""
        return self.job_dir(job_id) / "inputs" / f"{name}.pkl"

    def driver_log(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "driver.log"

    def step_dir(self, job_id: str, step: str) -> Path:
        return self.job_dir(job_id) / "steps" / step

    def step_notebook(self, job_id: str, step: str) -> Path:
        return self.step_dir(job_id, step) / STEP_NOTEBOOK

    def attempt_dir(self, job_id: str, step: str, attempt: int) -> Path:
        return self.step_dir(job_id, step) / f"attempt-{attempt}"

    def attempt(self, job_id: str, step: str, attempt: int) -> AttemptFiles:
        return AttemptFiles(self.attempt_dir(job_id, step, attempt))

    def handoff_dir(self, job_id: str, step: str, attempt: int) -> Path:
        """Where attempt `attempt` of `step` saved the variables later steps load."""
        return self.attempt(job_id, step, attempt).handoff

    def handoff_file(self, job_id: str, step: str, attempt: int, var: str) -> Path:
        return self.handoff_dir(job_id, step, attempt) / f"{var}.pkl"

    def artifact_file(self, job_id: str, stored: str | Path) -> Path | None:
        """An artifact's real path, if its stored location really lies in the job's folder, else
        None: nothing outside it is ever served (blocking)."""
        path = Path(stored).resolve()
        return path if path.is_relative_to(self.job_dir(job_id).resolve()) else None

    # -- schedules -------------------------------------------------------------------------------------------
    def schedule_snapshot(self, schedule_id: str) -> Path:
        """The notebook a schedule's runs run (taken when it was made, or its `snapshot` PATCH)."""
        return self.data_dir / SCHEDULES / schedule_id / SNAPSHOT

    # -- uploads ---------------------------------------------------------------------------------------------
    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / UPLOADS

    def upload_path(self, user: str, upload_id: str) -> Path:
        """Where an upload of `user` lives until a job takes it (ids are hex; anything else is refused)."""
        if not re.fullmatch(r"[0-9a-f]{32}", upload_id):
            raise ValidationError(f"upload: {upload_id!r} is not an upload id", field="upload")
        return self.uploads_dir / hashlib.sha256(user.encode()).hexdigest()[:16] / upload_id

    # -- paths clients name ------------------------------------------------------------------------------------
    def resolve_notebook(self, relative: str) -> Path:
        """The notebook's real path, refusing anything outside the server root (blocking)."""
        field = "notebook"
        if relative.startswith(("/", "\\")) or (len(relative) > 1 and relative[1] == ":"):
            raise ValidationError(
                f"notebook: {relative!r} is absolute; give a path relative to the server root", field=field
            )
        parts = Path(relative).parts
        if ".." in parts:
            raise ValidationError(f"notebook: {relative!r} leaves the server root; remove '..'", field=field)
        if not self.allow_hidden and any(p.startswith(".") for p in parts):
            raise ValidationError(f"notebook: {relative!r} is in a hidden folder or file", field=field)
        path = resolved(self.root_dir / relative, relative, field)
        if not path.is_relative_to(self.root_dir):
            raise ValidationError(f"notebook: {relative!r} points outside the server root (a symlink?)", field=field)
        if path.is_dir():
            raise ValidationError(
                f"notebook: {relative!r} is a folder, not a notebook; give the path of an .ipynb file in it",
                field=field,
            )
        if not path.is_file():
            raise NotFound(f"notebook: {relative!r} does not exist under the server root", field=field)
        return path

    def resolve_folder(self, relative: str) -> Path:
        """A folder under the server root ('' is the root itself), refusing anything outside it (blocking)."""
        field = "cell.workdir"
        parts = Path(relative).parts
        if relative.startswith(("/", "\\")) or ".." in parts:
            raise ValidationError(f"{field}: {relative!r} is not a folder under the server root", field=field)
        path = resolved(self.root_dir / relative, relative, field)
        if not path.is_relative_to(self.root_dir) or not path.is_dir():
            raise ValidationError(f"{field}: {relative!r} is not a folder under the server root", field=field)
        return path
