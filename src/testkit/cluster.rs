//! The agent's side of the test kit's API server: one node's view of an [`apiserver::Fake`]
//! for the agent's unit tests, which reach it through [`Fake::client`] in-process (virtual
//! time). It speaks the agent's words — the node's mirror pods in `kube-system` as
//! [`FakePod`]s, its `ControlPlaneNode`, Secrets, an API outage — and reads back what the
//! tests assert on: every request (method, path with query, JSON body, status code, virtual
//! time), the `ControlPlaneNode/status` writes the API accepted, and Events. Storing, list and
//! watch, patches and the outage are the [`apiserver::Fake`]'s. The fake kubelet that moves the
//! mirror pods is `agent::fixtures::Kubelet`.
//!
//! [`apiserver::Fake`]: super::apiserver::Fake

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use serde_json::{Value, json};

use super::apiserver::Fake;
pub use super::apiserver::Recorded;
use super::mock;
use crate::render::defaults::NAMESPACE;

const CPN: &str = "controlplanenodes";

/// The `metadata.uid` of the node's `ControlPlaneNode`.
const CPN_UID: &str = "cpn-uid";

/// A mirror pod as the fake kubelet shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FakePod {
    /// `kubernetes.io/config.hash`.
    pub hash: String,
    /// Ready condition.
    pub ready: bool,
    /// Container restarts.
    pub restart_count: i32,
    /// Last termination: reason and exit code.
    pub last_terminated: Option<(String, i32)>,
}

impl FakePod {
    /// The mirror pod `kube-system/<name>` as the API shows it.
    fn to_json(&self, name: &str) -> Value {
        let mut cs = json!({"name": "c", "image": "i", "imageID": "", "ready": self.ready,
                            "restartCount": self.restart_count, "state": {"running": {}}});
        if let Some((reason, code)) = &self.last_terminated {
            cs["lastState"] = json!({"terminated": {"exitCode": code, "reason": reason}});
            cs["state"] = json!({"waiting": {"reason": "CrashLoopBackOff"}});
        }
        json!({
            "metadata": {"name": name, "annotations": {"kubernetes.io/config.hash": self.hash}},
            "status": {"conditions": [{"type": "Ready", "status": if self.ready {"True"} else {"False"}}],
                       "containerStatuses": [cs]}
        })
    }

    /// Reads back what [`FakePod::to_json`] wrote.
    fn from_json(pod: &Value) -> Self {
        let cs = &pod["status"]["containerStatuses"][0];
        let terminated = &cs["lastState"]["terminated"];
        FakePod {
            hash: pod["metadata"]["annotations"]["kubernetes.io/config.hash"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            ready: pod["status"]["conditions"][0]["status"] == "True",
            restart_count: cs["restartCount"].as_i64().unwrap_or_default() as i32,
            last_terminated: terminated.is_object().then(|| {
                (
                    terminated["reason"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    terminated["exitCode"].as_i64().unwrap_or_default() as i32,
                )
            }),
        }
    }
}

/// One node's view of the fake API server.
pub struct Cluster {
    api: Arc<Fake>,
}

impl Cluster {
    /// An empty cluster.
    pub fn new() -> Arc<Cluster> {
        Arc::new(Cluster {
            api: Fake::new(Duration::ZERO),
        })
    }

    /// A kube client talking to this cluster.
    pub fn client(&self) -> Client {
        self.api.client()
    }

    /// Sets (or removes) a mirror pod in kube-system.
    pub fn set_pod(&self, name: &str, pod: Option<FakePod>) {
        match pod {
            Some(p) => {
                self.api.put("pods", NAMESPACE, p.to_json(name));
            }
            None => {
                self.api.delete("pods", NAMESPACE, name);
            }
        }
    }

    /// A mirror pod as shown now.
    pub fn pod(&self, name: &str) -> Option<FakePod> {
        self.api
            .get("pods", NAMESPACE, name)
            .map(|p| FakePod::from_json(&p))
    }

    /// Sets the spec and generation of the node's `ControlPlaneNode` (uid `cpn-uid`), as the
    /// operator writes it: a status the agent wrote stays.
    pub fn set_cpn(&self, name: &str, generation: i64, spec: Value) {
        let mut cpn = json!({
            "metadata": {"name": name, "uid": CPN_UID, "generation": generation},
            "spec": spec
        });
        if let Some(status) = self.api.get(CPN, "", name).map(|o| o["status"].clone())
            && !status.is_null()
        {
            cpn["status"] = status;
        }
        self.api.put_as_given(CPN, "", cpn);
    }

    /// Deletes the node's `ControlPlaneNode` (a `DELETED` watch event).
    pub fn delete_cpn(&self) {
        for cpn in self.api.objects(CPN, "") {
            let name = cpn["metadata"]["name"].as_str().unwrap_or_default();
            self.api.delete(CPN, "", name);
        }
    }

    /// Starts or ends an API outage.
    pub fn set_api_down(&self, down: bool) {
        if down {
            self.api.go_down();
        } else {
            self.api.come_back();
        }
    }

    /// Adds a key to a Secret (created if missing).
    pub fn set_secret(&self, ns: &str, name: &str, key: &str, value: &[u8]) {
        let mut secret = self
            .api
            .get("secrets", ns, name)
            .unwrap_or_else(|| mock::secret::<&str>(ns, name, &BTreeMap::new()));
        secret["data"][key] = json!(mock::base64(value));
        self.api.put("secrets", ns, secret);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.api.recorded()
    }

    /// Status patches the API accepted, in order.
    pub fn accepted_status_patches(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "PATCH" && r.path.contains("/status") && r.status == 200)
            .collect()
    }

    /// Events the API accepted.
    pub fn events(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path.contains("/events") && r.status == 201)
            .filter_map(|r| r.body)
            .collect()
    }
}
