"""A real `jupyter server` process with jupyter-ext, for tests that kill or share it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

TOKEN = "real-server-test-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`python -m jupyter_server` with jupyter-ext, in its own process, isolated config/runtime."""

    def __init__(self, root: Path, data_dir: Path, home: Path) -> None:
        self.root, self.data_dir, self.home = root, data_dir, home
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}/jupyter-ext/api"

    def start(self) -> None:
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(self.home / "config"),
            "JUPYTER_RUNTIME_DIR": str(self.home / "runtime"),
            "JUPYTER_EXT_DATA_DIR": str(self.data_dir),
        }
        cmd = [
            sys.executable,
            "-m",
            "jupyter_server",
            "--no-browser",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={TOKEN}",
            f"--ServerApp.root_dir={self.root}",
            "--ServerApp.jpserver_extensions={'jupyter_ext': True}",
        ]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        log = open(self.home / f"server-{time.time():.0f}.log", "wb")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603 - argv list
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if self.get("info").status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            assert self.proc.poll() is None, "the server exited while starting"
            time.sleep(0.2)
        raise AssertionError("the server did not start in 60 s")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def get(self, path: str, **params: Any) -> requests.Response:
        return requests.get(
            f"{self.url}/{path}", params=params, headers={"Authorization": f"token {TOKEN}"}, timeout=30
        )

    def post(self, path: str, body: Any) -> requests.Response:
        return requests.post(f"{self.url}/{path}", json=body, headers={"Authorization": f"token {TOKEN}"}, timeout=30)
