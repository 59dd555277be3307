//! kubeplane keeps a cluster's control-plane static pods in the state one custom resource
//! declares.
//!
//! Layers, dependencies pointing down only:
//! - pure: [`api`] (types), [`flags`] (flag knowledge), [`render`] (Pods from a spec),
//!   [`validation`] (problems in a spec) — no I/O, no async;
//! - I/O: the [`agent`] and operator roles;
//! - [`cli`]: the subcommands `main.rs` wires up.

pub mod agent;
pub mod api;
pub mod cli;
pub mod flags;
pub mod render;
pub mod validation;
