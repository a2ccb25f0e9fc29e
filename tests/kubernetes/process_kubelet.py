"""Process kubelet (test-only): plays the kubelet for ONE KWOK node so that its pods really run.

KWOK fakes every node of the test cluster (scripts/k8s), but its pod Stages skip the "proc" node
(scripts/k8s/NOTES.md, item 3), so pods the real scheduler binds there stay Pending. This test
double runs each such pod's single container as a local process and reports it back like a
kubelet would, so the product's Kubernetes backend can be tested end to end against a real
apiserver, scheduler and Job controller. It is NOT a kubelet: no images, isolation, limits,
probes, restarts or networking.

Emulation contract (what the tests, and the backend under test, may rely on):
- argv = container `command` + `args` (no shell, no image ENTRYPOINT: `command` is required),
  with Kubernetes' `$(VAR)` expansion; run with `start_new_session` (own process group).
- Environment: only PATH (the kubelet's), HOME/TMPDIR (per pod), HOSTNAME (pod name),
  JUPYTER_EXT_TEST_ROOT, KUBECONFIG (when the service-account token is mounted: a kubeconfig
  holding that pod's own bound token, never KUBERNETES_SERVICE_HOST), then the container's env.
  `valueFrom` supports fieldRef, configMapKeyRef and secretKeyRef; resourceFieldRef and envFrom
  are refused (CreateContainerConfigError).
- Volumes: configMap, secret, emptyDir, downwardAPI (fieldRef) and projected (those plus
  serviceAccountToken) are written to files; each mount appears at $JUPYTER_EXT_TEST_ROOT +
  mountPath (a symlink), and every occurrence of a mountPath in argv, env values and workingDir
  is rewritten to that host path. Paths a program builds itself are NOT rewritten. cwd is
  $JUPYTER_EXT_TEST_ROOT (+ workingDir). Other volume types: CreateContainerConfigError.
- Logs: CRI lines `<UTC, 9 fractional digits>Z stdout|stderr F|P <text>` (P = a piece of a line
  longer than 16 KiB, like containerd), served by KWOK through a `Logs` object owned by the pod.
- Status: Pending (waiting ContainerCreating) -> Running -> Succeeded/Failed with
  terminated {exitCode, reason Completed|Error|OOMKilled|StartError}. OOMKilled = the process
  itself ended with 137 (exit(137) or an unexpected SIGKILL); our own kills give Error.
  Status patches are retried while the apiserver is away (restarted by a test).
- Images: none are pulled, but an image whose registry host ends in `.invalid` (a reserved
  TLD: no registry can have it) fails to "pull" like a kubelet reports it: waiting
  ErrImagePull, then ImagePullBackOff, alternating every PULL_RETRY seconds until deletion.
- restartPolicy OnFailure: a container that exits non-zero is started again (restartCount
  + 1) after RESTART_DELAY seconds; its log goes to a new file and the old one is served
  as the previous container's log (`previousLogsFile`, i.e. `kubectl logs --previous`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

LOG = logging.getLogger("process-kubelet")
SA_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
MAX_LINE = 16 * 1024  # containerd's CRI logger emits longer lines as P pieces of this size
ROOT_ENV = "JUPYTER_EXT_TEST_ROOT"
TERMINAL = ("Succeeded", "Failed")
PULL_RETRY = 1.0
RESTART_DELAY = 0.5
Json = dict[str, Any]


class ConfigError(Exception):
    """The pod cannot start as written; a kubelet reports CreateContainerConfigError and waits."""


def now() -> str:
    """A metav1.Time string (seconds precision, UTC), as the API server stores it."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def cri_timestamp() -> bytes:
    """RFC3339Nano UTC with a fixed 9-digit fraction (what KWOK's parser and readers accept)."""
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)).encode() + b".%09dZ" % (ns % 10**9)


