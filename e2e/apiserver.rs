//! Scenarios h–k: kubeplane manages the node's kube-apiserver (a static Pod of the manifest
//! directory), so every change takes the API the operator, the agent and this test talk to
//! away for a while. What is measured here is measured from the outside:
//!
//! - [`Availability`] samples `GET /readyz` through the suite's kubeconfig (the VIP on
//!   `e2e/cluster`) every 150 ms: the API's unavailable seconds;
//! - [`FileWatch`] polls `kube-apiserver.yaml` (and the agent's `state.json`) every 10 ms: the
//!   `metadata.uid` of every manifest kubelet could have read, and the lifecycle steps;
//! - a kube-apiserver process in the cgroup of the new pod uid (`/proc/*/cgroup` holds
//!   `pod<uid>`: kubelet's pod uid of a static Pod is the manifest's `metadata.uid`), and the
//!   local `/livez`: what `kubeplane apply` claims when it says "healthy".
//!
//! Each config selects only this node and manages only kube-apiserver (the import of the
//! node's own manifests, so the first revision is adopted without a restart). Cleanup puts the
//! original `kube-apiserver.yaml` back first and waits for the API before deleting anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Client;

use crate::harness::{
    DriftMode, Options, Scenario, component_status, pod_hash, pod_ready, rendered, rolled_out, say,
    set_arg,
};
use kubeplane::api::{
    Audit, Component, ControlPlaneConfig, ControlPlaneNode, HealthTimeouts, NodePhase, Rollout,
};

/// `healthTimeoutSeconds.apiServer` of a revision expected to work: a kube-apiserver restart
/// took 30–60 s of kubelet work on this repository's loaded 2-core machine.
pub const GOOD_TIMEOUT: i32 = 120;
/// `healthTimeoutSeconds.apiServer` of a revision expected to fail: how long the API stays
/// down before the rollback (validation's minimum is 10).
pub const BAD_TIMEOUT: i32 = 45;
/// `minReadySeconds` of every revision here.
pub const MIN_READY: i32 = 2;

/// The annotation a restored manifest carries (`agent::engine::RESTORED_ANNOTATION`).
pub const RESTORED: &str = "kubeplane.io/restored-after";

/// Failure reasons a kube-apiserver that never becomes healthy may be reported with.
pub const FAILURE_REASONS: [&str; 6] = [
    "ContainerExited",
    "PodNotReady",
    "EndpointFailing",
    "ContainerNotStarted",
    "NotStable",
    "HashNeverChanged",
];

/// Starts an h–k scenario: kube-apiserver in the baseline, the operator and agent only when
/// `processes`.
pub async fn start(id: &str, processes: bool) -> Option<Scenario> {
    Scenario::start_with(
        id,
        Options {
            drift: DriftMode::Enforce,
            api_server: true,
            processes,
        },
    )
    .await
}

