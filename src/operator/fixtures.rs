//! Test fixtures in the style of kube-rs/controller-rs `fixtures.rs`: a mocked API server
//! (`tower_test::mock::pair`) and an [`ApiServerVerifier`] that plays a [`Scenario`], asserting
//! the method, path and body of every request in order and answering from a [`World`]. After
//! the last expected request it asserts that no other request arrives.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Response, StatusCode};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::client::Body;
use serde_json::{Value, json};

use super::metrics::Metrics;
use super::reconcile::Context;
use super::selection::{self, CONFIG_LABEL, CONTROL_PLANE_LABEL};
use crate::api::{ControlPlaneConfig, ControlPlaneConfigStatus, ControlPlaneNode};
use crate::testkit::mock;

/// The mocked API server's side of the channel.
pub type ApiServerHandle = mock::Handle;

pub use crate::testkit::builders::{
    assert_json_subset, condition, config, cpn, cpn_moving, facts, fixture_ip, valid_spec,
};

/// A context whose client talks to the returned verifier.
pub fn test_context() -> (Arc<Context>, ApiServerVerifier) {
    let (client, handle) = mock::pair();
    let metrics = Metrics::register(&mut crate::telemetry::registry());
    let ctx = Context::new(client, metrics, Some("test".into()));
    (Arc::new(ctx), ApiServerVerifier(handle))
}

/// The cluster as the API server holds it.
#[derive(Clone, Debug)]
pub struct World {
    /// The config being reconciled.
    pub cpc: ControlPlaneConfig,
    /// Nodes and their labels.
    pub nodes: Vec<(String, BTreeMap<String, String>)>,
    /// Every ControlPlaneNode, of any config.
    pub cpns: Vec<ControlPlaneNode>,
    /// Holder identities of the kube-controller-manager and kube-scheduler Leases.
    pub leases: BTreeMap<&'static str, String>,
    /// Data of the encryption Secret, when it exists.
    pub secret: Option<BTreeMap<String, Vec<u8>>>,
    /// Nodes whose `Ready` condition is `Unknown` (kubelet stopped posting status).
    pub unreachable: Vec<String>,
}

impl World {
    /// Control-plane nodes `names` (kubeadm label), no ControlPlaneNodes, no Leases.
    pub fn new(cpc: ControlPlaneConfig, names: &[&str]) -> Self {
        World {
            cpc,
            nodes: names
                .iter()
                .map(|n| {
                    (
                        n.to_string(),
                        BTreeMap::from([(CONTROL_PLANE_LABEL.to_string(), String::new())]),
                    )
                })
                .collect(),
            cpns: Vec::new(),
            leases: BTreeMap::new(),
            secret: None,
            unreachable: Vec::new(),
        }
    }

    /// With these ControlPlaneNodes.
    pub fn with_cpns(mut self, cpns: Vec<ControlPlaneNode>) -> Self {
        self.cpns = cpns;
        self
    }

    /// With the config's previous status.
    pub fn with_status(mut self, status: ControlPlaneConfigStatus) -> Self {
        self.cpc.status = Some(status);
        self
    }

    /// The revision the operator computes for the world's spec and its selected nodes, with
    /// the facts their ControlPlaneNodes report (the fixture facts, [`facts`] with
    /// [`fixture_ip`], for a node without).
    pub fn revision(&self) -> String {
        let digest = self.secret.as_ref().and_then(|d| {
            let key = crate::render::encryption_secret(&self.cpc.spec)?.key?;
            d.get(&key).map(|b| crate::render::sha256_hex(b))
        });
        let selector = selection::node_selector(&self.cpc.spec);
        let rendered: Vec<(String, crate::render::Rendered)> = self
            .nodes
            .iter()
            .filter(|(_, labels)| selection::matches(&selector, labels))
            .filter_map(|(name, _)| {
                let f = self
                    .cpns
                    .iter()
                    .find(|c| c.name_any() == *name)
                    .and_then(|c| c.status.as_ref()?.node_facts.clone())
                    .unwrap_or_else(|| facts(name, &fixture_ip(name)));
                let r = crate::render::render(&crate::render::RenderInput {
                    spec: &self.cpc.spec,
                    node: &f,
                    encryption_config_sha256: digest.as_deref(),
                })
                .ok()?; // an invalid spec has no revision; its scenarios never start a node
                Some((name.clone(), r))
            })
            .collect();
        crate::render::revision_of(rendered.iter().map(|(n, r)| (n.as_str(), r)))
    }
}

