"""Steps whose pods do not see the server's disk, against the real control plane: inputs in a
ConfigMap owned by the Job (outputs back over the pod log), or through an fsspec artifact store
(a local path here: no cloud bucket can run in these tests, and none is faked)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from jupyter_ext.backends.kubernetes import KubernetesBackend
from jupyter_ext.models import JobSpec
from jupyter_ext.orchestrator import Orchestrator
from jupyter_ext.store import AsyncStore
from tests.kubernetes.conftest import Cluster
from tests.kubernetes.test_backend import run, write

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

PLOT = (
    "import base64\n"
    "from IPython.display import Image, display\n"
    "PNG = base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ'\n"
    "                        'AAAABJRU5ErkJggg==')\n"
    "display(Image(data=PNG))\n"
)


def two_steps(root: Path) -> str:
    """prep hands `data` to train; train writes an artifact file and shows an image."""
    return write(
        root,
        "handoff.ipynb",
        [
            (["step:prep"], "data = [n * n for n in range(1, 6)]\nprint('prepared', len(data), flush=True)"),
            (
                ["step:train", "prev:prep"],
                "import os, pathlib\n"
                "print('total', sum(data), flush=True)\n"
                "out = pathlib.Path(os.environ['JUPYTER_EXT_ARTIFACTS_DIR'], 'model', 'weights.txt')\n"
                "out.parent.mkdir(parents=True, exist_ok=True)\n"
                "out.write_text('w=' + str(sum(data)))\n" + PLOT,
            ),
        ],
    )


async def check_two_steps(orch: Orchestrator, store: AsyncStore, job_id: str) -> dict[str, dict[str, str]]:
    final = await orch.wait(job_id)
    assert final["status"] == "succeeded", final["error"]
    events = await store.events(job_id)
    texts = [e["output"]["text"] for e in events if e["type"] == "cell.output" and "text" in e["output"]]
    assert texts == ["prepared 5\n", "total 55\n"], "data was handed from prep to train"
    assert not [e for e in events if e["type"] == "file"], "file chunks are not stored as events"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    artifacts = {a["name"]: a for a in await store.artifacts(job_id)}
    for name in ("train__model__weights.txt", "train__executed.ipynb", "prep__executed.ipynb"):
        assert name in artifacts, sorted(artifacts)
    stored = {a["name"]: await store.artifact(job_id, a["name"]) for a in artifacts.values()}
    weights = Path(stored["train__model__weights.txt"]["path"])
    assert weights.read_text() == "w=55", "the artifact file is on the server, under the job's folder"
    assert weights.is_relative_to(orch.job_dir(job_id))
    images = [n for n in stored if n.endswith(".png")]
    assert images and Path(stored[images[0]]["path"]).read_bytes().startswith(b"\x89PNG")
    handoff = orch.job_dir(job_id) / "steps" / "prep" / "attempt-1" / "handoff" / "data.pkl"
    assert handoff.is_file(), "the hand-off variable came back to the server"
    return stored


def test_small_inputs_travel_in_a_configmap_owned_by_the_job_and_outputs_over_the_log(
    k8s_cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    nb = two_steps(tmp_path)

    async def body(orch: Orchestrator, store: AsyncStore, backend: KubernetesBackend) -> None:
        job, _ = await orch.submit(JobSpec(notebook=nb), "ada")
        await check_two_steps(orch, store, job["id"])
        jobs = {j.metadata.name: j for j in (await backend.batch.list_namespaced_job(namespace)).items}
        maps = {m.metadata.name: m for m in (await backend.core.list_namespaced_config_map(namespace)).items}
        assert set(jobs) <= set(maps), "one inputs ConfigMap per Job, of the same name"
        for name, j in jobs.items():
            owner = maps[name].metadata.owner_references[0]
            assert (owner.kind, owner.name, owner.uid) == ("Job", name, j.metadata.uid)
            assert maps[name].immutable is True
            assert {"step.ipynb", "parameters.json"} <= set(maps[name].binary_data)
        train = next(n for n, j in jobs.items() if j.metadata.labels["jupyter-ext/step"] == "train")
        assert "handoff.0.pkl" in maps[train].binary_data, "the hand-off input rode in train's ConfigMap"
        # The garbage collector deletes the ConfigMap with its Job.
        await backend.batch.delete_namespaced_job(train, namespace, propagation_policy="Background")
        for _ in range(120):
            names = {m.metadata.name for m in (await backend.core.list_namespaced_config_map(namespace)).items}
            if train not in names:
                break
            await asyncio.sleep(0.25)
        assert train not in names, "the inputs ConfigMap went with its Job"

    run(k8s_cluster, namespace, tmp_path, body, shared_paths=False)


def test_inputs_through_an_artifact_store_url(k8s_cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    nb = two_steps(tmp_path)
    bucket = tmp_path / "store"  # a volume both would mount; fsspec's local filesystem behind a file:// URL

    async def body(orch: Orchestrator, store: AsyncStore, backend: KubernetesBackend) -> None:
        job, _ = await orch.submit(JobSpec(notebook=nb), "ada")
        await check_two_steps(orch, store, job["id"])
        attempt = bucket / job["id"] / "train" / "attempt-1"
        assert (attempt / "inputs" / "step.ipynb").is_file() and (attempt / "inputs" / "handoff.0.pkl").is_file()
        assert (attempt / "outputs" / "artifacts" / "model" / "weights.txt").read_text() == "w=55"
        assert (bucket / job["id"] / "prep" / "attempt-1" / "outputs" / "handoff" / "data.pkl").is_file()
        assert not (await backend.core.list_namespaced_config_map(namespace, label_selector="jupyter-ext/job")).items

    run(k8s_cluster, namespace, tmp_path, body, shared_paths=False, artifact_store=f"file://{bucket}")


def test_inputs_too_large_for_a_configmap_are_refused_naming_the_step_and_the_setting(
    k8s_cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    nb = write(tmp_path, "big.ipynb", [(["step:big"], "blob = '" + "x" * 4000 + "'\nprint(len(blob))")])

    async def body(orch: Orchestrator, store: AsyncStore, backend: KubernetesBackend) -> None:
        job, _ = await orch.submit(JobSpec(notebook=nb), "ada")
        final = await orch.wait(job["id"])
        assert final["status"] == "failed"
        message = final["error"]["message"]
        assert message.startswith("the inputs of step 'big' (its notebook, parameters and hand-off variables)"), message
        events = await store.events(job["id"])
        assert [e["type"] for e in events].count("step.end") == 1
        assert "c.KubernetesBackend.artifact_store" in message and "configmap_max_bytes" in message
        assert not (await backend.batch.list_namespaced_job(namespace)).items, "nothing was created"

    run(k8s_cluster, namespace, tmp_path, body, shared_paths=False, configmap_max_bytes=2048)
