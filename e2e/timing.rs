//! The timing harness (opt-in):
//!
//! ```sh
//! cargo test --test e2e timing -- --ignored --nocapture
//! ```
//!
//! For one kube-scheduler flag change (`--v=N` to `--v=N+1`), it compares
//! - **by hand**: the manifest kubeplane would write, written atomically into the manifest
//!   directory, until the mirror pod shows its `kubernetes.io/config.hash` and is Ready;
//! - **kubeplane**: `kubectl apply` of the config until the node's `ControlPlaneNode` reports
//!   `Healthy` at the new revision,
//!
//! both from the same running manifest to the same new manifest (byte for byte: checked), with
//! `minReadySeconds: 0` so that kubeplane waits for no more than the hand procedure does. Each
//! run goes: by hand to the new manifest, by hand back to the previous one (not measured),
//! then kubeplane to the new one. The agent runs with `--drift-mode observe` so the hand
//! writes stay on disk. Runs: `KUBEPLANE_E2E_TIMING_RUNS` (default 5).
//!
//! Observations are watches (kube-rs watcher), opened before the clock starts.

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::oneshot;

use crate::harness::{
    DriftMode, Scenario, pod_hash, pod_ready, rendered, rolled_out, set_arg, write_atomically,
};
use kubeplane::api::{Component, ControlPlaneNode, NodePhase, Rollout};
use kubeplane::render::{RenderInput, render};

/// A condition on a watched object.
type Pred<K> = Box<dyn Fn(&K) -> bool + Send>;

/// A running [`marks`] watch.
type Marks = tokio::task::JoinHandle<Vec<Option<Instant>>>;

/// Watches one object and returns the first instant each predicate held, until the last one
/// holds. `ready` fires once the initial list is done (start the clock after it).
async fn marks<K>(
    api: Api<K>,
    name: String,
    preds: Vec<Pred<K>>,
    ready: oneshot::Sender<()>,
) -> Vec<Option<Instant>>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    let mut out = vec![None; preds.len()];
    let mut ready = Some(ready);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    while let Some(ev) = stream.next().await {
        let now = Instant::now();
        let obj = match ev {
            Ok(Event::InitDone) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(());
                }
                continue;
            }
            Ok(Event::Apply(o) | Event::InitApply(o)) => o,
            Ok(_) => continue,
            Err(e) => {
                eprintln!("watch {name}: {e}");
                continue;
            }
        };
        for (i, p) in preds.iter().enumerate() {
            if out[i].is_none() && p(&obj) {
                out[i] = Some(now);
            }
        }
        if out.last().is_some_and(Option::is_some) {
            return out;
        }
    }
    out
}

/// Watches the scheduler's mirror pod until it shows `hash` and is Ready; returns when.
async fn pod_marks(s: &Scenario, hash: &str) -> (Marks, oneshot::Receiver<()>) {
    let api: Api<Pod> = Api::namespaced(s.client.clone(), "kube-system");
    let hash = hash.to_string();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(marks(
        api,
        Component::Scheduler.mirror_pod_name(&s.node),
        vec![Box::new(move |p: &Pod| {
            pod_hash(p) == Some(hash.as_str()) && pod_ready(p)
        })],
        tx,
    ));
    (task, rx)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

async fn joined(s: &mut Scenario, what: &str, task: Marks) -> Vec<Option<Instant>> {
    let t = s.settings.timeout;
    match tokio::time::timeout(t, task).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("{what}: {e}"),
        Err(_) => {
            s.check_processes();
            panic!("{what}: not within {}s", t.as_secs())
        }
    }
}

