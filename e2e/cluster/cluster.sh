#!/usr/bin/env bash
# kubeplane e2e cluster launcher: runs a real Kubernetes control plane on this machine from
# binaries and images the user supplies. Every node is a network namespace with its own
# address on a host bridge, its own containerd and kubelet; kube-apiserver,
# kube-controller-manager and kube-scheduler are kubeadm-style static pods; one etcd member
# (TLS, client certificates) and haproxy (the API VIP) run on the host side of the bridge.
# It never downloads or builds anything. See README.md beside this file.
set -euo pipefail

PROG=${0##*/}
VERSION=${KUBEPLANE_CLUSTER_VERSION:-v1.36.2}
PAUSE_IMAGE=${KUBEPLANE_CLUSTER_PAUSE_IMAGE:-registry.k8s.io/pause:3.10.2}
IMAGE_REPOSITORY=${KUBEPLANE_CLUSTER_IMAGE_REPOSITORY:-registry.k8s.io}
BIN_DIR=${KUBEPLANE_CLUSTER_BIN_DIR:-}
IMAGES_DIR=${KUBEPLANE_CLUSTER_IMAGES_DIR:-}
CLUSTER_DIR=${KUBEPLANE_CLUSTER_DIR:-/var/lib/kubeplane-cluster}
CNI_BIN_DIR=${KUBEPLANE_CLUSTER_CNI_BIN_DIR:-/usr/lib/cni}
NET_PREFIX=${KUBEPLANE_CLUSTER_NET_PREFIX:-10.88.0}   # /24 on the host bridge
BRIDGE=${KUBEPLANE_CLUSTER_BRIDGE:-kpbr0}
TIMEOUT=${KUBEPLANE_CLUSTER_TIMEOUT:-300}
# Where kubeplane's agent answers haproxy's agent check on each node (chart value
# agent.loadBalancer.agentCheckPort; e2e/ha/values-cluster.yaml sets the same).
AGENT_CHECK_PORT=${KUBEPLANE_CLUSTER_AGENT_CHECK_PORT:-6445}
# A plain-HTTP image registry on the host side of the bridge (`registry`, `push-image`):
# every node's containerd pulls from it (hosts.toml under config_path).
REGISTRY_PORT=${KUBEPLANE_CLUSTER_REGISTRY_PORT:-5000}
NODE_PREFIX="cp"
VIP=${NET_PREFIX}.1
ETCD_URL=https://${VIP}:2379
SERVICE_CIDR=10.96.0.0/12
KUBERNETES_SVC_IP=10.96.0.1
# Where each node sees its own etc/kubernetes (a bind mount in the node's mount namespace),
# and its containerd's state directory (so the CRI socket is at containerd's default path).
NODE_K8S_DIR=/etc/kubernetes
NODE_CONTAINERD_DIR=/run/containerd
DNS_IP=10.96.0.10

# What 'up' was given is remembered in the cluster directory, for the other commands.
if [[ -f $CLUSTER_DIR/launcher.env ]]; then
  # shellcheck source=/dev/null
  source "$CLUSTER_DIR/launcher.env"
  BIN_DIR=${KUBEPLANE_CLUSTER_BIN_DIR:-$SAVED_BIN_DIR}
  IMAGES_DIR=${KUBEPLANE_CLUSTER_IMAGES_DIR:-$SAVED_IMAGES_DIR}
fi
SELF=$(cd "$(dirname "$0")" && pwd)/${0##*/}

log() { printf '%s %s: %s\n' "$(date -u +%H:%M:%S)" "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

usage() {
  cat <<EOF
usage: $PROG COMMAND
  up [N]              start (or create) a cluster of N control-plane nodes (default 3)
  down                stop everything and delete the cluster's state ($CLUSTER_DIR)
  status              processes, nodes, VIP health, and the KUBEPLANE_E2E_* values per node
  stop NODE           stop a node: its kubelet, containerd and every container of it
  start NODE          start a stopped node again
  exec NODE -- CMD... run CMD in NODE's network, mount and UTS namespaces
  load-image ARCHIVE [NODE...]
  registry            start an image registry (Debian docker-registry, distribution v2) at
                      VIP:$REGISTRY_PORT (plain HTTP; every node's containerd may pull from it)
  push-image ARCHIVE  push an archive's images to that registry as VIP:PORT/<name>:<tag>
                      (the name without its registry: registry.k8s.io/kube-apiserver:v1 ->
                      VIP:PORT/kube-apiserver:v1); prints the pushed references
                      import a docker-archive/oci-archive into every (given) node's
                      containerd (namespace k8s.io) and check its refs are there after
  kubeconfig          print the path of the admin kubeconfig (server: the haproxy VIP)
environment:
  KUBEPLANE_CLUSTER_BIN_DIR     (required) kubelet kubectl containerd containerd-shim-runc-v2
                                ctr runc etcd
  KUBEPLANE_CLUSTER_IMAGES_DIR  (required for up/start) *.tar image archives (docker-archive or
                                oci-archive) holding $IMAGE_REPOSITORY/kube-apiserver:$VERSION,
                                kube-controller-manager, kube-scheduler and $PAUSE_IMAGE
  KUBEPLANE_CLUSTER_DIR         state (default /var/lib/kubeplane-cluster)
  KUBEPLANE_CLUSTER_CNI_BIN_DIR CNI plugins bridge, host-local, loopback (default /usr/lib/cni)
  KUBEPLANE_CLUSTER_VERSION, KUBEPLANE_CLUSTER_PAUSE_IMAGE, KUBEPLANE_CLUSTER_NET_PREFIX,
  KUBEPLANE_CLUSTER_BRIDGE, KUBEPLANE_CLUSTER_TIMEOUT, KUBEPLANE_CLUSTER_AGENT_CHECK_PORT
                                (haproxy asks kubeplane's agent there; default 6445)
EOF
}

# ---------------------------------------------------------------- checks

BIN_NAMES=(kubelet kubectl containerd containerd-shim-runc-v2 ctr runc etcd)

check_host() {
  local missing=()
  [[ $(id -u) == 0 ]] || die "must run as root (network namespaces, cgroups, mounts)"
  for c in ip nsenter unshare openssl curl haproxy setsid mount python3; do
    command -v "$c" >/dev/null || missing+=("$c")
  done
  ((${#missing[@]} == 0)) || die "missing host commands: ${missing[*]} (Debian: iproute2 util-linux openssl curl haproxy python3)"
  [[ -d /sys/fs/cgroup/cpuset && -d /sys/fs/cgroup/memory ]] ||
    die "need cgroup v1 hierarchies under /sys/fs/cgroup (cpuset, memory, ...); cgroup v2-only hosts are not supported by this launcher"
}

check_bins() {
  [[ -n $BIN_DIR ]] || die "KUBEPLANE_CLUSTER_BIN_DIR is not set: point it at a directory with ${BIN_NAMES[*]}"
  [[ -d $BIN_DIR ]] || die "KUBEPLANE_CLUSTER_BIN_DIR=$BIN_DIR is not a directory"
  local missing=() b
  for b in "${BIN_NAMES[@]}"; do [[ -x $BIN_DIR/$b ]] || missing+=("$b"); done
  ((${#missing[@]} == 0)) || die "KUBEPLANE_CLUSTER_BIN_DIR=$BIN_DIR lacks executables: ${missing[*]}"
  for b in bridge host-local loopback; do [[ -x $CNI_BIN_DIR/$b ]] || missing+=("$b"); done
  ((${#missing[@]} == 0)) || die "KUBEPLANE_CLUSTER_CNI_BIN_DIR=$CNI_BIN_DIR lacks CNI plugins: ${missing[*]} (Debian: containernetworking-plugins)"
}

check_images_dir() {
  [[ -n $IMAGES_DIR ]] || die "KUBEPLANE_CLUSTER_IMAGES_DIR is not set: point it at a directory of image archives (*.tar) with $(required_images | tr '\n' ' ')"
  [[ -d $IMAGES_DIR ]] || die "KUBEPLANE_CLUSTER_IMAGES_DIR=$IMAGES_DIR is not a directory"
  compgen -G "$IMAGES_DIR/*.tar" >/dev/null || die "KUBEPLANE_CLUSTER_IMAGES_DIR=$IMAGES_DIR has no *.tar archive"
}

required_images() {
  printf '%s\n' "$IMAGE_REPOSITORY/kube-apiserver:$VERSION" "$IMAGE_REPOSITORY/kube-controller-manager:$VERSION" \
    "$IMAGE_REPOSITORY/kube-scheduler:$VERSION" "$PAUSE_IMAGE"
}

# ---------------------------------------------------------------- naming

node_index() { # cp3 -> 3
  local n=$1
  [[ $n =~ ^${NODE_PREFIX}([1-9][0-9]?)$ ]] || die "unknown node '$n' (nodes are ${NODE_PREFIX}1..${NODE_PREFIX}N)"
  echo "${BASH_REMATCH[1]}"
}
node_ip() { echo "${NET_PREFIX}.$((10 + $(node_index "$1")))"; }
node_dir() { echo "$CLUSTER_DIR/nodes/$1"; }
node_netns() { echo "kp-$1"; }
node_veth() { echo "kpv-$1"; }
node_sock() { echo "$(node_dir "$1")/run/containerd/containerd.sock"; }
node_etc() { echo "$(node_dir "$1")/etc/kubernetes"; }
shim_dir() { echo "/run/kpc-$1/s"; } # containerd limits the shim socket dir to 42 characters
cluster_nodes() { [[ -f $CLUSTER_DIR/nodes.list ]] && cat "$CLUSTER_DIR/nodes.list"; }
kubectl_admin() { "$BIN_DIR/kubectl" --kubeconfig "$CLUSTER_DIR/admin.conf" "$@"; }
kubectl_super() { "$BIN_DIR/kubectl" --kubeconfig "$CLUSTER_DIR/super-admin.conf" "$@"; }

pid_alive() { # PIDFILE: running, and not a zombie its (possibly slow) reaper has yet to collect
  local pid st
  [[ -f $1 ]] || return 1
  pid=$(cat "$1")
  [[ -n $pid && -r /proc/$pid/stat ]] || return 1
  st=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ ${st%% *} != Z ]]
}

# ---------------------------------------------------------------- PKI (kubeadm's layout)

PKI=""
new_key() { openssl genrsa -out "$1" 2048 2>/dev/null; chmod 600 "$1"; }

new_ca() { # DIR NAME CN
  [[ -f $1/$2.crt ]] && return 0
  new_key "$1/$2.key"
  openssl req -x509 -new -key "$1/$2.key" -sha256 -days 3650 -subj "/CN=$3" -out "$1/$2.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign" 2>/dev/null
}

# sign OUT_BASENAME CA_BASENAME SUBJECT EXTENDED_KEY_USAGE [SAN]
sign() {
  local out=$1 ca=$2 subj=$3 eku=$4 san=${5:-} ext
  [[ -f $out.crt ]] && return 0
  new_key "$out.key"
  ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=$eku"
  [[ -n $san ]] && ext+="
subjectAltName=$san"
  openssl req -new -key "$out.key" -subj "$subj" 2>/dev/null |
    openssl x509 -req -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial -days 365 -sha256 \
      -extfile <(printf '%s\n' "$ext") -out "$out.crt" 2>/dev/null
}

kubeconfig_file() { # OUT SERVER CERT_BASENAME USER
  local out=$1 server=$2 cert=$3 user=$4
  cat >"$out" <<EOF
apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: $(base64 -w0 <"$CLUSTER_DIR/pki/ca.crt")
    server: $server
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: $user
  name: $user@kubernetes
current-context: $user@kubernetes
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 <"$cert.crt")
    client-key-data: $(base64 -w0 <"$cert.key")
EOF
  chmod 600 "$out"
}

cluster_pki() {
  PKI=$CLUSTER_DIR/pki
  mkdir -p "$PKI/etcd" "$CLUSTER_DIR/etcd"
  new_ca "$PKI" ca kubernetes
  new_ca "$PKI" front-proxy-ca front-proxy-ca
  new_ca "$PKI/etcd" ca etcd-ca
  if [[ ! -f $PKI/sa.key ]]; then
    new_key "$PKI/sa.key"
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
  sign "$PKI/etcd/server" "$PKI/etcd/ca" "/CN=etcd" serverAuth,clientAuth "DNS:localhost,IP:$VIP,IP:127.0.0.1"
  sign "$PKI/etcd/healthcheck-client" "$PKI/etcd/ca" "/CN=kube-etcd-healthcheck-client" clientAuth
  sign "$PKI/admin" "$PKI/ca" "/O=kubeadm:cluster-admins/CN=kubernetes-admin" clientAuth
  sign "$PKI/super-admin" "$PKI/ca" "/O=system:masters/CN=kubernetes-super-admin" clientAuth
  [[ -f $CLUSTER_DIR/admin.conf ]] || kubeconfig_file "$CLUSTER_DIR/admin.conf" "https://$VIP:6443" "$PKI/admin" kubernetes-admin
  [[ -f $CLUSTER_DIR/super-admin.conf ]] || kubeconfig_file "$CLUSTER_DIR/super-admin.conf" "https://$VIP:6443" "$PKI/super-admin" kubernetes-super-admin
}

node_pki() { # NODE: what kubeadm init/join --control-plane writes under /etc/kubernetes
  local n=$1 ip etc p
  ip=$(node_ip "$n")
  etc=$(node_etc "$n")
  p=$etc/pki
  mkdir -p "$p/etcd" "$etc/manifests"
  for f in ca.crt ca.key front-proxy-ca.crt front-proxy-ca.key sa.key sa.pub etcd/ca.crt etcd/ca.key; do
    [[ -f $p/$f ]] || install -m 600 "$CLUSTER_DIR/pki/$f" "$p/$f"
  done
  sign "$p/apiserver" "$p/ca" "/CN=kube-apiserver" serverAuth \
    "DNS:$n,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:$KUBERNETES_SVC_IP,IP:$ip,IP:$VIP,IP:127.0.0.1"
  sign "$p/apiserver-kubelet-client" "$p/ca" "/O=kubeadm:cluster-admins/CN=kube-apiserver-kubelet-client" clientAuth
  sign "$p/front-proxy-client" "$p/front-proxy-ca" "/CN=front-proxy-client" clientAuth
  sign "$p/apiserver-etcd-client" "$p/etcd/ca" "/CN=kube-apiserver-etcd-client" clientAuth
  sign "$p/controller-manager" "$p/ca" "/CN=system:kube-controller-manager" clientAuth
  sign "$p/scheduler" "$p/ca" "/CN=system:kube-scheduler" clientAuth
  sign "$p/kubelet-client" "$p/ca" "/O=system:nodes/CN=system:node:$n" clientAuth
  # kubeadm: controller-manager.conf and scheduler.conf point at the local API server,
  # admin.conf at the control-plane endpoint (here the VIP).
  [[ -f $etc/controller-manager.conf ]] || kubeconfig_file "$etc/controller-manager.conf" "https://$ip:6443" "$p/controller-manager" system:kube-controller-manager
  [[ -f $etc/scheduler.conf ]] || kubeconfig_file "$etc/scheduler.conf" "https://$ip:6443" "$p/scheduler" system:kube-scheduler
  [[ -f $etc/kubelet.conf ]] || kubeconfig_file "$etc/kubelet.conf" "https://$ip:6443" "$p/kubelet-client" "system:node:$n"
  rm -f "$p"/controller-manager.* "$p"/scheduler.* "$p"/kubelet-client.* "$p"/*.srl "$p"/etcd/*.srl
  install -m 600 "$CLUSTER_DIR/admin.conf" "$etc/admin.conf"
  install -m 600 "$CLUSTER_DIR/super-admin.conf" "$etc/super-admin.conf"
}

# ---------------------------------------------------------------- static pod manifests

ca_volumes() { # the CA directories kubeadm mounts when they exist on the host
  local d
  for d in /etc/ssl/certs:ca-certs /etc/ca-certificates:etc-ca-certificates \
    /usr/local/share/ca-certificates:usr-local-share-ca-certificates /usr/share/ca-certificates:usr-share-ca-certificates; do
    [[ -d ${d%%:*} || ${d%%:*} == /etc/ssl/certs ]] && echo "$d"
  done
}

# manifest NAME IMAGE CPU ... writes a kubeadm v1.36.2-shaped Pod; volumes given as
# "hostpath:name:type" lines on stdin; the command on the remaining arguments.
write_manifest() {
  local out=$1 name=$2 cpu=$3 port=$4 probe_host=$5 live=$6 ready=$7 annotation=$8
  shift 8
  local vols=() line
  while IFS= read -r line; do [[ -n $line ]] && vols+=("$line"); done
  {
    echo "apiVersion: v1"
    echo "kind: Pod"
    echo "metadata:"
    if [[ -n $annotation ]]; then
      echo "  annotations:"
      echo "    kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: $annotation"
    fi
    echo "  labels:"
    echo "    component: $name"
    echo "    tier: control-plane"
    echo "  name: $name"
    echo "  namespace: kube-system"
    echo "spec:"
    echo "  containers:"
    echo "  - command:"
    local a
    for a in "$@"; do echo "    - $a"; done
    echo "    image: $IMAGE_REPOSITORY/$name:$VERSION"
    echo "    imagePullPolicy: IfNotPresent"
    echo "    livenessProbe:"
    echo "      failureThreshold: 8"
    probe "$probe_host" "$live"
    echo "      initialDelaySeconds: 10"
    echo "      periodSeconds: 10"
    echo "      timeoutSeconds: 15"
    echo "    name: $name"
    echo "    ports:"
    echo "    - containerPort: $port"
    echo "      name: probe-port"
    echo "      protocol: TCP"
    if [[ -n $ready ]]; then
      echo "    readinessProbe:"
      echo "      failureThreshold: 3"
      probe "$probe_host" "$ready"
      echo "      periodSeconds: 1"
      echo "      timeoutSeconds: 15"
    fi
    echo "    resources:"
    echo "      requests:"
    echo "        cpu: $cpu"
    echo "    startupProbe:"
    echo "      failureThreshold: 24"
    probe "$probe_host" "$live"
    echo "      initialDelaySeconds: 10"
    echo "      periodSeconds: 10"
    echo "      timeoutSeconds: 15"
    echo "    volumeMounts:"
    local v
    for v in "${vols[@]}"; do
      IFS=: read -r hp vn _ <<<"$v"
      echo "    - mountPath: $hp"
      echo "      name: $vn"
      echo "      readOnly: true"
    done
    echo "  hostNetwork: true"
    echo "  priority: 2000001000"
    echo "  priorityClassName: system-node-critical"
    echo "  securityContext:"
    echo "    seccompProfile:"
    echo "      type: RuntimeDefault"
    echo "  volumes:"
    for v in "${vols[@]}"; do
      IFS=: read -r hp vn ty <<<"$v"
      echo "  - hostPath:"
      echo "      path: $hp"
      echo "      type: $ty"
      echo "    name: $vn"
    done
    echo "status: {}"
  } >"$out.tmp"
  chmod 600 "$out.tmp"
  mv "$out.tmp" "$out"
}

probe() {
  echo "      httpGet:"
  echo "        host: $1"
  echo "        path: $2"
  echo "        port: probe-port"
  echo "        scheme: HTTPS"
}

node_manifests() { # NODE: kubeadm v1.36.2 defaults with this node's address
  local n=$1 ip etc out p cav
  ip=$(node_ip "$n")
  out=$(node_etc "$n")
  # Paths as the node sees them: its etc/kubernetes is bind-mounted at /etc/kubernetes in its
  # mount namespace (start_node), so every node has kubeadm's paths and one config fits all.
  etc=$NODE_K8S_DIR
  p=$etc/pki
  cav=$(ca_volumes | sed 's/$/:DirectoryOrCreate/')
  [[ -f $out/manifests/kube-apiserver.yaml ]] ||
    write_manifest "$out/manifests/kube-apiserver.yaml" kube-apiserver 250m 6443 "$ip" /livez /readyz "$ip:6443" \
      kube-apiserver \
      --advertise-address="$ip" \
      --allow-privileged=true \
      --authorization-mode=Node,RBAC \
      --client-ca-file="$p/ca.crt" \
      --enable-admission-plugins=NodeRestriction \
      --enable-bootstrap-token-auth=true \
      --etcd-cafile="$p/etcd/ca.crt" \
      --etcd-certfile="$p/apiserver-etcd-client.crt" \
      --etcd-keyfile="$p/apiserver-etcd-client.key" \
      --etcd-servers="$ETCD_URL" \
      --kubelet-client-certificate="$p/apiserver-kubelet-client.crt" \
      --kubelet-client-key="$p/apiserver-kubelet-client.key" \
      --kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname \
      --proxy-client-cert-file="$p/front-proxy-client.crt" \
      --proxy-client-key-file="$p/front-proxy-client.key" \
      --requestheader-allowed-names=front-proxy-client \
      --requestheader-client-ca-file="$p/front-proxy-ca.crt" \
      --requestheader-extra-headers-prefix=X-Remote-Extra- \
      --requestheader-group-headers=X-Remote-Group \
      --requestheader-username-headers=X-Remote-User \
      --secure-port=6443 \
      --service-account-issuer=https://kubernetes.default.svc.cluster.local \
      --service-account-key-file="$p/sa.pub" \
      --service-account-signing-key-file="$p/sa.key" \
      --service-cluster-ip-range="$SERVICE_CIDR" \
      --tls-cert-file="$p/apiserver.crt" \
      --tls-private-key-file="$p/apiserver.key" <<EOF
$(printf '%s\n' "$cav" | grep ca-certs)
$(printf '%s\n' "$cav" | grep etc-ca-certificates)
$p:k8s-certs:DirectoryOrCreate
$(printf '%s\n' "$cav" | grep -e usr-local -e usr-share)
EOF
  [[ -f $out/manifests/kube-controller-manager.yaml ]] ||
    write_manifest "$out/manifests/kube-controller-manager.yaml" kube-controller-manager 200m 10257 127.0.0.1 /healthz "" "" \
      kube-controller-manager \
      --authentication-kubeconfig="$etc/controller-manager.conf" \
      --authorization-kubeconfig="$etc/controller-manager.conf" \
      --bind-address=127.0.0.1 \
      --client-ca-file="$p/ca.crt" \
      --cluster-name=kubernetes \
      --cluster-signing-cert-file="$p/ca.crt" \
      --cluster-signing-key-file="$p/ca.key" \
      --controllers=*,bootstrapsigner,tokencleaner \
      --kubeconfig="$etc/controller-manager.conf" \
      --leader-elect=true \
      --requestheader-client-ca-file="$p/front-proxy-ca.crt" \
      --root-ca-file="$p/ca.crt" \
      --service-account-private-key-file="$p/sa.key" \
      --use-service-account-credentials=true <<EOF
$(printf '%s\n' "$cav" | grep ca-certs)
$(printf '%s\n' "$cav" | grep etc-ca-certificates)
$p:k8s-certs:DirectoryOrCreate
$etc/controller-manager.conf:kubeconfig:FileOrCreate
$(printf '%s\n' "$cav" | grep -e usr-local -e usr-share)
EOF
  [[ -f $out/manifests/kube-scheduler.yaml ]] ||
    write_manifest "$out/manifests/kube-scheduler.yaml" kube-scheduler 100m 10259 127.0.0.1 /livez /readyz "" \
      kube-scheduler \
      --authentication-kubeconfig="$etc/scheduler.conf" \
      --authorization-kubeconfig="$etc/scheduler.conf" \
      --bind-address=127.0.0.1 \
      --kubeconfig="$etc/scheduler.conf" \
      --leader-elect=true <<EOF
$etc/scheduler.conf:kubeconfig:FileOrCreate
EOF
}

# ---------------------------------------------------------------- node runtime config

node_configs() { # NODE: containerd config, CNI config, kubelet config
  local n=$1 d ip idx
  d=$(node_dir "$n")
  ip=$(node_ip "$n")
  idx=$(node_index "$n")
  mkdir -p "$d/containerd" "$d/cni/net.d" "$d/var/lib/containerd" "$d/run/containerd" "$d/run/runc" \
    "$d/var/lib/kubelet/pki" "$d/var/log/pods" "$d/var/log/containers" "$d/var/lib/cni" \
    "$d/device-plugins" "$d/opt/containerd" "$d/volume-plugins" "$(shim_dir "$n")" "$d/log"
  cat >"$d/containerd/config.toml" <<EOF
# containerd 2.x, config version 3. One containerd per node: own root, state, sockets.
version = 3
root = "$d/var/lib/containerd"
state = "$d/run/containerd"
[grpc]
  address = "$d/run/containerd/containerd.sock"
[ttrpc]
  address = "$d/run/containerd/containerd.sock.ttrpc"
[plugins]
  [plugins.'io.containerd.shim.v1.manager']
    socket_dir = "$(shim_dir "$n")"
  [plugins.'io.containerd.nri.v1.nri']
    disable = true
  [plugins.'io.containerd.internal.v1.opt']
    path = "$d/opt/containerd"
  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "overlayfs"
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = "$d/containerd/certs.d"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = "$PAUSE_IMAGE"
  [plugins.'io.containerd.cri.v1.runtime']
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ["$CNI_BIN_DIR"]
      conf_dir = "$d/cni/net.d"
      max_conf_num = 1
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = "runc"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = "$BIN_DIR/runc"
          Root = "$d/run/runc"
          SystemdCgroup = false
EOF
  # The launcher's registry (`registry`): plain HTTP, so containerd is told so per host
  # (containerd docs/hosts.md: certs.d/<host:port>/hosts.toml).
  mkdir -p "$d/containerd/certs.d/$VIP:$REGISTRY_PORT"
  cat >"$d/containerd/certs.d/$VIP:$REGISTRY_PORT/hosts.toml" <<EOF
server = "http://$VIP:$REGISTRY_PORT"
[host."http://$VIP:$REGISTRY_PORT"]
  capabilities = ["pull", "resolve"]
EOF
  cat >"$d/cni/net.d/10-kubeplane.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "kubeplane-$n",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "10.244.$idx.0/24"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
EOF
  # Field reference: README.md "kubelet configuration".
  cat >"$d/var/lib/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $(node_etc "$n")/pki/ca.crt
authorization:
  mode: Webhook
cgroupDriver: cgroupfs
cgroupRoot: /$n
failCgroupV1: false
clusterDNS:
- $DNS_IP
clusterDomain: cluster.local
containerRuntimeEndpoint: unix://$d/run/containerd/containerd.sock
staticPodPath: $(node_etc "$n")/manifests
podLogsDir: $d/var/log/pods
volumePluginDir: $d/volume-plugins
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
oomScoreAdj: 0
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
  imagefs.inodesFree: 1%
rotateCertificates: false
serverTLSBootstrap: false
EOF
}

CGROUP_HIERARCHIES=()
cgroup_hierarchies() {
  local h
  CGROUP_HIERARCHIES=()
  for h in /sys/fs/cgroup/*/; do
    h=${h%/}
    [[ -f $h/cgroup.procs ]] && CGROUP_HIERARCHIES+=("$h")
  done
}

node_cgroups() { # cgroupRoot /NODE in every hierarchy (cpuset filled); /NODE/runtime for its daemons
  local n=$1 h
  cgroup_hierarchies
  for h in "${CGROUP_HIERARCHIES[@]}"; do
    mkdir -p "$h/$n"
    if [[ $(basename "$h") == cpuset ]]; then
      [[ -s $h/$n/cpuset.cpus ]] || cat "$h/cpuset.cpus" >"$h/$n/cpuset.cpus"
      [[ -s $h/$n/cpuset.mems ]] || cat "$h/cpuset.mems" >"$h/$n/cpuset.mems"
    fi
  done
  mkdir -p "/sys/fs/cgroup/pids/$n/runtime"
}

node_cgroup_pids() { # every process of the node (daemons, shims, containers)
  find "/sys/fs/cgroup/pids/$1" -name cgroup.procs -exec cat {} + 2>/dev/null || true
}

remove_node_cgroups() {
  local n=$1 h
  cgroup_hierarchies
  for h in "${CGROUP_HIERARCHIES[@]}"; do
    [[ -d $h/$n ]] && find "$h/$n" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  return 0
}

# ---------------------------------------------------------------- network

ensure_bridge() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$VIP/24" dev "$BRIDGE"
  fi
  ip link set "$BRIDGE" up
}

ensure_netns() {
  local n=$1 ns veth ip
  ns=$(node_netns "$n")
  veth=$(node_veth "$n")
  ip=$(node_ip "$n")
  [[ -e /run/netns/$ns ]] || ip netns add "$ns"
  if ! ip link show "$veth" >/dev/null 2>&1; then
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    ip link set "$veth" master "$BRIDGE" up
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default via "$VIP"
  fi
  # Pods reach the VIP (haproxy on the host): the node forwards from its CNI bridge, and the
  # host routes the answers to the node's pod subnet (no masquerading, no kube-proxy).
  nsenter --net="/run/netns/$ns" sysctl -qw net.ipv4.ip_forward=1
  ip route replace "10.244.$(node_index "$n").0/24" via "$ip" dev "$BRIDGE"
}

# ---------------------------------------------------------------- host services

start_etcd() {
  local d=$CLUSTER_DIR/etcd p=$CLUSTER_DIR/pki/etcd
  pid_alive "$d/etcd.pid" && return 0
  mkdir -p "$d/data"
  chmod 700 "$d/data"
  log "etcd: starting on $ETCD_URL"
  # Same flags as kubeadm's local etcd, limited to one member.
  setsid "$BIN_DIR/etcd" --name=etcd0 --data-dir="$d/data" \
    --listen-client-urls="$ETCD_URL" --advertise-client-urls="$ETCD_URL" \
    --listen-peer-urls=http://127.0.0.1:2380 --initial-advertise-peer-urls=http://127.0.0.1:2380 \
    --initial-cluster=etcd0=http://127.0.0.1:2380 \
    --cert-file="$p/server.crt" --key-file="$p/server.key" --trusted-ca-file="$p/ca.crt" \
    --client-cert-auth=true </dev/null >>"$d/etcd.log" 2>&1 &
  echo $! >"$d/etcd.pid"
  wait_for 60 "etcd health" curl -sf --cacert "$p/ca.crt" --cert "$p/healthcheck-client.crt" \
    --key "$p/healthcheck-client.key" "$ETCD_URL/health"
}

haproxy_config() {
  local cfg=$CLUSTER_DIR/haproxy/haproxy.cfg n
  mkdir -p "$CLUSTER_DIR/haproxy"
  {
    cat <<EOF
# The API VIP: one TCP frontend, every control-plane node's kube-apiserver behind it,
# health-checked with GET /readyz over TLS (README.md "haproxy").
global
  maxconn 4000
  stats socket $CLUSTER_DIR/haproxy/admin.sock mode 600 level admin
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
  timeout check 5s
frontend kube-apiserver
  bind $VIP:6443
  default_backend kube-apiservers
backend kube-apiservers
  option httpchk GET /readyz
  http-check expect status 200
  balance roundrobin
  retries 3
  option redispatch 1
  default-server inter 2s fall 3 rise 2 on-marked-down shutdown-sessions
EOF
    while read -r n; do
      # agent-check: kubeplane's agent on the node answers `drain` before it restarts the
      # node's kube-apiserver (chart value agent.loadBalancer.agentCheckPort); haproxy
      # ignores the agent while none answers on that port.
      echo "  server $n $(node_ip "$n"):6443 check check-ssl verify none agent-check agent-port $AGENT_CHECK_PORT agent-inter 1s"
    done < <(cluster_nodes)
  } >"$cfg.tmp"
  mv "$cfg.tmp" "$cfg"
}

start_haproxy() {
  local d=$CLUSTER_DIR/haproxy
  haproxy -c -q -f "$d/haproxy.cfg" || die "haproxy rejected $d/haproxy.cfg"
  if pid_alive "$d/haproxy.pid"; then
    kill "$(cat "$d/haproxy.pid")" 2>/dev/null || true
    sleep 0.5
  fi
  setsid haproxy -db -f "$d/haproxy.cfg" </dev/null >>"$d/haproxy.log" 2>&1 &
  echo $! >"$d/haproxy.pid"
  log "haproxy: VIP https://$VIP:6443 -> $(cluster_nodes | tr '\n' ' ')"
}

# ---------------------------------------------------------------- nodes

wait_for() { # SECONDS WHAT CMD...
  local secs=$1 what=$2 end
  shift 2
  end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || die "timed out after ${secs}s waiting for $what"
    sleep 1
  done
}

import_images() {
  local n=$1 sock have missing=() img f out
  sock=$(node_sock "$n")
  have=$("$BIN_DIR/ctr" --address "$sock" -n k8s.io images ls -q 2>/dev/null || true)
  while read -r img; do grep -qxF "$img" <<<"$have" || missing+=("$img"); done < <(required_images)
  ((${#missing[@]} == 0)) && return 0
  check_images_dir
  for f in "$IMAGES_DIR"/*.tar; do
    out=$("$BIN_DIR/ctr" --address "$sock" -n k8s.io images import --local "$f" 2>&1 >/dev/null) ||
      die "ctr images import $f into $n failed: $out"
    grep -v DEPRECATION <<<"$out" >&2 || true
  done
  have=$("$BIN_DIR/ctr" --address "$sock" -n k8s.io images ls -q 2>/dev/null || true)
  missing=()
  while read -r img; do grep -qxF "$img" <<<"$have" || missing+=("$img"); done < <(required_images)
  ((${#missing[@]} == 0)) || die "after importing $IMAGES_DIR/*.tar, node $n still lacks images: ${missing[*]} (it has: $(tr '\n' ' ' <<<"$have"))"
}

containerd_pid() { cat "$(node_dir "$1")/containerd.pid"; }

start_node() {
  local n=$1 d ns ip cpid
  d=$(node_dir "$n")
  ns=$(node_netns "$n")
  ip=$(node_ip "$n")
  ensure_bridge
  ensure_netns "$n"
  node_cgroups "$n"
  # Mount points on the host (empty there; only the nodes' mount namespaces bind onto them).
  mkdir -p "$(shim_dir "$n")" /var/lib/kubelet/device-plugins /var/log/containers /var/lib/cni \
    "$NODE_K8S_DIR" "$NODE_CONTAINERD_DIR"
  if ! pid_alive "$d/containerd.pid"; then
    if [[ -n $(node_cgroup_pids "$n") ]]; then
      # containerd died (killed from outside?) but kubelet, shims or containers are left:
      # clear them, as after a power-off, so that nothing holds the node's ports.
      log "$n: containerd is not running; stopping what is left of the node first"
      stop_node "$n"
    fi
    log "$n: starting containerd ($ip, netns $ns)"
    rm -f "$(node_sock "$n")" "$(node_sock "$n").ttrpc"
    # A private mount namespace (slave: host mounts still propagate in) where the node's own
    # directories cover the paths kubelet hard-codes; a UTS namespace whose hostname is the
    # node's name (hostNetwork pods share it: leader-election identities name the node).
    # shellcheck disable=SC2016 # expanded by the inner shell, from its arguments
    setsid nsenter --net="/run/netns/$ns" -- unshare --mount --uts --propagation slave -- /bin/sh -c '
      echo $$ > "/sys/fs/cgroup/pids/$1/runtime/cgroup.procs"
      hostname "$1"
      mount --bind "$2/device-plugins" /var/lib/kubelet/device-plugins
      mount --bind "$2/var/log/containers" /var/log/containers
      mount --bind "$2/var/lib/cni" /var/lib/cni
      mount --bind "$2/etc/kubernetes" "$4"
      mount --bind "$2/run/containerd" "$5"
      exec "$3/containerd" --config "$2/containerd/config.toml"' sh "$n" "$d" "$BIN_DIR" "$NODE_K8S_DIR" "$NODE_CONTAINERD_DIR" \
      </dev/null >>"$d/log/containerd.log" 2>&1 &
    echo $! >"$d/containerd.pid"
    wait_for 60 "$n containerd to answer" "$BIN_DIR/ctr" --address "$(node_sock "$n")" version
  fi
  import_images "$n"
  cpid=$(containerd_pid "$n")
  if ! pid_alive "$d/kubelet.pid"; then
    log "$n: starting kubelet"
    KUBELET_STARTED[$n]=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    # shellcheck disable=SC2016 # expanded by the inner shell, from its arguments
    setsid nsenter --net="/run/netns/$ns" --mount="/proc/$cpid/ns/mnt" --uts="/proc/$cpid/ns/uts" -- /bin/sh -c '
      echo $$ > "/sys/fs/cgroup/pids/$1/runtime/cgroup.procs"
      shift; exec "$@"' sh "$n" \
      "$BIN_DIR/kubelet" --config="$d/var/lib/kubelet/config.yaml" \
      --kubeconfig="$(node_etc "$n")/kubelet.conf" \
      --root-dir="$d/var/lib/kubelet" --cert-dir="$d/var/lib/kubelet/pki" \
      --hostname-override="$n" --node-ip="$ip" \
      --containerd="$(node_sock "$n")" --v=1 \
      </dev/null >>"$d/log/kubelet.log" 2>&1 &
    echo $! >"$d/kubelet.pid"
  fi
}

stop_node() {
  local n=$1 d pids i
  d=$(node_dir "$n")
  for f in kubelet containerd; do
    if pid_alive "$d/$f.pid"; then kill "$(cat "$d/$f.pid")" 2>/dev/null || true; fi
  done
  for i in $(seq 1 50); do
    pid_alive "$d/kubelet.pid" || pid_alive "$d/containerd.pid" || break
    sleep 0.2
  done
  # Then every process left in the node's cgroups: shims and containers (a power-off).
  for i in $(seq 1 50); do
    pids=$(node_cgroup_pids "$n")
    [[ -z $pids ]] && break
    # shellcheck disable=SC2086
    kill -9 $pids 2>/dev/null || true
    sleep 0.2
  done
  [[ -z $(node_cgroup_pids "$n") ]] || log "$n: processes still left: $(node_cgroup_pids "$n" | tr '\n' ' ')"
  rm -f "$d/kubelet.pid" "$d/containerd.pid"
}

# NODE [SINCE]: Ready, and (with SINCE, RFC 3339) reported by a kubelet that ran at or after SINCE,
# not a status left over from before a stop.
node_ready() {
  local r
  r=$(kubectl_admin get node "$1" -o jsonpath='{range .status.conditions[?(@.type=="Ready")]}{.status} {.lastHeartbeatTime}{end}' 2>/dev/null) || return 1
  [[ ${r%% *} == True && ! ${r#* } < ${2:-} ]]
}
vip_backend_up() { # NODE: haproxy's health check marks its API server UP
  [[ $(printf 'show stat\n' | nc_unix "$CLUSTER_DIR/haproxy/admin.sock" | awk -F, -v n="$1" '$1 == "kube-apiservers" && $2 == n {print $18}') == UP ]]
}
nc_unix() { # SOCKET: stdin to a unix socket, its answer to stdout (bash cannot; no socat needed)
  python3 -c 'import socket,sys
s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.stdin.buffer.read())
while True:
    b=s.recv(65536)
    if not b: break
    sys.stdout.buffer.write(b)' "$1"
}
apiserver_ready() { curl -sf --max-time 3 --cacert "$CLUSTER_DIR/pki/ca.crt" "https://$1:6443/readyz"; }

mirror_ready() { # NODE COMPONENT [SINCE]: Ready, with a container started at or after SINCE
  local r
  r=$(kubectl_admin -n kube-system get pod "$2-$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.status.containerStatuses[0].state.running.startedAt}' 2>/dev/null) || return 1
  [[ ${r%% *} == True && ! ${r#* } < ${3:-} ]]
}

declare -A KUBELET_STARTED=()

post_node() { # after its API server answers: label, and wait until everything is Ready
  local n=$1 c since=${KUBELET_STARTED[$1]:-}
  wait_for "$TIMEOUT" "node $n registered" kubectl_admin get node "$n"
  kubectl_admin label node "$n" node-role.kubernetes.io/control-plane= --overwrite >/dev/null
  wait_for "$TIMEOUT" "node $n Ready" node_ready "$n" "$since"
  for c in kube-apiserver kube-controller-manager kube-scheduler; do
    wait_for "$TIMEOUT" "mirror pod $c-$n Ready" mirror_ready "$n" "$c" "$since"
  done
}

bootstrap_rbac() { # what kubeadm init adds: admin.conf's group is bound to cluster-admin
  kubectl_super get clusterrolebinding kubeadm:cluster-admins >/dev/null 2>&1 ||
    kubectl_super create clusterrolebinding kubeadm:cluster-admins --clusterrole=cluster-admin \
      --group=kubeadm:cluster-admins >/dev/null
}

# ---------------------------------------------------------------- commands

cmd_up() {
  local count=${1:-3} t0 n i
  [[ $count =~ ^[1-9][0-9]?$ ]] || die "up: N must be 1..99, got '$count'"
  check_host
  check_bins
  t0=$SECONDS
  mkdir -p "$CLUSTER_DIR/nodes"
  chmod 700 "$CLUSTER_DIR"
  if [[ -f $CLUSTER_DIR/nodes.list ]] && (($(wc -l <"$CLUSTER_DIR/nodes.list") > count)); then
    die "the cluster in $CLUSTER_DIR has $(wc -l <"$CLUSTER_DIR/nodes.list") nodes; run '$PROG down' first to shrink it"
  fi
  printf 'SAVED_BIN_DIR=%q\nSAVED_IMAGES_DIR=%q\n' "$BIN_DIR" "$IMAGES_DIR" >"$CLUSTER_DIR/launcher.env"
  : >"$CLUSTER_DIR/nodes.list"
  for i in $(seq 1 "$count"); do echo "$NODE_PREFIX$i" >>"$CLUSTER_DIR/nodes.list"; done
  cluster_pki
  ensure_bridge
  start_etcd
  haproxy_config
  start_haproxy
  while read -r n; do
    node_pki "$n"
    node_manifests "$n"
    node_configs "$n"
    start_node "$n"
  done < <(cluster_nodes)
  while read -r n; do
    wait_for "$TIMEOUT" "kube-apiserver of $n /readyz" apiserver_ready "$(node_ip "$n")"
  done < <(cluster_nodes)
  while read -r n; do
    wait_for "$TIMEOUT" "haproxy to mark $n UP" vip_backend_up "$n"
  done < <(cluster_nodes)
  wait_for "$TIMEOUT" "the VIP https://$VIP:6443/readyz" apiserver_ready "$VIP"
  bootstrap_rbac
  while read -r n; do post_node "$n"; done < <(cluster_nodes)
  log "up: $count node(s) Ready, every API server healthy through the VIP, in $((SECONDS - t0)) s"
  log "KUBECONFIG=$CLUSTER_DIR/admin.conf"
}

cmd_down() {
  local n
  check_host
  if [[ -f $CLUSTER_DIR/nodes.list ]]; then
    while read -r n; do
      [[ -n $n ]] || continue
      log "$n: stopping"
      stop_node "$n"
    done < <(cluster_nodes)
  fi
  for f in haproxy etcd; do
    if pid_alive "$CLUSTER_DIR/$f/$f.pid"; then kill "$(cat "$CLUSTER_DIR/$f/$f.pid")" || true; fi
  done
  sleep 1
  if [[ -d $CLUSTER_DIR/nodes ]]; then
    for d in "$CLUSTER_DIR"/nodes/*/; do
      [[ -d $d ]] || continue
      n=$(basename "$d")
      ip netns del "$(node_netns "$n")" 2>/dev/null || true
      ip link del "$(node_veth "$n")" 2>/dev/null || true
      remove_node_cgroups "$n"
      rm -rf "$(shim_dir "$n")" "/run/kpc-$n"
    done
  fi
  ip link del "$BRIDGE" 2>/dev/null || true
  # 'ip netns add' turned /run/netns into a bind mount of itself: undo it when empty.
  if [[ -d /run/netns ]] && [[ -z $(ls -A /run/netns) ]] && mountpoint -q /run/netns; then
    umount /run/netns 2>/dev/null || true
  fi
  # Leftover mounts (none expected: they live in the nodes' mount namespaces).
  if grep -q " $CLUSTER_DIR/" /proc/self/mountinfo; then
    grep " $CLUSTER_DIR/" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r umount -l
  fi
  rm -rf "$CLUSTER_DIR"
  rmdir "$NODE_K8S_DIR" "$NODE_CONTAINERD_DIR" 2>/dev/null || true # the mount points, if empty
  log "down: removed $CLUSTER_DIR"
}

cmd_stop() {
  local n=${1:-}
  [[ -n $n ]] || die "stop: which node?"
  check_host
  node_index "$n" >/dev/null
  [[ -d $(node_dir "$n") ]] || die "no node $n in $CLUSTER_DIR"
  stop_node "$n"
  log "$n: stopped"
}

cmd_start() {
  local n=${1:-}
  [[ -n $n ]] || die "start: which node?"
  check_host
  check_bins
  [[ -d $(node_dir "$n") ]] || die "no node $n in $CLUSTER_DIR"
  start_node "$n"
  wait_for "$TIMEOUT" "kube-apiserver of $n /readyz" apiserver_ready "$(node_ip "$n")"
  post_node "$n"
  wait_for "$TIMEOUT" "haproxy to mark $n UP" vip_backend_up "$n"
  log "$n: started, Ready, UP behind the VIP"
}

cmd_exec() {
  local n=${1:-}
  [[ -n $n ]] || die "exec: usage: exec NODE -- CMD..."
  shift
  [[ ${1:-} == -- ]] && shift
  (($# > 0)) || die "exec: no command given"
  [[ -d $(node_dir "$n") ]] || die "no node $n in $CLUSTER_DIR"
  pid_alive "$(node_dir "$n")/containerd.pid" || die "node $n is not running (start it: $PROG start $n)"
  local cpid
  cpid=$(containerd_pid "$n")
  exec nsenter --net="/run/netns/$(node_netns "$n")" --mount="/proc/$cpid/ns/mnt" --uts="/proc/$cpid/ns/uts" --wd="$PWD" -- "$@"
}

archive_refs() { # ARCHIVE: the image refs a docker-archive or oci-archive names, as containerd stores them
  python3 - "$1" <<'PY'
import json, sys, tarfile
def full(ref):  # docker's normalization, as containerd's import applies it to RepoTags
    name, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "latest")
    first = name.split("/", 1)[0]
    if "/" not in name or ("." not in first and ":" not in first and first != "localhost"):
        name = ("docker.io/library/" if "/" not in name else "docker.io/") + name
    return f"{name}:{tag}"
with tarfile.open(sys.argv[1]) as t:
    names = t.getnames()
    refs = []
    if "manifest.json" in names:  # docker-archive
        for m in json.load(t.extractfile("manifest.json")):
            refs += [full(r) for r in m.get("RepoTags") or []]
    elif "index.json" in names:  # oci-archive: containerd names it by io.containerd.image.name, else ref.name
        for m in json.load(t.extractfile("index.json")).get("manifests", []):
            a = m.get("annotations") or {}
            r = a.get("io.containerd.image.name") or a.get("org.opencontainers.image.ref.name")
            if r and r != full(r):
                sys.exit(f"{sys.argv[1]}: oci-archive ref {r!r} is not fully qualified: containerd "
                         f"imports it as {r!r}, but kubelet asks for {full(r)!r}; build it with "
                         f"that ref, or as a docker-archive (scripts/build-image.sh's default)")
            if r:
                refs.append(r)
    print("\n".join(refs))
PY
}

cmd_load_image() { # ARCHIVE [NODE...]: import into every (given) node's containerd, k8s.io namespace
  local archive=${1:-} n sock out refs have r nodes=() failed=0
  [[ -n $archive ]] || die "load-image: usage: load-image ARCHIVE [NODE...]"
  [[ -f $archive ]] || die "load-image: $archive is not a file"
  shift
  check_host
  check_bins
  refs=$(archive_refs "$archive") || die "load-image: cannot load $archive (above)"
  [[ -n $refs ]] || die "load-image: $archive names no image (docker-archive without RepoTags, or oci-archive without a ref annotation): containerd would import it under no name; build it with a ref"
  if (($# > 0)); then nodes=("$@"); else mapfile -t nodes < <(cluster_nodes); fi
  for n in "${nodes[@]}"; do
    [[ -d $(node_dir "$n") ]] || die "no node $n in $CLUSTER_DIR"
    pid_alive "$(node_dir "$n")/containerd.pid" || die "node $n is not running (start it: $PROG start $n)"
    sock=$(node_sock "$n")
    # No --base-name: with it, ctr silently skips every image whose ref is not under that name.
    out=$("$BIN_DIR/ctr" --address "$sock" -n k8s.io images import --local "$archive" 2>&1 >/dev/null) ||
      die "ctr images import $archive into $n failed: $out"
    have=$("$BIN_DIR/ctr" --address "$sock" -n k8s.io images ls -q 2>/dev/null || true)
    while read -r r; do
      if grep -qxF "$r" <<<"$have"; then
        log "$n: $r present"
      else
        log "$n: $r MISSING after the import (the node has: $(tr '\n' ' ' <<<"$have"))"
        failed=1
      fi
    done <<<"$refs"
  done
  ((failed == 0)) || die "load-image: an image is missing on a node after the import"
}

cmd_registry() { # start the image registry at VIP:REGISTRY_PORT
  local d=$CLUSTER_DIR/registry
  command -v docker-registry >/dev/null || die "registry: docker-registry not found (Debian: apt-get install docker-registry)"
  mkdir -p "$d/data"
  if pid_alive "$d/registry.pid"; then
    log "registry: already running (pid $(cat "$d/registry.pid")) at http://$VIP:$REGISTRY_PORT"
    return
  fi
  # distribution's configuration reference (docs/configuration.md): filesystem storage, one
  # listener, deletes allowed (a test can remove a tag), no auth (the bridge is host-local).
  cat >"$d/config.yml" <<EOF
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $d/data
  delete:
    enabled: true
http:
  addr: $VIP:$REGISTRY_PORT
EOF
  setsid docker-registry serve "$d/config.yml" </dev/null >>"$d/registry.log" 2>&1 &
  echo $! >"$d/registry.pid"
  wait_for 30 "the registry at http://$VIP:$REGISTRY_PORT/v2/" curl -sf -o /dev/null "http://$VIP:$REGISTRY_PORT/v2/"
  log "registry: http://$VIP:$REGISTRY_PORT (data $d/data, log $d/registry.log)"
}

cmd_push_image() { # ARCHIVE: push its images to the registry
  local archive=${1:-} refs r name
  [[ -f $archive ]] || die "push-image: usage: push-image ARCHIVE (a docker-archive or oci-archive file)"
  command -v skopeo >/dev/null || die "push-image: skopeo not found (Debian: apt-get install skopeo)"
  curl -sf -o /dev/null "http://$VIP:$REGISTRY_PORT/v2/" || die "push-image: no registry at http://$VIP:$REGISTRY_PORT (run: $PROG registry)"
  refs=$(archive_refs "$archive") || die "push-image: cannot read $archive"
  [[ -n $refs ]] || die "push-image: $archive names no image"
  while read -r r; do
    name=$r
    [[ ${r%%/*} == *.* || ${r%%/*} == *:* || ${r%%/*} == localhost ]] && name=${r#*/}
    skopeo copy -q --dest-tls-verify=false "docker-archive:$archive:$r" "docker://$VIP:$REGISTRY_PORT/$name" ||
      die "push-image: skopeo could not push $r"
    echo "$VIP:$REGISTRY_PORT/$name"
  done <<<"$refs"
}

pss_mib() { # PIDS...: summed proportional set size
  local p kb=0 v
  for p in "$@"; do
    [[ -n $p && -r /proc/$p/smaps_rollup ]] || continue
    v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || true)
    kb=$((kb + ${v:-0}))
  done
  echo $((kb / 1024))
}

cmd_status() {
  local n d st
  [[ -f $CLUSTER_DIR/nodes.list ]] || { echo "no cluster in $CLUSTER_DIR"; return 1; }
  for f in etcd haproxy; do
    if pid_alive "$CLUSTER_DIR/$f/$f.pid"; then st="running (pid $(cat "$CLUSTER_DIR/$f/$f.pid"))"; else st=stopped; fi
    printf '%-8s %s\n' "$f" "$st"
  done
  if apiserver_ready "$VIP" >/dev/null 2>&1; then st=ready; else st="NOT ready"; fi
  echo "VIP      https://$VIP:6443 /readyz: $st"
  echo "KUBECONFIG=$CLUSTER_DIR/admin.conf"
  echo "memory (PSS of etcd + haproxy): $(pss_mib "$(cat "$CLUSTER_DIR/etcd/etcd.pid" 2>/dev/null)" "$(cat "$CLUSTER_DIR/haproxy/haproxy.pid" 2>/dev/null)") MiB"
  while read -r n; do
    d=$(node_dir "$n")
    echo
    local k=stopped c=stopped a="NOT ready" r="?"
    pid_alive "$d/containerd.pid" && c="running (pid $(cat "$d/containerd.pid"))"
    pid_alive "$d/kubelet.pid" && k="running (pid $(cat "$d/kubelet.pid"))"
    apiserver_ready "$(node_ip "$n")" >/dev/null 2>&1 && a=ready
    local b=DOWN
    vip_backend_up "$n" 2>/dev/null && b=UP
    if [[ -n $BIN_DIR && -x $BIN_DIR/kubectl ]]; then
      r=$(kubectl_admin get node "$n" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || echo "?")
    fi
    echo "node $n  address $(node_ip "$n")  netns /run/netns/$(node_netns "$n")  Ready=$r"
    echo "  containerd $c  socket $(node_sock "$n")"
    echo "  kubelet    $k  log $d/log/kubelet.log"
    echo "  kube-apiserver https://$(node_ip "$n"):6443/readyz: $a; behind the VIP (haproxy check): $b"
    echo "  exec: $SELF exec $n -- CMD..."
    local pids=()
    mapfile -t pids < <(node_cgroup_pids "$n")
    echo "  memory (PSS of containerd, kubelet, shims, containers): $(pss_mib "${pids[@]}") MiB"
    echo "  KUBEPLANE_E2E_NODE=$n"
    echo "  KUBEPLANE_E2E_MANIFEST_DIR=$NODE_K8S_DIR/manifests"
    echo "  KUBEPLANE_E2E_CERTIFICATES_DIR=$NODE_K8S_DIR/pki"
    echo "  KUBEPLANE_E2E_KUBECONFIG_DIR=$NODE_K8S_DIR"
    echo "  KUBEPLANE_E2E_PULL_POLICY=Never"
    echo "  CONTAINER_RUNTIME_ENDPOINT=unix://$(node_sock "$n")"
  done < <(cluster_nodes)
}

main() {
  local cmd=${1:-}
  (($# > 0)) && shift
  case $cmd in
    up) cmd_up "$@" ;;
    down) cmd_down ;;
    status) cmd_status ;;
    stop) cmd_stop "$@" ;;
    start) cmd_start "$@" ;;
    exec) cmd_exec "$@" ;;
    load-image) cmd_load_image "$@" ;;
    registry) cmd_registry ;;
    push-image) cmd_push_image "$@" ;;
    kubeconfig)
      [[ -f $CLUSTER_DIR/admin.conf ]] || die "no cluster in $CLUSTER_DIR (run: $PROG up)"
      echo "$CLUSTER_DIR/admin.conf"
      ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
