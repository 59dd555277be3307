//! What the suite is pointed at, read from environment variables (see `e2e/README.md`).
//!
//! Every value has a default for a kubeadm control-plane node; only `KUBECONFIG` is required,
//! and without it the suite is skipped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kubeplane::api::PullPolicy;

/// The cluster to test against. Unset or empty: every test is skipped.
pub const KUBECONFIG: &str = "KUBECONFIG";
/// Node the agent runs for (default: the only control-plane Node, else this host's name).
pub const NODE: &str = "KUBEPLANE_E2E_NODE";
/// kubelet's static Pod directory on that node (default `/etc/kubernetes/manifests`).
pub const MANIFEST_DIR: &str = "KUBEPLANE_E2E_MANIFEST_DIR";
/// Parent of the per-scenario agent state directories; on the manifest directory's
/// filesystem (default: `kubeplane-e2e` beside the manifest directory).
pub const STATE_DIR: &str = "KUBEPLANE_E2E_STATE_DIR";
/// Where backups of the manifests found and process logs go (default
/// `$TMPDIR/kubeplane-e2e`).
pub const WORK_DIR: &str = "KUBEPLANE_E2E_WORK_DIR";
/// `spec.certificatesDir` of the configs (default `/etc/kubernetes/pki`).
pub const CERTIFICATES_DIR: &str = "KUBEPLANE_E2E_CERTIFICATES_DIR";
/// Directory of `controller-manager.conf` and `scheduler.conf` (default `/etc/kubernetes`).
pub const KUBECONFIG_DIR: &str = "KUBEPLANE_E2E_KUBECONFIG_DIR";
/// `spec.imageRepository` (default `registry.k8s.io`).
pub const IMAGE_REPOSITORY: &str = "KUBEPLANE_E2E_IMAGE_REPOSITORY";
/// `spec.imagePullPolicy`: `Always`, `IfNotPresent` or `Never` (default `IfNotPresent`).
pub const PULL_POLICY: &str = "KUBEPLANE_E2E_PULL_POLICY";
/// `spec.kubernetesVersion` (default: the API server's `gitVersion` without `+…`).
pub const KUBERNETES_VERSION: &str = "KUBEPLANE_E2E_KUBERNETES_VERSION";
/// The kubectl binary (default `kubectl` on `PATH`).
pub const KUBECTL: &str = "KUBEPLANE_E2E_KUBECTL";
/// Longest wait for any one step, in seconds (default 300).
pub const TIMEOUT: &str = "KUBEPLANE_E2E_TIMEOUT_SECONDS";
/// Iterations of the timing harness (default 5).
pub const TIMING_RUNS: &str = "KUBEPLANE_E2E_TIMING_RUNS";
/// The `kubeplane` binary to run (default: the one cargo built with the suite).
pub const BIN: &str = "KUBEPLANE_E2E_BIN";
/// The node's CRI socket, passed to the agent and `kubeplane apply` as
/// `--container-runtime-endpoint` (default: unset, the agent's own default).
pub const CONTAINER_RUNTIME_ENDPOINT: &str = "CONTAINER_RUNTIME_ENDPOINT";

/// Every variable the suite reads, for messages and the README.
pub const ALL: [&str; 15] = [
    KUBECONFIG,
    NODE,
    MANIFEST_DIR,
    STATE_DIR,
    WORK_DIR,
    CERTIFICATES_DIR,
    KUBECONFIG_DIR,
    IMAGE_REPOSITORY,
    PULL_POLICY,
    KUBERNETES_VERSION,
    KUBECTL,
    TIMEOUT,
    TIMING_RUNS,
    BIN,
    CONTAINER_RUNTIME_ENDPOINT,
];

