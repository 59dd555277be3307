//! The I/O of managed encryption against a mocked API server that keeps Secrets in memory
//! (get, create, replace with `resourceVersion` checks), in the controller-rs style of
//! `operator::fixtures`: what the operator writes to the keys Secret at each step, what it
//! reports, and that key material stays out of status and Events.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

use super::*;
use crate::api::{
    ApiServer, ControlPlaneConfigStatus, ControlPlaneNodeSpec, ControlPlaneNodeStatus, Encryption,
    RenderedFile, SecretKeyRef,
};
use crate::operator::fixtures::{config, valid_spec};
use crate::operator::metrics::Metrics;

type Store = Arc<Mutex<BTreeMap<String, Value>>>;

/// A context whose client talks to an in-memory store of kube-system Secrets.
fn context(store: Store) -> Context {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().clone();
            let path = req.uri().path().to_string();
            let body = req.into_body().collect_bytes().await.unwrap_or_default();
            let (code, value) = answer(&store, &method, &path, &body);
            let resp = Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&value).unwrap()))
                .unwrap();
            send.send_response(resp);
        }
    });
    let client = Client::new(service, "default");
    let metrics = Metrics::register(&mut crate::telemetry::registry());
    Context::new(client, metrics, Some("test".into()))
}

fn status_body(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": reason})
}

fn answer(store: &Store, method: &Method, path: &str, body: &[u8]) -> (StatusCode, Value) {
    let prefix = "/api/v1/namespaces/kube-system/secrets";
    let mut s = store.lock().unwrap();
    let rv = |s: &BTreeMap<String, Value>| s.len().to_string() + "0";
    match (method, path.strip_prefix(prefix)) {
        (&Method::GET, Some(name)) => match s.get(name.trim_start_matches('/')) {
            Some(v) => (StatusCode::OK, v.clone()),
            None => (StatusCode::NOT_FOUND, status_body(404, "NotFound")),
        },
        (&Method::POST, Some("")) => {
            let mut v: Value = serde_json::from_slice(body).unwrap();
            let name = v["metadata"]["name"].as_str().unwrap().to_string();
            if s.contains_key(&name) {
                return (StatusCode::CONFLICT, status_body(409, "AlreadyExists"));
            }
            v["metadata"]["resourceVersion"] = json!(rv(&s));
            s.insert(name, v.clone());
            (StatusCode::CREATED, v)
        }
        (&Method::PUT, Some(name)) => {
            let name = name.trim_start_matches('/').to_string();
            let mut v: Value = serde_json::from_slice(body).unwrap();
            let Some(old) = s.get(&name) else {
                return (StatusCode::NOT_FOUND, status_body(404, "NotFound"));
            };
            if old["metadata"]["resourceVersion"] != v["metadata"]["resourceVersion"] {
                return (StatusCode::CONFLICT, status_body(409, "Conflict"));
            }
            v["metadata"]["resourceVersion"] = json!(format!("{}1", rv(&s)));
            s.insert(name, v.clone());
            (StatusCode::OK, v)
        }
        _ => panic!("unexpected request {method} {path}"),
    }
}

fn cpc_with(managed: ManagedEncryption, status: Option<EncryptionStatus>) -> ControlPlaneConfig {
    let mut spec = valid_spec();
    spec.api_server = Some(ApiServer {
        encryption: Some(Encryption {
            secret_ref: None,
            managed: Some(managed),
        }),
        ..Default::default()
    });
    let mut c = config(1, spec);
    c.status = Some(ControlPlaneConfigStatus {
        encryption: status,
        ..Default::default()
    });
    c
}

/// A node settled at a revision whose kube-apiserver reads the keys Secret with digest `sha`.
fn node(name: &str, secret: &str, sha: &str, healthy: bool) -> ControlPlaneNode {
    let mut c = ControlPlaneNode::new(
        name,
        ControlPlaneNodeSpec {
            config_name: "kubernetes".into(),
            revision: "r1".into(),
            files: vec![RenderedFile {
                component: Component::ApiServer,
                path: "/etc/kubernetes/kubeplane/files/kube-apiserver/encryption-config.yaml"
                    .into(),
                source: FileSource::Secret(SecretKeyRef {
                    name: secret.into(),
                    namespace: Some("kube-system".into()),
                    key: Some(CONFIG_KEY.into()),
                }),
                sha256: sha.into(),
            }],
            ..Default::default()
        },
    );
    c.status = Some(ControlPlaneNodeStatus {
        phase: Some(if healthy {
            NodePhase::Healthy
        } else {
            NodePhase::WaitingForKubelet
        }),
        applied_revision: Some("r1".into()),
        ..Default::default()
    });
    c
}

