#!/usr/bin/env bash
# Regenerates src/flags/data/help/<minor>/ from the three binaries of one release:
#   src/flags/data/help/capture.sh DIR-WITH-BINARIES "where they came from"
# then `cargo test --test flag_help` compares them with the flag table.
set -euo pipefail
bin=$1
origin=$2
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../../.." && pwd)
version=$("$bin/kube-apiserver" --version | awk '{print $2}')
minor=$(echo "$version" | sed -E 's/^v([0-9]+)\.([0-9]+)\..*/\1.\2/')
mkdir -p "$here/$minor"
# Flags an OpenShift build has that upstream Kubernetes does not (its carry patches).
openshift_only=()
if [[ $origin == *OpenShift* ]]; then
  openshift_only=(
    "send-retry-after-while-not-ready-once=OpenShift carry patch in k8s.io/apiserver pkg/server/options/server_run_options.go (for MicroShift); not in upstream kube-apiserver"
    "unsupported-kube-api-over-localhost=OpenShift carry patch (OpenShiftContext in cmd/kube-controller-manager and cmd/kube-scheduler app/options/options.go); not in upstream"
  )
fi
for c in kube-apiserver kube-controller-manager kube-scheduler; do
  v=$("$bin/$c" --version | awk '{print $2}')
  [[ $v == "$version" ]] || { echo "$c is $v, kube-apiserver $version: one release at a time" >&2; exit 1; }
  help=$("$bin/$c" --help 2>&1 || true)
  extra=()
  for o in "${openshift_only[@]}"; do
    grep -q -- "--${o%%=*} " <<<"$help" && extra+=(--not-upstream "$o")
  done
  python3 "$root/scripts/flags-from-help.py" --component "$c" --version "$version" \
    --binary "$origin $version" "${extra[@]}" <<<"$help" >"$here/$minor/$c.yaml"
  echo "$here/$minor/$c.yaml: $(grep -c '^  ' "$here/$minor/$c.yaml") lines"
done
