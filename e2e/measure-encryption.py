#!/usr/bin/env python3
"""Managed encryption at rest on a real cluster, with etcd's own evidence (issue 14, item 6).

    KUBECONFIG=/var/lib/kubeplane-cluster/admin.conf \\
      e2e/measure-encryption.py [--config kubernetes] [--secrets 200] [--kubectl kubectl]
          [--etcdctl etcdctl] [--etcd https://10.88.0.1:2379] [--etcd-ca FILE]
          [--etcd-cert FILE] [--etcd-key FILE] [--vip https://10.88.0.1:6443]
          [--cluster-dir /var/lib/kubeplane-cluster] [--state-dir /etc/kubernetes/kubeplane]

Runs against the cluster of `e2e/cluster/cluster.sh up 3` with kubeplane installed with
`rbac.managedEncryption.enabled=true` and a ControlPlaneConfig managing every node
(e2e/README.md, "HA scenarios"), encryption not yet on. Steps:
1. creates N Secrets in namespace `kubeplane-encryption-proof` and records each one's data;
2. reads their raw values from etcd with `etcdctl` (plain text expected);
3. creates the etcd verification Secret and turns managed encryption on (secretbox),
   waits for `status.encryption` to rest at `OldKeyRetired` with a key, reads etcd again;
4. bumps `rotation.generation`, waits for rest at a new key, reads etcd again: every value
   must carry `k8s:enc:secretbox:v1:<new key>:`, none the old key;
5. reads all N back through the API (byte-identical data), and each node's encryption file
   (the old key's name must be gone from every one);
all the while a prober GETs one Secret through the VIP every 100 ms: failed requests and the
longest run of failures are printed. Exit 1 when any check fails.
"""

import argparse
import base64
import json
import os
import secrets as rnd
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import ssl

NS = "kubeplane-encryption-proof"


def run(args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw).stdout


class Cluster:
    def __init__(self, a):
        self.a = a

    def kubectl(self, *args, stdin=None):
        for attempt in range(60):
            try:
                return subprocess.run([self.a.kubectl, *args], check=True, capture_output=True,
                                      text=True, input=stdin).stdout
            except subprocess.CalledProcessError as e:
                if attempt == 59 or "NotFound" in e.stderr or "Invalid" in e.stderr:
                    raise
                time.sleep(1)

    def get(self, *args):
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def etcd_prefixes(self, names):
        """Prefix of each Secret's raw value in etcd: 'plain' or 'k8s:enc:<provider>:v1:<key>'."""
        out = run([self.a.etcdctl, f"--endpoints={self.a.etcd}", f"--cacert={self.a.etcd_ca}",
                   f"--cert={self.a.etcd_cert}", f"--key={self.a.etcd_key}", "get", "--prefix",
                   f"/registry/secrets/{NS}/", "-w", "json"], env={**os.environ, "ETCDCTL_API": "3"})
        kvs = json.loads(out).get("kvs", [])
        found = {}
        for kv in kvs:
            key = base64.b64decode(kv["key"]).decode()
            value = base64.b64decode(kv.get("value", ""))
            name = key.rsplit("/", 1)[1]
            if value.startswith(b"k8s:enc:"):
                found[name] = b":".join(value.split(b":")[:5]).decode(errors="replace")
            else:
                found[name] = "plain"
        return {n: found.get(n, "missing") for n in names}


class Prober(threading.Thread):
    """GET one Secret through the VIP every 100 ms with the admin credentials."""

    def __init__(self, a, kubeconfig):
        super().__init__(daemon=True)
        cfg = json.loads(run([a.kubectl, "config", "view", "--raw", "-o", "json", "--kubeconfig", kubeconfig]))
        user = cfg["users"][0]["user"]
        cluster = cfg["clusters"][0]["cluster"]
        self.tmp = tempfile.mkdtemp()
        paths = {}
        for k, field in (("ca", cluster.get("certificate-authority-data")),
                         ("crt", user.get("client-certificate-data")), ("key", user.get("client-key-data"))):
            p = os.path.join(self.tmp, k)
            with open(p, "wb") as f:
                f.write(base64.b64decode(field))
            paths[k] = p
        self.ctx = ssl.create_default_context(cafile=paths["ca"])
        self.ctx.load_cert_chain(paths["crt"], paths["key"])
        self.url = f"{a.vip}/api/v1/namespaces/{NS}/secrets/s-0"
        self.stop = threading.Event()
        self.total = self.failed = 0
        self.run_len = self.longest = 0
        self.first_fail = None
        self.longest_s = 0.0

    def run(self):
        while not self.stop.is_set():
            t = time.time()
            ok = False
            try:
                with urllib.request.urlopen(self.url, context=self.ctx, timeout=2) as r:
                    ok = r.status == 200
            except Exception:
                ok = False
            self.total += 1
            if ok:
                if self.first_fail is not None:
                    self.longest_s = max(self.longest_s, time.time() - self.first_fail)
                self.first_fail = None
                self.run_len = 0
            else:
                self.failed += 1
                self.run_len += 1
                self.longest = max(self.longest, self.run_len)
                if self.first_fail is None:
                    self.first_fail = t
            time.sleep(max(0.0, 0.1 - (time.time() - t)))