fn stored_state(store: &Store) -> KeyState {
    let s = store.lock().unwrap();
    let b64 = s["kubeplane-encryption"]["data"][STATE_KEY]
        .as_str()
        .unwrap();
    serde_json::from_slice(&STANDARD.decode(b64).unwrap()).unwrap()
}

fn stored_config(store: &Store) -> String {
    let s = store.lock().unwrap();
    let b64 = s["kubeplane-encryption"]["data"][CONFIG_KEY]
        .as_str()
        .unwrap();
    String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap()
}

#[tokio::test]
async fn turning_on_creates_the_keys_secret_and_waits_for_every_node() {
    let store = Store::default();
    let ctx = context(store.clone());
    let selected = vec!["cp-1".to_string(), "cp-2".to_string()];
    let cpc = cpc_with(ManagedEncryption::default(), None);

    let p = reconcile(
        &ctx,
        &cpc,
        &ManagedEncryption::default(),
        &selected,
        &BTreeMap::new(),
    )
    .await
    .unwrap();
    let state = stored_state(&store);
    assert_eq!(state.step, Step::KeyAdded);
    assert_eq!(state.keys.len(), 2);
    assert!(state.keys[0].is_identity());
    let secret = state.keys[1].secret.clone();
    assert_eq!(STANDARD.decode(&secret).unwrap().len(), 32, "a 32-byte key");
    let config = stored_config(&store);
    assert!(
        config.contains("  - identity: {}\n  - secretbox:\n"),
        "{config}"
    );
    assert_eq!(
        p.digest.as_deref(),
        Some(sha256_hex(config.as_bytes()).as_str())
    );
    assert_eq!(p.status.step.as_deref(), Some("KeyAdded"));
    assert_eq!(
        p.status.keys,
        vec!["identity".to_string(), state.keys[1].name.clone()]
    );
    let (_, reason, note) = p.event.clone().expect("an Event");
    assert_eq!(reason, REASON_STEP);
    // Key material never leaves the Secret.
    let reported = format!("{} {note}", serde_json::to_string(&p.status).unwrap());
    assert!(!reported.contains(&secret), "{reported}");

    // Nothing moves while cp-2 runs an older configuration.
    let sha = p.digest.clone().unwrap();
    let cpc = cpc_with(ManagedEncryption::default(), Some(p.status.clone()));
    let ours = BTreeMap::from([
        ("cp-1".to_string(), node("cp-1", DEFAULT, &sha, true)),
        ("cp-2".to_string(), node("cp-2", DEFAULT, "older", true)),
    ]);
    let p = reconcile(&ctx, &cpc, &ManagedEncryption::default(), &selected, &ours)
        .await
        .unwrap();
    assert_eq!(stored_state(&store).step, Step::KeyAdded);
    assert!(
        p.status.message.as_deref().unwrap().contains("cp-2"),
        "{:?}",
        p.status.message
    );
    assert_eq!(
        p.status.nodes.iter().map(|n| n.current).collect::<Vec<_>>(),
        vec![true, false]
    );
    assert_eq!(
        p.status.nodes[0].revision.as_deref(),
        Some("r1"),
        "applied revision"
    );

    // Both read the new key: it becomes the write key, in the same Secret.
    let ours = BTreeMap::from([
        ("cp-1".to_string(), node("cp-1", DEFAULT, &sha, true)),
        ("cp-2".to_string(), node("cp-2", DEFAULT, &sha, true)),
    ]);
    let p = reconcile(&ctx, &cpc, &ManagedEncryption::default(), &selected, &ours)
        .await
        .unwrap();
    let state = stored_state(&store);
    assert_eq!(state.step, Step::KeyPrimary);
    assert_eq!(state.keys[0].secret, secret, "the same key, now first");
    assert_ne!(
        p.digest.as_deref(),
        Some(sha.as_str()),
        "a new configuration"
    );
}

const DEFAULT: &str = crate::encryption::DEFAULT_SECRET_NAME;

#[tokio::test]
async fn a_pass_through_configuration_is_never_taken_over() {
    let store = Store::default();
    let ctx = context(store.clone());
    let cpc = cpc_with(ManagedEncryption::default(), None);
    let ours = BTreeMap::from([(
        "cp-1".to_string(),
        node("cp-1", "my-encryption", "abc", true),
    )]);
    let p = reconcile(
        &ctx,
        &cpc,
        &ManagedEncryption::default(),
        &["cp-1".to_string()],
        &ours,
    )
    .await
    .unwrap();
    assert_eq!(p.status.health.as_deref(), Some("Degraded"));
    let m = p.status.message.unwrap();
    assert!(
        m.contains("kube-system/my-encryption")
            && m.contains("keep spec.apiServer.encryption.secretRef"),
        "{m}"
    );
    assert!(store.lock().unwrap().is_empty(), "no keys Secret written");
    assert!(
        p.event
            .is_some_and(|(warning, r, _)| warning && r == REASON_HALTED)
    );
}

