#!/usr/bin/env bash
# Checks the claim in charts/kubeplane/README.md ("Why the agent needs no capabilities"):
# a process running as uid 0 with an empty capability set (what the agent's securityContext
# gives it: runAsUser 0, capabilities drop ALL, allowPrivilegeEscalation false) can do every
# file operation the agent does on root-owned files and directories, because as their owner
# the ordinary owner permission bits apply. It also checks the negative side: the same process
# cannot read a 0600 file of another owner (that would need CAP_DAC_OVERRIDE or
# CAP_DAC_READ_SEARCH) and cannot chown (CAP_CHOWN), so those capabilities really are gone.
#
# Needs root and util-linux `setpriv`; prints SKIP otherwise.
set -euo pipefail

if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null || ! command -v python3 >/dev/null; then
  echo "SKIP: needs root, setpriv and python3"
  exit 0
fi

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# A node's layout, root-owned, the modes kubeadm and the agent use.
install -d -m 0755 "$dir/etc/kubernetes"
install -d -m 0700 "$dir/etc/kubernetes/manifests" "$dir/etc/kubernetes/pki"
printf 'old\n' >"$dir/etc/kubernetes/manifests/kube-scheduler.yaml"
chmod 0600 "$dir/etc/kubernetes/manifests/kube-scheduler.yaml"
printf 'key\n' >"$dir/etc/kubernetes/pki/ca.key"
chmod 0600 "$dir/etc/kubernetes/pki/ca.key"
# Negative controls: a file and a directory of another owner.
printf 'x\n' >"$dir/other-owned"
chown 65534:65534 "$dir/other-owned"
chmod 0600 "$dir/other-owned"
install -d -m 0755 -o 65534 -g 65534 "$dir/other-dir"

# Drop every capability from the bounding set, then exec as uid 0: the kernel computes the
# new permitted/effective sets from the bounding set, so the child has none (as in the pod).
setpriv --bounding-set=-all --inh-caps=-all --no-new-privs -- python3 - "$dir" <<'PY'
import errno, os, sys

root = sys.argv[1]
k = os.path.join(root, "etc/kubernetes")

with open("/proc/self/status") as f:
    caps = {l.split(":")[0]: l.split()[1] for l in f if l.startswith("Cap")}
assert os.getuid() == 0, "not uid 0"
assert int(caps["CapEff"], 16) == 0 and int(caps["CapPrm"], 16) == 0, caps

# The agent's operations (src/agent/files.rs, history.rs, state.rs):
state = os.path.join(k, "kubeplane")
os.mkdir(state, 0o700)                                  # create the state dir
staging = os.path.join(state, "staging")
os.mkdir(staging, 0o700)
staged = os.path.join(staging, "kube-scheduler.yaml")
fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
os.write(fd, b"new\n"); os.fsync(fd); os.fchmod(fd, 0o600); os.close(fd)
target = os.path.join(k, "manifests/kube-scheduler.yaml")
os.rename(staged, target)                               # replace a root-owned 0600 manifest
dfd = os.open(os.path.dirname(target), os.O_RDONLY | os.O_DIRECTORY); os.fsync(dfd); os.close(dfd)
assert open(target).read() == "new\n"
os.chmod(target, 0o600)                                 # chmod of a file it owns
assert open(os.path.join(k, "pki/ca.key")).read() == "key\n"   # read root-owned 0600 key
os.makedirs(os.path.join(state, "quarantine"), 0o700)
os.rename(target, os.path.join(state, "quarantine/kube-scheduler.yaml"))  # quarantine a file
os.remove(os.path.join(state, "quarantine/kube-scheduler.yaml"))

def denied(what, fn):
    try:
        fn()
    except PermissionError as e:
        assert e.errno in (errno.EACCES, errno.EPERM), e
        return
    raise AssertionError(f"{what} succeeded without capabilities")

denied("read another owner's 0600 file (CAP_DAC_OVERRIDE)", lambda: open(os.path.join(root, "other-owned")).read())
denied("create in another owner's 0755 dir (CAP_DAC_OVERRIDE)", lambda: open(os.path.join(root, "other-dir/f"), "w"))
denied("chown (CAP_CHOWN)", lambda: os.chown(os.path.join(k, "pki/ca.key"), 65534, 65534))
print("ok: uid 0 without capabilities writes, renames, chmods and reads root-owned files; "
      "cannot read or write other owners' files or chown")
PY
