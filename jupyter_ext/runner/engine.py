"""A papermill engine that emits one event per cell start, output and end.

Registered on papermill's `papermill.engine` entry point as ``jupyter_ext``. It runs the
notebook exactly as papermill's default engine (nbclient) does; the only additions are the
events, the saving of image outputs as artifacts, and the kernel's pid for clean cancels.
"""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path
from typing import Any

from nbclient.exceptions import CellExecutionError
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine
from papermill.log import logger
from papermill.utils import remove_args

from .emitter import Emitter

IMAGE_TYPES = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/svg+xml": "svg"}


def source_index(cell: Any, position: int, offset: int) -> int | None:
    """Index of `cell` in the notebook the user wrote (not the sliced or parameterised one)."""
    meta = cell.get("metadata", {}).get("jupyter_ext", {})
    if "source_index" in meta:
        return int(meta["source_index"])
    if meta.get("internal") or "injected-parameters" in cell.get("metadata", {}).get("tags", []):
        return None
    return position - offset


class EventClient(PapermillNotebookClient):
    """nbclient client whose hooks turn execution into events."""

    def __init__(
        self, nb_man: Any, emitter: Emitter, artifacts_dir: str | None = None, setup_code: str | None = None, **kw: Any
    ) -> None:
        super().__init__(nb_man, **kw)
        self.emitter = emitter
        self.setup_code = setup_code
        self.artifacts_dir = Path(artifacts_dir) if artifacts_dir else None
        self._where: dict[int, dict[str, Any]] = {}
        self._image_count: dict[int, int] = {}
        self.saved_artifacts: set[str] = set()

    # -- mapping cells back to the user's notebook -------------------------------------------
    def _index_cells(self) -> None:
        offset = 0
        for position, cell in enumerate(self.nb.cells):
            idx = source_index(cell, position, offset)
            tags = cell.get("metadata", {}).get("tags", [])
            meta = cell.get("metadata", {}).get("jupyter_ext", {})
            if idx is None and "source_index" not in meta:
                offset += 1
            self._where[position] = {
                "cell_index": idx,
                "cell_id": cell.get("id"),
                "internal": meta.get("internal"),
                "injected": "injected-parameters" in tags,
            }

    def _ids(self, position: int) -> dict[str, Any]:
        where = self._where.get(position, {})
        ids = {"cell_index": where.get("cell_index"), "cell_id": where.get("cell_id")}
        if where.get("injected"):
            ids["injected"] = True
        return ids

    # -- execution -----------------------------------------------------------------------------
    def papermill_execute_cells(self) -> None:
        self._index_cells()
        if self.setup_code:
            reply = self.wait_for_reply(self.kc.execute(self.setup_code, silent=True, store_history=False))
            if not reply or reply["content"].get("status") != "ok":
                content = (reply or {}).get("content", {})
                raise RuntimeError(f"preparing the kernel failed: {content.get('ename')}: {content.get('evalue')}")
        pid = getattr(getattr(self.km, "provisioner", None), "pid", None)
        if pid and os.environ.get("JUPYTER_EXT_KERNEL_PID_FILE"):
            Path(os.environ["JUPYTER_EXT_KERNEL_PID_FILE"]).write_text(str(pid))
        for index, cell in enumerate(self.nb.cells):
            where = self._where[index]
            visible = cell.cell_type == "code" and not where["internal"]
            if visible:
                self.emitter.emit("cell.start", **self._ids(index), source=cell.source)
            started = time.monotonic()
            failed: CellExecutionError | None = None
            try:
                self.nb_man.cell_start(cell, index)
                self.execute_cell(cell, index)
            except CellExecutionError as ex:
                failed = ex
                self.nb_man.cell_exception(self.nb.cells[index], cell_index=index, exception=ex)
            finally:
                self.nb_man.cell_complete(self.nb.cells[index], cell_index=index)
            if visible or failed is not None:
                end: dict[str, Any] = {
                    **self._ids(index),
                    "status": "error" if failed else "ok",
                    "duration": round(time.monotonic() - started, 4),
                    "execution_count": self.nb.cells[index].get("execution_count"),
                }
                if where["internal"]:
                    end["internal"] = where["internal"]
                if failed is not None:
                    end.update(ename=failed.ename, evalue=failed.evalue, traceback=_traceback(self.nb.cells[index]))
                self.emitter.emit("cell.end", **end)
            if failed is not None:
                break

    def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
        output = super().process_message(msg, cell, cell_index)
        msg_type = msg.get("header", {}).get("msg_type")
        where = self._where.get(cell_index, {})
        if where.get("internal") and msg_type != "error":
            return output
        if msg_type == "clear_output":
            self.emitter.emit("cell.clear", **self._ids(cell_index), wait=bool(msg["content"].get("wait")))
        elif msg_type == "update_display_data":
            content = msg["content"]
            self.emitter.emit(
                "cell.output",
                **self._ids(cell_index),
                output={
                    "output_type": "display_data",
                    "data": content.get("data", {}),
                    "metadata": content.get("metadata", {}),
                },
                display_id=content.get("transient", {}).get("display_id"),
                update=True,
            )
        elif output is not None:
            extra: dict[str, Any] = {}
            display_id = msg.get("content", {}).get("transient", {}).get("display_id")
            if display_id:
                extra["display_id"] = display_id
            artifact = self._save_image(output, cell_index)
            if artifact:
                extra["artifact"] = artifact
            self.emitter.emit("cell.output", **self._ids(cell_index), output=_plain(output), **extra)
        return output

    def _save_image(self, output: Any, position: int) -> str | None:
        """Keep each image output as an artifact so it can be previewed and downloaded."""
        if self.artifacts_dir is None:
            return None
        data = output.get("data") or {}
        for mime, ext in IMAGE_TYPES.items():
            if mime not in data:
                continue
            idx = self._where.get(position, {}).get("cell_index")
            count = self._image_count.get(position, 0) + 1
            self._image_count[position] = count
            label = f"cell{idx}" if idx is not None else f"cell-p{position}"
            name = f"{label}-output{count}.{ext}"
            raw = data[mime]
            payload = raw.encode() if mime == "image/svg+xml" else base64.b64decode("".join(raw))
            self.artifacts_dir.mkdir(parents=True, exist_ok=True)
            (self.artifacts_dir / name).write_bytes(payload)
            self.saved_artifacts.add(name)
            return name
        return None


