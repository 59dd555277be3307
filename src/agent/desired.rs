//! What the manifest directory should hold right now, shared by the engine (which changes
//! it) and the drift handler (which enforces it).
//!
//! The engine sets a component's bytes and writes the file while holding the lock; the drift
//! handler reads, compares and restores while holding the same lock. So the agent's own
//! writes are never mistaken for drift: whenever the lock is free, the desired bytes and the
//! file the agent last wrote agree.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use crate::api::Component;

/// The desired manifests, behind one lock.
#[derive(Debug, Default)]
pub struct Desired {
    inner: Mutex<DesiredFiles>,
}

/// The desired manifest bytes per managed component.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredFiles {
    manifests: BTreeMap<Component, Vec<u8>>,
}

impl Desired {
    /// Nothing desired yet: nothing is managed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Locks the desired files. Hold the guard across the write (engine) or the
    /// compare-and-restore (drift), never across an `.await`.
    pub fn lock(&self) -> MutexGuard<'_, DesiredFiles> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl DesiredFiles {
    /// The managed components.
    pub fn managed(&self) -> Vec<Component> {
        self.manifests.keys().copied().collect()
    }

    /// The desired bytes of a component's manifest.
    pub fn get(&self, c: Component) -> Option<&[u8]> {
        self.manifests.get(&c).map(Vec::as_slice)
    }

    /// Sets a component's desired bytes.
    pub fn set(&mut self, c: Component, bytes: Vec<u8>) {
        self.manifests.insert(c, bytes);
    }

    /// Stops managing a component.
    pub fn remove(&mut self, c: Component) {
        self.manifests.remove(&c);
    }
}
