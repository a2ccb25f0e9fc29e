"""JobLayout: every path of a job in one place, and the checks on paths clients name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jupyter_ext.errors import NotFound, ValidationError
from jupyter_ext.layout import AttemptFiles, JobLayout


@pytest.fixture
def layout(tmp_path: Path) -> JobLayout:
    (tmp_path / "root" / "sub").mkdir(parents=True)
    (tmp_path / "root" / "sub" / "nb.ipynb").write_text("{}")
    return JobLayout(tmp_path / "root", tmp_path / "data")


def test_paths_of_a_job(layout: JobLayout, tmp_path: Path) -> None:
    job = tmp_path / "data" / "jobs" / "j1"
    assert layout.job_dir("j1") == job
    assert layout.notebook("j1") == job / "notebook.ipynb"
    assert layout.step_notebook("j1", "prep") == job / "steps" / "prep" / "step.ipynb"
    assert layout.attempt_dir("j1", "prep", 2) == job / "steps" / "prep" / "attempt-2"
    assert layout.handoff_file("j1", "prep", 2, "df") == job / "steps" / "prep" / "attempt-2" / "handoff" / "df.pkl"
    assert layout.input_file("j1", "x") == job / "inputs" / "x.pkl"
    files = layout.attempt("j1", "prep", 2)
    assert files == AttemptFiles(job / "steps" / "prep" / "attempt-2")
    assert (files.events.name, files.artifacts.name, files.handoff.name) == ("events.jsonl", "artifacts", "handoff")


def test_uploads_are_per_user_and_ids_are_hex(layout: JobLayout) -> None:
    a, b = layout.upload_path("alice", "0" * 32), layout.upload_path("bob", "0" * 32)
    assert a.parent != b.parent and a.parent.parent == layout.uploads_dir
    for bad in ("../../etc/passwd", "0" * 31, "G" * 32):
        with pytest.raises(ValidationError, match="not an upload id"):
            layout.upload_path("alice", bad)


def test_notebooks_outside_the_root_are_refused(layout: JobLayout, tmp_path: Path) -> None:
    assert layout.resolve_notebook("sub/nb.ipynb") == (tmp_path / "root" / "sub" / "nb.ipynb").resolve()
    for bad, words in [("/etc/passwd", "absolute"), ("../x.ipynb", "leaves the server root"), (".h/x.ipynb", "hidden")]:
        with pytest.raises(ValidationError, match=words):
            layout.resolve_notebook(bad)
    with pytest.raises(NotFound):
        layout.resolve_notebook("sub/missing.ipynb")
    with pytest.raises(ValidationError, match="is a folder"):
        layout.resolve_notebook("sub")
    (tmp_path / "outside.ipynb").write_text("{}")
    os.symlink(tmp_path / "outside.ipynb", tmp_path / "root" / "link.ipynb")
    with pytest.raises(ValidationError, match="outside the server root"):
        layout.resolve_notebook("link.ipynb")


def test_a_symlink_loop_is_a_400_naming_the_field(layout: JobLayout, tmp_path: Path) -> None:
    os.symlink(tmp_path / "root" / "loop", tmp_path / "root" / "loop")
    with pytest.raises(ValidationError, match="symlink loop") as notebook:
        layout.resolve_notebook("loop")
    with pytest.raises(ValidationError, match="symlink loop") as folder:
        layout.resolve_folder("loop")
    assert (notebook.value.field, folder.value.field) == ("notebook", "cell.workdir")


def test_folders_and_artifacts_stay_inside(layout: JobLayout, tmp_path: Path) -> None:
    assert layout.resolve_folder("") == layout.root_dir
    for bad in ("/tmp", "..", "sub/nb.ipynb"):
        with pytest.raises(ValidationError, match="not a folder under the server root"):
            layout.resolve_folder(bad)
    inside = layout.attempt("j1", "s", 1).artifacts / "a.png"
    inside.parent.mkdir(parents=True)
    inside.write_text("x")
    assert layout.artifact_file("j1", inside) == inside.resolve()
    assert layout.artifact_file("j1", tmp_path / "root" / "sub" / "nb.ipynb") is None
    assert layout.artifact_file("j2", inside) is None
