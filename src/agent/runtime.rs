//! Local evidence from the container runtime, through its CRI socket.
//!
//! kubelet labels every container it creates with `io.kubernetes.pod.uid`, which for a static
//! pod is the manifest's `metadata.uid` (verified on a v1.36.2 kubelet with containerd 2.3),
//! and with `io.kubernetes.container.name`. Asking the runtime for the containers of a uid
//! (CRI v1 `ListContainers` with a label selector) shows, without the API server, whether
//! kubelet created a container for the manifest the agent wrote, when, and whether it runs.
//! `ListContainers` returns containers only: the pause sandbox carries the same uid label but
//! is listed by `ListPodSandbox`.
//!
//! - [`ContainerRuntime`]: the seam the engine uses ([`CriRuntime`] in production, an in-memory
//!   impl or [`fake`] in tests);
//! - [`CriRuntime`]: CRI v1 over a Unix socket (tonic, no TLS), connecting lazily and again after
//!   an error, every call bounded by [`CALL_TIMEOUT`];
//! - [`evidence`]: the pure judgement of a listing against the time of a write.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    Container, ContainerFilter, ContainerState, ContainerStatusRequest, ImageSpec,
    ImageStatusRequest, ListContainersRequest, PullImageRequest,
};
use tokio::net::UnixStream;
use tokio::sync::Mutex;
use tonic::transport::{Channel, Endpoint, Uri};

#[cfg(any(test, feature = "testkit"))]
pub mod fake;

/// containerd's CRI socket, kubelet's default `--container-runtime-endpoint`.
pub const DEFAULT_ENDPOINT: &str = "unix:///run/containerd/containerd.sock";

/// Label kubelet puts on every container (and sandbox) of a pod: the pod's uid, for a static
/// pod the manifest's `metadata.uid`.
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
/// Label kubelet puts on every container: the container's name in the Pod spec.
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";

/// Longest one CRI call may take (connecting included).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The state of a container as the runtime reports it (CRI `ContainerState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContainerRunState {
    /// Created, not started yet.
    Created,
    /// Its process runs.
    Running,
    /// Its process ended.
    Exited,
    /// The runtime does not know.
    Unknown,
}

impl ContainerRunState {
    fn from_cri(state: i32) -> Self {
        match ContainerState::try_from(state) {
            Ok(ContainerState::ContainerCreated) => Self::Created,
            Ok(ContainerState::ContainerRunning) => Self::Running,
            Ok(ContainerState::ContainerExited) => Self::Exited,
            Ok(ContainerState::ContainerUnknown) | Err(_) => Self::Unknown,
        }
    }
}

/// One container kubelet created for a pod, as the runtime reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSeen {
    /// The runtime's container id.
    pub id: String,
    /// The container's name in the Pod spec: the `io.kubernetes.container.name` label, else
    /// the CRI metadata name.
    pub name: String,
    /// The `io.kubernetes.pod.uid` label.
    pub pod_uid: String,
    /// Created, running, exited.
    pub state: ContainerRunState,
    /// When the runtime created the container.
    pub created_at: SystemTime,
    /// When its process started (from `ContainerStatus`, asked for the newest container of
    /// each name only), `None` when not started or not known.
    pub started_at: Option<SystemTime>,
    /// Exit code of an exited container (from `ContainerStatus`), `None` when not known.
    pub exit_code: Option<i32>,
    /// kubelet's restart counter for this container name in this pod (0 = first start).
    pub attempt: u32,
}

/// Where the agent gets local evidence from: the containers of a pod uid.
pub trait ContainerRuntime: Send + Sync {
    /// Containers labelled `io.kubernetes.pod.uid=<uid>` (ListContainers with a label selector
    /// filter). Err = runtime unreachable (message names the socket and the cause).
    fn containers_of_pod<'a>(
        &'a self,
        pod_uid: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ContainerSeen>, String>>;

    /// Whether the runtime has `image` (CRI `ImageStatus`). Err = runtime unreachable or
    /// without an image service (then nothing is pulled ahead: kubelet pulls as it always did).
    fn image_present<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<bool, String>> {
        let _ = image;
        Box::pin(async { Err("this runtime has no image service".to_string()) })
    }

