//! The renderer: a pure function from a `ControlPlaneConfig` spec and one node's facts to
//! the static Pods and side files that node should hold. No I/O, no async; the same input
//! gives byte-identical output.

mod apiserver;
pub mod args;
mod controller_manager;
pub mod defaults;
pub mod equivalence;
mod hash;
pub mod pod;
mod scheduler;
mod yaml;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

pub use equivalence::{equivalent, normalize};
pub use hash::{RENDERER_VERSION, pod_uid, revision, revision_of, sha256_hex, stamp_uid};
pub use yaml::{pod_to_yaml, to_yaml};

use self::args::{Flag, last_value};
use self::defaults::{DefaultValue, When};
use self::pod::{Mount, PodParts, ProbeTarget, merge_mounts};
use crate::api::{
    CertificateRef, CommonSettings, Component, ControlPlaneConfigSpec, ControlPlaneNodeSpec,
    HostPathType, NodeFacts, RenderedFile, RenderedManifest, SecretKeyRef,
};
use crate::flags::policy::{CertFile, certificate_flags};
use crate::flags::{KubeVersion, VersionError};

/// What the renderer needs besides the spec.
#[derive(Clone, Copy, Debug)]
pub struct RenderInput<'a> {
    /// The desired control plane.
    pub spec: &'a ControlPlaneConfigSpec,
    /// Facts about the node being rendered for.
    pub node: &'a NodeFacts,
    /// SHA-256 (hex) of the encryption configuration the spec's Secret holds, when known.
    /// The operator reads it from the Secret; without it the Pod's config hash is provisional.
    pub encryption_config_sha256: Option<&'a str>,
}

/// One rendered static Pod.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderedPod {
    /// The component it runs.
    pub component: Component,
    /// The Pod, `metadata.uid` set.
    pub pod: Pod,
    /// `metadata.uid`: the content hash kubelet reports as `kubernetes.io/config.hash`.
    pub uid: String,
    /// The manifest as written to disk.
    pub yaml: String,
}

/// Everything one node should hold.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    /// The managed components' Pods, in apply order (kube-apiserver first).
    pub pods: Vec<RenderedPod>,
    /// Side files the Pods mount.
    pub files: Vec<RenderedFile>,
    /// Certificate files the flags point at, as host paths.
    pub certificates: Vec<CertificateRef>,
    /// Things worth a look that do not stop rendering.
    pub warnings: Vec<String>,
}

/// Why a spec cannot be rendered for a node.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The version is malformed or unsupported.
    #[error("spec.kubernetesVersion: {0}")]
    Version(#[from] VersionError),
    /// The API server needs an address to advertise and none is known.
    #[error(
        "node {node:?}: kube-apiserver needs an advertise address and none is known; set spec.nodes[] {{name: {node}, advertiseAddress: <IP>}} or pass --address <IP>"
    )]
    NoAdvertiseAddress {
        /// The node.
        node: String,
    },
    /// The node name is empty.
    #[error("the node name is empty; pass --node <NAME>")]
    NoNodeName,
    /// The spec manages no component.
    #[error(
        "spec: every component has managed: false, so there is nothing to render; manage at least one of apiServer, controllerManager, scheduler"
    )]
    NothingManaged,
    /// A value could not be turned into YAML.
    #[error("{field}: cannot be written as YAML: {reason}")]
    Yaml {
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },
}

/// Where side files of a component live on the node.
pub fn files_dir(state_dir: &str, component: Component) -> String {
    format!(
        "{}/files/{}",
        state_dir.trim_end_matches('/'),
        component.name()
    )
}

/// Whether the spec manages a component (`managed` defaults to `true`).
pub fn is_managed(spec: &ControlPlaneConfigSpec, component: Component) -> bool {
    settings(spec, component).managed.unwrap_or(true)
}