def field_ref(pod: Json, path: str) -> str:
    """Resolve a downward-API fieldPath (metadata.*, labels['k'], spec.nodeName, status.podIP...)."""
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return str(pod["metadata"].get(m[1], {}).get(m[2], ""))
    node: Any = pod
    for part in path.split("."):
        node = node.get(part, "") if isinstance(node, dict) else ""
    return str(node)


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined names are replaced, $$ escapes, the rest stays."""
    return re.sub(
        r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", lambda m: "$" if m[1] is None else env.get(m[1], m[0]), value
    )


class PodRunner:
    """One pod on the proc node: prepares, runs and reports its container, then removes the pod."""

    def __init__(self, kubelet: ProcessKubelet, pod: Json) -> None:
        self.k, self.pod = kubelet, pod
        meta = pod["metadata"]
        self.ns, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.container: Json = pod["spec"]["containers"][0]
        self.dir = kubelet.work_dir / f"{self.ns}_{self.name}_{self.uid[:8]}"
        self.root = self.dir / "root"
        self.mounts: dict[str, Path] = {}
        self.deleting = asyncio.Event()
        self.proc: asyncio.subprocess.Process | None = None
        self.killed = False
        self.restarts = 0
        self.last_state: Json = {}
        self.started_at = ""
        self.ip = kubelet.next_ip()
        self.update(pod)
        self.task = asyncio.create_task(self._run(), name=f"pod {self.ns}/{self.name}")

    def update(self, pod: Json) -> None:
        """Called for every watch event: a deletionTimestamp starts graceful termination."""
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            self.deleting.set()

    async def _run(self) -> None:
        """The pod's life; cancelled (pod object gone, shutdown) it kills the process and ends."""
        try:
            phase = self.pod.get("status", {}).get("phase")
            if phase == "Running":  # started by an earlier process kubelet: its process is gone
                msg = "The container could not be located when the pod was terminated"
                await self._finish(137, "ContainerStatusUnknown", message=msg)
            elif phase not in TERMINAL and not self.deleting.is_set():
                try:
                    await self._start()
                except Exception as e:  # a bug here must show up in the pod, not hang a test
                    LOG.exception("pod %s/%s: process kubelet error", self.ns, self.name)
                    await self._reap()
                    await self._finish(128, "StartError", message=f"process kubelet error: {e!r}")
            await self.deleting.wait()
            # KWOK skips this node, so nothing else removes the pod. gracePeriodSeconds goes in
            # the body: when a DELETE has a body, the apiserver ignores its query parameters.
            with contextlib.suppress(ApiException):
                body = {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}}
                await self.k.core.delete_namespaced_pod(self.name, self.ns, body=body)
        except Exception:  # e.g. the apiserver went away while reporting: say so, never silently
            LOG.exception("pod %s/%s: process kubelet gave up on this pod", self.ns, self.name)
        finally:
            await self._reap()

    async def _reap(self) -> None:
        if self.proc and self.proc.returncode is None:
            self._signal(signal.SIGKILL)
            await self.proc.wait()

    async def _start(self) -> None:
        await self._status("Pending", {"waiting": {"reason": "ContainerCreating"}}, startTime=now(), hostIP="127.0.0.1")
        image = str(self.container.get("image", ""))
        host = image.split("/", 1)[0] if "/" in image else ""
        if host.split(":", 1)[0].endswith(".invalid"):
            await self._fail_pull(image, host)
            return
        reported = ""
        while True:  # like a kubelet, retry until the ConfigMap/Secret appears or the pod is deleted
            try:
                argv, env, cwd = await self._prepare()
                break
            except ConfigError as e:
                if str(e) != reported:
                    reported = str(e)
                    await self._status(
                        "Pending", {"waiting": {"reason": "CreateContainerConfigError", "message": reported}}
                    )
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.deleting.wait(), 1)
                    return
        previous: Path | None = None
        while True:
            suffix = f"-{self.restarts}" if self.restarts else ""
            log_path = self.dir / f"{self.container['name']}{suffix}.log"
            log_path.touch()
            await self._logs_object(log_path, previous)
            try:
                self.proc = await asyncio.create_subprocess_exec(
                    *argv,
                    cwd=cwd,
                    env=env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    start_new_session=True,
                )
            except OSError as e:
                await self._finish(128, "StartError", message=f"failed to start {argv[0]!r}: {e}")
                return
            self.started_at = now()
            ip = self.ip
            await self._status(
                "Running", {"running": {"startedAt": self.started_at}}, ready=True, podIP=ip, podIPs=[{"ip": ip}]
            )
            with log_path.open("ab", buffering=0) as out:
                assert self.proc.stdout and self.proc.stderr
                pumps = [
                    asyncio.create_task(self._pump(s, n, out))
                    for s, n in ((self.proc.stdout, b"stdout"), (self.proc.stderr, b"stderr"))
                ]
                pod_reason = await self._supervise()
                await asyncio.wait(pumps, timeout=5)  # a leftover grandchild may hold a pipe open
                for p in pumps:
                    p.cancel()
            code = self.proc.returncode or 0
            code = 128 - code if code < 0 else code
            reason = "Completed" if code == 0 else "OOMKilled" if code == 137 and not self.killed else "Error"
            restart = self.pod["spec"].get("restartPolicy") == "OnFailure"
            if code == 0 or not restart or self.killed or pod_reason or self.deleting.is_set():
                await self._finish(code, reason, pod_reason=pod_reason)
                return
            # OnFailure: like a kubelet, report the restart and run the container again.
            self.last_state = {
                "terminated": {"exitCode": code, "reason": reason, "startedAt": self.started_at, "finishedAt": now()}
            }
            self.restarts += 1
            previous = log_path
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.deleting.wait(), RESTART_DELAY)
                return

    async def _fail_pull(self, image: str, host: str) -> None:
        """What a kubelet reports for an image no registry serves, until the pod is deleted."""
        pull = f'failed to pull and unpack image "{image}": failed to resolve reference "{image}": '
        pull += f"failed to do request: dial tcp: lookup {host.split(':', 1)[0]}: no such host"
        states = [("ErrImagePull", pull), ("ImagePullBackOff", f'Back-off pulling image "{image}"')]
        turn = 0
        while not self.deleting.is_set():
            reason, message = states[turn % 2]
            await self._status("Pending", {"waiting": {"reason": reason, "message": message}})
            turn += 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.deleting.wait(), PULL_RETRY)

    async def _supervise(self) -> str | None:
        """Wait for exit, deletion or activeDeadlineSeconds; kill on the last two like a kubelet."""
        assert self.proc
        spec = self.pod["spec"]
        deadline = spec.get("activeDeadlineSeconds")
        waits = [asyncio.create_task(self.proc.wait()), asyncio.create_task(self.deleting.wait())]
        await asyncio.wait(waits, timeout=deadline, return_when=asyncio.FIRST_COMPLETED)
        waits[1].cancel()
        pod_reason = None
        if self.proc.returncode is None:
            meta = self.pod["metadata"]
            grace = meta.get("deletionGracePeriodSeconds") if self.deleting.is_set() else None
            pod_reason = None if self.deleting.is_set() else "DeadlineExceeded"
            await self._kill(spec.get("terminationGracePeriodSeconds", 30) if grace is None else grace)
        self._signal(signal.SIGKILL)  # the container's other processes die with it
        return pod_reason

    async def _kill(self, grace: float) -> None:
        assert self.proc
        self.killed = True
        self._signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), grace)
        except asyncio.TimeoutError:
            self._signal(signal.SIGKILL)
            await self.proc.wait()

    def _signal(self, sig: int) -> None:
        if self.proc:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    async def _pump(self, stream: asyncio.StreamReader, name: bytes, out: Any) -> None:
        """Copy one pipe to the CRI log; one write() per line so stdout/stderr never interleave."""
        buf = b""

        def emit(tag: bytes, data: bytes) -> None:
            out.write(b"%s %s %s %s\n" % (cri_timestamp(), name, tag, data))

        while chunk := await stream.read(65536):
            buf += chunk
            while True:
                nl = buf.find(b"\n", 0, MAX_LINE + 1)
                if nl >= 0:
                    emit(b"F", buf[:nl].removesuffix(b"\r"))
                    buf = buf[nl + 1 :]
                elif len(buf) >= MAX_LINE:
                    emit(b"P", buf[:MAX_LINE])
                    buf = buf[MAX_LINE:]
                else:
                    break
        if buf:
            emit(b"F", buf)

    async def _prepare(self) -> tuple[list[str], dict[str, str], str]:
        """Materialise volumes, build env and argv (see the module docstring for the rules)."""
        c, spec = self.container, self.pod["spec"]
        if len(spec["containers"]) != 1 or spec.get("initContainers"):
            raise ConfigError("the process kubelet runs pods with exactly one container and no init containers")
        if spec.get("restartPolicy", "Always") not in ("Never", "OnFailure"):
            raise ConfigError("the process kubelet supports restartPolicy Never and OnFailure only")
        if not c.get("command"):
            raise ConfigError("the process kubelet has no images: the container needs an explicit command")
        if c.get("envFrom"):
            raise ConfigError("envFrom is not supported by the process kubelet (use env)")
        shutil.rmtree(self.dir / "volumes", ignore_errors=True)  # idempotent: _start retries
        shutil.rmtree(self.root, ignore_errors=True)
        self.mounts.clear()
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        for m in c.get("volumeMounts") or []:
            vol_dir = self.dir / "volumes" / m["name"]
            if not vol_dir.exists():
                await self._materialise(volumes[m["name"]], vol_dir)
            target = self.root / m["mountPath"].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(vol_dir / m.get("subPath", ""))
            self.mounts[m["mountPath"].rstrip("/") or "/"] = target
        for d in ("home", "tmp"):
            (self.root / d).mkdir(exist_ok=True)
        env = {"PATH": self.k.path, "HOME": str(self.root / "home"), "TMPDIR": str(self.root / "tmp")}
        env |= {"HOSTNAME": self.name, ROOT_ENV: str(self.root)}
        if (self.mounts.get(SA_PATH, self.dir / "none") / "token").is_file():
            env["KUBECONFIG"] = self._kubeconfig((self.mounts[SA_PATH] / "token").read_text())
        for e in c.get("env") or []:
            env[e["name"]] = (
                self._rewrite(expand(e["value"], env)) if "valueFrom" not in e else await self._value_from(e)
            )
        argv = [self._rewrite(expand(a, env)) for a in c["command"] + (c.get("args") or [])]
        cwd = self._rewrite(c.get("workingDir", ""))
        if not cwd.startswith(str(self.root)):
            (self.root / cwd.lstrip("/")).mkdir(parents=True, exist_ok=True)
            cwd = str(self.root / cwd.lstrip("/"))
        return argv, env, cwd

    def _field(self, path: str) -> str:
        """fieldRef as seen from inside the container (podIP is known before the process starts)."""
        status = self.pod.get("status", {}) | {"podIP": self.ip, "hostIP": "127.0.0.1"}
        return field_ref(self.pod | {"status": status}, path)

    def _rewrite(self, text: str) -> str:
        """Replace each mountPath (at path boundaries) by where it really is on this machine."""
        if not self.mounts:
            return text
        alts = "|".join(re.escape(p) for p in sorted(self.mounts, key=len, reverse=True))
        return re.sub(rf"(?<![\w.-])({alts})(?![\w.-])", lambda m: str(self.mounts[m[1]]), text)

    async def _value_from(self, e: Json) -> str:
        src = e["valueFrom"]
        if "fieldRef" in src:
            return self._field(src["fieldRef"]["fieldPath"])
        kind = "configMap" if "configMapKeyRef" in src else "secret" if "secretKeyRef" in src else None
        if kind is None:
            raise ConfigError(f"env {e['name']}: valueFrom {sorted(src)} is not supported by the process kubelet")
        ref = src[f"{kind}KeyRef"]
        data = await self._keys(kind, ref["name"], ref.get("optional", False))
        if ref["key"] not in data and not ref.get("optional"):
            raise ConfigError(f"couldn't find key {ref['key']} in {kind} {self.ns}/{ref['name']}")
        return data.get(ref["key"], b"").decode()

    async def _keys(self, kind: str, name: str, optional: bool) -> dict[str, bytes]:
        """A ConfigMap's data+binaryData or a Secret's data, as bytes."""
        read = self.k.core.read_namespaced_config_map if kind == "configMap" else self.k.core.read_namespaced_secret
        try:
            obj = self.k.api.sanitize_for_serialization(await read(name, self.ns))
        except ApiException as e:
            if e.status == 404 and optional:
                return {}
            raise ConfigError(f'{kind} "{name}" not found') from e
        out = {k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()}
        if kind == "secret":
            return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        return out | {k: v.encode() for k, v in (obj.get("data") or {}).items()}

    async def _materialise(self, vol: Json, vol_dir: Path) -> None:
        files: dict[str, bytes] = {}
        kind = next((k for k in ("emptyDir", "configMap", "secret", "downwardAPI", "projected") if k in vol), None)
        if kind is None:
            raise ConfigError(
                f"volume {vol['name']}: {sorted(set(vol) - {'name'})} is not supported by the process kubelet"
            )
        sources = vol["projected"]["sources"] if kind == "projected" else [{kind: vol[kind]}]
        for src in sources:
            ((skind, s),) = src.items()
            if skind in ("configMap", "secret"):
                data = await self._keys(skind, s.get("name") or s["secretName"], s.get("optional", False))
                items = s.get("items")
                files |= data if items is None else {i["path"]: data[i["key"]] for i in items if i["key"] in data}
            elif skind == "downwardAPI":
                files |= {i["path"]: self._field(i["fieldRef"]["fieldPath"]).encode() for i in s["items"]}
            elif skind == "serviceAccountToken":
                files[s["path"]] = (await self._token(s)).encode()
            elif skind != "emptyDir":
                raise ConfigError(f"volume {vol['name']}: projected source {skind} is not supported")
        vol_dir.mkdir(parents=True)
        for rel, content in files.items():
            (vol_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (vol_dir / rel).write_bytes(content)
            (vol_dir / rel).chmod((vol.get(kind) or {}).get("defaultMode", 0o644))

    async def _token(self, s: Json) -> str:
        """A TokenRequest bound to this pod, as the kubelet mounts for the pod's ServiceAccount."""
        spec: Json = {"expirationSeconds": s.get("expirationSeconds", 3600)}
        spec["boundObjectRef"] = {"apiVersion": "v1", "kind": "Pod", "name": self.name, "uid": self.uid}
        if s.get("audience"):
            spec["audiences"] = [s["audience"]]
        sa = self.pod["spec"].get("serviceAccountName", "default")
        tr = await self.k.core.create_namespaced_service_account_token(sa, self.ns, {"spec": spec})
        return str(tr.status.token)

    def _kubeconfig(self, token: str) -> str:
        """The pod's own token (not the admin's) in a kubeconfig: the apiserver is not at the
        fake `kubernetes` Service IP, so no KUBERNETES_SERVICE_HOST is given (NOTES.md)."""
        path, cluster = self.dir / "kubeconfig", {"server": self.k.server, "certificate-authority-data": self.k.ca_data}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "pod",
            "clusters": [{"name": "c", "cluster": cluster}],
        }
        config["users"] = [{"name": "pod", "user": {"token": token}}]
        config["contexts"] = [{"name": "pod", "context": {"cluster": "c", "user": "pod", "namespace": self.ns}}]
        path.write_text(json.dumps(config))
        return str(path)

    async def _logs_object(self, log_path: Path, previous: Path | None = None) -> None:
        """KWOK serves pods/log from the file a same-named `Logs` object names (NOTES.md item 3),
        and `previous=true` from its `previousLogsFile`."""
        owner = {"apiVersion": "v1", "kind": "Pod", "name": self.name, "uid": self.uid}
        entry: Json = {"containers": [self.container["name"]], "logsFile": str(log_path)}
        if previous is not None:
            entry["previousLogsFile"] = str(previous)
        body: Json = {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "Logs",
            "metadata": {"name": self.name, "namespace": self.ns, "ownerReferences": [owner]},
            "spec": {"logs": [entry]},
        }
        args = ("kwok.x-k8s.io", "v1alpha1", self.ns, "logs")
        try:
            await self.k.custom.create_namespaced_custom_object(*args, body)
        except ApiException as e:  # left over from an earlier pod of the same name
            if e.status != 409:
                raise
            await self.k.custom.patch_namespaced_custom_object(
                *args, self.name, body, _content_type="application/merge-patch+json"
            )
        # KWOK finds the object through its informer, a moment later: until then pods/log is a
        # 400 "no logs found". A kubelet serves a running container's log at once, so wait here.
        for _ in range(100):
            resp = await self.k.core.read_namespaced_pod_log(
                self.name, self.ns, container=self.container["name"], limit_bytes=1, _preload_content=False
            )
            resp.close()
            if resp.status == 200:
                return
            await asyncio.sleep(0.1)
        LOG.warning("pod %s/%s: KWOK does not serve the log file yet", self.ns, self.name)

    async def _finish(self, code: int, reason: str, *, message: str = "", pod_reason: str | None = None) -> None:
        term = {"exitCode": code, "reason": reason, "startedAt": self.started_at or None, "finishedAt": now()}
        deadline = "Pod was active on the node longer than the specified deadline"
        extra: Json = {"reason": pod_reason, "message": deadline} if pod_reason else {}
        await self._status(
            "Succeeded" if code == 0 else "Failed",
            {"terminated": term | ({"message": message} if message else {})},
            **extra,
        )

    async def _status(self, phase: str, state: Json, ready: bool = False, **extra: Any) -> None:
        """Strategic-merge PATCH of pods/status (conditions merge by type: PodScheduled stays)."""
        t = now()
        why: Json = {"reason": None if ready else "PodCompleted" if phase in TERMINAL else "ContainersNotReady"}
        conds = [{"type": "Initialized", "status": "True", "lastTransitionTime": t}]
        conds += [
            {"type": c, "status": str(ready), "lastTransitionTime": t} | why for c in ("Ready", "ContainersReady")
        ]
        cs = {"name": self.container["name"], "image": self.container.get("image", ""), "imageID": ""}
        cs |= {"restartCount": self.restarts, "ready": ready, "started": "running" in state, "state": state}
        if self.last_state:
            cs["lastState"] = self.last_state
        body = {"status": {"phase": phase, "conditions": conds, "containerStatuses": [cs], **extra}}
        for attempt in range(240):  # a kubelet keeps trying while the apiserver is away (restarts)
            try:
                await self.k.core.patch_namespaced_pod_status(self.name, self.ns, body)
                return
            except ApiException as e:  # 404: deleted meanwhile, nothing left to report
                if e.status == 404:
                    return
                if e.status < 500 and e.status != 429:
                    LOG.warning("pod %s/%s: status %s refused: %s %s", self.ns, self.name, phase, e.status, e.body)
                    return
            except (OSError, asyncio.TimeoutError, aiohttp.ClientError) as e:
                if attempt == 0:
                    LOG.warning("pod %s/%s: status %s not reported yet: %r; retrying", self.ns, self.name, phase, e)
            await asyncio.sleep(0.25)
        LOG.error("pod %s/%s: gave up reporting status %s", self.ns, self.name, phase)


