#!/usr/bin/env python3
"""Validate custom resources offline against the openAPIV3Schema of their CRDs.

    validate-crs.py --crds crds/kubeplane.io.yaml FILE...

kubernetes-validate skips custom resources; this closes the gap for ours. Every document in
FILE... whose apiVersion group is served by one of the CRDs is checked against the schema of
its kind and version, the way the API server with strict field validation would:

- OpenAPI's `nullable: true` allows null;
- an object schema with `properties` and neither `additionalProperties` nor
  `x-kubernetes-preserve-unknown-fields` refuses unknown fields (the API server would prune
  them silently, or refuse them with `kubectl apply --validate=strict`);
- `x-kubernetes-int-or-string` allows an integer or a string.

CEL rules (`x-kubernetes-validations`) are not evaluated here: tests/cel.rs does that with
kube's CEL engine. A document of a CRD group whose kind or version no CRD serves is an error.
Documents of other groups are ignored. Exit status 1 on any error, 2 on bad usage.
"""

import argparse
import copy
import sys

import jsonschema
import yaml


def strict(schema):
    """The schema rewritten into plain JSON Schema with the API server's strictness."""
    s = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, list):
            for item in node:
                walk(item)
            return
        if not isinstance(node, dict):
            return
        for value in node.values():
            walk(value)
        if node.pop("x-kubernetes-int-or-string", False):
            node.pop("type", None)
            node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        preserve = node.pop("x-kubernetes-preserve-unknown-fields", False)
        if (
            node.get("type") == "object"
            and "properties" in node
            and "additionalProperties" not in node
            and not preserve
        ):
            node["additionalProperties"] = False
        if node.pop("nullable", False):
            t = node.get("type")
            if isinstance(t, str):
                node["type"] = [t, "null"]
            elif "anyOf" in node:
                node["anyOf"].append({"type": "null"})
        for key in list(node):
            if key.startswith("x-kubernetes-"):
                del node[key]

    walk(s)
    # apiVersion, kind and metadata are the API server's, not part of the CRD's schema.
    props = s.setdefault("properties", {})
    props.setdefault("apiVersion", {"type": "string"})
    props.setdefault("kind", {"type": "string"})
    props["metadata"] = {"type": "object"}
    return s


def load_crds(paths):
    """(group, version, kind) -> strict JSON Schema, and the set of groups."""
    schemas, groups = {}, set()
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for doc in yaml.safe_load_all(f):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                groups.add(spec["group"])
                for v in spec["versions"]:
                    schema = v["schema"]["openAPIV3Schema"]
                    schemas[(spec["group"], v["name"], spec["names"]["kind"])] = strict(schema)
    return schemas, groups


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crds", action="append", required=True, help="file with CRDs (repeatable)")
    ap.add_argument("files", nargs="+", help="files with custom resources")
    args = ap.parse_args()

    schemas, groups = load_crds(args.crds)
    if not schemas:
        print(f"no CustomResourceDefinition found in {args.crds}", file=sys.stderr)
        return 2
    errors = checked = 0
    for path in args.files:
        with open(path, encoding="utf-8") as f:
            docs = list(yaml.safe_load_all(f))
        for i, doc in enumerate(docs):
            if not isinstance(doc, dict) or "apiVersion" not in doc:
                continue
            group, _, version = doc["apiVersion"].rpartition("/")
            if group not in groups:
                continue
            kind = doc.get("kind", "")
            name = (doc.get("metadata") or {}).get("name", f"document {i}")
            where = f"{path}: {kind}/{name}"
            schema = schemas.get((group, version, kind))
            if schema is None:
                print(f"ERROR {where}: no CRD serves {kind} in {group}/{version}")
                errors += 1
                continue
            validator = jsonschema.Draft7Validator(schema)
            found = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
            for e in found:
                field = ".".join(str(p) for p in e.absolute_path) or "(root)"
                print(f"ERROR {where}: {field}: {e.message}")
            errors += len(found)
            checked += 1
            if not found:
                print(f"ok    {where} against the {kind} {version} schema")
    print(f"{checked} custom resources checked, {errors} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
