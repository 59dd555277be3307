//! Flag knowledge: supported versions, kubeplane's merge and protection policy.

pub mod policy;
pub mod version;

pub use version::{KubeVersion, VersionError};
