//! What the fake kubelet reads of a manifest file, and a minimal static Pod manifest to give
//! it.

use k8s_openapi::api::core::v1::{Container, Probe};

use super::FakeKubeletOptions;
use crate::agent::files::parse_pod;
use crate::agent::health::Endpoint;

/// A pod as one manifest file describes it.
#[derive(Clone)]
pub(super) struct PodDesc {
    pub(super) file: String,
    /// `metadata.name`.
    pub(super) name: String,
    pub(super) uid: String,
    /// The Pod's spec, serialized: a change with the same uid restarts the container.
    pub(super) spec: String,
    pub(super) container: String,
    pub(super) endpoint: Option<(Endpoint, Vec<String>)>,
    pub(super) failing: bool,
}

/// Parses a file into what the fake needs of its Pod.
pub(super) fn describe(
    file: &str,
    bytes: &[u8],
    opts: &FakeKubeletOptions,
) -> Result<PodDesc, String> {
    let pod = parse_pod(bytes)?;
    let name = pod
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or("the Pod has no metadata.name")?;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let spec = pod.spec.as_ref().ok_or("the Pod has no spec")?;
    let first = spec.containers.first().ok_or("the Pod has no containers")?;
    let spec_json = serde_json::to_string(spec).map_err(|e| e.to_string())?;
    // A static pod without a uid gets one from its content (kubelet hashes the file).
    let uid = if uid.is_empty() {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(bytes);
        digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
    } else {
        uid
    };
    let endpoint = Endpoint::from_pod(&pod, "127.0.0.1").map(|e| {
        let paths = probe_paths(first);
        (e, paths)
    });
    Ok(PodDesc {
        file: file.to_string(),
        name,
        uid,
        spec: spec_json,
        container: first.name.clone(),
        endpoint,
        failing: (opts.is_failing)(&pod),
    })
}

/// Every HTTP path the container's probes ask for.
fn probe_paths(c: &Container) -> Vec<String> {
    let probes: [&Option<Probe>; 3] = [&c.startup_probe, &c.liveness_probe, &c.readiness_probe];
    let mut paths: Vec<String> = probes
        .into_iter()
        .flatten()
        .filter_map(|p| p.http_get.as_ref())
        .map(|g| g.path.clone().unwrap_or_else(|| "/".into()))
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

/// A minimal static Pod manifest as kubeadm writes them: one container `name` running
/// `name` with `args`, an HTTPS startup and liveness probe on 127.0.0.1:`port` `/livez`, a
/// readiness probe on `/readyz`. For tests of the fake and of code that only needs some Pod.
pub fn static_pod_yaml(name: &str, uid: &str, port: u16, args: &[&str]) -> String {
    let mut command = format!("    - {name}\n");
    for a in args {
        command.push_str(&format!("    - {a:?}\n"));
    }
    let probe = |path: &str| {
        format!(
            "      httpGet:\n        host: 127.0.0.1\n        path: {path}\n        port: {port}\n        scheme: HTTPS\n"
        )
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: kube-system\n  uid: {uid:?}\n\
         spec:\n  hostNetwork: true\n  containers:\n  - name: {name}\n    image: registry.k8s.io/{name}:v1.36.2\n    command:\n{command}\
         \x20   startupProbe:\n{}\x20   livenessProbe:\n{}\x20   readinessProbe:\n{}",
        probe("/livez"),
        probe("/livez"),
        probe("/readyz"),
    )
}
