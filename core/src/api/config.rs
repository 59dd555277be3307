//! `ControlPlaneConfig`: the desired state of a cluster's control plane.
// kube-derive printcolumn(...) attributes repeat `type_ = ...`, which clippy takes for
// duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::audit::Audit;
pub use super::encryption::{Encryption, SecretKeyRef};
use super::images::ImagePullSecretRef;
pub use super::rollout::*;
pub use super::status::*;

/// The desired control plane of a cluster: versions, networking, etcd, and per-component
/// settings for kube-apiserver, kube-controller-manager and kube-scheduler. The operator renders
/// it into one `ControlPlaneNode` per matching node and rolls changes out one node at a time.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "kubeplane.io",
    version = "v1alpha1",
    kind = "ControlPlaneConfig",
    shortname = "cpc",
    category = "kubeplane",
    status = "ControlPlaneConfigStatus",
    doc = "The desired state of a cluster's control-plane static pods (kube-apiserver, kube-controller-manager, kube-scheduler).",
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".spec.kubernetesVersion"
    ),
    printcolumn(name = "Revision", type_ = "string", json_path = ".status.revision"),
    printcolumn(
        name = "Updated",
        type_ = "integer",
        json_path = ".status.updatedNodes"
    ),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyNodes"),
    printcolumn(
        name = "Encryption",
        type_ = "string",
        json_path = ".status.encryption.step"
    ),
    printcolumn(
        name = "Key",
        type_ = "string",
        priority = 1,
        json_path = ".status.encryption.activeKey"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
// Transition rules (on update only). Their messageExpressions only concatenate: anything more
// (computing the next minor) exceeds the API server's CEL cost budget for messages.
#[x_kube(validation = Rule::new("int(self.kubernetesVersion.split('.')[1]) <= int(oldSelf.kubernetesVersion.split('.')[1]) + 1").message(kube::core::Message::Expression("'kubernetesVersion ' + oldSelf.kubernetesVersion + ' -> ' + self.kubernetesVersion + ' skips a minor version: go to the next minor version (a 1.MINOR+1 release) first (kubernetes.io/releases/version-skew-policy)'".into())))]
#[x_kube(validation = Rule::new("int(self.kubernetesVersion.split('.')[1]) >= int(oldSelf.kubernetesVersion.split('.')[1]) || (has(self.upgrade) && has(self.upgrade.allowMinorDowngrade) && self.upgrade.allowMinorDowngrade && int(self.kubernetesVersion.split('.')[1]) + 1 >= int(oldSelf.kubernetesVersion.split('.')[1]))").message(kube::core::Message::Expression("'kubernetesVersion ' + oldSelf.kubernetesVersion + ' -> ' + self.kubernetesVersion + ' is a minor downgrade: refused unless spec.upgrade.allowMinorDowngrade is true, and then one minor at a time'".into())))]
pub struct ControlPlaneConfigSpec {
    /// Kubernetes version of the control-plane images, for example `v1.36.2`. It also selects
    /// which command-line flags are accepted: kubeplane supports minor versions 1.33 to 1.37.
    #[schemars(
        regex(pattern = r"^v?[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?$"),
        length(max = 64)
    )]
    pub kubernetes_version: String,

    /// Registry and repository the images come from, without a trailing slash. The image of
    /// each component is `<imageRepository>/<component>:<kubernetesVersion>`.
    /// Default: `registry.k8s.io`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub image_repository: Option<String>,

    /// Image pull policy of the control-plane containers: `Always`, `IfNotPresent` or `Never`.
    /// Default: `IfNotPresent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,

    /// Secrets with registry credentials for the control-plane images (docker config JSON:
    /// type `kubernetes.io/dockerconfigjson` or `kubernetes.io/dockercfg`). Static Pods cannot
    /// name imagePullSecrets — kubelet pulls their images with its own credentials — so these
    /// are for the agent, which pulls a revision's new images through the container runtime
    /// before it restarts anything. The agent needs `get` on them (chart value
    /// `rbac.imagePullSecrets`). At most 8.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub image_pull_secrets: Vec<ImagePullSecretRef>,

    /// Name of the cluster, passed to kube-controller-manager as `--cluster-name`.
    /// Default: `kubernetes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub cluster_name: Option<String>,

    /// Host directory holding the cluster's certificates and keys, mounted read-only into
    /// kube-apiserver and kube-controller-manager. Default: `/etc/kubernetes/pki`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("certificatesDir must be an absolute path"))]
    #[schemars(length(min = 1, max = 4096))]
    pub certificates_dir: Option<String>,

    /// Cluster networking: service and pod ranges, DNS domain, node-port range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networking: Option<Networking>,

    /// The etcd cluster kube-apiserver stores its data in. Default: the local etcd member a
    /// kubeadm control-plane node runs, at `https://127.0.0.1:2379`, with kubeadm's client
    /// certificates under `certificatesDir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<Etcd>,

    /// Settings of kube-apiserver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_server: Option<ApiServer>,

    /// Settings of kube-controller-manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_manager: Option<ControllerManager>,

    /// Settings of kube-scheduler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<Scheduler>,

    /// Per-node settings, for the few values that differ from node to node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.all(n, self.exists_one(m, m.name == n.name))").message("nodes must have unique names"))]
    pub nodes: Vec<NodeOverride>,

    /// Labels a Node must carry to get this control plane. Default:
    /// `node-role.kubernetes.io/control-plane: ""`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,

    /// How changes are rolled out across nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,

    /// How changes of `kubernetesVersion` are judged (the version-skew policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<super::UpgradePolicy>,
}

