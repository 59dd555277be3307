//! Flag knowledge: supported versions, the flag table (which flags each component accepts in
//! which version), kubeplane's merge and protection policy.

pub mod policy;
pub mod table;
pub mod upgrade;
pub mod version;

pub use table::{FlagInfo, FlagStatus, FlagType, Minor, all, find, known, lookup, suggest};
pub use version::{KubeVersion, VersionError};
