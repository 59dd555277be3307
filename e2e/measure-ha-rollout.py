#!/usr/bin/env python3
"""Three-node rollout time of one kube-apiserver flag, per start-up probe profile, against
the per-component floor (issue 11, item 4).

    KUBECONFIG=/var/lib/kubeplane-cluster/admin.conf \\
      e2e/measure-ha-rollout.py [--config kubernetes] [--cluster-dir /var/lib/kubeplane-cluster]
                                [--profiles kubeadm,fast] [--kubectl kubectl]

(`--profiles unset` measures the config's probes without setting the field, for a kubeplane
that predates spec.rollout.probeProfile.)

Runs against the cluster of `e2e/cluster/cluster.sh up 3` with kubeplane installed and a
ControlPlaneConfig managing every node (e2e/README.md, "HA scenarios"). For each profile:
1. sets `spec.rollout.probeProfile` (its own rollout, not measured) and waits until it is
   rolled out;
2. changes one kube-apiserver flag (`--v`, 2 <-> 3) and measures `kubectl patch` -> the config
   `Ready` at the new generation with every node `Healthy` (polled every 0.5 s);
3. per node, from the files and the mirror pods: the manifest's write (its mtime, read on the
   host) -> the new kube-apiserver container started (`state.running.startedAt`): kubelet's own
   restart time, the floor no manager can go below; and write -> the mirror pod Ready.
Prints each, the sum of the floors, the ratios rollout / sum of floors and kubeadm / fast.
The config's spec is put back at the end (one more rollout).
"""

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time


def kubectl(args, kc):
    return subprocess.run([kc, *args], check=True, capture_output=True, text=True).stdout


def get(args, kc):
    for attempt in range(120):
        try:
            return json.loads(kubectl(["get", *args, "-o", "json"], kc))
        except subprocess.CalledProcessError:
            if attempt == 119:
                raise
            time.sleep(0.5)


def set_spec(name, spec, kc):
    patch = json.dumps([{"op": "replace", "path": "/spec", "value": spec}])
    for attempt in range(120):
        try:
            out = kubectl(["patch", "controlplaneconfig", name, "--type=json", "-p", patch, "-o", "json"], kc)
            return json.loads(out)["metadata"]["generation"]
        except subprocess.CalledProcessError as e:
            if "unknown field" in e.stderr or "Invalid" in e.stderr or attempt == 119:
                sys.exit(f"kubectl patch: {e.stderr.strip()}")
            time.sleep(0.5)


def rolled_out(name, generation, kc):
    c = get(["controlplaneconfig", name], kc)
    st = c.get("status", {})
    if st.get("observedGeneration") != generation:
        return None
    ready = next((x for x in st.get("conditions", []) if x["type"] == "Ready"), {})
    if ready.get("status") != "True" or ready.get("observedGeneration") != generation:
        return None
    rev = st.get("revision")
    for n in get(["controlplanenodes"], kc)["items"]:
        s = n.get("status", {})
        if n["spec"].get("revision") != rev or s.get("phase") != "Healthy" or s.get("appliedRevision") != rev:
            return None
    return rev


def wait_rolled_out(name, generation, kc, timeout=1200):
    end = time.time() + timeout
    while time.time() < end:
        rev = rolled_out(name, generation, kc)
        if rev:
            return rev
        time.sleep(0.5)
    sys.exit(f"generation {generation} of {name} not rolled out after {timeout} s")


def ts(s):
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def set_flag(spec, section, name, value):
    spec = json.loads(json.dumps(spec))
    args = spec.setdefault(section, {}).setdefault("extraArgs", [])
    args[:] = [a for a in args if a["name"] != name] + [{"name": name, "value": value}]
    return spec


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="kubernetes")
    ap.add_argument("--cluster-dir", default=os.environ.get("KUBEPLANE_HA_CLUSTER_DIR", "/var/lib/kubeplane-cluster"))
    ap.add_argument("--profiles", default="kubeadm,fast")
    ap.add_argument("--kubectl", default=os.environ.get("KUBEPLANE_E2E_KUBECTL", "kubectl"))
    a = ap.parse_args()
    kc, name = a.kubectl, a.config
    if not os.environ.get("KUBECONFIG"):
        sys.exit("KUBECONFIG is not set (the cluster of e2e/cluster/cluster.sh up 3)")
    nodes = open(os.path.join(a.cluster_dir, "nodes.list")).read().split()
    original = get(["controlplaneconfig", name], kc)
    wait_rolled_out(name, original["metadata"]["generation"], kc)
    base = original["spec"]
    results = {}
    value = "3"
    for profile in a.profiles.split(","):
        spec = json.loads(json.dumps(base))
        if profile != "unset":  # "unset": the config's probes as they are (no probeProfile field)
            spec.setdefault("rollout", {})["probeProfile"] = profile
        spec = set_flag(spec, "apiServer", "v", value)
        g = set_spec(name, spec, kc)
        print(f"[{profile}] probeProfile set (and --v={value}); waiting for that rollout (not measured)", flush=True)
        wait_rolled_out(name, g, kc)
        value = "2" if value == "3" else "3"
        spec = set_flag(spec, "apiServer", "v", value)
        t0 = time.time()
        g = set_spec(name, spec, kc)
        rev = wait_rolled_out(name, g, kc)
        total = time.time() - t0
        per_node = []
        for n in nodes:
            path = os.path.join(a.cluster_dir, "nodes", n, "etc/kubernetes/manifests/kube-apiserver.yaml")
            written = os.stat(path).st_mtime
            pod = get(["-n", "kube-system", "pod", f"kube-apiserver-{n}"], kc)
            started = ts(pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"])
            ready = ts(next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")["lastTransitionTime"])
            per_node.append((n, written - t0, started - written, ready - written))
        floors = sum(x[2] for x in per_node)
        results[profile] = (total, floors)
        print(f"[{profile}] --v={value}: revision {rev} rolled out on {len(nodes)} nodes in {total:.1f} s")
        for n, w, f, r in sorted(per_node, key=lambda x: x[1]):
            print(f"  {n}: written at +{w:.1f} s; write -> container started {f:.1f} s (floor); write -> mirror pod Ready {r:.1f} s")
        print(f"  sum of floors {floors:.1f} s; rollout / floors = {total / floors:.2f}", flush=True)
    print("restoring the config's spec", flush=True)
    g = set_spec(name, base, kc)
    wait_rolled_out(name, g, kc)
    print()
    for p, (total, floors) in results.items():
        print(f"FIGURES {p}: three-node rollout {total:.1f} s, sum of floors {floors:.1f} s, ratio {total / floors:.2f}")
    if "kubeadm" in results and "fast" in results:
        print(f"FIGURES kubeadm / fast: {results['kubeadm'][0] / results['fast'][0]:.2f}")


if __name__ == "__main__":
    main()
