//! Test doubles for [`super`], built with `cfg(test)` or the `testkit` feature (the crate's
//! integration tests get it through the dev-dependency on the package itself):
//!
//! - [`FakeRuntime`]: a table of containers; implements [`ContainerRuntime`] in memory.
//! - [`CriServer`]: a real CRI v1 `RuntimeService` gRPC server (tonic) on a Unix socket that
//!   answers `ListContainers` (honouring the label selector) and `ContainerStatus` from a
//!   [`FakeRuntime`], and `Unimplemented` for every other call. Runs on its own thread.
//! - [`FakeKubelet`]: follows a real kubelet's static-pod rules (as measured on v1.36.2) over a
//!   manifest directory: a new `metadata.uid` stops the old container and, after a delay,
//!   creates a new one labelled with the uid; a file that does not parse, or is removed, stops
//!   its pod; each running container serves its probe endpoint over HTTPS; a "failing"
//!   revision is never healthy and crash-loops. Its containers are served by a [`CriServer`].
//!
//! Everything runs on a thread of its own with its own tokio runtime: the fake keeps working
//! while the test blocks (waiting for a child process, sleeping) and survives the kill of the
//! process under test. Dropping the value stops it.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::{ImageService, ImageServiceServer};
use k8s_cri::v1::runtime_service_server::{RuntimeService, RuntimeServiceServer};
use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tonic::{Request, Response, Status};

use super::{
    CONTAINER_NAME_LABEL, ContainerRunState, ContainerRuntime, ContainerSeen, POD_UID_LABEL,
    cri_time,
};
use crate::agent::files::parse_pod;
use crate::agent::health::Endpoint;
use crate::testkit::tls::{read_request_head, self_signed_acceptor, write_answer};

// ---------------------------------------------------------------------------------------------
// The container table

/// Containers as a runtime would report them. Clones share the table.
#[derive(Clone, Debug, Default)]
pub struct FakeRuntime {
    containers: Arc<Mutex<Vec<ContainerSeen>>>,
    images: Arc<Mutex<FakeImages>>,
}

/// The image store of a [`FakeRuntime`]: what is present, which pulls fail (and why), how long
/// a pull takes, every pull asked for.
#[derive(Clone, Debug, Default)]
pub struct FakeImages {
    /// Images present.
    pub present: std::collections::BTreeSet<String>,
    /// Images whose pull fails, with the runtime's message.
    pub failing: std::collections::BTreeMap<String, String>,
    /// How long a pull takes.
    pub pull_time: Duration,
    /// Every pull asked for, in order.
    pub pulls: Vec<String>,
    /// The user name of the credentials each pull carried (`None`: none), in order.
    pub pull_users: Vec<Option<String>>,
}

impl FakeRuntime {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// A table holding `containers`.
    pub fn with(containers: Vec<ContainerSeen>) -> Self {
        let rt = Self::new();
        rt.set(containers);
        rt
    }

    /// Replaces every container.
    pub fn set(&self, containers: Vec<ContainerSeen>) {
        *self.lock() = containers;
    }

    /// Changes the table.
    pub fn update<R>(&self, f: impl FnOnce(&mut Vec<ContainerSeen>) -> R) -> R {
        f(&mut self.lock())
    }

    /// Every container.
    pub fn containers(&self) -> Vec<ContainerSeen> {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<ContainerSeen>> {
        self.containers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the image store.
    pub fn images<R>(&self, f: impl FnOnce(&mut FakeImages) -> R) -> R {
        f(&mut self.images.lock().unwrap_or_else(|e| e.into_inner()))
    }

    async fn pull(&self, image: &str, user: Option<&str>) -> Result<String, String> {
        let (wait, failing) = self.images(|i| {
            i.pulls.push(image.to_string());
            i.pull_users.push(user.map(str::to_string));
            (i.pull_time, i.failing.get(image).cloned())
        });
        tokio::time::sleep(wait).await;
        if let Some(why) = failing {
            return Err(why);
        }
        self.images(|i| i.present.insert(image.to_string()));
        Ok(format!(
            "sha256:{}",
            crate::render::sha256_hex(image.as_bytes())
        ))
    }
}

impl ContainerRuntime for FakeRuntime {
    fn containers_of_pod<'a>(
        &'a self,
        pod_uid: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ContainerSeen>, String>> {
        let found = self
            .lock()
            .iter()
            .filter(|c| c.pod_uid == pod_uid)
            .cloned()
            .collect();
        Box::pin(async move { Ok(found) })
    }

    fn image_present<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<bool, String>> {
        let present = self.images(|i| i.present.contains(image));
        Box::pin(async move { Ok(present) })
    }

    fn pull_image<'a>(
        &'a self,
        image: &'a str,
        auth: Option<&'a crate::agent::pull_auth::RegistryAuth>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let user = auth.map(|a| a.username.as_str());
            tokio::time::timeout(timeout, self.pull(image, user))
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "did not pull {image} within {} s",
                        timeout.as_secs()
                    ))
                })
        })
    }
}

