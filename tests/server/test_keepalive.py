"""A refused request with a body leaves its connection usable (a proxy in front of us, such as
JupyterHub's, reuses connections: before, a 403 answered while the body was still unread made
tornado drop the connection, and the proxy's next request on it failed with a 503)."""

from __future__ import annotations

import http.client
import json
from typing import Any

from tests.server.realserver import TOKEN


def test_a_refused_post_keeps_the_connection_for_the_next_request(server: Any) -> None:
    server.start()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        body = json.dumps({"notebook": "quick.ipynb", "pad": "x" * 200_000})
        conn.request("POST", "/jupyter-ext/api/jobs", body=body, headers={"Content-Type": "application/json"})
        refused = conn.getresponse()
        refused.read()
        assert refused.status == 403
        assert refused.getheader("Connection", "").lower() != "close"
        sock = conn.sock
        conn.request("GET", "/jupyter-ext/api/info", headers={"Authorization": f"token {TOKEN}"})
        info = conn.getresponse()
        assert info.status == 200, info.read()[:300]
        assert conn.sock is sock, "the same connection answered (none was dropped and re-opened)"
    finally:
        conn.close()
