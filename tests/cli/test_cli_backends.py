"""The in-process CLI (`run --local`) has the backends a server would have, configured the same way
(issue 17): jupyter_server_config.py in the Jupyter config path and JUPYTER_EXT_* defaults, built
by the app's own `make_backends`. No cluster: the Kubernetes backend's cluster calls are stubbed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from jupyter_ext import cli, session
from jupyter_ext.backends.base import StepLaunch
from jupyter_ext.backends.kubernetes import KubernetesBackend
from jupyter_ext.errors import ValidationError


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "jupyter-config"
    folder.mkdir()
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(folder))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))  # no server to find
    monkeypatch.delenv("JUPYTER_EXT_BACKEND", raising=False)
    (folder / "jupyter_server_config.py").write_text(
        "c.KubernetesBackend.namespace = 'team-ada'\n"
        "c.KubernetesBackend.image = 'registry.example/steps:1.2'\n"
        "c.KubernetesBackend.preflight_checks = False\n"
    )
    return folder


@pytest.fixture
def reached(monkeypatch: pytest.MonkeyPatch) -> list[tuple[KubernetesBackend, StepLaunch]]:
    """KubernetesBackend without a cluster: start/stop do nothing, submit records what it got."""
    seen: list[tuple[KubernetesBackend, StepLaunch]] = []

    async def nothing(self: KubernetesBackend) -> None:
        return None

    async def submit(self: KubernetesBackend, launch: StepLaunch) -> dict[str, Any]:
        seen.append((self, launch))
        raise ValidationError("stub cluster: recorded the launch")

    monkeypatch.setattr(KubernetesBackend, "start", nothing)
    monkeypatch.setattr(KubernetesBackend, "stop", nothing)
    monkeypatch.setattr(KubernetesBackend, "submit", submit)
    return seen


def test_backend_kubernetes_reaches_a_configured_kubernetes_backend(
    notebooks: Path, config_dir: Path, reached: list[Any]
) -> None:
    code = cli.main(["run", "--local", "--backend", "kubernetes", str(notebooks / "hello.ipynb"), "-p", "name", "Ada"])
    assert code == 1  # the stub refuses the attempt, so the job fails with its words
    assert reached, "the step was submitted to the Kubernetes backend"
    backend, launch = reached[0]
    assert type(backend) is KubernetesBackend
    assert backend.namespace == "team-ada" and backend.image == "registry.example/steps:1.2"
    assert launch.parameters == {"name": "Ada"} and launch.step == "main"


def test_the_environment_default_backend_is_honoured(
    notebooks: Path, config_dir: Path, reached: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTER_EXT_BACKEND", "kubernetes")  # what jupyter_ext.hub sets in users' pods
    assert cli.main(["run", "--local", str(notebooks / "hello.ipynb")]) == 1
    assert reached and reached[0][0].namespace == "team-ada"


def test_an_unknown_backend_is_a_clear_error(notebooks: Path, config_dir: Path, capsys: Any) -> None:
    assert cli.main(["run", "--local", "--backend", "slurm", str(notebooks / "hello.ipynb")]) == 2
    err = capsys.readouterr().err
    assert "unknown backend(s) ['slurm']" in err and "kubernetes" in err and "local" in err


def test_the_database_and_user_match_the_server_s(config_dir: Path, tmp_path: Path, monkeypatch: Any) -> None:
    """`ls` finds the database without importing the server; it must be the one the app uses."""
    from jupyter_ext.app import local_user

    for env, text in [
        (str(tmp_path / "from-env"), ""),
        (None, ""),
        (None, f"c.JupyterExt.data_dir = {str(tmp_path / 'configured')!r}\n"),
        (None, f"c.JupyterExt.db_path = {str(tmp_path / 'other.db')!r}\n"),
    ]:
        if env is None:
            monkeypatch.delenv("JUPYTER_EXT_DATA_DIR", raising=False)
        else:
            monkeypatch.setenv("JUPYTER_EXT_DATA_DIR", env)
        (config_dir / "jupyter_jupyter_ext_config.py").write_text(text)
        config = session.server_config()
        assert session.database_path(config) == Path(session.configured_app(config).db_path), text
    assert session.local_user() == local_user()
    assert os.environ.get("JUPYTER_CONFIG_DIR") == str(config_dir)
