#!/usr/bin/env bash
# Builds kubeplane's image without a container daemon, from the Dockerfile's final stage:
# Debian's buildah, `buildah from scratch`, the static musl binary CI builds and the CA
# bundle copied in, USER and ENTRYPOINT as the Dockerfile says, committed to an image
# archive that `ctr images import`, `skopeo copy` or `podman load` read.
#
#   scripts/build-image.sh [--binary PATH] [--output FILE] [--format docker-archive|oci-archive] [REF]
#
# REF defaults to kubeplane:<Cargo.toml version>; --output to
# ${CARGO_TARGET_DIR:-target}/image/kubeplane-<version>.tar; --format to docker-archive (its
# RepoTags carry REF, so `ctr images import` names the image REF, normalized by containerd to
# docker.io/library/kubeplane:<version> — what kubelet asks for when a Pod says
# kubeplane:<version>); --binary to the output of
#   cargo build --profile dist --locked --target x86_64-unknown-linux-musl --bin kubeplane
# which it does not build (.ci/run does; so does the Dockerfile's builder stage).
#
# The Dockerfile is the recipe: every instruction of its final stage is read and applied
# here; an instruction or a COPY source this script does not know fails the build, so the two
# cannot drift apart silently. Root or not; buildah's storage lives in a temporary directory
# (overlay, or vfs where overlay cannot be mounted) removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { printf 'build-image.sh: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'build-image.sh: %s\n' "$*" >&2; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
[[ -n $version ]] || die "no version in Cargo.toml"
binary=${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-musl/dist/kubeplane
output=""
format=docker-archive
ref=""
while (($# > 0)); do
  case $1 in
    --binary) binary=${2:?--binary needs a path}; shift 2 ;;
    --output) output=${2:?--output needs a file}; shift 2 ;;
    --format) format=${2:?--format needs docker-archive or oci-archive}; shift 2 ;;
    -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [[ -z $ref ]] || die "more than one REF given: $ref, $1"; ref=$1; shift ;;
  esac
done
ref=${ref:-kubeplane:$version}
output=${output:-${CARGO_TARGET_DIR:-target}/image/kubeplane-$version.tar}
case $format in docker-archive | oci-archive) ;; *) die "--format $format: use docker-archive or oci-archive" ;; esac
[[ $ref =~ ^[a-z0-9./_-]+(:[A-Za-z0-9_.-]+)?$ ]] || die "REF '$ref' is not an image reference such as kubeplane:$version"
[[ -f $binary ]] || die "no binary at $binary: build it with 'cargo build --profile dist --locked --target x86_64-unknown-linux-musl --bin kubeplane' or pass --binary"
python3 scripts/check-static.py "$binary" >/dev/null ||
  die "$binary is not statically linked ($(python3 scripts/check-static.py "$binary")): the image has no libc"
command -v buildah >/dev/null || die "buildah is missing (Debian: apt-get install buildah)"

# What the builder stage's paths are outside it: the binary cargo built, the CA bundle of
# this (Debian) machine — the builder image is Debian bookworm, with the same file.
builder_source() {
  case $1 in
    /kubeplane) echo "$binary" ;;
    /etc/ssl/certs/ca-certificates.crt) echo /etc/ssl/certs/ca-certificates.crt ;;
    *) return 1 ;;
  esac
}

# The final stage: the lines after the last FROM, continuation lines joined, comments dropped.
stage=$(awk '
  /^[[:space:]]*#/ { next }
  { line = line $0 }
  /\\$/ { sub(/\\$/, "", line); next }
  { if (line ~ /^[[:space:]]*FROM[[:space:]]/) { n = 0; delete out } ; out[n++] = line; line = "" }
  END { for (i = 0; i < n; i++) if (out[i] ~ /[^[:space:]]/) print out[i] }' Dockerfile)
[[ $(head -1 <<<"$stage") =~ ^FROM[[:space:]]+scratch[[:space:]]*$ ]] ||
  die "the Dockerfile's final stage starts with '$(head -1 <<<"$stage")', expected 'FROM scratch' (this script builds only that)"

work=$(mktemp -d)
ctr=""
storage=()
cleanup() {
  if [[ -n $ctr ]]; then buildah "${storage[@]}" rm "$ctr" >/dev/null 2>&1 || true; fi
  # vfs/overlay layers may hold mounts or read-only dirs: buildah's own cleanup first.
  buildah "${storage[@]}" rmi --all --force >/dev/null 2>&1 || true
  if mountpoint -q "$work/storage/overlay" 2>/dev/null; then umount "$work/storage/overlay" || true; fi
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# KUBEPLANE_IMAGE_STORAGE_DRIVERS="vfs" skips overlay (e.g. to check the fallback).
for driver in ${KUBEPLANE_IMAGE_STORAGE_DRIVERS:-overlay vfs}; do
  storage=(--root "$work/storage" --runroot "$work/run" --storage-driver "$driver")
  if ctr=$(buildah "${storage[@]}" from --isolation chroot scratch 2>"$work/from.err"); then
    break
  fi
  log "storage driver $driver: $(tail -1 "$work/from.err"); trying the next"
  ctr=""
  rm -rf "$work/storage" "$work/run"
done
[[ -n $ctr ]] || die "buildah from scratch failed with the overlay and vfs storage drivers: $(cat "$work/from.err")"
log "building $ref from the Dockerfile's final stage (storage driver $driver)"

while IFS= read -r line; do
  read -r instr rest <<<"$line"
  case ${instr^^} in
    FROM) ;;
    COPY)
      read -r -a words <<<"$rest"
      [[ ${words[0]} == --from=builder && ${#words[@]} == 3 ]] ||
        die "Dockerfile: '$line': only 'COPY --from=builder SRC DEST' is known to this script"
      src=$(builder_source "${words[1]}") ||
        die "Dockerfile: '$line': no known counterpart of the builder's ${words[1]} (add it to builder_source in $0)"
      [[ -f $src ]] || die "Dockerfile: '$line': $src does not exist here"
      buildah "${storage[@]}" copy "$ctr" "$src" "${words[2]}" >/dev/null
      log "  COPY $src -> ${words[2]}"
      ;;
    USER)
      buildah "${storage[@]}" config --user "$rest" "$ctr"
      log "  USER $rest"
      ;;
    ENTRYPOINT)
      [[ $rest == \[* ]] || die "Dockerfile: '$line': only the exec (JSON) form is known to this script"
      buildah "${storage[@]}" config --entrypoint "$rest" "$ctr"
      log "  ENTRYPOINT $rest"
      ;;
    *) die "Dockerfile: final-stage instruction '$instr' is not known to this script (add it to $0)" ;;
  esac
done <<<"$stage"
# A FROM scratch image has no Cmd; buildah would otherwise keep none either, but say it.
buildah "${storage[@]}" config --cmd '[]' "$ctr" 2>/dev/null || true

mkdir -p "$(dirname "$output")"
rm -f "$output.tmp"
commit_format=oci
[[ $format == docker-archive ]] && commit_format=docker
buildah "${storage[@]}" commit --quiet --format "$commit_format" --rm "$ctr" "$format:$output.tmp:$ref" >/dev/null
ctr=""
mv "$output.tmp" "$output"
log "wrote $output ($format, $(stat -c %s "$output") bytes), ref $ref"
echo "$output"