/// The suite's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The kubeconfig file of the cluster.
    pub kubeconfig: PathBuf,
    /// Node name, when given.
    pub node: Option<String>,
    /// kubelet's static Pod directory.
    pub manifest_dir: PathBuf,
    /// Parent of the agent state directories.
    pub state_root: PathBuf,
    /// Backups and logs.
    pub work_dir: PathBuf,
    /// `spec.certificatesDir`.
    pub certificates_dir: String,
    /// Directory of the component kubeconfigs.
    pub kubeconfig_dir: String,
    /// `spec.imageRepository`.
    pub image_repository: String,
    /// `spec.imagePullPolicy`.
    pub pull_policy: PullPolicy,
    /// `spec.kubernetesVersion`, when given.
    pub kubernetes_version: Option<String>,
    /// The kubectl binary.
    pub kubectl: PathBuf,
    /// Longest wait for one step.
    pub timeout: Duration,
    /// Iterations of the timing harness.
    pub timing_runs: usize,
    /// The `kubeplane` binary.
    pub kubeplane: PathBuf,
    /// The node's CRI socket for the agent and `kubeplane apply`, when given.
    pub container_runtime_endpoint: Option<String>,
}

/// Reads the settings through `get` (the process environment in the suite). `Ok(None)`: no
/// cluster, skip. `Err`: a variable is set to something unusable.
pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Settings>, String> {
    let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
    let Some(kubeconfig) = get(KUBECONFIG) else {
        return Ok(None);
    };
    if kubeconfig.contains(':') {
        return Err(format!(
            "{KUBECONFIG}={kubeconfig:?}: give one kubeconfig file, not a list; the agent and operator processes get the same file"
        ));
    }
    let absolute = |name: &str, default: &str| -> Result<PathBuf, String> {
        let v = get(name).unwrap_or_else(|| default.to_string());
        if !v.starts_with('/') {
            return Err(format!(
                "{name}={v:?}: give an absolute path, like {default}"
            ));
        }
        Ok(PathBuf::from(v).components().collect())
    };
    let manifest_dir = absolute(MANIFEST_DIR, "/etc/kubernetes/manifests")?;
    let beside = manifest_dir
        .parent()
        .unwrap_or(Path::new("/"))
        .join("kubeplane-e2e");
    let state_root = absolute(STATE_DIR, &beside.display().to_string())?;
    if state_root.starts_with(&manifest_dir) {
        return Err(format!(
            "{STATE_DIR}={}: must be outside {} (kubelet reads every file there)",
            state_root.display(),
            manifest_dir.display()
        ));
    }
    let tmp = std::env::temp_dir().join("kubeplane-e2e");
    let work_dir = absolute(WORK_DIR, &tmp.display().to_string())?;
    if work_dir.starts_with(&manifest_dir) {
        return Err(format!(
            "{WORK_DIR}={}: backups must be kept outside {}",
            work_dir.display(),
            manifest_dir.display()
        ));
    }
    let certificates_dir = absolute(CERTIFICATES_DIR, "/etc/kubernetes/pki")?;
    let kubeconfig_dir = absolute(KUBECONFIG_DIR, "/etc/kubernetes")?;
    let pull_policy = match get(PULL_POLICY).as_deref() {
        None | Some("IfNotPresent") => PullPolicy::IfNotPresent,
        Some("Never") => PullPolicy::Never,
        Some("Always") => PullPolicy::Always,
        Some(other) => {
            return Err(format!(
                "{PULL_POLICY}={other:?}: use Always, IfNotPresent or Never"
            ));
        }
    };
    let seconds = |name: &str, default: u64| -> Result<u64, String> {
        match get(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{name}={v:?}: give a positive whole number")),
        }
    };
    Ok(Some(Settings {
        kubeconfig: PathBuf::from(kubeconfig),
        node: get(NODE),
        manifest_dir,
        state_root,
        work_dir,
        certificates_dir: certificates_dir.display().to_string(),
        kubeconfig_dir: kubeconfig_dir.display().to_string(),
        image_repository: get(IMAGE_REPOSITORY)
            .map(|r| r.trim_end_matches('/').to_string())
            .unwrap_or_else(|| "registry.k8s.io".into()),
        pull_policy,
        kubernetes_version: get(KUBERNETES_VERSION),
        kubectl: PathBuf::from(get(KUBECTL).unwrap_or_else(|| "kubectl".into())),
        timeout: Duration::from_secs(seconds(TIMEOUT, 300)?),
        timing_runs: seconds(TIMING_RUNS, 5)? as usize,
        kubeplane: absolute(BIN, env!("CARGO_BIN_EXE_kubeplane"))?,
        container_runtime_endpoint: get(CONTAINER_RUNTIME_ENDPOINT),
    }))
}

