//! The renderer: a pure function from a `ControlPlaneConfig` spec and one node's facts to
//! the static Pods and side files that node should hold. No I/O, no async; the same input
//! gives byte-identical output.

pub mod args;
pub mod defaults;
pub mod equivalence;
mod hash;
pub mod pod;
mod yaml;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

pub use equivalence::{equivalent, normalize};
pub use hash::{RENDERER_VERSION, pod_uid, revision, revision_of, sha256_hex, stamp_uid};
pub use yaml::{pod_to_yaml, to_yaml};

use self::args::{Flag, combine, last_value};
use self::pod::{Mount, PodParts, ProbeTarget, merge_mounts};
use crate::api::{
    CertificateRef, CommonSettings, Component, ControlPlaneConfigSpec, ControlPlaneNodeSpec,
    FileSource, HostPathType, NodeFacts, RenderedFile, RenderedManifest, SecretKeyRef,
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

/// The encryption Secret reference with defaults applied.
pub fn encryption_secret(spec: &ControlPlaneConfigSpec) -> Option<SecretKeyRef> {
    let e = spec.api_server.as_ref()?.encryption.as_ref()?;
    Some(SecretKeyRef {
        name: e.secret_ref.name.clone(),
        namespace: Some(
            e.secret_ref
                .namespace
                .clone()
                .unwrap_or_else(|| defaults::ENCRYPTION_SECRET_NAMESPACE.to_string()),
        ),
        key: Some(
            e.secret_ref
                .key
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

    fn api_server(&self, out: &mut Rendered) -> Result<Plan, RenderError> {
        let spec = self.spec;
        let api = spec.api_server.clone().unwrap_or_default();
        let advertise = advertise_address(spec, self.input.node).ok_or_else(|| {
            RenderError::NoAdvertiseAddress {
                node: self.input.node.node_name.clone(),
            }
        })?;
        let port = api.secure_port.unwrap_or(defaults::API_SERVER_PORT);
        let dns_domain = spec
            .networking
            .as_ref()
            .and_then(|n| n.dns_domain.clone())
            .unwrap_or_else(|| defaults::DNS_DOMAIN.to_string());
        let s = |v: &str| v.to_string();
        let mut flags: Vec<Flag> = vec![
            (s("advertise-address"), advertise.clone()),
            (s("allow-privileged"), s("true")),
            (s("authorization-mode"), s("Node,RBAC")),
            (s("client-ca-file"), self.cert("ca.crt")),
            (s("enable-admission-plugins"), s("NodeRestriction")),
            (s("enable-bootstrap-token-auth"), s("true")),
            (
                s("kubelet-client-certificate"),
                self.cert("apiserver-kubelet-client.crt"),
            ),
            (
                s("kubelet-client-key"),
                self.cert("apiserver-kubelet-client.key"),
            ),
            (
                s("kubelet-preferred-address-types"),
                s("InternalIP,ExternalIP,Hostname"),
            ),
            (
                s("proxy-client-cert-file"),
                self.cert("front-proxy-client.crt"),
            ),
            (
                s("proxy-client-key-file"),
                self.cert("front-proxy-client.key"),
            ),
            (s("requestheader-allowed-names"), s("front-proxy-client")),
            (
                s("requestheader-client-ca-file"),
                self.cert("front-proxy-ca.crt"),
            ),
            (
                s("requestheader-extra-headers-prefix"),
                s("X-Remote-Extra-"),
            ),
            (s("requestheader-group-headers"), s("X-Remote-Group")),
            (s("requestheader-username-headers"), s("X-Remote-User")),
            (s("secure-port"), port.to_string()),
            (
                s("service-account-issuer"),
                format!("https://kubernetes.default.svc.{dns_domain}"),
            ),
            (s("service-account-key-file"), self.cert("sa.pub")),
            (s("service-account-signing-key-file"), self.cert("sa.key")),
            (s("service-cluster-ip-range"), self.service_subnet()),
            (s("tls-cert-file"), self.cert("apiserver.crt")),
            (s("tls-private-key-file"), self.cert("apiserver.key")),
        ];
        let mut mounts = self.ca_mounts();

        // etcd: kubeadm's local member, or the external cluster.
        match spec.etcd.as_ref().and_then(|e| e.external.as_ref()) {
            None => {
                flags.push((s("etcd-servers"), s(defaults::LOCAL_ETCD_SERVER)));
                flags.push((s("etcd-cafile"), self.cert("etcd/ca.crt")));
                flags.push((s("etcd-certfile"), self.cert("apiserver-etcd-client.crt")));
                flags.push((s("etcd-keyfile"), self.cert("apiserver-etcd-client.key")));
            }
            Some(ext) => {
                let servers: Vec<&str> = ext.endpoints.iter().map(|e| &**e).collect();
                flags.push((s("etcd-servers"), servers.join(",")));
                let files = [
                    ("etcd-cafile", &ext.ca_file),
                    ("etcd-certfile", &ext.cert_file),
                    ("etcd-keyfile", &ext.key_file),
                ];
                for (flag, file) in files {
                    if let Some(f) = file {
                        flags.push((s(flag), f.clone()));
                    }
                }
                mounts.extend(
                    self.etcd_cert_mounts(files.iter().filter_map(|(_, f)| f.as_deref()), &mounts),
                );
            }
        }

        if let Some(range) = spec
            .networking
            .as_ref()
            .and_then(|n| n.service_node_port_range.clone())
        {
            flags.push((s("service-node-port-range"), range));
        }

        let mut annotations = BTreeMap::from([(
            "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint".to_string(),
            host_port(&advertise, port),
        )]);
        let files_dir = files_dir(&self.state_dir, Component::ApiServer);
        let mut uses_files_dir = false;

        if let Some(audit) = &api.audit {
            let path = format!("{files_dir}/audit-policy.yaml");
            let content = to_yaml(&audit.policy).map_err(|reason| RenderError::Yaml {
                field: "spec.apiServer.audit.policy".into(),
                reason,
            })?;
            let digest = sha256_hex(content.as_bytes());
            annotations.insert("kubeplane.io/audit-policy-sha256".into(), digest.clone());
            out.files.push(RenderedFile {
                component: Component::ApiServer,
                path: path.clone(),
                source: FileSource::Inline(content),
                sha256: digest,
            });
            uses_files_dir = true;
            flags.push((s("audit-policy-file"), path));
            let log_path = audit
                .log_path
                .clone()
                .unwrap_or_else(|| defaults::AUDIT_LOG_PATH.to_string());
            if log_path != "-" {
                let dir = parent_dir(&log_path);
                mounts.push(Mount::same_path(
                    "audit-log",
                    &dir,
                    false,
                    HostPathType::DirectoryOrCreate,
                ));
            }
            flags.push((s("audit-log-path"), log_path));
            let limits = [
                ("audit-log-maxage", audit.max_age),
                ("audit-log-maxbackup", audit.max_backup),
                ("audit-log-maxsize", audit.max_size),
            ];
            for (flag, value) in limits {
                if let Some(v) = value {
                    flags.push((s(flag), v.to_string()));
                }
            }
        }

        if let Some(secret) = encryption_secret(spec) {
            let path = format!("{files_dir}/encryption-config.yaml");
            let digest = match self.input.encryption_config_sha256 {
                Some(d) => d.to_string(),
                None => {
                    out.warnings.push(format!(
                        "the content of Secret {}/{} (key {}) is unknown here, so the kube-apiserver config hash is provisional; the agent reads the Secret on the node",
                        secret.namespace.as_deref().unwrap_or_default(),
                        secret.name,
                        secret.key.as_deref().unwrap_or_default()
                    ));
                    "unresolved".to_string()
                }
            };
            annotations.insert(
                "kubeplane.io/encryption-config-sha256".into(),
                digest.clone(),
            );
            out.files.push(RenderedFile {
                component: Component::ApiServer,
                path: path.clone(),
                source: FileSource::Secret(secret),
                sha256: digest,
            });
            uses_files_dir = true;
            flags.push((s("encryption-provider-config"), path));
        }

        if uses_files_dir {
            mounts.push(Mount::same_path(
                "kubeplane-files",
                &files_dir,
                true,
                HostPathType::DirectoryOrCreate,
            ));
        }

        let settings = self.settings(Component::ApiServer);
        let flags = combine(Component::ApiServer, flags, settings.extra_args);
        let host = last_value(&flags, "advertise-address")
            .map(probe_host)
            .unwrap_or_else(|| Some(advertise.clone()));
        let port = last_value(&flags, "secure-port")
            .and_then(|p| p.parse().ok())
            .unwrap_or(port);
        Ok(Plan {
            mounts: merge_mounts(mounts, self.extra_mounts(Component::ApiServer)),
            flags,
            annotations,
            probe: ProbeTarget {
                host,
                port,
                live_path: "/livez",
                ready_path: Some("/readyz"),
            },
        })
    }

    /// kubeadm's `getEtcdCertVolumes`: one read-only mount per directory holding an etcd
    /// TLS file that no other mount covers, named `etcd-certs-N` in path order.
    fn etcd_cert_mounts<'f>(
        &self,
        files: impl Iterator<Item = &'f str>,
        existing: &[Mount],
    ) -> Vec<Mount> {
        let mut dirs: Vec<String> = Vec::new();
        for file in files {
            let dir = parent_dir(file);
            if existing
                .iter()
                .any(|m| pod::strip_dir_prefix(&dir, &m.mount_path).is_some())
            {
                continue;
            }
            if dirs
                .iter()
                .any(|d| pod::strip_dir_prefix(&dir, d).is_some())
            {
                continue;
            }
            dirs.retain(|d| pod::strip_dir_prefix(d, &dir).is_none());
            dirs.push(dir);
        }
        dirs.sort();
        dirs.iter()
            .enumerate()
            .map(|(i, d)| {
                Mount::same_path(
                    &format!("etcd-certs-{i}"),
                    d,
                    true,
                    HostPathType::DirectoryOrCreate,
                )
            })
            .collect()
    }

    fn controller_manager(&self) -> Plan {
        let spec = self.spec;
        let kubeconfig = spec
            .controller_manager
            .as_ref()
            .and_then(|c| c.kubeconfig.clone())
            .unwrap_or_else(|| defaults::CONTROLLER_MANAGER_KUBECONFIG.to_string());
        let s = |v: &str| v.to_string();
        let mut flags: Vec<Flag> = vec![
            (s("authentication-kubeconfig"), kubeconfig.clone()),
            (s("authorization-kubeconfig"), kubeconfig.clone()),
            (s("bind-address"), s("127.0.0.1")),
            (s("client-ca-file"), self.cert("ca.crt")),
            (
                s("cluster-name"),
                spec.cluster_name
                    .clone()
                    .unwrap_or_else(|| defaults::CLUSTER_NAME.to_string()),
            ),
            (s("cluster-signing-cert-file"), self.cert("ca.crt")),
            (s("cluster-signing-key-file"), self.cert("ca.key")),
            (s("controllers"), s("*,bootstrapsigner,tokencleaner")),
            (s("kubeconfig"), kubeconfig.clone()),
            (s("leader-elect"), s("true")),
            (
                s("requestheader-client-ca-file"),
                self.cert("front-proxy-ca.crt"),
            ),
            (s("root-ca-file"), self.cert("ca.crt")),
            (s("service-account-private-key-file"), self.cert("sa.key")),
            (s("use-service-account-credentials"), s("true")),
        ];
        // kubeadm: with a Pod network CIDR, the controller manager allocates node CIDRs.
        if let Some(pods) = spec.networking.as_ref().and_then(|n| n.pod_subnet.clone()) {
            flags.push((s("allocate-node-cidrs"), s("true")));
            flags.push((s("cluster-cidr"), pods));
            flags.push((s("service-cluster-ip-range"), self.service_subnet()));
        }
        let mut mounts = self.ca_mounts();
        mounts.push(Mount::same_path(
            "kubeconfig",
            &kubeconfig,
            true,
            HostPathType::FileOrCreate,
        ));
        let settings = self.settings(Component::ControllerManager);
        let flags = combine(Component::ControllerManager, flags, settings.extra_args);
        // A FlexVolume plugin directory given by flag is mounted read-write, as kubeadm does.
        if let Some(dir) = last_value(&flags, "flex-volume-plugin-dir") {
            mounts.push(Mount::same_path(
                "flexvolume-dir",
                dir,
                false,
                HostPathType::DirectoryOrCreate,
            ));
        }
        self.local_plan(
            Component::ControllerManager,
            flags,
            mounts,
            defaults::CONTROLLER_MANAGER_PORT,
            "/healthz",
            None,
        )
    }

    fn scheduler(&self) -> Plan {
        let kubeconfig = self
            .spec
            .scheduler
            .as_ref()
            .and_then(|c| c.kubeconfig.clone())
            .unwrap_or_else(|| defaults::SCHEDULER_KUBECONFIG.to_string());
        let s = |v: &str| v.to_string();
        let flags: Vec<Flag> = vec![
            (s("authentication-kubeconfig"), kubeconfig.clone()),
            (s("authorization-kubeconfig"), kubeconfig.clone()),
            (s("bind-address"), s("127.0.0.1")),
            (s("kubeconfig"), kubeconfig.clone()),
            (s("leader-elect"), s("true")),
        ];
        let mounts = vec![Mount::same_path(
            "kubeconfig",
            &kubeconfig,
            true,
            HostPathType::FileOrCreate,
        )];
        let settings = self.settings(Component::Scheduler);
        let flags = combine(Component::Scheduler, flags, settings.extra_args);
        self.local_plan(
            Component::Scheduler,
            flags,
            mounts,
            defaults::SCHEDULER_PORT,
            "/livez",
            Some("/readyz"),
        )
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
