#!/usr/bin/env python3
"""Check kubeplane's image archive against the Dockerfile's final stage.

    check-image.py ARCHIVE [DOCKERFILE]

ARCHIVE is what scripts/build-image.sh writes (docker-archive). Checks:
- the image config (read with `skopeo inspect --config docker-archive:ARCHIVE`): User and
  Entrypoint equal the final stage's USER and ENTRYPOINT, no Cmd, no Env but PATH at most;
- its files: exactly the final stage's COPY destinations (plus their parent directories),
  so no shell and no other program; /kubeplane statically linked (scripts/check-static.py).
Exit status 1 with every finding printed.
"""

import json
import os
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def final_stage(dockerfile):
    """Instructions after the last FROM, continuation lines joined, comments dropped."""
    stage, line = [], ""
    with open(dockerfile) as f:
        for raw in f:
            if raw.lstrip().startswith("#"):
                continue
            raw = raw.rstrip("\n")
            if raw.endswith("\\"):
                line += raw[:-1]
                continue
            line += raw
            if line.strip():
                if line.split()[0].upper() == "FROM":
                    stage = []
                stage.append(line.strip())
            line = ""
    return stage


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    archive = sys.argv[1]
    dockerfile = sys.argv[2] if len(sys.argv) == 3 else os.path.join(HERE, "..", "Dockerfile")
    stage = final_stage(dockerfile)
    user = entrypoint = None
    files = set()
    for ins in stage:
        word, _, rest = ins.partition(" ")
        word = word.upper()
        if word == "USER":
            user = rest.strip()
        elif word == "ENTRYPOINT":
            entrypoint = json.loads(rest)
        elif word == "COPY":
            files.add(rest.split()[-1].lstrip("/"))
    problems = []
    if user is None or entrypoint is None:
        problems.append(f"{dockerfile}: the final stage has no USER or no ENTRYPOINT")

    out = subprocess.run(
        ["skopeo", "inspect", "--config", f"docker-archive:{archive}"],
        capture_output=True, text=True,
    )
    if out.returncode != 0:
        print(f"skopeo inspect --config docker-archive:{archive} failed: {out.stderr.strip()}")
        return 1
    config = json.loads(out.stdout).get("config", {})
    if config.get("User") != user:
        problems.append(f"image User is {config.get('User')!r}, the Dockerfile says {user!r}")
    if config.get("Entrypoint") != entrypoint:
        problems.append(f"image Entrypoint is {config.get('Entrypoint')!r}, the Dockerfile says {entrypoint!r}")
    if config.get("Cmd"):
        problems.append(f"image has a Cmd {config['Cmd']!r}; the Dockerfile sets none")
    env = [e for e in config.get("Env") or [] if not e.startswith("PATH=")]
    if env:
        problems.append(f"image has Env {env!r}; the Dockerfile sets none")

    found = {}
    with tarfile.open(archive) as t, tempfile.TemporaryDirectory() as tmp:
        (manifest,) = json.load(t.extractfile("manifest.json"))
        for layer in manifest["Layers"]:
            with tarfile.open(fileobj=t.extractfile(layer)) as lt:
                for m in lt.getmembers():
                    name = m.name.lstrip("./")
                    if m.isdir() or not name:
                        continue
                    found[name] = m
                    if name == "kubeplane":
                        dest = os.path.join(tmp, "kubeplane")
                        with open(dest, "wb") as f:
                            f.write(lt.extractfile(m).read())
                        static = subprocess.run(
                            [sys.executable, os.path.join(HERE, "check-static.py"), dest],
                            capture_output=True, text=True,
                        )
                        if static.returncode != 0:
                            problems.append(f"/kubeplane in the image: {static.stdout.strip()}")
                        if not m.mode & 0o111:
                            problems.append(f"/kubeplane in the image is not executable (mode {m.mode:o})")
    extra = sorted(set(found) - files)
    missing = sorted(files - set(found))
    if extra:
        problems.append(f"files the Dockerfile does not put there: {extra}")
    if missing:
        problems.append(f"files of the Dockerfile missing from the image: {missing}")
    for shell in ("bin/sh", "bin/bash", "bin/busybox"):
        if shell in found:
            problems.append(f"the image has a shell: /{shell}")

    if problems:
        for p in problems:
            print(f"{archive}: {p}")
        return 1
    print(
        f"{archive}: User {user}, Entrypoint {entrypoint}, files {sorted(found)}; "
        "/kubeplane static; no shell"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