class ProcessKubelet:
    """The process kubelet (test-only) of `node`: one pod watch (list, watch, re-list on 410),
    a PodRunner per pod. Use run()/stop() on one event loop (conftest runs it in a thread)."""

    def __init__(self, node: str, work_dir: Path, kubeconfig: str | None = None, path: str | None = None) -> None:
        self.node, self.work_dir, self.kubeconfig = node, work_dir, kubeconfig
        self.path = path or os.environ.get("PATH", os.defpath)
        self.pods: dict[str, PodRunner] = {}
        self.stopping = asyncio.Event()
        self.ready = threading.Event()  # set after the first successful list
        self._ips = 0
        self.server, self.ca_data = "", ""

    def next_ip(self) -> str:
        """Fake pod IPs from 10.88.0.0/16 (apart from KWOK's 10.0.0.x); nothing connects to them."""
        self._ips += 1
        return f"10.88.{self._ips // 250}.{self._ips % 250 + 1}"

    async def run(self) -> None:
        """Serve until stop(); on the way out kill every process (pods are left as they are)."""
        cfg = client.Configuration()
        await config.load_kube_config(config_file=self.kubeconfig, client_configuration=cfg, persist_config=False)
        self.server = str(cfg.host)
        self.ca_data = base64.b64encode(Path(cfg.ssl_ca_cert).read_bytes()).decode() if cfg.ssl_ca_cert else ""
        async with client.ApiClient(cfg) as self.api:
            # Any: the client's annotations want model objects, but dict bodies are what we send
            self.core: Any = client.CoreV1Api(self.api)
            self.custom: Any = client.CustomObjectsApi(self.api)
            watcher = asyncio.create_task(self._watch_forever())
            await self.stopping.wait()
            watcher.cancel()
            runners = [r.task for r in self.pods.values()]
            for t in runners:
                t.cancel()
            await asyncio.gather(watcher, *runners, return_exceptions=True)

    def stop(self) -> None:
        self.stopping.set()

    async def _watch_forever(self) -> None:
        selector = f"spec.nodeName={self.node}"
        rv: str | None = None
        while True:
            try:
                if rv is None:
                    listed = self.api.sanitize_for_serialization(
                        await self.core.list_pod_for_all_namespaces(field_selector=selector)
                    )
                    self._resync(listed["items"])
                    rv = listed["metadata"]["resourceVersion"]
                    self.ready.set()
                async with watch.Watch() as w:
                    stream = w.stream(
                        self.core.list_pod_for_all_namespaces,
                        field_selector=selector,
                        resource_version=rv,
                        allow_watch_bookmarks=True,
                        timeout_seconds=60,
                        _request_timeout=(10, 90),
                    )
                    async for ev in stream:
                        rv = ev["raw_object"]["metadata"]["resourceVersion"]
                        if ev["type"] in ("ADDED", "MODIFIED"):
                            self._seen(ev["raw_object"])
                        elif ev["type"] == "DELETED":
                            self._gone(ev["raw_object"]["metadata"]["uid"])
            except asyncio.CancelledError:
                raise
            except ApiException as e:
                if e.status == 410:  # too old resource version: list again and reconcile
                    rv = None
                else:
                    LOG.warning("watch failed: %s; retrying", e)
                    await asyncio.sleep(1)
            except Exception as e:  # connection dropped, apiserver restarting...
                LOG.warning("watch dropped: %r; retrying", e)
                await asyncio.sleep(1)

    def _resync(self, pods: list[Json]) -> None:
        for uid in set(self.pods) - {p["metadata"]["uid"] for p in pods}:
            self._gone(uid)
        for p in pods:
            self._seen(p)

    def _seen(self, pod: Json) -> None:
        runner = self.pods.get(pod["metadata"]["uid"])
        if runner is None:
            self.pods[pod["metadata"]["uid"]] = PodRunner(self, pod)
        else:
            runner.update(pod)

    def _gone(self, uid: str) -> None:
        """The pod object is gone (our force-delete or someone else's): kill and clean up."""
        runner = self.pods.pop(uid, None)
        if runner:
            runner.task.cancel()
            runner.task.add_done_callback(lambda _: shutil.rmtree(runner.dir, ignore_errors=True))


def main() -> None:
    """`python -m tests.kubernetes.process_kubelet --node kwok-proc-0` (KUBECONFIG from the env)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--node", default=os.environ.get("JUPYTER_EXT_K8S_PROC_NODE", "kwok-proc-0"))
    ap.add_argument("--work-dir", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO)
    kubelet = ProcessKubelet(args.node, args.work_dir or Path(tempfile.mkdtemp(prefix="process-kubelet-")))

    async def serve() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, kubelet.stop)
        await kubelet.run()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