def wait_rest(c, config, previous_key, timeout):
    """Waits for status.encryption at OldKeyRetired/Stable with an active key other than
    `previous_key`; returns (seconds, status.encryption), printing each new step."""
    start = time.time()
    seen = None
    while time.time() - start < timeout:
        enc = c.get("controlplaneconfig", config).get("status", {}).get("encryption", {})
        step = (enc.get("step"), enc.get("health"), enc.get("activeKey"))
        if step != seen:
            print(f"  {time.time() - start:7.1f} s  step={step[0]} health={step[1]} key={step[2]}  {enc.get('message', '')[:160]}")
            seen = step
        if enc.get("health") == "Degraded":
            print(f"  halted: {enc.get('message')}")
        if (enc.get("step") == "OldKeyRetired" and enc.get("health") == "Stable"
                and enc.get("activeKey") not in (None, "identity", previous_key)):
            return time.time() - start, enc
        time.sleep(1)
    sys.exit(f"timed out after {timeout} s: {seen}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="kubernetes")
    p.add_argument("--secrets", type=int, default=200)
    p.add_argument("--kubectl", default="kubectl")
    p.add_argument("--etcdctl", default="etcdctl")
    p.add_argument("--etcd", default="https://10.88.0.1:2379")
    p.add_argument("--cluster-dir", default="/var/lib/kubeplane-cluster")
    p.add_argument("--etcd-ca")
    p.add_argument("--etcd-cert")
    p.add_argument("--etcd-key")
    p.add_argument("--vip", default="https://10.88.0.1:6443")
    p.add_argument("--state-dir", default="/etc/kubernetes/kubeplane")
    p.add_argument("--timeout", type=int, default=1800)
    p.add_argument("--logs-only", action="store_true",
                   help="only search the logs, Events and objects for key material")
    a = p.parse_args()
    node1 = f"{a.cluster_dir}/nodes/cp1/etc/kubernetes/pki"
    a.etcd_ca = a.etcd_ca or f"{a.cluster_dir}/pki/etcd/ca.crt"
    a.etcd_cert = a.etcd_cert or f"{node1}/apiserver-etcd-client.crt"
    a.etcd_key = a.etcd_key or f"{node1}/apiserver-etcd-client.key"
    c = Cluster(a)
    failures = []
    if a.logs_only:
        sys.exit(1 if check_logs(c) else 0)

    # 1. N Secrets with random data.
    names = [f"s-{i}" for i in range(a.secrets)]
    c.kubectl("create", "namespace", NS) if not subprocess.run(
        [a.kubectl, "get", "namespace", NS], capture_output=True).returncode == 0 else None
    items = [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": n, "namespace": NS},
              "data": {"value": base64.b64encode(rnd.token_bytes(48)).decode()}} for n in names]
    c.kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    before = {s["metadata"]["name"]: s.get("data") for s in c.get("secrets", "-n", NS)["items"]}
    print(f"{len(before)} Secrets in {NS}")
    plain = c.etcd_prefixes(names)
    print(f"etcd before: {summary(plain)}")

    prober = Prober(a, os.environ.get("KUBECONFIG", os.path.expanduser("~/.kube/config")))
    prober.start()

    # 2. The verification Secret and managed encryption on.
    def b64file(path):
        with open(path, "rb") as f:
            return base64.b64encode(f.read()).decode()
    c.kubectl("apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "kubeplane-etcd-verify", "namespace": "kube-system"},
        "data": {"ca.crt": b64file(a.etcd_ca), "tls.crt": b64file(a.etcd_cert), "tls.key": b64file(a.etcd_key)}}))
    managed = {"provider": "secretbox", "rotation": {"generation": 0},
               "verification": {"etcd": {"secretName": "kubeplane-etcd-verify", "endpoints": [a.etcd]}}}

    def step(what, previous_key):
        """Applies `managed`, waits for rest at a new key, checks every value in etcd."""
        patch = {"spec": {"apiServer": {"encryption": {"managed": managed}}}}
        c.kubectl("patch", "controlplaneconfig", a.config, "--type=merge", "-p", json.dumps(patch))
        print(f"{what}:")
        seconds, enc = wait_rest(c, a.config, previous_key, a.timeout)
        key = enc["activeKey"]
        found = c.etcd_prefixes(names)
        print(f"{what}: {seconds:.1f} s, key {key}; etcd: {summary(found)}; verification {enc.get('verification')}")
        want = f"k8s:enc:secretbox:v1:{key}"
        if any(v != want for v in found.values()):
            failures.append(f"{what}: not every value carries {want}: {summary(found)}")
        return key, found

    # 2b. On.
    first, _ = step("turning encryption on", None)
    # 3. One rotation.
    managed["rotation"]["generation"] = 1
    second, after_rot = step("rotating", first)
    if any(first in v for v in after_rot.values()):
        failures.append(f"values still carry the old key {first}")

    prober.stop.set()
    prober.join()

    # 4. Read back through the API; the old key gone from every node's file.
    after = {s["metadata"]["name"]: s.get("data") for s in c.get("secrets", "-n", NS)["items"]}
    same = sum(1 for n in names if after.get(n) == before.get(n))
    print(f"read back through the API: {same}/{len(names)} identical")
    if same != len(names):
        failures.append(f"only {same}/{len(names)} Secrets read back identical")
    nodes = [n["metadata"]["name"] for n in c.get("controlplanenodes")["items"]]
    for n in nodes:
        path = f"{a.cluster_dir}/nodes/{n}{a.state_dir}/files/kube-apiserver/encryption-config.yaml"
        try:
            text = open(path).read()
        except OSError as e:
            failures.append(f"{n}: cannot read {path}: {e}")
            continue
        has_old, has_new = first in text, second in text
        print(f"{n}: {path}: old key {first} {'PRESENT' if has_old else 'absent'}, new key {second} {'present' if has_new else 'ABSENT'}")
        if has_old or not has_new:
            failures.append(f"{n}: encryption file has old key: {has_old}, new key: {has_new}")
    backup = c.get("secret", "-n", "kube-system", "kubeplane-encryption-retired")
    retired = json.loads(base64.b64decode(backup["data"]["retired.json"]))
    print(f"backup Secret kube-system/kubeplane-encryption-retired holds: {[k['name'] for k in retired]}")
    if first not in [k["name"] for k in retired]:
        failures.append(f"old key {first} not in the backup Secret")

    failures += check_logs(c)
    print(f"VIP prober: {prober.failed} of {prober.total} GETs failed; longest run of failures "
          f"{prober.longest} requests ({prober.longest_s:.1f} s)")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("OK")


