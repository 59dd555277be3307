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
    AuthConfig, Container, ContainerFilter, ContainerState, ContainerStatusRequest, ImageSpec,
    ImageStatusRequest, ListContainersRequest, PullImageRequest,
};
use tokio::net::UnixStream;
use tokio::sync::Mutex;
use tonic::transport::{Channel, Endpoint, Uri};

use super::pull_auth::RegistryAuth;

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

    /// Pulls `image` (CRI `PullImage`), with `auth` when a Secret of `spec.imagePullSecrets`
    /// holds credentials for its registry (else the runtime's own configuration applies),
    /// waiting at most `timeout`. Ok = the image reference the runtime reports.
    fn pull_image<'a>(
        &'a self,
        image: &'a str,
        auth: Option<&'a RegistryAuth>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<String, String>> {
        let _ = (image, auth, timeout);
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
        auth: Option<&'a RegistryAuth>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let mut client = ImageServiceClient::new(self.channel().await);
            let request = PullImageRequest {
                image: Some(image_spec(image)),
                auth: auth.map(|a| AuthConfig {
                    username: a.username.clone(),
                    password: a.password.clone(),
                    server_address: a.server.clone(),
                    ..Default::default()
                }),
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
mod tests;
