"""From a submitted `JobSpec` to a job folder and its steps, before anything runs.

Everything a submission is refused for is found here, in order: the notebook (under the server
root, readable), its plan, its parameters, the kernel, the resources each step asks for (naming
the tag that asked), and for a re-run, the earlier steps it reuses. What it writes goes through
`JobLayout`: the notebook as submitted, one `step.ipynb` per step (notebook/slice.py), a
%%remote cell's inputs, and the reused steps' hand-off files (hard links).

The orchestrator calls `prepare` in a thread, then stores the job and drives it.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
from pathlib import Path
from typing import Any

import nbformat

from .backends.base import Backend
from .backends.local import LocalBackend
from .errors import NotFound, ValidationError
from .layout import JobLayout, link_file
from .models import JobSpec, Resources, StepSpec
from .notebook import plan_notebook, slice_step
from .notebook.parameters import check_parameters
from .notebook.slice import cell_notebook
from .notebook.tags import cell_label
from .records import JobRecord
from .store import AsyncStore

CELL_STEP = "cell"  # the one step of a %%remote cell's job


class JobBuilder:
    """Checks a submission and writes its job folder (see the module docstring)."""

    def __init__(
        self, layout: JobLayout, store: AsyncStore, backends: dict[str, Backend], default_backend: str
    ) -> None:
        self.layout = layout
        self.store = store
        self.backends = backends
        self.default_backend = default_backend

    def backend_named(self, name: str | None) -> tuple[str, Backend]:
        """The backend a job asks for (None: the default), refusing one that is not configured."""
        name = name or self.default_backend
        if name not in self.backends:
            known = ", ".join(sorted(self.backends))
            raise ValidationError(f"backend: {name!r} is not configured here; use one of: {known}", field="backend")
        return name, self.backends[name]

    def read_notebook(self, relative: str) -> tuple[Path, Any]:
        """The notebook under the server root and its contents (blocking: run it in a thread)."""
        path = self.layout.resolve_notebook(relative)
        try:
            return path, nbformat.read(path, as_version=4)
        except Exception as exc:  # noqa: BLE001 - nbformat raises many types for bad files
            raise ValidationError(f"notebook: {relative!r} is not a valid notebook: {exc}", field="notebook") from None

    def check_kernel(self, nb: Any, backend_name: str, kernel: str | None = None) -> None:
        """Refuse, before anything runs, a kernel the local backend does not have: the one asked for
        (`kernel`), else the notebook's. (Elsewhere the step's image decides which kernels exist.)"""
        if not isinstance(self.backends.get(backend_name), LocalBackend):
            return
        kernelspec = (nb.get("metadata", {}) or {}).get("kernelspec") or {}
        wanted = kernel or kernelspec.get("name")
        if not wanted:
            return  # the notebook names no kernel: the runner uses python3, as papermill users expect
        from jupyter_client.kernelspec import KernelSpecManager

        installed = sorted(KernelSpecManager().find_kernel_specs())
        if wanted in installed:
            return
        listed = ", ".join(installed) or "none"
        if kernel:
            raise ValidationError(
                f"kernel: {kernel!r} is not installed here; installed kernels: {listed}", field="kernel"
            )
        shown = f" ({kernelspec['display_name']})" if kernelspec.get("display_name") else ""
        raise ValidationError(
            f"kernel: the notebook's kernel {wanted!r}{shown} is not installed here (installed kernels: {listed}); "
            f"install it (`jupyter kernelspec list` shows what the local backend can use), or run the notebook "
            f"with another kernel on purpose: `jupyter-ext run --kernel {installed[0] if installed else 'python3'} "
            "...` (the `kernel` field of the job)",
            field="kernel",
        )

    def check_resources(self, backend: Backend, step: str, resources: Resources, asked: Any = None) -> None:
        """`backend.check`, its refusal naming the tag (and cell) that asked for the resource."""
        try:
            backend.check(step, resources)
        except ValidationError as exc:
            what = (exc.field or "").removeprefix("resources.")
            origin = (asked or {}).get(what)
            if origin is None:
                raise
            tag, cell = origin
            named = f"the tag {tag!r} on {cell_label(cell)}"
            message, n = re.subn(
                rf"lower `{re.escape(what)}:`( on step {re.escape(repr(step))})?",
                f"lower or remove {named}",
                exc.message,
            )
            if not n:
                message = f"{message} (asked for by {named})"
            raise ValidationError(message, field=exc.field, step=exc.step, cell=cell) from None

    def prepare(
        self, spec: JobSpec, job_id: str, user: str, backend_name: str, *, snapshot: Path | None = None
    ) -> tuple[Path, list[StepSpec], dict[str, Any]]:
        """Read, check, plan and slice the notebook into the job's folder (thread). Also returns, per
        step, which tag asked for each resource (for the backend's refusals). With `snapshot` (a
        schedule's copy of the notebook, never a client's path) that file is run instead, in the folder
        of `spec.notebook`."""
        if spec.cell is not None:
            return (*self._prepare_cell(spec, job_id, user), {})
        assert spec.notebook is not None
        if snapshot is None:
            path, nb = self.read_notebook(spec.notebook)
        else:
            path, nb = self._read_snapshot(spec.notebook, snapshot)
        plan = plan_notebook(nb, defaults=spec.resources)
        check_parameters(nb, spec.parameters, repr(spec.notebook))
        self.check_kernel(nb, backend_name, spec.kernel)
        steps: list[StepSpec] = []
        for planned in plan.steps:
            step = planned.to_spec()
            if spec.timeout is not None and step.timeout is None:
                step.timeout = spec.timeout
            if spec.retries is not None and not step.retries:
                step.retries = spec.retries
            steps.append(step)
        for step in steps:
            target = self.layout.step_notebook(job_id, step.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(slice_step(nb, plan, step.name), target)
        shutil.copyfile(snapshot or path, self.layout.notebook(job_id))
        return path, steps, {s.name: s.asked for s in plan.steps}

    def _read_snapshot(self, relative: str, snapshot: Path) -> tuple[Path, Any]:
        """A schedule's snapshot, and where the notebook it was taken from lives (the job runs in
        that folder, which must still be there under the root; the notebook itself may be gone)."""
        folder = Path(relative).parent.as_posix()
        try:
            workdir = self.layout.resolve_folder("" if folder == "." else folder)
        except ValidationError:
            raise ValidationError(
                f"notebook: the folder of {relative!r} is no longer under the server root; the job runs there",
                field="notebook",
            ) from None
        try:
            return workdir / Path(relative).name, nbformat.read(snapshot, as_version=4)
        except FileNotFoundError:
            raise NotFound(f"notebook: the snapshot of {relative!r} is gone ({snapshot})", field="notebook") from None
        except Exception as exc:  # noqa: BLE001 - nbformat raises many types for bad files
            raise ValidationError(
                f"notebook: the snapshot of {relative!r} is not a valid notebook: {exc}", field="notebook"
            ) from None

    def _prepare_cell(self, spec: JobSpec, job_id: str, user: str) -> tuple[Path, list[StepSpec]]:
        """One cell as a one-step job: its inputs saved, its outputs kept as artifacts (thread)."""
        assert spec.cell is not None
        cell = spec.cell
        workdir = self.layout.resolve_folder(cell.workdir)
        for name, payload in cell.inputs.items():
            target = self.layout.input_file(job_id, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            if payload.startswith("upload:"):
                upload = self.layout.upload_path(user, payload.removeprefix("upload:"))
                if not upload.is_file():
                    raise ValidationError(
                        f"cell.inputs.{name}: no upload {payload.removeprefix('upload:')!r} of yours "
                        "(each upload is used once)",
                        field=f"cell.inputs.{name}",
                    )
                os.replace(upload, target)
                continue
            try:
                data = base64.b64decode(payload, validate=True)
            except ValueError:
                raise ValidationError(f"cell.inputs.{name}: not base64 data", field=f"cell.inputs.{name}") from None
            target.write_bytes(data)
        step = StepSpec(
            name=CELL_STEP,
            cells=[0],
            inputs=list(cell.inputs),
            outputs=list(cell.outputs),
            resources=spec.resources or Resources(),
            timeout=spec.timeout,
            retries=spec.retries or 0,
        )
        step_nb, submitted = cell_notebook(
            cell.source, CELL_STEP, inputs=list(cell.inputs), outputs=list(cell.outputs), versions=cell.versions
        )
        target = self.layout.step_notebook(job_id, CELL_STEP)
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(step_nb, target)
        nbformat.write(submitted, self.layout.notebook(job_id))
        return workdir / "remote-cell.ipynb", [step]

    async def plan_rerun(self, spec: JobSpec, steps: list[StepSpec], user: str) -> None:
        """Re-run from a step: steps it does not lead to are reused from the `rerun_of` job."""
        if not (spec.from_step and spec.rerun_of):
            raise ValidationError(
                "from_step and rerun_of go together: name the step to re-run from and the job whose "
                "earlier steps to reuse",
                field="from_step" if spec.rerun_of else "rerun_of",
            )
        try:
            old: JobRecord = await self.store.get_job(spec.rerun_of, user)
        except NotFound:
            raise ValidationError(f"rerun_of: no job {spec.rerun_of!r} of yours to re-run", field="rerun_of") from None
        by_name = {s.name: s for s in steps}
        if spec.from_step not in by_name:
            raise ValidationError(
                f"from_step: no step {spec.from_step!r} in this notebook; its steps are {', '.join(by_name)}",
                field="from_step",
            )
        rerun = {spec.from_step}
        grew = True
        while grew:  # everything downstream of from_step runs again
            before = len(rerun)
            rerun.update(s.name for s in steps if rerun.intersection(s.after))
            grew = len(rerun) > before
        old_steps = {s["name"]: s for s in old["steps"]}
        for s in steps:
            if s.name in rerun:
                continue
            previous = old_steps.get(s.name)
            if previous is None or previous["status"] != "succeeded":
                state = "is not in" if previous is None else f"{previous['status'].replace('_', ' ')} in"
                raise ValidationError(
                    f"from_step: step {s.name!r} {state} job {old['id']!r}, so it cannot be reused; "
                    f"re-run from {s.name!r} or an earlier step",
                    field="from_step",
                    step=s.name,
                )
            s.reused_from = {"job": old["id"], "attempt": previous["attempt"]}
            for var in s.outputs:
                saved = self.layout.handoff_file(old["id"], s.name, previous["attempt"], var)
                if not await asyncio.to_thread(saved.exists):
                    raise ValidationError(
                        f"from_step: step {s.name!r} of job {old['id']!r} did not save {var!r}, which later "
                        f"steps now need; re-run from {s.name!r}",
                        field="from_step",
                        step=s.name,
                    )

    def link_handoff(self, reused: dict[str, Any], job_id: str, step: str) -> None:
        """Give the new job its own (hard-linked) copy of a reused step's hand-off files, so
        deleting the earlier job later cannot break this one (thread)."""
        source = self.layout.handoff_dir(reused["job"], step, reused["attempt"])
        target = self.layout.handoff_dir(job_id, step, reused["attempt"])
        target.mkdir(parents=True, exist_ok=True)
        for item in source.glob("*.pkl") if source.is_dir() else []:
            link_file(item, target / item.name)  # linked before: a cached step looked up again after a restart