/// The settings from the process environment.
pub fn from_env() -> Result<Option<Settings>, String> {
    from_lookup(|k| std::env::var(k).ok())
}

/// The version kubeplane renders for: the API server's `gitVersion` without build metadata
/// (`v1.33.1+k3s1` -> `v1.33.1`).
pub fn version_from_git(git_version: &str) -> String {
    git_version
        .split('+')
        .next()
        .unwrap_or(git_version)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn read(vars: &[(&str, &str)]) -> Result<Option<Settings>, String> {
        let map: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn no_kubeconfig_means_skip() {
        assert_eq!(read(&[]), Ok(None));
        assert_eq!(read(&[(KUBECONFIG, "")]), Ok(None));
        assert_eq!(read(&[(KUBECONFIG, "  "), (NODE, "cp-1")]), Ok(None));
    }

    #[test]
    fn defaults_are_kubeadm_paths() {
        let s = read(&[(KUBECONFIG, "/root/.kube/config")])
            .unwrap()
            .unwrap();
        assert_eq!(s.manifest_dir, PathBuf::from("/etc/kubernetes/manifests"));
        assert_eq!(s.state_root, PathBuf::from("/etc/kubernetes/kubeplane-e2e"));
        assert_eq!(s.certificates_dir, "/etc/kubernetes/pki");
        assert_eq!(s.kubeconfig_dir, "/etc/kubernetes");
        assert_eq!(s.image_repository, "registry.k8s.io");
        assert_eq!(s.pull_policy, PullPolicy::IfNotPresent);
        assert_eq!(s.kubectl, PathBuf::from("kubectl"));
        assert_eq!(s.timeout, Duration::from_secs(300));
        assert_eq!((s.node, s.kubernetes_version), (None, None));
        assert_eq!(s.timing_runs, 5);
        assert_eq!(s.kubeplane, PathBuf::from(env!("CARGO_BIN_EXE_kubeplane")));
    }

    #[test]
    fn a_hand_built_layout_moves_the_state_beside_the_manifests() {
        let s = read(&[
            (KUBECONFIG, "/opt/k8s/kubeconfig"),
            (MANIFEST_DIR, "/opt/k8s/manifests/"),
            (CERTIFICATES_DIR, "/opt/k8s/etc/kubernetes/pki"),
            (PULL_POLICY, "Never"),
            (IMAGE_REPOSITORY, "localhost:5000/k8s/"),
            (TIMEOUT, "120"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(s.manifest_dir, PathBuf::from("/opt/k8s/manifests"));
        assert_eq!(s.state_root, PathBuf::from("/opt/k8s/kubeplane-e2e"));
        assert_eq!(s.certificates_dir, "/opt/k8s/etc/kubernetes/pki");
        assert_eq!(s.image_repository, "localhost:5000/k8s");
        assert_eq!(s.pull_policy, PullPolicy::Never);
        assert_eq!(s.timeout, Duration::from_secs(120));
    }

    #[test]
    fn unusable_values_are_refused_with_the_variable_named() {
        let k = (KUBECONFIG, "/k");
        for (vars, needle) in [
            (vec![k, (PULL_POLICY, "sometimes")], PULL_POLICY),
            (vec![k, (MANIFEST_DIR, "manifests")], MANIFEST_DIR),
            (
                vec![k, (STATE_DIR, "/etc/kubernetes/manifests/state")],
                "must be outside",
            ),
            (vec![k, (TIMEOUT, "0")], TIMEOUT),
            (vec![k, (TIMEOUT, "ten")], TIMEOUT),
            (vec![(KUBECONFIG, "/a:/b")], "not a list"),
            (vec![k, (BIN, "kubeplane")], BIN),
        ] {
            let e = read(&vars).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn version_drops_build_metadata_only() {
        assert_eq!(version_from_git("v1.36.2"), "v1.36.2");
        assert_eq!(version_from_git("v1.33.1+k3s1"), "v1.33.1");
        assert_eq!(version_from_git("v1.37.0-rc.1"), "v1.37.0-rc.1");
    }
}