/// Image pull policy of the control-plane containers.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull the image every time the Pod starts.
    Always,
    /// Pull the image only when it is not on the node.
    IfNotPresent,
    /// Never pull; the image must already be on the node.
    Never,
}

impl PullPolicy {
    /// The value as Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// Cluster networking.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Networking {
    /// CIDR range(s) of Service cluster IPs, comma-separated for dual-stack (one IPv4 and one
    /// IPv6 range). Passed to kube-apiserver, and to kube-controller-manager when `podSubnet`
    /// is set, as `--service-cluster-ip-range`. Default: `10.96.0.0/12`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = Rule::new("self.split(',').all(c, isCIDR(c))").message("serviceSubnet must be one CIDR, or two comma-separated CIDRs for dual-stack, like 10.96.0.0/12"))]
    pub service_subnet: Option<String>,

    /// CIDR range(s) Pod IPs come from, comma-separated for dual-stack. When set,
    /// kube-controller-manager allocates a Pod range to every Node from it
    /// (`--allocate-node-cidrs=true --cluster-cidr=<podSubnet>`). Default: unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = Rule::new("self.split(',').all(c, isCIDR(c))").message("podSubnet must be one CIDR, or two comma-separated CIDRs for dual-stack, like 10.244.0.0/16"))]
    pub pod_subnet: Option<String>,

    /// DNS domain of the cluster, used in the default service-account issuer
    /// `https://kubernetes.default.svc.<dnsDomain>`. Default: `cluster.local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub dns_domain: Option<String>,

    /// Port range reserved for NodePort Services, `FIRST-LAST`, passed to kube-apiserver as
    /// `--service-node-port-range`. Default: unset (kube-apiserver uses `30000-32767`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 11))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]{1,5}-[0-9]{1,5}$') && int(self.split('-')[0]) >= 1 && int(self.split('-')[0]) <= int(self.split('-')[1]) && int(self.split('-')[1]) <= 65535").message("serviceNodePortRange must be FIRST-LAST with 1 <= FIRST <= LAST <= 65535, like 30000-32767"))]
    pub service_node_port_range: Option<String>,
}

/// The etcd cluster kube-apiserver uses.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Etcd {
    /// An etcd cluster kubeplane does not run. When set, kube-apiserver talks to these
    /// endpoints with these client certificates instead of the local member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalEtcd>,
}

/// An external etcd cluster reached over TLS.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalEtcd {
    /// Client URLs of the etcd members, for example `https://10.0.0.21:2379`.
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(validation = Rule::new("self.all(e, isURL(e) && (e.startsWith('https://') || e.startsWith('http://')))").message("etcd endpoints must be URLs like https://10.0.0.21:2379"))]
    pub endpoints: Vec<BoundedString>,

    /// CA certificate that signed the etcd members' serving certificates (`--etcd-cafile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("caFile must be an absolute path"))]
    pub ca_file: Option<String>,

    /// Client certificate kube-apiserver presents to etcd (`--etcd-certfile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("certFile must be an absolute path"))]
    pub cert_file: Option<String>,

    /// Private key of the client certificate (`--etcd-keyfile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("keyFile must be an absolute path"))]
    pub key_file: Option<String>,
}

/// A string of bounded length (keeps CEL validation cost bounded).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
#[serde(transparent)]
pub struct BoundedString(pub String);

impl JsonSchema for BoundedString {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "BoundedString".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "maxLength": 2048 })
    }
}

