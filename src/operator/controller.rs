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

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;

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
    /// The API server refused the first list.
    #[error("cannot list ControlPlaneConfigs: {0}")]
    List(#[source] kube::Error),
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
/// has its first full list.
pub async fn run(
    client: Client,
    ctx: Arc<Context>,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), ControllerError> {
    let configs: Api<ControlPlaneConfig> = Api::all(client.clone());
    match configs.list(&ListParams::default().limit(1)).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Err(ControllerError::CrdMissing),
        Err(e) => return Err(ControllerError::List(e)),
    }

    let (cfg_reader, cfg_writer) = reflector::store();
    let config_events = watcher(configs, watcher::Config::default())
        .default_backoff()
        .reflect(cfg_writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());

    let (cpn_reader, cpn_writer) = reflector::store();
    let cpn_events = watcher(
        Api::<ControlPlaneNode>::all(client.clone()),
        watcher::Config::default().labels(CONFIG_LABEL),
    )
    .default_backoff()
    .reflect(cpn_writer)
    .touched_objects();

    let node_events = node_label_changes(
        watcher(
            Api::<PartialObjectMeta<Node>>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff(),
    );

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
        .for_each(|res| {
            match res {
                Ok((obj, action)) => debug!(config = %obj.name, ?action, "reconciled"),
                Err(kube::runtime::controller::Error::ReconcilerFailed(..)) => {} // logged by error_policy
                Err(e) => warn!(error = %e, "controller"),
            }
            future::ready(())
        });
    futures::join!(controller, ready);
    info!("controller stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
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
