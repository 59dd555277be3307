//! Files of the hard-way import: kubeconfigs and the files they name, CA certificates,
//! service-account keys, and the volumes that mount them.

use super::*;

/// The files a kubeconfig names by path (`certificate-authority`, `client-certificate`,
/// `client-key`, `tokenFile`; relative ones against the kubeconfig's directory) and its
/// servers. A kubeconfig that does not parse names nothing.
pub fn kubeconfig_refs(path: &str, text: &str) -> (Vec<(String, String)>, Vec<String>) {
    let Ok(doc) = serde_saphyr::from_str::<serde_json::Value>(text) else {
        return (Vec::new(), Vec::new());
    };
    let dir = parent(path);
    let mut files = Vec::new();
    let mut servers = Vec::new();
    let list = |key: &str| {
        doc.get(key)
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default()
    };
    let mut take = |obj: Option<&serde_json::Value>, keys: &[&str]| {
        for k in keys {
            if let Some(p) = obj.and_then(|o| o.get(*k)).and_then(|v| v.as_str()) {
                if p.is_empty() {
                    continue;
                }
                let abs = if p.starts_with('/') {
                    p.to_string()
                } else {
                    format!("{}/{p}", dir.trim_end_matches('/'))
                };
                files.push((k.to_string(), abs));
            }
        }
    };
    for c in list("clusters") {
        let cluster = c.get("cluster");
        take(cluster, &["certificate-authority"]);
        if let Some(s) = cluster
            .and_then(|x| x.get("server"))
            .and_then(|v| v.as_str())
        {
            servers.push(s.to_string());
        }
    }
    for u in list("users") {
        take(
            u.get("user"),
            &["client-certificate", "client-key", "tokenFile"],
        );
    }
    (files, servers)
}

/// Whether a PEM file's first certificate is a CA certificate.
pub fn is_ca_certificate(pem: &[u8]) -> bool {
    x509_parser::pem::parse_x509_pem(pem)
        .ok()
        .and_then(|(_, p)| p.parse_x509().ok().map(|c| c.is_ca()))
        .unwrap_or(false)
}

/// The CA files a service-account key must not be.
pub(super) const CA_FLAGS: &[&str] = &[
    "client-ca-file",
    "requestheader-client-ca-file",
    "kubelet-certificate-authority",
    "etcd-cafile",
    "cluster-signing-cert-file",
    "root-ca-file",
];

/// The private half of a public key or certificate file by common naming: `x.pem` →
/// `x-key.pem` (cfssl), `x.pub`/`x.crt` → `x.key`.
pub(super) fn private_half(public: &str) -> Option<String> {
    if let Some(stem) = public.strip_suffix("-pub.pem") {
        return Some(format!("{stem}-key.pem"));
    }
    if let Some(stem) = public.strip_suffix(".pem") {
        return Some(format!("{stem}-key.pem"));
    }
    if let Some(stem) = public
        .strip_suffix(".pub")
        .or_else(|| public.strip_suffix(".crt"))
    {
        return Some(format!("{stem}.key"));
    }
    None
}

pub(super) fn volume_name(path: &str, taken: &[String]) -> String {
    let mut base: String = path
        .trim_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while base.contains("--") {
        base = base.replace("--", "-");
    }
    let mut base = base.trim_matches('-').to_string();
    if base.is_empty() {
        base = "host".into();
    }
    base.truncate(55);
    let base = base.trim_end_matches('-').to_string();
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

pub(super) fn parent(path: &str) -> String {
    match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) | None => "/".into(),
        Some((d, _)) => d.to_string(),
    }
}

pub(super) fn covers(dir: &str, path: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    dir.is_empty() || path == dir || path.starts_with(&format!("{dir}/"))
}

pub(super) fn pod_mounts(p: &Pod) -> Vec<(String, String, bool)> {
    p.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.volume_mounts.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|m| (m.name, m.mount_path, m.read_only.unwrap_or(false)))
        .collect()
}

/// Sets the settings every component shares.
pub(super) fn set_common(
    spec: &mut ControlPlaneConfigSpec,
    c: Component,
    args: Vec<Arg>,
    protected: Vec<FlagName>,
    volumes: Option<Vec<HostPathVolume>>,
    env: Option<Vec<EnvVar>>,
) {
    macro_rules! apply {
        ($s:expr) => {{
            let s = $s.get_or_insert_with(Default::default);
            s.extra_args = args;
            s.allow_protected_overrides = protected;
            if let Some(v) = volumes {
                s.extra_volumes = v;
            }
            if let Some(e) = env {
                s.extra_env = e;
            }
        }};
    }
    match c {
        Component::ApiServer => apply!(spec.api_server),
        Component::ControllerManager => apply!(spec.controller_manager),
        Component::Scheduler => apply!(spec.scheduler),
    }
}

pub(super) fn set_unmanaged(spec: &mut ControlPlaneConfigSpec, c: Component) {
    match c {
        Component::ApiServer => {
            spec.api_server.get_or_insert_with(Default::default).managed = Some(false)
        }
        Component::ControllerManager => {
            spec.controller_manager
                .get_or_insert_with(Default::default)
                .managed = Some(false)
        }
        Component::Scheduler => {
            spec.scheduler.get_or_insert_with(Default::default).managed = Some(false)
        }
    }
}
