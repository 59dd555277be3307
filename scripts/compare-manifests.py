#!/usr/bin/env python3
"""Check that two multi-document manifests declare the same objects.

    compare-manifests.py A.yaml B.yaml

Used by .ci/run to prove that each kustomize overlay means exactly what the Helm chart
renders with the matching values (for example overlays/observe-only == the chart with
agent.driftMode=observe), so the two ways to install cannot drift apart.

Objects are matched by (apiVersion, kind, namespace, name) and compared as data (comments,
key order and formatting do not matter). Normalised away before comparing: the labels
helm.sh/chart and app.kubernetes.io/version (they carry the chart version, which a
hand-written overlay file does not repeat), and the order of `volumes` and `volumeMounts`
(meaningless to Kubernetes). Prints every difference; exit status 1 if there is one.
"""

import sys

import yaml

VOLATILE_LABELS = ("helm.sh/chart", "app.kubernetes.io/version")
UNORDERED = ("volumes", "volumeMounts")


def normalise(node, key=None):
    if isinstance(node, dict):
        out = {k: normalise(v, k) for k, v in node.items()}
        if key == "labels":
            for label in VOLATILE_LABELS:
                out.pop(label, None)
        return out
    if isinstance(node, list):
        items = [normalise(v) for v in node]
        if key in UNORDERED:
            items.sort(key=lambda v: str(v.get("name")) if isinstance(v, dict) else str(v))
        return items
    return node


def load(path):
    objects = {}
    with open(path, encoding="utf-8") as f:
        for doc in yaml.safe_load_all(f):
            if not doc:
                continue
            meta = doc.get("metadata") or {}
            ident = (doc.get("apiVersion"), doc.get("kind"), meta.get("namespace", ""), meta.get("name"))
            if ident in objects:
                raise SystemExit(f"{path}: {ident} appears twice")
            objects[ident] = normalise(doc)
    return objects


def diff(a, b, path="", out=None):
    out = [] if out is None else out
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a:
                out.append(f"{path}.{k}: only in the second: {b[k]!r}")
            elif k not in b:
                out.append(f"{path}.{k}: only in the first: {a[k]!r}")
            else:
                diff(a[k], b[k], f"{path}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            diff(x, y, f"{path}[{i}]", out)
    elif a != b:
        out.append(f"{path}: {a!r} != {b!r}")
    return out


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    first, second = load(sys.argv[1]), load(sys.argv[2])
    problems = []
    for ident in sorted(set(first) | set(second), key=str):
        name = "/".join(str(p) for p in ident[1:] if p)
        if ident not in second:
            problems.append(f"{name}: only in {sys.argv[1]}")
        elif ident not in first:
            problems.append(f"{name}: only in {sys.argv[2]}")
        else:
            problems += [f"{name}: {d}" for d in diff(first[ident], second[ident])]
    for p in problems:
        print(p)
    if problems:
        print(f"{sys.argv[1]} and {sys.argv[2]} differ ({len(problems)} differences)")
        return 1
    print(f"same {len(first)} objects: {sys.argv[1]} == {sys.argv[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
