//! Scenarios of the apply → wait → rollback state machine against a mock API (tower-test)
//! and a fake kubelet over a real temporary manifest directory. Virtual time
//! (`start_paused`): minutes of waiting take milliseconds.

mod adopt;
mod agent;
mod certificates;
mod drain;
mod forward;
mod images;
mod resume;
mod rollback;
mod side_files;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use serde_json::Value;

use crate::agent::desired::Desired;
use crate::agent::engine::{Engine, EngineParts, KubeSecrets, Outcome};
use crate::agent::files::NodeDirs;
use crate::agent::fixtures::{Behaviour, Cluster, FakeHealth, Kubelet};
use crate::agent::kubelet_wait::KubeMirrorPods;
use crate::agent::status::{self, StatusBoard};
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
    // The operator's first write for a selected node: the status has somewhere to go.
    cluster.set_cpn(
        NODE,
        1,
        serde_json::json!({"configName": "test", "revision": ""}),
    );
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
    let facts = facts_in(env.dirs.state_dir());
    node_spec_for(&config(api_args, sched_args), &facts)
}

/// The test node's facts, its state directory `state_dir`.
fn facts_in(state_dir: &Path) -> NodeFacts {
    NodeFacts {
        node_name: NODE.into(),
        advertise_address: Some("10.0.0.11".into()),
        state_dir: Some(state_dir.display().to_string()),
        ..Default::default()
    }
}

/// Applies the test's spec (no extra flags), which must end healthy; returns it.
async fn apply_good(engine: &mut Engine, env: &Env) -> ControlPlaneNodeSpec {
    let good = node_spec(&[], &[], env);
    assert_eq!(engine.apply(&good, None, true).await, Outcome::Healthy);
    good
}

/// The message of `out`, which must be `RolledBack` for `want`.
fn rolled_back<'a>(out: &'a Outcome, want: &str) -> &'a str {
    let Outcome::RolledBack { reason, message } = out else {
        panic!("{out:?}")
    };
    assert_eq!(reason, want, "{message}");
    message
}

/// The message of `out`, which must be `Failed` for `want`.
fn failed<'a>(out: &'a Outcome, want: &str) -> &'a str {
    let Outcome::Failed { reason, message } = out else {
        panic!("{out:?}")
    };
    assert_eq!(reason, want, "{message}");
    message
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

impl Env {
    /// An engine as `kubeplane apply` or an agent without the API has it: no mirror pods,
    /// the fake kubelet's containers as local evidence.
    fn local_engine(&self) -> Engine {
        Engine::open(EngineParts {
            node_name: NODE.into(),
            dirs: self.dirs.clone(),
            history: 5,
            pods: None,
            runtime: Some(Arc::new(crate::agent::fixtures::FakeRuntime(
                self.kubelet.clone(),
            ))),
            health: Arc::new(FakeHealth(self.kubelet.clone())),
            secrets: Arc::new(KubeSecrets::new(self.client.clone())),
            board: self.board.clone(),
            desired: Arc::new(Desired::new()),
        })
        .unwrap()
    }

    fn lifecycle(&self) -> crate::agent::state::Lifecycle {
        let text = std::fs::read(self.dirs.state_file()).unwrap();
        serde_json::from_slice::<crate::agent::state::AgentState>(&text)
            .unwrap()
            .lifecycle
    }
}

fn restored_of(good: &ControlPlaneNodeSpec, bad: &ControlPlaneNodeSpec, c: Component) -> Vec<u8> {
    crate::agent::engine::restored_manifest(&content_of(good, c), &bad.revision, NODE).0
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
    let restored_hash = crate::agent::engine::restored_manifest(
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
