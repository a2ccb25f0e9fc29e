"""Under a real JupyterHub, a user's server reports activity while a job runs in it (so the idle
culler keeps it) and not after; with `c.JupyterExt.report_activity = "off"` it reports none.

The hub here learns of activity only from the servers (jupyterhub-singleuser posts its
last_activity every second; the hub's own poll of the proxy is off), so a user's `last_activity`
in the hub's API moves only when that server says so."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import requests

from tests.hub.hubfixture import Hub, start_hub

pytestmark = [pytest.mark.hub, pytest.mark.slow]
API = "jupyter-ext/api"

# alice: the default (jobs_and_schedules); bob: report_activity off, from his own config folder.
EXTRA = """
c.JupyterHub.last_activity_interval = 0  # the hub does not poll the proxy: only the servers report
c.Spawner.environment["JUPYTERHUB_ACTIVITY_INTERVAL"] = "1"
c.Spawner.environment["JUPYTER_CONFIG_DIR"] = lambda spawner: {tmp!r} + "/config/" + spawner.user.name
c.Spawner.args = c.Spawner.args + ["--JupyterExt.activity_interval=0.5"]
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    tmp = tmp_path_factory.mktemp("hub-activity")
    for user, mode in (("alice", "jobs_and_schedules"), ("bob", "off")):
        config = tmp / "config" / user
        config.mkdir(parents=True)
        (config / "jupyter_server_config.json").write_text(json.dumps({"JupyterExt": {"report_activity": mode}}))
    h = start_hub(tmp, EXTRA.format(tmp=str(tmp)))
    try:
        yield h
    finally:
        h.stop()


def parse(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


class User:
    def __init__(self, hub: Hub, name: str) -> None:
        self.hub, self.name = hub, name
        self.session = hub.login(name)
        self.token = hub.token(self.session, name)
        hub.start_server(self.session, name)

    def call(self, method: str, path: str, **kw: Any) -> requests.Response:
        """A request to this user's jupyter-ext API through the proxy. `no_track_activity`: jupyter-server
        does not count it as activity (only the job may move last_activity here)."""
        url = f"{self.hub.url}/user/{self.name}/{API}/{path}"
        headers = {"Authorization": f"token {self.token}"}
        return requests.request(
            method, url, headers=headers, params={"no_track_activity": "1"}, timeout=30, allow_redirects=False, **kw
        )

    def last_activity(self) -> float:
        """The user's server's last_activity as the hub has it."""
        server = self.hub.hub_api(self.session, "GET", f"/users/{self.name}").json()["servers"][""]
        return parse(server["last_activity"])

    def run_job(self) -> dict[str, Any]:
        """hello.ipynb printing for about 4 s; answers the finished job."""
        params = {"name": self.name, "count": 8, "delay": 0.5}
        r = self.call("POST", "jobs", json={"notebook": "hello.ipynb", "parameters": params})
        assert r.status_code == 201, r.text
        job = r.json()
        deadline = time.monotonic() + 120
        while job["status"] not in ("succeeded", "failed", "cancelled"):
            assert time.monotonic() < deadline, f"job still {job['status']}"
            time.sleep(0.3)
            job = self.call("GET", f"jobs/{job['id']}").json()
        assert job["status"] == "succeeded", job
        return job


def settled(user: User, seconds: float = 3.0) -> float:
    """The hub's last_activity of the user's server once the server has had time to report."""
    time.sleep(seconds)
    return user.last_activity()


def test_the_hub_sees_activity_while_a_job_runs_and_not_after(hub: Hub) -> None:
    alice = User(hub, "alice")
    job = alice.run_job()
    started, finished = parse(job["started"]), parse(job["finished"])
    assert finished - started > 3
    after_job = settled(alice)
    assert after_job >= finished - 0.6, "reported until the job ended"
    assert settled(alice) == after_job, "nothing reported once no job runs"


def test_with_report_activity_off_the_hub_sees_none(hub: Hub) -> None:
    bob = User(hub, "bob")
    job = bob.run_job()
    started = parse(job["started"])
    assert settled(bob) < started + 0.5, "the job's run was not reported as activity"