/// A container as CRI `ListContainers` reports it: the labels kubelet sets.
fn to_cri(c: &ContainerSeen) -> cri::Container {
    cri::Container {
        id: c.id.clone(),
        pod_sandbox_id: format!("sandbox-{}", c.pod_uid),
        metadata: Some(cri::ContainerMetadata {
            name: c.name.clone(),
            attempt: c.attempt,
        }),
        state: state_to_cri(c.state) as i32,
        created_at: cri_time(c.created_at),
        labels: HashMap::from([
            (POD_UID_LABEL.to_string(), c.pod_uid.clone()),
            (CONTAINER_NAME_LABEL.to_string(), c.name.clone()),
            (
                "io.kubernetes.pod.namespace".to_string(),
                crate::render::defaults::NAMESPACE.to_string(),
            ),
        ]),
        ..Default::default()
    }
}

fn state_to_cri(s: ContainerRunState) -> cri::ContainerState {
    match s {
        ContainerRunState::Created => cri::ContainerState::ContainerCreated,
        ContainerRunState::Running => cri::ContainerState::ContainerRunning,
        ContainerRunState::Exited => cri::ContainerState::ContainerExited,
        ContainerRunState::Unknown => cri::ContainerState::ContainerUnknown,
    }
}

/// The `ListContainers` filter as containerd applies it: id, state, sandbox, and every
/// label of the selector.
fn matches(c: &cri::Container, filter: &cri::ContainerFilter) -> bool {
    (filter.id.is_empty() || c.id == filter.id)
        && filter.state.as_ref().is_none_or(|s| s.state == c.state)
        && (filter.pod_sandbox_id.is_empty() || c.pod_sandbox_id == filter.pod_sandbox_id)
        && filter
            .label_selector
            .iter()
            .all(|(k, v)| c.labels.get(k) == Some(v))
}

// ---------------------------------------------------------------------------------------------
// The CRI server

/// The `RuntimeService` test double over a [`FakeRuntime`].
#[derive(Clone)]
struct CriService {
    runtime: FakeRuntime,
}

impl CriService {
    fn list(&self, filter: Option<cri::ContainerFilter>) -> cri::ListContainersResponse {
        let filter = filter.unwrap_or_default();
        cri::ListContainersResponse {
            containers: self
                .runtime
                .containers()
                .iter()
                .map(to_cri)
                .filter(|c| matches(c, &filter))
                .collect(),
        }
    }

    fn status(&self, id: &str) -> Result<cri::ContainerStatusResponse, Status> {
        let all = self.runtime.containers();
        let c = all
            .iter()
            .find(|c| c.id == id)
            .ok_or_else(|| Status::not_found(format!("container {id:?} does not exist")))?;
        let listed = to_cri(c);
        Ok(cri::ContainerStatusResponse {
            status: Some(cri::ContainerStatus {
                id: c.id.clone(),
                metadata: listed.metadata,
                state: listed.state,
                created_at: listed.created_at,
                started_at: c.started_at.map_or(0, cri_time),
                exit_code: c.exit_code.unwrap_or(0),
                labels: listed.labels,
                ..Default::default()
            }),
            ..Default::default()
        })
    }
}

#[tonic::async_trait]
impl ImageService for CriService {
    async fn list_images(
        &self,
        _: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        Err(unimplemented("list_images"))
    }

