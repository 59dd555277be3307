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

mod apply;
mod rollback;
mod watch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Client;

use self::watch::*;
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
