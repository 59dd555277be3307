//! Adopting a node that already runs a control plane: `kubeplane import` (the config that
//! reproduces the node's manifests) and `kubeplane diff` (what writing a render would change
//! on disk). Pure: callers read the files; nothing here does I/O.
//!
//! Adoption must restart nothing: a manifest on disk that means the same Pod as the render
//! ([`crate::render::equivalent`]) is left as it is.

pub mod diff;
pub mod hardway;
pub mod import;
pub mod manifest;
pub mod unit;

pub use diff::{Change, FileStatus, changes, compare_manifest, compare_side_file, unified_diff};
pub use import::{ImportError, ImportInput, Imported, Lossy, ManifestFile, Skipped, import};
pub use manifest::{FileKind, Parsed, classify_file, component_of, parse_pod, read_pod};
