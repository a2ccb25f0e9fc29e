#!/usr/bin/env bash
# A local Kubernetes test cluster for jupyter-ext: real etcd, kube-apiserver,
# kube-controller-manager and kube-scheduler (built by scripts/k8s/build.sh), KWOK fake nodes.
#
#   scripts/k8s/cluster.sh up      build if needed, start the cluster, create the nodes, wait Ready
#   scripts/k8s/cluster.sh down    stop it and delete its state
#   scripts/k8s/cluster.sh env     print `export KUBECONFIG=... PATH=...` (eval "$(... env)")
#   scripts/k8s/cluster.sh status  kwokctl's view + nodes
#   scripts/k8s/cluster.sh smoke   the acceptance checks (Job on the GPU node, FailedScheduling,
#                                  kubectl logs [-f] through KWOK's Logs CRD, process-kubelet node)
#   scripts/k8s/cluster.sh restart-kwok   restart kwok-controller only (ends all log streams)
#   scripts/k8s/cluster.sh restart-apiserver   restart kube-apiserver only (drops every watch)
#
# Everything listens on 127.0.0.1 only (random free ports). State (etcd data, pki, component
# logs, kubeconfig) lives in $JUPYTER_EXT_K8S_STATE (default ~/.cache/jupyter-ext/k8s/state);
# ~/.kube/config is not touched.
#
# Nodes (all managed by KWOK: status, heartbeats, leases, logs/exec endpoints):
#   kwok-cpu-0, kwok-cpu-1   8 cpu, 32Gi, 110 pods        label jupyter-ext.test/pool=cpu
#   kwok-gpu-0               16 cpu, 64Gi, nvidia.com/gpu 4  label jupyter-ext.test/pool=gpu
#   kwok-proc-0              8 cpu, 32Gi; KWOK's pod Stages skip it (scripts/k8s/kwok-stages.yaml.in)
#                            so a test "process kubelet" can run its pods; label
#                            jupyter-ext.test/pool=proc and taint
#                            jupyter-ext.test/process-kubelet=true:NoSchedule (PROC_NODE_TAINT=0 drops it)
#   jx-real-0                a REAL node (scripts/k8s/node.sh): kubelet + containerd + runc, label
#                            jupyter-ext.dev/node=real; KWOK manages only the nodes annotated
#                            kwok.x-k8s.io/node=fake, so it never touches this one's pods.
#                            REAL_NODE_ENABLED=0 leaves it out (needs root).
# shellcheck disable=SC2034  # (retry loops: the counter is unused)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
K8S_VERSION="${K8S_VERSION:-v1.33.13}"
CLUSTER_NAME="${CLUSTER_NAME:-jupyter-ext}"
CACHE_ROOT="${JUPYTER_EXT_K8S_CACHE:-$HOME/.cache/jupyter-ext/k8s}"
STATE="${JUPYTER_EXT_K8S_STATE:-$CACHE_ROOT/state}"
BIN="$CACHE_ROOT/$K8S_VERSION/bin"
PROC_NODE="${PROC_NODE:-kwok-proc-0}"
PROC_NODE_TAINT="${PROC_NODE_TAINT:-1}"
# REAL_NODE_ENABLED=1 (default when root): also a real kubelet + containerd node (scripts/k8s/node.sh)
REAL_NODE_ENABLED="${REAL_NODE_ENABLED:-$([[ $(id -u) == 0 ]] && echo 1 || echo 0)}"
export CLUSTER_NAME K8S_VERSION
KUBECONFIG_OUT="$STATE/$CLUSTER_NAME.kubeconfig"
export KWOK_WORKDIR="$STATE/kwok"   # kwokctl keeps clusters/<name>/ here instead of ~/.kwok
# kwokctl shells out to the first kubectl on PATH (KWOK_KUBECTL_BINARY is only its fallback);
# on this machine /usr/bin/kubectl is google-cloud-sdk's v1.32 dispatcher, so ours goes first.
export PATH="$BIN:$PATH"
export KWOK_KUBECTL_BINARY="$BIN/kubectl"

log() { printf '[k8s-cluster] %s\n' "$*" >&2; }

ensure_bins() {
  local b
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok kwokctl; do
    if [[ ! -x "$BIN/$b" ]]; then
      log "missing $BIN/$b: running build.sh"
      K8S_VERSION="$K8S_VERSION" "$HERE/build.sh" >/dev/null
      break
    fi
  done
}

