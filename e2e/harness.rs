//! The scenario harness.
//!
//! [`Scenario::start`] takes the suite-wide lock (scenarios never overlap on one cluster),
//! installs the CRDs, refuses a cluster where another kubeplane manages the node, waits for
//! the node's kube-scheduler and kube-controller-manager mirror pods to be Ready (their
//! `kubernetes.io/config.hash` is the baseline), copies every manifest it finds to a backup
//! directory outside the manifest directory, and starts `kubeplane operator` and
//! `kubeplane agent` as local processes. [`Cleanup`] undoes all of it, on success
//! ([`Scenario::finish`]) and on failure (its `Drop`): processes stopped, the config and its
//! `ControlPlaneNode` deleted, the manifests restored byte for byte (files the run added
//! removed), the state directory removed, and the control plane waited for until the mirror
//! pods show the baseline hashes and are Ready again.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use serde::Serialize;

use kubeplane::api::{
    ApiServer, Arg, Component, ControlPlaneConfig, ControlPlaneConfigSpec, ControlPlaneNode,
    ControllerManager, NodePhase, Rollout, Scheduler,
};
use kubeplane::operator::selection::CONFIG_LABEL;

use crate::common::{free_port, http_get};
use crate::settings::{self, Settings};

mod cleanup;
mod files;
mod scenario;
mod setup;

pub use files::*;
use setup::*;

/// Only one scenario runs against the cluster at a time, whatever the test threads.
static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Takes the suite-wide lock, for scenarios that do not use [`Scenario`] (the hard-way
/// migration).
pub async fn lock() -> tokio::sync::MutexGuard<'static, ()> {
    LOCK.lock().await
}

/// How often waits look again.
pub const POLL: Duration = Duration::from_millis(250);

/// Prefix of every config the suite creates.
pub const PREFIX: &str = "kubeplane-e2e-";

/// The components scenarios a–g work with (kube-apiserver is touched only by h–k,
/// `apiserver.rs`).
pub const COMPONENTS: [Component; 2] = [Component::ControllerManager, Component::Scheduler];

/// Prints straight to the test's stderr, past libtest's output capture, so that a skip is
/// visible in a plain `cargo test` run.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The settings, or `None` (after saying why) when the suite is skipped.
pub fn settings_or_skip(test: &str) -> Option<Settings> {
    match settings::from_env() {
        Ok(Some(s)) => Some(s),
        Ok(None) => {
            say(&format!(
                "e2e {test}: skipped: KUBECONFIG is not set; the suite runs against the cluster KUBECONFIG names (see e2e/README.md)"
            ));
            None
        }
        Err(e) => panic!(
            "e2e settings: {e} (variables: {})",
            settings::ALL.join(", ")
        ),
    }
}

