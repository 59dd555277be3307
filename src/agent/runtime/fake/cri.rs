//! The CRI server: the `RuntimeService` and `ImageService` test double over a
//! [`FakeRuntime`], on a Unix socket.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::{ImageService, ImageServiceServer};
use k8s_cri::v1::runtime_service_server::{RuntimeService, RuntimeServiceServer};
use tonic::{Request, Response, Status};

use super::super::{
    CONTAINER_NAME_LABEL, ContainerRunState, ContainerSeen, POD_UID_LABEL, cri_time,
};
use super::FakeRuntime;
use super::background::Background;

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
pub(super) fn bind_unix(socket: &Path) -> io::Result<std::os::unix::net::UnixListener> {
    match std::fs::remove_file(socket) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = std::os::unix::net::UnixListener::bind(socket)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves the CRI double on `listener` until the future is dropped.
pub(super) async fn serve_cri(listener: std::os::unix::net::UnixListener, runtime: FakeRuntime) {
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