kc() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_OUT" "$@"; }

# kwokctl stop/delete kill whatever pid a pids/<component>.pid file names. After a reboot that
# pid may belong to an unrelated process, so drop every pid file whose process is not this
# cluster's component (its argv[0] is <cluster workdir>/bin/<component>).
sanitize_pids() {
  local dir="$KWOK_WORKDIR/clusters/$CLUSTER_NAME" f pid argv0
  [[ -d "$dir/pids" ]] || return 0
  for f in "$dir"/pids/*.pid; do
    [[ -e "$f" ]] || continue
    pid=$(cat "$f" 2>/dev/null || true)
    argv0=""
    [[ "$pid" =~ ^[0-9]+$ ]] && argv0=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -1 || true)
    if [[ "$argv0" != "$dir/bin/$(basename "$f" .pid)" ]]; then
      rm -f "$f"
    fi
  done
}

write_config() {
  mkdir -p "$STATE"
  local cfg="$STATE/$CLUSTER_NAME.kwok.yaml"
  {
    cat <<'EOF'
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  # kwokctl's default is 0.0.0.0; keep every component on loopback.
  bindAddress: 127.0.0.1
---
EOF
    sed "s/__PROC_NODE__/$PROC_NODE/g" "$HERE/kwok-stages.yaml.in"
  } >"$cfg"
  echo "$cfg"
}

nodes_yaml() {
  local n
  for n in kwok-cpu-0 kwok-cpu-1; do
    node_yaml "$n" cpu "8" "32Gi" ""
  done
  node_yaml kwok-gpu-0 gpu "16" "64Gi" '    nvidia.com/gpu: "4"'
  node_yaml "$PROC_NODE" proc "8" "32Gi" ""
}

node_yaml() {
  local name=$1 pool=$2 cpu=$3 mem=$4 extra=$5 taints=""
  if [[ $pool == proc && $PROC_NODE_TAINT == 1 ]]; then
    taints=$'  taints:\n  - key: jupyter-ext.test/process-kubelet\n    value: "true"\n    effect: NoSchedule'
  fi
  cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: $name
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/hostname: $name
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    jupyter-ext.test/pool: $pool
spec:
$( [[ -n $taints ]] && echo "$taints" || echo "  {}" )
status:
  capacity:
    cpu: "$cpu"
    memory: $mem
    pods: "110"
$extra
  allocatable:
    cpu: "$cpu"
    memory: $mem
    pods: "110"
$extra
EOF
}

cmd_up() {
  ensure_bins
  if [[ -f "$KUBECONFIG_OUT" ]] && kc get --raw /readyz >/dev/null 2>&1; then
    log "cluster $CLUSTER_NAME already up"
    sanitize_pids
    if [[ ! -f "$KWOK_WORKDIR/clusters/$CLUSTER_NAME/pids/kwok-controller.pid" ]]; then
      log "kwok-controller is not running: restarting it"
      cmd_restart_kwok
    fi
  else
    if "$BIN/kwokctl" get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
      # A cluster whose processes died (reboot, killed test run). `kwokctl start cluster` can
      # revive it, but the node Leases are still held by the dead kwok-controller, so the new
      # one manages no node (and no pod) until they expire: 200s with kwokctl's defaults.
      # A test cluster's state is worth nothing, so start from scratch (a few seconds).
      log "stale cluster $CLUSTER_NAME found (not serving): deleting it"
      sanitize_pids
      "$BIN/kwokctl" delete cluster --name "$CLUSTER_NAME" >&2 || true
    fi
    if ! "$BIN/kwokctl" get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
      local cfg t0
      # a real node left from an earlier cluster of this name talks to an API server that is gone
      [[ $REAL_NODE_ENABLED == 1 ]] && "$HERE/node.sh" down 2>/dev/null || true
      cfg=$(write_config)
      t0=$(date +%s)
      log "creating cluster $CLUSTER_NAME (kwokctl --runtime binary, k8s $K8S_VERSION)"
      rm -f "$KUBECONFIG_OUT"
      KWOK_KUBE_VERSION="$K8S_VERSION" \
        "$BIN/kwokctl" create cluster \
        --name "$CLUSTER_NAME" \
        --config "$cfg" \
        --runtime binary \
        --kube-apiserver-binary "$BIN/kube-apiserver" \
        --kube-controller-manager-binary "$BIN/kube-controller-manager" \
        --kube-scheduler-binary "$BIN/kube-scheduler" \
        --kwok-controller-binary "$BIN/kwok" \
        --etcd-binary "$BIN/etcd" \
        --enable-crds Logs,ClusterLogs \
        --extra-args kube-controller-manager=leader-elect=false \
        --extra-args kube-scheduler=leader-elect=false \
        --extra-args kwok-controller=manage-all-nodes=false \
        --extra-args kwok-controller=manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
        --kubeconfig "$KUBECONFIG_OUT" \
        --timeout 180s --wait 120s >&2
      log "control plane up in $(($(date +%s) - t0))s"
    fi
  fi
  # kwokctl writes a context into $KUBECONFIG_OUT; use the cluster's own admin kubeconfig
  # (same endpoint + certs) so the file has exactly one context.
  cp "$KWOK_WORKDIR/clusters/$CLUSTER_NAME/kubeconfig.yaml" "$KUBECONFIG_OUT"
  nodes_yaml | kc apply -f - >&2
  log "waiting for the KWOK nodes to be Ready"
  kc wait --for=condition=Ready node -l type=kwok --timeout=120s >&2
  # the default ServiceAccount is created asynchronously; pods cannot be created before it.
  local i
  for i in $(seq 1 60); do kc -n default get serviceaccount default >/dev/null 2>&1 && break; sleep 1; done
  if [[ $REAL_NODE_ENABLED == 1 ]]; then
    "$HERE/node.sh" up
  fi
  kc get nodes -o wide >&2
  cmd_env
}

cmd_down() {
  # the real node first: kubelet still needs the API server to tear its pods down
  [[ $REAL_NODE_ENABLED == 1 ]] && "$HERE/node.sh" down || true
  if [[ -x "$BIN/kwokctl" ]]; then
    sanitize_pids
    "$BIN/kwokctl" delete cluster --name "$CLUSTER_NAME" >&2 || true
  fi
  rm -f "$KUBECONFIG_OUT" "$STATE/$CLUSTER_NAME.kwok.yaml"
  log "cluster $CLUSTER_NAME deleted"
}

pid_file() { echo "$KWOK_WORKDIR/clusters/$CLUSTER_NAME/pids/$1.pid"; }

stop_component() {
  # stop_component NAME TENTHS: SIGTERM to one control-plane component, SIGKILL if it is still
  # there after TENTHS tenths of a second, then forget its pid file (`kwokctl start` restarts
  # the components that have none).
  local pidf pid i
  pidf=$(pid_file "$1")
  sanitize_pids
  [[ -f "$pidf" ]] || return 0
  pid=$(cat "$pidf")
  kill "$pid"
  for i in $(seq 1 "$2"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$pidf"
}

start_stopped_components() {
  # setsid: the restarted component must not belong to (and die with) the caller's process group
  setsid "$BIN/kwokctl" start cluster --name "$CLUSTER_NAME" >&2
}

cmd_restart_kwok() {
  # Restart only kwok-controller: every `kubectl logs -f` stream served by KWOK ends (cleanly,
  # exit 0), which is how a test can exercise log-stream reconnects. The node Leases still name
  # the old process (holder = hostname + a random UUID per process) and a new kwok-controller
  # waits for them to expire (200 s) before it manages any node or pod; deleting them while no
  # kwok-controller runs lets the new one create fresh Leases and take over at once.
  stop_component kwok-controller 100
  kc -n kube-node-lease delete lease --all >&2
  start_stopped_components
  log "kwok-controller restarted (pid $(cat "$(pid_file kwok-controller)"))"
}

cmd_restart_apiserver() {
  # Restart only kube-apiserver (etcd keeps the state): every watch and log stream of every
  # client drops, and the server is away for several seconds. Clients must re-list/re-watch.
  # (The controller-manager and scheduler run with --leader-elect=false: with leader election
  # they exit with "leaderelection lost" when the apiserver is away longer than their 10 s
  # renew deadline, and nothing would restart them.)
  # SIGTERM starts a graceful shutdown that stops accepting connections at once but keeps
  # serving open watches for a long while (>10 s measured): without the SIGKILL after 3 s the
  # old server would keep them alive next to the new one, and no client would notice a restart.
  local i
  stop_component kube-apiserver 30
  start_stopped_components
  for i in $(seq 1 100); do kc get --raw /readyz >/dev/null 2>&1 && break; sleep 0.2; done
  kc get --raw /readyz >/dev/null
  log "kube-apiserver restarted (pid $(cat "$(pid_file kube-apiserver)"))"
}

cmd_env() {
  echo "export KUBECONFIG='$KUBECONFIG_OUT'"
  echo "export PATH='$BIN':\"\$PATH\""
  echo "export JUPYTER_EXT_K8S_BIN='$BIN'"
  echo "export JUPYTER_EXT_K8S_PROC_NODE='$PROC_NODE'"
  if [[ $REAL_NODE_ENABLED == 1 ]]; then
    # `jupyter-ext run --local --backend kubernetes NB.ipynb` with no other configuration:
    # step pods on the real node, in the step image built from kernels/python
    # the step image the node holds (built from the tree as it was at `up`; `up` again rebuilds)
    "$HERE/node.sh" env | sed 'p; s/^export JUPYTER_EXT_STEP_IMAGE=/export JUPYTER_EXT_IMAGE=/; t; d' | sort -u
    echo "export JUPYTER_EXT_NODE_SELECTOR='jupyter-ext.dev/node=real'"
  fi
}

cmd_status() {
  "$BIN/kwokctl" get components --name "$CLUSTER_NAME" 2>/dev/null || true
  kc get nodes -o wide
}

cmd_smoke() {
  ensure_bins
  local ns="smoke-$$" ok=1
  kc create namespace "$ns" >/dev/null
  trap 'kc delete namespace '"$ns"' --wait=false >/dev/null 2>&1 || true' RETURN
  log "1. Job requesting nvidia.com/gpu: 2"
  kc -n "$ns" apply -f - >/dev/null <<'EOF'
apiVersion: batch/v1
kind: Job
metadata: {name: gpu-job}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
        command: ["sh", "-c", "echo hi"]
        resources:
          limits: {nvidia.com/gpu: 2}
EOF
  kc -n "$ns" wait --for=condition=Complete job/gpu-job --timeout=60s >&2 || ok=0
  local node
  node=$(kc -n "$ns" get pods -l job-name=gpu-job -o jsonpath='{.items[0].spec.nodeName}')
  log "   pod scheduled on: $node"
  [[ $node == kwok-gpu-0 ]] || { log "   FAIL: expected kwok-gpu-0"; ok=0; }
  kc -n "$ns" get events --field-selector reason=Scheduled -o custom-columns=BY:.reportingComponent,MSG:.message --no-headers >&2 || true

  log "2. pod requesting nvidia.com/gpu: 8"
  kc -n "$ns" apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Pod
metadata: {name: gpu8}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    resources:
      limits: {nvidia.com/gpu: 8}
EOF
  local i msg=""
  for i in $(seq 1 30); do
    msg=$(kc -n "$ns" get events --field-selector involvedObject.name=gpu8,reason=FailedScheduling \
      -o jsonpath='{.items[*].message}' 2>/dev/null)
    [[ -n $msg ]] && break
    sleep 1
  done
  log "   FailedScheduling: $msg"
  [[ $msg == *"Insufficient nvidia.com/gpu"* ]] || { log "   FAIL: no 'Insufficient nvidia.com/gpu'"; ok=0; }

  log "3. kubectl logs through KWOK's Logs CRD"
  local logf="$STATE/smoke-$$.log"
  printf '%s stdout F hello from the smoke test\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)" >"$logf"
  kc -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: logpod}
spec:
  restartPolicy: Never
  nodeSelector: {jupyter-ext.test/pool: cpu}
  containers:
  - {name: main, image: busybox}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Logs
metadata: {name: logpod}
spec:
  logs:
  - containers: [main]
    logsFile: $logf
EOF
  kc -n "$ns" wait --for=condition=Ready pod/logpod --timeout=60s >/dev/null || ok=0
  local out=""
  for i in $(seq 1 20); do
    out=$(kc -n "$ns" logs logpod -c main 2>&1) && [[ $out == *hello* ]] && break
    sleep 0.5
  done
  log "   kubectl logs: $out"
  [[ $out == "hello from the smoke test" ]] || { log "   FAIL: logs"; ok=0; }

  log "4. kubectl logs -f keeps following after EOF and sees appended lines"
  local fout="$STATE/smoke-$$.follow" fpid
  # run kubectl itself in the background (not the kc function, whose subshell would orphan it)
  "$BIN/kubectl" --kubeconfig "$KUBECONFIG_OUT" -n "$ns" logs -f logpod -c main >"$fout" 2>&1 &
  fpid=$!
  sleep 2
  printf '%s stdout F appended later\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)" >>"$logf"
  for i in $(seq 1 20); do grep -q 'appended later' "$fout" && break; sleep 0.25; done
  if kill -0 "$fpid" 2>/dev/null && grep -q 'appended later' "$fout"; then
    log "   follow: still streaming, appended line arrived"
  else
    log "   FAIL: follow output: $(tr '\n' '|' <"$fout")"; ok=0
  fi
  kill "$fpid" 2>/dev/null || true
  wait "$fpid" 2>/dev/null || true
  rm -f "$fout"

  log "5. pods on $PROC_NODE are left alone by KWOK"
  kc -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: procpod}
spec:
  restartPolicy: Never
  nodeSelector: {jupyter-ext.test/pool: proc}
  tolerations: [{key: jupyter-ext.test/process-kubelet, operator: Exists, effect: NoSchedule}]
  containers:
  - {name: main, image: python, command: [python3, -c, "print(1)"]}
EOF
  for _ in $(seq 1 20); do
    [[ -n $(kc -n "$ns" get pod procpod -o jsonpath='{.spec.nodeName}') ]] && break; sleep 0.5
  done
  sleep 2
  local st
  st=$(kc -n "$ns" get pod procpod -o jsonpath='{.spec.nodeName} {.status.phase} ip={.status.podIP} cs={.status.containerStatuses}')
  log "   after 2s: $st"
  [[ $st == "$PROC_NODE Pending ip= cs=" ]] || { log "   FAIL: KWOK touched the pod"; ok=0; }
  local now
  now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  kc -n "$ns" patch pod procpod --subresource=status --type=merge -p "{\"status\":{\"phase\":\"Running\",\"startTime\":\"$now\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}],\"containerStatuses\":[{\"name\":\"main\",\"image\":\"python\",\"imageID\":\"\",\"ready\":true,\"restartCount\":0,\"started\":true,\"state\":{\"running\":{\"startedAt\":\"$now\"}}}]}}" >/dev/null
  kc -n "$ns" delete pod procpod --wait=false >/dev/null
  sleep 2
  st=$(kc -n "$ns" get pod procpod -o jsonpath='{.status.phase} deleting={.metadata.deletionTimestamp}' 2>&1)
  log "   after status patch + delete: $st"
  [[ $st == "Running deleting=2"* ]] || { log "   FAIL: expected Running and still terminating"; ok=0; }
  kc -n "$ns" delete pod procpod --grace-period=0 --force >/dev/null 2>&1 || true

  log "6. restart-kwok ends a kubectl logs -f stream (exit 0) and KWOK takes the nodes back"
  printf '%s stdout F x\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)" >"$logf"
  ( "$BIN/kubectl" --kubeconfig "$KUBECONFIG_OUT" -n "$ns" logs -f logpod -c main >/dev/null 2>&1
    echo "rc=$?" >"$fout" ) &
  fpid=$!
  sleep 1
  cmd_restart_kwok 2>/dev/null
  for _ in $(seq 1 20); do [[ -s "$fout" ]] && break; sleep 0.25; done
  log "   follow after restart: $(cat "$fout" 2>/dev/null || echo 'still running')"
  [[ "$(cat "$fout" 2>/dev/null)" == "rc=0" ]] || { log "   FAIL: stream did not end with rc=0"; ok=0; }
  wait "$fpid" 2>/dev/null || true
  kc -n "$ns" apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Pod
metadata: {name: after-restart}
spec:
  nodeSelector: {jupyter-ext.test/pool: cpu}
  containers: [{name: main, image: busybox}]
EOF
  if kc -n "$ns" wait --for=condition=Ready pod/after-restart --timeout=20s >/dev/null; then
    log "   a new pod is Ready again"
  else
    log "   FAIL: KWOK does not manage pods after the restart"; ok=0
  fi
  rm -f "$logf" "$fout"

  if [[ $ok == 1 ]]; then log "smoke: all checks passed"; else log "smoke: FAILED"; return 1; fi
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  env) cmd_env ;;
  status) cmd_status ;;
  smoke) cmd_smoke ;;
  restart-kwok) cmd_restart_kwok ;;
  restart-apiserver) cmd_restart_apiserver ;;
  *) echo "usage: $0 up|down|env|status|smoke|restart-kwok|restart-apiserver" >&2; exit 2 ;;
esac
