"""`cluster.sh up` / `down` with the real node, twice in a row on a cluster of its own: each `up`
runs a container, each `down` leaves no process, mount, network namespace, veth, bridge or
cgroup behind (scripts/k8s/node.sh check), so the next `up` works."""

from __future__ import annotations

import os
import shlex
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.kubernetes.conftest import _explain

pytestmark = [pytest.mark.k8s, pytest.mark.slow]
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts" / "k8s"


def sh(name: str, *args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([str(SCRIPTS / name), *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, _explain(f"{name} {' '.join(args)}", p)
    return p


def test_up_run_down_twice_leaves_nothing_behind(tmp_path: Path) -> None:
    env = os.environ | {"CLUSTER_NAME": f"jx-life-{uuid.uuid4().hex[:6]}", "REAL_NODE_ENABLED": "1"}
    try:
        for round_ in (1, 2):
            up = sh("cluster.sh", "up", env=env)
            lines = [line.removeprefix("export ") for line in up.stdout.splitlines() if line.startswith("export ")]
            exported = dict(line.split("=", 1) for line in lines)
            kubeconfig = shlex.split(exported["KUBECONFIG"])[0]
            image = shlex.split(exported["JUPYTER_EXT_IMAGE"])[0]
            bin_dir = Path(shlex.split(exported["JUPYTER_EXT_K8S_BIN"])[0])
            kubectl = [str(bin_dir / "kubectl"), "--kubeconfig", kubeconfig]
            pod = f"round-{round_}"
            overrides = (
                '{"spec": {"nodeSelector": {"jupyter-ext.dev/node": "real"}, "automountServiceAccountToken": false,'
                ' "securityContext": {"runAsUser": 1000, "runAsNonRoot": true}}}'
            )
            run = subprocess.run(
                [*kubectl, "run", pod, "--image", image, "--restart=Never", "--overrides", overrides, "--command",
                 "--", "python", "-c", f"print('round {round_} in a container')"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert run.returncode == 0, run.stderr
            waited = subprocess.run(
                [*kubectl, "wait", "--for=jsonpath={.status.phase}=Succeeded", f"pod/{pod}", "--timeout=180s"],
                capture_output=True, text=True, timeout=200,
            )  # fmt: skip
            logs = subprocess.run([*kubectl, "logs", pod], capture_output=True, text=True, timeout=60)
            assert waited.returncode == 0, waited.stderr + logs.stderr
            assert logs.stdout == f"round {round_} in a container\n"
            sh("cluster.sh", "down", env=env)
            check = subprocess.run([str(SCRIPTS / "node.sh"), "check"], env=env, capture_output=True, text=True)
            assert check.returncode == 0, check.stderr
            assert "nothing left behind" in check.stderr
    finally:
        subprocess.run([str(SCRIPTS / "cluster.sh"), "down"], env=env, capture_output=True, timeout=300)