    /// Pulls `image` (CRI `PullImage`, without credentials: registries that need them are
    /// pulled by kubelet with its own), waiting at most `timeout`. Ok = the image reference
    /// the runtime reports.
    fn pull_image<'a>(
        &'a self,
        image: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<String, String>> {
        let _ = (image, timeout);
        Box::pin(async { Err("this runtime has no image service".to_string()) })
    }
}

/// What the runtime says about a component after a manifest was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuntimeEvidence {
    /// No container of that name for the uid at all: kubelet has not created it (yet).
    NotCreated,
    /// Containers of that name for the uid exist, but all were created before the write:
    /// kubelet did not start a new one for this write (yet). `running` says whether the
    /// newest of them runs.
    OnlyBeforeWrite {
        created_at: SystemTime,
        running: bool,
    },
    /// The newest container (created at or after the write) is created, not started.
    Created { since: SystemTime },
    /// The newest container (created at or after the write) runs, since `since` (its start,
    /// else its creation).
    Running { since: SystemTime, id: String },
    /// The newest container (created at or after the write) has exited; `restarts` is its
    /// attempt counter (how often kubelet restarted the container of this pod).
    Exited { code: Option<i32>, restarts: u32 },
    /// The runtime reports the newest container (created at or after the write) in an
    /// unknown state.
    Unknown { id: String },
}

impl RuntimeEvidence {
    /// The newest container created for the write runs.
    pub fn running(&self) -> bool {
        matches!(self, Self::Running { .. })
    }

    /// A sentence for status messages and diagnoses.
    pub fn describe(&self) -> String {
        match self {
            Self::NotCreated => "the container runtime has no container for the new pod uid".into(),
            Self::OnlyBeforeWrite { running, .. } => format!(
                "the container runtime has only a container of this pod uid created before the write ({})",
                if *running { "running" } else { "not running" }
            ),
            Self::Created { .. } => "the new container is created but not started".into(),
            Self::Running { id, .. } => format!("the new container {} runs", short_id(id)),
            Self::Exited { code, restarts } => format!(
                "the new container exited (code {}) after {restarts} restart(s)",
                code.map_or_else(|| "unknown".to_string(), |c| c.to_string())
            ),
            Self::Unknown { id } => format!(
                "the container runtime reports the new container {} in an unknown state",
                short_id(id)
            ),
        }
    }
}

fn short_id(id: &str) -> &str {
    id.get(..13).unwrap_or(id)
}

/// Judges the containers of a pod uid against the time the manifest was written: which is
/// the newest container named `component_container` (highest attempt, then latest creation),
/// was it created at or after `written_at`, and does it run. Containers of other names (or
/// with an empty name) are ignored.
pub fn evidence(
    containers: &[ContainerSeen],
    written_at: SystemTime,
    component_container: &str,
) -> RuntimeEvidence {
    let newest = |after_write: bool| {
        containers
            .iter()
            .filter(|c| c.name == component_container)
            .filter(|c| !after_write || c.created_at >= written_at)
            .max_by(|a, b| {
                (a.attempt, a.created_at, a.started_at).cmp(&(
                    b.attempt,
                    b.created_at,
                    b.started_at,
                ))
            })
    };
    let Some(c) = newest(true) else {
        return match newest(false) {
            None => RuntimeEvidence::NotCreated,
            Some(old) => RuntimeEvidence::OnlyBeforeWrite {
                created_at: old.created_at,
                running: old.state == ContainerRunState::Running,
            },
        };
    };
    match c.state {
        ContainerRunState::Created => RuntimeEvidence::Created {
            since: c.created_at,
        },
        ContainerRunState::Running => RuntimeEvidence::Running {
            since: c.started_at.unwrap_or(c.created_at),
            id: c.id.clone(),
        },
        ContainerRunState::Exited => RuntimeEvidence::Exited {
            code: c.exit_code,
            restarts: c.attempt,
        },
        ContainerRunState::Unknown => RuntimeEvidence::Unknown { id: c.id.clone() },
    }
}

