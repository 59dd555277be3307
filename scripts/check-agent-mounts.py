#!/usr/bin/env python3
"""Check that the agent's DaemonSet cannot reach the cluster-admin kubeconfigs.

    check-agent-mounts.py [--kubernetes-dir DIR] MANIFESTS.yaml...

kubeadm keeps admin.conf and super-admin.conf (O=system:masters) directly in the kubernetes
directory (/etc/kubernetes). For every DaemonSet whose pod runs `kubeplane agent`, this fails
(exit 1, naming the volume) when a hostPath volume mounted into a container

- is the kubernetes directory or one of its parents, unless the kubernetes directory's place
  inside that mount is covered by a volume that is not a hostPath (an emptyDir mask), or
- is a file named *.conf (a kubeconfig) inside the kubernetes directory.

A mount of a directory *inside* the kubernetes directory (manifests/, kubeplane/, pki/) is
fine: those hold no kubeconfig. Used by .ci/run on the default, all-options and minimal chart
renders, the bundle and the kustomize outputs.
"""

import argparse
import posixpath
import sys

import yaml


def inside(path, parent):
    """Whether `path` equals `parent` or lies below it."""
    path, parent = posixpath.normpath(path), posixpath.normpath(parent)
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def check_pod(where, spec, kdir):
    problems = []
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        mounts = container.get("volumeMounts") or []
        # mountPath -> volume, for the mask lookup
        by_path = {posixpath.normpath(m["mountPath"]): volumes.get(m["name"], {}) for m in mounts}
        for m in mounts:
            vol = volumes.get(m["name"], {})
            host = vol.get("hostPath")
            if not host:
                continue
            hpath = host["path"]
            what = f"{where}: container {container.get('name')} volume {m['name']} (hostPath {hpath} at {m['mountPath']})"
            if inside(kdir, hpath):
                rel = posixpath.relpath(kdir, hpath)
                masked_at = posixpath.normpath(posixpath.join(m["mountPath"], rel))
                mask = by_path.get(masked_at)
                if mask is None or "hostPath" in mask:
                    problems.append(
                        f"{what} holds {kdir} and its cluster-admin kubeconfigs "
                        f"(nothing but a hostPath covers {masked_at})"
                    )
            elif inside(hpath, kdir) and hpath.endswith(".conf"):
                problems.append(f"{what} is a kubeconfig")
    return problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kubernetes-dir", default="/etc/kubernetes")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    problems, checked = [], 0
    for path in args.files:
        with open(path, encoding="utf-8") as f:
            for doc in yaml.safe_load_all(f):
                if not doc or doc.get("kind") != "DaemonSet":
                    continue
                spec = doc["spec"]["template"]["spec"]
                args_ = (spec.get("containers") or [{}])[0].get("args") or []
                if not args_ or args_[0] != "agent":
                    continue
                checked += 1
                where = f"{path}: DaemonSet {doc['metadata'].get('name')}"
                problems += check_pod(where, spec, args.kubernetes_dir)
    if checked == 0:
        print(f"no agent DaemonSet found in {' '.join(args.files)}", file=sys.stderr)
        return 1
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        return 1
    print(f"{checked} agent DaemonSet(s): no mount reaches the kubeconfigs in {args.kubernetes_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
