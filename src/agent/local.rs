//! `kubeplane apply`: the agent's write → wait → rollback cycle driven by a local file, with
//! no operator and no API server — for the first node of a new cluster and for recovery.
//!
//! The command line (`crate::cli`) parses, validates (refused on errors) and renders the file
//! for this node with local facts and turns it into a node spec; this module hands that spec
//! to the same [`Engine`] the agent uses. Without an API there is no mirror pod to check: a
//! component counts as updated when its local endpoint answers for `minReadySeconds`. A
//! second run with the same input changes nothing on disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::desired::Desired;
use super::engine::{Engine, EngineError, EngineParts, NoSecrets, Outcome};
use super::files::NodeDirs;
use super::health::HttpsCheck;
use super::status::{self, StatusBoard};
use crate::api::{Component, ControlPlaneConfigSpec, ControlPlaneNodeSpec};
use crate::render::{self, sha256_hex};

/// What `kubeplane apply` runs the engine with (built from its command line in
/// [`crate::cli`]).
#[derive(Debug, Clone)]
pub struct LocalNode {
    /// This node's name (mirror pod names, config hashes).
    pub node_name: String,
    /// The directory kubelet reads static Pod manifests from.
    pub manifest_dir: PathBuf,
    /// The state directory (history, state.json, side files); any filesystem.
    pub state_dir: PathBuf,
    /// How many revisions of every managed file to keep.
    pub history: usize,
    /// The container runtime's CRI socket; `none` judges by the local endpoint alone.
    pub container_runtime_endpoint: String,
}

/// The digest of the encryption configuration already on disk, when the spec takes it from
/// a Secret: that Secret cannot be read without an API, and the file on disk makes the render
/// exact.
pub fn encryption_digest_on_disk(
    spec: &ControlPlaneConfigSpec,
    state_dir: &Path,
) -> Option<String> {
    render::encryption_secret(spec).and_then(|_| {
        let path = PathBuf::from(render::files_dir(
            &state_dir.display().to_string(),
            Component::ApiServer,
        ))
        .join("encryption-config.yaml");
        super::files::read_nofollow(&path)
            .ok()
            .flatten()
            .map(|b| sha256_hex(&b))
    })
}

/// Writes `spec` on this node through the agent's [`Engine`] (and with `wait`, waits for it
/// and rolls back on failure), printing progress to stdout.
pub async fn apply(
    node: &LocalNode,
    spec: &ControlPlaneNodeSpec,
    wait: bool,
) -> Result<Outcome, EngineError> {
    let board = StatusBoard::new();
    let printer = status::spawn_local_printer(board.clone(), Box::new(std::io::stdout()));
    let engine = Engine::open(EngineParts {
        node_name: node.node_name.clone(),
        dirs: NodeDirs::new(&node.manifest_dir, &node.state_dir),
        history: node.history,
        pods: None,
        runtime: super::runtime_from_arg(&node.container_runtime_endpoint),
        health: Arc::new(HttpsCheck::new()),
        secrets: Arc::new(NoSecrets),
        board: board.clone(),
        desired: Arc::new(Desired::new()),
    });
    let result = match engine {
        Ok(mut engine) => Ok(engine.apply(spec, None, wait).await),
        Err(e) => Err(e),
    };
    board.flush(Duration::from_secs(2)).await;
    printer.abort();
    result
}