/// CRI v1 over a Unix socket.
pub struct CriRuntime {
    endpoint: String,
    socket: PathBuf,
    timeout: Duration,
    client: Mutex<Option<Channel>>,
}

impl std::fmt::Debug for CriRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CriRuntime")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl CriRuntime {
    /// A client of the runtime at `endpoint`: `unix:///run/containerd/containerd.sock` or a
    /// plain path, as kubelet's `--container-runtime-endpoint` takes it. Nothing is connected
    /// until the first call.
    pub fn new(endpoint: &str) -> Result<Self, String> {
        let socket = socket_path(endpoint)?;
        Ok(Self {
            endpoint: format!("unix://{}", socket.display()),
            socket,
            timeout: CALL_TIMEOUT,
            client: Mutex::new(None),
        })
    }

    /// The same with another per-call timeout (tests).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The socket's path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn channel(&self) -> Channel {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref() {
            return c.clone();
        }
        let socket = self.socket.clone();
        // The URI is not used: the connector dials the socket.
        let channel = Endpoint::from_static("http://cri.invalid")
            .connect_timeout(self.timeout)
            .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let socket = socket.clone();
                async move { UnixStream::connect(socket).await.map(TokioIo::new) }
            }));
        *slot = Some(channel.clone());
        channel
    }

    async fn client(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel().await)
    }

    /// Forgets the connection: the next call dials again.
    async fn reset(&self) {
        *self.client.lock().await = None;
    }

    fn error(&self, what: &str, cause: String) -> String {
        format!(
            "container runtime at {} unreachable ({what}): {cause}",
            self.endpoint
        )
    }

    async fn list(&self, pod_uid: &str) -> Result<Vec<ContainerSeen>, String> {
        let mut client = self.client().await;
        let request = ListContainersRequest {
            filter: Some(ContainerFilter {
                label_selector: HashMap::from([(POD_UID_LABEL.to_string(), pod_uid.to_string())]),
                ..Default::default()
            }),
        };
        let listed = match tokio::time::timeout(self.timeout, client.list_containers(request)).await
        {
            Ok(Ok(r)) => r.into_inner().containers,
            Ok(Err(status)) => {
                self.reset().await;
                return Err(self.error("ListContainers", status_chain(&status)));
            }
            Err(_) => {
                self.reset().await;
                return Err(self.error(
                    "ListContainers",
                    format!("no answer within {:?}", self.timeout),
                ));
            }
        };
        let mut seen: Vec<ContainerSeen> = listed
            .into_iter()
            .map(seen_of)
            // The runtime applied the selector; a runtime that ignores it must not confuse us.
            .filter(|c| c.pod_uid == pod_uid)
            .collect();
        // Start time and exit code come from ContainerStatus: asked for the newest container
        // of each name only (one call per component; failures leave them unknown).
        let mut newest: HashMap<&str, usize> = HashMap::new();
        for (i, c) in seen.iter().enumerate() {
            let e = newest.entry(c.name.as_str()).or_insert(i);
            let n = &seen[*e];
            if (c.attempt, c.created_at) > (n.attempt, n.created_at) {
                *e = i;
            }
        }
        let mut picks: Vec<usize> = newest.into_values().collect();
        picks.sort_unstable();
        for i in picks {
            if seen[i].state == ContainerRunState::Created {
                continue;
            }
            let request = ContainerStatusRequest {
                container_id: seen[i].id.clone(),
                verbose: false,
            };
            match tokio::time::timeout(self.timeout, client.container_status(request)).await {
                Ok(Ok(r)) => {
                    if let Some(status) = r.into_inner().status {
                        let c = &mut seen[i];
                        c.started_at = time_of(status.started_at);
                        if ContainerRunState::from_cri(status.state) == ContainerRunState::Exited {
                            c.exit_code = Some(status.exit_code);
                        }
                    }
                }
                // NotFound (removed meanwhile), Unimplemented: leave it unknown.
                Ok(Err(status)) if !is_transport(&status) => {}
                Ok(Err(status)) => {
                    self.reset().await;
                    return Err(self.error("ContainerStatus", status_chain(&status)));
                }
                Err(_) => {
                    self.reset().await;
                    return Err(self.error(
                        "ContainerStatus",
                        format!("no answer within {:?}", self.timeout),
                    ));
                }
            }
        }
        Ok(seen)
    }
}

