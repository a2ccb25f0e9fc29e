"""The words a user reads when a step's process ends without success."""

from types import SimpleNamespace

from jupyter_ext.orchestrator import _ended_message


def test_lost_process_does_not_say_exit_code_none() -> None:
    message = _ended_message("train", SimpleNamespace(exit_code=None, reason="the pod was deleted"))
    assert message == "step 'train' stopped before its process reported an exit code: the pod was deleted"
    assert "None" not in message


def test_exit_code_and_reason() -> None:
    assert _ended_message("train", SimpleNamespace(exit_code=3, reason=None)) == "step 'train' ended with exit code 3"
    assert (
        _ended_message("t", SimpleNamespace(exit_code=137, reason="OOMKilled"))
        == "step 't' ended with exit code 137 (OOMKilled)"
    )