    async fn image_status(
        &self,
        request: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        let name = request.into_inner().image.unwrap_or_default().image;
        let present = self.runtime.images(|i| i.present.contains(&name));
        Ok(Response::new(cri::ImageStatusResponse {
            image: present.then(|| cri::Image {
                id: format!("sha256:{}", crate::render::sha256_hex(name.as_bytes())),
                repo_tags: vec![name.clone()],
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn pull_image(
        &self,
        request: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        let request = request.into_inner();
        let name = request.image.unwrap_or_default().image;
        let user = request.auth.map(|a| a.username);
        match self.runtime.pull(&name, user.as_deref()).await {
            Ok(image_ref) => Ok(Response::new(cri::PullImageResponse { image_ref })),
            Err(why) => Err(Status::not_found(why)),
        }
    }

    async fn remove_image(
        &self,
        _: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        Err(unimplemented("remove_image"))
    }

    async fn image_fs_info(
        &self,
        _: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        Err(unimplemented("image_fs_info"))
    }
}

fn unimplemented(rpc: &str) -> Status {
    Status::unimplemented(format!(
        "{rpc} is not implemented by kubeplane's CRI test double"
    ))
}

// The generated trait has no default methods: the macro writes the `Unimplemented` ones,
// inside the `#[async_trait]` impl so that the attribute sees them expanded.
macro_rules! cri_service_impl {
    ($($rpc:ident($req:ident) -> $resp:ident;)*) => {
        #[tonic::async_trait]
        impl RuntimeService for CriService {
            async fn list_containers(
                &self,
                request: Request<cri::ListContainersRequest>,
            ) -> Result<Response<cri::ListContainersResponse>, Status> {
                Ok(Response::new(self.list(request.into_inner().filter)))
            }

            async fn container_status(
                &self,
                request: Request<cri::ContainerStatusRequest>,
            ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
                self.status(&request.into_inner().container_id).map(Response::new)
            }

            type GetContainerEventsStream = futures::stream::BoxStream<
                'static,
                Result<cri::ContainerEventResponse, Status>,
            >;

            async fn get_container_events(
                &self,
                _: Request<cri::GetEventsRequest>,
            ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
                Err(unimplemented("get_container_events"))
            }

            $(
                async fn $rpc(&self, _: Request<cri::$req>) -> Result<Response<cri::$resp>, Status> {
                    Err(unimplemented(stringify!($rpc)))
                }
            )*
        }
    };
}

cri_service_impl! {
    version(VersionRequest) -> VersionResponse;
    run_pod_sandbox(RunPodSandboxRequest) -> RunPodSandboxResponse;
    stop_pod_sandbox(StopPodSandboxRequest) -> StopPodSandboxResponse;
    remove_pod_sandbox(RemovePodSandboxRequest) -> RemovePodSandboxResponse;
    pod_sandbox_status(PodSandboxStatusRequest) -> PodSandboxStatusResponse;
    list_pod_sandbox(ListPodSandboxRequest) -> ListPodSandboxResponse;
    create_container(CreateContainerRequest) -> CreateContainerResponse;
    start_container(StartContainerRequest) -> StartContainerResponse;
    stop_container(StopContainerRequest) -> StopContainerResponse;
    remove_container(RemoveContainerRequest) -> RemoveContainerResponse;
    update_container_resources(UpdateContainerResourcesRequest) -> UpdateContainerResourcesResponse;
    reopen_container_log(ReopenContainerLogRequest) -> ReopenContainerLogResponse;
    exec_sync(ExecSyncRequest) -> ExecSyncResponse;
    exec(ExecRequest) -> ExecResponse;
    attach(AttachRequest) -> AttachResponse;
    port_forward(PortForwardRequest) -> PortForwardResponse;
    container_stats(ContainerStatsRequest) -> ContainerStatsResponse;
    list_container_stats(ListContainerStatsRequest) -> ListContainerStatsResponse;
    pod_sandbox_stats(PodSandboxStatsRequest) -> PodSandboxStatsResponse;
    list_pod_sandbox_stats(ListPodSandboxStatsRequest) -> ListPodSandboxStatsResponse;
    update_runtime_config(UpdateRuntimeConfigRequest) -> UpdateRuntimeConfigResponse;
    status(StatusRequest) -> StatusResponse;
    checkpoint_container(CheckpointContainerRequest) -> CheckpointContainerResponse;
    list_metric_descriptors(ListMetricDescriptorsRequest) -> ListMetricDescriptorsResponse;
    list_pod_sandbox_metrics(ListPodSandboxMetricsRequest) -> ListPodSandboxMetricsResponse;
    runtime_config(RuntimeConfigRequest) -> RuntimeConfigResponse;
}

/// Binds `socket` (a stale socket file there is replaced), synchronously so that errors reach
/// the caller.
fn bind_unix(socket: &Path) -> io::Result<std::os::unix::net::UnixListener> {
    match std::fs::remove_file(socket) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = std::os::unix::net::UnixListener::bind(socket)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves the CRI double on `listener` until the future is dropped.
async fn serve_cri(listener: std::os::unix::net::UnixListener, runtime: FakeRuntime) {
    let listener = match tokio::net::UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fake CRI server: {e}");
            return;
        }
    };
    let incoming = futures::stream::unfold(listener, |l| async move {
        let next = l.accept().await.map(|(stream, _)| stream);
        Some((next, l))
    });
    let served = tonic::transport::Server::builder()
        .add_service(RuntimeServiceServer::new(CriService {
            runtime: runtime.clone(),
        }))
        .add_service(ImageServiceServer::new(CriService { runtime }))
        .serve_with_incoming(incoming)
        .await;
    if let Err(e) = served {
        eprintln!("fake CRI server: {e}");
    }
}

/// A thread running a current-thread tokio runtime until told to stop; stopping drops every
/// task (listeners, connections) at once, as a killed process would.
struct Background {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    fn spawn<F>(name: &str, work: impl FnOnce() -> F + Send + 'static) -> io::Result<Self>
    where
        F: Future<Output = ()> + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, async move {
                    tokio::select! {
                        () = work() => {}
                        _ = stopped => {}
                    }
                });
                drop(local);
                rt.shutdown_background();
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A CRI v1 `RuntimeService` server on a Unix socket, answering from a [`FakeRuntime`]. Drop
/// (or [`CriServer::stop`]) kills it: every connection closes and the socket file is removed.
pub struct CriServer {
    socket: PathBuf,
    background: Background,
}

impl CriServer {
    /// Listens on `socket` (replacing a stale socket file) and serves `runtime`.
    pub fn start(socket: impl Into<PathBuf>, runtime: FakeRuntime) -> io::Result<Self> {
        let socket = socket.into();
        let listener = bind_unix(&socket)?;
        let background = Background::spawn("fake-cri", move || serve_cri(listener, runtime))?;
        Ok(Self { socket, background })
    }

    /// The socket's path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Stops serving, as a killed runtime would.
    pub fn stop(self) {}
}

impl Drop for CriServer {
    fn drop(&mut self) {
        self.background.stop();
        let _ = std::fs::remove_file(&self.socket);
    }
}

// ---------------------------------------------------------------------------------------------
// The fake kubelet

/// The argument that makes a container fail by default: a Pod any of whose containers has it
/// in `command` or `args` crash-loops and is never healthy.
pub const FAIL_MARKER: &str = "--kubeplane-fake-fail";

/// Whether a Pod's containers fail.
pub type FailPredicate = Arc<dyn Fn(&Pod) -> bool + Send + Sync>;

/// How the fake kubelet behaves.
#[derive(Clone)]
pub struct FakeKubeletOptions {
    /// How often the manifest directory is read.
    pub poll_interval: Duration,
    /// From stopping a pod's old container (or from seeing a new pod) to creating the new
    /// container (a real kubelet: ~11–15 s for a replaced static pod).
    pub start_delay: Duration,
    /// From a container's start until its endpoint answers 200.
    pub healthy_after: Duration,
    /// How long a failing container runs before it exits with code 1.
    pub crash_after: Duration,
    /// From a failing container's exit to its restart (attempt + 1).
    pub crash_backoff: Duration,
    /// Which Pods fail. Default: [`FAIL_MARKER`] in a container's command or args.
    pub is_failing: FailPredicate,
    /// Where the CRI socket goes; default a fresh directory under the system temp dir.
    pub cri_socket: Option<PathBuf>,
}

impl Default for FakeKubeletOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(50),
            start_delay: Duration::from_millis(300),
            healthy_after: Duration::ZERO,
            crash_after: Duration::from_millis(200),
            crash_backoff: Duration::from_millis(300),
            is_failing: Arc::new(|pod| has_arg(pod, |a| a == FAIL_MARKER)),
            cri_socket: None,
        }
    }
}

impl std::fmt::Debug for FakeKubeletOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeKubeletOptions")
            .field("poll_interval", &self.poll_interval)
            .field("start_delay", &self.start_delay)
            .field("healthy_after", &self.healthy_after)
            .field("crash_after", &self.crash_after)
            .field("crash_backoff", &self.crash_backoff)
            .field("cri_socket", &self.cri_socket)
            .finish_non_exhaustive()
    }
}

impl FakeKubeletOptions {
    /// Pods fail when `pred` says so.
    pub fn failing_when(mut self, pred: impl Fn(&Pod) -> bool + Send + Sync + 'static) -> Self {
        self.is_failing = Arc::new(pred);
        self
    }

