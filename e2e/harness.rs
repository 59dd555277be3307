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

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A regular file of the manifest directory, as found.
#[derive(Clone, Debug)]
struct Saved {
    name: String,
    bytes: Vec<u8>,
    mode: u32,
}

/// The manifest directory as the scenario found it.
#[derive(Clone, Debug, Default)]
pub struct Backup {
    files: Vec<Saved>,
}

/// Every regular file of `dir` (dot files too), by name. Directories are skipped.
fn regular_files(dir: &Path) -> std::io::Result<Vec<(String, fs::Metadata)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let meta = fs::symlink_metadata(e.path())?;
        if meta.is_dir() {
            continue;
        }
        out.push((e.file_name().to_string_lossy().into_owned(), meta));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

impl Backup {
    /// Copies every file of `manifest_dir` into memory and into `backup_dir` (outside it).
    pub fn take(manifest_dir: &Path, backup_dir: &Path) -> Backup {
        fs::create_dir_all(backup_dir)
            .unwrap_or_else(|e| panic!("create {}: {e}", backup_dir.display()));
        let mut files = Vec::new();
        let found = regular_files(manifest_dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", manifest_dir.display()));
        for (name, meta) in found {
            if meta.file_type().is_symlink() {
                panic!(
                    "{}/{name} is a symlink: the suite only runs on a manifest directory of plain files",
                    manifest_dir.display()
                );
            }
            let bytes = fs::read(manifest_dir.join(&name))
                .unwrap_or_else(|e| panic!("read {}/{name}: {e}", manifest_dir.display()));
            fs::write(backup_dir.join(&name), &bytes)
                .unwrap_or_else(|e| panic!("back up {name} to {}: {e}", backup_dir.display()));
            files.push(Saved {
                name,
                bytes,
                mode: meta.permissions().mode() & 0o7777,
            });
        }
        let _ = fs::write(
            backup_dir.join("..").join("RESTORE.txt"),
            format!(
                "The files in backup/ are {} as the e2e scenario found it. The suite restores them\n\
                 itself; if the test process was killed, copy them back (and remove the files it\n\
                 added) by hand.\n",
                manifest_dir.display()
            ),
        );
        Backup { files }
    }

    /// The bytes of a file as found.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.bytes.as_slice())
    }

    /// Puts the directory back: files the run added are removed, changed files rewritten
    /// atomically (dot-file sibling, fsync, rename, fsync the directory), unchanged files
    /// left alone. Returns what it did, one line each.
    pub fn restore(&self, manifest_dir: &Path) -> Result<Vec<String>, String> {
        let mut done = Vec::new();
        let keep: BTreeSet<&str> = self.files.iter().map(|f| f.name.as_str()).collect();
        let now = regular_files(manifest_dir).map_err(|e| e.to_string())?;
        for (name, _) in &now {
            if !keep.contains(name.as_str()) {
                fs::remove_file(manifest_dir.join(name))
                    .map_err(|e| format!("remove {name}: {e}"))?;
                done.push(format!("removed {name}, which the run added"));
            }
        }
        for f in &self.files {
            let path = manifest_dir.join(&f.name);
            if fs::read(&path).ok().as_deref() == Some(f.bytes.as_slice()) {
                continue;
            }
            write_atomically(&path, &f.bytes, f.mode)?;
            done.push(format!("restored {}", f.name));
        }
        Ok(done)
    }
}

/// Writes a file the way kubeplane does ([`kubeplane::fsio::atomic_write`]): a dot-file
/// sibling (kubelet ignores dot files), fsync, rename over the target, fsync the directory.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let dir = path.parent().ok_or("no parent directory")?;
    kubeplane::fsio::atomic_write(dir, path, bytes, mode)
        .map_err(|e| format!("write {}: {e}", path.display()))
}

/// Content, mode, inode and mtime (ns) of every file of a directory.
pub type DirSnapshot = BTreeMap<String, (Vec<u8>, u32, u64, i128)>;

