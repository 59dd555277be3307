//! The dev-only test kit, built with `cfg(test)` or the `testkit` feature (the crate's own
//! integration tests, benches and e2e suite get it through the dev-dependency on the package
//! itself; the shipped binary never has it — `tests/packaging.rs` checks the `dist` build's
//! dependency graph):
//!
//! - [`apiserver`]: the one fake Kubernetes API server (in-memory objects, list/watch, patches,
//!   an outage, every request recorded), served over HTTP or handed to a `kube::Client`
//!   in-process;
//! - `cluster` (unit tests only): one node's view of that server for the agent's tests (mirror
//!   pods, its `ControlPlaneNode`, Secrets, what the agent wrote), in virtual time;
//! - [`mock`]: the mocked API of the unit tests (a `kube::Client` over `tower_test`, in the
//!   controller-rs style) and the wire pieces the fake shares (query strings, `Status`,
//!   Secrets);
//! - [`tls`]: the self-signed HTTPS endpoint (health checks, the fake kubelet's probes);
//! - [`crate::agent::runtime::fake`]: the fake container runtime (CRI) and fake kubelet;
//! - [`builders`]: objects and files the tests share.

pub mod apiserver;
pub mod builders;
#[cfg(test)]
pub mod cluster;
pub mod mock;
pub mod tls;