impl ContainerRuntime for CriRuntime {
    fn containers_of_pod<'a>(
        &'a self,
        pod_uid: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ContainerSeen>, String>> {
        Box::pin(self.list(pod_uid))
    }

    fn image_present<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            let mut client = ImageServiceClient::new(self.channel().await);
            let request = ImageStatusRequest {
                image: Some(image_spec(image)),
                verbose: false,
            };
            match tokio::time::timeout(self.timeout, client.image_status(request)).await {
                Ok(Ok(r)) => Ok(r.into_inner().image.is_some()),
                Ok(Err(status)) => {
                    self.reset().await;
                    Err(self.error("ImageStatus", status_chain(&status)))
                }
                Err(_) => {
                    self.reset().await;
                    Err(self.error(
                        "ImageStatus",
                        format!("no answer within {:?}", self.timeout),
                    ))
                }
            }
        })
    }

    fn pull_image<'a>(
        &'a self,
        image: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let mut client = ImageServiceClient::new(self.channel().await);
            let request = PullImageRequest {
                image: Some(image_spec(image)),
                auth: None,
                sandbox_config: None,
            };
            match tokio::time::timeout(timeout, client.pull_image(request)).await {
                Ok(Ok(r)) => Ok(r.into_inner().image_ref),
                Ok(Err(status)) => Err(format!(
                    "the container runtime at {} could not pull {image}: {}",
                    self.endpoint,
                    status_chain(&status)
                )),
                Err(_) => Err(format!(
                    "the container runtime at {} did not pull {image} within {} s",
                    self.endpoint,
                    timeout.as_secs()
                )),
            }
        })
    }
}

fn image_spec(image: &str) -> ImageSpec {
    ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}

/// `unix:///path` or `/path` → the path. Other schemes (TCP, npipe) are refused.
fn socket_path(endpoint: &str) -> Result<PathBuf, String> {
    let endpoint = endpoint.trim();
    let path = if let Some(rest) = endpoint.strip_prefix("unix://") {
        rest
    } else if endpoint.contains("://") {
        return Err(format!(
            "container runtime endpoint {endpoint:?}: only unix:// sockets are supported"
        ));
    } else {
        endpoint
    };
    if path.is_empty() || !path.starts_with('/') {
        return Err(format!(
            "container runtime endpoint {endpoint:?}: expected unix:///absolute/path or an absolute path"
        ));
    }
    Ok(PathBuf::from(path))
}

fn seen_of(c: Container) -> ContainerSeen {
    let label = |k: &str| c.labels.get(k).cloned().unwrap_or_default();
    let meta_name = c
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let name = Some(label(CONTAINER_NAME_LABEL))
        .filter(|n| !n.is_empty())
        .unwrap_or(meta_name);
    ContainerSeen {
        pod_uid: label(POD_UID_LABEL),
        name,
        state: ContainerRunState::from_cri(c.state),
        created_at: time_of(c.created_at).unwrap_or(UNIX_EPOCH),
        started_at: None,
        exit_code: None,
        attempt: c.metadata.as_ref().map_or(0, |m| m.attempt),
        id: c.id,
    }
}

/// CRI times are nanoseconds since the epoch; 0 means unset.
fn time_of(ns: i64) -> Option<SystemTime> {
    (ns > 0).then(|| UNIX_EPOCH + Duration::from_nanos(ns as u64))
}