def _plain(node: Any) -> Any:
    """NotebookNode -> plain JSON-able dict (lists of lines joined as nbformat allows both)."""
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _traceback(cell: Any) -> list[str]:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return list(out.get("traceback", []))
    return []


class EventEngine(NBClientEngine):
    """papermill engine ``jupyter_ext``: NBClientEngine plus events (needs `emitter=`)."""

    @classmethod
    def execute_managed_notebook(
        cls,
        nb_man: Any,
        kernel_name: str,
        log_output: bool = False,
        stdout_file: Any = None,
        stderr_file: Any = None,
        start_timeout: int = 60,
        execution_timeout: Any = None,
        **kwargs: Any,
    ) -> Any:
        emitter = kwargs.pop("emitter", None)
        artifacts_dir = kwargs.pop("artifacts_dir", None)
        setup_code = kwargs.pop("setup_code", None)
        kc = kwargs.pop("kc", None)
        if emitter is None:
            # Used without our runner (plain `papermill --engine jupyter_ext`): behave like nbclient.
            return super().execute_managed_notebook(
                nb_man, kernel_name, log_output, stdout_file, stderr_file, start_timeout, execution_timeout, **kwargs
            )
        kwargs = remove_args(["input_path"], **kwargs)
        safe_kwargs = remove_args(["timeout", "startup_timeout"], **kwargs)
        final_kwargs = {
            **safe_kwargs,
            "timeout": execution_timeout if execution_timeout else kwargs.get("timeout"),
            "startup_timeout": start_timeout,
            "kernel_name": kernel_name,
            "log": logger,
            "log_output": log_output,
            "stdout_file": stdout_file,
            "stderr_file": stderr_file,
        }
        client = EventClient(nb_man, emitter, artifacts_dir, setup_code, **final_kwargs)
        if kc is not None:
            client.kc = kc  # the warm pool's client, already connected: skips a kernel_info round trip
        result = client.execute()
        nb_man.saved_artifacts = client.saved_artifacts
        return result
