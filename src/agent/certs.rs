//! Certificates the rendered flags point at: expiry for `status.certificates`, and restarts
//! when one is renewed on disk.
//!
//! kubelet does not restart a static Pod when a file it mounts changes, so a renewed serving
//! or client certificate would only be picked up at the next restart. The agent watches the
//! files' parent directories and, when a certificate's content changes, restarts the
//! component by adding the annotation [`RESTART_ANNOTATION`] (a digest of the component's
//! certificates) to its manifest and recomputing `metadata.uid`
//! ([`crate::render::stamp_uid`]); the normal wait for kubelet then applies.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::files;
use crate::api::{CertificateRef, CertificateStatus, Component};
use crate::render::{pod_to_yaml, sha256_hex, stamp_uid};

/// The annotation that restarts a component after one of its certificates changed.
pub const RESTART_ANNOTATION: &str = "kubeplane.io/certificates-sha256";

/// What was read of one certificate file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// The reference from the node spec.
    pub reference: CertificateRef,
    /// SHA-256 of the certificate bytes (for a kubeconfig: of its client certificate).
    pub digest: Option<String>,
    /// The certificate's notAfter.
    pub not_after: Option<Time>,
    /// Why it could not be read.
    pub error: Option<String>,
    /// The files whose change changes this certificate (a kubeconfig and the certificate
    /// file it references).
    pub files: Vec<PathBuf>,
}

/// Reads one certificate (a PEM file, or the client certificate of a kubeconfig).
pub fn read(reference: &CertificateRef) -> CertInfo {
    let path = PathBuf::from(&reference.path);
    let mut info = CertInfo {
        reference: reference.clone(),
        digest: None,
        not_after: None,
        error: None,
        files: vec![path.clone()],
    };
    let pem = if reference.kubeconfig {
        kubeconfig_client_cert(&path, &mut info.files)
    } else {
        read_file(&path)
    };
    match pem.and_then(|pem| not_after(&pem).map(|t| (pem, t))) {
        Ok((pem, t)) => {
            info.digest = Some(sha256_hex(&pem));
            info.not_after = Some(t);
        }
        Err(e) => info.error = Some(e),
    }
    info
}

fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    match files::read_nofollow(path) {
        Ok(Some(b)) => Ok(b),
        Ok(None) => Err(format!("{}: no such file", path.display())),
        Err(e) => Err(e.to_string()),
    }
}

/// The PEM client certificate of a kubeconfig's current user: `client-certificate-data`, or
/// the file `client-certificate` names (relative to the kubeconfig's directory).
fn kubeconfig_client_cert(path: &Path, watch: &mut Vec<PathBuf>) -> Result<Vec<u8>, String> {
    let bytes = match files::read_nofollow(path) {
        Ok(Some(b)) => b,
        // The chart keeps every kubeconfig out of the agent's pod (they sit beside the
        // cluster-admin ones): the expiry is unknown to the agent, which is not an error of
        // the node.
        Ok(None) => {
            return Err(format!(
                "{}: not visible to the agent (kubeconfigs are not mounted into its pod; check this certificate's expiry with kubeadm certs check-expiration)",
                path.display()
            ));
        }
        Err(e) => return Err(e.to_string()),
    };
    let doc: serde_json::Value = serde_saphyr::from_slice(&bytes)
        .map_err(|e| format!("{}: not a kubeconfig: {e}", path.display()))?;
    let users = doc["users"].as_array().cloned().unwrap_or_default();
    let context_user = doc["current-context"].as_str().and_then(|cur| {
        doc["contexts"]
            .as_array()?
            .iter()
            .find(|c| c["name"].as_str() == Some(cur))?["context"]["user"]
            .as_str()
            .map(str::to_string)
    });
    let user = context_user
        .and_then(|u| {
            users
                .iter()
                .find(|x| x["name"].as_str() == Some(u.as_str()))
        })
        .or(users.first())
        .ok_or_else(|| format!("{}: the kubeconfig has no user", path.display()))?;
    let user = &user["user"];
    if let Some(data) = user["client-certificate-data"].as_str() {
        return base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| {
                format!(
                    "{}: client-certificate-data is not base64: {e}",
                    path.display()
                )
            });
    }
    if let Some(file) = user["client-certificate"].as_str() {
        let p = Path::new(file);
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            path.parent().unwrap_or(Path::new("/")).join(p)
        };
        watch.push(p.clone());
        return read_file(&p);
    }
    Err(format!(
        "{}: the kubeconfig user has neither client-certificate-data nor client-certificate",
        path.display()
    ))
}

