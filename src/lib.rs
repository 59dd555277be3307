//! kubeplane keeps a cluster's control-plane static pods in the state one custom resource
//! declares.
//!
//! Layers, dependencies pointing down only:
//! - pure: [`api`] (types), [`flags`] (flag knowledge), [`render`] (Pods from a spec),
//!   [`validation`] (problems in a spec), [`adopt`] (import and diff of existing
//!   manifests) — no I/O, no async. They live in the crate `kubeplane_core` (`core/`), whose
//!   dependencies the compiler and `tests/core_layer.rs` keep free of I/O crates, and are
//!   re-exported here under their own names;
//! - I/O: the [`agent`] and operator roles, [`facts`] (what the host tells the renderer) and
//!   [`fsio`] (crash-safe file writes);
//! - [`migrate`]: moving systemd units to static Pods on a node (service manager, files);
//! - [`cli`]: the subcommands `main.rs` wires up;
//! - `testkit` (tests, benches and the e2e suite only; feature `testkit`): fakes and builders.

pub use kubeplane_core::{adopt, api, encryption, flags, render, validation};

pub mod agent;
pub mod cli;
pub mod facts;
pub mod fsio;
pub mod migrate;
pub mod operator;
pub mod telemetry;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
