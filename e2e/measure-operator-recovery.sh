#!/usr/bin/env bash
# Issue 16, item 10: how fast a config change reaches a node right after kube-apiserver restarts.
# With `kubeplane operator` running against the cluster in KUBECONFIG (a local process is
# enough), on a host where kube-apiserver runs as a process `pkill` can reach (for example
# `e2e/cluster/cluster.sh up 1`): SIGKILL kube-apiserver (kubelet restarts its container),
# `kubectl apply` a new ControlPlaneConfig the moment /readyz answers again, and time until the
# operator has written the node's ControlPlaneNode for it. Prints one line per run.
#
# usage: e2e/measure-operator-recovery.sh NODE RUNS   (KUBECTL=… to pick the kubectl)
set -euo pipefail
node=${1:?usage: $0 NODE RUNS}
runs=${2:-3}
k=${KUBECTL:-kubectl}
[ -n "${KUBECONFIG:-}" ] || { echo "set KUBECONFIG" >&2; exit 2; }
now() { date +%s.%N; }
for i in $(seq 1 "$runs"); do
  name=kubeplane-measure-$i
  cfg=$(mktemp)
  cat >"$cfg" <<Y
apiVersion: kubeplane.io/v1alpha1
kind: ControlPlaneConfig
metadata: {name: $name}
spec:
  kubernetesVersion: v1.36.2
  nodeSelector: {kubernetes.io/hostname: $node}
  apiServer: {managed: false}
  controllerManager: {managed: false}
  scheduler: {managed: true}
Y
  pkill -9 -f "^kube-apiserver " || true
  while "$k" get --raw /readyz >/dev/null 2>&1; do sleep 0.1; done
  t_down=$(now)
  until "$k" get --raw /readyz >/dev/null 2>&1; do sleep 0.1; done
  t_back=$(now)
  "$k" apply -f "$cfg" >/dev/null
  t_apply=$(now)
  until [ "$("$k" get cpn "$node" -o jsonpath='{.metadata.labels.kubeplane\.io/config}' 2>/dev/null)" = "$name" ]; do
    sleep 0.05
  done
  t_cpn=$(now)
  echo "run $i: API down $(echo "$t_back - $t_down" | bc) s; kubectl apply -> ControlPlaneNode written $(echo "$t_cpn - $t_apply" | bc) s"
  "$k" delete cpc "$name" --wait=true >/dev/null 2>&1 || true
  "$k" delete cpn "$node" --ignore-not-found >/dev/null 2>&1 || true
  rm -f "$cfg"
  sleep 5
done
