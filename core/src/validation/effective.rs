//! What each component would really run with: the renderer's output for a synthetic node,
//! read back as flags and mounts. Defaults live once, in the renderer; validation asks it
//! instead of knowing them a second time.

use crate::api::{Component, ControlPlaneConfigSpec, NodeFacts};
use crate::render::{self, RenderError, RenderInput, defaults};

/// Name of the node validation renders for. Per-node settings of `spec.nodes` do not change
/// any flag validation looks at, except the advertise address, which it does not check here.
const SYNTHETIC_NODE: &str = "kubeplane-validation";
/// An address from TEST-NET-1 (RFC 5737), used as the synthetic node's advertise address.
const SYNTHETIC_ADDRESS: &str = "192.0.2.1";

/// One mount of a component's container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct MountPoint {
    /// Path in the container.
    pub mount_path: String,
    /// Path on the host.
    pub host_path: String,
}

/// One component as rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct EffectivePod {
    /// The component.
    pub component: Component,
    /// Its command-line flags after defaults and `extraArgs` were combined, in order.
    pub flags: Vec<(String, String)>,
    /// Its container's hostPath mounts.
    pub mounts: Vec<MountPoint>,
}

impl EffectivePod {
    /// The value the component would use: the last one given.
    pub fn last(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a flag, in order.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.flags
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The mount that makes `path` (absolute, in the container) visible, if any.
    pub fn mount_covering(&self, path: &str) -> Option<&MountPoint> {
        self.mounts
            .iter()
            .filter(|m| covers(&m.mount_path, path))
            .max_by_key(|m| m.mount_path.len())
    }
}

/// Whether a mount at `mount_path` makes `path` visible.
fn covers(mount_path: &str, path: &str) -> bool {
    let mount = mount_path.trim_end_matches('/');
    mount.is_empty()
        || path == mount
        || path
            .strip_prefix(mount)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Every managed component as rendered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Effective {
    /// The rendered components, kube-apiserver first.
    pub pods: Vec<EffectivePod>,
}

impl Effective {
    /// A component, when it is managed.
    pub fn pod(&self, component: Component) -> Option<&EffectivePod> {
        self.pods.iter().find(|p| p.component == component)
    }
}

/// Renders the spec for a synthetic node that has every optional CA directory (so a flag
/// pointing into one of them is not refused here; nodes without that directory will not have
/// the file either, which the agent reports).
pub(super) fn render_effective(spec: &ControlPlaneConfigSpec) -> Result<Effective, RenderError> {
    let node = NodeFacts {
        node_name: SYNTHETIC_NODE.to_string(),
        advertise_address: Some(SYNTHETIC_ADDRESS.to_string()),
        host_ca_directories: defaults::OPTIONAL_CA_DIRS
            .iter()
            .map(|d| d.to_string())
            .collect(),
        ..Default::default()
    };
    let rendered = render::render(&RenderInput {
        spec,
        node: &node,
        encryption_config_sha256: None,
    })?;
    let pods = rendered
        .pods
        .iter()
        .map(|p| {
            let pod_spec = p.pod.spec.clone().unwrap_or_default();
            let container = pod_spec.containers.first().cloned().unwrap_or_default();
            let flags = container
                .command
                .unwrap_or_default()
                .iter()
                .skip(1)
                .filter_map(|arg| {
                    let arg = arg.strip_prefix("--")?;
                    let (n, v) = arg.split_once('=').unwrap_or((arg, ""));
                    Some((n.to_string(), v.to_string()))
                })
                .collect();
            let volumes = pod_spec.volumes.unwrap_or_default();
            let mounts = container
                .volume_mounts
                .unwrap_or_default()
                .into_iter()
                .filter_map(|m| {
                    let host = volumes
                        .iter()
                        .find(|v| v.name == m.name)
                        .and_then(|v| v.host_path.as_ref())?;
                    Some(MountPoint {
                        mount_path: m.mount_path,
                        host_path: host.path.clone(),
                    })
                })
                .collect();
            EffectivePod {
                component: p.component,
                flags,
                mounts,
            }
        })
        .collect();
    Ok(Effective { pods })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_only_whole_path_components() {
        assert!(covers("/etc/kubernetes/pki", "/etc/kubernetes/pki/ca.crt"));
        assert!(covers("/etc/kubernetes/pki/", "/etc/kubernetes/pki/ca.crt"));
        assert!(covers("/etc/kubernetes/a.conf", "/etc/kubernetes/a.conf"));
        assert!(covers("/", "/anything"));
        assert!(!covers(
            "/etc/kubernetes/pki",
            "/etc/kubernetes/pki2/ca.crt"
        ));
        assert!(!covers("/etc/kubernetes/pki", "/etc/kubernetes"));
    }

    #[test]
    fn reads_back_the_default_render() {
        let spec = ControlPlaneConfigSpec {
            kubernetes_version: "v1.36.2".into(),
            ..Default::default()
        };
        let e = render_effective(&spec).unwrap();
        assert_eq!(e.pods.len(), 3);
        let api = e.pod(Component::ApiServer).unwrap();
        assert_eq!(api.last("secure-port"), Some("6443"));
        assert_eq!(api.last("authorization-mode"), Some("Node,RBAC"));
        assert!(api.mount_covering("/etc/kubernetes/pki/ca.crt").is_some());
        assert!(api.mount_covering("/var/lib/kubernetes/ca.crt").is_none());
        let sched = e.pod(Component::Scheduler).unwrap();
        assert!(
            sched
                .mount_covering("/etc/kubernetes/scheduler.conf")
                .is_some()
        );
        assert!(sched.mount_covering("/etc/kubernetes/pki/ca.crt").is_none());
    }
}
