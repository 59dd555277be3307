//! Side files of a node spec: inline, or from a Secret whose SHA-256 must match the digest
//! the revision was rendered with.

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use super::Engine;
use crate::api::{ControlPlaneNodeSpec, FileSource, SecretKeyRef};
use crate::render::{self, sha256_hex};

impl Engine {
    pub(super) async fn resolve_files(
        &self,
        spec: &ControlPlaneNodeSpec,
    ) -> Result<Vec<(String, Vec<u8>)>, FileProblem> {
        let mut out = Vec::new();
        for f in &spec.files {
            let path = std::path::Path::new(&f.path);
            self.dirs
                .check_side_file_path(path)
                .map_err(|e| FileProblem::Invalid(format!("spec.files: {e}")))?;
            let bytes = match &f.source {
                FileSource::Inline(s) => {
                    let b = s.clone().into_bytes();
                    if sha256_hex(&b) != f.sha256 {
                        return Err(FileProblem::Invalid(format!(
                            "spec.files {}: the inline content's SHA-256 is {}, not the recorded {}",
                            f.path,
                            sha256_hex(&b),
                            f.sha256
                        )));
                    }
                    b
                }
                FileSource::Secret(r) => {
                    let on_disk = self.dirs.read_side_file(path).ok().flatten();
                    match on_disk.filter(|b| sha256_hex(b) == f.sha256) {
                        Some(b) => b,
                        None => {
                            let b = self.secrets.get(r).await.map_err(|e| {
                                FileProblem::Wait("SecretUnavailable", format!("{}: {e}", f.path))
                            })?;
                            let got = sha256_hex(&b);
                            if got != f.sha256 {
                                let (ns, key) = secret_location(r);
                                return Err(FileProblem::Wait(
                                    "SecretChanged",
                                    format!(
                                        "Secret {ns}/{} key {key} now has SHA-256 {got}, but revision {} was rendered with {}: the Secret changed after rendering; nothing was written, waiting for a revision rendered from the current Secret",
                                        r.name, spec.revision, f.sha256
                                    ),
                                ));
                            }
                            b
                        }
                    }
                }
            };
            out.push((f.path.clone(), bytes));
        }
        Ok(out)
    }
}

/// Reads Secret keys for Secret-backed side files.
pub trait Secrets: Send + Sync {
    /// The bytes of one key of a Secret.
    fn get<'a>(&'a self, r: &'a SecretKeyRef) -> BoxFuture<'a, Result<Vec<u8>, String>>;
}

/// Secrets through the API.
pub struct KubeSecrets {
    client: Client,
}

impl KubeSecrets {
    /// Reads Secrets with this client.
    pub fn new(client: Client) -> Self {
        KubeSecrets { client }
    }
}

impl Secrets for KubeSecrets {
    fn get<'a>(&'a self, r: &'a SecretKeyRef) -> BoxFuture<'a, Result<Vec<u8>, String>> {
        Box::pin(async move {
            let (ns, key) = secret_location(r);
            let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
            let s = api
                .get(&r.name)
                .await
                .map_err(|e| format!("reading Secret {ns}/{}: {e}", r.name))?;
            s.data
                .and_then(|mut d| d.remove(key))
                .map(|b| b.0)
                .ok_or_else(|| format!("Secret {ns}/{} has no key {key:?}", r.name))
        })
    }
}

/// No Secrets (`kubeplane apply` has no API): a Secret-backed file must already be on disk
/// with the rendered digest.
pub struct NoSecrets;

impl Secrets for NoSecrets {
    fn get<'a>(&'a self, r: &'a SecretKeyRef) -> BoxFuture<'a, Result<Vec<u8>, String>> {
        Box::pin(async move {
            let (ns, key) = secret_location(r);
            Err(format!(
                "kubeplane apply has no API to read Secret {ns}/{} (key {key}); put the file in place first",
                r.name
            ))
        })
    }
}

/// The namespace and key a Secret reference means, the defaults filled in.
fn secret_location(r: &SecretKeyRef) -> (&str, &str) {
    (
        r.namespace
            .as_deref()
            .unwrap_or(render::defaults::ENCRYPTION_SECRET_NAMESPACE),
        r.key
            .as_deref()
            .unwrap_or(render::defaults::ENCRYPTION_SECRET_KEY),
    )
}

pub(super) enum FileProblem {
    /// Something outside may change (a Secret): report and wait.
    Wait(&'static str, String),
    /// The spec itself is wrong.
    Invalid(String),
}
