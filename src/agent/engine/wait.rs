//! Waiting for kubelet: one component, a group at once, and a newer node spec cutting a
//! forward wait short.

use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Pod;
use tracing::Instrument;

use super::{Engine, LOCAL_HOST};
use crate::agent::health::Endpoint;
use crate::agent::kubelet_wait::{self, Expect, Verdict, WaitSpec};
use crate::agent::plan::Step;
use crate::api::Component;

impl Engine {
    /// Lets a newer node spec cut a forward wait short: `rx` carries the digest
    /// ([`spec_digest`]) of the newest spec the agent has seen.
    pub fn watch_newer(&mut self, rx: tokio::sync::watch::Receiver<Option<String>>) {
        self.newer = Some(rx);
    }

    /// Resolves once a node spec other than `digest` has arrived (never without a watch).
    pub(super) fn superseded(
        &self,
        digest: String,
    ) -> impl std::future::Future<Output = ()> + use<> {
        let rx = self.newer.clone();
        async move {
            let Some(mut rx) = rx else {
                return std::future::pending().await;
            };
            loop {
                if rx
                    .borrow_and_update()
                    .as_deref()
                    .is_some_and(|d| d != digest)
                {
                    return;
                }
                if rx.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        }
    }

    pub(super) async fn wait_component(
        &self,
        c: Component,
        expect: Expect,
        pod: &Pod,
        timeout: Duration,
        min_ready: Duration,
        written_at: SystemTime,
    ) -> Verdict {
        let endpoint = Endpoint::from_pod(pod, LOCAL_HOST);
        let ws = WaitSpec {
            component: c,
            pod_name: c.mirror_pod_name(&self.node),
            expect,
            endpoint,
            timeout,
            min_ready,
            use_api: self.pods.is_some(),
            written_at,
        };
        let board = self.board.clone();
        let span = tracing::info_span!("wait", component = %c);
        kubelet_wait::wait(
            ws,
            self.pods.as_deref(),
            self.runtime.as_deref(),
            &*self.health,
            |st| {
                let st = st.clone();
                board.update(
                    |s| match s.components.iter_mut().find(|x| x.name == st.name) {
                        Some(x) => *x = st,
                        None => s.components.push(st),
                    },
                );
            },
        )
        .instrument(span)
        .await
    }

    /// Waits for the components of one group at once. Returns their verdicts in the order
    /// they came, ending with the first `TimedOut` (the others are no longer waited for: the
    /// whole revision is rolled back anyway).
    pub(super) async fn wait_group<'s>(
        &self,
        waits: &[(&'s Step, SystemTime, Duration)],
        min_ready: Duration,
    ) -> Vec<(&'s Step, Verdict)> {
        use futures::StreamExt as _;
        let mut pending: futures::stream::FuturesUnordered<_> = waits
            .iter()
            .map(|(step, written_at, timeout)| async move {
                let v = self
                    .wait_component(
                        step.component,
                        step.expect.clone(),
                        &step.pod,
                        *timeout,
                        min_ready,
                        *written_at,
                    )
                    .await;
                (*step, v)
            })
            .collect();
        let mut out = Vec::new();
        while let Some((step, v)) = pending.next().await {
            let failed = matches!(v, Verdict::TimedOut(_));
            out.push((step, v));
            if failed {
                break;
            }
        }
        out
    }
}

/// Time a resumed wait gets beyond `minReadySeconds` when little of its timeout is left.
pub(super) const RESUME_GRACE: Duration = Duration::from_secs(30);
