//! PLACEHOLDER (replaced by the `cri` branch): local evidence from the container runtime.

use std::time::SystemTime;

use futures::future::BoxFuture;

/// The default CRI endpoint.
pub const DEFAULT_ENDPOINT: &str = "unix:///run/containerd/containerd.sock";

/// A container's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerRunState {
    /// Created, not started.
    Created,
    /// Running.
    Running,
    /// Exited.
    Exited,
    /// Unknown.
    Unknown,
}

/// One container kubelet created for a pod, as the runtime reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSeen {
    /// Container id.
    pub id: String,
    /// Container name.
    pub name: String,
    /// `io.kubernetes.pod.uid`.
    pub pod_uid: String,
    /// State.
    pub state: ContainerRunState,
    /// Created.
    pub created_at: SystemTime,
    /// Started.
    pub started_at: Option<SystemTime>,
    /// Exit code.
    pub exit_code: Option<i32>,
    /// Attempt.
    pub attempt: u32,
}

/// The container runtime.
pub trait ContainerRuntime: Send + Sync {
    /// Containers labelled `io.kubernetes.pod.uid=<uid>`.
    fn containers_of_pod<'a>(
        &'a self,
        pod_uid: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ContainerSeen>, String>>;
}

/// PLACEHOLDER: the CRI client.
pub struct CriRuntime {
    endpoint: String,
}

impl CriRuntime {
    /// A client for `endpoint`.
    pub fn new(endpoint: &str) -> Result<Self, String> {
        Ok(CriRuntime {
            endpoint: endpoint.to_string(),
        })
    }
}

impl ContainerRuntime for CriRuntime {
    fn containers_of_pod<'a>(
        &'a self,
        _pod_uid: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ContainerSeen>, String>> {
        Box::pin(async move { Err(format!("{}: not implemented", self.endpoint)) })
    }
}