def check_logs(c):
    """Every key kubeplane generated (the keys Secret and its backup) searched for, as base64
    and as the raw bytes' hex, in every kubeplane pod's log, the Events and the
    ControlPlaneConfig/ControlPlaneNode objects."""
    keys = []
    for name in ("kubeplane-encryption", "kubeplane-encryption-retired"):
        s = c.get("secret", "-n", "kube-system", name)
        for field in ("state.json", "retired.json"):
            if field in s.get("data", {}):
                doc = json.loads(base64.b64decode(s["data"][field]))
                for k in doc["keys"] if isinstance(doc, dict) else doc:
                    if k.get("secret"):
                        keys.append(k["secret"])
    texts = {}
    for pod in c.get("pods", "-n", "kubeplane-system")["items"]:
        n = pod["metadata"]["name"]
        texts[f"log of {n}"] = c.kubectl("logs", "-n", "kubeplane-system", n, "--all-containers")
    texts["events"] = c.kubectl("get", "events", "-A", "-o", "json")
    texts["controlplaneconfigs"] = c.kubectl("get", "controlplaneconfigs", "-o", "json")
    texts["controlplanenodes"] = c.kubectl("get", "controlplanenodes", "-o", "json")
    found = []
    for k in set(keys):
        raw_hex = base64.b64decode(k).hex()
        for where, text in texts.items():
            if k in text or raw_hex in text:
                found.append(f"key material found in {where}")
    lines = sum(t.count("\n") for t in texts.values())
    print(f"key material: {len(set(keys))} keys searched in {len(texts)} sources ({lines} lines): "
          f"{'FOUND' if found else 'absent'}")
    return found


def summary(prefixes):
    counts = {}
    for v in prefixes.values():
        counts[v] = counts.get(v, 0) + 1
    return ", ".join(f"{n} x {k}" for k, n in sorted(counts.items()))


if __name__ == "__main__":
    main()