    /// Pods fail when an element of a container's command or args contains `needle` (for
    /// example `--etcd-servers=https://127.0.0.1:1`, which validation accepts).
    pub fn failing_if_arg_contains(self, needle: &str) -> Self {
        let needle = needle.to_string();
        self.failing_when(move |pod| has_arg(pod, |a| a.contains(&needle)))
    }

    /// Another start delay.
    pub fn start_delay(mut self, d: Duration) -> Self {
        self.start_delay = d;
        self
    }
}

/// Whether an element of any container's command or args satisfies `pred`.
pub fn has_arg(pod: &Pod, pred: impl Fn(&str) -> bool) -> bool {
    pod.spec.iter().flat_map(|s| s.containers.iter()).any(|c| {
        c.command
            .iter()
            .chain(c.args.iter())
            .flatten()
            .any(|a| pred(a))
    })
}

/// What happened, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KubeletEventKind {
    /// A manifest with a new uid (or, same uid, another container spec) was read.
    ManifestSeen { file: String },
    /// A file could not be parsed as a Pod; the pod it held is stopped. `uid` is empty.
    Unparseable { file: String, error: String },
    /// A second file names a pod another file already names; it is ignored (as kubelet does).
    Duplicate { file: String },
    /// The pod is no longer in the directory (file removed or unparseable).
    Removed,
    /// A container was created and started; its endpoint serves.
    Started { container: String, attempt: u32 },
    /// A container was stopped by kubelet (replaced or removed pod).
    Stopped { container: String },
    /// A failing container exited by itself.
    Crashed { container: String, exit_code: i32 },
    /// The container could not listen on its probe port; it crashes.
    BindFailed { addr: String, error: String },
}

