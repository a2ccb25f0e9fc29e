"""jupyter-ext under a real JupyterHub: each user runs jobs through the hub's proxy; nobody else sees them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.hub.hubfixture import Hub, start_hub

pytestmark = [pytest.mark.hub, pytest.mark.slow]
API = "jupyter-ext/api"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    h = start_hub(tmp_path_factory.mktemp("hub"))
    try:
        yield h
    finally:
        h.stop()


class User:
    """One hub user: a logged-in browser session, and an API token from the hub."""

    def __init__(self, hub: Hub, name: str) -> None:
        self.hub, self.name = hub, name
        self.session = hub.login(name)
        self.token = hub.token(self.session, name)

    def call(self, method: str, path: str, server: str | None = None, **kw: Any) -> requests.Response:
        """A request to `server`'s jupyter-ext API (default: this user's own), with this user's token."""
        url = f"{self.hub.url}/user/{server or self.name}/{API}/{path}"
        headers = {"Authorization": f"token {self.token}"}
        return requests.request(method, url, headers=headers, allow_redirects=False, timeout=30, **kw)

    def run_hello(self) -> dict[str, Any]:
        r = self.call("POST", "jobs", json={"notebook": "hello.ipynb", "parameters": {"name": self.name, "delay": 0}})
        assert r.status_code == 201, r.text
        job = r.json()
        assert job["user"] == self.name  # the owner is the hub user, not the OS account
        deadline = time.monotonic() + 120
        while job["status"] not in ("succeeded", "failed", "cancelled"):
            assert time.monotonic() < deadline, f"job still {job['status']}"
            time.sleep(0.3)
            job = self.call("GET", f"jobs/{job['id']}").json()
        assert job["status"] == "succeeded", job
        return job


@pytest.fixture(scope="module")
def users(hub: Hub) -> dict[str, User]:
    made = {name: User(hub, name) for name in ("alice", "bob", "carol")}
    for name in ("alice", "bob"):
        hub.start_server(made[name].session, name)
    return made


@pytest.fixture(scope="module")
def jobs(users: dict[str, User]) -> dict[str, dict[str, Any]]:
    """alice and bob each ran hello.ipynb on the local backend of their own server."""
    return {name: users[name].run_hello() for name in ("alice", "bob")}


def test_each_user_runs_a_job_through_the_proxy(
    hub: Hub, users: dict[str, User], jobs: dict[str, dict[str, Any]]
) -> None:
    for name in ("alice", "bob"):
        assert (hub.tmp / "data" / name / "jobs.db").exists()  # each server keeps its own jobs
        me = users[name]
        listed = me.call("GET", "jobs").json()["jobs"]
        assert [j["id"] for j in listed] == [jobs[name]["id"]]
        events = me.call("GET", f"jobs/{jobs[name]['id']}/events").json()
        text = "".join(e.get("output", {}).get("text", "") for e in events["events"] if e["type"] == "cell.output")
        assert f"hello {name} 0" in text and events["done"] is True
        artifacts = me.call("GET", f"jobs/{jobs[name]['id']}/artifacts").json()["artifacts"]
        greeting = next(a["name"] for a in artifacts if a["name"].endswith("greeting.txt"))
        r = me.call("GET", f"jobs/{jobs[name]['id']}/artifacts/{greeting}")
        assert r.status_code == 200 and r.text == f"hello {name}\n"


def test_the_browser_session_works_with_the_servers_xsrf_check(users: dict[str, User], hub: Hub) -> None:
    """The way JupyterLab calls us: the server's OAuth cookie from the hub, then XSRF on POST."""
    s = users["alice"].session
    base = f"{hub.url}/user/alice/{API}"
    r = s.get(f"{hub.url}/user/alice/lab", timeout=60)  # OAuth round trip through the hub; sets the cookies
    assert r.status_code == 200, r.text[:300]
    info = s.get(f"{base}/info", timeout=30)
    assert info.status_code == 200 and info.json()["user"] == "alice"
    no_xsrf = s.post(f"{base}/jobs", json={"notebook": "hello.ipynb"}, timeout=30)
    assert no_xsrf.status_code == 403
    xsrf = s.cookies.get("_xsrf", path="/user/alice/")
    assert xsrf, s.cookies
    r = s.post(f"{base}/jobs", json={"notebook": "nope.ipynb"}, headers={"X-XSRFToken": xsrf}, timeout=30)
    assert r.status_code == 404 and "nope.ipynb" in r.json()["message"], r.text[:500]  # past auth and XSRF


def test_another_users_token_cannot_reach_the_server(users: dict[str, User], jobs: dict[str, dict[str, Any]]) -> None:
    alice, bob_job = users["alice"], jobs["bob"]["id"]
    for method, path in (
        ("GET", "jobs"),
        ("GET", f"jobs/{bob_job}"),
        ("GET", f"jobs/{bob_job}/events"),
        ("POST", f"jobs/{bob_job}/cancel"),
        ("GET", f"jobs/{bob_job}/artifacts"),
        ("GET", f"jobs/{bob_job}/artifacts/x.txt"),
        ("POST", "jobs"),
    ):
        r = alice.call(method, path, server="bob", json={} if method == "POST" else None)
        assert r.status_code == 403, (method, path, r.status_code, r.text[:300])


def test_another_users_browser_session_is_refused(
    users: dict[str, User], hub: Hub, jobs: dict[str, dict[str, Any]]
) -> None:
    r = users["alice"].session.get(f"{hub.url}/user/bob/{API}/jobs", timeout=60)  # follows the OAuth redirects
    assert r.status_code == 403
    assert jobs["bob"]["id"] not in r.text, "nothing of bob's jobs in the refusal"


def test_inside_one_server_jobs_stay_their_owners(users: dict[str, User], jobs: dict[str, dict[str, Any]]) -> None:
    """carol may open bob's server (a hub role), yet sees none of bob's jobs there."""
    carol, bob_job = users["carol"], jobs["bob"]["id"]
    info = carol.call("GET", "info", server="bob")
    assert info.status_code == 200 and info.json()["user"] == "carol"
    assert carol.call("GET", "jobs", server="bob").json()["jobs"] == []
    for method, path in (
        ("GET", f"jobs/{bob_job}"),
        ("GET", f"jobs/{bob_job}/events"),
        ("POST", f"jobs/{bob_job}/cancel"),
        ("GET", f"jobs/{bob_job}/artifacts"),
        ("GET", f"jobs/{bob_job}/artifacts/greeting.txt"),
        ("DELETE", f"jobs/{bob_job}"),
    ):
        r = carol.call(method, path, server="bob")
        assert r.status_code == 404, (method, path, r.status_code, r.text[:300])
    # bob's job is untouched, and bob still sees it.
    assert users["bob"].call("GET", f"jobs/{bob_job}").json()["status"] == "succeeded"


def test_unauthenticated_requests_are_refused(hub: Hub, users: dict[str, User], jobs: dict[str, Any]) -> None:
    job = jobs["alice"]["id"]
    for method, path in (("GET", "jobs"), ("GET", f"jobs/{job}/events"), ("POST", "jobs"), ("GET", "info")):
        r = requests.request(method, f"{hub.url}/user/alice/{API}/{path}", allow_redirects=False, timeout=30)
        assert r.status_code in (302, 403), (method, path, r.status_code)
        if r.status_code == 302:  # to the hub's login, never to data
            assert "/hub/" in r.headers["Location"]
    bad = requests.get(f"{hub.url}/user/alice/{API}/jobs", headers={"Authorization": "token not-a-token"}, timeout=30)
    assert bad.status_code == 403 or "/hub/login" in bad.url
