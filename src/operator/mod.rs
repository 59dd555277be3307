//! The operator: reconciles each `ControlPlaneConfig` into one `ControlPlaneNode` per selected
//! node and rolls revisions out one node at a time.

pub mod rollout;
pub mod metrics;
pub mod reconcile;
pub mod selection;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod scenarios;