#[tokio::test]
async fn a_foreign_secret_of_the_same_name_is_left_alone() {
    let store = Store::default();
    store.lock().unwrap().insert(
        DEFAULT.into(),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": DEFAULT, "namespace": "kube-system", "resourceVersion": "5"}, "data": {"other": "eA=="}}),
    );
    let ctx = context(store.clone());
    let cpc = cpc_with(ManagedEncryption::default(), None);
    let p = reconcile(
        &ctx,
        &cpc,
        &ManagedEncryption::default(),
        &["cp-1".into()],
        &BTreeMap::new(),
    )
    .await
    .unwrap();
    assert_eq!(p.status.health.as_deref(), Some("Degraded"));
    assert!(
        p.status
            .message
            .unwrap()
            .contains("was not written by kubeplane")
    );
    assert_eq!(
        store.lock().unwrap()[DEFAULT]["metadata"]["resourceVersion"],
        "5",
        "not overwritten"
    );
}

#[tokio::test]
async fn a_vanished_keys_secret_is_not_replaced_by_new_keys() {
    let store = Store::default();
    let ctx = context(store.clone());
    let reported = EncryptionStatus {
        step: Some("OldKeyRetired".into()),
        ..Default::default()
    };
    let cpc = cpc_with(ManagedEncryption::default(), Some(reported));
    let p = reconcile(
        &ctx,
        &cpc,
        &ManagedEncryption::default(),
        &["cp-1".into()],
        &BTreeMap::new(),
    )
    .await
    .unwrap();
    assert_eq!(p.status.health.as_deref(), Some("Degraded"));
    assert!(p.status.message.unwrap().contains("is gone"));
    assert!(store.lock().unwrap().is_empty());
}