/// The settings every component shares (empty when the spec has none for it).
pub fn settings(spec: &ControlPlaneConfigSpec, component: Component) -> CommonSettings<'_> {
    let common = match component {
        Component::ApiServer => spec.api_server.as_ref().map(|a| a.common()),
        Component::ControllerManager => spec.controller_manager.as_ref().map(|c| c.common()),
        Component::Scheduler => spec.scheduler.as_ref().map(|s| s.common()),
    };
    common.unwrap_or_default()
}

/// The encryption Secret reference with defaults applied: the user's Secret (`secretRef`), or
/// the keys Secret kubeplane manages (`managed`, its rendered configuration's key).
pub fn encryption_secret(spec: &ControlPlaneConfigSpec) -> Option<SecretKeyRef> {
    let e = spec.api_server.as_ref()?.encryption.as_ref()?;
    if let Some(m) = &e.managed {
        return Some(SecretKeyRef {
            name: crate::encryption::Desired::from_spec(m).secret_name,
            namespace: Some(defaults::NAMESPACE.to_string()),
            key: Some(crate::encryption::CONFIG_KEY.to_string()),
        });
    }
    let r = e.secret_ref.as_ref()?;
    Some(SecretKeyRef {
        name: r.name.clone(),
        namespace: Some(
            r.namespace
                .clone()
                .unwrap_or_else(|| defaults::ENCRYPTION_SECRET_NAMESPACE.to_string()),
        ),
        key: Some(
            r.key
                .clone()
                .unwrap_or_else(|| defaults::ENCRYPTION_SECRET_KEY.to_string()),
        ),
    })
}

/// The address kube-apiserver on this node advertises: the spec's per-node value, else the
/// node's reported one.
pub fn advertise_address(spec: &ControlPlaneConfigSpec, node: &NodeFacts) -> Option<String> {
    spec.nodes
        .iter()
        .find(|n| n.name == node.node_name)
        .and_then(|n| n.advertise_address.clone())
        .or_else(|| node.advertise_address.clone())
}

/// Renders every managed component for one node.
pub fn render(input: &RenderInput<'_>) -> Result<Rendered, RenderError> {
    let spec = input.spec;
    if input.node.node_name.is_empty() {
        return Err(RenderError::NoNodeName);
    }
    let version = KubeVersion::parse(&spec.kubernetes_version)?;
    let ctx = Context::new(input, version);
    let mut out = Rendered {
        pods: Vec::new(),
        files: Vec::new(),
        certificates: Vec::new(),
        warnings: Vec::new(),
    };
    for component in Component::ALL {
        if !is_managed(spec, component) {
            continue;
        }
        let plan = match component {
            Component::ApiServer => ctx.api_server(&mut out)?,
            Component::ControllerManager => ctx.controller_manager(),
            Component::Scheduler => ctx.scheduler(),
        };
        out.pods
            .push(ctx.finish(component, plan, &mut out.certificates)?);
    }
    if out.pods.is_empty() {
        return Err(RenderError::NothingManaged);
    }
    out.certificates.sort();
    out.certificates.dedup();
    Ok(out)
}

/// Seconds a component may take to become healthy before the agent rolls back.
pub fn health_timeout_seconds(spec: &ControlPlaneConfigSpec, component: Component) -> i32 {
    let t = spec
        .rollout
        .as_ref()
        .and_then(|r| r.health_timeout_seconds)
        .unwrap_or_default();
    match component {
        Component::ApiServer => t.api_server,
        Component::ControllerManager => t.controller_manager,
        Component::Scheduler => t.scheduler,
    }
    .unwrap_or(defaults::HEALTH_TIMEOUT_SECONDS)
}

/// Seconds every updated component must stay healthy.
pub fn min_ready_seconds(spec: &ControlPlaneConfigSpec) -> i32 {
    spec.rollout
        .as_ref()
        .and_then(|r| r.min_ready_seconds)
        .unwrap_or(defaults::MIN_READY_SECONDS)
}