/// One kube-scheduler flag change: kubeplane vs by hand. See the module documentation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing harness, run on purpose: cargo test --test e2e timing -- --ignored --nocapture"]
async fn timing_scheduler_flag_change() {
    let Some(mut s) = Scenario::start("timing", DriftMode::Observe).await else {
        return;
    };
    let runs = s.settings.timing_runs;
    let mut cpc = s.config();
    cpc.spec.rollout = Some(Rollout {
        min_ready_seconds: Some(0),
        ..Default::default()
    });
    set_arg(&mut cpc, Component::Scheduler, "v", "1");
    s.apply(&cpc);
    let cpn = s.wait_rolled_out(&cpc).await;
    let facts = cpn
        .status
        .as_ref()
        .and_then(|st| st.node_facts.clone())
        .expect("node facts");
    let path = s.manifest_dir.join("kube-scheduler.yaml");
    let mut prev_bytes = std::fs::read(&path).unwrap();
    let mut prev_hash = rendered(&cpn, Component::Scheduler).config_hash.clone();

    println!(
        "kube-scheduler flag change, minReadySeconds 0, node {}, {} runs",
        s.node, runs
    );
    println!(
        "run  by-hand  kubeplane  ratio  | kubeplane: operator wrote CPN  agent acting  kubelet Ready  Healthy reported  own time"
    );
    let (mut hands, mut kps, mut ratios, mut owns) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 1..=runs {
        let mut next = cpc.clone();
        set_arg(&mut next, Component::Scheduler, "v", &(i + 1).to_string());
        let r = render(&RenderInput {
            spec: &next.spec,
            node: &facts,
            encryption_config_sha256: None,
        })
        .expect("render");
        let pod = r
            .pods
            .iter()
            .find(|p| p.component == Component::Scheduler)
            .expect("scheduler rendered");
        let (yaml, uid) = (pod.yaml.clone(), pod.uid.clone());

        // By hand.
        let (task, ready) = pod_marks(&s, &uid).await;
        let _ = ready.await;
        let t0 = Instant::now();
        write_atomically(&path, yaml.as_bytes(), 0o600).unwrap();
        let hand = joined(&mut s, "by hand: new hash Ready", task).await[0]
            .expect("mark")
            .duration_since(t0);

        // Back, not measured.
        let (task, ready) = pod_marks(&s, &prev_hash).await;
        let _ = ready.await;
        write_atomically(&path, &prev_bytes, 0o600).unwrap();
        joined(&mut s, "by hand: previous manifest back", task).await;

        // kubeplane.
        let rev = s.revision(&next).await;
        let api: Api<ControlPlaneNode> = Api::all(s.client.clone());
        let (r1, r2, r3) = (rev.clone(), rev.clone(), rev.clone());
        let (tx, ready) = oneshot::channel();
        let cpn_task = tokio::spawn(marks(
            api,
            s.node.clone(),
            vec![
                Box::new(move |c: &ControlPlaneNode| c.spec.revision == r1),
                Box::new(move |c: &ControlPlaneNode| {
                    c.status.as_ref().is_some_and(|st| {
                        st.target_revision.as_deref() == Some(r2.as_str())
                            && matches!(
                                st.phase,
                                Some(NodePhase::Applying | NodePhase::WaitingForKubelet)
                            )
                    })
                }),
                Box::new(move |c: &ControlPlaneNode| rolled_out(c, &r3)),
            ],
            tx,
        ));
        let (pod_task, pod_ready_rx) = pod_marks(&s, &uid).await;
        let _ = ready.await;
        let _ = pod_ready_rx.await;
        let t0 = Instant::now();
        s.apply(&next);
        let m = joined(&mut s, "kubeplane: Healthy", cpn_task).await;
        let kubelet = joined(&mut s, "kubeplane: new hash Ready", pod_task).await[0];
        let done = m[2].expect("Healthy mark");
        let kp = done.duration_since(t0);
        let at = |x: Option<Instant>| {
            x.map(|x| format!("{:>6.2}s", secs(x.duration_since(t0))))
                .unwrap_or_else(|| "     -".into())
        };

        // The same manifest.
        let now = s.cpn().await.expect("ControlPlaneNode");
        assert_eq!(
            rendered(&now, Component::Scheduler).content,
            yaml,
            "kubeplane wrote the manifest the hand run wrote"
        );
        assert_eq!(std::fs::read(&path).unwrap(), yaml.as_bytes());

        let ratio = secs(kp) / secs(hand);
        // kubeplane's own time: until the agent acts (kubectl, API, operator, agent), plus
        // from kubelet's Ready to the reported Healthy. The rest is kubelet's.
        let own = match (m[1], kubelet) {
            (Some(acting), Some(ready)) if done >= ready => {
                secs(acting.duration_since(t0)) + secs(done.duration_since(ready))
            }
            _ => f64::NAN,
        };
        println!(
            "{i:>3}  {:>6.2}s  {:>8.2}s  {ratio:>5.3}  |            {}       {}      {}           {}   {own:>6.2}s",
            secs(hand),
            secs(kp),
            at(m[0]),
            at(m[1]),
            at(kubelet),
            at(Some(done)),
        );
        owns.push(own);
        hands.push(secs(hand));
        kps.push(secs(kp));
        ratios.push(ratio);
        prev_bytes = yaml.into_bytes();
        prev_hash = uid;
    }
    let ratio = median(ratios.clone());
    println!(
        "median: by hand {:.2}s, kubeplane {:.2}s; median ratio {:.3} (target <= 1.10: {})",
        median(hands),
        median(kps),
        ratio,
        if ratio <= 1.10 { "met" } else { "missed" }
    );
    println!(
        "ratios: {ratios:.3?}; kubeplane's own time, median {:.2}s",
        median(owns)
    );
    s.finish();
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}
