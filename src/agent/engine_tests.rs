//! Scenarios of the apply → wait → rollback state machine against a mock API (tower-test)
//! and a fake kubelet over a real temporary manifest directory. Virtual time
//! (`start_paused`): minutes of waiting take milliseconds.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use serde_json::Value;

use super::desired::Desired;
use super::engine::{Engine, EngineParts, KubeSecrets, Outcome};
use super::files::NodeDirs;
use super::fixtures::{Behaviour, Cluster, FakeHealth, Kubelet};
use super::kubelet_wait::KubeMirrorPods;
use super::status::{self, StatusBoard};
use crate::api::{
    CertificateRef, Component, ControlPlaneConfigSpec, ControlPlaneNodeSpec, NodeFacts,
};
use crate::render::{self, RenderInput};

const NODE: &str = "cp-1";
const STATUS_PATH: &str = "/apis/kubeplane.io/v1alpha1/controlplanenodes/cp-1/status?&force=true&fieldManager=kubeplane-agent";

struct Env {
    _tmp: tempfile::TempDir,
    dirs: NodeDirs,
    cluster: Arc<Cluster>,
    kubelet: Arc<Kubelet>,
    board: StatusBoard,
    client: kube::Client,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = NodeDirs::new(tmp.path().join("manifests"), tmp.path().join("kubeplane"));
    std::fs::create_dir(dirs.manifest_dir()).unwrap();
    let cluster = Cluster::new();
    let client = cluster.client();
    let kubelet = Kubelet::new(cluster.clone(), dirs.manifest_dir().to_path_buf(), NODE);
    tokio::spawn(kubelet.clone().run());
    let board = StatusBoard::new();
    board.set_object(ObjectReference {
        api_version: Some("kubeplane.io/v1alpha1".into()),
        kind: Some("ControlPlaneNode".into()),
        name: Some(NODE.into()),
        uid: Some("cpn-uid".into()),
        ..Default::default()
    });
    status::spawn_api_reporter(board.clone(), client.clone(), NODE.into());
    Env {
        _tmp: tmp,
        dirs,
        cluster,
        kubelet,
        board,
        client,
    }
}

impl Env {
    fn engine(&self) -> Engine {
        Engine::open(EngineParts {
            node_name: NODE.into(),
            dirs: self.dirs.clone(),
            history: 5,
            pods: Some(Arc::new(KubeMirrorPods::new(self.client.clone()))),
            runtime: None,
            health: Arc::new(FakeHealth(self.kubelet.clone())),
            secrets: Arc::new(KubeSecrets::new(self.client.clone())),
            board: self.board.clone(),
            desired: Arc::new(Desired::new()),
        })
        .unwrap()
    }

    fn manifest(&self, c: Component) -> Vec<u8> {
        std::fs::read(self.dirs.manifest_path(c)).unwrap()
    }

    fn inode(&self, c: Component) -> u64 {
        std::fs::metadata(self.dirs.manifest_path(c)).unwrap().ino()
    }

    async fn last_status(&self) -> Value {
        assert!(
            self.board.flush(Duration::from_secs(120)).await,
            "status not sent"
        );
        let patches = self.cluster.accepted_status_patches();
        let last = patches.last().expect("a status patch");
        assert_eq!(last.method, "PATCH");
        assert_eq!(last.path, STATUS_PATH);
        let body = last.body.clone().unwrap();
        assert_eq!(body["apiVersion"], "kubeplane.io/v1alpha1");
        assert_eq!(body["kind"], "ControlPlaneNode");
        body["status"].clone()
    }

