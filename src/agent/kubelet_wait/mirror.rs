//! Mirror pods as the API shows them: the config hash and Ready condition kubelet reports, the
//! container's restarts and last state, and the [`MirrorPods`] source (the API, or a test's).

use super::*;

/// A mirror pod's `kubernetes.io/config.hash`: the `metadata.uid` of the manifest kubelet runs.
pub fn mirror_hash(pod: &Pod) -> Option<&str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(CONFIG_HASH_ANNOTATION)
        .map(String::as_str)
}

/// Whether a Pod's Ready condition is True.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// What the API shows of a mirror pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MirrorPodState {
    /// `kubernetes.io/config.hash`.
    pub hash: Option<String>,
    /// The Pod's Ready condition is True.
    pub ready: bool,
    /// The component container's restart count.
    pub restart_count: Option<i32>,
    /// The container's last termination, or its current waiting reason, in words.
    pub last_state: Option<String>,
}

impl MirrorPodState {
    /// Reads the state of a mirror pod.
    pub fn from_pod(pod: &Pod) -> Self {
        let hash = mirror_hash(pod).map(str::to_string);
        let status = pod.status.as_ref();
        let ready = pod_ready(pod);
        let container = status
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.first());
        let restart_count = container.map(|c| c.restart_count);
        let last_state = container.and_then(|c| {
            let last = c.last_state.as_ref().and_then(describe_state);
            let now = c
                .state
                .as_ref()
                .filter(|s| s.waiting.is_some())
                .and_then(describe_state);
            match (last, now) {
                (Some(l), Some(n)) => Some(format!("{l}; now {n}")),
                (l, n) => l.or(n),
            }
        });
        MirrorPodState {
            hash,
            ready,
            restart_count,
            last_state,
        }
    }
}

pub(super) fn describe_state(s: &ContainerState) -> Option<String> {
    if let Some(t) = &s.terminated {
        let mut out = format!("Terminated: {}", t.reason.as_deref().unwrap_or("unknown"));
        out.push_str(&format!(", exit code {}", t.exit_code));
        if let Some(m) = t.message.as_deref().filter(|m| !m.is_empty()) {
            out.push_str(&format!(", message {:?}", truncate(m, 200)));
        }
        if let Some(f) = &t.finished_at {
            out.push_str(&format!(", finished {}", f.0));
        }
        return Some(out);
    }
    if let Some(w) = &s.waiting {
        let mut out = format!("Waiting: {}", w.reason.as_deref().unwrap_or("unknown"));
        if let Some(m) = w.message.as_deref().filter(|m| !m.is_empty()) {
            out.push_str(&format!(", message {:?}", truncate(m, 200)));
        }
        return Some(out);
    }
    None
}

pub(super) fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// One observation of a mirror pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodEvent {
    /// The pod as it is now.
    Seen(MirrorPodState),
    /// The pod does not exist (deleted, or not created yet).
    Missing,
    /// The API could not be reached; the pod's state is unknown.
    ApiError(String),
}

/// A source of mirror pod observations.
pub trait MirrorPods: Send + Sync {
    /// Observations of `kube-system/<name>`, starting with its current state. The stream
    /// retries on its own; errors come through as [`PodEvent::ApiError`].
    fn watch(&self, name: &str) -> BoxStream<'static, PodEvent>;
}

/// Mirror pods through the API: a kube-rs watcher with field selector `metadata.name`, with
/// the watcher's exponential backoff between failed attempts.
#[derive(Clone)]
pub struct KubeMirrorPods {
    api: Api<Pod>,
}

impl KubeMirrorPods {
    /// Watches pods in `kube-system`.
    pub fn new(client: Client) -> Self {
        KubeMirrorPods {
            api: Api::namespaced(client, crate::render::defaults::NAMESPACE),
        }
    }
}

impl MirrorPods for KubeMirrorPods {
    fn watch(&self, name: &str) -> BoxStream<'static, PodEvent> {
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut seen_in_init = false;
        watcher(self.api.clone(), config)
            .backoff(crate::agent::quick_backoff())
            .filter_map(move |ev| {
                let out = match ev {
                    Ok(Event::Init) => {
                        seen_in_init = false;
                        None
                    }
                    Ok(Event::InitApply(p)) => {
                        seen_in_init = true;
                        Some(PodEvent::Seen(MirrorPodState::from_pod(&p)))
                    }
                    Ok(Event::InitDone) => (!seen_in_init).then_some(PodEvent::Missing),
                    Ok(Event::Apply(p)) => Some(PodEvent::Seen(MirrorPodState::from_pod(&p))),
                    Ok(Event::Delete(_)) => Some(PodEvent::Missing),
                    Err(e) => Some(PodEvent::ApiError(e.to_string())),
                };
                futures::future::ready(out)
            })
            .boxed()
    }
}