/// `kubectl` with the suite's kubeconfig.
#[derive(Clone, Debug)]
pub struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    /// A kubectl command with `KUBECONFIG` set.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("KUBECONFIG", &self.kubeconfig);
        c
    }

    /// The same, for tokio.
    pub fn tokio_command(&self) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.bin);
        c.env("KUBECONFIG", &self.kubeconfig);
        c
    }

    /// Runs kubectl; `Ok(stdout)` on success, `Err(message)` otherwise.
    pub fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<String, String> {
        let mut cmd = self.command();
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))?;
        if let Some(input) = stdin
            && let Some(mut s) = child.stdin.take()
        {
            s.write_all(input)
                .map_err(|e| format!("kubectl stdin: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("kubectl: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "kubectl {} failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

/// A `kubeplane` process the scenario started.
pub struct Proc {
    /// `operator` or `agent`.
    pub name: &'static str,
    child: Child,
    /// Its stderr.
    pub log: PathBuf,
    /// Its /healthz, /readyz, /metrics port on 127.0.0.1.
    pub port: u16,
}

impl Proc {
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then SIGKILL after 15 s.
    fn stop(&mut self) -> Option<ExitStatus> {
        if let Some(s) = self.exited() {
            return Some(s);
        }
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

/// Everything a scenario must undo.
pub struct Cleanup {
    kubectl: Kubectl,
    config: String,
    lease: String,
    manifest_dir: PathBuf,
    state_dir: PathBuf,
    backup: Backup,
    /// Mirror pod name -> `kubernetes.io/config.hash` when the scenario started.
    baseline: BTreeMap<String, String>,
    /// Agent last, so it is stopped first.
    procs: Vec<Proc>,
    timeout: Duration,
    /// The longest wait for the baseline mirror pods (longer when kube-apiserver restarts,
    /// see [`KUBELET_MAX_BACKOFF`]).
    pods_timeout: Duration,
    done: bool,
}

/// kubelet's longest crash-loop back-off (`MaxContainerBackOff`, 5 min). Every kube-apiserver
/// outage longer than the leader-election renew deadline (10 s) makes kube-scheduler and
/// kube-controller-manager exit ("leaderelection lost"); after a few outages kubelet waits up
/// to 5 min before starting them again, and a manifest put back with the same uid keeps that
/// back-off. Scenarios that restart kube-apiserver wait that much longer for them.
pub const KUBELET_MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Waits until the API answers `/readyz` through the suite's kubeconfig; `Err` with what was
/// last seen after `timeout`.
pub fn wait_api(kubectl: &Kubectl, timeout: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    loop {
        let seen = kubectl.run(&["get", "--raw=/readyz", "--request-timeout=3s"], None);
        match seen {
            Ok(_) => return Ok(start.elapsed()),
            Err(e) if start.elapsed() > timeout => {
                return Err(format!(
                    "the API did not answer /readyz within {}s: {e}",
                    timeout.as_secs()
                ));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// One scenario: the cluster, the node, the processes, and its own config name.
pub struct Scenario {
    /// Undone first when the scenario is dropped...
    cleanup: Cleanup,
    /// ...then the next scenario may start.
    _lock: tokio::sync::MutexGuard<'static, ()>,
    /// The settings.
    pub settings: Settings,
    /// A client for the cluster.
    pub client: Client,
    /// kubectl.
    pub kubectl: Kubectl,
    /// The node the agent runs for.
    pub node: String,
    /// The node's `kubernetes.io/hostname` label (the configs' nodeSelector).
    pub hostname_label: String,
    /// `spec.kubernetesVersion`.
    pub version: String,
    /// The scenario's config name.
    pub name: String,
    /// Its state directory.
    pub state_dir: PathBuf,
    /// Its work directory (backup, logs).
    pub dir: PathBuf,
    /// The manifest directory.
    pub manifest_dir: PathBuf,
    /// The agent's command line (to start it again).
    agent_args: Vec<String>,
    /// How many agent processes were started.
    agent_runs: usize,
}

/// How a scenario starts.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// The agent's drift mode.
    pub drift: DriftMode,
    /// kube-apiserver is part of the baseline (its mirror pod is waited for at the end);
    /// the scenario is skipped when it is not a static Pod of the manifest directory.
    pub api_server: bool,
    /// Start `kubeplane operator` and `kubeplane agent` (`false`: `kubeplane apply` only).
    pub processes: bool,
}

pub use kubeplane::agent::drift::DriftMode;

fn http_status(port: u16, path: &str) -> u16 {
    http_get(port, path).0
}

/// The `/metrics` text on 127.0.0.1:`port` (empty unless it answers 200).
pub fn metrics_text(port: u16) -> String {
    match http_get(port, "/metrics") {
        (200, body) => body,
        _ => String::new(),
    }
}

pub use kubeplane::agent::kubelet_wait::{mirror_hash as pod_hash, pod_ready};

/// The value as pretty JSON, cut to a readable length.
pub fn dump<T: Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    if s.len() > 6000 {
        let mut end = 6000;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("\n…");
    }
    s
}

impl Scenario {
    /// Starts scenario `id` (config `kubeplane-e2e-<id>`), or returns `None` when the suite
    /// is skipped.
    pub async fn start(id: &str, drift: DriftMode) -> Option<Scenario> {
        Self::start_with(
            id,
            Options {
                drift,
                api_server: false,
                processes: true,
            },
        )
        .await
    }

    /// [`Scenario::start`] with options: kube-apiserver in the baseline (skipped, with a
    /// message, when it is not a static Pod of the manifest directory), and whether the
    /// operator and agent are started.
    pub async fn start_with(id: &str, opts: Options) -> Option<Scenario> {
        let drift = opts.drift;
        let settings = settings_or_skip(id)?;
        let lock = LOCK.lock().await;
        say(&format!("e2e {id}: starting"));
        let client = client(&settings).await;
        let kubectl = Kubectl {
            bin: settings.kubectl.clone(),
            kubeconfig: settings.kubeconfig.clone(),
        };
        install_crds(&client, &settings).await;
        let (node, hostname_label) = find_node(&client, &settings).await;
        let version = match &settings.kubernetes_version {
            Some(v) => v.clone(),
            None => settings::version_from_git(
                &client
                    .apiserver_version()
                    .await
                    .expect("GET /version")
                    .git_version,
            ),
        };
        refuse_foreign_kubeplane(&client, &kubectl, &node).await;

        let manifest_dir = settings.manifest_dir.clone();
        let mut components: Vec<Component> = COMPONENTS.to_vec();
        if opts.api_server {
            let f = manifest_dir.join(Component::ApiServer.manifest_file());
            let pod = Component::ApiServer.mirror_pod_name(&node);
            let mirror = Api::<Pod>::namespaced(client.clone(), "kube-system")
                .get_opt(&pod)
                .await
                .expect("get mirror pod");
            if !f.is_file() || mirror.is_none() {
                say(&format!(
                    "e2e {id}: skipped: kube-apiserver is not a static Pod of {} on node {node} ({} {}, mirror pod kube-system/{pod} {}); this scenario manages kube-apiserver",
                    manifest_dir.display(),
                    f.display(),
                    if f.is_file() {
                        "exists"
                    } else {
                        "does not exist"
                    },
                    if mirror.is_some() {
                        "exists"
                    } else {
                        "does not exist"
                    },
                ));
                return None;
            }
            components.insert(0, Component::ApiServer);
        }
        for c in COMPONENTS {
            let f = manifest_dir.join(c.manifest_file());
            assert!(
                f.is_file(),
                "{} does not exist: the suite needs {c} running as a static Pod from {} on node {node} (set {})",
                f.display(),
                manifest_dir.display(),
                settings::MANIFEST_DIR
            );
        }
        let state_dir = settings.state_root.join(id);
        fs::create_dir_all(&settings.state_root)
            .unwrap_or_else(|e| panic!("create {}: {e}", settings.state_root.display()));
        assert!(
            same_filesystem(&manifest_dir, &settings.state_root),
            "{} and {} are on different filesystems; the agent renames files from its state directory into the manifest directory: set {}",
            settings.state_root.display(),
            manifest_dir.display(),
            settings::STATE_DIR
        );
        let _ = fs::remove_dir_all(&state_dir);
        let dir = settings.work_dir.join(id);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));

        // The control plane as found: both mirror pods Ready.
        let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
        let mut baseline = BTreeMap::new();
        let pods_timeout = if opts.api_server {
            settings.timeout + KUBELET_MAX_BACKOFF
        } else {
            settings.timeout
        };
        let deadline = Instant::now() + pods_timeout;
        for c in components.iter().copied() {
            let pod = c.mirror_pod_name(&node);
            loop {
                let p = pods.get_opt(&pod).await.expect("get mirror pod");
                if let Some(p) = &p
                    && pod_ready(p)
                    && let Some(h) = pod_hash(p)
                {
                    baseline.insert(pod.clone(), h.to_string());
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "mirror pod kube-system/{pod} is not Ready (or missing): the suite starts from a healthy control plane with {c} as a static Pod on {node}; seen: {}",
                    p.as_ref().map(dump).unwrap_or_else(|| "nothing".into())
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        let backup = Backup::take(&manifest_dir, &dir.join("backup"));

        let name = format!("{PREFIX}{id}");
        let lease = name.clone();
        // The guard exists before the first process does.
        let mut scenario = Scenario {
            cleanup: Cleanup {
                kubectl: kubectl.clone(),
                config: name.clone(),
                lease: lease.clone(),
                manifest_dir: manifest_dir.clone(),
                state_dir: state_dir.clone(),
                backup,
                baseline,
                procs: Vec::new(),
                timeout: settings.timeout,
                pods_timeout,
                done: false,
            },
            _lock: lock,
            settings,
            client,
            kubectl,
            node,
            hostname_label,
            version,
            name,
            state_dir,
            dir,
            manifest_dir,
            agent_args: Vec::new(),
            agent_runs: 0,
        };
        if !opts.processes {
            return Some(scenario);
        }
        let op_port = free_port();
        let operator = spawn(
            "operator",
            &[
                "operator".into(),
                "--metrics-addr".into(),
                format!("127.0.0.1:{op_port}"),
                "--lease-name".into(),
                lease,
                "--lease-namespace".into(),
                "kube-system".into(),
            ],
            &scenario.settings,
            &scenario.dir,
            op_port,
        );
        scenario.cleanup.procs.push(operator);
        let agent_port = free_port();
        let mut agent_args: Vec<String> = vec![
            "agent".into(),
            "--node".into(),
            scenario.node.clone(),
            "--manifest-dir".into(),
            scenario.manifest_dir.display().to_string(),
            "--state-dir".into(),
            scenario.state_dir.display().to_string(),
            "--metrics-addr".into(),
            format!("127.0.0.1:{agent_port}"),
            "--drift-mode".into(),
            match drift {
                DriftMode::Enforce => "enforce",
                DriftMode::Observe => "observe",
            }
            .into(),
        ];
        if let Some(e) = &scenario.settings.container_runtime_endpoint {
            agent_args.push("--container-runtime-endpoint".into());
            agent_args.push(e.clone());
        }
        let agent = spawn(
            "agent",
            &agent_args,
            &scenario.settings,
            &scenario.dir,
            agent_port,
        );
        scenario.agent_args = agent_args;
        scenario.agent_runs = 1;
        scenario.cleanup.procs.push(agent);
        let ports: Vec<(&'static str, u16)> = scenario
            .cleanup
            .procs
            .iter()
            .map(|p| (p.name, p.port))
            .collect();
        let t = scenario.settings.timeout;
        for (what, port) in ports {
            scenario
                .eventually(&format!("the {what}'s /healthz"), t, async || {
                    (http_status(port, "/healthz") == 200)
                        .then_some(())
                        .ok_or_else(|| "not answering 200".to_string())
                })
                .await;
        }
        Some(scenario)
    }
}

/// Whether a `ControlPlaneNode` runs `rev` and is `Healthy`.
pub fn rolled_out(c: &ControlPlaneNode, rev: &str) -> bool {
    let st = c.status.as_ref();
    c.spec.revision == rev
        && st.and_then(|s| s.target_revision.as_deref()) == Some(rev)
        && st.and_then(|s| s.phase) == Some(NodePhase::Healthy)
}

/// A config as `kubectl apply` input (no status).
pub fn manifest_json(cpc: &ControlPlaneConfig) -> Vec<u8> {
    let mut v = serde_json::to_value(cpc).expect("config serializes");
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    serde_json::to_vec(&v).expect("JSON")
}

/// Sets (or adds) one extra flag of a component.
pub fn set_arg(cpc: &mut ControlPlaneConfig, c: Component, name: &str, value: &str) {
    let args = match c {
        Component::ApiServer => &mut cpc.spec.api_server.get_or_insert_default().extra_args,
        Component::ControllerManager => {
            &mut cpc
                .spec
                .controller_manager
                .get_or_insert_default()
                .extra_args
        }
        Component::Scheduler => &mut cpc.spec.scheduler.get_or_insert_default().extra_args,
    };
    args.retain(|a| a.name != name);
    args.push(Arg::new(name, value));
}

/// The rendered manifest of a component in a `ControlPlaneNode`.
pub fn rendered(c: &ControlPlaneNode, comp: Component) -> &kubeplane::api::RenderedManifest {
    c.spec
        .manifests
        .iter()
        .find(|m| m.component == comp)
        .unwrap_or_else(|| panic!("no {comp} manifest in ControlPlaneNode {}", c.name_any()))
}

/// The component's status in a `ControlPlaneNode`.
pub fn component_status(
    c: &ControlPlaneNode,
    comp: Component,
) -> Option<&kubeplane::api::ComponentStatus> {
    c.status
        .as_ref()?
        .components
        .iter()
        .find(|s| s.name == comp.name())
}
