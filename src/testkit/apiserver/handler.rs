//! The one request handler: every request, over HTTP or in-process, is recorded and answered
//! here — 503 during an outage, else get/list/watch, create, patch (merge, apply, status,
//! Lease ownership, the `resourceVersion` precondition) and delete against the store.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::request::{Target, merge, metadata_only, parse_path};
use super::{CpnWrite, Fake, Recorded, now};
use crate::testkit::mock;

fn status_error(code: u16, reason: &str, message: &str) -> Response {
    json_response(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &mock::status(code, reason, message),
    )
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn not_found(t: &Target, name: &str) -> Response {
    status_error(404, "NotFound", &format!("{} {name} not found", t.resource))
}

impl Fake {
    /// Answers a request and records it (method, path and query, JSON body, status, when).
    pub(super) async fn handle(
        self: Arc<Self>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let path = match uri.query().filter(|q| !q.is_empty()) {
            Some(q) => format!("{}?{q}", uri.path()),
            None => uri.path().to_string(),
        };
        let body: Result<Value, String> = if body.is_empty() {
            Ok(Value::Null)
        } else {
            serde_json::from_slice(&body).map_err(|e| e.to_string())
        };
        let recorded = body.as_ref().ok().filter(|b| !b.is_null()).cloned();
        let response = self.clone().answer(&method, &uri, &headers, body);
        let at = tokio::time::Instant::now() - self.start;
        self.lock().requests.push(Recorded {
            method: method.to_string(),
            path,
            body: recorded,
            status: response.status().as_u16(),
            at,
        });
        response
    }

    fn answer(
        self: Arc<Self>,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Result<Value, String>,
    ) -> Response {
        if self.lock().down {
            return status_error(
                503,
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
            );
        }
        let Some(t) = parse_path(uri.path()) else {
            return status_error(404, "NotFound", &format!("no route {}", uri.path()));
        };
        let q = mock::query(uri.query().unwrap_or(""));
        let meta = headers
            .get("accept")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("as=PartialObjectMetadata"));
        let body = match body {
            Ok(v) => v,
            Err(e) => return status_error(400, "BadRequest", &format!("body is not JSON: {e}")),
        };
        match (method, &t.name) {
            (&Method::GET, None) => {
                if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
                    self.watch(t, q, meta)
                } else {
                    json_response(StatusCode::OK, &self.list(&t, &q, meta))
                }
            }
            (&Method::GET, Some(name)) => match self.get(&t.resource, &t.namespace, name) {
                Some(o) if meta => json_response(StatusCode::OK, &metadata_only(&o)),
                Some(o) => json_response(StatusCode::OK, &o),
                None => not_found(&t, name),
            },
            (&Method::POST, None) => {
                let name = body["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if self.get(&t.resource, &t.namespace, &name).is_some() {
                    return status_error(
                        409,
                        "AlreadyExists",
                        &format!("{} {name} already exists", t.resource),
                    );
                }
                let stored = self.put(&t.resource, &t.namespace, body);
                json_response(StatusCode::CREATED, &stored)
            }
            (&Method::PATCH, Some(name)) => {
                let ctype = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let apply = ctype.starts_with("application/apply-patch");
                let manager = q.get("fieldManager").cloned().unwrap_or_default();
                self.patch(&t, name, body, apply, &manager)
            }
            (&Method::DELETE, Some(name)) => match self.delete(&t.resource, &t.namespace, name) {
                Some(o) => json_response(StatusCode::OK, &o),
                None => not_found(&t, name),
            },
            (m, _) => status_error(405, "MethodNotAllowed", &format!("{m} {}", uri.path())),
        }
    }

    /// A merge or apply patch of an object or its `status`. An apply creates a missing object;
    /// a status write needs the object, as on a real API server.
    fn patch(
        self: Arc<Self>,
        t: &Target,
        name: &str,
        body: Value,
        apply: bool,
        manager: &str,
    ) -> Response {
        let existing = self.get(&t.resource, &t.namespace, name);
        if existing.is_none() && (!apply || t.status) {
            return not_found(t, name);
        }
        // A resourceVersion in the body is a precondition, as on a real API server.
        if let Some(rv) = body["metadata"]["resourceVersion"].as_str()
            && existing
                .as_ref()
                .is_none_or(|o| o["metadata"]["resourceVersion"] != rv)
        {
            return status_error(
                409,
                "Conflict",
                &format!(
                    "Operation cannot be fulfilled on {} {name:?}: the object has been modified; please apply your changes to the latest version and try again",
                    t.resource
                ),
            );
        }
        let mut obj = existing.unwrap_or_else(|| json!({"metadata": {"name": name}}));
        if t.resource == "leases" {
            if let Err(conflict) = self.lease_ownership(t, name, &obj, &body, apply, manager) {
                return status_error(409, "Conflict", &conflict);
            }
            merge(&mut obj, &body);
        } else if t.status {
            // Server-side apply of status by one manager: its status replaces the old one.
            obj["status"] = body["status"].clone();
            if t.resource == "controlplanenodes"
                && let Some(phase) = body["status"]["phase"].as_str()
            {
                let at = (now(), name.to_string(), phase.to_string());
                self.lock().phases.push(at);
            }
        } else if apply {
            // One manager owns metadata labels/ownerReferences and spec: replace them.
            if let Some(m) = body.get("metadata") {
                merge(&mut obj["metadata"], m);
            }
            if let Some(s) = body.get("spec") {
                obj["spec"] = s.clone();
            }
        } else {
            merge(&mut obj, &body);
        }
        let stored = self.put(&t.resource, &t.namespace, obj);
        if t.resource == "controlplanenodes" && !t.status {
            let revision = stored["spec"]["revision"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if !revision.is_empty() && stored["status"]["targetRevision"] != revision {
                self.lock().cpn_writes.push(CpnWrite {
                    at: now(),
                    node: name.to_string(),
                    revision: revision.clone(),
                });
                self.agent(name.to_string(), revision);
            }
        }
        json_response(StatusCode::OK, &stored)
    }

    /// Server-side apply ownership of a Lease's holder, as far as leader election needs it: an
    /// apply that changes a holder another manager set is a conflict (409); any write that sets
    /// or clears the holder takes or drops ownership.
    fn lease_ownership(
        &self,
        t: &Target,
        name: &str,
        old: &Value,
        body: &Value,
        apply: bool,
        manager: &str,
    ) -> Result<(), String> {
        let key = (t.resource.clone(), t.namespace.clone(), name.to_string());
        let Some(new_holder) = body["spec"].get("holderIdentity") else {
            return Ok(());
        };
        let mut inner = self.lock();
        let owner = inner.holder_managers.get(&key).cloned();
        let old_holder = &old["spec"]["holderIdentity"];
        if apply
            && !old_holder.is_null()
            && old_holder != new_holder
            && owner.as_deref().is_some_and(|o| o != manager)
        {
            return Err(format!(
                "Apply failed with 1 conflict: conflict with {owner:?}: .spec.holderIdentity"
            ));
        }
        if new_holder.is_null() {
            inner.holder_managers.remove(&key);
        } else {
            inner.holder_managers.insert(key, manager.to_string());
        }
        Ok(())
    }

    /// The simulated agent: takes a new revision up, then reports it healthy.
    fn agent(self: &Arc<Self>, node: String, revision: String) {
        let fake = self.clone();
        tokio::spawn(async move {
            fake.set_cpn_status(&node, &revision, "Pending");
            tokio::time::sleep(fake.agent_delay).await;
            fake.set_cpn_status(&node, &revision, "Healthy");
        });
    }

    fn set_cpn_status(&self, node: &str, revision: &str, phase: &str) {
        let Some(mut obj) = self.get("controlplanenodes", "", node) else {
            return;
        };
        if obj["spec"]["revision"] != revision {
            return; // the operator moved on
        }
        let healthy = phase == "Healthy";
        let status = &mut obj["status"];
        status["targetRevision"] = json!(revision);
        status["phase"] = json!(phase);
        status["phaseSince"] = json!("2026-01-01T00:00:00Z");
        if healthy {
            status["appliedRevision"] = json!(revision);
            status["lastKnownGoodRevision"] = json!(revision);
        }
        self.put("controlplanenodes", "", obj);
    }
}