impl std::ops::Deref for BoundedString {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for BoundedString {
    fn from(s: &str) -> Self {
        BoundedString(s.to_string())
    }
}

/// Defines a component's settings struct: the fields every component shares, then its own.
macro_rules! component_settings {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($(#[$fmeta:meta])* pub $field:ident : $ty:ty,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            /// Whether kubeplane writes this component's static Pod. Set to `false` for a component
            /// that runs some other way (a systemd unit, another tool): kubeplane then leaves its
            /// manifest alone. Default: `true`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub managed: Option<bool>,

            /// Extra command-line flags, in order, each a name without leading dashes and a value.
            /// A name given here replaces every default value of that flag, except the list and map
            /// flags that merge with the defaults (`enable-admission-plugins`,
            /// `disable-admission-plugins`, `feature-gates`, `runtime-config`). A name may repeat for
            /// flags that accept several values (`service-account-issuer`). Flags are written sorted
            /// by name; repeats keep their order.
            #[serde(default, skip_serializing_if = "Vec::is_empty")]
            #[schemars(length(max = 256))]
            pub extra_args: Vec<Arg>,

            /// Extra hostPath volumes mounted into the container. A volume with the name of a default
            /// volume replaces it.
            #[serde(default, skip_serializing_if = "Vec::is_empty")]
            #[schemars(length(max = 64))]
            #[x_kube(validation = Rule::new("self.all(v, self.exists_one(w, w.name == v.name))").message("extraVolumes must have unique names"))]
            pub extra_volumes: Vec<HostPathVolume>,

            /// Extra environment variables of the container, by name.
            #[serde(default, skip_serializing_if = "Vec::is_empty")]
            #[schemars(length(max = 64))]
            #[x_kube(validation = Rule::new("self.all(v, self.exists_one(w, w.name == v.name))").message("extraEnv must have unique names"))]
            pub extra_env: Vec<EnvVar>,

            /// Compute resources of the container. Default: a CPU request of 250m (kube-apiserver),
            /// 200m (kube-controller-manager) or 100m (kube-scheduler), as kubeadm sets.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub resources: Option<Resources>,

            /// Overrides of the container's liveness, readiness and startup probes. Fields left
            /// unset keep kubeadm's values.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub probes: Option<Probes>,

            /// Names of protected flags (TLS certificates and keys, client CAs, etcd TLS,
            /// service-account keys and issuer) that `extraArgs` may replace. Replacing one of them
            /// without naming it here is refused, because a wrong value locks every client out.
            #[serde(default, skip_serializing_if = "Vec::is_empty")]
            #[schemars(length(max = 64))]
            pub allow_protected_overrides: Vec<FlagName>,

            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl $name {
            /// The settings every component shares.
            pub fn common(&self) -> CommonSettings<'_> {
                CommonSettings {
                    managed: self.managed,
                    extra_args: &self.extra_args,
                    extra_volumes: &self.extra_volumes,
                    extra_env: &self.extra_env,
                    resources: self.resources.as_ref(),
                    probes: self.probes.as_ref(),
                    allow_protected_overrides: &self.allow_protected_overrides,
                }
            }
        }
    };
}

/// A view of the settings every component shares.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CommonSettings<'a> {
    /// Whether kubeplane writes the component's static Pod (default `true`).
    pub managed: Option<bool>,
    /// Extra flags, in order.
    pub extra_args: &'a [Arg],
    /// Extra hostPath volumes.
    pub extra_volumes: &'a [HostPathVolume],
    /// Extra environment variables.
    pub extra_env: &'a [EnvVar],
    /// Compute resources.
    pub resources: Option<&'a Resources>,
    /// Probe overrides.
    pub probes: Option<&'a Probes>,
    /// Protected flags `extraArgs` may replace.
    pub allow_protected_overrides: &'a [FlagName],
}

/// A command-line flag name: no leading dashes, no `=`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(transparent)]
pub struct FlagName(pub String);

impl JsonSchema for FlagName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FlagName".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": 128,
            "x-kubernetes-validations": [{
                "rule": "!self.startsWith('-')",
                "message": "give flag names without leading dashes: bind-address, not --bind-address"
            }]
        })
    }
}

/// One command-line flag.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    /// Flag name without leading dashes, for example `audit-log-maxage`.
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = Rule::new("!self.startsWith('-')").message("give flag names without leading dashes: bind-address, not --bind-address"))]
    #[x_kube(validation = Rule::new("!self.contains('=')").message("put the flag's value in value, not in name"))]
    pub name: String,

    /// Flag value, written as `--name=value`.
    #[serde(default)]
    #[schemars(length(max = 4096))]
    pub value: String,
}

