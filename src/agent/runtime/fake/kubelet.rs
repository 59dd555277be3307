//! The fake kubelet's face to the test: its options, what it did ([`KubeletEvent`]), and the
//! running [`FakeKubelet`] with its CRI socket.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Pod;

use super::FakeRuntime;
use super::background::Background;
use super::cri::{bind_unix, serve_cri};
use super::pods::Kubelet;
use crate::testkit::tls::self_signed_acceptor;

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
        let kubelet = Kubelet::new(manifest_dir, opts, runtime.clone(), shared.clone(), tls);
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
pub(super) struct Shared {
    pub(super) running: BTreeMap<String, RunningInfo>,
    pub(super) history: Vec<KubeletEvent>,
}

pub(super) struct RunningInfo {
    pub(super) uid: String,
    pub(super) port: Option<u16>,
}