/// notAfter of the first certificate in a PEM bundle.
fn not_after(pem: &[u8]) -> Result<Time, String> {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(pem).map_err(|e| format!("not a PEM certificate: {e}"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let secs = cert.validity().not_after.timestamp();
    k8s_openapi::jiff::Timestamp::from_second(secs)
        .map(Time)
        .map_err(|e| format!("notAfter out of range: {e}"))
}

/// `status.certificates` entries.
pub fn statuses(infos: &[CertInfo]) -> Vec<CertificateStatus> {
    infos
        .iter()
        .map(|i| CertificateStatus {
            component: i.reference.component.name().to_string(),
            path: i.reference.path.clone(),
            not_after: i.not_after.clone(),
            error: i.error.clone(),
        })
        .collect()
}

/// The digests of one component's readable certificates: path → SHA-256. An unreadable
/// file is left out (its error is in status), so it becoming readable is no restart.
pub fn digests(component: Component, infos: &[CertInfo]) -> BTreeMap<String, String> {
    infos
        .iter()
        .filter(|i| i.reference.component == component)
        .filter_map(|i| Some((i.reference.path.clone(), i.digest.clone()?)))
        .collect()
}

/// The value of the restart annotation for a set of digests.
pub fn restart_value(digests: &BTreeMap<String, String>) -> String {
    let text: String = digests.iter().map(|(p, d)| format!("{p}={d}\n")).collect();
    sha256_hex(text.as_bytes())
}

/// A manifest with the restart annotation set to `value` and `metadata.uid` recomputed for
/// the node. Returns the new bytes and the new uid.
pub fn with_restart_annotation(
    manifest: &[u8],
    value: &str,
    node: &str,
) -> Result<(Vec<u8>, String), String> {
    let mut pod: Pod =
        files::parse_pod(manifest).map_err(|e| format!("manifest does not parse: {e}"))?;
    pod.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(RESTART_ANNOTATION.to_string(), value.to_string());
    let uid = stamp_uid(&mut pod, node);
    let yaml = pod_to_yaml(&pod)?;
    Ok((yaml.into_bytes(), uid))
}

/// Parent directories to watch for a set of certificate infos.
pub fn watch_dirs(infos: &[CertInfo]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = infos
        .iter()
        .flat_map(|i| i.files.iter())
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// Watches the directories of a set of certificate files (notify, non-recursive) and sends
/// `()` when one of the files changes. Re-targeted whenever the set changes.
pub struct CertWatcher {
    watcher: Option<notify::RecommendedWatcher>,
    dirs: Vec<PathBuf>,
    files: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<PathBuf>>>,
    tx: tokio::sync::mpsc::UnboundedSender<()>,
}

impl CertWatcher {
    /// A watcher that watches nothing yet; changes arrive on the returned receiver.
    pub fn new() -> (Self, tokio::sync::mpsc::UnboundedReceiver<()>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (
            CertWatcher {
                watcher: None,
                dirs: Vec::new(),
                files: Default::default(),
                tx,
            },
            rx,
        )
    }

    /// Watches the files of `infos` (and their directories). Directories that do not exist
    /// are skipped with a warning.
    pub fn retarget(&mut self, infos: &[CertInfo]) {
        let files: std::collections::BTreeSet<PathBuf> =
            infos.iter().flat_map(|i| i.files.iter().cloned()).collect();
        *self.files.lock().unwrap_or_else(|p| p.into_inner()) = files;
        let dirs = watch_dirs(infos);
        if dirs == self.dirs && self.watcher.is_some() {
            return;
        }
        self.dirs = dirs.clone();
        if dirs.is_empty() {
            self.watcher = None;
            return;
        }
        let tx = self.tx.clone();
        let wanted = self.files.clone();
        let w = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            let Ok(ev) = ev else { return };
            if !super::drift::is_change(&ev.kind) {
                return;
            }
            let wanted = wanted.lock().unwrap_or_else(|p| p.into_inner());
            if ev.need_rescan() || ev.paths.iter().any(|p| wanted.contains(p)) {
                let _ = tx.send(());
            }
        });
        match w {
            Ok(mut w) => {
                use notify::Watcher as _;
                for d in &dirs {
                    if let Err(e) = w.watch(d, notify::RecursiveMode::NonRecursive) {
                        tracing::warn!(dir = %d.display(), error = %e, "cannot watch certificate directory");
                    }
                }
                self.watcher = Some(w);
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch certificates"),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A self-signed PEM certificate valid until `not_after` (Unix seconds).
    pub(crate) fn pem_cert(cn: &str, not_after_year: i32) -> String {
        let mut params = rcgen::CertificateParams::new(vec![cn.to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(not_after_year, 1, 2);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    fn cref(component: Component, path: &Path, kubeconfig: bool) -> CertificateRef {
        CertificateRef {
            component,
            flag: "x".into(),
            path: path.display().to_string(),
            kubeconfig,
        }
    }

    #[test]
    fn reads_pem_and_kubeconfig_certificates() {
        let t = tempfile::tempdir().unwrap();
        let crt = t.path().join("apiserver.crt");
        std::fs::write(&crt, pem_cert("a", 2031)).unwrap();
        let i = read(&cref(Component::ApiServer, &crt, false));
        assert_eq!(i.error, None);
        assert_eq!(i.not_after.unwrap().0.to_string(), "2031-01-02T00:00:00Z");

        let client = pem_cert("system:kube-scheduler", 2030);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&client);
        let kc = t.path().join("scheduler.conf");
        std::fs::write(
            &kc,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n  context: {{cluster: k, user: u}}\nusers:\n- name: other\n  user: {{}}\n- name: u\n  user:\n    client-certificate-data: {b64}\n"
            ),
        )
        .unwrap();
        let i = read(&cref(Component::Scheduler, &kc, true));
        assert_eq!(i.error, None, "{i:?}");
        assert_eq!(i.not_after.unwrap().0.to_string(), "2030-01-02T00:00:00Z");
        assert_eq!(i.digest, Some(sha256_hex(client.as_bytes())));

        // A kubeconfig that references a file: both are watched.
        std::fs::write(t.path().join("client.crt"), &client).unwrap();
        let kc2 = t.path().join("cm.conf");
        std::fs::write(
            &kc2,
            "users:\n- name: u\n  user:\n    client-certificate: client.crt\n",
        )
        .unwrap();
        let i = read(&cref(Component::ControllerManager, &kc2, true));
        assert_eq!(i.error, None, "{i:?}");
        assert_eq!(i.files, vec![kc2.clone(), t.path().join("client.crt")]);
        assert_eq!(watch_dirs(&[i]), vec![t.path().to_path_buf()]);
    }

    #[test]
    fn unreadable_certificates_say_why() {
        let t = tempfile::tempdir().unwrap();
        let i = read(&cref(
            Component::ApiServer,
            &t.path().join("nope.crt"),
            false,
        ));
        assert!(i.error.unwrap().contains("no such file"));
        let i = read(&cref(
            Component::Scheduler,
            &t.path().join("scheduler.conf"),
            true,
        ));
        assert!(
            i.error
                .as_deref()
                .unwrap()
                .contains("not visible to the agent"),
            "{i:?}"
        );
        let bad = t.path().join("bad.crt");
        std::fs::write(&bad, "garbage").unwrap();
        let i = read(&cref(Component::ApiServer, &bad, false));
        assert!(i.error.as_deref().unwrap().contains("not a PEM"));
        assert!(digests(Component::ApiServer, &[i]).is_empty());
    }

    #[test]
    fn restart_annotation_changes_uid_deterministically() {
        let yaml = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/kubeadm-v1.36.2/kube-scheduler.yaml"
        ))
        .unwrap();
        let (a, uid_a) = with_restart_annotation(&yaml, "d1", "cp-1").unwrap();
        let (a2, uid_a2) = with_restart_annotation(&yaml, "d1", "cp-1").unwrap();
        let (_, uid_b) = with_restart_annotation(&yaml, "d2", "cp-1").unwrap();
        assert_eq!((a.clone(), uid_a.clone()), (a2, uid_a2));
        assert_ne!(uid_a, uid_b);
        let text = String::from_utf8(a).unwrap();
        assert!(
            text.contains("kubeplane.io/certificates-sha256: d1"),
            "{text}"
        );
        assert!(text.contains(&format!("uid: {uid_a}")), "{text}");
        assert!(with_restart_annotation(b": not yaml [", "d", "n").is_err());
    }

    #[tokio::test]
    async fn watcher_reports_a_renewed_certificate_with_real_notify_events() {
        let t = tempfile::tempdir().unwrap();
        let crt = t.path().join("apiserver.crt");
        std::fs::write(&crt, pem_cert("a", 2030)).unwrap();
        let (mut w, mut rx) = CertWatcher::new();
        w.retarget(&[read(&cref(Component::ApiServer, &crt, false))]);
        // An unrelated file in the same directory is not reported, nor is reading the file.
        std::fs::write(t.path().join("other.txt"), "x").unwrap();
        let _ = read(&cref(Component::ApiServer, &crt, false));
        let quiet = tokio::time::timeout(std::time::Duration::from_millis(300), rx.recv()).await;
        assert!(quiet.is_err(), "unrelated file reported");
        std::fs::write(&crt, pem_cert("a", 2031)).unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv()).await;
        assert_eq!(got.unwrap(), Some(()));
    }
}
