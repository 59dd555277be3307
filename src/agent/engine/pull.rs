//! Images before restarts: kubelet runs no second instance of a static pod, so the images
//! of a revision are pulled through the container runtime before any file is written.

use std::time::Duration;

use super::{Engine, Outcome, parse_pod};
use crate::agent::plan::{Action, Step};
use crate::agent::pull_auth::{RegistryAuth, auth_for, parse_docker_config};
use crate::agent::state::FailureReason;
use crate::api::{Component, ImagePullSecretRef, NodePhase, SecretKeyRef};

impl Engine {
    /// Pulls, through the container runtime, every image a manifest about to be written
    /// names and the runtime does not have (one at a time, each within
    /// [`IMAGE_PULL_TIMEOUT`], the phase saying which). A failed pull fails the revision
    /// (`ImagePullFailed`) before any file is written. Without a runtime, or one that cannot
    /// say whether it has an image, nothing is pulled ahead (kubelet pulls, as before). An
    /// `imagePullPolicy: Never` image that is missing is left to kubelet, which reports it.
    pub(super) async fn pull_images(
        &mut self,
        rev: &str,
        steps: &[Step],
        pull_secrets: &[ImagePullSecretRef],
    ) -> Result<(), Outcome> {
        let Some(runtime) = self.runtime.clone() else {
            return Ok(());
        };
        let mut wanted: Vec<(Component, String)> = Vec::new();
        for s in steps.iter().filter(|s| matches!(s.action, Action::Write)) {
            for image in images_to_pull(&s.bytes) {
                if !wanted.iter().any(|(_, i)| *i == image) {
                    wanted.push((s.component, image));
                }
            }
        }
        let mut missing = Vec::new();
        for (c, image) in wanted {
            match runtime.image_present(&image).await {
                Ok(true) => {}
                Ok(false) => missing.push((c, image)),
                Err(e) => {
                    tracing::info!(%image, error = %e, "cannot ask the container runtime for images; kubelet pulls them");
                    return Ok(());
                }
            }
        }
        // Registry credentials, read only when something is to be pulled.
        let credentials = if missing.is_empty() || pull_secrets.is_empty() {
            Vec::new()
        } else {
            match self.registry_credentials(pull_secrets).await {
                Ok(c) => c,
                Err(e) => {
                    let c = missing[0].0;
                    return Err(self.fail(
                        FailureReason::ImagePullFailed,
                        Some(c),
                        format!(
                            "{e}; nothing was written, the node runs what it ran: fix the Secret or spec.imagePullSecrets (the agent needs `get` on it: chart value rbac.imagePullSecrets), then change the ControlPlaneConfig for a new revision"
                        ),
                    ));
                }
            }
        };
        let total = missing.len();
        for (i, (c, image)) in missing.into_iter().enumerate() {
            let message = format!(
                "pulling {image} for {c} ({} of {total}) before writing revision {rev}",
                i + 1
            );
            tracing::info!(%image, component = %c, "pulling the image before the write");
            self.set_phase(NodePhase::Pending, "PullingImage", message);
            let started = std::time::Instant::now();
            let auth = auth_for(&image, &credentials);
            if let Some(a) = auth {
                tracing::info!(%image, registry = %a.server, "pulling with the credentials of spec.imagePullSecrets");
            }
            if let Err(e) = runtime.pull_image(&image, auth, IMAGE_PULL_TIMEOUT).await {
                return Err(self.fail(
                    FailureReason::ImagePullFailed,
                    Some(c),
                    format!(
                        "{e}; nothing was written, the node runs what it ran: make the image pullable by the container runtime (registry, name, credentials in its configuration) or load it on the node, then change the ControlPlaneConfig for a new revision"
                    ),
                ));
            }
            tracing::info!(%image, seconds = started.elapsed().as_secs_f64(), "image pulled");
        }
        Ok(())
    }
}

impl Engine {
    /// The registry credentials of every Secret `refs` names (`.dockerconfigjson`, else the
    /// legacy `.dockercfg`). Err names the Secret and why; never its content.
    async fn registry_credentials(
        &self,
        refs: &[ImagePullSecretRef],
    ) -> Result<Vec<RegistryAuth>, String> {
        let mut out = Vec::new();
        for r in refs {
            let key = |k: &str| SecretKeyRef {
                name: r.name.clone(),
                namespace: Some(r.namespace().to_string()),
                key: Some(k.to_string()),
            };
            let bytes = match self.secrets.get(&key(".dockerconfigjson")).await {
                Ok(b) => b,
                Err(first) => self
                    .secrets
                    .get(&key(".dockercfg"))
                    .await
                    .map_err(|_| first)?,
            };
            let source = format!("Secret {}/{}", r.namespace(), r.name);
            out.extend(parse_docker_config(&bytes, &source)?);
        }
        Ok(out)
    }
}

/// How long the agent waits for one image pull before it fails the revision.
pub const IMAGE_PULL_TIMEOUT: Duration = Duration::from_secs(600);

/// The images of a manifest that may be pulled ahead: every container's and init container's,
/// except those with `imagePullPolicy: Never` (the node is meant to have them already).
pub fn images_to_pull(manifest: &[u8]) -> Vec<String> {
    let Some(pod) = parse_pod(manifest) else {
        return Vec::new();
    };
    let Some(spec) = pod.spec else {
        return Vec::new();
    };
    spec.init_containers
        .unwrap_or_default()
        .into_iter()
        .chain(spec.containers)
        .filter(|c| c.image_pull_policy.as_deref() != Some("Never"))
        .filter_map(|c| c.image)
        .filter(|i| !i.is_empty())
        .collect()
}