/// One entry of [`FakeKubelet::history`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeletEvent {
    /// When.
    pub at: SystemTime,
    /// The pod's `metadata.name` (for an unparseable file, the pod it held before, else the
    /// file name).
    pub component: String,
    /// The pod uid concerned (empty when none).
    pub uid: String,
    /// What.
    pub kind: KubeletEventKind,
}

/// A kubelet over a manifest directory, with a CRI socket reporting its containers.
pub struct FakeKubelet {
    /// The CRI socket serving the containers (`CriRuntime::new(cri_socket)` reads it).
    pub cri_socket: PathBuf,
    /// The same containers, in memory.
    pub runtime: FakeRuntime,
    shared: Arc<Mutex<Shared>>,
    own_socket_dir: Option<PathBuf>,
    background: Background,
}

impl std::fmt::Debug for FakeKubelet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeKubelet")
            .field("cri_socket", &self.cri_socket)
            .finish_non_exhaustive()
    }
}

static SOCKET_DIRS: AtomicU64 = AtomicU64::new(0);

impl FakeKubelet {
    /// Starts watching `manifest_dir` (which must exist) and serving the CRI socket. Works
    /// from sync and async tests alike (it runs on its own thread).
    pub fn start(manifest_dir: impl Into<PathBuf>, opts: FakeKubeletOptions) -> io::Result<Self> {
        let manifest_dir = manifest_dir.into();
        if !manifest_dir.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "manifest directory {} does not exist",
                    manifest_dir.display()
                ),
            ));
        }
        let (cri_socket, own_socket_dir) = match &opts.cri_socket {
            Some(path) => (path.clone(), None),
            None => {
                let dir = std::env::temp_dir().join(format!(
                    "kubeplane-fake-kubelet-{}-{}",
                    std::process::id(),
                    SOCKET_DIRS.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&dir)?;
                (dir.join("cri.sock"), Some(dir))
            }
        };
        let listener = bind_unix(&cri_socket)?;
        let runtime = FakeRuntime::new();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let tls = self_signed_acceptor(&["localhost", "127.0.0.1"])?;
        let kubelet = Kubelet {
            dir: manifest_dir,
            opts,
            runtime: runtime.clone(),
            shared: shared.clone(),
            tls,
            files: BTreeMap::new(),
            pods: BTreeMap::new(),
        };
        let cri_runtime = runtime.clone();
        let background = Background::spawn("fake-kubelet", move || async move {
            tokio::task::spawn_local(serve_cri(listener, cri_runtime));
            kubelet.run().await;
        })?;
        Ok(Self {
            cri_socket,
            runtime,
            shared,
            own_socket_dir,
            background,
        })
    }

    /// The uid of the pod whose container runs now for `component` (the pod's
    /// `metadata.name`), `None` while none runs (starting, crashed, stopped).
    pub fn running_uid(&self, component: &str) -> Option<String> {
        self.lock().running.get(component).map(|r| r.uid.clone())
    }

    /// The probe port the running container of `component` serves on.
    pub fn endpoint_port(&self, component: &str) -> Option<u16> {
        self.lock().running.get(component).and_then(|r| r.port)
    }

    /// Everything that happened so far, oldest first.
    pub fn history(&self) -> Vec<KubeletEvent> {
        self.lock().history.clone()
    }

    /// Waits (polling) until a container of `uid` runs for `component`; false on timeout.
    pub async fn wait_running(&self, component: &str, uid: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.running_uid(component).as_deref() == Some(uid) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the kubelet: its containers' endpoints and the CRI socket go away.
    pub fn stop(self) {}

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.background.stop();
        let _ = std::fs::remove_file(&self.cri_socket);
        if let Some(dir) = &self.own_socket_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// What the test can read.
#[derive(Default)]
struct Shared {
    running: BTreeMap<String, RunningInfo>,
    history: Vec<KubeletEvent>,
}

struct RunningInfo {
    uid: String,
    port: Option<u16>,
}

/// A pod as one manifest file describes it.
#[derive(Clone)]
struct PodDesc {
    file: String,
    /// `metadata.name`.
    name: String,
    uid: String,
    /// The Pod's spec, serialized: a change with the same uid restarts the container.
    spec: String,
    container: String,
    endpoint: Option<(Endpoint, Vec<String>)>,
    failing: bool,
}

/// One file of the directory, as last read.
struct FileSeen {
    bytes: Vec<u8>,
    parsed: Result<PodDesc, String>,
    /// The pod it last described, for naming an unparseable file's pod.
    last_pod: Option<String>,
}

enum Phase {
    /// The container will be created at `at`.
    Starting { at: Instant },
    /// A container runs; its endpoint task lives in `server`.
    Running {
        id: String,
        crash_at: Option<Instant>,
        server: Option<ContainerServer>,
    },
    /// A failing container exited; it is restarted at `at`.
    CrashWait { at: Instant },
}

struct PodRun {
    want: PodDesc,
    attempt: u32,
    phase: Phase,
}

struct Kubelet {
    dir: PathBuf,
    opts: FakeKubeletOptions,
    runtime: FakeRuntime,
    shared: Arc<Mutex<Shared>>,
    tls: tokio_rustls::TlsAcceptor,
    files: BTreeMap<String, FileSeen>,
    pods: BTreeMap<String, PodRun>,
}

impl Kubelet {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(self.opts.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let desired = self.scan();
            self.sync(desired).await;
        }
    }

    fn record(&self, component: &str, uid: &str, kind: KubeletEventKind) {
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        shared.history.push(KubeletEvent {
            at: SystemTime::now(),
            component: component.to_string(),
            uid: uid.to_string(),
            kind,
        });
    }

    /// Reads the directory as kubelet's file source does: every regular file whose name does
    /// not start with a dot; one pod per name, the first file (by name) wins.
    fn scan(&mut self) -> BTreeMap<String, PodDesc> {
        let mut names: Vec<String> = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.'))
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        self.files.retain(|name, _| names.contains(name));
        let mut desired = BTreeMap::new();
        for name in names {
            let Ok(bytes) = std::fs::read(self.dir.join(&name)) else {
                continue;
            };
            let changed = self.files.get(&name).is_none_or(|f| f.bytes != bytes);
            if changed {
                let parsed = describe(&name, &bytes, &self.opts);
                let last_pod = self.files.get(&name).and_then(|f| f.last_pod.clone());
                let last_pod = match &parsed {
                    Ok(d) => Some(d.name.clone()),
                    Err(_) => last_pod,
                };
                if let Err(e) = &parsed {
                    let component = last_pod.clone().unwrap_or_else(|| name.clone());
                    self.record(
                        &component,
                        "",
                        KubeletEventKind::Unparseable {
                            file: name.clone(),
                            error: e.clone(),
                        },
                    );
                }
                self.files.insert(
                    name.clone(),
                    FileSeen {
                        bytes,
                        parsed,
                        last_pod,
                    },
                );
            }
            let seen = &self.files[&name];
            if let (Ok(desc), Some(pod)) = (&seen.parsed, &seen.last_pod) {
                if desired.contains_key(pod) {
                    if changed {
                        self.record(
                            pod,
                            &desc.uid,
                            KubeletEventKind::Duplicate { file: name.clone() },
                        );
                    }
                } else {
                    desired.insert(pod.clone(), desc.clone());
                }
            }
        }
        desired
    }

    async fn sync(&mut self, desired: BTreeMap<String, PodDesc>) {
        let now = Instant::now();
        let names: Vec<String> = self
            .pods
            .keys()
            .chain(desired.keys())
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for name in names {
            let want = desired.get(&name);
            let same = match (self.pods.get(&name), want) {
                (Some(run), Some(w)) => run.want.uid == w.uid && run.want.spec == w.spec,
                (None, None) => true,
                _ => false,
            };
            if !same {
                let old = self.pods.remove(&name);
                let mut attempt = 0;
                if let Some(old) = old {
                    if want.is_none() {
                        self.record(&name, &old.want.uid, KubeletEventKind::Removed);
                    }
                    if want.is_some_and(|w| w.uid == old.want.uid) {
                        attempt = old.attempt + 1;
                    }
                    self.stop_pod(&name, old);
                }
                if let Some(w) = want {
                    self.record(
                        &name,
                        &w.uid,
                        KubeletEventKind::ManifestSeen {
                            file: w.file.clone(),
                        },
                    );
                    self.pods.insert(
                        name.clone(),
                        PodRun {
                            want: w.clone(),
                            attempt,
                            phase: Phase::Starting {
                                at: now + self.opts.start_delay,
                            },
                        },
                    );
                }
            }
            self.step(&name, now).await;
        }
    }

    /// Kills the pod's running container: its endpoint stops answering before the test can see
    /// that it no longer runs.
    fn stop_pod(&self, name: &str, run: PodRun) {
        let PodRun { want, phase, .. } = run;
        let id = match phase {
            Phase::Running { id, server, .. } => {
                drop(server);
                Some(id)
            }
            _ => None,
        };
        self.shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .running
            .remove(name);
        if let Some(id) = id {
            self.exit(&id, 0);
            self.record(name, &want.uid, KubeletEventKind::Stopped { container: id });
        }
    }

    fn exit(&self, id: &str, code: i32) {
        self.runtime.update(|all| {
            if let Some(c) = all.iter_mut().find(|c| c.id == id) {
                c.state = ContainerRunState::Exited;
                c.exit_code = Some(code);
            }
        });
    }

    /// Timed transitions of one pod.
    async fn step(&mut self, name: &str, now: Instant) {
        let Some(run) = self.pods.get_mut(name) else {
            return;
        };
        match &run.phase {
            Phase::Starting { at } | Phase::CrashWait { at } if now >= *at => {}
            Phase::Running {
                crash_at: Some(at),
                id,
                ..
            } if now >= *at => {
                let id = id.clone();
                let uid = run.want.uid.clone();
                // Replacing the phase drops the endpoint (closed at once).
                run.phase = Phase::CrashWait {
                    at: now + self.opts.crash_backoff,
                };
                run.attempt += 1;
                self.shared
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .running
                    .remove(name);
                self.exit(&id, 1);
                self.record(
                    name,
                    &uid,
                    KubeletEventKind::Crashed {
                        container: id,
                        exit_code: 1,
                    },
                );
                return;
            }
            _ => return,
        }
        // Create and start a container.
        let want = run.want.clone();
        let attempt = run.attempt;
        let id = container_id();
        let created = SystemTime::now();
        self.runtime.update(|all| {
            // kubelet keeps one dead container per container name of a pod.
            all.retain(|c| {
                !(c.pod_uid == want.uid
                    && c.name == want.container
                    && c.state == ContainerRunState::Exited
                    && c.attempt + 1 < attempt)
            });
            all.push(ContainerSeen {
                id: id.clone(),
                name: want.container.clone(),
                pod_uid: want.uid.clone(),
                state: ContainerRunState::Running,
                created_at: created,
                started_at: Some(created),
                exit_code: None,
                attempt,
            });
        });
        self.record(
            name,
            &want.uid,
            KubeletEventKind::Started {
                container: id.clone(),
                attempt,
            },
        );
        let mut crash_at = want.failing.then(|| now + self.opts.crash_after);
        let mut server = None;
        let mut port = None;
        if let Some((endpoint, paths)) = &want.endpoint {
            match self.serve(endpoint, paths.clone(), want.failing).await {
                Ok(set) => {
                    server = Some(set);
                    port = Some(endpoint.port);
                }
                Err((addr, error)) => {
                    self.record(
                        name,
                        &want.uid,
                        KubeletEventKind::BindFailed { addr, error },
                    );
                    crash_at = Some(now);
                }
            }
        }
        if let Some(run) = self.pods.get_mut(name) {
            run.phase = Phase::Running {
                id,
                crash_at,
                server,
            };
        }
        self.shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .running
            .insert(
                name.to_string(),
                RunningInfo {
                    uid: want.uid.clone(),
                    port,
                },
            );
    }

    /// Listens on the probe endpoint; the returned set owns the listener and its connections
    /// (dropping it closes them all).
    async fn serve(
        &self,
        endpoint: &Endpoint,
        paths: Vec<String>,
        failing: bool,
    ) -> Result<ContainerServer, (String, String)> {
        let ip: IpAddr = endpoint
            .host
            .parse()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let addr = SocketAddr::new(ip, endpoint.port);
        // A killed container's port is free again at once (SO_REUSEADDR, set by tokio).
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| (addr.to_string(), e.to_string()))?;
        let healthy_at = (!failing).then(|| Instant::now() + self.opts.healthy_after);
        let tls = self.tls.clone();
        let https = endpoint.https;
        let alive = Arc::new(AtomicBool::new(true));
        let still = alive.clone();
        let mut set = JoinSet::new();
        set.spawn_local(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let _ = tcp.set_nodelay(true);
                let (tls, paths) = (tls.clone(), paths.clone());
                if !still.load(Ordering::SeqCst) {
                    return;
                }
                let still = still.clone();
                conns.spawn_local(async move {
                    let code = |path: &str| {
                        if !paths.iter().any(|p| p == path) {
                            404
                        } else if healthy_at.is_some_and(|at| Instant::now() >= at) {
                            200
                        } else {
                            500
                        }
                    };
                    if https {
                        if let Ok(mut s) = tls.accept(tcp).await {
                            answer(&mut s, code, &still).await;
                        }
                    } else {
                        let mut s = tcp;
                        answer(&mut s, code, &still).await;
                    }
                });
                // Reap finished connections.
                while conns.try_join_next().is_some() {}
            }
        });
        Ok(ContainerServer { alive, _tasks: set })
    }
}