/// Nanoseconds since the epoch, as CRI carries times.
pub fn cri_time(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Whether a status means the call did not reach a runtime that answered it (connection
/// refused, socket missing, connection reset), as opposed to the runtime's own answer.
fn is_transport(status: &tonic::Status) -> bool {
    match status.code() {
        tonic::Code::Unavailable => true,
        tonic::Code::Unknown => std::error::Error::source(status).is_some(),
        _ => false,
    }
}

/// The status's message and its chain of causes ("transport error: … : No such file or
/// directory").
fn status_chain(status: &tonic::Status) -> String {
    let mut out = format!("{:?}: {}", status.code(), status.message());
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        source = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::fake::{CriServer, FakeRuntime};
    use super::*;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000) + Duration::from_millis(ms)
    }

    fn c(name: &str, state: ContainerRunState, created_ms: u64, attempt: u32) -> ContainerSeen {
        ContainerSeen {
            id: format!("{name}-{created_ms}-{attempt}-0123456789abcdef"),
            name: name.into(),
            pod_uid: "uid-new".into(),
            state,
            created_at: at(created_ms),
            started_at: None,
            exit_code: None,
            attempt,
        }
    }

    use ContainerRunState::{Created, Exited, Running, Unknown};

    const WRITE: u64 = 10_000;

    #[test]
    fn no_container_is_not_created() {
        assert_eq!(
            evidence(&[], at(WRITE), "kube-apiserver"),
            RuntimeEvidence::NotCreated
        );
        // Another container name of the same pod does not count.
        let other = [c("sidecar", Running, WRITE + 5, 0)];
        assert_eq!(
            evidence(&other, at(WRITE), "kube-apiserver"),
            RuntimeEvidence::NotCreated
        );
    }

    #[test]
    fn a_container_from_before_the_write_is_not_evidence_of_the_write() {
        let old = [c("kube-apiserver", Running, WRITE - 1, 0)];
        assert_eq!(
            evidence(&old, at(WRITE), "kube-apiserver"),
            RuntimeEvidence::OnlyBeforeWrite {
                created_at: at(WRITE - 1),
                running: true
            }
        );
        let old = [c("kube-apiserver", Exited, WRITE - 1, 0)];
        let e = evidence(&old, at(WRITE), "kube-apiserver");
        assert!(
            matches!(e, RuntimeEvidence::OnlyBeforeWrite { running: false, .. }),
            "{e:?}"
        );
        assert!(!e.running());
    }

    #[test]
    fn created_at_the_write_counts_and_states_map() {
        let created = [c("kube-apiserver", Created, WRITE, 0)];
        assert_eq!(
            evidence(&created, at(WRITE), "kube-apiserver"),
            RuntimeEvidence::Created { since: at(WRITE) }
        );
        let running = [c("kube-apiserver", Running, WRITE + 3, 0)];
        let e = evidence(&running, at(WRITE), "kube-apiserver");
        assert_eq!(
            e,
            RuntimeEvidence::Running {
                since: at(WRITE + 3),
                id: running[0].id.clone()
            }
        );
        assert!(e.running());
        assert!(e.describe().contains("kube-apiserve"), "{}", e.describe());
        let unknown = [c("kube-apiserver", Unknown, WRITE + 3, 0)];
        assert_eq!(
            evidence(&unknown, at(WRITE), "kube-apiserver"),
            RuntimeEvidence::Unknown {
                id: unknown[0].id.clone()
            }
        );
    }

    #[test]
    fn running_since_is_the_start_when_known() {
        let mut r = c("kube-scheduler", Running, WRITE + 1, 0);
        r.started_at = Some(at(WRITE + 900));
        assert_eq!(
            evidence(&[r.clone()], at(WRITE), "kube-scheduler"),
            RuntimeEvidence::Running {
                since: at(WRITE + 900),
                id: r.id
            }
        );
    }

    #[test]
    fn the_newest_attempt_decides_a_crash_loop() {
        // Attempt 2 exited (code 1) after attempt 1; an old container of before the write
        // runs (kubelet has not stopped it yet): the newest after the write decides.
        let mut exited = c("kube-apiserver", Exited, WRITE + 2_000, 2);
        exited.exit_code = Some(1);
        let list = [
            c("kube-apiserver", Running, WRITE - 5_000, 0),
            c("kube-apiserver", Exited, WRITE + 100, 1),
            exited,
        ];
        assert_eq!(
            evidence(&list, at(WRITE), "kube-apiserver"),
            RuntimeEvidence::Exited {
                code: Some(1),
                restarts: 2
            }
        );
        // Then attempt 3 runs: running again, since its own start.
        let mut list = list.to_vec();
        list.push(c("kube-apiserver", Running, WRITE + 2_500, 3));
        let e = evidence(&list, at(WRITE), "kube-apiserver");
        assert!(
            matches!(&e, RuntimeEvidence::Running { since, .. } if *since == at(WRITE + 2_500)),
            "{e:?}"
        );
        // Order of the listing does not matter.
        list.reverse();
        assert_eq!(evidence(&list, at(WRITE), "kube-apiserver"), e);
    }

    #[test]
    fn same_attempt_the_latest_creation_wins_and_exit_code_may_be_unknown() {
        let list = [
            c("kube-apiserver", Running, WRITE + 10, 0),
            c("kube-apiserver", Exited, WRITE + 20, 0),
        ];
        let e = evidence(&list, at(WRITE), "kube-apiserver");
        assert_eq!(
            e,
            RuntimeEvidence::Exited {
                code: None,
                restarts: 0
            }
        );
        assert!(e.describe().contains("code unknown"), "{}", e.describe());
    }

    #[test]
    fn endpoints_parse_like_kubelets_flag() {
        assert_eq!(
            socket_path(DEFAULT_ENDPOINT).unwrap(),
            PathBuf::from("/run/containerd/containerd.sock")
        );
        assert_eq!(
            socket_path("/var/run/crio/crio.sock").unwrap(),
            PathBuf::from("/var/run/crio/crio.sock")
        );
        for bad in ["tcp://127.0.0.1:1234", "unix://relative.sock", "", "x.sock"] {
            let e = CriRuntime::new(bad).unwrap_err();
            assert!(e.contains("endpoint"), "{bad}: {e}");
        }
        let rt = CriRuntime::new("unix:///run/k3s/containerd/containerd.sock").unwrap();
        assert_eq!(
            rt.socket(),
            Path::new("/run/k3s/containerd/containerd.sock")
        );
    }

    fn seen(uid: &str, name: &str, state: ContainerRunState, attempt: u32) -> ContainerSeen {
        ContainerSeen {
            id: format!("id-{uid}-{name}-{attempt}"),
            name: name.into(),
            pod_uid: uid.into(),
            state,
            created_at: at(attempt as u64 * 1000),
            started_at: (state != Created).then(|| at(attempt as u64 * 1000 + 5)),
            exit_code: (state == Exited).then_some(137),
            attempt,
        }
    }

    fn table() -> FakeRuntime {
        FakeRuntime::with(vec![
            seen("uid-a", "kube-apiserver", Exited, 0),
            seen("uid-a", "kube-apiserver", Running, 1),
            seen("uid-b", "kube-apiserver", Created, 0),
            seen("uid-c", "kube-scheduler", Unknown, 0),
        ])
    }

    #[tokio::test]
    async fn lists_the_containers_of_a_uid_over_a_real_cri_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("cri.sock");
        let _server = CriServer::start(&socket, table()).unwrap();
        let rt = CriRuntime::new(&format!("unix://{}", socket.display())).unwrap();

        let mut a = rt.containers_of_pod("uid-a").await.unwrap();
        a.sort_by_key(|c| c.attempt);
        // The newest container of the name gets start time and exit code from
        // ContainerStatus; older ones only what ListContainers says.
        let mut want_old = seen("uid-a", "kube-apiserver", Exited, 0);
        want_old.started_at = None;
        want_old.exit_code = None;
        assert_eq!(
            a,
            vec![want_old, seen("uid-a", "kube-apiserver", Running, 1)]
        );
        assert_eq!(
            evidence(&a, at(500), "kube-apiserver"),
            RuntimeEvidence::Running {
                since: at(1005),
                id: "id-uid-a-kube-apiserver-1".into()
            }
        );

        let b = rt.containers_of_pod("uid-b").await.unwrap();
        assert_eq!(b, vec![seen("uid-b", "kube-apiserver", Created, 0)]);
        let c = rt.containers_of_pod("uid-c").await.unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].state, Unknown);
        assert!(rt.containers_of_pod("uid-none").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn exit_code_of_the_newest_exited_container() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("cri.sock");
        let mut crashed = seen("uid-x", "kube-apiserver", Exited, 3);
        crashed.exit_code = Some(1);
        let _server = CriServer::start(&socket, FakeRuntime::with(vec![crashed])).unwrap();
        let rt = CriRuntime::new(socket.to_str().unwrap()).unwrap();
        let got = rt.containers_of_pod("uid-x").await.unwrap();
        assert_eq!(
            evidence(&got, at(0), "kube-apiserver"),
            RuntimeEvidence::Exited {
                code: Some(1),
                restarts: 3
            }
        );
    }

    #[tokio::test]
    async fn a_missing_socket_is_an_error_naming_it_and_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("nothing-here.sock");
        let rt = CriRuntime::new(socket.to_str().unwrap()).unwrap();
        let started = std::time::Instant::now();
        let e = rt.containers_of_pod("uid-a").await.unwrap_err();
        eprintln!("{e}");
        assert!(e.contains(&socket.display().to_string()), "{e}");
        assert!(e.contains("No such file or directory"), "{e}");
        assert!(started.elapsed() < CALL_TIMEOUT, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_restarted_runtime_is_reached_again() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("cri.sock");
        let runtime = table();
        let server = CriServer::start(&socket, runtime.clone()).unwrap();
        let rt = CriRuntime::new(socket.to_str().unwrap()).unwrap();
        assert_eq!(rt.containers_of_pod("uid-b").await.unwrap().len(), 1);

        // The runtime dies: calls fail, naming the socket.
        server.stop();
        let e = rt.containers_of_pod("uid-b").await.unwrap_err();
        assert!(e.contains(&socket.display().to_string()), "{e}");

        // It comes back (a new process, same socket path, other containers).
        runtime.update(|all| all.push(seen("uid-b", "kube-apiserver", Running, 1)));
        let _server = CriServer::start(&socket, runtime).unwrap();
        let again = rt.containers_of_pod("uid-b").await.unwrap();
        assert_eq!(again.len(), 2);
    }

    #[tokio::test]
    async fn a_runtime_that_does_not_answer_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("silent.sock");
        // Accepts connections and never says a word.
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let rt = CriRuntime::new(socket.to_str().unwrap())
            .unwrap()
            .with_timeout(Duration::from_millis(300));
        let started = std::time::Instant::now();
        let e = rt.containers_of_pod("uid-a").await.unwrap_err();
        assert!(e.contains("silent.sock"), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn images_are_asked_for_and_pulled_over_cri() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("cri.sock");
        let fake = FakeRuntime::new();
        fake.images(|i| {
            i.present.insert("registry.k8s.io/pause:3.10.2".into());
            i.failing.insert(
                "registry.example/broken:v1".into(),
                "pull access denied".into(),
            );
        });
        let _server = CriServer::start(&socket, fake.clone()).unwrap();
        let rt = CriRuntime::new(socket.to_str().unwrap()).unwrap();
        let api = "registry.k8s.io/kube-apiserver:v1.36.2";
        assert!(
            rt.image_present("registry.k8s.io/pause:3.10.2")
                .await
                .unwrap()
        );
        assert!(!rt.image_present(api).await.unwrap());
        let got = rt.pull_image(api, Duration::from_secs(5)).await.unwrap();
        assert!(got.starts_with("sha256:"), "{got}");
        assert!(rt.image_present(api).await.unwrap());
        let e = rt
            .pull_image("registry.example/broken:v1", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            e.contains("could not pull registry.example/broken:v1")
                && e.contains("pull access denied"),
            "{e}"
        );
        fake.images(|i| i.pull_time = Duration::from_secs(5));
        let e = rt
            .pull_image("registry.k8s.io/slow:v1", Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(
            e.contains("did not pull registry.k8s.io/slow:v1 within"),
            "{e}"
        );
        assert_eq!(
            fake.images(|i| i.pulls.clone()),
            [api, "registry.example/broken:v1", "registry.k8s.io/slow:v1"]
        );
    }

    #[tokio::test]
    async fn the_in_memory_runtime_filters_by_uid() {
        let t = table();
        let a = t.containers_of_pod("uid-a").await.unwrap();
        assert_eq!(a.len(), 2);
        assert!(a.iter().all(|c| c.pod_uid == "uid-a"));
    }
}