#[tokio::test]
async fn retiring_backs_the_old_key_up_before_removing_it() {
    let store = Store::default();
    let ctx = context(store.clone());
    let old = Key {
        name: "key1-1".into(),
        provider: crate::api::EncryptionProvider::Secretbox,
        secret: STANDARD.encode([1u8; 32]),
    };
    let new = Key {
        name: "key2-2".into(),
        provider: crate::api::EncryptionProvider::Secretbox,
        secret: STANDARD.encode([2u8; 32]),
    };
    let state = KeyState {
        step: Step::Migrated,
        resources: vec!["secrets".into()],
        keys: vec![new.clone(), old.clone()],
        target: new.name.clone(),
        observed_rotation: 1,
        serial: 2,
        last_rotation_unix: None,
    };
    let config = state.render();
    store.lock().unwrap().insert(
        DEFAULT.into(),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": DEFAULT, "namespace": "kube-system", "resourceVersion": "7"},
               "data": {STATE_KEY: STANDARD.encode(serde_json::to_vec(&state).unwrap()), CONFIG_KEY: STANDARD.encode(&config)}}),
    );
    let sha = sha256_hex(config.as_bytes());
    let ours = BTreeMap::from([("cp-1".to_string(), node("cp-1", DEFAULT, &sha, true))]);
    let cpc = cpc_with(
        ManagedEncryption::default(),
        Some(EncryptionStatus {
            step: Some("Migrated".into()),
            ..Default::default()
        }),
    );
    let p = reconcile(
        &ctx,
        &cpc,
        &ManagedEncryption::default(),
        &["cp-1".into()],
        &ours,
    )
    .await
    .unwrap();
    assert_eq!(p.status.step.as_deref(), Some("OldKeyRetired"));
    assert_eq!(p.status.keys, vec!["key2-2".to_string()]);
    assert!(!stored_config(&store).contains("key1-1"));
    let s = store.lock().unwrap();
    let backup = &s[&format!("{DEFAULT}{RETIRED_SUFFIX}")];
    let retired: Vec<Key> = serde_json::from_slice(
        &STANDARD
            .decode(backup["data"]["retired.json"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(retired, vec![old]);
}

#[test]
fn a_node_counts_only_when_healthy_at_its_revision_with_the_digest() {
    assert!(carries(&node("a", DEFAULT, "s1", true), DEFAULT, "s1"));
    assert!(!carries(&node("a", DEFAULT, "s1", false), DEFAULT, "s1"));
    assert!(!carries(&node("a", DEFAULT, "s0", true), DEFAULT, "s1"));
    assert!(!carries(&node("a", "other", "s1", true), DEFAULT, "s1"));
    let mut moving = node("a", DEFAULT, "s1", true);
    moving.spec.revision = "r2".into();
    assert!(!carries(&moving, DEFAULT, "s1"), "applied r1, given r2");
    let views = node_views(
        &["a".to_string()],
        &BTreeMap::from([
            ("a".to_string(), node("a", DEFAULT, "s1", true)),
            ("gone".to_string(), node("gone", DEFAULT, "s0", true)),
        ]),
        DEFAULT,
        Some("s1"),
    );
    assert_eq!(
        views,
        vec![
            NodeView {
                name: "a".into(),
                selected: true,
                current: true
            },
            NodeView {
                name: "gone".into(),
                selected: false,
                current: false
            },
        ]
    );
}

/// Everything a subscriber at TRACE level for kubeplane's own crates prints while the operator walks a whole rotation
/// (creation, both roll-outs, the rewrite's bookkeeping, retirement with backup): no key
/// material in it.
#[tokio::test]
async fn key_material_never_reaches_the_log() {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("kubeplane=trace,kubeplane_core=trace")
        .with_writer(move || writer.clone())
        .finish();
    // The process-wide subscriber (no other unit test sets one): a thread-scoped one misses
    // events whose callsite interest another test thread cached meanwhile.
    tracing::subscriber::set_global_default(subscriber)
        .expect("no other test sets the global subscriber");

    let store = Store::default();
    let ctx = context(store.clone());
    let selected = vec!["cp-1".to_string()];
    let managed = ManagedEncryption::default();
    let mut status = None;
    let mut secrets = Vec::new();
    for _ in 0..4 {
        let sha = {
            let s = store.lock().unwrap();
            s.get(DEFAULT).map(|v| {
                sha256_hex(
                    &STANDARD
                        .decode(v["data"][CONFIG_KEY].as_str().unwrap())
                        .unwrap(),
                )
            })
        };
        let ours = sha
            .map(|sha| BTreeMap::from([("cp-1".to_string(), node("cp-1", DEFAULT, &sha, true))]))
            .unwrap_or_default();
        let cpc = cpc_with(managed.clone(), status.clone());
        let p = reconcile(&ctx, &cpc, &managed, &selected, &ours)
            .await
            .unwrap();
        secrets.extend(stored_state(&store).keys.into_iter().map(|k| k.secret));
        let mut st = p.status;
        if st.step.as_deref() == Some("Migrating") {
            // The rewrite's own I/O is exercised on the real cluster; here it is done.
            st.migration = Some(crate::api::MigrationStatus {
                key: Some(stored_state(&store).target),
                complete: true,
                ..Default::default()
            });
        }
        status = Some(st);
    }
    assert_eq!(
        stored_state(&store).step,
        Step::Migrated,
        "walked the steps"
    );
    let log = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("key1-"), "the log names keys: {log}");
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        assert!(!log.contains(s.as_str()), "key material in the log");
        assert!(!serde_json::to_string(&status).unwrap().contains(s.as_str()));
    }
}

/// An operator that restarts between writing a step to the keys Secret and writing status
/// (status lost or older) goes on from the Secret: it neither adds a second new key nor goes
/// back a step.
#[tokio::test]
async fn a_restart_between_the_secret_and_the_status_resumes_from_the_secret() {
    let store = Store::default();
    let ctx = context(store.clone());
    let selected = vec!["cp-1".to_string()];
    let managed = ManagedEncryption::default();
    let first = reconcile(
        &ctx,
        &cpc_with(managed.clone(), None),
        &managed,
        &selected,
        &BTreeMap::new(),
    )
    .await
    .unwrap();
    let sha = first.digest.clone().unwrap();
    let ours = BTreeMap::from([("cp-1".to_string(), node("cp-1", DEFAULT, &sha, true))]);
    // KeyPrimary is written, then the operator dies before its status write.
    reconcile(
        &ctx,
        &cpc_with(managed.clone(), Some(first.status.clone())),
        &managed,
        &selected,
        &ours,
    )
    .await
    .unwrap();
    let written = stored_state(&store);
    assert_eq!(written.step, Step::KeyPrimary);
    // The next operator reads the old status (KeyAdded) or none at all.
    for status in [Some(first.status.clone()), None] {
        let p = reconcile(
            &ctx,
            &cpc_with(managed.clone(), status),
            &managed,
            &selected,
            &ours,
        )
        .await
        .unwrap();
        assert_eq!(stored_state(&store), written, "nothing rewritten");
        assert_eq!(p.status.step.as_deref(), Some("KeyPrimary"));
        assert_eq!(p.status.health.as_deref(), Some("Progressing"));
    }
}