/// A snapshot of every file in `dir`.
pub fn snapshot(dir: &Path) -> DirSnapshot {
    regular_files(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .into_iter()
        .map(|(name, m)| {
            let bytes = fs::read(dir.join(&name)).unwrap_or_default();
            let mtime = m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128;
            (name, (bytes, m.mode(), m.ino(), mtime))
        })
        .collect()
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

impl Cleanup {
    /// Undoes the scenario; returns the problems met (empty when everything was restored).
    fn run(&mut self) -> Vec<String> {
        if self.done {
            return Vec::new();
        }
        self.done = true;
        let mut problems = Vec::new();
        // The agent first: it would heal the files about to be restored.
        for p in self.procs.iter_mut().rev() {
            p.stop();
        }
        // The manifests first: a broken kube-apiserver left on disk takes the API (and every
        // deletion below) with it.
        match self.backup.restore(&self.manifest_dir) {
            Ok(lines) => {
                for l in lines {
                    eprintln!("cleanup: {l}");
                }
            }
            Err(e) => problems.push(format!("restoring {}: {e}", self.manifest_dir.display())),
        }
        if let Err(e) = wait_api(&self.kubectl, self.timeout) {
            problems.push(e);
        }
        let deletions: [&[&str]; 3] = [
            &[
                "delete",
                "controlplaneconfig",
                &self.config,
                "--ignore-not-found",
                "--timeout=60s",
            ],
            &[
                "delete",
                "controlplanenode",
                "-l",
                &format!("{CONFIG_LABEL}={}", self.config),
                "--ignore-not-found",
                "--timeout=60s",
            ],
            &[
                "-n",
                "kube-system",
                "delete",
                "lease",
                &self.lease,
                "--ignore-not-found",
            ],
        ];
        for args in deletions {
            if let Err(e) = self.kubectl.run(args, None) {
                problems.push(e);
            }
        }
        if let Err(e) = fs::remove_dir_all(&self.state_dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            problems.push(format!("remove {}: {e}", self.state_dir.display()));
        }
        // The control plane as found: every baseline mirror pod back with its hash, Ready.
        let deadline = Instant::now() + self.pods_timeout;
        for (pod, hash) in &self.baseline {
            loop {
                let seen = self.kubectl.run(
                    &["-n", "kube-system", "get", "pod", pod, "-o", "json"],
                    None,
                );
                let last = match seen.map(|s| serde_json::from_str::<Pod>(&s)) {
                    Ok(Ok(p)) if pod_hash(&p) == Some(hash.as_str()) && pod_ready(&p) => break,
                    Ok(Ok(p)) => format!(
                        "hash {:?}, ready {}",
                        pod_hash(&p).unwrap_or("<none>"),
                        pod_ready(&p)
                    ),
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e,
                };
                if Instant::now() > deadline {
                    problems.push(format!(
                        "mirror pod kube-system/{pod} did not come back with config hash {hash} and Ready after the manifests were restored (last seen: {last})"
                    ));
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        problems
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if std::thread::panicking() {
            for p in &self.procs {
                eprintln!(
                    "----- last lines of the {} log ({}):\n{}",
                    p.name,
                    p.log.display(),
                    tail(&p.log, 60)
                );
            }
        }
        for p in self.run() {
            eprintln!("cleanup problem: {p}");
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

async fn client(s: &Settings) -> Client {
    let kc = Kubeconfig::read_from(&s.kubeconfig)
        .unwrap_or_else(|e| panic!("read {}: {e}", s.kubeconfig.display()));
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("kubeconfig {}: {e}", s.kubeconfig.display()));
    Client::try_from(config).expect("a Kubernetes client")
}

/// `kubeplane crd`, server-side applied, then Established.
async fn install_crds(client: &Client, s: &Settings) {
    let timeout = s.timeout;
    let out = Command::new(&s.kubeplane)
        .arg("crd")
        .output()
        .expect("run kubeplane crd");
    assert!(out.status.success(), "kubeplane crd failed");
    let docs: Vec<CustomResourceDefinition> =
        serde_saphyr::from_multiple(std::str::from_utf8(&out.stdout).expect("UTF-8"))
            .expect("kubeplane crd prints CustomResourceDefinitions");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply("kubeplane-e2e").force();
    for crd in &docs {
        let name = crd.name_any();
        api.patch(&name, &params, &Patch::Apply(crd))
            .await
            .unwrap_or_else(|e| panic!("apply CRD {name}: {e}"));
    }
    for crd in &docs {
        let name = crd.name_any();
        let established = kube::runtime::wait::await_condition(
            api.clone(),
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        );
        tokio::time::timeout(timeout, established)
            .await
            .unwrap_or_else(|_| panic!("CRD {name} not Established within {timeout:?}"))
            .unwrap_or_else(|e| panic!("watching CRD {name}: {e}"));
    }
}

/// The node to run on: the setting, else the only control-plane Node, else this host.
async fn find_node(client: &Client, s: &Settings) -> (String, String) {
    let nodes: Api<Node> = Api::all(client.clone());
    let name = match &s.node {
        Some(n) => n.clone(),
        None => {
            let cp = nodes
                .list_metadata(
                    &ListParams::default().labels("node-role.kubernetes.io/control-plane"),
                )
                .await
                .expect("list Nodes");
            let host = fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap_or_default()
                .trim()
                .to_lowercase();
            match cp.items.as_slice() {
                [one] => one.name_any(),
                _ if !host.is_empty() => host,
                _ => panic!("cannot tell which Node this is: set {}", settings::NODE),
            }
        }
    };
    let node = nodes.get_opt(&name).await.expect("get Node").unwrap_or_else(|| {
        panic!(
            "Node {name} does not exist: set {} to the name of the control-plane node this suite runs on",
            settings::NODE
        )
    });
    let label = node
        .labels()
        .get("kubernetes.io/hostname")
        .cloned()
        .unwrap_or_else(|| panic!("Node {name} has no kubernetes.io/hostname label"));
    (name, label)
}

/// Deletes what an interrupted earlier run left; refuses a cluster where another kubeplane
/// configures this node.
async fn refuse_foreign_kubeplane(client: &Client, kubectl: &Kubectl, node: &str) {
    let cpcs: Api<ControlPlaneConfig> = Api::all(client.clone());
    for c in cpcs
        .list(&ListParams::default())
        .await
        .expect("list ControlPlaneConfigs")
    {
        let name = c.name_any();
        if name.starts_with(PREFIX) {
            eprintln!("deleting ControlPlaneConfig {name}, left by an earlier run");
            let _ = cpcs.delete(&name, &DeleteParams::default()).await;
        } else {
            panic!(
                "ControlPlaneConfig {name} exists: kubeplane is in use on this cluster, and the suite's operator would reconcile that config too. Run the suite on a cluster without kubeplane."
            );
        }
    }
    let cpns: Api<ControlPlaneNode> = Api::all(client.clone());
    if let Some(c) = cpns.get_opt(node).await.expect("get ControlPlaneNode") {
        let owner = c.labels().get(CONFIG_LABEL).cloned().unwrap_or_default();
        if owner.is_empty() || owner.starts_with(PREFIX) {
            eprintln!("deleting ControlPlaneNode {node}, left by an earlier run");
            let _ = kubectl.run(
                &["delete", "controlplanenode", node, "--ignore-not-found"],
                None,
            );
        } else {
            panic!("ControlPlaneNode {node} belongs to ControlPlaneConfig {owner}");
        }
    }
}

fn same_filesystem(a: &Path, b: &Path) -> bool {
    let dev = |p: &Path| {
        p.ancestors()
            .find_map(|x| fs::metadata(x).ok())
            .map(|m| m.dev())
    };
    dev(a) == dev(b)
}

fn spawn(name: &'static str, args: &[String], s: &Settings, dir: &Path, port: u16) -> Proc {
    spawn_logged(name, &format!("{name}.log"), args, s, dir, port)
}

fn spawn_logged(
    name: &'static str,
    log_name: &str,
    args: &[String],
    s: &Settings,
    dir: &Path,
    port: u16,
) -> Proc {
    let log = dir.join(log_name);
    let child = Command::new(&s.kubeplane)
        .args(args)
        .env("KUBECONFIG", &s.kubeconfig)
        .env("KUBEPLANE_LOG", "info,kubeplane=debug")
        .env_remove("NODE_NAME")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).expect("log file"))
        .spawn()
        .unwrap_or_else(|e| panic!("start kubeplane {name}: {e}"));
    Proc {
        name,
        child,
        log,
        port,
    }
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

    /// Undoes the scenario and fails the test when the control plane could not be put back.
    /// The port of the agent's /healthz, /readyz, /metrics on 127.0.0.1.
    pub fn agent_port(&self) -> u16 {
        self.cleanup
            .procs
            .iter()
            .find(|p| p.name == "agent")
            .map(|p| p.port)
            .expect("the agent process")
    }

    /// The agent's pid (the process is not reaped until [`Scenario::restart_agent`]).
    pub fn agent_pid(&self) -> i32 {
        self.cleanup
            .procs
            .iter()
            .find(|p| p.name == "agent")
            .map(|p| p.child.id() as i32)
            .expect("the agent process")
    }

    /// Reaps the agent (SIGKILLed by the caller, or killed here) and starts it again with
    /// the same command line; its log goes to `agent-<n>.log`. Returns the new log's path.
    pub fn restart_agent(&mut self) -> PathBuf {
        let i = self
            .cleanup
            .procs
            .iter()
            .position(|p| p.name == "agent")
            .expect("the agent process");
        let mut old = self.cleanup.procs.remove(i);
        let _ = old.child.kill();
        let _ = old.child.wait();
        self.agent_runs += 1;
        let p = spawn_logged(
            "agent",
            &format!("agent-{}.log", self.agent_runs),
            &self.agent_args,
            &self.settings,
            &self.dir,
            old.port,
        );
        let log = p.log.clone();
        self.cleanup.procs.push(p);
        log
    }

    pub fn finish(mut self) {
        let problems = self.cleanup.run();
        assert!(
            problems.is_empty(),
            "cleanup of {}:\n{}",
            self.name,
            problems.join("\n")
        );
        say(&format!(
            "e2e {}: passed (logs in {})",
            self.name,
            self.dir.display()
        ));
    }

    /// The manifests backed up when the scenario started.
    pub fn backup(&self) -> &Backup {
        &self.cleanup.backup
    }

    /// The scheduler's and controller-manager's mirror pod hashes when the scenario started.
    pub fn baseline_hash(&self, c: Component) -> Option<&str> {
        self.cleanup
            .baseline
            .get(&c.mirror_pod_name(&self.node))
            .map(String::as_str)
    }

    /// Fails with the process's log when the operator or the agent has exited.
    pub fn check_processes(&mut self) {
        for p in &mut self.cleanup.procs {
            if let Some(status) = p.exited() {
                panic!(
                    "kubeplane {} exited ({status}); its log:\n{}",
                    p.name,
                    tail(&p.log, 80)
                );
            }
        }
    }

    /// Polls `probe` until it returns `Ok`, checking that the processes still run; fails
    /// after `timeout` with the last thing `probe` saw.
    pub async fn eventually<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        probe: impl AsyncFn() -> Result<T, String>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = match probe().await {
                Ok(v) => return v,
                Err(seen) => seen,
            };
            self.check_processes();
            if Instant::now() > deadline {
                panic!(
                    "timed out after {}s waiting for {what}; last seen:\n{seen}",
                    timeout.as_secs()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// A config for this node only: kube-apiserver and kube-controller-manager not managed,
    /// kube-scheduler managed, the cluster's paths, images and version, `minReadySeconds` 2.
    pub fn config(&self) -> ControlPlaneConfig {
        let kubeconfig = |f: &str| Some(format!("{}/{f}", self.settings.kubeconfig_dir));
        let spec = ControlPlaneConfigSpec {
            kubernetes_version: self.version.clone(),
            image_repository: Some(self.settings.image_repository.clone()),
            image_pull_policy: Some(self.settings.pull_policy),
            certificates_dir: Some(self.settings.certificates_dir.clone()),
            node_selector: Some(BTreeMap::from([(
                "kubernetes.io/hostname".to_string(),
                self.hostname_label.clone(),
            )])),
            api_server: Some(ApiServer {
                managed: Some(false),
                ..Default::default()
            }),
            controller_manager: Some(ControllerManager {
                managed: Some(false),
                kubeconfig: kubeconfig("controller-manager.conf"),
                ..Default::default()
            }),
            scheduler: Some(Scheduler {
                kubeconfig: kubeconfig("scheduler.conf"),
                ..Default::default()
            }),
            rollout: Some(Rollout {
                min_ready_seconds: Some(2),
                ..Default::default()
            }),
            ..Default::default()
        };
        ControlPlaneConfig::new(&self.name, spec)
    }

    /// `kubectl apply -f -` of a config, as a user would.
    pub fn apply(&self, cpc: &ControlPlaneConfig) {
        self.kubectl
            .run(&["apply", "-f", "-"], Some(&manifest_json(cpc)))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The node's `ControlPlaneNode`, if any.
    pub async fn cpn(&self) -> Option<ControlPlaneNode> {
        Api::<ControlPlaneNode>::all(self.client.clone())
            .get_opt(&self.node)
            .await
            .expect("get ControlPlaneNode")
    }

    /// The scenario's config as stored.
    pub async fn cpc(&self) -> ControlPlaneConfig {
        Api::<ControlPlaneConfig>::all(self.client.clone())
            .get(&self.name)
            .await
            .expect("get ControlPlaneConfig")
    }

    /// A component's mirror pod on the node.
    pub async fn mirror_pod(&self, c: Component) -> Option<Pod> {
        Api::<Pod>::namespaced(self.client.clone(), "kube-system")
            .get_opt(&c.mirror_pod_name(&self.node))
            .await
            .expect("get mirror pod")
    }

    /// Waits until the node's `ControlPlaneNode` satisfies `pred`.
    pub async fn wait_cpn(
        &mut self,
        what: &str,
        pred: impl Fn(&ControlPlaneNode) -> bool,
    ) -> ControlPlaneNode {
        let api = Api::<ControlPlaneNode>::all(self.client.clone());
        let node = self.node.clone();
        let t = self.settings.timeout;
        self.eventually(what, t, async || match api.get_opt(&node).await {
            Ok(Some(c)) if pred(&c) => Ok(c),
            Ok(Some(c)) => Err(dump(&c)),
            Ok(None) => Err(format!("no ControlPlaneNode {node}")),
            Err(e) => Err(e.to_string()),
        })
        .await
    }

    /// Waits until the scenario's config satisfies `pred`.
    pub async fn wait_cpc(
        &mut self,
        what: &str,
        pred: impl Fn(&ControlPlaneConfig) -> bool,
    ) -> ControlPlaneConfig {
        let api = Api::<ControlPlaneConfig>::all(self.client.clone());
        let name = self.name.clone();
        let t = self.settings.timeout;
        self.eventually(what, t, async || match api.get_opt(&name).await {
            Ok(Some(c)) if pred(&c) => Ok(c),
            Ok(Some(c)) => Err(dump(&c.status)),
            Ok(None) => Err(format!("no ControlPlaneConfig {name}")),
            Err(e) => Err(e.to_string()),
        })
        .await
    }

    /// The revision the operator computes for `cpc` on this node (no encryption Secret): it
    /// covers the rendered bytes, so it needs the facts the node's agent reports.
    pub async fn revision(&self, cpc: &ControlPlaneConfig) -> String {
        let facts = self
            .cpn()
            .await
            .and_then(|c| c.status?.node_facts)
            .expect("the node's agent reported its facts");
        kubeplane::render::revision_for(&cpc.spec, None, &[facts]).expect("renders")
    }

    /// Waits until the node runs `cpc`'s revision and reports `Healthy`.
    pub async fn wait_rolled_out(&mut self, cpc: &ControlPlaneConfig) -> ControlPlaneNode {
        self.wait_cpn("the node's facts", |c| {
            c.status.as_ref().is_some_and(|s| s.node_facts.is_some())
        })
        .await;
        let rev = self.revision(cpc).await;
        self.wait_cpn(&format!("revision {rev} Healthy on the node"), |c| {
            rolled_out(c, &rev)
        })
        .await
    }

    /// The manifest directory's file `name`.
    pub fn manifest(&self, name: &str) -> Option<Vec<u8>> {
        fs::read(self.manifest_dir.join(name)).ok()
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

/// A short description of a difference between two snapshots.
pub fn snapshot_diff(before: &DirSnapshot, after: &DirSnapshot) -> String {
    let mut out = String::new();
    for (name, b) in before {
        match after.get(name) {
            None => {
                let _ = writeln!(out, "{name}: removed");
            }
            Some(a) if a != b => {
                let _ = writeln!(
                    out,
                    "{name}: content {} mode {} inode {} mtime {}",
                    if a.0 == b.0 { "same" } else { "changed" },
                    if a.1 == b.1 { "same" } else { "changed" },
                    if a.2 == b.2 { "same" } else { "changed" },
                    if a.3 == b.3 { "same" } else { "changed" },
                );
            }
            _ => {}
        }
    }
    for name in after.keys().filter(|n| !before.contains_key(*n)) {
        let _ = writeln!(out, "{name}: added");
    }
    out
}