/// A request the operator makes after its reads, in order.
pub enum Write {
    /// SSA of a new ControlPlaneNode without a revision (facts first).
    CreateEmpty(&'static str),
    /// SSA of a ControlPlaneNode with the world's revision, rendered.
    Start(&'static str),
    /// The same, answered with 409 Conflict (the ControlPlaneNode changed since it was read).
    StartConflict(&'static str),
    /// SSA of a ControlPlaneNode with a revision the closure checks (a wave of an upgrade
    /// has its own), with the whole body.
    StartChecked(&'static str, Box<dyn FnOnce(&Value) + Send>),
    /// Merge patch of a ControlPlaneNode's `kubeplane.io/unselected` label: `true` sets it,
    /// `false` removes it.
    MarkUnselected(&'static str, bool),
    /// SSA of the config's status; the closure checks the `status` object.
    Status(Box<dyn FnOnce(&Value) + Send>),
    /// SSA of the config's status answered with 409 Conflict (another writer changed the
    /// config since the operator read it).
    StatusConflict,
    /// An Event with this reason.
    Event(&'static str),
}

/// What the verifier plays.
pub enum Scenario {
    /// A valid spec: the reads (config, Secret if any, Nodes, ControlPlaneNodes, Leases) answered
    /// from the world, then exactly these writes.
    Reconcile(World, Vec<Write>),
    /// Only the config is read; then exactly these writes (invalid spec, missing Secret).
    Blocked(World, Vec<Write>),
    /// The reads stop after the ControlPlaneNodes (a node claimed by another config); then
    /// exactly these writes.
    Conflict(World, Vec<Write>),
}

/// Plays a scenario against the operator's client.
pub struct ApiServerVerifier(pub ApiServerHandle);

fn response(status: StatusCode, body: &Value) -> Response<Body> {
    mock::json_response(status.as_u16(), body)
}

fn not_found(what: &str) -> Response<Body> {
    response(
        StatusCode::NOT_FOUND,
        &mock::status(404, "NotFound", &format!("{what} not found")),
    )
}

impl ApiServerVerifier {
    /// Plays the scenario in a task; await the handle after the operator is done and its
    /// client dropped.
    pub fn run(self, scenario: Scenario) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut v = self;
            match scenario {
                Scenario::Reconcile(world, writes) => {
                    v.reads(&world, true).await;
                    v.writes(&world, writes).await;
                }
                Scenario::Conflict(world, writes) => {
                    v.reads(&world, false).await;
                    v.writes(&world, writes).await;
                }
                Scenario::Blocked(world, writes) => {
                    v.get_config(&world).await;
                    if let Some(r) = crate::render::encryption_secret(&world.cpc.spec) {
                        v.get_secret(&world, &r).await;
                    }
                    v.writes(&world, writes).await;
                }
            }
            if let Some((req, _)) = v.0.next_request().await {
                panic!("unexpected request {} {}", req.method(), req.uri());
            }
        })
    }

    async fn next(&mut self, method: Method, uri: &str) -> (Value, mock::Send) {
        mock::expect(&mut self.0, method, uri).await
    }

    /// The next request, which must be the operator's server-side apply of ControlPlaneNode
    /// `node`.
    async fn next_cpn_apply(&mut self, node: &str) -> (Value, mock::Send) {
        let uri = format!(
            "/apis/kubeplane.io/v1alpha1/controlplanenodes/{node}?&force=true&fieldManager=kubeplane-operator"
        );
        self.next(Method::PATCH, &uri).await
    }

    /// The next request, which must be the operator's server-side apply of the config's
    /// status.
    async fn next_status_apply(&mut self) -> (Value, mock::Send) {
        self.next(
            Method::PATCH,
            "/apis/kubeplane.io/v1alpha1/controlplaneconfigs/prod/status?&force=true&fieldManager=kubeplane-operator",
        )
        .await
    }

    async fn get_config(&mut self, world: &World) {
        let (_, send) = self
            .next(
                Method::GET,
                "/apis/kubeplane.io/v1alpha1/controlplaneconfigs/prod",
            )
            .await;
        send.send_response(response(StatusCode::OK, &json!(world.cpc)));
    }

    async fn get_secret(&mut self, world: &World, r: &crate::api::SecretKeyRef) {
        let ns = r
            .namespace
            .as_deref()
            .unwrap_or(crate::render::defaults::ENCRYPTION_SECRET_NAMESPACE);
        let uri = format!("/api/v1/namespaces/{ns}/secrets/{}", r.name);
        let (_, send) = self.next(Method::GET, &uri).await;
        match &world.secret {
            None => send.send_response(not_found("secret")),
            Some(data) => {
                send.send_response(response(StatusCode::OK, &mock::secret(ns, &r.name, data)));
            }
        }
    }

    async fn reads(&mut self, world: &World, leases: bool) {
        self.get_config(world).await;
        if let Some(r) = crate::render::encryption_secret(&world.cpc.spec) {
            self.get_secret(world, &r).await;
        }
        let selector = selection::node_selector(&world.cpc.spec);
        let uri = format!(
            "/api/v1/nodes?&labelSelector={}",
            mock::url_encode(&selection::label_selector(&selector))
        );
        let (_, send) = self.next(Method::GET, &uri).await;
        // Like the API server, answer only the Nodes the label selector matches.
        let items: Vec<Value> = world
            .nodes
            .iter()
            .filter(|(_, labels)| selection::matches(&selector, labels))
            .map(|(name, labels)| {
                let ready = if world.unreachable.contains(name) {
                    "Unknown"
                } else {
                    "True"
                };
                json!({"apiVersion": "v1", "kind": "Node",
                       "metadata": {"name": name, "labels": labels},
                       "status": {"conditions": [{"type": "Ready", "status": ready}]}})
            })
            .collect();
        send.send_response(response(
            StatusCode::OK,
            &json!({"apiVersion": "v1", "kind": "NodeList",
                    "metadata": {"resourceVersion": "200"}, "items": items}),
        ));

        let (_, send) = self
            .next(
                Method::GET,
                "/apis/kubeplane.io/v1alpha1/controlplanenodes?",
            )
            .await;
        send.send_response(response(
            StatusCode::OK,
            &json!({"apiVersion": "kubeplane.io/v1alpha1", "kind": "ControlPlaneNodeList",
                    "metadata": {"resourceVersion": "200"}, "items": world.cpns}),
        ));

        if !leases {
            return;
        }
        for component in ["kube-controller-manager", "kube-scheduler"] {
            let uri =
                format!("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{component}");
            let (_, send) = self.next(Method::GET, &uri).await;
            match world.leases.get(component) {
                None => send.send_response(not_found("lease")),
                Some(holder) => {
                    let lease = Lease {
                        metadata: kube::api::ObjectMeta {
                            name: Some(component.into()),
                            namespace: Some(super::reconcile::COMPONENT_LEASE_NAMESPACE.into()),
                            ..Default::default()
                        },
                        spec: Some(LeaseSpec {
                            holder_identity: Some(holder.clone()),
                            lease_transitions: Some(4),
                            renew_time: Some(MicroTime(
                                Timestamp::from_second(1_700_000_100).expect("time"),
                            )),
                            lease_duration_seconds: Some(15),
                            ..Default::default()
                        }),
                    };
                    send.send_response(response(StatusCode::OK, &json!(lease)));
                }
            }
        }
    }

    async fn writes(&mut self, world: &World, writes: Vec<Write>) {
        let revision = world.revision();
        for w in writes {
            match w {
                Write::StartConflict(node) => {
                    let (body, send) = self.next_cpn_apply(node).await;
                    assert_eq!(body["spec"]["revision"], json!(revision));
                    assert!(body["metadata"]["resourceVersion"].is_string());
                    send.send_response(response(
                        StatusCode::CONFLICT,
                        &mock::status(409, "Conflict", "the object has been modified"),
                    ));
                }
                Write::CreateEmpty(node) | Write::Start(node) => {
                    let starting = matches!(w, Write::Start(_));
                    let (body, send) = self.next_cpn_apply(node).await;
                    assert_json_subset(
                        &body,
                        &json!({
                            "apiVersion": "kubeplane.io/v1alpha1",
                            "kind": "ControlPlaneNode",
                            "metadata": {
                                "name": node,
                                "labels": {CONFIG_LABEL: "prod"},
                                "ownerReferences": [{
                                    "apiVersion": "kubeplane.io/v1alpha1",
                                    "kind": "ControlPlaneConfig",
                                    "name": "prod",
                                    "uid": world.cpc.uid().expect("uid"),
                                    "controller": true,
                                }],
                            },
                            "spec": {
                                "configName": "prod",
                                "revision": if starting { revision.as_str() } else { "" },
                            },
                        }),
                        "cpn",
                    );
                    assert!(
                        body.get("status").is_none(),
                        "the operator never writes CPN status"
                    );
                    let read_rv = world
                        .cpns
                        .iter()
                        .find(|c| c.name_any() == node)
                        .and_then(|c| c.metadata.resource_version.clone());
                    assert_eq!(
                        body["metadata"]
                            .get("resourceVersion")
                            .and_then(Value::as_str),
                        if starting { read_rv.as_deref() } else { None },
                        "a revision is written only onto the ControlPlaneNode as read"
                    );
                    let manifests = body["spec"]["manifests"].as_array().expect("manifests");
                    if starting {
                        assert_eq!(
                            manifests.len(),
                            3,
                            "kube-apiserver, controller-manager, scheduler"
                        );
                        let apiserver = manifests[0]["content"].as_str().expect("content");
                        let ip = world
                            .cpns
                            .iter()
                            .find(|c| c.name_any() == node)
                            .and_then(|c| {
                                c.status
                                    .as_ref()?
                                    .node_facts
                                    .as_ref()?
                                    .advertise_address
                                    .clone()
                            })
                            .expect("the started node has facts");
                        assert!(
                            apiserver.contains(&format!("--advertise-address={ip}")),
                            "rendered from the node's own facts"
                        );
                    } else {
                        assert!(manifests.is_empty(), "no manifests before facts");
                    }
                    send.send_response(response(StatusCode::OK, &body));
                }
                Write::StartChecked(node, check) => {
                    let (body, send) = self.next_cpn_apply(node).await;
                    assert_json_subset(
                        &body,
                        &json!({
                            "kind": "ControlPlaneNode",
                            "metadata": {"name": node, "labels": {CONFIG_LABEL: "prod"}},
                            "spec": {"configName": "prod"},
                        }),
                        "cpn",
                    );
                    check(&body);
                    send.send_response(response(StatusCode::OK, &body));
                }
                Write::MarkUnselected(node, unselected) => {
                    let uri = format!(
                        "/apis/kubeplane.io/v1alpha1/controlplanenodes/{node}?&fieldManager=kubeplane-operator"
                    );
                    let (body, send) = self.next(Method::PATCH, &uri).await;
                    let value = if unselected {
                        json!("true")
                    } else {
                        Value::Null
                    };
                    assert_eq!(
                        body,
                        json!({"metadata": {"labels": {"kubeplane.io/unselected": value}}}),
                        "only the label is patched: spec and owner stay"
                    );
                    let mut cpn = world
                        .cpns
                        .iter()
                        .find(|c| c.name_any() == node)
                        .expect("labelled CPN exists")
                        .clone();
                    cpn.labels_mut()
                        .insert("kubeplane.io/unselected".into(), "true".into());
                    send.send_response(response(StatusCode::OK, &json!(cpn)));
                }
                Write::StatusConflict => {
                    let (body, send) = self.next_status_apply().await;
                    assert_eq!(
                        body["metadata"]["resourceVersion"],
                        json!(world.cpc.metadata.resource_version),
                        "the claim carries the resourceVersion read"
                    );
                    send.send_response(response(
                        StatusCode::CONFLICT,
                        &mock::status(
                            409,
                            "Conflict",
                            "Operation cannot be fulfilled on controlplaneconfigs.kubeplane.io \"prod\": the object has been modified; please apply your changes to the latest version and try again",
                        ),
                    ));
                }
                Write::Status(check) => {
                    let (body, send) = self.next_status_apply().await;
                    assert_json_subset(
                        &body,
                        &json!({"apiVersion": "kubeplane.io/v1alpha1", "kind": "ControlPlaneConfig"}),
                        "status patch",
                    );
                    assert!(body.get("spec").is_none(), "a status patch carries no spec");
                    assert_eq!(
                        body["metadata"]["resourceVersion"],
                        json!(world.cpc.metadata.resource_version),
                        "every status write carries the resourceVersion read (precondition)"
                    );
                    assert_eq!(
                        body["status"]["observedGeneration"],
                        json!(world.cpc.metadata.generation)
                    );
                    check(&body["status"]);
                    let mut cpc = world.cpc.clone();
                    cpc.status = serde_json::from_value(body["status"].clone()).expect("status");
                    send.send_response(response(StatusCode::OK, &json!(cpc)));
                }
                Write::Event(reason) => {
                    let (body, send) = self
                        .next(
                            Method::POST,
                            "/apis/events.k8s.io/v1/namespaces/default/events?",
                        )
                        .await;
                    assert_json_subset(
                        &body,
                        &json!({
                            "reason": reason,
                            "reportingController": "kubeplane-operator",
                            "regarding": {"kind": "ControlPlaneConfig", "name": "prod"},
                        }),
                        "event",
                    );
                    send.send_response(response(StatusCode::OK, &body));
                }
            }
        }
    }
}

/// Waits for the verifier; a scenario that hangs fails the test instead of the suite.
pub async fn finish(verifier: tokio::task::JoinHandle<()>) {
    tokio::time::timeout(Duration::from_secs(5), verifier)
        .await
        .expect("scenario finished in time")
        .expect("scenario assertions held");
}

/// The config object as the Controller hands it to `reconcile`.
pub fn arc(world: &World) -> Arc<ControlPlaneConfig> {
    Arc::new(world.cpc.clone())
}
