"""What %%remote checks in the job before unpickling, and how remote errors come back."""

from __future__ import annotations

import platform

import pytest

from jupyter_ext.magics import RemoteCancelled, RemoteError, check_versions, local_versions, remote_exception


def test_same_environment_passes(capsys: pytest.CaptureFixture[str]) -> None:
    check_versions(local_versions())
    assert capsys.readouterr().err == ""


def test_python_minor_mismatch_stops_with_a_clear_message() -> None:
    major, minor, _ = platform.python_version_tuple()
    other = f"{major}.{int(minor) + 1}.0"
    with pytest.raises(RuntimeError, match=rf"python {platform.python_version()} here, {other} in your kernel"):
        check_versions({"python": other})


def test_missing_library_and_major_versions_stop_minor_versions_warn(capsys: pytest.CaptureFixture[str]) -> None:
    import cloudpickle

    here = cloudpickle.__version__
    major = int(here.split(".")[0])
    with pytest.raises(RuntimeError, match="no_such_lib_xyz is not installed here"):
        check_versions({"python": platform.python_version(), "no_such_lib_xyz": "1.0"})
    with pytest.raises(RuntimeError, match=f"cloudpickle {here} here, {major + 1}.0.0 in your kernel"):
        check_versions({"python": platform.python_version(), "cloudpickle": f"{major + 1}.0.0"})
    check_versions({"python": platform.python_version(), "cloudpickle": f"{major}.999"})
    assert f"cloudpickle {here} here, {major}.999 in your kernel" in capsys.readouterr().err


def test_remote_exception_keeps_builtin_type_and_traceback() -> None:
    exc = remote_exception({"ename": "ValueError", "evalue": "bad", "traceback": ["\x1b[31mline 1\x1b[0m"]}, "j1")
    assert isinstance(exc, ValueError) and isinstance(exc, RemoteError)
    assert str(exc) == "bad" and exc.job_id == "j1"
    assert exc._render_traceback_() == ["\x1b[31mline 1\x1b[0m"], "IPython shows the remote lines as sent"
    key = remote_exception({"ename": "KeyError", "evalue": "'k'", "traceback": ["a\nb"]}, "j1")
    assert isinstance(key, KeyError) and str(key) == "'k'", "KeyError's quoting does not pack the traceback"
    custom = remote_exception({"ename": "MyError", "evalue": "x"}, "j2")
    assert type(custom) is RemoteError and str(custom) == "x"
    assert custom._render_traceback_() == ["\x1b[31mMyError\x1b[39m: x"]
    lost = remote_exception(
        {"reason": "exception", "cell_index": 0, "ename": "KeyError", "message": "cell 1 raised"}, "j3"
    )
    assert str(lost) == "the %%remote cell raised KeyError: "
    cancelled = remote_exception({"message": "cancelled"}, "j4", "cancelled")
    assert isinstance(cancelled, RemoteCancelled) and cancelled._render_traceback_() == ["%%remote: job j4 cancelled"]
