#!/usr/bin/env python3
"""A Kubernetes version upgrade on the HA cluster, measured (issue 13, item 7).

    KUBECONFIG=/var/lib/kubeplane-cluster/admin.conf \\
      e2e/measure-upgrade.py --to v1.36.2 --image-repository 10.88.0.1:5000 \\
        [--config kubernetes] [--cluster-dir /var/lib/kubeplane-cluster] [--kubectl kubectl] \\
        [--label with-pre-pull] [--json out.json]

Runs against `e2e/cluster/cluster.sh up 3` with kubeplane installed and a ControlPlaneConfig
managing every node (e2e/README.md, "Kubernetes upgrade"). It
1. starts one prober per node inside the node's network namespace (`nsenter --net`): every
   200 ms `GET https://127.0.0.1:6443/readyz`, `:10257/healthz` (kube-controller-manager),
   `:10259/healthz` (kube-scheduler), each at most 1 s; a component is unavailable while its
   answer is not 200;
2. samples the mirror pods' images every second (through the VIP) and checks the
   version-skew policy at every sample: no kube-controller-manager or kube-scheduler newer
   than any kube-apiserver (kubernetes.io/releases/version-skew-policy);
3. records, from the files on the host, when each manifest changed (its image), so the order
   of restarts — the waves — is the order of those writes;
4. patches `spec.kubernetesVersion` (and `spec.imageRepository`) and waits until the config
   is `Ready` at the new generation, no upgrade in progress, every node `Healthy`.
It prints the per-component unavailable seconds per node, the restart order, the skew
verdict and the total, and exits 1 if the skew policy was broken or the upgrade did not end.
The spec is NOT put back (a minor downgrade needs spec.upgrade.allowMinorDowngrade).
"""

import argparse
import json
import os
import re
import ssl
import subprocess
import sys
import threading
import time
import urllib.request

COMPONENTS = ["kube-apiserver", "kube-controller-manager", "kube-scheduler"]
PROBES = {
    "kube-apiserver": "https://127.0.0.1:6443/readyz",
    "kube-controller-manager": "https://127.0.0.1:10257/healthz",
    "kube-scheduler": "https://127.0.0.1:10259/healthz",
}