/// A container's endpoint. Dropping it closes the endpoint at once: the flag stops answers
/// synchronously, the aborted tasks then close the listener and the connections.
struct ContainerServer {
    alive: Arc<AtomicBool>,
    _tasks: JoinSet<()>,
}

impl Drop for ContainerServer {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::SeqCst);
    }
}

/// Reads one request head and answers it with the status `code(path)`, unless the container
/// died meanwhile (then the connection is closed without an answer).
async fn answer<S>(s: &mut S, code: impl Fn(&str) -> u16, alive: &AtomicBool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Some(head) = read_request_head(s).await else {
        return;
    };
    let path = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/");
    let path = path.split('?').next().unwrap_or(path);
    if !alive.load(Ordering::SeqCst) {
        return;
    }
    let code = code(path);
    let body = match code {
        200 => "ok",
        404 => "not found",
        _ => "fake kubelet: not healthy",
    };
    write_answer(s, code, body).await;
}

/// Parses a file into what the fake needs of its Pod.
fn describe(file: &str, bytes: &[u8], opts: &FakeKubeletOptions) -> Result<PodDesc, String> {
    let pod = parse_pod(bytes)?;
    let name = pod
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or("the Pod has no metadata.name")?;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let spec = pod.spec.as_ref().ok_or("the Pod has no spec")?;
    let first = spec.containers.first().ok_or("the Pod has no containers")?;
    let spec_json = serde_json::to_string(spec).map_err(|e| e.to_string())?;
    // A static pod without a uid gets one from its content (kubelet hashes the file).
    let uid = if uid.is_empty() {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(bytes);
        digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
    } else {
        uid
    };
    let endpoint = Endpoint::from_pod(&pod, "127.0.0.1").map(|e| {
        let paths = probe_paths(first);
        (e, paths)
    });
    Ok(PodDesc {
        file: file.to_string(),
        name,
        uid,
        spec: spec_json,
        container: first.name.clone(),
        endpoint,
        failing: (opts.is_failing)(&pod),
    })
}

