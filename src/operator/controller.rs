//! The kube-runtime Controller: what triggers a reconcile of a `ControlPlaneConfig`.
//!
//! - the config itself, filtered by the generation predicate (its own status writes, and the
//!   Lease times they carry, do not trigger it again);
//! - its `ControlPlaneNode`s, every change including status: agents advance a rollout by
//!   reporting phases;
//! - Nodes (metadata only, and only when labels change, a Node appears or goes), mapped to
//!   every config whose selector matches and to the config owning that node's
//!   `ControlPlaneNode`;
//! - a periodic resync (see [`Context::resync`]) refreshes the Lease holders and notices a
//!   changed encryption Secret: Secrets are not watched, because watching them would need
//!   `list`/`watch` on every Secret of the cluster.
//!
//! Watches recover fast ([`recovering`]): an expired resource version (410 Gone, `too old
//! resource version`, as after an API server restart) re-lists at once, and other errors (the
//! API unreachable) are retried after 250 ms doubling to at most 3 s. No error reaches the
//! Controller: it would pause every trigger stream with kube-runtime's default backoff (0.8 s
//! doubling to 30 s), which kept a changed config from the nodes for up to ~100 s after an API
//! server restart. (The client's own retry of 503s is off for the same reason, see
//! `operator::run`.)

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt, future};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, predicates, watcher};
use kube::{Client, ResourceExt};
use tracing::{debug, info, warn};

use super::reconcile::{Context, error_policy, reconcile};
use super::selection::{self, CONFIG_LABEL};
use crate::api::{ControlPlaneConfig, ControlPlaneNode};
use crate::telemetry::Health;

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The CRDs are not installed.
    #[error(
        "the ControlPlaneConfig CustomResourceDefinition is not installed: run `kubeplane crd | kubectl apply -f -` first"
    )]
    CrdMissing,
}

/// First delay before a failed watch is retried.
pub const WATCH_BACKOFF_INITIAL: Duration = Duration::from_millis(250);

/// Longest delay between retries of a failed watch.
pub const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(3);

/// Delay before retry `n` (1-based) of a failed watch: 250 ms doubling, at most 3 s.
pub fn watch_backoff(n: u32) -> Duration {
    WATCH_BACKOFF_INITIAL
        .saturating_mul(1u32 << n.saturating_sub(1).min(8))
        .min(WATCH_BACKOFF_MAX)
}

/// Whether a watch error means "your resource version is gone" (410 Gone / `Expired`): the
/// watcher has already dropped its state and re-lists on the next poll, so there is nothing to
/// wait for.
pub fn is_expired(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::WatchError(s) => s.code == 410,
        watcher::Error::InitialListFailed(kube::Error::Api(s)) => s.code == 410,
        _ => false,
    }
}

/// A watch stream that retries quickly: after an expired resource version at once (the
/// watcher re-lists), after any other error with [`watch_backoff`]; any event resets the
/// backoff. Errors are logged here (`what` names the watch) and not passed on: the Controller
/// pauses *all* its trigger streams with kube-runtime's default backoff (0.8 s doubling to
/// 30 s) on any error item, which is what kept changes from reaching the nodes for up to
/// ~100 s after an API server restart.
pub fn recovering<S, T>(
    events: S,
    what: &'static str,
) -> impl Stream<Item = Result<T, watcher::Error>> + Send
where
    S: Stream<Item = Result<T, watcher::Error>> + Send + 'static,
    T: Send + 'static,
{
    let state = (Box::pin(events), 0u32);
    futures::stream::unfold(state, move |(mut events, mut failures)| async move {
        loop {
            match events.next().await? {
                Ok(item) => {
                    if failures > 0 {
                        info!(watch = what, failures, "watch recovered");
                    }
                    return Some((Ok(item), (events, 0)));
                }
                Err(e) if is_expired(&e) => {
                    info!(watch = what, error = %e, "resource version expired (API server restarted?); re-listing now");
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let d = watch_backoff(failures);
                    warn!(watch = what, cause = %error_chain(&e), retry_in = ?d, "watch failed");
                    tokio::time::sleep(d).await;
                }
            }
        }
    })
}