    fn event_reasons(&self) -> Vec<String> {
        self.cluster
            .events()
            .iter()
            .map(|e| e["reason"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

/// A config spec: kubeadm defaults with short timeouts, plus extra flags.
fn config(api_args: &[(&str, &str)], sched_args: &[(&str, &str)]) -> ControlPlaneConfigSpec {
    let args = |a: &[(&str, &str)]| -> Value {
        a.iter()
            .map(|(n, v)| serde_json::json!({"name": n, "value": v}))
            .collect()
    };
    serde_json::from_value(serde_json::json!({
        "kubernetesVersion": "v1.36.2",
        "apiServer": {"extraArgs": args(api_args)},
        "scheduler": {"extraArgs": args(sched_args)},
        "rollout": {"minReadySeconds": 5,
                    "healthTimeoutSeconds": {"apiServer": 120, "controllerManager": 60, "scheduler": 60}}
    }))
    .unwrap()
}

fn node_spec_for(spec: &ControlPlaneConfigSpec, facts: &NodeFacts) -> ControlPlaneNodeSpec {
    let r = render::render(&RenderInput {
        spec,
        node: facts,
        encryption_config_sha256: None,
    })
    .unwrap();
    render::node_spec("test", spec, &render::revision(spec, None), &r)
}

fn node_spec(
    api_args: &[(&str, &str)],
    sched_args: &[(&str, &str)],
    env: &Env,
) -> ControlPlaneNodeSpec {
    let facts = NodeFacts {
        node_name: NODE.into(),
        advertise_address: Some("10.0.0.11".into()),
        state_dir: Some(env.dirs.state_dir().display().to_string()),
        ..Default::default()
    };
    node_spec_for(&config(api_args, sched_args), &facts)
}

fn hash_of(spec: &ControlPlaneNodeSpec, c: Component) -> String {
    spec.manifests
        .iter()
        .find(|m| m.component == c)
        .unwrap()
        .config_hash
        .clone()
}

fn content_of(spec: &ControlPlaneNodeSpec, c: Component) -> Vec<u8> {
    spec.manifests
        .iter()
        .find(|m| m.component == c)
        .unwrap()
        .content
        .clone()
        .into_bytes()
}

#[tokio::test(start_paused = true)]
async fn hash_moves_ready_and_endpoint_ok_is_healthy() {
    let env = env();
    let mut engine = env.engine();
    let spec = node_spec(&[], &[], &env);
    assert_eq!(engine.apply(&spec, Some(3), true).await, Outcome::Healthy);

    for c in Component::ALL {
        assert_eq!(env.manifest(c), content_of(&spec, c));
        let mode = std::fs::metadata(env.dirs.manifest_path(c)).unwrap().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let status = env.last_status().await;
    assert_eq!(status["phase"], "Healthy");
    assert_eq!(status["observedGeneration"], 3);
    assert_eq!(status["targetRevision"], spec.revision.as_str());
    assert_eq!(status["appliedRevision"], spec.revision.as_str());
    assert_eq!(status["lastKnownGoodRevision"], spec.revision.as_str());
    let comps = status["components"].as_array().unwrap();
    assert_eq!(comps.len(), 3);
    for (c, s) in Component::ALL.iter().zip(comps) {
        assert_eq!(s["name"], c.name());
        assert_eq!(s["expectedHash"], hash_of(&spec, *c).as_str());
        assert_eq!(s["observedHash"], hash_of(&spec, *c).as_str());
        assert_eq!(s["ready"], true);
        assert_eq!(s["healthy"], true);
    }
    let reasons = env.event_reasons();
    for r in ["Applying", "WaitingForKubelet", "Healthy"] {
        assert!(
            reasons.iter().any(|x| x == r),
            "{r} missing from {reasons:?}"
        );
    }
    // kube-apiserver is written and waited for first: its mirror pod is watched first.
    let first_watch = env
        .cluster
        .requests()
        .into_iter()
        .find(|r| r.path.starts_with("/api/v1/namespaces/kube-system/pods"))
        .unwrap();
    assert!(
        first_watch.path.contains("kube-apiserver-cp-1"),
        "{}",
        first_watch.path
    );

    // A second apply of the same spec changes nothing.
    let inode = env.inode(Component::Scheduler);
    assert_eq!(engine.apply(&spec, Some(3), true).await, Outcome::Healthy);
    assert_eq!(env.inode(Component::Scheduler), inode);
}

/// When the first mirror pod request for `pod` was made (virtual time).
fn first_pod_request(env: &Env, pod: &str, after: Duration) -> Duration {
    env.cluster
        .requests()
        .into_iter()
        .find(|r| {
            r.at >= after
                && r.path.starts_with("/api/v1/namespaces/kube-system/pods")
                && r.path.contains(pod)
        })
        .unwrap_or_else(|| panic!("no request for {pod}"))
        .at
}

fn apart(a: Duration, b: Duration) -> Duration {
    a.abs_diff(b)
}

#[tokio::test(start_paused = true)]
async fn controller_manager_and_scheduler_restart_together_after_the_apiserver() {
    // Issue 11 item 4: they depend on the API, not on each other. Before, the scheduler was
    // written only once the controller-manager was confirmed (pickup 3 s + minReady 5 s).
    let env = env();
    let mut engine = env.engine();
    let spec = node_spec(&[], &[], &env);
    assert_eq!(engine.apply(&spec, Some(1), true).await, Outcome::Healthy);
    let zero = Duration::ZERO;
    let api = first_pod_request(&env, "kube-apiserver-cp-1", zero);
    let kcm = first_pod_request(&env, "kube-controller-manager-cp-1", zero);
    let sched = first_pod_request(&env, "kube-scheduler-cp-1", zero);
    assert!(
        kcm >= api + Duration::from_secs(8),
        "kube-apiserver confirmed first: {api:?} {kcm:?}"
    );
    assert!(
        apart(kcm, sched) < Duration::from_secs(2),
        "waited for together: {kcm:?} {sched:?}"
    );
    let status = env.last_status().await;
    assert_eq!(status["phase"], "Healthy");
    assert!(engine.state().components.values().all(|c| c.confirmed));
}

#[tokio::test(start_paused = true)]
async fn a_failing_controller_manager_rolls_back_the_scheduler_written_with_it() {
    let env = env();
    let mut engine = env.engine();
    let good = node_spec(&[], &[], &env);
    assert_eq!(engine.apply(&good, Some(1), true).await, Outcome::Healthy);
    let api_inode = env.inode(Component::ApiServer);
    let facts = NodeFacts {
        node_name: NODE.into(),
        advertise_address: Some("10.0.0.11".into()),
        state_dir: Some(env.dirs.state_dir().display().to_string()),
        ..Default::default()
    };
    let mut cfg = config(&[], &[("v", "4")]);
    cfg.controller_manager = Some(
        serde_json::from_value(serde_json::json!({"extraArgs": [{"name": "v", "value": "4"}]}))
            .unwrap(),
    );
    let bad = node_spec_for(&cfg, &facts);
    env.kubelet.fail(
        hash_of(&bad, Component::ControllerManager),
        Behaviour::ignored(),
    );
    let out = engine.apply(&bad, Some(2), true).await;
    let Outcome::RolledBack { reason, message } = &out else {
        panic!("{out:?}")
    };
    assert_eq!(reason, "HashNeverChanged");
    assert!(
        message.starts_with("kube-controller-manager not updated within 60s"),
        "{message}"
    );
    // Both components of the step are back at last-known-good; kube-apiserver untouched.
    for c in [Component::ControllerManager, Component::Scheduler] {
        assert_eq!(
            env.manifest(c),
            super::engine::restored_manifest(&content_of(&good, c), &bad.revision, NODE).0,
            "{c}"
        );
    }
    assert_eq!(env.inode(Component::ApiServer), api_inode);
    assert_eq!(
        engine.state().last_known_good_revision.as_deref(),
        Some(good.revision.as_str())
    );
}

#[tokio::test(start_paused = true)]
async fn a_restart_during_the_two_component_step_resumes_both_waits() {
    let env = env();
    let spec = node_spec(&[], &[], &env);
    {
        let mut engine = env.engine();
        assert_eq!(engine.apply(&spec, None, false).await, Outcome::Written);
        // The write-ahead record names the step's last file; both are on disk, unconfirmed.
        assert!(matches!(
            &engine.state().lifecycle,
            super::state::Lifecycle::Waiting {
                component: Component::Scheduler,
                ..
            }
        ));
        assert!(engine.state().components.values().all(|c| !c.confirmed));
    }
    let inodes: Vec<u64> = Component::ALL.iter().map(|c| env.inode(*c)).collect();
    let restart = env
        .cluster
        .requests()
        .last()
        .map(|r| r.at)
        .unwrap_or_default();
    let mut engine = env.engine();
    assert_eq!(engine.resume().await, Some(Outcome::Healthy));
    assert!(engine.state().components.values().all(|c| c.confirmed));
    let after: Vec<u64> = Component::ALL.iter().map(|c| env.inode(*c)).collect();
    assert_eq!(inodes, after, "nothing rewritten");
    let kcm = first_pod_request(&env, "kube-controller-manager-cp-1", restart);
    let sched = first_pod_request(&env, "kube-scheduler-cp-1", restart);
    assert!(
        apart(kcm, sched) < Duration::from_secs(2),
        "{kcm:?} {sched:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn hash_never_changes_rolls_back_with_hash_never_changed() {
    let env = env();
    let mut engine = env.engine();
    let good = node_spec(&[], &[], &env);
    assert_eq!(engine.apply(&good, Some(1), true).await, Outcome::Healthy);
    let api_inode = env.inode(Component::ApiServer);

    let bad = node_spec(&[], &[("v", "4")], &env);
    let bad_hash = hash_of(&bad, Component::Scheduler);
    let h = bad_hash.clone();
    env.kubelet.fail(h.clone(), Behaviour::ignored());
    let out = engine.apply(&bad, Some(2), true).await;
    let Outcome::RolledBack { reason, message } = &out else {
        panic!("{out:?}")
    };
    assert_eq!(reason, "HashNeverChanged");
    assert!(
        message.starts_with("kube-scheduler not updated within 60s"),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "hash never changed: mirror pod kube-system/kube-scheduler-cp-1 still shows kubernetes.io/config.hash={} (expected {bad_hash})",
            hash_of(&good, Component::Scheduler)
        )),
        "{message}"
    );
    assert!(message.contains(&format!(
        "restored last-known-good revision {}",
        good.revision
    )));
    assert_eq!(
        env.manifest(Component::Scheduler),
        super::engine::restored_manifest(
            &content_of(&good, Component::Scheduler),
            &bad.revision,
            NODE
        )
        .0
    );
    assert_eq!(
        env.inode(Component::ApiServer),
        api_inode,
        "unchanged component touched"
    );

    let status = env.last_status().await;
    assert_eq!(status["phase"], "RolledBack");
    assert_eq!(status["reason"], "HashNeverChanged");
    assert_eq!(status["targetRevision"], bad.revision.as_str());
    assert_eq!(status["appliedRevision"], good.revision.as_str());
    assert_eq!(status["lastKnownGoodRevision"], good.revision.as_str());
    assert_eq!(status["message"], message.as_str());
    let reasons = env.event_reasons();
    assert!(reasons.contains(&"RollingBack".to_string()), "{reasons:?}");
    assert!(reasons.contains(&"RolledBack".to_string()), "{reasons:?}");
    let rb = env
        .cluster
        .events()
        .into_iter()
        .find(|e| e["reason"] == "RolledBack")
        .unwrap();
    assert_eq!(rb["type"], "Warning");

    // The same revision is not retried.
    let inode = env.inode(Component::Scheduler);
    assert_eq!(engine.apply(&bad, Some(2), true).await, out);
    assert_eq!(env.inode(Component::Scheduler), inode);
}

#[tokio::test(start_paused = true)]
async fn pod_not_ready_rolls_back_naming_restart_count_and_last_state() {
    let env = env();
    let mut engine = env.engine();
    let good = node_spec(&[], &[], &env);
    assert_eq!(engine.apply(&good, None, true).await, Outcome::Healthy);
    let bad = node_spec(&[], &[("v", "4")], &env);
    let h = hash_of(&bad, Component::Scheduler);
    env.kubelet.fail(h.clone(), Behaviour::crashing());
    let out = engine.apply(&bad, None, true).await;
    let Outcome::RolledBack { reason, message } = &out else {
        panic!("{out:?}")
    };
    assert_eq!(reason, "PodNotReady");
    assert!(message.contains("pod not Ready: mirror pod kube-system/kube-scheduler-cp-1 has the new hash but is not Ready"), "{message}");
    assert!(message.contains("restartCount 5"), "{message}");
    assert!(
        message
            .contains("last state Terminated: Error, exit code 1; now Waiting: CrashLoopBackOff"),
        "{message}"
    );
    assert!(
        message.contains("endpoint https://127.0.0.1:10259/livez failing: connect"),
        "{message}"
    );
    let status = env.last_status().await;
    assert_eq!(status["phase"], "RolledBack");
    assert_eq!(status["reason"], "PodNotReady");
    // After the rollback the scheduler runs the good manifest again, under a fresh uid (so
    // kubelet starts it as a new pod) that marks it as restored after the bad revision.
    let pod = env.cluster.pod("kube-scheduler-cp-1").unwrap();
    let good_bytes = good
        .manifests
        .iter()
        .find(|m| m.component == Component::Scheduler)
        .unwrap()
        .content
        .clone();
    let (restored, uid) =
        super::engine::restored_manifest(good_bytes.as_bytes(), &bad.revision, NODE);
    assert_eq!(env.manifest(Component::Scheduler), restored);
    assert_eq!(Some(pod.hash.clone()), uid);
    assert_ne!(pod.hash, hash_of(&good, Component::Scheduler));
}

#[tokio::test(start_paused = true)]
async fn last_known_good_failing_too_is_failed() {
    let env = env();
    let mut engine = env.engine();
    let good = node_spec(&[], &[], &env);
    assert_eq!(engine.apply(&good, None, true).await, Outcome::Healthy);
    let bad = node_spec(&[], &[("v", "4")], &env);
    let h = hash_of(&bad, Component::Scheduler);
    let broken = Arc::new(AtomicBool::new(false));
    env.kubelet.behave(move |c, hash| {
        if hash == h {
            broken.store(true, Ordering::SeqCst);
        }
        if c == Component::Scheduler && broken.load(Ordering::SeqCst) {
            Behaviour::crashing()
        } else {
            Behaviour::healthy()
        }
    });
    let out = engine.apply(&bad, None, true).await;
    let Outcome::Failed { reason, message } = &out else {
        panic!("{out:?}")
    };
    assert_eq!(reason, "LastKnownGoodUnhealthy");
    assert!(message.contains("pod not Ready"), "{message}");
    assert!(
        message.contains(&format!(
            "restored last-known-good revision {}, but it did not come back either",
            good.revision
        )),
        "{message}"
    );
    let status = env.last_status().await;
    assert_eq!(status["phase"], "Failed");
    assert_eq!(status["reason"], "LastKnownGoodUnhealthy");
    assert!(env.event_reasons().contains(&"Failed".to_string()));
}

/// Found on a real cluster (kubelet v1.36.2, kubeadm's probes): a bad revision with
/// `healthTimeoutSeconds.scheduler: 20` was rolled back, but the restored kube-scheduler was
/// waited for with the same 20 s, while kubelet needs ~12 s to swap the pod and ~10 s more for
/// the startup probe: a good rollback ended `Failed` (`LastKnownGoodUnhealthy`). The restore
/// is waited for at least the default timeout.
#[tokio::test(start_paused = true)]
async fn a_short_timeout_of_the_bad_revision_does_not_cut_the_wait_for_last_known_good() {
    let env = env();
    let mut engine = env.engine();
    let good = node_spec(&[], &[], &env);
    assert_eq!(engine.apply(&good, None, true).await, Outcome::Healthy);
    let mut spec = config(&[], &[("v", "4")]);
    spec.rollout
        .as_mut()
        .and_then(|r| r.health_timeout_seconds.as_mut())
        .unwrap()
        .scheduler = Some(10);
    let facts = NodeFacts {
        node_name: NODE.into(),
        advertise_address: Some("10.0.0.11".into()),
        state_dir: Some(env.dirs.state_dir().display().to_string()),
        ..Default::default()
    };
    let bad = node_spec_for(&spec, &facts);
    assert_eq!(
        bad.manifests
            .iter()
            .find(|m| m.component == Component::Scheduler)
            .unwrap()
            .health_timeout_seconds,
        10
    );
    // The restored scheduler runs under the fresh uid of the restored manifest.
    let (bad_hash, good_hash): (String, String) = (
        hash_of(&bad, Component::Scheduler),
        super::engine::restored_manifest(
            &content_of(&good, Component::Scheduler),
            &bad.revision,
            NODE,
        )
        .1
        .unwrap(),
    );
    let restored_hash = good_hash.clone();
    // kubelet takes 25 s (plus its pickup delay) to bring the restored scheduler back.
    let restore_asked: Arc<std::sync::Mutex<Option<tokio::time::Instant>>> = Arc::default();
    env.kubelet.behave(move |_, hash| {
        if hash == bad_hash {
            return Behaviour::crashing();
        }
        if hash == good_hash {
            let now = tokio::time::Instant::now();
            let first = *restore_asked.lock().unwrap().get_or_insert(now);
            if now - first < Duration::from_secs(25) {
                return Behaviour::ignored();
            }
        }
        Behaviour::healthy()
    });
    let start = tokio::time::Instant::now();
    let out = engine.apply(&bad, None, true).await;
    let Outcome::RolledBack { reason, message } = &out else {
        panic!("{out:?}")
    };
    assert_eq!(reason, "PodNotReady");
    assert!(
        message.contains("kube-scheduler not updated within 10s"),
        "{message}"
    );
    assert!(message.ends_with("healthy again"), "{message}");
    assert!(
        start.elapsed() > Duration::from_secs(35),
        "{:?}",
        start.elapsed()
    );
    let pod = env.cluster.pod("kube-scheduler-cp-1").unwrap();
    assert_eq!(pod.hash, restored_hash);
    assert!(pod.ready);
    assert_eq!(env.last_status().await["phase"], "RolledBack");
}

#[tokio::test(start_paused = true)]
async fn first_revision_failing_without_last_known_good_is_failed() {
    let env = env();
    let mut engine = env.engine();
    env.kubelet.behave(|c, _| {
        if c == Component::Scheduler {
            Behaviour::crashing()
        } else {
            Behaviour::healthy()
        }
    });
    let spec = node_spec(&[], &[], &env);
    let out = engine.apply(&spec, None, true).await;
    let Outcome::Failed { reason, message } = &out else {
        panic!("{out:?}")
    };
    assert_eq!(reason, "PodNotReady");
    assert!(
        message.contains("there is no last-known-good revision to restore"),
        "{message}"
    );
    // The revision stays on disk.
    assert_eq!(
        env.manifest(Component::Scheduler),
        content_of(&spec, Component::Scheduler)
    );
    assert_eq!(env.last_status().await["phase"], "Failed");
}

#[tokio::test(start_paused = true)]
async fn api_unavailable_while_apiserver_restarts_relies_on_endpoint_and_reports_after() {
    let env = env();
    let mut engine = env.engine();
    let good = node_spec(&[], &[], &env);
    assert_eq!(engine.apply(&good, None, true).await, Outcome::Healthy);
    assert!(env.board.flush(Duration::from_secs(60)).await);
    *env.kubelet.apiserver_outage.lock().unwrap() = Some(Duration::from_secs(40));

    let next = node_spec(&[("v", "2")], &[], &env);
    let before = env.cluster.requests().len();
    let out = engine.apply(&next, None, true).await;
    assert_eq!(out, Outcome::Healthy);

    let requests = env.cluster.requests()[before..].to_vec();
    let refused: Vec<_> = requests.iter().filter(|r| r.status == 503).collect();
    assert!(!refused.is_empty(), "the outage never happened");
    let outage_start = refused.first().unwrap().at;
    let outage_end = refused.last().unwrap().at;
    assert!(
        refused
            .iter()
            .any(|r| r.method == "PATCH" && r.path == STATUS_PATH),
        "status was not retried during the outage"
    );
    assert!(
        refused
            .iter()
            .any(|r| r.path.contains("kube-apiserver-cp-1")),
        "mirror pod not retried during the outage"
    );
    assert!(
        !requests
            .iter()
            .any(|r| r.status == 200 && r.at > outage_start && r.at < outage_end),
        "a request succeeded during the outage"
    );
    let status = env.last_status().await;
    assert_eq!(status["phase"], "Healthy");
    let api = &status["components"][0];
    assert_eq!(api["name"], "kube-apiserver");
    assert_eq!(
        api["observedHash"],
        hash_of(&next, Component::ApiServer).as_str()
    );
    let msg = api["message"].as_str().unwrap();
    assert!(msg.contains("API was unavailable for"), "{msg}");
    let healthy_patch = env
        .cluster
        .accepted_status_patches()
        .into_iter()
        .find(|r| {
            r.body.as_ref().unwrap()["status"]["phase"] == "Healthy"
                && r.body.as_ref().unwrap()["status"]["targetRevision"] == next.revision.as_str()
        })
        .unwrap();
    assert!(
        healthy_patch.at > outage_end,
        "reported after the API came back"
    );
    assert!(!env.event_reasons().contains(&"RolledBack".to_string()));
}

#[tokio::test(start_paused = true)]
async fn state_survives_an_agent_restart_and_the_wait_resumes_without_rewriting() {
    let env = env();
    let spec = node_spec(&[], &[], &env);
    {
        let mut engine = env.engine();
        assert_eq!(engine.apply(&spec, None, false).await, Outcome::Written);
    }
    let inodes: Vec<u64> = Component::ALL.iter().map(|c| env.inode(*c)).collect();
    // A new engine over the same directories (an agent restart).
    let mut engine = env.engine();
    assert_eq!(
        engine.state().target_revision.as_deref(),
        Some(spec.revision.as_str())
    );
    assert_eq!(engine.apply(&spec, None, true).await, Outcome::Healthy);
    let after: Vec<u64> = Component::ALL.iter().map(|c| env.inode(*c)).collect();
    assert_eq!(inodes, after, "files were rewritten");
    let engine = env.engine();
    assert_eq!(
        engine.state().last_known_good_revision.as_deref(),
        Some(spec.revision.as_str())
    );
    assert!(engine.state().components.values().all(|c| c.confirmed));
}

fn kubeadm_facts(env: &Env) -> NodeFacts {
    NodeFacts {
        node_name: NODE.into(),
        advertise_address: Some("10.0.0.11".into()),
        host_ca_directories: vec![
            "/etc/ca-certificates".into(),
            "/usr/local/share/ca-certificates".into(),
            "/usr/share/ca-certificates".into(),
        ],
        state_dir: Some(env.dirs.state_dir().display().to_string()),
        ..Default::default()
    }
}

fn kubeadm_defaults() -> ControlPlaneConfigSpec {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/kubeadm-defaults.yaml"
    ))
    .unwrap();
    crate::api::parse_config(&text).unwrap().spec
}

fn copy_kubeadm_fixtures(dir: &Path) {
    for c in Component::ALL {
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/kubeadm-v1.36.2")
                .join(c.manifest_file()),
            dir.join(c.manifest_file()),
        )
        .unwrap();
    }
}

#[test]
fn kubeadm_manifests_are_equivalent_to_the_kubeadm_defaults_render() {
    let tmp = tempfile::tempdir().unwrap();
    let facts = NodeFacts {
        state_dir: Some(tmp.path().display().to_string()),
        ..NodeFacts {
            node_name: NODE.into(),
            advertise_address: Some("10.0.0.11".into()),
            host_ca_directories: vec![
                "/etc/ca-certificates".into(),
                "/usr/local/share/ca-certificates".into(),
                "/usr/share/ca-certificates".into(),
            ],
            ..Default::default()
        }
    };
    let r = render::render(&RenderInput {
        spec: &kubeadm_defaults(),
        node: &facts,
        encryption_config_sha256: None,
    })
    .unwrap();
    for p in &r.pods {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/kubeadm-v1.36.2")
            .join(p.component.manifest_file());
        let kubeadm: k8s_openapi::api::core::v1::Pod =
            serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        if !render::equivalent(&kubeadm, &p.pod) {
            let a = serde_json::to_value(render::normalize(&kubeadm)).unwrap();
            let b = serde_json::to_value(render::normalize(&p.pod)).unwrap();
            panic!(
                "{}:\n{}\n---\n{}",
                p.component,
                serde_json::to_string_pretty(&a).unwrap(),
                serde_json::to_string_pretty(&b).unwrap()
            );
        }
        // One flag changed is not equivalent.
        let mut changed = kubeadm.clone();
        changed.spec.as_mut().unwrap().containers[0]
            .command
            .as_mut()
            .unwrap()
            .push("--v=2".into());
        assert!(!render::equivalent(&changed, &p.pod));
    }
}

#[tokio::test(start_paused = true)]
async fn kubeadm_manifests_are_adopted_not_rewritten() {
    let env = env();
    copy_kubeadm_fixtures(env.dirs.manifest_dir());
    env.kubelet.sync();
    let before: Vec<(Vec<u8>, u64)> = Component::ALL
        .iter()
        .map(|c| (env.manifest(*c), env.inode(*c)))
        .collect();
    let spec = node_spec_for(&kubeadm_defaults(), &kubeadm_facts(&env));
    let mut engine = env.engine();
    assert_eq!(engine.apply(&spec, None, true).await, Outcome::Healthy);
    let after: Vec<(Vec<u8>, u64)> = Component::ALL
        .iter()
        .map(|c| (env.manifest(*c), env.inode(*c)))
        .collect();
    assert_eq!(before, after, "an adopted manifest was rewritten");
    for c in Component::ALL {
        let cs = &engine.state().components[&c];
        assert!(cs.adopted && cs.confirmed, "{c}: {cs:?}");
        // The hash kubelet computed for the kubeadm file is remembered as the expected one.
        assert_eq!(
            cs.config_hash.as_deref(),
            Some(Kubelet::hash_of(&env.manifest(c)).as_str())
        );
    }
    let status = env.last_status().await;
    assert_eq!(status["phase"], "Healthy");
    assert_eq!(
        status["components"][2]["observedHash"],
        Kubelet::hash_of(&env.manifest(Component::Scheduler)).as_str()
    );
    // A restarted engine with the same spec does not rewrite either.
    let mut engine = env.engine();
    assert_eq!(engine.apply(&spec, None, true).await, Outcome::Healthy);
    assert_eq!(env.inode(Component::Scheduler), after[2].1);
}

#[tokio::test(start_paused = true)]
async fn a_changed_kubeadm_flag_is_written_and_the_baseline_restores_on_failure() {
    let env = env();
    copy_kubeadm_fixtures(env.dirs.manifest_dir());
    env.kubelet.sync();
    let kubeadm_scheduler = env.manifest(Component::Scheduler);
    let mut cfg = kubeadm_defaults();
    cfg.scheduler = Some(
        serde_json::from_value(serde_json::json!({"extraArgs": [{"name": "v", "value": "4"}]}))
            .unwrap(),
    );
    let spec = node_spec_for(&cfg, &kubeadm_facts(&env));
    let h = hash_of(&spec, Component::Scheduler);
    env.kubelet.fail(h.clone(), Behaviour::crashing());
    let mut engine = env.engine();
    let out = engine.apply(&spec, None, true).await;
    let Outcome::RolledBack { message, .. } = &out else {
        panic!("{out:?}")
    };
    assert!(
        message.contains("restored the manifests found before kubeplane's first write (history entry pre-kubeplane), healthy again"),
        "{message}"
    );
    let restored = super::engine::restored_manifest(&kubeadm_scheduler, &spec.revision, NODE).0;
    assert_eq!(env.manifest(Component::Scheduler), restored);
    let on_disk = super::files::parse_pod(&env.manifest(Component::Scheduler)).unwrap();
    let kubeadm = super::files::parse_pod(&kubeadm_scheduler).unwrap();
    assert_eq!(
        on_disk.spec, kubeadm.spec,
        "the baseline Pod itself is restored"
    );
    assert_eq!(
        on_disk.metadata.annotations.unwrap()[super::engine::RESTORED_ANNOTATION],
        spec.revision
    );
    assert!(
        on_disk.metadata.uid.is_some(),
        "a uid kubelet reports, so the wait is exact"
    );
}

#[tokio::test(start_paused = true)]
async fn renewed_certificate_restarts_its_component_with_a_new_hash() {
    let env = env();
    let mut spec = node_spec(&[], &[], &env);
    let kc = env
        .dirs
        .state_dir()
        .parent()
        .unwrap()
        .join("scheduler.conf");
    let write_kc = |year: i32| {
        use base64::Engine as _;
        let pem = super::certs::tests::pem_cert("system:kube-scheduler", year);
        let b64 = base64::engine::general_purpose::STANDARD.encode(pem);
        std::fs::write(
            &kc,
            format!("users:\n- name: u\n  user:\n    client-certificate-data: {b64}\n"),
        )
        .unwrap();
    };
    write_kc(2030);
    spec.certificates = vec![CertificateRef {
        component: Component::Scheduler,
        flag: "kubeconfig".into(),
        path: kc.display().to_string(),
        kubeconfig: true,
    }];
    let mut engine = env.engine();
    assert_eq!(engine.apply(&spec, None, true).await, Outcome::Healthy);
    assert!(
        engine.restart_for_certificates().await.is_empty(),
        "nothing changed yet"
    );
    let status = env.last_status().await;
    assert_eq!(
        status["certificates"][0]["notAfter"],
        "2030-01-02T00:00:00Z"
    );

    write_kc(2031);
    let api_inode = env.inode(Component::ApiServer);
    assert_eq!(
        engine.restart_for_certificates().await,
        vec![Component::Scheduler]
    );
    let text = String::from_utf8(env.manifest(Component::Scheduler)).unwrap();
    assert!(
        text.contains("kubeplane.io/certificates-sha256: "),
        "{text}"
    );
    let new_hash = Kubelet::hash_of(text.as_bytes());
    assert_ne!(new_hash, hash_of(&spec, Component::Scheduler));
    assert_eq!(
        env.cluster.pod("kube-scheduler-cp-1").unwrap().hash,
        new_hash
    );
    assert_eq!(env.inode(Component::ApiServer), api_inode);
    let status = env.last_status().await;
    assert_eq!(
        status["certificates"][0]["notAfter"],
        "2031-01-02T00:00:00Z"
    );
    assert!(
        env.event_reasons()
            .contains(&"CertificateRestarted".to_string())
    );

    // The annotated manifest is the target from now on: a re-apply keeps it, and a
    // restarted engine enforces it.
    let inode = env.inode(Component::Scheduler);
    assert_eq!(engine.apply(&spec, None, true).await, Outcome::Healthy);
    assert_eq!(env.inode(Component::Scheduler), inode);
    let engine2 = env.engine();
    assert_eq!(
        engine2.desired().lock().get(Component::Scheduler),
        Some(text.as_bytes())
    );
}

#[tokio::test(start_paused = true)]
async fn secret_backed_file_is_written_when_its_digest_matches_and_refused_when_not() {
    let env = env();
    let mut cfg = config(&[], &[]);
    cfg.api_server = Some(
        serde_json::from_value(serde_json::json!({"encryption": {"secretRef": {"name": "enc"}}}))
            .unwrap(),
    );
    let facts = NodeFacts {
        node_name: NODE.into(),
        advertise_address: Some("10.0.0.11".into()),
        state_dir: Some(env.dirs.state_dir().display().to_string()),
        ..Default::default()
    };
    let content = b"kind: EncryptionConfiguration\n";
    let digest = render::sha256_hex(content);
    let r = render::render(&RenderInput {
        spec: &cfg,
        node: &facts,
        encryption_config_sha256: Some(&digest),
    })
    .unwrap();
    let spec = render::node_spec("test", &cfg, &render::revision(&cfg, Some(&digest)), &r);

    // The Secret changed after rendering: nothing is written.
    env.cluster
        .set_secret("kube-system", "enc", "config.yaml", b"something else");
    let mut engine = env.engine();
    let out = engine.apply(&spec, None, true).await;
    let Outcome::Pending {
        reason,
        message,
        retry,
    } = &out
    else {
        panic!("{out:?}")
    };
    assert_eq!(reason, "SecretChanged");
    assert!(*retry);
    assert!(
        message.contains("the Secret changed after rendering"),
        "{message}"
    );
    assert_eq!(
        std::fs::read_dir(env.dirs.manifest_dir()).unwrap().count(),
        0
    );
    let get = env
        .cluster
        .requests()
        .into_iter()
        .find(|r| r.path.contains("/secrets/"))
        .unwrap();
    assert_eq!(get.method, "GET");
    assert_eq!(get.path, "/api/v1/namespaces/kube-system/secrets/enc");
    assert_eq!(env.last_status().await["reason"], "SecretChanged");

    env.cluster
        .set_secret("kube-system", "enc", "config.yaml", content);
    assert_eq!(engine.apply(&spec, None, true).await, Outcome::Healthy);
    let path = env
        .dirs
        .files_dir()
        .join("kube-apiserver/encryption-config.yaml");
    assert_eq!(std::fs::read(&path).unwrap(), content);
}

#[tokio::test(start_paused = true)]
async fn the_agent_reports_facts_and_pending_then_applies_its_control_plane_node() {
    let env = env();
    let root = env.dirs.state_dir().parent().unwrap().join("root");
    std::fs::create_dir_all(root.join("etc/pki/ca-trust")).unwrap();
    let empty = serde_json::json!({"configName": "test", "revision": ""});
    env.cluster.set_cpn(NODE, 1, empty);
    let args = super::AgentConfig {
        node_name: NODE.into(),
        manifest_dir: env.dirs.manifest_dir().to_path_buf(),
        state_dir: env.dirs.state_dir().to_path_buf(),
        drift_mode: super::drift::DriftMode::Enforce,
        history: 5,
        host_root: root,
        metrics_addr: "127.0.0.1:0".into(),
        container_runtime_endpoint: "none".into(),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let health = Arc::new(FakeHealth(env.kubelet.clone()));
    let readiness = crate::telemetry::Health::new();
    let board = super::status::StatusBoard::new();
    let metrics = super::metrics::registry(NODE, board.clone());
    let scrape = || {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &metrics).unwrap();
        out
    };
    let agent = tokio::spawn(super::run_with(
        args,
        env.client.clone(),
        health,
        async {
            let _ = stop_rx.await;
        },
        readiness.clone(),
        board,
    ));
    let patch_with = |reason: &str, revision: Option<&str>| {
        env.cluster.accepted_status_patches().into_iter().find(|r| {
            let s = &r.body.as_ref().unwrap()["status"];
            s["reason"] == reason && revision.is_none_or(|rev| s["targetRevision"] == rev)
        })
    };
    let mut pending = None;
    for _ in 0..600 {
        pending = patch_with("NoManifests", None);
        if pending.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pending = pending.expect("Pending reported");
    assert_eq!(pending.path, STATUS_PATH);
    let status = &pending.body.unwrap()["status"];
    assert_eq!(status["phase"], "Pending");
    let facts = &status["nodeFacts"];
    assert_eq!(facts["nodeName"], NODE);
    assert_eq!(
        facts["hostCaDirectories"],
        serde_json::json!(["/etc/pki/ca-trust"])
    );
    assert_eq!(
        facts["manifestDir"],
        env.dirs.manifest_dir().display().to_string().as_str()
    );
    assert_eq!(
        std::fs::read_dir(env.dirs.manifest_dir()).unwrap().count(),
        0
    );

    // The operator renders the node: the agent applies it.
    let spec = node_spec(&[], &[], &env);
    env.cluster
        .set_cpn(NODE, 2, serde_json::to_value(&spec).unwrap());
    let mut healthy = None;
    for _ in 0..6000 {
        healthy = patch_with("Healthy", Some(&spec.revision));
        if healthy.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let healthy = healthy.expect("Healthy reported");
    let status = &healthy.body.unwrap()["status"];
    assert_eq!(status["phase"], "Healthy");
    assert_eq!(status["observedGeneration"], 2);
    assert_eq!(status["nodeFacts"]["nodeName"], NODE);
    for c in Component::ALL {
        assert_eq!(env.manifest(c), content_of(&spec, c));
    }
    let (ready, detail) = readiness.readiness();
    assert!(
        ready,
        "the agent is ready once it watches its ControlPlaneNode: {detail}"
    );
    assert!(detail.contains(NODE), "{detail}");
    let text = scrape();
    let phase = format!("kubeplane_agent_phase{{node=\"{NODE}\",phase=\"Healthy\"}} 1");
    assert!(
        text.contains(&phase),
        "the agent's /metrics shows its phase: {text}"
    );
    let ready = format!(
        "kubeplane_agent_component_ready{{node=\"{NODE}\",component=\"kube-scheduler\"}} 1"
    );
    assert!(text.contains(&ready), "{text}");
    stop_tx.send(()).unwrap();
    agent.await.unwrap().unwrap();
    assert!(!readiness.readiness().0, "not ready after shutdown");
}

fn agent_args(env: &Env) -> super::AgentConfig {
    let root = env.dirs.state_dir().parent().unwrap().join("root");
    std::fs::create_dir_all(&root).unwrap();
    super::AgentConfig {
        node_name: NODE.into(),
        manifest_dir: env.dirs.manifest_dir().to_path_buf(),
        state_dir: env.dirs.state_dir().to_path_buf(),
        drift_mode: super::drift::DriftMode::Enforce,
        history: 5,
        host_root: root,
        metrics_addr: "127.0.0.1:0".into(),
        container_runtime_endpoint: "none".into(),
    }
}

/// Waits (tokio time) until `cond` holds; whether it did.
async fn until(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..6000 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cond()
}

#[tokio::test(start_paused = true)]
async fn an_unselected_agent_is_ready_and_a_deleted_control_plane_node_releases_the_node() {
    // Issue 11: the agent was never Ready until a ControlPlaneConfig selected its node, so
    // `helm install --wait` failed on a fresh install; and a deleted ControlPlaneNode went
    // unnoticed.
    let env = env();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let readiness = crate::telemetry::Health::new();
    let agent = tokio::spawn(super::run_with(
        agent_args(&env),
        env.client.clone(),
        Arc::new(FakeHealth(env.kubelet.clone())),
        async {
            let _ = stop_rx.await;
        },
        readiness.clone(),
        super::status::StatusBoard::new(),
    ));
    let detail = || readiness.readiness().1;

    // No ControlPlaneNode: Ready, and it says why it does nothing.
    assert!(until(|| readiness.readiness().0).await, "{}", detail());
    assert!(
        detail().contains("no ControlPlaneConfig selects node cp-1"),
        "{}",
        detail()
    );
    assert_eq!(
        std::fs::read_dir(env.dirs.manifest_dir()).unwrap().count(),
        0
    );

    // Selected: applied.
    let spec = node_spec(&[], &[], &env);
    env.cluster
        .set_cpn(NODE, 1, serde_json::to_value(&spec).unwrap());
    let healthy = |rev: &str| {
        env.cluster.accepted_status_patches().iter().any(|r| {
            let s = &r.body.as_ref().unwrap()["status"];
            s["phase"] == "Healthy" && s["targetRevision"] == rev
        })
    };
    assert!(until(|| healthy(&spec.revision)).await);
    assert_eq!(detail(), "watching ControlPlaneNode cp-1");

    // Deleted: still Ready, the node released with an Event and the manifests untouched.
    let before: Vec<Vec<u8>> = Component::ALL.iter().map(|c| env.manifest(*c)).collect();
    env.cluster.delete_cpn();
    assert!(
        until(|| detail().contains("no longer managed")).await,
        "{}",
        detail()
    );
    assert!(readiness.readiness().0);
    assert!(
        detail().contains(&format!(
            "the manifests stay as they are (revision {})",
            spec.revision
        )),
        "{}",
        detail()
    );
    assert!(
        until(|| env.event_reasons().iter().any(|r| r == "NodeUnmanaged")).await,
        "{:?}",
        env.event_reasons()
    );
    let after: Vec<Vec<u8>> = Component::ALL.iter().map(|c| env.manifest(*c)).collect();
    assert_eq!(before, after);

    // Selected again, with a change: managed and applied again.
    let spec2 = node_spec(&[], &[("v", "3")], &env);
    env.cluster
        .set_cpn(NODE, 2, serde_json::to_value(&spec2).unwrap());
    assert!(until(|| healthy(&spec2.revision)).await);
    assert_eq!(
        env.manifest(Component::Scheduler),
        content_of(&spec2, Component::Scheduler)
    );
    assert_eq!(detail(), "watching ControlPlaneNode cp-1");
    stop_tx.send(()).unwrap();
    agent.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_released_node_is_not_healed_until_it_is_managed_again() {
    let env = env();
    let mut engine = env.engine();
    let spec = node_spec(&[], &[], &env);
    assert_eq!(engine.apply(&spec, None, true).await, Outcome::Healthy);
    let drift = super::drift::DriftHandler::new(
        env.dirs.clone(),
        engine.desired(),
        super::drift::DriftMode::Enforce,
        env.board.clone(),
    );
    let path = env.dirs.manifest_path(Component::Scheduler);

    assert_eq!(engine.release(), Some(spec.revision.clone()));
    assert!(engine.desired().lock().managed().is_empty());
    std::fs::write(&path, "handed back by hand\n").unwrap();
    assert_eq!(drift.check_managed(Component::Scheduler), None);
    assert_eq!(
        drift.check("kube-scheduler.yaml"),
        Some(super::drift::Finding::Unmanaged(
            "kube-scheduler.yaml".into()
        ))
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"handed back by hand\n");
    // Certificates restart nothing while released.
    assert!(engine.restart_for_certificates().await.is_empty());

    engine.reclaim();
    assert_eq!(engine.desired().lock().managed().len(), 3);
    assert!(matches!(
        drift.check_managed(Component::Scheduler),
        Some(super::drift::Finding::Restored(_))
    ));
    assert_eq!(
        env.manifest(Component::Scheduler),
        content_of(&spec, Component::Scheduler)
    );
}

#[test]
fn node_watch_events_tell_present_and_absent() {
    use kube::runtime::watcher::Event;
    let cpn = || {
        crate::api::ControlPlaneNode::new(
            NODE,
            serde_json::from_value(serde_json::json!({"configName": "c", "revision": "r"}))
                .unwrap(),
        )
    };
    let mut w = super::NodeWatch::default();
    assert!(w.next(Event::Init).is_none());
    assert!(matches!(
        w.next(Event::InitDone),
        Some(super::Watched::Absent)
    ));
    assert!(w.next(Event::Init).is_none());
    assert!(matches!(
        w.next(Event::InitApply(cpn())),
        Some(super::Watched::Present(_))
    ));
    assert!(
        w.next(Event::InitDone).is_none(),
        "a list with the object is not Absent"
    );
    assert!(matches!(
        w.next(Event::Delete(cpn())),
        Some(super::Watched::Absent)
    ));
    assert!(matches!(
        w.next(Event::Apply(cpn())),
        Some(super::Watched::Present(_))
    ));
    // A re-list after the object is gone.
    assert!(w.next(Event::Init).is_none());
    assert!(matches!(
        w.next(Event::InitDone),
        Some(super::Watched::Absent)
    ));

    let m = super::unmanaged_message(NODE, Some(true), Some("r1".into()));
    assert!(
        m.contains("no longer managed")
            && m.contains("revision r1")
            && m.contains("docs/operator.md"),
        "{m}"
    );
    let m = super::unmanaged_message(NODE, None, None);
    assert!(m.contains("no ControlPlaneConfig selects node cp-1"), "{m}");
}

// ---------------------------------------------------------------------------------------------
// The write-ahead lifecycle: resume first, local evidence, memory of failure (issue 16).

impl Env {
    /// An engine as `kubeplane apply` or an agent without the API has it: no mirror pods,
    /// the fake kubelet's containers as local evidence.
    fn local_engine(&self) -> Engine {
        Engine::open(EngineParts {
            node_name: NODE.into(),
            dirs: self.dirs.clone(),
            history: 5,
            pods: None,
            runtime: Some(Arc::new(super::fixtures::FakeRuntime(self.kubelet.clone()))),
            health: Arc::new(FakeHealth(self.kubelet.clone())),
            secrets: Arc::new(KubeSecrets::new(self.client.clone())),
            board: self.board.clone(),
            desired: Arc::new(Desired::new()),
        })
        .unwrap()
    }

    fn lifecycle(&self) -> super::state::Lifecycle {
        let text = std::fs::read(self.dirs.state_file()).unwrap();
        serde_json::from_slice::<super::state::AgentState>(&text)
            .unwrap()
            .lifecycle
    }
}

fn restored_of(good: &ControlPlaneNodeSpec, bad: &ControlPlaneNodeSpec, c: Component) -> Vec<u8> {
    super::engine::restored_manifest(&content_of(good, c), &bad.revision, NODE).0
}

/// A good revision, then a bad one whose kube-scheduler crash-loops; the restored
/// last-known-good takes `slow_restore` to come back. Returns (good, bad).
async fn good_then_crashing_scheduler(
    env: &Env,
    slow_restore: Duration,
) -> (ControlPlaneNodeSpec, ControlPlaneNodeSpec) {
    let mut engine = env.engine();
    let good = node_spec(&[], &[], env);
    assert_eq!(engine.apply(&good, Some(1), true).await, Outcome::Healthy);
    let bad = node_spec(&[], &[("v", "7")], env);
    let bad_hash = hash_of(&bad, Component::Scheduler);
    let restored_hash = super::engine::restored_manifest(
        &content_of(&good, Component::Scheduler),
        &bad.revision,
        NODE,
    )
    .1
    .unwrap();
    let asked: Arc<std::sync::Mutex<Option<tokio::time::Instant>>> = Arc::default();
    env.kubelet.behave(move |_, hash| {
        if hash == bad_hash {
            return Behaviour::crashing();
        }
        if hash == restored_hash {
            let now = tokio::time::Instant::now();
            let first = *asked.lock().unwrap().get_or_insert(now);
            if now - first < slow_restore {
                return Behaviour::ignored();
            }
        }
        Behaviour::healthy()
    });
    (good, bad)
}

#[tokio::test(start_paused = true)]
async fn an_agent_killed_during_the_rollback_finishes_it_and_never_writes_the_failed_revision_back()
{
    let env = env();
    let (good, bad) = good_then_crashing_scheduler(&env, Duration::from_secs(60)).await;
    let mut engine = env.engine();
    // Killed 100 s in: the bad scheduler timed out (60 s), the restore is being waited for.
    let cut = tokio::time::timeout(Duration::from_secs(100), engine.apply(&bad, Some(2), true));
    assert!(cut.await.is_err(), "the rollback was still under way");
    drop(engine);
    let restored = restored_of(&good, &bad, Component::Scheduler);
    assert_eq!(env.manifest(Component::Scheduler), restored);
    let super::state::Lifecycle::RollingBack {
        failed_component,
        reason,
        to_revision,
        ..
    } = env.lifecycle()
    else {
        panic!("{:?}", env.lifecycle())
    };
    assert_eq!(failed_component, Component::Scheduler);
    assert_eq!(reason, super::state::FailureReason::PodNotReady);
    assert_eq!(to_revision, good.revision);

    // The restarted agent: before any spec, drift enforcement already wants last-known-good.
    let mut engine = env.engine();
    assert_eq!(
        engine.desired().lock().get(Component::Scheduler),
        Some(restored.as_slice()),
        "drift must restore last-known-good, never the failed revision"
    );
    let out = engine.resume().await.expect("a rollback to resume");
    let Outcome::RolledBack { reason, message } = &out else {
        panic!("{out:?}")
    };
    // The failed component is named (not the first managed one).
    assert_eq!(reason, "PodNotReady");
    assert!(
        message.starts_with("kube-scheduler not updated"),
        "{message}"
    );
    assert_eq!(env.manifest(Component::Scheduler), restored);
    // The same (bad) spec from the API afterwards changes nothing.
    let ino = env.inode(Component::Scheduler);
    let again = engine.apply(&bad, Some(2), true).await;
    assert!(matches!(again, Outcome::RolledBack { .. }), "{again:?}");
    assert_eq!(env.inode(Component::Scheduler), ino);
}

#[tokio::test(start_paused = true)]
async fn a_rollback_interrupted_before_its_write_is_finished_by_the_next_start() {
    let env = env();
    let (good, bad) = good_then_crashing_scheduler(&env, Duration::ZERO).await;
    let mut engine = env.engine();
    let _ = tokio::time::timeout(Duration::from_secs(100), engine.apply(&bad, Some(2), true)).await;
    drop(engine);
    // Put the failed revision back on disk, as if the agent died between recording the
    // rollback and writing the restore (the state says RollingBack).
    assert!(matches!(
        env.lifecycle(),
        super::state::Lifecycle::RollingBack { .. } | super::state::Lifecycle::Settled { .. }
    ));
    let mut st: super::state::AgentState =
        serde_json::from_slice(&std::fs::read(env.dirs.state_file()).unwrap()).unwrap();
    st.lifecycle = super::state::Lifecycle::RollingBack {
        failed_revision: bad.revision.clone(),
        failed_component: Component::Scheduler,
        reason: super::state::FailureReason::PodNotReady,
        message: "kube-scheduler not updated within 60s".into(),
        to_revision: good.revision.clone(),
        since: k8s_openapi::jiff::Timestamp::now().to_string(),
        timeout_seconds: 300,
        min_ready_seconds: 0,
    };
    std::fs::write(env.dirs.state_file(), serde_json::to_vec(&st).unwrap()).unwrap();
    std::fs::write(
        env.dirs.manifest_path(Component::Scheduler),
        content_of(&bad, Component::Scheduler),
    )
    .unwrap();
    let mut engine = env.engine();
    let out = engine.resume().await.unwrap();
    assert!(matches!(out, Outcome::RolledBack { .. }), "{out:?}");
    assert_eq!(
        env.manifest(Component::Scheduler),
        restored_of(&good, &bad, Component::Scheduler)
    );
}

#[tokio::test(start_paused = true)]
async fn without_the_api_a_failing_write_is_rolled_back_by_local_evidence_after_a_restart() {
    let env = env();
    let mut engine = env.local_engine();
    let good = node_spec(&[], &[], &env);
    assert_eq!(engine.apply(&good, None, true).await, Outcome::Healthy);
    let bad = node_spec(&[], &[("v", "9")], &env);
    let bad_hash = hash_of(&bad, Component::Scheduler);
    env.kubelet.fail(bad_hash.clone(), Behaviour::crashing());
    // Killed 30 s into the 60 s wait.
    let _ = tokio::time::timeout(Duration::from_secs(30), engine.apply(&bad, None, true)).await;
    drop(engine);
    assert!(
        matches!(
            env.lifecycle(),
            super::state::Lifecycle::Waiting {
                component: Component::Scheduler,
                ..
            }
        ),
        "{:?}",
        env.lifecycle()
    );
    // Restarted with no API and no ControlPlaneNode: the saved spec and local evidence.
    let mut engine = env.local_engine();
    let out = engine
        .resume()
        .await
        .expect("the interrupted wait is resumed");
    let Outcome::RolledBack { reason, message } = &out else {
        panic!("{out:?}")
    };
    assert_eq!(reason, "ContainerExited", "{message}");
    assert!(message.contains("exited (code 1)"), "{message}");
    assert_eq!(
        env.manifest(Component::Scheduler),
        restored_of(&good, &bad, Component::Scheduler)
    );
}

#[tokio::test(start_paused = true)]
async fn local_evidence_does_not_take_the_old_process_for_the_new_one() {
    let env = env();
    let mut engine = env.local_engine();
    let good = node_spec(&[], &[], &env);
    assert_eq!(engine.apply(&good, None, true).await, Outcome::Healthy);
    // kubelet never picks the new scheduler up: the old one keeps answering its endpoint.
    let bad = node_spec(&[], &[("v", "5")], &env);
    let bad_hash = hash_of(&bad, Component::Scheduler);
    env.kubelet.fail(bad_hash.clone(), Behaviour::ignored());
    let out = engine.apply(&bad, None, true).await;
    let Outcome::RolledBack { reason, message } = &out else {
        panic!("the old process answering must not count as the new revision: {out:?}")
    };
    assert_eq!(reason, "ContainerNotStarted", "{message}");
    assert!(
        message.contains("has no container for the new pod uid"),
        "{message}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_revision_is_not_tried_again_after_a_restart_or_a_recreated_node_object() {
    let env = env();
    let (_good, bad) = good_then_crashing_scheduler(&env, Duration::ZERO).await;
    let mut engine = env.engine();
    assert!(matches!(
        engine.apply(&bad, Some(2), true).await,
        Outcome::RolledBack { .. }
    ));
    let ino = env.inode(Component::Scheduler);
    // Another revision in between (the state's last attempt moves on, Pending on a Secret…)
    // must not erase the memory: a fresh engine and the same bad spec again.
    let mut st: super::state::AgentState =
        serde_json::from_slice(&std::fs::read(env.dirs.state_file()).unwrap()).unwrap();
    st.lifecycle = super::state::Lifecycle::Idle;
    st.target_revision = Some("other".into());
    st.target_digest = Some("other".into());
    std::fs::write(env.dirs.state_file(), serde_json::to_vec(&st).unwrap()).unwrap();
    let mut engine = env.engine();
    let out = engine.apply(&bad, Some(7), true).await;
    let Outcome::RolledBack { message, .. } = &out else {
        panic!("{out:?}")
    };
    assert!(message.contains("already failed on this node"), "{message}");
    assert_eq!(env.inode(Component::Scheduler), ino, "nothing written");
}

#[test]
fn a_state_file_of_format_1_in_the_middle_of_a_rollback_resumes_it() {
    let v1 = serde_json::json!({
        "version": 1,
        "targetRevision": "bad",
        "targetDigest": "d",
        "phase": "WaitingForKubelet",
        "reason": "RollingBack",
        "message": "kube-scheduler not updated within 60s",
        "appliedRevision": "bad",
        "lastKnownGoodRevision": "good",
        "components": {
            "kube-apiserver": {"revision": "good", "contentSha256": "a", "confirmed": true},
            "kube-scheduler": {"revision": "bad", "contentSha256": "b", "confirmed": false}
        }
    });
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir(t.path().join("staging")).unwrap();
    std::fs::write(t.path().join("state.json"), v1.to_string()).unwrap();
    let st = super::state::StateStore::new(t.path().join("state.json"), t.path().join("staging"))
        .load()
        .unwrap();
    let super::state::Lifecycle::RollingBack {
        failed_component,
        to_revision,
        ..
    } = st.lifecycle
    else {
        panic!("{:?}", st.lifecycle)
    };
    assert_eq!(failed_component, Component::Scheduler);
    assert_eq!(to_revision, "good");
}

#[tokio::test(start_paused = true)]
async fn a_newer_spec_cuts_the_wait_for_a_failing_one_short_but_never_a_restore() {
    let env = env();
    let mut engine = env.engine();
    let (tx, rx) = tokio::sync::watch::channel::<Option<String>>(None);
    engine.watch_newer(rx);
    let good = node_spec(&[], &[], &env);
    assert_eq!(engine.apply(&good, Some(1), true).await, Outcome::Healthy);
    let bad = node_spec(&[], &[("v", "6")], &env);
    let bad_hash = hash_of(&bad, Component::Scheduler);
    env.kubelet.fail(bad_hash.clone(), Behaviour::crashing());
    tx.send_replace(Some(super::engine::spec_digest(&bad)));
    let fixed = node_spec(&[], &[("v", "3")], &env);
    let start = tokio::time::Instant::now();
    let fixed_digest = super::engine::spec_digest(&fixed);
    let tx2 = tx.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(20)).await;
        tx2.send_replace(Some(fixed_digest));
    });
    assert_eq!(engine.apply(&bad, Some(2), true).await, Outcome::Superseded);
    let waited = start.elapsed();
    assert!(
        waited < Duration::from_secs(25),
        "cut short after 20 s, not the 60 s timeout: {waited:?}"
    );
    // The fix rolls out from what is on disk; the cut-short revision is not remembered as
    // failed (it never got its full chance).
    assert_eq!(engine.apply(&fixed, Some(3), true).await, Outcome::Healthy);
    assert_eq!(
        env.manifest(Component::Scheduler),
        content_of(&fixed, Component::Scheduler)
    );
    let st: super::state::AgentState =
        serde_json::from_slice(&std::fs::read(env.dirs.state_file()).unwrap()).unwrap();
    assert!(st.failed_revisions.is_empty(), "{:?}", st.failed_revisions);

    // A restore is never cut short: a newer spec during a rollback waits for it.
    let bad2 = node_spec(&[], &[("v", "8")], &env);
    let bad2_hash = hash_of(&bad2, Component::Scheduler);
    env.kubelet.fail(bad2_hash.clone(), Behaviour::crashing());
    tx.send_replace(Some(super::engine::spec_digest(&bad2)));
    let tx3 = tx.clone();
    let other = super::engine::spec_digest(&good);
    tokio::spawn(async move {
        // After the 60 s timeout: the rollback is under way.
        tokio::time::sleep(Duration::from_secs(62)).await;
        tx3.send_replace(Some(other));
    });
    let out = engine.apply(&bad2, Some(4), true).await;
    assert!(matches!(out, Outcome::RolledBack { .. }), "{out:?}");
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_rollback_is_finished_before_a_new_spec_waits_on_a_secret() {
    let env = env();
    let (good, bad) = good_then_crashing_scheduler(&env, Duration::from_secs(60)).await;
    let mut engine = env.engine();
    let cut = tokio::time::timeout(Duration::from_secs(100), engine.apply(&bad, Some(2), true));
    assert!(cut.await.is_err());
    drop(engine);
    assert!(matches!(
        env.lifecycle(),
        super::state::Lifecycle::RollingBack { .. }
    ));
    // The next spec needs a Secret nobody can read yet.
    let mut cfg = config(&[], &[]);
    cfg.api_server = Some(
        serde_json::from_value(
            serde_json::json!({"encryption": {"secretRef": {"name": "missing"}}}),
        )
        .unwrap(),
    );
    let facts = NodeFacts {
        node_name: NODE.into(),
        advertise_address: Some("10.0.0.11".into()),
        state_dir: Some(env.dirs.state_dir().display().to_string()),
        ..Default::default()
    };
    let digest = render::sha256_hex(b"kind: EncryptionConfiguration\n");
    let r = render::render(&RenderInput {
        spec: &cfg,
        node: &facts,
        encryption_config_sha256: Some(&digest),
    })
    .unwrap();
    let waiting = render::node_spec("test", &cfg, &render::revision(&cfg, Some(&digest)), &r);
    let mut engine = env.engine();
    let out = engine.apply(&waiting, Some(3), true).await;
    assert!(matches!(out, Outcome::Pending { .. }), "{out:?}");
    // The rollback was finished first and is remembered; the failed revision is not on disk.
    assert_eq!(
        env.manifest(Component::Scheduler),
        restored_of(&good, &bad, Component::Scheduler)
    );
    let st: super::state::AgentState =
        serde_json::from_slice(&std::fs::read(env.dirs.state_file()).unwrap()).unwrap();
    assert!(
        st.failed_revisions
            .iter()
            .any(|f| f.revision == bad.revision),
        "{:?}",
        st.failed_revisions
    );
    assert!(!matches!(
        st.lifecycle,
        super::state::Lifecycle::RollingBack { .. }
    ));
}

// ---------------------------------------------------------------------------------------------
// Images before restarts (issue 13): pulled through the runtime before any file is written.

/// The fake kubelet's containers, and an image store.
struct WithImages {
    containers: super::fixtures::FakeRuntime,
    images: crate::agent::runtime::fake::FakeRuntime,
}

impl crate::agent::runtime::ContainerRuntime for WithImages {
    fn containers_of_pod<'a>(
        &'a self,
        pod_uid: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Vec<crate::agent::runtime::ContainerSeen>, String>>
    {
        self.containers.containers_of_pod(pod_uid)
    }

    fn image_present<'a>(
        &'a self,
        image: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<bool, String>> {
        self.images.image_present(image)
    }

    fn pull_image<'a>(
        &'a self,
        image: &'a str,
        timeout: Duration,
    ) -> futures::future::BoxFuture<'a, Result<String, String>> {
        self.images.pull_image(image, timeout)
    }
}

impl Env {
    fn engine_with_images(&self, images: &crate::agent::runtime::fake::FakeRuntime) -> Engine {
        Engine::open(EngineParts {
            node_name: NODE.into(),
            dirs: self.dirs.clone(),
            history: 5,
            pods: Some(Arc::new(KubeMirrorPods::new(self.client.clone()))),
            runtime: Some(Arc::new(WithImages {
                containers: super::fixtures::FakeRuntime(self.kubelet.clone()),
                images: images.clone(),
            })),
            health: Arc::new(FakeHealth(self.kubelet.clone())),
            secrets: Arc::new(KubeSecrets::new(self.client.clone())),
            board: self.board.clone(),
            desired: Arc::new(Desired::new()),
        })
        .unwrap()
    }
}

fn image_of(spec: &ControlPlaneNodeSpec, c: Component) -> String {
    super::engine::images_to_pull(&content_of(spec, c))
        .pop()
        .unwrap()
}

/// The test's spec with the images from another registry.
fn node_spec_from(repo: &str, api_args: &[(&str, &str)], env: &Env) -> ControlPlaneNodeSpec {
    let facts = NodeFacts {
        node_name: NODE.into(),
        advertise_address: Some("10.0.0.11".into()),
        state_dir: Some(env.dirs.state_dir().display().to_string()),
        ..Default::default()
    };
    let mut spec = config(api_args, &[]);
    spec.image_repository = Some(repo.into());
    node_spec_for(&spec, &facts)
}

const COMPONENTS: [Component; 3] = [
    Component::ApiServer,
    Component::ControllerManager,
    Component::Scheduler,
];

#[tokio::test(start_paused = true)]
async fn missing_images_are_pulled_before_the_write() {
    let env = env();
    let images = crate::agent::runtime::fake::FakeRuntime::new();
    let good = node_spec(&[], &[], &env);
    // Every image present: nothing pulled.
    images.images(|i| i.present.extend(COMPONENTS.map(|c| image_of(&good, c))));
    let mut engine = env.engine_with_images(&images);
    assert_eq!(engine.apply(&good, None, true).await, Outcome::Healthy);
    assert!(images.images(|i| i.pulls.is_empty()));
    // A revision whose images come from another registry: pulled, in apply order, then
    // written.
    let next = node_spec_from("registry.example", &[], &env);
    let wanted = COMPONENTS.map(|c| image_of(&next, c));
    assert_eq!(wanted[0], "registry.example/kube-apiserver:v1.36.2");
    images.images(|i| i.pull_time = Duration::from_secs(20));
    assert_eq!(engine.apply(&next, None, true).await, Outcome::Healthy);
    assert_eq!(images.images(|i| i.pulls.clone()), wanted);
    for c in COMPONENTS {
        assert_eq!(env.manifest(c), content_of(&next, c));
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_pull_writes_nothing_and_fails_the_revision() {
    let env = env();
    let images = crate::agent::runtime::fake::FakeRuntime::new();
    let good = node_spec(&[], &[], &env);
    images.images(|i| i.present.extend(COMPONENTS.map(|c| image_of(&good, c))));
    let mut engine = env.engine_with_images(&images);
    assert_eq!(engine.apply(&good, None, true).await, Outcome::Healthy);
    let before = COMPONENTS.map(|c| (env.manifest(c), env.inode(c)));
    let next = node_spec_from("registry.example", &[], &env);
    // kube-apiserver's image pulls, kube-controller-manager's does not.
    images.images(|i| {
        i.failing.insert(
            image_of(&next, Component::ControllerManager),
            "manifest unknown".into(),
        )
    });
    let out = engine.apply(&next, None, true).await;
    let Outcome::Failed { reason, message } = &out else {
        panic!("{out:?}")
    };
    assert_eq!(reason, "ImagePullFailed");
    assert!(
        message.contains("manifest unknown") && message.contains("nothing was written"),
        "{message}"
    );
    assert_eq!(
        COMPONENTS.map(|c| (env.manifest(c), env.inode(c))),
        before,
        "no manifest written, not even kube-apiserver's whose image pulled"
    );
    let status = env.last_status().await;
    assert_eq!(status["phase"], "Failed");
    assert_eq!(status["reason"], "ImagePullFailed");
    assert!(matches!(
        env.lifecycle(),
        super::state::Lifecycle::Settled { .. }
    ));
    // Without an image service (the runtime cannot say), kubelet pulls as before.
    let env2 = super::engine_tests::env();
    let mut plain = env2.local_engine();
    assert_eq!(
        plain
            .apply(&node_spec_from("registry.example", &[], &env2), None, true)
            .await,
        Outcome::Healthy
    );
}

#[test]
fn images_to_pull_skips_never_and_reads_init_containers() {
    let pod = br#"apiVersion: v1
kind: Pod
metadata: {name: x}
spec:
  initContainers:
  - {name: i, image: "registry.k8s.io/busybox:1"}
  containers:
  - {name: a, image: "registry.k8s.io/kube-apiserver:v1.36.2"}
  - {name: b, image: "local/only:v1", imagePullPolicy: Never}
"#;
    assert_eq!(
        super::engine::images_to_pull(pod),
        [
            "registry.k8s.io/busybox:1",
            "registry.k8s.io/kube-apiserver:v1.36.2"
        ]
    );
    assert!(super::engine::images_to_pull(b"not yaml: [").is_empty());
}

/// Found on the HA cluster: the config deleted and applied again re-creates each
/// ControlPlaneNode empty first, then with the same revision. The node must come back
/// `Healthy` at once (before the fix it stayed `Pending`/`NoManifests` and the rollout waited
/// for it forever).
#[tokio::test(start_paused = true)]
async fn a_recreated_empty_controlplanenode_then_the_same_revision_is_healthy_again() {
    let env = env();
    let mut engine = env.engine();
    let spec = node_spec(&[], &[], &env);
    assert_eq!(engine.apply(&spec, Some(1), true).await, Outcome::Healthy);
    let inode = env.inode(Component::ApiServer);
    let empty = ControlPlaneNodeSpec {
        config_name: spec.config_name.clone(),
        ..Default::default()
    };
    let out = engine.apply(&empty, Some(1), true).await;
    assert!(matches!(out, Outcome::Pending { .. }), "{out:?}");
    assert_eq!(env.last_status().await["reason"], "NoManifests");
    assert_eq!(engine.apply(&spec, Some(2), true).await, Outcome::Healthy);
    let status = env.last_status().await;
    assert_eq!(status["phase"], "Healthy", "{status}");
    assert_eq!(status["targetRevision"], spec.revision.as_str());
    assert_eq!(env.inode(Component::ApiServer), inode, "nothing rewritten");
    // And after a restart of the agent in between.
    drop(engine);
    let mut engine = env.engine();
    assert!(matches!(
        engine.apply(&empty, Some(3), true).await,
        Outcome::Pending { .. }
    ));
    drop(engine);
    let mut engine = env.engine();
    assert_eq!(engine.apply(&spec, Some(4), true).await, Outcome::Healthy);
    assert_eq!(env.last_status().await["phase"], "Healthy");
    // A state an agent without the fix wrote (`Pending`/`NoManifests` under a settled
    // lifecycle) is repaired when the same revision comes.
    drop(engine);
    let path = env.dirs.state_file();
    let mut state: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    state["phase"] = "Pending".into();
    state["reason"] = "NoManifests".into();
    std::fs::write(&path, serde_json::to_vec(&state).unwrap()).unwrap();
    let mut engine = env.engine();
    assert_eq!(engine.apply(&spec, Some(5), true).await, Outcome::Healthy);
    let status = env.last_status().await;
    assert_eq!(status["phase"], "Healthy", "{status}");
    assert_eq!(status["reason"], "Healthy");
}
