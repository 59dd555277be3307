//! The kubeplane API: `ControlPlaneConfig` and `ControlPlaneNode` (group `kubeplane.io`,
//! version `v1alpha1`, cluster-scoped). Pure types: no I/O.

mod audit;
pub mod bounds;
mod common;
mod component;
mod config;
mod document;
mod encryption;
mod images;
mod node;
mod rollout;
mod status;
mod upgrade;

pub use common::{Condition, find_condition, set_condition};
pub use component::Component;
pub use config::*;
pub use document::{API_VERSION, DocumentError, parse_config};
pub use encryption::{
    EncryptionProvider, EncryptionStatus, EtcdAccess, KeyCount, KeyRotation, ManagedEncryption,
    Migration, MigrationStatus, NodeEncryption, Verification, VerificationStatus,
};
pub use images::ImagePullSecretRef;
pub use node::*;
pub use upgrade::UpgradePolicy;

use kube::CustomResourceExt;

/// The API group of kubeplane's custom resources.
pub const GROUP: &str = "kubeplane.io";

/// Both CustomResourceDefinitions, as `kubeplane crd` prints them.
pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    vec![ControlPlaneConfig::crd(), ControlPlaneNode::crd()]
}