impl Arg {
    /// A flag with a value.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Arg {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A hostPath volume and where it is mounted in the container.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HostPathVolume {
    /// Name of the volume (a DNS label).
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Path on the host.
    #[schemars(length(min = 1, max = 4096))]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("hostPath must be an absolute path"))]
    pub host_path: String,
    /// Path in the container.
    #[schemars(length(min = 1, max = 4096))]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("mountPath must be an absolute path"))]
    pub mount_path: String,
    /// Mount read-only. Default: `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// hostPath type: `DirectoryOrCreate`, `Directory`, `FileOrCreate`, `File`, `Socket`,
    /// `CharDevice` or `BlockDevice`. Default: `DirectoryOrCreate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_type: Option<HostPathType>,
}

/// Kind of host path a hostPath volume expects.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostPathType {
    /// A directory, created (mode 0755) when missing.
    DirectoryOrCreate,
    /// An existing directory.
    Directory,
    /// A file, created empty (mode 0644) when missing.
    FileOrCreate,
    /// An existing file.
    File,
    /// An existing UNIX socket.
    Socket,
    /// An existing character device.
    CharDevice,
    /// An existing block device.
    BlockDevice,
}

impl HostPathType {
    /// The value as Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            HostPathType::DirectoryOrCreate => "DirectoryOrCreate",
            HostPathType::Directory => "Directory",
            HostPathType::FileOrCreate => "FileOrCreate",
            HostPathType::File => "File",
            HostPathType::Socket => "Socket",
            HostPathType::CharDevice => "CharDevice",
            HostPathType::BlockDevice => "BlockDevice",
        }
    }
}

/// An environment variable with a literal value (static pods cannot read Secrets or
/// ConfigMaps).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    /// Variable name.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// Variable value.
    #[serde(default)]
    #[schemars(length(max = 4096))]
    pub value: String,
}

/// Compute resources of a container, as Kubernetes quantities (`250m`, `1Gi`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// Minimum resources, by resource name (`cpu`, `memory`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, String>,
    /// Maximum resources, by resource name (`cpu`, `memory`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, String>,
}

/// Overrides of a container's probes.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Probes {
    /// Liveness probe timing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<ProbeTiming>,
    /// Readiness probe timing (kube-apiserver and kube-scheduler only; kube-controller-manager
    /// has no readiness probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<ProbeTiming>,
    /// Startup probe timing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup: Option<ProbeTiming>,
}

/// Timing of one probe. Unset fields keep kubeadm's values.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ProbeTiming {
    /// Seconds after the container starts before the first probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub initial_delay_seconds: Option<i32>,
    /// Seconds between probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub period_seconds: Option<i32>,
    /// Seconds a probe may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: Option<i32>,
    /// Consecutive failures before the probe counts as failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub failure_threshold: Option<i32>,
}

component_settings! {
    /// Settings of kube-apiserver.
    pub struct ApiServer {
        /// Port kube-apiserver serves HTTPS on (`--secure-port`), also the port its probes use.
        /// Default: `6443`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 65535))]
        pub secure_port: Option<i32>,

        /// Audit logging: a policy kubeplane writes to the node and where the log goes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub audit: Option<Audit>,

        /// Encryption of Secrets (and other resources) at rest. The EncryptionConfiguration is
        /// read from a Secret by the node agent, so keys never appear in a custom resource.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub encryption: Option<Encryption>,
    }
}

component_settings! {
    /// Settings of kube-controller-manager.
    pub struct ControllerManager {
        /// Host path of the kubeconfig kube-controller-manager uses (`--kubeconfig`,
        /// `--authentication-kubeconfig`, `--authorization-kubeconfig`), mounted read-only.
        /// Default: `/etc/kubernetes/controller-manager.conf`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(min = 1, max = 4096))]
        pub kubeconfig: Option<String>,
    }
}

component_settings! {
    /// Settings of kube-scheduler.
    pub struct Scheduler {
        /// Host path of the kubeconfig kube-scheduler uses (`--kubeconfig`,
        /// `--authentication-kubeconfig`, `--authorization-kubeconfig`), mounted read-only.
        /// Default: `/etc/kubernetes/scheduler.conf`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(min = 1, max = 4096))]
        pub kubeconfig: Option<String>,
    }
}

/// Settings of one node.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NodeOverride {
    /// Name of the Node.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Address kube-apiserver on this node advertises to the cluster (`--advertise-address`).
    /// Default: the address the node's agent reports (the Node's first InternalIP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub advertise_address: Option<String>,
}