/// An error with its sources, `: `-separated (`client error (Connect): tcp connect error:
/// Connection refused (os error 111)`), so a log names the cause and not only the kind.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Passes on a Node only when it appears, goes, or its labels change: status heartbeats do not
/// reconcile anything.
pub fn node_label_changes<S>(
    events: S,
) -> impl Stream<Item = Result<PartialObjectMeta<Node>, watcher::Error>> + Send
where
    S: Stream<Item = Result<watcher::Event<PartialObjectMeta<Node>>, watcher::Error>> + Send,
{
    let mut seen: HashMap<String, BTreeMap<String, String>> = HashMap::new();
    events.filter_map(move |ev| {
        let out = match ev {
            Err(e) => Some(Err(e)),
            Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => {
                let name = n.name_any();
                if seen.get(&name) == Some(n.labels()) {
                    None
                } else {
                    seen.insert(name, n.labels().clone());
                    Some(Ok(n))
                }
            }
            Ok(watcher::Event::Delete(n)) => {
                seen.remove(&n.name_any());
                Some(Ok(n))
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
        };
        future::ready(out)
    })
}

/// The configs a Node event concerns, from the watch caches.
fn configs_of_node(
    configs: &Store<ControlPlaneConfig>,
    cpns: &Store<ControlPlaneNode>,
    node: &PartialObjectMeta<Node>,
) -> Vec<ObjectRef<ControlPlaneConfig>> {
    let owners: BTreeMap<String, String> = cpns
        .state()
        .iter()
        .filter_map(|c| Some((c.name_any(), c.labels().get(CONFIG_LABEL)?.clone())))
        .collect();
    let all = configs.state();
    selection::configs_for_node(
        all.iter().map(AsRef::as_ref),
        &owners,
        &node.name_any(),
        node.labels(),
    )
    .into_iter()
    .map(|name| ObjectRef::new(&name))
    .collect()
}

/// Runs the controller until `shutdown` resolves. Marks `health` ready once the config cache
/// has its first full list. While the API server cannot be reached (`api` is its address, for
/// the logs) the first list is retried with backoff and the process stays not ready; only a
/// missing CRD ends it.
pub async fn run(
    client: Client,
    api: &str,
    ctx: Arc<Context>,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), ControllerError> {
    let configs: Api<ControlPlaneConfig> = Api::all(client.clone());
    let mut failures = 0u32;
    loop {
        match configs.list(&ListParams::default().limit(1)).await {
            Ok(_) => break,
            Err(kube::Error::Api(s)) if s.code == 404 => return Err(ControllerError::CrdMissing),
            Err(e) => {
                failures = failures.saturating_add(1);
                let delay = super::reconcile::backoff(failures).min(Duration::from_secs(10));
                let cause = error_chain(&e);
                warn!(api = %api, %cause, retry_in = ?delay, "cannot list ControlPlaneConfigs");
                health.set_not_ready(format!(
                    "leader: cannot list ControlPlaneConfigs at {api}: {cause}; retrying"
                ));
                tokio::time::sleep(delay).await;
            }
        }
    }

    let (cfg_reader, cfg_writer) = reflector::store();
    let config_events = recovering(
        watcher(configs, watcher::Config::default()),
        "ControlPlaneConfigs",
    )
    .reflect(cfg_writer)
    .applied_objects()
    .predicate_filter(predicates::generation, Default::default());

    let (cpn_reader, cpn_writer) = reflector::store();
    let cpn_events = recovering(
        watcher(
            Api::<ControlPlaneNode>::all(client.clone()),
            watcher::Config::default().labels(CONFIG_LABEL),
        ),
        "ControlPlaneNodes",
    )
    .reflect(cpn_writer)
    .touched_objects();

    let node_events = node_label_changes(recovering(
        watcher(
            Api::<PartialObjectMeta<Node>>::all(client.clone()),
            watcher::Config::default(),
        ),
        "Nodes",
    ));

    let ready = {
        let reader = cfg_reader.clone();
        let health = health.clone();
        async move {
            if reader.wait_until_ready().await.is_ok() {
                health.set_ready("leader: reconciling");
                info!("watch caches ready; reconciling");
            }
        }
    };
    let mapper_configs = cfg_reader.clone();
    let mapper_cpns = cpn_reader.clone();
    let controller = Controller::for_stream(config_events, cfg_reader)
        .owns_stream(cpn_events)
        .watches_stream(node_events, move |node| {
            configs_of_node(&mapper_configs, &mapper_cpns, &node)
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each({
            let mut deleted = Deleted::default();
            move |res| {
                match res {
                    Ok((obj, action)) => {
                        deleted.reconciled(&obj.name);
                        debug!(config = %obj.name, ?action, "reconciled");
                    }
                    Err(kube::runtime::controller::Error::ReconcilerFailed(..)) => {} // logged by error_policy
                    // A config deleted while triggers for it were queued (its ControlPlaneNodes
                    // going away with it trigger it again): nothing to do, said once.
                    Err(kube::runtime::controller::Error::ObjectNotFound(obj)) => {
                        if let Some(line) = deleted.gone(&obj.name) {
                            info!(config = %obj.name, "{line}");
                        }
                    }
                    Err(e) => warn!(error = %e, "controller"),
                }
                future::ready(())
            }
        });
    futures::join!(controller, ready);
    info!("controller stopped");
    Ok(())
}

/// The configs reported as deleted, so a deletion is one log line however many triggers
/// for it were queued.
#[derive(Debug, Default)]
pub struct Deleted {
    names: std::collections::BTreeSet<String>,
}

impl Deleted {
    /// A trigger found `name` gone from the cache: the line to log, the first time.
    pub fn gone(&mut self, name: &str) -> Option<String> {
        self.names.insert(name.to_string()).then(|| {
            format!(
                "ControlPlaneConfig {name} was deleted: its ControlPlaneNodes go with it (garbage collection) and every node keeps the manifests it runs; the agents log that their nodes are no longer managed"
            )
        })
    }

    /// `name` exists (again).
    pub fn reconciled(&mut self, name: &str) {
        self.names.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_config_is_one_info_line() {
        let mut d = Deleted::default();
        let first = d.gone("prod").expect("a line the first time");
        assert!(
            first.contains("ControlPlaneConfig prod was deleted"),
            "{first}"
        );
        assert!(first.contains("keeps the manifests"), "{first}");
        // Its three ControlPlaneNodes going away trigger it three more times: quiet.
        for _ in 0..3 {
            assert_eq!(d.gone("prod"), None);
        }
        assert!(d.gone("other").is_some(), "per config");
        // Created again and deleted again: said again.
        d.reconciled("prod");
        assert!(d.gone("prod").is_some());
    }
    use futures::stream;

    fn node(name: &str, labels: &[(&str, &str)]) -> PartialObjectMeta<Node> {
        let mut n = PartialObjectMeta::<Node>::default();
        n.metadata.name = Some(name.into());
        n.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        n
    }

    #[test]
    fn watch_backoff_is_short_and_capped() {
        let ms: Vec<u128> = (1..=8).map(|n| watch_backoff(n).as_millis()).collect();
        assert_eq!(ms, vec![250, 500, 1000, 2000, 3000, 3000, 3000, 3000]);
        assert_eq!(watch_backoff(u32::MAX), WATCH_BACKOFF_MAX);
    }

    fn gone() -> watcher::Error {
        watcher::Error::WatchError(Box::new(
            kube::core::Status::failure("too old resource version: 1000 (2000)", "Expired")
                .with_code(410),
        ))
    }

    fn refused() -> watcher::Error {
        watcher::Error::InitialListFailed(kube::Error::Api(Box::new(
            kube::core::Status::failure(
                "the server is currently unable to handle the request",
                "ServiceUnavailable",
            )
            .with_code(503),
        )))
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_watch_relists_at_once_and_failures_back_off_briefly() {
        use tokio::time::Instant;
        let items: Vec<Result<u32, watcher::Error>> = vec![
            Err(gone()),
            Ok(1),
            Err(refused()),
            Err(refused()),
            Err(refused()),
            Err(refused()),
            Err(refused()),
            Err(refused()),
            Ok(2),
            Err(refused()),
            Ok(3),
        ];
        let start = Instant::now();
        let mut s = Box::pin(recovering(stream::iter(items), "test"));
        let mut at = Vec::new();
        while let Some(item) = s.next().await {
            at.push((
                item.expect("errors are not passed on"),
                start.elapsed().as_millis(),
            ));
        }
        // Re-listed without waiting after 410 Expired; then 250 ms doubling, capped at 3 s
        // (not kube-runtime's 30 s); reset by the event.
        assert_eq!(at, vec![(1, 0), (2, 9750), (3, 10000)]);
    }

    #[test]
    fn error_chains_name_the_cause() {
        let e = std::io::Error::other("tcp connect error: Connection refused (os error 111)");
        let wrapped = watcher::Error::WatchFailed(kube::Error::Service(Box::new(e)));
        let text = error_chain(&wrapped);
        assert!(text.contains("Connection refused"), "{text}");
    }

    #[tokio::test]
    async fn only_label_changes_and_deletions_of_nodes_pass() {
        use watcher::Event::*;
        let cp = [("node-role.kubernetes.io/control-plane", "")];
        let events = vec![
            Ok(Init),
            Ok(InitApply(node("cp-1", &cp))),
            Ok(InitApply(node("w-1", &[]))),
            Ok(InitDone),
            Ok(Apply(node("cp-1", &cp))), // status heartbeat: same labels
            Ok(Apply(node("w-1", &cp))),  // promoted to control plane
            Ok(Apply(node("w-1", &cp))),
            Ok(Delete(node("cp-1", &cp))),
            Ok(Apply(node("cp-1", &cp))), // re-created
        ];
        let passed: Vec<String> = node_label_changes(stream::iter(events))
            .map(|r| r.expect("no error").name_any())
            .collect()
            .await;
        assert_eq!(passed, vec!["cp-1", "w-1", "w-1", "cp-1", "cp-1"]);
    }

    #[tokio::test]
    async fn node_events_map_to_selecting_and_owning_configs() {
        use kube::runtime::reflector::store;
        use kube::runtime::watcher::Event;
        let (cfgs, mut cfg_w) = store::<ControlPlaneConfig>();
        let (cpns, mut cpn_w) = store::<ControlPlaneNode>();
        let mut prod = ControlPlaneConfig::new("prod", Default::default());
        prod.spec.node_selector = None;
        let mut blue = ControlPlaneConfig::new("blue", Default::default());
        blue.spec.node_selector = Some(BTreeMap::from([("pool".into(), "blue".into())]));
        cfg_w.apply_watcher_event(&Event::Apply(prod));
        cfg_w.apply_watcher_event(&Event::Apply(blue));
        let mut owned = ControlPlaneNode::new("cp-7", Default::default());
        owned.metadata.labels = Some(BTreeMap::from([(CONFIG_LABEL.into(), "blue".into())]));
        cpn_w.apply_watcher_event(&Event::Apply(owned));

        let names = |n: &PartialObjectMeta<Node>| -> Vec<String> {
            configs_of_node(&cfgs, &cpns, n)
                .into_iter()
                .map(|r| r.name)
                .collect()
        };
        assert_eq!(
            names(&node(
                "cp-1",
                &[("node-role.kubernetes.io/control-plane", "")]
            )),
            vec!["prod"]
        );
        assert_eq!(names(&node("cp-7", &[])), vec!["blue"]);
        assert!(names(&node("w-1", &[])).is_empty());
    }
}
