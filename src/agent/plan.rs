//! The agent's plan for a node spec: per component, kube-apiserver first, *keep* (on disk and
//! confirmed), *wait* (on disk, not yet confirmed: a resumed attempt), *adopt* (an equivalent
//! manifest is already on disk: recorded, not rewritten, so nothing restarts), or *write*.
//! The [`Engine`](super::engine::Engine) carries it out; `kubeplane diff` prints it.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

use super::certs;
use super::engine::{parse_pod, timeout_of};
use super::files::NodeDirs;
use super::kubelet_wait::Expect;
use super::state::ComponentState;
use crate::api::{Component, ControlPlaneNodeSpec};
use crate::render::{self, sha256_hex};

/// What to do with one component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// On disk and confirmed: nothing.
    Keep,
    /// On disk, not confirmed: wait.
    Wait,
    /// Equivalent file on disk: record, wait on readiness.
    Adopt,
    /// Write the bytes, wait.
    Write,
}

/// One component's planned step.
#[derive(Clone, Debug)]
pub struct Step {
    /// The component.
    pub component: Component,
    /// What to do.
    pub action: Action,
    /// Bytes that will be on disk.
    pub bytes: Vec<u8>,
    /// The hash kubelet will report.
    pub expect: Expect,
    /// The rendered manifest's config hash.
    pub rendered_hash: String,
    /// The certificate-restart annotation the bytes carry, if any.
    pub restart_annotation: Option<String>,
    /// The Pod the bytes hold.
    pub pod: Pod,
    /// How long to wait for it.
    pub timeout: Duration,
}

/// Decides what to do with each component of `spec`, kube-apiserver first, from what is on
/// disk in `dirs` and what `state` (the components of `state.json`) says was written and
/// confirmed. Reads the managed manifests; writes nothing.
pub fn plan(
    spec: &ControlPlaneNodeSpec,
    state: &BTreeMap<Component, ComponentState>,
    node: &str,
    dirs: &NodeDirs,
) -> Result<Vec<Step>, String> {
    let mut manifests: Vec<_> = spec.manifests.iter().collect();
    manifests.sort_by_key(|m| m.component);
    let mut out = Vec::new();
    for m in manifests {
        let c = m.component;
        if m.file_name != c.manifest_file() {
            return Err(format!(
                "spec.manifests: {c} must be written as {}, not {:?}",
                c.manifest_file(),
                m.file_name
            ));
        }
        let rendered: Pod = parse_pod(m.content.as_bytes())
            .ok_or_else(|| format!("spec.manifests[{c}]: the content is not a Pod manifest"))?;
        let prev = state.get(&c);
        let annotation = prev
            .filter(|p| p.rendered_hash.as_deref() == Some(m.config_hash.as_str()))
            .and_then(|p| p.restart_annotation.clone());
        let (bytes, hash) = match &annotation {
            Some(v) => certs::with_restart_annotation(m.content.as_bytes(), v, node)
                .map_err(|e| format!("spec.manifests[{c}]: {e}"))?,
            None => (m.content.clone().into_bytes(), m.config_hash.clone()),
        };
        let disk = dirs
            .read_manifest(c.manifest_file())
            .map_err(|e| e.to_string())?;
        let timeout = timeout_of(m.health_timeout_seconds);
        let confirmed =
            |b: &[u8]| prev.is_some_and(|p| p.confirmed && p.content_sha256 == sha256_hex(b));
        let mut step = Step {
            component: c,
            action: Action::Write,
            bytes: bytes.clone(),
            expect: Expect::Hash(hash.clone()),
            rendered_hash: m.config_hash.clone(),
            restart_annotation: annotation.clone(),
            pod: parse_pod(&bytes).unwrap_or(rendered.clone()),
            timeout,
        };
        if disk.as_deref() == Some(bytes.as_slice()) {
            step.action = if confirmed(&bytes) {
                Action::Keep
            } else {
                Action::Wait
            };
        } else if let Some(d) = disk.as_deref()
            && let Some(on_disk) = parse_pod(d)
            && render::equivalent(&on_disk, &rendered)
        {
            let adopted_before = prev.filter(|p| {
                p.adopted
                    && p.rendered_hash.as_deref() == Some(m.config_hash.as_str())
                    && p.content_sha256 == sha256_hex(d)
            });
            step.bytes = d.to_vec();
            step.pod = on_disk;
            step.restart_annotation = None;
            step.expect = match adopted_before.and_then(|p| p.config_hash.clone()) {
                Some(h) => Expect::Hash(h),
                None => Expect::Any,
            };
            step.action = match adopted_before {
                Some(p) if p.confirmed => Action::Keep,
                Some(_) => Action::Wait,
                None => Action::Adopt,
            };
        }
        out.push(step);
    }
    Ok(out)
}