/// Every HTTP path the container's probes ask for.
fn probe_paths(c: &Container) -> Vec<String> {
    let probes: [&Option<Probe>; 3] = [&c.startup_probe, &c.liveness_probe, &c.readiness_probe];
    let mut paths: Vec<String> = probes
        .into_iter()
        .flatten()
        .filter_map(|p| p.http_get.as_ref())
        .map(|g| g.path.clone().unwrap_or_else(|| "/".into()))
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

fn container_id() -> String {
    static N: AtomicU64 = AtomicU64::new(1);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{}-{n}-{t}", std::process::id()));
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A minimal static Pod manifest as kubeadm writes them: one container `name` running
/// `name` with `args`, an HTTPS startup and liveness probe on 127.0.0.1:`port` `/livez`, a
/// readiness probe on `/readyz`. For tests of the fake and of code that only needs some Pod.
pub fn static_pod_yaml(name: &str, uid: &str, port: u16, args: &[&str]) -> String {
    let mut command = format!("    - {name}\n");
    for a in args {
        command.push_str(&format!("    - {a:?}\n"));
    }
    let probe = |path: &str| {
        format!(
            "      httpGet:\n        host: 127.0.0.1\n        path: {path}\n        port: {port}\n        scheme: HTTPS\n"
        )
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: kube-system\n  uid: {uid:?}\n\
         spec:\n  hostNetwork: true\n  containers:\n  - name: {name}\n    image: registry.k8s.io/{name}:v1.36.2\n    command:\n{command}\
         \x20   startupProbe:\n{}\x20   livenessProbe:\n{}\x20   readinessProbe:\n{}",
        probe("/livez"),
        probe("/livez"),
        probe("/readyz"),
    )
}
