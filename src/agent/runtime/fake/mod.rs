//! Test doubles for [`super`], built with `cfg(test)` or the `testkit` feature (the crate's
//! integration tests get it through the dev-dependency on the package itself):
//!
//! - [`FakeRuntime`] (`containers`): a table of containers and an image store; implements
//!   [`ContainerRuntime`](super::ContainerRuntime) in memory.
//! - [`CriServer`] (`cri`): a real CRI v1 `RuntimeService` gRPC server (tonic) on a Unix socket
//!   that answers `ListContainers` (honouring the label selector) and `ContainerStatus` from a
//!   [`FakeRuntime`], and `Unimplemented` for every other call. Runs on its own thread.
//! - [`FakeKubelet`] (`kubelet`, its loop in `pods`, what it reads of a file in `manifest`,
//!   its containers' endpoints in `probe`): follows a real kubelet's static-pod rules (as
//!   measured on v1.36.2) over a manifest directory: a new `metadata.uid` stops the old
//!   container and, after a delay, creates a new one labelled with the uid; a file that does
//!   not parse, or is removed, stops its pod; each running container serves its probe endpoint
//!   over HTTPS; a "failing" revision is never healthy and crash-loops. Its containers are
//!   served by a [`CriServer`].
//!
//! Everything runs on a thread of its own with its own tokio runtime (`background`): the fake
//! keeps working while the test blocks (waiting for a child process, sleeping) and survives the
//! kill of the process under test. Dropping the value stops it.

mod background;
mod containers;
mod cri;
mod kubelet;
mod manifest;
mod pods;
mod probe;

pub use self::containers::{FakeImages, FakeRuntime};
pub use self::cri::CriServer;
pub use self::kubelet::{
    FAIL_MARKER, FailPredicate, FakeKubelet, FakeKubeletOptions, KubeletEvent, KubeletEventKind,
    has_arg,
};
pub use self::manifest::static_pod_yaml;
