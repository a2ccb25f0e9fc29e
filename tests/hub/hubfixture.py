"""A real JupyterHub (PyPI) behind a real configurable-http-proxy (npm), spawning local servers.

Each user's server is a `jupyterhub-singleuser` process (SimpleLocalProcessSpawner: same OS
account, its own home = notebook folder and its own JUPYTER_EXT_DATA_DIR). Users log in with
DummyAuthenticator's shared password. carol may open bob's server (a JupyterHub role), which
lets a test check that, inside one server, jobs stay their owner's.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
CHP_VERSION = "5.3.0"
CHP_PREFIX = Path(os.environ.get("JUPYTER_EXT_CHP_PREFIX", Path.home() / ".cache/jupyter-ext/chp" / CHP_VERSION))
CHP = CHP_PREFIX / "node_modules" / ".bin" / "configurable-http-proxy"
PASSWORD = "correct horse battery staple"
USERS = ("alice", "bob", "carol")


def ensure_chp() -> Path:
    """configurable-http-proxy from npm, installed once under ~/.cache/jupyter-ext/chp/<version>."""
    if not CHP.exists():
        npm = shutil.which("npm")
        assert npm, "npm is needed to install configurable-http-proxy (apt-get install nodejs npm)"
        CHP_PREFIX.mkdir(parents=True, exist_ok=True)
        p = subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(CHP_PREFIX),
                "--no-audit",
                "--no-fund",
                f"configurable-http-proxy@{CHP_VERSION}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert p.returncode == 0 and CHP.exists(), f"npm install configurable-http-proxy failed:\n{p.stderr[-3000:]}"
    return CHP


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CONFIG = """
import os
c = get_config()  # noqa
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.pid_file = {tmp!r} + "/proxy.pid"
c.JupyterHub.db_url = "sqlite:///" + {tmp!r} + "/hub.sqlite"
c.JupyterHub.cookie_secret_file = {tmp!r} + "/cookie_secret"
c.JupyterHub.pid_file = {tmp!r} + "/hub.pid"
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {password!r}
c.Authenticator.allowed_users = set({users!r})
c.JupyterHub.load_roles = [
    {{"name": "carol-opens-bobs-server", "scopes": ["access:servers!user=bob"], "users": ["carol"]}},
]
c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.SimpleLocalProcessSpawner.home_dir_template = {tmp!r} + "/home/{{username}}"
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.args = {args!r}
c.Spawner.environment = {{
    "JUPYTER_EXT_DATA_DIR": lambda spawner: {tmp!r} + "/data/" + spawner.user.name,
}}
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
"""


@dataclass
class Hub:
    url: str
    tmp: Path
    process: subprocess.Popen[bytes]
    log: Path

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def login(self, user: str) -> requests.Session:
        """A browser-like session: the hub's login form (with its XSRF token), through the proxy."""
        s = requests.Session()
        r = s.get(f"{self.url}/hub/login", timeout=30)
        assert r.status_code == 200, r.text[:500]
        r = s.post(
            f"{self.url}/hub/login",
            data={"username": user, "password": PASSWORD, "_xsrf": s.cookies.get("_xsrf", path="/hub/")},
            allow_redirects=False,
            timeout=30,
        )
        assert r.status_code == 302, f"login of {user} answered {r.status_code}: {r.text[:500]}"
        assert s.get(f"{self.url}/hub/api/user", timeout=30).json()["name"] == user
        return s

    def hub_api(self, s: requests.Session, method: str, path: str, **kw: Any) -> requests.Response:
        """A hub API call with the session cookie, carrying the hub's XSRF token as a browser does."""
        headers = {"X-XSRFToken": s.cookies.get("_xsrf", path="/hub/") or ""}
        return s.request(method, f"{self.url}/hub/api{path}", headers=headers, timeout=30, **kw)

    def start_server(self, s: requests.Session, user: str) -> None:
        r = self.hub_api(s, "POST", f"/users/{user}/server")
        assert r.status_code in (201, 202), f"{r.status_code}: {r.text[:500]}\n{self.logs()}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            server = self.hub_api(s, "GET", f"/users/{user}").json()["servers"].get("", {})
            if server.get("ready"):
                return
            time.sleep(0.3)
        raise AssertionError(f"{user}'s server did not start:\n{self.logs()}")

    def token(self, s: requests.Session, user: str) -> str:
        r = self.hub_api(s, "POST", f"/users/{user}/tokens", json={"note": "jupyter-ext test", "expires_in": 900})
        assert r.status_code == 201, r.text[:500]
        return str(r.json()["token"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # the hub stops the users' servers and the proxy it started
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        pid_file = self.tmp / "proxy.pid"
        if pid_file.exists():  # the proxy is normally gone with the hub
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            except (ValueError, ProcessLookupError):
                pass


def start_hub(tmp: Path, extra_config: str = "") -> Hub:
    """A hub on free ports under `tmp`; `extra_config` is appended to its jupyterhub_config.py."""
    chp = ensure_chp()
    bin_dir = Path(sys.executable).parent
    port = free_port()
    config = CONFIG.format(
        port=port,
        hub_port=free_port(),
        proxy_api_port=free_port(),
        chp=str(chp),
        tmp=str(tmp),
        password=PASSWORD,
        users=list(USERS),
        singleuser=str(bin_dir / "jupyterhub-singleuser"),
        args=["--allow-root"] if os.getuid() == 0 else [],
    )
    for user in USERS:
        home = tmp / "home" / user
        home.mkdir(parents=True)
        shutil.copy(ROOT / "examples" / "hello.ipynb", home / "hello.ipynb")
    (tmp / "jupyterhub_config.py").write_text(config + extra_config)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER_EXT_", "JUPYTERHUB_"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{os.path.dirname(shutil.which('node') or '/usr/bin/node')}{os.pathsep}"
    env["PATH"] += os.environ.get("PATH", "")
    log = tmp / "hub.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(bin_dir / "jupyterhub"), "-f", str(tmp / "jupyterhub_config.py")],
            cwd=tmp,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    hub = Hub(f"http://127.0.0.1:{port}", tmp, process, log)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"jupyterhub exited with {process.returncode}:\n{hub.logs()}")
        try:
            if requests.get(f"{hub.url}/hub/health", timeout=5).status_code == 200:
                return hub
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    hub.stop()
    raise AssertionError(f"jupyterhub did not answer through the proxy:\n{hub.logs()}")