/// The revision the operator gives `spec` on nodes reporting `nodes` (each with its
/// `node_name`): every node rendered, then [`revision_of`]. For tools that predict it (the e2e
/// suite); the operator renders once and keeps the output.
pub fn revision_for(
    spec: &ControlPlaneConfigSpec,
    encryption_config_sha256: Option<&str>,
    nodes: &[NodeFacts],
) -> Result<String, RenderError> {
    let rendered = nodes
        .iter()
        .map(|n| {
            render(&RenderInput {
                spec,
                node: n,
                encryption_config_sha256,
            })
            .map(|r| (n.node_name.as_str(), r))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(revision_of(rendered.iter().map(|(n, r)| (*n, r))))
}

/// Seconds a node may stay in flight before the rollout is reported as stuck: the spec's
/// `rollout.progressDeadlineSeconds`, else [`defaults::PROGRESS_DEADLINE_SECONDS`] or, when
/// longer, the longest health timeout plus `minReadySeconds` (a default must not call a node
/// stuck while its agent still legitimately waits).
pub fn progress_deadline_seconds(spec: &ControlPlaneConfigSpec) -> i32 {
    spec.rollout
        .as_ref()
        .and_then(|r| r.progress_deadline_seconds)
        .unwrap_or_else(|| defaults::PROGRESS_DEADLINE_SECONDS.max(longest_wait_seconds(spec)))
}

/// The longest health timeout of a component plus `minReadySeconds`: the longest a healthy
/// update of one component may take.
pub fn longest_wait_seconds(spec: &ControlPlaneConfigSpec) -> i32 {
    Component::ALL
        .iter()
        .map(|c| health_timeout_seconds(spec, *c))
        .max()
        .unwrap_or(defaults::HEALTH_TIMEOUT_SECONDS)
        .saturating_add(min_ready_seconds(spec))
}

/// The `ControlPlaneNode` spec that carries a render to a node: manifests in apply order
/// (kube-apiserver first), side files, certificate files, and the rollout timing. The
/// operator writes it; `kubeplane apply` hands it to the agent's engine directly.
pub fn node_spec(
    config_name: &str,
    spec: &ControlPlaneConfigSpec,
    revision: &str,
    rendered: &Rendered,
) -> ControlPlaneNodeSpec {
    ControlPlaneNodeSpec {
        config_name: config_name.to_string(),
        revision: revision.to_string(),
        kubernetes_version: spec.kubernetes_version.clone(),
        manifests: rendered
            .pods
            .iter()
            .map(|p| RenderedManifest {
                component: p.component,
                file_name: p.component.manifest_file().to_string(),
                config_hash: p.uid.clone(),
                content: p.yaml.clone(),
                health_timeout_seconds: health_timeout_seconds(spec, p.component),
            })
            .collect(),
        files: rendered.files.clone(),
        certificates: rendered.certificates.clone(),
        min_ready_seconds: min_ready_seconds(spec),
        image_pull_secrets: spec.image_pull_secrets.clone(),
    }
}

/// One component's flags, mounts and annotations before they become a Pod.
struct Plan {
    flags: Vec<Flag>,
    mounts: Vec<Mount>,
    annotations: BTreeMap<String, String>,
    probe: ProbeTarget,
}

struct Context<'a> {
    input: &'a RenderInput<'a>,
    spec: &'a ControlPlaneConfigSpec,
    version: KubeVersion,
    certs: String,
    state_dir: String,
}

impl<'a> Context<'a> {
    fn new(input: &'a RenderInput<'a>, version: KubeVersion) -> Self {
        let spec = input.spec;
        Context {
            input,
            spec,
            version,
            certs: spec
                .certificates_dir
                .clone()
                .unwrap_or_else(|| defaults::CERTIFICATES_DIR.to_string())
                .trim_end_matches('/')
                .to_string(),
            state_dir: input
                .node
                .state_dir
                .clone()
                .unwrap_or_else(|| defaults::STATE_DIR.to_string()),
        }
    }

    fn settings(&self, component: Component) -> CommonSettings<'a> {
        settings(self.spec, component)
    }

    fn cert(&self, file: &str) -> String {
        format!("{}/{file}", self.certs)
    }

    /// kube-apiserver's secure port (`spec.apiServer.securePort`).
    fn secure_port(&self) -> i32 {
        self.spec
            .api_server
            .as_ref()
            .and_then(|a| a.secure_port)
            .unwrap_or(defaults::API_SERVER_PORT)
    }

    /// The kubeconfig of kube-controller-manager or kube-scheduler (kube-apiserver has none).
    fn kubeconfig(&self, component: Component) -> String {
        let (set, default) = match component {
            Component::ApiServer => (None, ""),
            Component::ControllerManager => (
                self.spec
                    .controller_manager
                    .as_ref()
                    .and_then(|c| c.kubeconfig.as_ref()),
                defaults::CONTROLLER_MANAGER_KUBECONFIG,
            ),
            Component::Scheduler => (
                self.spec
                    .scheduler
                    .as_ref()
                    .and_then(|c| c.kubeconfig.as_ref()),
                defaults::SCHEDULER_KUBECONFIG,
            ),
        };
        set.cloned().unwrap_or_else(|| default.to_string())
    }

    /// kubeadm's default flags of a component ([`defaults::default_flags`]) with this spec's
    /// values, in table order; `advertise` is kube-apiserver's advertise address.
    fn default_flags(&self, component: Component, advertise: Option<&str>) -> Vec<Flag> {
        let networking = self.spec.networking.as_ref();
        let external_etcd = self
            .spec
            .etcd
            .as_ref()
            .is_some_and(|e| e.external.is_some());
        let pod_subnet = networking.and_then(|n| n.pod_subnet.clone());
        defaults::default_flags(component)
            .iter()
            .filter(|f| match f.when {
                When::Always => true,
                When::LocalEtcd => !external_etcd,
                When::PodSubnet => pod_subnet.is_some(),
            })
            .map(|f| {
                let value = match f.value {
                    DefaultValue::Literal(v) => v.to_string(),
                    DefaultValue::Cert(file) => self.cert(file),
                    DefaultValue::Kubeconfig => self.kubeconfig(component),
                    DefaultValue::AdvertiseAddress => advertise.unwrap_or_default().to_string(),
                    DefaultValue::SecurePort => self.secure_port().to_string(),
                    DefaultValue::ServiceAccountIssuer => format!(
                        "https://kubernetes.default.svc.{}",
                        networking
                            .and_then(|n| n.dns_domain.as_deref())
                            .unwrap_or(defaults::DNS_DOMAIN)
                    ),
                    DefaultValue::ServiceSubnet => self.service_subnet(),
                    DefaultValue::PodSubnet => pod_subnet.clone().unwrap_or_default(),
                    DefaultValue::ClusterName => self
                        .spec
                        .cluster_name
                        .clone()
                        .unwrap_or_else(|| defaults::CLUSTER_NAME.to_string()),
                };
                (f.name.to_string(), value)
            })
            .collect()
    }

    fn service_subnet(&self) -> String {
        self.spec
            .networking
            .as_ref()
            .and_then(|n| n.service_subnet.clone())
            .unwrap_or_else(|| defaults::SERVICE_SUBNET.to_string())
    }

    /// Mounts kube-apiserver and kube-controller-manager share: the certificates directory,
    /// `/etc/ssl/certs`, and each optional CA directory the node has.
    fn ca_mounts(&self) -> Vec<Mount> {
        let dir = HostPathType::DirectoryOrCreate;
        let mut mounts = vec![
            Mount::same_path("k8s-certs", &self.certs, true, dir),
            Mount::same_path("ca-certs", defaults::CA_CERTS_DIR, true, dir),
        ];
        for path in defaults::OPTIONAL_CA_DIRS {
            if self
                .input
                .node
                .host_ca_directories
                .iter()
                .any(|d| d == path)
            {
                // kubeadm names the volume after the path: /etc/pki/ca-trust → etc-pki-ca-trust.
                let name = path.trim_start_matches('/').replace('/', "-");
                mounts.push(Mount::same_path(&name, path, true, dir));
            }
        }
        mounts
    }

    fn extra_mounts(&self, component: Component) -> Vec<Mount> {
        self.settings(component)
            .extra_volumes
            .iter()
            .map(|v| Mount {
                name: v.name.clone(),
                host_path: v.host_path.clone(),
                mount_path: v.mount_path.clone(),
                read_only: v.read_only.unwrap_or(false),
                path_type: v.path_type.unwrap_or(HostPathType::DirectoryOrCreate),
            })
            .collect()
    }

    /// Plan of a component probed on its bind address (kube-controller-manager,
    /// kube-scheduler).
    fn local_plan(
        &self,
        component: Component,
        flags: Vec<Flag>,
        mounts: Vec<Mount>,
        default_port: i32,
        live_path: &'static str,
        ready_path: Option<&'static str>,
    ) -> Plan {
        let host = probe_host(last_value(&flags, "bind-address").unwrap_or("127.0.0.1"));
        let port = last_value(&flags, "secure-port")
            .and_then(|p| p.parse().ok())
            .unwrap_or(default_port);
        Plan {
            mounts: merge_mounts(mounts, self.extra_mounts(component)),
            flags,
            annotations: BTreeMap::new(),
            probe: ProbeTarget {
                host,
                port,
                live_path,
                ready_path,
            },
        }
    }

    fn finish(
        &self,
        component: Component,
        plan: Plan,
        certificates: &mut Vec<CertificateRef>,
    ) -> Result<RenderedPod, RenderError> {
        for (flag, kind) in certificate_flags(component) {
            for (name, value) in &plan.flags {
                if name == flag
                    && let Some(path) = pod::host_path_of(&plan.mounts, value)
                {
                    certificates.push(CertificateRef {
                        component,
                        flag: flag.to_string(),
                        path,
                        kubeconfig: *kind == CertFile::Kubeconfig,
                    });
                }
            }
        }
        let settings = self.settings(component);
        let image_repository = self
            .spec
            .image_repository
            .as_deref()
            .unwrap_or(defaults::IMAGE_REPOSITORY)
            .trim_end_matches('/');
        let pull_policy = self
            .spec
            .image_pull_policy
            .map(|p| p.as_str())
            .unwrap_or("IfNotPresent");
        let mut pod = pod::build(PodParts {
            component,
            image: format!(
                "{image_repository}/{}:{}",
                component.name(),
                self.version.tag()
            ),
            pull_policy,
            flags: &plan.flags,
            mounts: &plan.mounts,
            probe: plan.probe,
            startup: defaults::startup(
                self.spec
                    .rollout
                    .as_ref()
                    .and_then(|r| r.probe_profile)
                    .unwrap_or_default(),
            ),
            settings,
            annotations: plan.annotations,
        });
        let uid = stamp_uid(&mut pod, &self.input.node.node_name);
        let yaml = pod_to_yaml(&pod).map_err(|reason| RenderError::Yaml {
            field: format!("{} Pod", component.name()),
            reason,
        })?;
        Ok(RenderedPod {
            component,
            pod,
            uid,
            yaml,
        })
    }
}

/// The probe host for a bind or advertise address: the unspecified address cannot be
/// probed, so kubelet's default (the Pod IP) is used instead, as kubeadm does.
fn probe_host(addr: &str) -> Option<String> {
    match addr {
        "0.0.0.0" | "::" | "" => None,
        a => Some(a.to_string()),
    }
}

fn host_port(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn parent_dir(path: &str) -> String {
    match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) => "/".to_string(),
        Some((dir, _)) => dir.to_string(),
        None => ".".to_string(),
    }
}

#[cfg(test)]
mod tests;
