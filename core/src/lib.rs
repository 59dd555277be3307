//! The pure layer of kubeplane: types, flag knowledge, rendering, validation and adoption.
//!
//! Everything here is a function of its arguments: no I/O, no async, no API client. The
//! compiler keeps it so: this crate's dependencies have no tokio, no kube client, no HTTP and
//! no file-watching crate (`tests/core_layer.rs` in the root package checks its dependency
//! tree, and `.ci/run` builds this crate alone, where `kube` has only its `derive` feature).
//! The I/O roles (agent, operator, CLI) live in the root package `kubeplane`, which
//! re-exports these modules under the same names (`kubeplane::render`, ...).
//!
//! - [`api`]: `ControlPlaneConfig`, `ControlPlaneNode` and YAML document parsing;
//! - [`flags`]: versions, the flag table (`flags/data/*.yaml`), merge/protect policy;
//! - [`render`]: spec + node facts → Pods, side files, hashes;
//! - [`validation`]: every problem in a spec, with the field and the fix;
//! - [`adopt`]: import (manifests or systemd units → config) and diff (render vs disk).

pub mod adopt;
pub mod api;
pub mod encryption;
pub mod flags;
pub mod render;
pub mod validation;