/// The config the node's own manifests mean (`kubeplane import`), for this node only,
/// managing kube-apiserver only, `minReadySeconds` [`MIN_READY`], kube-apiserver's timeout
/// `timeout`.
pub fn import_config(s: &Scenario, timeout: i32) -> ControlPlaneConfig {
    let out = Command::new(&s.settings.kubeplane)
        .args(["import", "--manifest-dir"])
        .arg(&s.manifest_dir)
        .args(["--node", &s.node])
        .output()
        .expect("run kubeplane import");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // 0: exact; 1: the render would change a manifest (then the first revision restarts
    // kube-apiserver instead of adopting it: slower, still correct).
    assert!(
        matches!(out.status.code(), Some(0 | 1)) && !stdout.trim().is_empty(),
        "kubeplane import --manifest-dir {} failed ({}): {}",
        s.manifest_dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.code() != Some(0) {
        say(&format!(
            "e2e {}: note: kubeplane import is not exact; the first revision rewrites kube-apiserver.yaml: {}",
            s.name,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let mut cpc: ControlPlaneConfig =
        serde_saphyr::from_str(&stdout).expect("kubeplane import prints a ControlPlaneConfig");
    cpc.metadata = Default::default();
    cpc.metadata.name = Some(s.name.clone());
    cpc.spec.node_selector = Some(BTreeMap::from([(
        "kubernetes.io/hostname".to_string(),
        s.hostname_label.clone(),
    )]));
    cpc.spec.api_server.get_or_insert_default().managed = Some(true);
    cpc.spec.controller_manager.get_or_insert_default().managed = Some(false);
    cpc.spec.scheduler.get_or_insert_default().managed = Some(false);
    set_timeout(&mut cpc, timeout);
    cpc
}

/// Sets `rollout`: `minReadySeconds` [`MIN_READY`], kube-apiserver's health timeout.
pub fn set_timeout(cpc: &mut ControlPlaneConfig, timeout: i32) {
    cpc.spec.rollout = Some(Rollout {
        min_ready_seconds: Some(MIN_READY),
        health_timeout_seconds: Some(HealthTimeouts {
            api_server: Some(timeout),
            ..Default::default()
        }),
        ..Default::default()
    });
}

/// The same config with an etcd kube-apiserver cannot reach: `--etcd-servers=https://127.0.0.1:1`
/// (set through `spec.etcd.external.endpoints`, which renders that flag). kubeplane's
/// validation accepts it; kube-apiserver never becomes ready.
pub fn broken(cpc: &ControlPlaneConfig) -> ControlPlaneConfig {
    let mut bad = cpc.clone();
    let etcd = bad.spec.etcd.get_or_insert_default();
    let ext = etcd
        .external
        .as_mut()
        .expect("the imported config has an external etcd");
    ext.endpoints = vec!["https://127.0.0.1:1".into()];
    set_timeout(&mut bad, BAD_TIMEOUT);
    bad
}

/// One `/readyz` sample: when it was sent, whether it answered 200.
type Sample = (Instant, bool);

/// `GET /readyz` through the suite's kubeconfig every 150 ms (2 s timeout), in a task.
pub struct Availability {
    samples: Arc<Mutex<Vec<Sample>>>,
    task: tokio::task::JoinHandle<()>,
}

/// A stretch of failed samples: from the first failure to the first success after it.
#[derive(Clone, Copy, Debug)]
pub struct Outage {
    pub start: Instant,
    /// `None`: not over when last sampled.
    pub end: Option<Instant>,
}

impl Outage {
    pub fn seconds(&self) -> f64 {
        self.end
            .unwrap_or_else(Instant::now)
            .duration_since(self.start)
            .as_secs_f64()
    }
    pub fn contains(&self, t: Instant) -> bool {
        self.start <= t && self.end.is_none_or(|e| t < e)
    }
}

impl Availability {
    pub fn start(client: Client) -> Availability {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let out = samples.clone();
        let task = tokio::spawn(async move {
            loop {
                let t = Instant::now();
                let req = http::Request::get("/readyz").body(Vec::new()).unwrap();
                let ok = matches!(
                    tokio::time::timeout(Duration::from_secs(2), client.request_text(req)).await,
                    Ok(Ok(_))
                );
                out.lock().unwrap().push((t, ok));
                tokio::time::sleep_until((t + Duration::from_millis(150)).into()).await;
            }
        });
        Availability { samples, task }
    }

    /// Every outage so far, oldest first.
    pub fn outages(&self) -> Vec<Outage> {
        let samples = self.samples.lock().unwrap();
        let mut out = Vec::new();
        let mut open: Option<Instant> = None;
        for &(t, ok) in samples.iter() {
            match (ok, open) {
                (false, None) => open = Some(t),
                (true, Some(start)) => {
                    out.push(Outage {
                        start,
                        end: Some(t),
                    });
                    open = None;
                }
                _ => {}
            }
        }
        if let Some(start) = open {
            out.push(Outage { start, end: None });
        }
        out
    }

    /// Whether the last sample answered.
    pub fn up(&self) -> bool {
        self.samples
            .lock()
            .unwrap()
            .last()
            .is_some_and(|&(_, ok)| ok)
    }

    /// Waits (up to `timeout`) until a sample taken after `after` answered.
    pub async fn wait_up_after(&self, after: Instant, timeout: Duration) -> Instant {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(&(t, _)) = self
                .samples
                .lock()
                .unwrap()
                .iter()
                .find(|&&(t, ok)| ok && t > after)
            {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "the API did not come back within {}s",
                timeout.as_secs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Availability {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the watcher saw change.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// `kube-apiserver.yaml` now holds this uid (and this `kubeplane.io/restored-after`).
    Manifest {
        uid: Option<String>,
        restored_after: Option<String>,
    },
    /// `state.json`'s `lifecycle.step` (and the whole lifecycle, as JSON).
    Step(String, String),
    /// The watcher SIGKILLed the agent.
    Killed { pid: i32, step_then: String },
}

/// Polls `kube-apiserver.yaml` and `<state-dir>/state.json` every 10 ms in a thread and
/// records every change; optionally SIGKILLs a pid as soon as the manifest carries
/// `kubeplane.io/restored-after`.
pub struct FileWatch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<(Instant, Change)>>>,
    kill: Arc<Mutex<Option<i32>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// `metadata.uid` and the restored-after annotation of a manifest.
pub fn uid_of(bytes: &[u8]) -> (Option<String>, Option<String>) {
    match serde_saphyr::from_slice::<Pod>(bytes) {
        Ok(p) => (
            p.metadata.uid.clone(),
            p.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(RESTORED).cloned()),
        ),
        Err(_) => (Some("<unparsable>".into()), None),
    }
}

/// `lifecycle.step` and the lifecycle of a `state.json`.
fn step_of(bytes: &[u8]) -> (String, String) {
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    let l = &v["lifecycle"];
    (
        l["step"].as_str().unwrap_or("<none>").to_string(),
        l.to_string(),
    )
}

impl FileWatch {
    pub fn start(manifest: PathBuf, state: PathBuf) -> FileWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kill: Arc<Mutex<Option<i32>>> = Arc::new(Mutex::new(None));
        let (st, se, ki) = (stop.clone(), seen.clone(), kill.clone());
        let thread = std::thread::spawn(move || {
            let mut last_m: Option<Vec<u8>> = None;
            let mut last_s: Option<Vec<u8>> = None;
            let mut last_step = String::new();
            while !st.load(Ordering::Relaxed) {
                let now = Instant::now();
                if let Ok(b) = std::fs::read(&manifest)
                    && last_m.as_ref() != Some(&b)
                {
                    let (uid, restored_after) = uid_of(&b);
                    if restored_after.is_some()
                        && let Some(pid) = ki.lock().unwrap().take()
                    {
                        // SAFETY: kill(2) of the agent, our own unreaped child.
                        unsafe {
                            libc::kill(pid, libc::SIGKILL);
                        }
                        let after = Instant::now();
                        let step_then = std::fs::read(&state)
                            .map(|b| step_of(&b).0)
                            .unwrap_or_default();
                        se.lock().unwrap().push((
                            after,
                            Change::Killed {
                                pid,
                                step_then: format!("{step_then} (last seen {last_step})"),
                            },
                        ));
                    }
                    se.lock().unwrap().push((
                        now,
                        Change::Manifest {
                            uid,
                            restored_after,
                        },
                    ));
                    last_m = Some(b);
                }
                if let Ok(b) = std::fs::read(&state)
                    && last_s.as_ref() != Some(&b)
                {
                    let (step, l) = step_of(&b);
                    if step != last_step {
                        se.lock()
                            .unwrap()
                            .push((now, Change::Step(step.clone(), l)));
                        last_step = step;
                    }
                    last_s = Some(b);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        FileWatch {
            stop,
            seen,
            kill,
            thread: Some(thread),
        }
    }

    /// SIGKILL `pid` as soon as the manifest carries `kubeplane.io/restored-after`.
    pub fn kill_on_restore(&self, pid: i32) {
        *self.kill.lock().unwrap() = Some(pid);
    }

    /// Everything seen, in time order.
    pub fn seen(&self) -> Vec<(Instant, Change)> {
        let mut v = self.seen.lock().unwrap().clone();
        v.sort_by_key(|(t, _)| *t);
        v
    }

    /// When the agent was killed.
    pub fn killed(&self) -> Option<(Instant, Change)> {
        self.seen()
            .into_iter()
            .find(|(_, c)| matches!(c, Change::Killed { .. }))
    }

    /// First time the manifest held `uid`.
    pub fn first_uid(&self, uid: &str) -> Option<Instant> {
        self.seen().into_iter().find_map(|(t, c)| match c {
            Change::Manifest { uid: Some(u), .. } if u == uid => Some(t),
            _ => None,
        })
    }

    /// First time the manifest carried the restored-after annotation.
    pub fn first_restored(&self) -> Option<(Instant, String, String)> {
        self.seen().into_iter().find_map(|(t, c)| match c {
            Change::Manifest {
                uid: Some(u),
                restored_after: Some(r),
            } => Some((t, u, r)),
            _ => None,
        })
    }

    /// First time `state.json` said `step`, after `after`.
    pub fn first_step(&self, step: &str, after: Instant) -> Option<(Instant, String)> {
        self.seen().into_iter().find_map(|(t, c)| match c {
            Change::Step(s, l) if s == step && t >= after => Some((t, l)),
            _ => None,
        })
    }

    /// The timeline, relative to `t0`.
    pub fn timeline(&self, t0: Instant) -> String {
        self.seen()
            .iter()
            .map(|(t, c)| format!("  {:>8.3}s {c:?}", secs(t0, *t)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for FileWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Seconds from `a` to `b` (negative when `b` is earlier).
pub fn secs(a: Instant, b: Instant) -> f64 {
    if b >= a {
        b.duration_since(a).as_secs_f64()
    } else {
        -a.duration_since(b).as_secs_f64()
    }
}

/// The outages, relative to `t0`.
pub fn outages_text(outages: &[Outage], t0: Instant) -> String {
    outages
        .iter()
        .map(|o| {
            format!(
                "  API unavailable from {:.3}s to {} ({:.1}s)",
                secs(t0, o.start),
                o.end
                    .map(|e| format!("{:.3}s", secs(t0, e)))
                    .unwrap_or_else(|| "(not back)".into()),
                o.seconds()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The ControlPlaneNode, or `None` while the API does not answer (2 s).
pub async fn cpn_now(s: &Scenario) -> Option<ControlPlaneNode> {
    tokio::time::timeout(
        Duration::from_secs(2),
        kube::Api::<ControlPlaneNode>::all(s.client.clone()).get_opt(&s.node),
    )
    .await
    .ok()?
    .ok()?
}

/// Polls the ControlPlaneNode every 200 ms (API outages tolerated) until `pred`; the instant
/// it was first seen so, and the object.
pub async fn poll_cpn(
    s: &mut Scenario,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&ControlPlaneNode) -> bool,
) -> (Instant, ControlPlaneNode) {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("nothing (API unavailable)");
    loop {
        let t = Instant::now();
        if let Some(c) = cpn_now(s).await {
            if pred(&c) {
                return (t, c);
            }
            last = crate::harness::dump(&c.status);
        }
        s.check_processes();
        assert!(
            Instant::now() < deadline,
            "timed out after {}s waiting for {what}; last seen: {last}",
            timeout.as_secs()
        );
        tokio::time::sleep_until((t + Duration::from_millis(200)).into()).await;
    }
}

/// Whether the node settled on `rev` as RolledBack or Failed.
pub fn settled_bad(c: &ControlPlaneNode, rev: &str) -> bool {
    let st = c.status.as_ref();
    c.spec.revision == rev
        && st.and_then(|s| s.target_revision.as_deref()) == Some(rev)
        && st
            .and_then(|s| s.phase)
            .is_some_and(|p| matches!(p, NodePhase::RolledBack | NodePhase::Failed))
}

/// `--audit-log-path` of a kube-apiserver manifest.
pub fn audit_log_path(manifest: &[u8]) -> Option<PathBuf> {
    let p: Pod = serde_saphyr::from_slice(manifest).ok()?;
    let c = p.spec?.containers.into_iter().next()?;
    c.command
        .unwrap_or_default()
        .into_iter()
        .find_map(|a| a.strip_prefix("--audit-log-path=").map(PathBuf::from))
}

/// The audit settings of scenario h: an inline policy (no /readyz, /livez, /healthz noise:
/// this test samples /readyz every 150 ms), the log under the scenario's work directory.
pub fn audit(dir: &Path) -> Audit {
    Audit {
        policy: serde_json::json!({
            "apiVersion": "audit.k8s.io/v1",
            "kind": "Policy",
            "omitStages": ["RequestReceived"],
            "rules": [
                {"level": "None", "nonResourceURLs": ["/healthz*", "/livez*", "/readyz*", "/version"]},
                {"level": "Metadata"}
            ]
        }),
        log_path: Some(dir.join("audit").join("audit.log").display().to_string()),
        max_size: Some(20),
        max_backup: Some(1),
        ..Default::default()
    }
}

/// Pids of processes named `comm` in the cgroup of pod `uid` (kubelet's cgroupfs layout:
/// `…/pod<uid>/<container>`), with their start time in clock ticks since boot.
pub fn processes_of_pod(comm: &str, uid: &str) -> Vec<(i32, u64)> {
    let needle = format!("/pod{uid}/");
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let dir = e.path();
        let c = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if c.trim() != comm {
            continue;
        }
        let cg = std::fs::read_to_string(dir.join("cgroup")).unwrap_or_default();
        if !cg.contains(&needle) {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        // Field 22 (starttime), counted after the ")" that ends the command name.
        let start = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .and_then(|r| r.split_whitespace().nth(19))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        out.push((pid, start));
    }
    out
}

/// Seconds since boot, for comparing with a process's start time.
pub fn uptime_ticks() -> u64 {
    let up: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (up * hz) as u64
}

/// HTTP status of `https://127.0.0.1:<port><path>` (certificate not checked, as kubelet's
/// probes), with curl; 0 when nothing answered within 2 s.
pub fn local_https(port: u16, path: &str) -> u16 {
    Command::new("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "2",
        ])
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(0)
}

/// The kube-apiserver mirror pod, once the API answers.
pub async fn apiserver_pod(s: &mut Scenario, uid: &str) -> Pod {
    let api = kube::Api::<Pod>::namespaced(s.client.clone(), "kube-system");
    let name = Component::ApiServer.mirror_pod_name(&s.node);
    let uid = uid.to_string();
    let t = s.settings.timeout;
    s.eventually(
        &format!("mirror pod {name} with config hash {uid}, Ready"),
        t,
        async || match api.get_opt(&name).await {
            Ok(Some(p)) if pod_hash(&p) == Some(uid.as_str()) && pod_ready(&p) => Ok(p),
            Ok(Some(p)) => Err(format!("hash {:?}, Ready {}", pod_hash(&p), pod_ready(&p))),
            Ok(None) => Err("no mirror pod".into()),
            Err(e) => Err(e.to_string()),
        },
    )
    .await
}

/// Checks that the failed uid is not on disk and no file of the manifest directory carries
/// it (the manifest now is last-known-good with the restored-after annotation).
pub fn assert_not_on_disk(s: &Scenario, bad_uid: &str) {
    for e in std::fs::read_dir(&s.manifest_dir).unwrap().flatten() {
        let b = std::fs::read(e.path()).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&b).contains(bad_uid),
            "{} carries the failed uid {bad_uid}",
            e.path().display()
        );
    }
}

/// The rendered kube-apiserver uid of a ControlPlaneNode.
pub fn apiserver_uid(c: &ControlPlaneNode) -> String {
    rendered(c, Component::ApiServer).config_hash.clone()
}

/// Prints the figures of a rollout that went bad and was rolled back: what the status says.
pub fn check_rolled_back_status(c: &ControlPlaneNode, bad_rev: &str) -> (String, String) {
    let st = c.status.as_ref().expect("status");
    let reason = st.reason.clone().unwrap_or_default();
    let message = st.message.clone().unwrap_or_default();
    assert_eq!(
        st.phase,
        Some(NodePhase::RolledBack),
        "rolled back, not failed: {reason}: {message}"
    );
    assert!(
        FAILURE_REASONS.contains(&reason.as_str()),
        "reason {reason:?} is one of {FAILURE_REASONS:?}: {message}"
    );
    assert!(
        message.contains("kube-apiserver"),
        "the message names kube-apiserver: {message}"
    );
    assert_eq!(st.target_revision.as_deref(), Some(bad_rev));
    if let Some(cs) = component_status(c, Component::ApiServer) {
        say(&format!("  component status: {cs:?}"));
    }
    (reason, message)
}

/// Path of the node's kube-apiserver manifest and of the agent's `state.json`.
fn paths(s: &Scenario) -> (PathBuf, PathBuf) {
    (
        s.manifest_dir.join(Component::ApiServer.manifest_file()),
        s.state_dir.join("state.json"),
    )
}

/// Applies the imported config and waits until it is Healthy (adopted: kube-apiserver is not
/// restarted when the import is exact). Returns the config.
async fn adopt(s: &mut Scenario) -> ControlPlaneConfig {
    let base = import_config(s, GOOD_TIMEOUT);
    let before = s.manifest("kube-apiserver.yaml");
    let t = Instant::now();
    s.apply(&base);
    s.wait_rolled_out(&base).await;
    say(&format!(
        "  base revision {} Healthy after {:.1}s; kube-apiserver.yaml {}",
        s.revision(&base).await,
        t.elapsed().as_secs_f64(),
        if s.manifest("kube-apiserver.yaml") == before {
            "unchanged (adopted)"
        } else {
            "rewritten"
        }
    ));
    base
}

/// h. Audit logging with an inline policy rolls out on kube-apiserver; the agent loses the
/// API during the restart, confirms by local evidence and reports Healthy once the API is
/// back; the audit log is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h_apiserver_audit_logging_rolls_out_and_healthy_follows_the_api_back() {
    let Some(mut s) = start("h", true).await else {
        return;
    };
    let base = adopt(&mut s).await;
    let mut audited = base.clone();
    audited.spec.api_server.get_or_insert_default().audit = Some(audit(&s.dir));
    let rev = s.revision(&audited).await;
    let (manifest, state) = paths(&s);
    let avail = Availability::start(s.client.clone());
    let watch = FileWatch::start(manifest.clone(), state);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(avail.up(), "the API answers before the change");

    let t0 = Instant::now();
    s.apply(&audited);
    let timeout = s.settings.timeout;
    let (t_healthy, cpn) = poll_cpn(&mut s, &format!("revision {rev} Healthy"), timeout, |c| {
        rolled_out(c, &rev)
    })
    .await;
    let uid = apiserver_uid(&cpn);
    let t_written = watch
        .first_uid(&uid)
        .expect("the watcher saw the new kube-apiserver.yaml");
    let outages: Vec<Outage> = avail
        .outages()
        .into_iter()
        .filter(|o| o.start > t_written && o.start < t_healthy)
        .collect();
    say(&format!(
        "e2e h: timeline (s from kubectl apply):\n{}\n{}\n  {:>8.3}s Healthy seen in the ControlPlaneNode",
        watch.timeline(t0),
        outages_text(&outages, t0),
        secs(t0, t_healthy)
    ));
    let last = outages
        .last()
        .copied()
        .expect("the API was unavailable during kube-apiserver's restart");
    let back = last.end.expect("the API is back");
    let unavailable: f64 = outages.iter().map(Outage::seconds).sum();
    let after_back = secs(back, t_healthy);
    say(&format!(
        "e2e h: FIGURES: manifest written {:.1}s after kubectl apply; API unavailable {:.1}s (from {:.1}s to {:.1}s after the write); Healthy reported {:.1}s after the API was back (target < {} s = minReadySeconds {MIN_READY} + 5); kubectl apply -> Healthy {:.1}s",
        secs(t0, t_written),
        unavailable,
        secs(t_written, last.start.min(outages[0].start)),
        secs(t_written, back),
        after_back,
        MIN_READY + 5,
        secs(t0, t_healthy),
    ));
    // Local evidence: the agent's state.json settles the revision as healthy on its own,
    // whether or not the API is back yet.
    match watch.first_step("settled", t_written) {
        Some((t, l)) => say(&format!(
            "e2e h: FIGURES: state.json settled {:.1}s after the write, {:.1}s {} the API was back ({l})",
            secs(t_written, t),
            secs(t, back).abs(),
            if t <= back { "before" } else { "after" }
        )),
        None => panic!("state.json never settled:\n{}", watch.timeline(t0)),
    }
    // The rendered manifest is what kubelet runs, and the audit log it names is written.
    let disk = s.manifest("kube-apiserver.yaml").expect("manifest");
    assert_eq!(
        String::from_utf8_lossy(&disk),
        rendered(&cpn, Component::ApiServer).content,
        "kube-apiserver.yaml is the rendered manifest"
    );
    let pod = apiserver_pod(&mut s, &uid).await;
    let cmd = pod.spec.as_ref().unwrap().containers[0]
        .command
        .clone()
        .unwrap_or_default();
    assert!(
        cmd.iter().any(|a| a.starts_with("--audit-policy-file=")),
        "the pod runs with an audit policy: {cmd:?}"
    );
    let log = audit_log_path(&disk).expect("--audit-log-path in the rendered manifest");
    let t = s.settings.timeout;
    let lines = s
        .eventually(
            &format!("audit events in {}", log.display()),
            t,
            async || {
                let text = std::fs::read_to_string(&log).map_err(|e| e.to_string())?;
                let events: Vec<serde_json::Value> = text
                    .lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .filter(|v: &serde_json::Value| v["auditID"].is_string())
                    .collect();
                if events.is_empty() {
                    Err(format!("{} bytes, no audit event", text.len()))
                } else {
                    Ok(events.len())
                }
            },
        )
        .await;
    say(&format!(
        "e2e h: FIGURES: {lines} audit events in {} (the pod's hostPath mount of {})",
        log.display(),
        log.parent().unwrap().display()
    ));
    assert!(
        after_back < f64::from(MIN_READY + 5),
        "Healthy was reported {after_back:.1}s after the API was back: more than minReadySeconds ({MIN_READY}) + 5 s"
    );
    drop(watch);
    drop(avail);
    s.finish();
}

/// Applies `broken(base)` with the watchers running (and, with `kill`, SIGKILLs the agent as
/// soon as the restored manifest is on disk, then starts it again); waits until the node
/// settles; checks what i and j share. Returns the figures' text.
async fn rolled_back_without_the_api(s: &mut Scenario, kill: bool) {
    let id = if kill { "j" } else { "i" };
    let base = adopt(s).await;
    let good_rev = s.revision(&base).await;
    let bad = broken(&base);
    let bad_rev = s.revision(&bad).await;
    let (manifest, state) = paths(s);
    let avail = Availability::start(s.client.clone());
    let watch = FileWatch::start(manifest, state);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(avail.up(), "the API answers before the change");
    if kill {
        watch.kill_on_restore(s.agent_pid());
    }
    let t0 = Instant::now();
    s.apply(&bad);

    let mut restart = None;
    if kill {
        let deadline = Instant::now() + Duration::from_secs(BAD_TIMEOUT as u64 + 240);
        let killed = loop {
            if let Some(k) = watch.killed() {
                break k;
            }
            assert!(
                Instant::now() < deadline,
                "no restored manifest appeared (the agent was to be killed then):\n{}",
                watch.timeline(t0)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let log = s.restart_agent();
        let t_restart = Instant::now();
        say(&format!(
            "e2e j: killed the agent {:.3}s after kubectl apply ({:?}); started it again {:.0} ms later, log {}",
            secs(t0, killed.0),
            killed.1,
            secs(killed.0, t_restart) * 1000.0,
            log.display()
        ));
        restart = Some((killed.0, t_restart, log));
    }

    let timeout = s.settings.timeout + Duration::from_secs(BAD_TIMEOUT as u64);
    let (t_seen, cpn) = poll_cpn(s, &format!("revision {bad_rev} RolledBack"), timeout, |c| {
        settled_bad(c, &bad_rev)
    })
    .await;
    let bad_uid = apiserver_uid(&cpn);
    let t_bad = watch
        .first_uid(&bad_uid)
        .expect("the watcher saw the failed revision's kube-apiserver.yaml");
    let (t_restore, restored_uid, after) = watch
        .first_restored()
        .expect("the watcher saw the restored kube-apiserver.yaml");
    // Let the agent settle and the watcher look a little longer.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = avail.outages();
    say(&format!(
        "e2e {id}: timeline (s from kubectl apply):\n{}\n{}\n  {:>8.3}s RolledBack seen in the ControlPlaneNode",
        watch.timeline(t0),
        outages_text(&all, t0),
        secs(t0, t_seen)
    ));
    assert_eq!(after, bad_rev, "{RESTORED} names the failed revision");
    assert_ne!(restored_uid, bad_uid);

    // The API was down the whole time: one outage from after the failed write until after
    // the restore was written.
    let o = all
        .iter()
        .find(|o| o.contains(t_restore))
        .copied()
        .unwrap_or_else(|| {
            panic!(
                "the API answered when the restore was written ({:.3}s): the rollback did not happen without the API\n{}",
                secs(t0, t_restore),
                outages_text(&all, t0)
            )
        });
    assert!(
        o.start > t_bad,
        "the outage began after the failed manifest was written"
    );
    let back = o.end.expect("the API is back");

    let (reason, message) = check_rolled_back_status(&cpn, &bad_rev);
    let st = cpn.status.as_ref().unwrap();
    assert_eq!(
        st.last_known_good_revision.as_deref(),
        Some(good_rev.as_str())
    );

    // The failed revision never reappears on disk after the restore (j: after the kill).
    let from = restart.as_ref().map(|r| r.0).unwrap_or(t_restore);
    let uids_after: Vec<String> = watch
        .seen()
        .into_iter()
        .filter(|(t, _)| *t >= from)
        .filter_map(|(_, c)| match c {
            Change::Manifest { uid, .. } => uid,
            _ => None,
        })
        .collect();
    assert!(
        !uids_after.contains(&bad_uid),
        "the failed uid {bad_uid} reappeared on disk: {uids_after:?}"
    );
    assert_not_on_disk(s, &bad_uid);
    let disk = s.manifest("kube-apiserver.yaml").expect("manifest");
    let (now_uid, now_after) = uid_of(&disk);
    assert_eq!(now_after.as_deref(), Some(bad_rev.as_str()));
    let now_uid = now_uid.expect("uid");
    let pod = apiserver_pod(s, &now_uid).await;
    assert!(pod_ready(&pod));
    // What the status says of kube-apiserver once the API has been back a while.
    if let Some(c) = cpn_now(s).await {
        say(&format!(
            "e2e {id}: kube-apiserver's component status {:.1}s after the API was back: {:?}",
            secs(back, Instant::now()),
            component_status(&c, Component::ApiServer)
        ));
    }

    say(&format!(
        "e2e {id}: FIGURES: failed manifest written {:.1}s after kubectl apply; API unavailable {:.1}s without a break (from {:.1}s after the failed write to {:.1}s after it; restore written {:.1}s after the failed write, {:.1}s into the outage; API back {:.1}s after the restore); RolledBack seen {:.1}s after the API was back; reason {reason}: {message}",
        secs(t0, t_bad),
        o.seconds(),
        secs(t_bad, o.start),
        secs(t_bad, back),
        secs(t_bad, t_restore),
        secs(o.start, t_restore),
        secs(t_restore, back),
        secs(back, t_seen),
    ));

    if let Some((t_kill, t_restart, log)) = restart {
        let settled = watch.first_step("settled", t_restart);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let resumed = text.contains("resuming an interrupted rollback");
        say(&format!(
            "e2e j: FIGURES: killed {:.0} ms after the restored manifest appeared; uid on disk at the kill {restored_uid}, at the end {now_uid}; manifests written after the kill: {uids_after:?} (failed uid {bad_uid}: never); restarted agent logged \"resuming an interrupted rollback\": {resumed}; state.json settled {} ; the API came back {:.1}s after the restart",
            secs(t_restore, t_kill) * 1000.0,
            match &settled {
                Some((t, l)) => format!(
                    "{:.1}s after the restart, {:.1}s {} the API was back ({l})",
                    secs(t_restart, *t),
                    secs(*t, back).abs(),
                    if *t <= back { "before" } else { "after" }
                ),
                None => "never seen".into(),
            },
            secs(t_restart, back),
        ));
        assert!(
            settled.is_some_and(|(_, l)| l.contains("rolledBack")),
            "the restarted agent settled the rollback in state.json:\n{}",
            watch.timeline(t0)
        );
        assert!(
            resumed,
            "the restarted agent resumed the rollback (log {})",
            log.display()
        );
    }
    drop(watch);
    drop(avail);
}

/// i. A kube-apiserver revision that never becomes healthy (`--etcd-servers=https://127.0.0.1:1`)
/// is rolled back with the API down the whole time; once the API is back, the status says
/// which component and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i_broken_apiserver_is_rolled_back_without_the_api() {
    let Some(mut s) = start("i", true).await else {
        return;
    };
    rolled_back_without_the_api(&mut s, false).await;
    s.finish();
}

/// j. As i, with the agent SIGKILLed right after it wrote the restored manifest and started
/// again: it completes the rollback without the API, and the failed uid never reappears on
/// disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn j_agent_killed_during_the_restore_completes_the_rollback() {
    let Some(mut s) = start("j", true).await else {
        return;
    };
    rolled_back_without_the_api(&mut s, true).await;
    s.finish();
}

/// One `kubeplane apply` run: exit code, stdout, stderr, when it ended.
struct ApplyRun {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    seconds: f64,
    end: Instant,
}

async fn kubeplane_apply(s: &Scenario, file: &Path) -> ApplyRun {
    let mut cmd = tokio::process::Command::new(&s.settings.kubeplane);
    cmd.arg("apply")
        .arg("-f")
        .arg(file)
        .args(["--node", &s.node])
        .arg("--manifest-dir")
        .arg(&s.manifest_dir)
        .arg("--state-dir")
        .arg(&s.state_dir);
    if let Some(e) = &s.settings.container_runtime_endpoint {
        cmd.args(["--container-runtime-endpoint", e]);
    }
    cmd.env("KUBEPLANE_LOG", "info,kubeplane=debug");
    let start = Instant::now();
    let out = cmd.output().await.expect("run kubeplane apply");
    let end = Instant::now();
    let run = ApplyRun {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        seconds: end.duration_since(start).as_secs_f64(),
        end,
    };
    let name = file.file_stem().unwrap().to_string_lossy();
    let _ = std::fs::write(
        s.dir.join(format!("apply-{name}.log")),
        format!(
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            run.code, run.stdout, run.stderr
        ),
    );
    run
}

fn write_config(s: &Scenario, name: &str, cpc: &ControlPlaneConfig) -> PathBuf {
    let path = s.dir.join(format!("{name}.yaml"));
    let mut v = serde_json::to_value(cpc).unwrap();
    v.as_object_mut().unwrap().remove("status");
    std::fs::write(&path, serde_saphyr::to_string(&v).unwrap()).unwrap();
    path
}

/// k. `kubeplane apply` (no operator, no agent) of a broken kube-apiserver revision on the
/// node rolls back (exit 1); of a good one reports healthy only once a container of the new
/// uid runs and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k_kubeplane_apply_rolls_back_a_broken_apiserver_and_waits_for_the_new_uid() {
    let Some(mut s) = start("k", false).await else {
        return;
    };
    let base = import_config(&s, GOOD_TIMEOUT);
    let bad = broken(&base);
    let mut good = base.clone();
    set_arg(&mut good, Component::ApiServer, "v", "2");
    let (base_f, bad_f, good_f) = (
        write_config(&s, "base", &base),
        write_config(&s, "bad", &bad),
        write_config(&s, "good", &good),
    );
    let (manifest, state) = paths(&s);
    let avail = Availability::start(s.client.clone());
    let watch = FileWatch::start(manifest, state);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(avail.up(), "the API answers before the change");

    // The node's own manifests: adopted, nothing restarts.
    let r = kubeplane_apply(&s, &base_f).await;
    assert_eq!(r.code, Some(0), "apply base: {}{}", r.stdout, r.stderr);
    say(&format!(
        "e2e k: apply of the imported config: exit 0 after {:.1}s",
        r.seconds
    ));

    // Broken: rolled back, exit 1.
    let t0 = Instant::now();
    let r = kubeplane_apply(&s, &bad_f).await;
    let back = avail.wait_up_after(r.end, s.settings.timeout).await;
    say(&format!(
        "e2e k: broken revision: timeline (s from the start of kubeplane apply):\n{}\n{}\n  {:>8.3}s kubeplane apply exited {:?}",
        watch.timeline(t0),
        outages_text(&avail.outages(), t0),
        secs(t0, r.end),
        r.code
    ));
    assert_eq!(
        r.code,
        Some(1),
        "apply of the broken revision: {}{}",
        r.stdout,
        r.stderr
    );
    assert!(
        r.stderr.contains("rolled back") && r.stderr.contains("kube-apiserver"),
        "says it rolled back kube-apiserver: {}",
        r.stderr
    );
    let bad_uid = watch
        .seen()
        .into_iter()
        .filter(|(t, _)| *t >= t0)
        .find_map(|(_, c)| match c {
            Change::Manifest {
                uid: Some(u),
                restored_after: None,
            } => Some(u),
            _ => None,
        })
        .expect("the watcher saw the broken manifest");
    let (t_restore, _, after) = watch.first_restored().expect("a restored manifest");
    // `kubeplane apply` names its revision by the bytes it rendered for this node; the agent's
    // state remembers it as failed.
    let failed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.state_dir.join("state.json")).unwrap()).unwrap();
    let failed_rev = failed["failedRevisions"]
        .as_array()
        .and_then(|a| a.last())
        .and_then(|f| f["revision"].as_str())
        .expect("state.json remembers the failed revision")
        .to_string();
    assert_eq!(after, failed_rev);
    assert_not_on_disk(&s, &bad_uid);
    let o = avail
        .outages()
        .into_iter()
        .find(|o| o.contains(t_restore))
        .expect("the API was down when the restore was written");
    let message = r.stderr.lines().last().unwrap_or_default().to_string();
    say(&format!(
        "e2e k: FIGURES: broken revision: kubeplane apply exit 1 after {:.1}s; API unavailable {:.1}s; back {:.1}s after apply exited; message: {message}",
        r.seconds,
        o.seconds(),
        secs(r.end, back),
    ));
    let restored_uid = uid_of(&s.manifest("kube-apiserver.yaml").unwrap())
        .0
        .unwrap();
    apiserver_pod(&mut s, &restored_uid).await;

    // Good: exit 0 "healthy" only once a kube-apiserver of the new uid runs and serves.
    let t1 = Instant::now();
    let r = kubeplane_apply(&s, &good_f).await;
    // Right when it returns: the evidence, before anything else.
    let disk_uid = uid_of(&s.manifest("kube-apiserver.yaml").unwrap())
        .0
        .unwrap();
    let procs_new = processes_of_pod("kube-apiserver", &disk_uid);
    let procs_old = processes_of_pod("kube-apiserver", &restored_uid);
    let livez = local_https(6443, "/livez");
    let ticks_at_exit = uptime_ticks();
    let back = avail.wait_up_after(r.end, s.settings.timeout).await;
    say(&format!(
        "e2e k: good revision: timeline (s from the start of kubeplane apply):\n{}\n{}\n  {:>8.3}s kubeplane apply exited {:?}",
        watch.timeline(t1),
        outages_text(
            &avail
                .outages()
                .into_iter()
                .filter(|o| o.start >= t1)
                .collect::<Vec<_>>(),
            t1
        ),
        secs(t1, r.end),
        r.code
    ));
    assert_eq!(
        r.code,
        Some(0),
        "apply of the good revision: {}{}",
        r.stdout,
        r.stderr
    );
    assert!(r.stdout.contains("healthy"), "{}", r.stdout);
    assert_ne!(disk_uid, restored_uid, "a new uid on disk");
    assert!(
        !procs_new.is_empty(),
        "when kubeplane apply said healthy, no kube-apiserver ran in the cgroup of pod {disk_uid} (old pod's processes: {procs_old:?})"
    );
    assert_eq!(
        livez, 200,
        "the local /livez when kubeplane apply said healthy"
    );
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let ran_for = procs_new
        .iter()
        .map(|(_, start)| ticks_at_exit.saturating_sub(*start) as f64 / hz)
        .fold(0.0, f64::max);
    let outage = avail
        .outages()
        .into_iter()
        .filter(|o| o.start >= t1)
        .map(|o| o.seconds())
        .sum::<f64>();
    let pod = apiserver_pod(&mut s, &disk_uid).await;
    assert!(
        pod.spec.as_ref().unwrap().containers[0]
            .command
            .as_ref()
            .unwrap()
            .contains(&"--v=2".to_string()),
        "the new pod runs the new flag"
    );
    say(&format!(
        "e2e k: FIGURES: good revision: kubeplane apply exit 0 \"healthy\" after {:.1}s; at that moment kube-apiserver pid {:?} ran in pod {disk_uid}'s cgroup for {ran_for:.1}s, old pod processes {procs_old:?}, local /livez {livez}; API unavailable {outage:.1}s, back {:.1}s after apply exited; mirror pod hash {disk_uid} Ready",
        r.seconds,
        procs_new.iter().map(|p| p.0).collect::<Vec<_>>(),
        secs(r.end, back),
    ));
    drop(watch);
    drop(avail);
    s.finish();
}