def probe_node(out_path, period=0.2):
    """Inside a node's network namespace: one JSON line per change of a component's health."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    state = {}
    with open(out_path, "a", buffering=1) as out:
        while True:
            t = time.time()
            for c, url in PROBES.items():
                try:
                    with urllib.request.urlopen(url, timeout=1, context=ctx) as r:
                        ok = r.status == 200
                except Exception:
                    ok = False
                if state.get(c) != ok:
                    state[c] = ok
                    out.write(json.dumps({"t": time.time(), "c": c, "ok": ok}) + "\n")
            time.sleep(max(0.0, period - (time.time() - t)))


def kubectl(args, kc):
    return subprocess.run([kc, *args], check=True, capture_output=True, text=True).stdout


def get(args, kc, tries=240):
    for attempt in range(tries):
        try:
            return json.loads(kubectl(["get", *args, "-o", "json"], kc))
        except subprocess.CalledProcessError:
            if attempt == tries - 1:
                raise
            time.sleep(0.5)


def done(name, generation, kc):
    c = get(["controlplaneconfig", name], kc)
    st = c.get("status", {})
    if st.get("observedGeneration") != generation or st.get("upgrade"):
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


def minor_patch(image):
    m = re.search(r":v?(\d+)\.(\d+)\.(\d+)", image or "")
    return tuple(int(x) for x in m.groups()) if m else None


def image_sampler(kc, stop, samples):
    while not stop.is_set():
        t = time.time()
        try:
            pods = json.loads(kubectl(["get", "-n", "kube-system", "pods", "-o", "json", "--request-timeout=3s"], kc))
            seen = {}
            for p in pods["items"]:
                comp = p["metadata"].get("labels", {}).get("component")
                if comp in COMPONENTS:
                    seen[(comp, p["spec"].get("nodeName"))] = p["spec"]["containers"][0]["image"]
            samples.append((t, seen))
        except Exception:
            pass
        stop.wait(max(0.0, 1.0 - (time.time() - t)))


def manifest_watcher(cluster_dir, nodes, stop, writes):
    last = {}
    while not stop.is_set():
        for n in nodes:
            for c in COMPONENTS:
                path = os.path.join(cluster_dir, "nodes", n, "etc/kubernetes/manifests", f"{c}.yaml")
                try:
                    text = open(path).read()
                except OSError:
                    continue
                m = re.search(r"image:\s*(\S+)", text)
                image = m.group(1) if m else "?"
                if last.get((n, c)) not in (None, image):
                    writes.append((os.stat(path).st_mtime, n, c, image))
                last[(n, c)] = image
        stop.wait(0.1)


def unavailable(path, t0, t1):
    """Seconds each component was not answering 200 within [t0, t1], and its outages."""
    events = [json.loads(line) for line in open(path) if line.strip()]
    out = {}
    for c in COMPONENTS:
        ev = [e for e in events if e["c"] == c]
        down_since, total, spans = None, 0.0, []
        state = True
        for e in ev:
            if e["t"] <= t0:
                state = e["ok"]
                continue
            if e["t"] > t1:
                break
            if not e["ok"] and state:
                down_since = e["t"]
            elif e["ok"] and not state and down_since is not None:
                total += e["t"] - down_since
                spans.append((down_since - t0, e["t"] - down_since))
                down_since = None
            state = e["ok"]
        if not state:
            start = down_since if down_since is not None else t0
            total += t1 - start
            spans.append((start - t0, t1 - start))
        out[c] = (total, spans)
    return out


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--probe-node":
        probe_node(sys.argv[2])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--to", required=True, help="the new spec.kubernetesVersion")
    ap.add_argument("--image-repository", help="the new spec.imageRepository (e.g. the launcher's registry)")
    ap.add_argument("--config", default="kubernetes")
    ap.add_argument("--cluster-dir", default=os.environ.get("KUBEPLANE_HA_CLUSTER_DIR", "/var/lib/kubeplane-cluster"))
    ap.add_argument("--kubectl", default=os.environ.get("KUBEPLANE_E2E_KUBECTL", "kubectl"))
    ap.add_argument("--label", default="upgrade")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--timeout", type=int, default=2400)
    a = ap.parse_args()
    kc, name = a.kubectl, a.config
    if not os.environ.get("KUBECONFIG"):
        sys.exit("KUBECONFIG is not set (the cluster of e2e/cluster/cluster.sh up 3)")
    nodes = open(os.path.join(a.cluster_dir, "nodes.list")).read().split()
    cpc = get(["controlplaneconfig", name], kc)
    if not done(name, cpc["metadata"]["generation"], kc):
        sys.exit(f"{name} is not rolled out (Ready, every node Healthy) before the upgrade")
    before = cpc["spec"]["kubernetesVersion"]

    work = f"/tmp/measure-upgrade-{os.getpid()}"
    os.makedirs(work)
    probers = []
    for n in nodes:
        path = os.path.join(work, f"{n}.jsonl")
        probers.append((n, path, subprocess.Popen(
            ["nsenter", f"--net=/run/netns/kp-{n}", sys.executable, os.path.abspath(__file__), "--probe-node", path])))
    stop = threading.Event()
    samples, writes = [], []
    threads = [threading.Thread(target=image_sampler, args=(kc, stop, samples), daemon=True),
               threading.Thread(target=manifest_watcher, args=(a.cluster_dir, nodes, stop, writes), daemon=True)]
    for t in threads:
        t.start()
    time.sleep(3)
    spec = json.loads(json.dumps(cpc["spec"]))
    spec["kubernetesVersion"] = a.to
    if a.image_repository:
        spec["imageRepository"] = a.image_repository
    patch = json.dumps([{"op": "replace", "path": "/spec", "value": spec}])
    t0 = time.time()
    g = json.loads(kubectl(["patch", "controlplaneconfig", name, "--type=json", "-p", patch, "-o", "json"], kc))["metadata"]["generation"]
    print(f"[{a.label}] {before} -> {a.to}: generation {g} applied", flush=True)
    waves = set()
    rev = None
    while time.time() - t0 < a.timeout:
        st = get(["controlplaneconfig", name], kc).get("status", {})
        if st.get("upgrade"):
            waves.add(st["upgrade"].get("wave"))
        rev = done(name, g, kc)
        if rev:
            break
        time.sleep(1)
    t1 = time.time()
    time.sleep(3)
    stop.set()
    for t in threads:
        t.join()
    for _, _, p in probers:
        p.terminate()
    if not rev:
        sys.exit(f"[{a.label}] not rolled out after {a.timeout} s")

    print(f"[{a.label}] rolled out in {t1 - t0:.1f} s (revision {rev}); waves seen in status: {sorted(waves)}")
    figures = {"label": a.label, "from": before, "to": a.to, "seconds": round(t1 - t0, 1), "nodes": {}}
    for n, path, _ in probers:
        u = unavailable(path, t0, t1)
        figures["nodes"][n] = {c: round(u[c][0], 1) for c in COMPONENTS}
        print(f"  {n}: " + ", ".join(f"{c} unavailable {u[c][0]:.1f} s {[(round(s, 1), round(d, 1)) for s, d in u[c][1]]}" for c in COMPONENTS))
    order = sorted(writes)
    print("  restarts in order (manifest written, +s):")
    for t, n, c, image in order:
        print(f"    +{t - t0:7.1f} s  {n:4} {c:24} {image}")
    figures["order"] = [(round(t - t0, 1), n, c) for t, n, c, _ in order]
    # Waves: every kube-apiserver written before any other component.
    api_last = max((t for t, _, c, _ in order if c == "kube-apiserver"), default=0)
    others_first = min((t for t, _, c, _ in order if c != "kube-apiserver"), default=float("inf"))
    in_waves = api_last < others_first
    print(f"  waves: every kube-apiserver written before any other component: {in_waves}")
    # Skew at every sample.
    broken = []
    for t, seen in samples:
        api = [minor_patch(i) for (c, _), i in seen.items() if c == "kube-apiserver"]
        rest = [(c, n, minor_patch(i)) for (c, n), i in seen.items() if c != "kube-apiserver"]
        if not api or None in api:
            continue
        low = min(v[:2] for v in api)
        for c, n, v in rest:
            if v and v[:2] > low:
                broken.append((round(t - t0, 1), c, n, v))
    print(f"  version skew: {len(samples)} samples of the mirror pods' images; "
          f"{'held at every sample' if not broken else 'BROKEN: ' + str(broken[:5])}")
    figures.update({"waves": in_waves, "skew_samples": len(samples), "skew_broken": len(broken)})
    totals = {c: round(sum(figures["nodes"][n][c] for n in nodes), 1) for c in COMPONENTS}
    figures["unavailable_total"] = totals
    print(f"FIGURES {a.label}: {before} -> {a.to} in {t1 - t0:.1f} s; unavailable seconds summed over nodes: {totals}; "
          f"waves {in_waves}; skew held {not broken} ({len(samples)} samples)")
    if a.json:
        json.dump(figures, open(a.json, "w"), indent=1)
    sys.exit(0 if in_waves and not broken else 1)


if __name__ == "__main__":
    main()
