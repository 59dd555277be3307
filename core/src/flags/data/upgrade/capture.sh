#!/usr/bin/env bash
# Captures what one release's binaries say about feature gates and admission plugins into
# src/flags/data/upgrade/<minor>/binary.yaml:
#   src/flags/data/upgrade/capture.sh DIR-WITH-BINARIES "where they came from"
# It probes every gate feature-gates.yaml names (plus every gate --help lists), at every
# version kube-apiserver can emulate; then `cargo test --test upgrade_data` compares the data
# with the capture. Runs the binaries only with flags that make them exit before any network
# or disk use.
set -euo pipefail
bin=$1
origin=$2
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../../../.." && pwd)
version=$("$bin/kube-apiserver" --version | awk '{print $2}')
minor=$(echo "$version" | sed -E 's/^v([0-9]+)\.([0-9]+)\..*/\1.\2/')
for c in kube-controller-manager kube-scheduler; do
  v=$("$bin/$c" --version | awk '{print $2}')
  [[ $v == "$version" ]] || { echo "$c is $v, kube-apiserver $version: one release at a time" >&2; exit 1; }
done
names=$(mktemp)
trap 'rm -f "$names"' EXIT
grep -oE '\{name: [A-Za-z0-9]+' "$here/feature-gates.yaml" | awk '{print $2}' >"$names"
mkdir -p "$here/$minor"
python3 "$root/scripts/gates-from-binary.py" --bin "$bin" --origin "$origin" --names "$names" >"$here/$minor/binary.yaml.tmp"
mv "$here/$minor/binary.yaml.tmp" "$here/$minor/binary.yaml"
echo "$here/$minor/binary.yaml: $(grep -c . "$here/$minor/binary.yaml") lines"
