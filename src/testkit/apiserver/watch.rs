//! Reading the store: a list at the current resource version, and a watch that streams the
//! changes after a resource version (ending when the server restarts, `410 Expired` when
//! resumed from before a restart).

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Fake;
use super::request::{Target, fields_match, kind_of, labels_match, metadata_only};

impl Fake {
    pub(super) fn list(&self, t: &Target, q: &BTreeMap<String, String>, meta: bool) -> Value {
        let inner = self.lock();
        let labels = q.get("labelSelector").cloned().unwrap_or_default();
        let fields = q.get("fieldSelector").cloned().unwrap_or_default();
        let items: Vec<Value> = inner
            .objects
            .iter()
            .filter(|((r, ns, _), _)| {
                *r == t.resource && (t.namespace.is_empty() || *ns == t.namespace)
            })
            .filter(|(_, o)| labels_match(&labels, o) && fields_match(&fields, o))
            .map(|(_, o)| if meta { metadata_only(o) } else { o.clone() })
            .collect();
        let (api_version, kind) = kind_of(&t.resource);
        let (api_version, kind) = if meta {
            (
                "meta.k8s.io/v1".to_string(),
                "PartialObjectMetadataList".to_string(),
            )
        } else {
            (api_version.to_string(), format!("{kind}List"))
        };
        json!({"apiVersion": api_version, "kind": kind,
               "metadata": {"resourceVersion": inner.rv.to_string()}, "items": items})
    }

    pub(super) fn watch(
        self: Arc<Self>,
        t: Target,
        q: BTreeMap<String, String>,
        meta: bool,
    ) -> Response {
        let since: u64 = q
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let (epoch, oldest) = {
            let inner = self.lock();
            (inner.epoch, inner.oldest_watchable)
        };
        if since != 0 && since < oldest {
            // As a real API server: 200, then one ERROR event, then the end of the stream.
            let line = format!(
                "{}\n",
                json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
                    "metadata": {}, "status": "Failure", "reason": "Expired", "code": 410,
                    "message": format!("too old resource version: {since} ({oldest})")}})
            );
            return (StatusCode::OK, [("content-type", "application/json")], line).into_response();
        }
        let labels = q.get("labelSelector").cloned().unwrap_or_default();
        let fields = q.get("fieldSelector").cloned().unwrap_or_default();
        let rx = self.changed.subscribe();
        let state = (
            self,
            t,
            labels,
            fields,
            since,
            VecDeque::<String>::new(),
            rx,
        );
        let stream = futures::stream::unfold(
            state,
            move |(fake, t, labels, fields, mut since, mut queue, mut rx)| async move {
                loop {
                    if let Some(line) = queue.pop_front() {
                        return Some((
                            Ok::<_, Infallible>(Bytes::from(line)),
                            (fake, t, labels, fields, since, queue, rx),
                        ));
                    }
                    {
                        let inner = fake.lock();
                        if inner.epoch != epoch {
                            return None; // the API server restarted: the connection is gone
                        }
                        let start = inner.log.partition_point(|e| e.rv <= since);
                        for e in &inner.log[start..] {
                            since = e.rv;
                            let here = e.resource == t.resource
                                && (t.namespace.is_empty() || e.namespace == t.namespace)
                                && labels_match(&labels, &e.object)
                                && fields_match(&fields, &e.object);
                            if here {
                                let obj = if meta {
                                    metadata_only(&e.object)
                                } else {
                                    e.object.clone()
                                };
                                queue.push_back(format!(
                                    "{}\n",
                                    json!({"type": e.kind, "object": obj})
                                ));
                            }
                        }
                    }
                    if queue.is_empty() && rx.changed().await.is_err() {
                        return None;
                    }
                }
            },
        );
        (
            StatusCode::OK,
            [("content-type", "application/json")],
            Body::from_stream(stream),
        )
            .into_response()
    }
}
