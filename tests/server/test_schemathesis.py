"""schemathesis against the shipped openapi.yaml and a real `jupyter server` with jupyter-ext:
every check, bounded examples per operation, deterministic. Zero 5xx, zero failures."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.notebooks import write_test_notebooks
from tests.server.realserver import TOKEN, Server

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
SPEC = HERE.parent.parent / "jupyter_ext" / "openapi.yaml"


@pytest.mark.timeout(600)
def test_schemathesis_finds_no_5xx_and_no_schema_violation() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        root = base / "root"
        root.mkdir()
        (base / "home").mkdir()
        write_test_notebooks(root)
        server = Server(root, base / "data", base / "home")
        server.start()
        reports = base / "reports"
        try:
            run = subprocess.run(  # noqa: S603 - our own argv
                [
                    str(Path(sys.executable).with_name("st")),
                    "--config-file",
                    str(HERE / "schemathesis.toml"),
                    "run",
                    str(SPEC),
                    "--url",
                    server.url,
                    "--header",
                    f"Authorization: token {TOKEN}",
                    "--checks",
                    "all",
                    "--workers",
                    "1",
                    "--request-timeout",
                    "60",
                    "--report",
                    "json,har",
                    "--report-dir",
                    str(reports),
                    "--no-color",
                ],
                capture_output=True,
                text=True,
                timeout=540,
                check=False,
            )
            log = run.stdout + run.stderr
        finally:
            server.stop()
        (har_file,) = reports.glob("har-*.json")
        (json_file,) = reports.glob("json-*.json")
        entries = json.loads(har_file.read_text())["log"]["entries"]
        statuses = [e["response"]["status"] for e in entries]
        server_errors = [
            f"{e['request']['method']} {e['request']['url']} -> {e['response']['status']}"
            for e in entries
            if e["response"]["status"] >= 500
        ]
        report = json.loads(json_file.read_text())
        failures = report["failures"]
        print(
            f"schemathesis: {len(entries)} requests, {len(server_errors)} 5xx, "
            f"{sum(f['count'] for f in failures)} failures, {report['test_cases']['generated']} cases, "
            f"{len(report['errors'] or [])} errors"
        )
        assert len(entries) > 300 and 201 in statuses, "schemathesis really drove the API"
        assert not server_errors, server_errors[:20]
        assert not failures and not report["errors"], log[-6000:]
        assert run.returncode == 0, log[-6000:]
