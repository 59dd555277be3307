//! The key lifecycle as pure transitions: given the keys Secret's state, the spec, where the
//! nodes stand and what the rewrite and the check found, what to do next. The operator
//! (`operator::encryption`) does the I/O: it generates key material (passed in as
//! [`Input::fresh_secret`]), writes the Secret, rewrites objects, reads etcd.
//!
//! A step advances only when every node runs kube-apiserver healthy with the current step's
//! configuration ([`NodeView::current`]), including nodes that left the selector but still
//! have a ControlPlaneNode (their API server may still run and must read what the others
//! write). Nothing ever removes a key while a stored object may still need it.

use super::{Desired, IDENTITY, Key, KeyState, Step};
use crate::api::EncryptionProvider;

/// One node as the lifecycle sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    /// The node.
    pub name: String,
    /// Whether the config selects it (an unselected node still counts until its
    /// ControlPlaneNode is deleted).
    pub selected: bool,
    /// Whether its kube-apiserver runs healthy with the current configuration.
    pub current: bool,
}

/// How the rewrite of stored objects stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rewrite {
    /// Not started, or in progress.
    Pending,
    /// Every object of every resource was rewritten (or changed or deleted by someone else).
    Complete,
}

/// What the independent check of etcd found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// No etcd access configured: the rewrite pass is the evidence.
    NotConfigured,
    /// Not read yet (the rewrite is not complete).
    NotRead,
    /// Stored objects per key name (`identity` for plain text).
    Counts(Vec<(String, i64)>),
    /// etcd could not be read.
    Failed(String),
}

/// Everything one decision needs.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    /// The spec, defaults applied.
    pub desired: &'a Desired,
    /// The keys Secret's state; `None` when the Secret does not exist.
    pub state: Option<&'a KeyState>,
    /// The step `status.encryption` reported last (to notice a keys Secret that vanished).
    pub reported_step: Option<&'a str>,
    /// The nodes.
    pub nodes: &'a [NodeView],
    /// The rewrite.
    pub rewrite: Rewrite,
    /// The check.
    pub check: Check,
    /// Unix seconds now.
    pub now_unix: i64,
    /// Base64 of fresh random key bytes (used only when a key is generated).
    pub fresh_secret: &'a str,
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Write this state and its configuration to the keys Secret (one update). `retire`
    /// lists keys to copy into the backup Secret first.
    Write {
        /// The next state.
        state: KeyState,
        /// Keys leaving the configuration, to back up before the write.
        retire: Vec<Key>,
        /// What happened.
        message: String,
    },
    /// Wait for the nodes.
    Wait(String),
    /// Rewrite stored objects (start or go on).
    Rewrite(String),
    /// Read etcd and decide again.
    Check,
    /// Halted: nothing changes until the cause is fixed. The message says what is safe.
    Halt(String),
    /// At rest.
    Stable(String),
}

/// The next step. See the module documentation.
pub fn next(input: &Input<'_>) -> Outcome {
    let Some(state) = input.state else {
        return first(input);
    };
    let lagging: Vec<&str> = input
        .nodes
        .iter()
        .filter(|n| !n.current)
        .map(|n| n.name.as_str())
        .collect();
    let rolled = lagging.is_empty() && input.nodes.iter().any(|n| n.selected);
    let target = state.target.as_str();
    let waiting = |what: &str| {
        let unselected: Vec<&str> = input
            .nodes
            .iter()
            .filter(|n| !n.current && !n.selected)
            .map(|n| n.name.as_str())
            .collect();
        let mut m = format!(
            "{what}: waiting for kube-apiserver on {} to run this step's configuration",
            if lagging.is_empty() {
                "a selected node".to_string()
            } else {
                lagging.join(", ")
            }
        );
        if !unselected.is_empty() {
            m.push_str(&format!(
                "; {} left the selector but keep their ControlPlaneNode: if their kube-apiserver is gone for good, delete it (kubectl delete cpn NAME), else select them again",
                unselected.join(", ")
            ));
        }
        m
    };
    match state.step {
        Step::KeyAdded => {
            if !rolled {
                return Outcome::Wait(waiting(&format!(
                    "key {target} added as a read-only key; safe to wait, and safe to stop here: the old key still writes"
                )));
            }
            let mut next = state.clone();
            next.step = Step::KeyPrimary;
            next.keys = promote(&state.keys, target);
            Outcome::Write {
                state: next,
                retire: Vec::new(),
                message: format!("every API server reads key {target}; making it the write key"),
            }
        }
        Step::KeyPrimary => {
            if !rolled {
                return Outcome::Wait(waiting(&format!(
                    "key {target} made the write key; both keys read, nothing can be lost"
                )));
            }
            let mut next = state.clone();
            next.step = Step::Migrating;
            Outcome::Write {
                state: next,
                retire: Vec::new(),
                message: format!(
                    "every API server writes with key {target}; rewriting every stored object of {}",
                    state.resources.join(", ")
                ),
            }
        }
        Step::Migrating => {
            if !rolled {
                return Outcome::Wait(waiting(&format!("rewriting objects with key {target}")));
            }
            match (&input.rewrite, &input.check) {
                (Rewrite::Pending, _) => Outcome::Rewrite(format!(
                    "rewriting every stored object of {} with key {target}",
                    state.resources.join(", ")
                )),
                (Rewrite::Complete, Check::NotRead) => Outcome::Check,
                (Rewrite::Complete, Check::Failed(e)) => Outcome::Halt(format!(
                    "the rewrite is complete but etcd could not be read to verify it: {e}; every key is still in the configuration, nothing is lost; fix the access in spec.apiServer.encryption.managed.verification.etcd (or remove it to rely on the rewrite pass)"
                )),
                (Rewrite::Complete, Check::Counts(counts)) => {
                    let stale: Vec<String> = counts
                        .iter()
                        .filter(|(k, n)| *n > 0 && k != target)
                        .map(|(k, n)| format!("{n} under {k}"))
                        .collect();
                    if stale.is_empty() {
                        migrated(state, format!("etcd holds every object under key {target}"))
                    } else {
                        Outcome::Halt(format!(
                            "after the rewrite etcd still holds objects not under key {target}: {}; the old key stays in the configuration, nothing is lost; the rewrite runs again",
                            stale.join(", ")
                        ))
                    }
                }
                (Rewrite::Complete, Check::NotConfigured) => migrated(
                    state,
                    format!("every stored object was rewritten with key {target}"),
                ),
            }
        }
        Step::Migrated => {
            if !rolled {
                return Outcome::Wait(waiting(&format!("objects rewritten with key {target}")));
            }
            let retire: Vec<Key> = state
                .keys
                .iter()
                .filter(|k| k.name != target && !k.is_identity())
                .cloned()
                .collect();
            let mut next = state.clone();
            next.step = Step::OldKeyRetired;
            next.keys.retain(|k| k.name == target);
            next.last_rotation_unix = Some(input.now_unix);
            let names: Vec<&str> = state
                .keys
                .iter()
                .filter(|k| k.name != target)
                .map(|k| k.name.as_str())
                .collect();
            Outcome::Write {
                state: next,
                retire,
                message: format!(
                    "removing {} from the configuration (kept in the backup Secret)",
                    names.join(", ")
                ),
            }
        }
        Step::OldKeyRetired => at_rest(input, state, rolled, &waiting),
    }
}

/// The resting state: finish rolling the last step, then start a rotation when asked.
fn at_rest(
    input: &Input<'_>,
    state: &KeyState,
    rolled: bool,
    waiting: &dyn Fn(&str) -> String,
) -> Outcome {
    let desired = input.desired;
    let active = state.active().cloned().unwrap_or_else(Key::identity);
    if !rolled {
        return Outcome::Wait(waiting(&format!(
            "old keys retired, {} writes",
            active.name
        )));
    }
    if desired.resources != state.resources {
        return Outcome::Halt(format!(
            "spec.apiServer.encryption.managed.resources changed from [{}] to [{}]: changing the encrypted resources of managed encryption is not supported (objects of a resource taken out would stay encrypted); set them back to [{}]",
            state.resources.join(", "),
            desired.resources.join(", "),
            state.resources.join(", ")
        ));
    }
    let provider_change = desired.provider != active.provider;
    let asked = desired.rotation != state.observed_rotation;
    let due = match (desired.interval_seconds, state.last_rotation_unix) {
        (Some(every), Some(last)) => input.now_unix >= last.saturating_add(every),
        _ => false,
    };
    if desired.provider == EncryptionProvider::Identity && active.is_identity() {
        return Outcome::Stable("encryption is off (identity)".into());
    }
    if !(provider_change || asked || due) {
        return Outcome::Stable(format!(
            "{} key {} writes on every node",
            active.provider.name(),
            active.name
        ));
    }
    let why = if provider_change {
        format!(
            "provider {} -> {}",
            active.provider.name(),
            desired.provider.name()
        )
    } else if asked {
        format!(
            "rotation.generation {} -> {}",
            state.observed_rotation, desired.rotation
        )
    } else {
        "rotation.intervalDays passed".to_string()
    };
    add_key(input, state, why)
}

/// The first decision, before the keys Secret exists.
fn first(input: &Input<'_>) -> Outcome {
    if let Some(step) = input.reported_step {
        return Outcome::Halt(format!(
            "the keys Secret kube-system/{} is gone although status reported step {step}: objects encrypted with its keys cannot be read without them; restore it (from your backup, or its -retired copy for retired keys); kubeplane will not generate new keys in its place",
            input.desired.secret_name
        ));
    }
    let desired = input.desired;
    let empty = KeyState {
        step: Step::OldKeyRetired,
        resources: desired.resources.clone(),
        keys: vec![Key::identity()],
        target: IDENTITY.into(),
        observed_rotation: desired.rotation,
        serial: 0,
        last_rotation_unix: None,
    };
    if desired.provider == EncryptionProvider::Identity {
        return Outcome::Write {
            state: empty,
            retire: Vec::new(),
            message: "encryption is off (identity)".into(),
        };
    }
    add_key(input, &empty, "encryption turned on".into())
}

/// A new key (or identity, to turn encryption off) listed second.
fn add_key(input: &Input<'_>, state: &KeyState, why: String) -> Outcome {
    let desired = input.desired;
    let mut next = state.clone();
    let key = if desired.provider == EncryptionProvider::Identity {
        Key::identity()
    } else {
        next.serial = state.serial.saturating_add(1);
        Key {
            name: format!("key{}-{}", next.serial, input.now_unix),
            provider: desired.provider,
            secret: input.fresh_secret.to_string(),
        }
    };
    next.keys.retain(|k| k.name != key.name);
    next.target = key.name.clone();
    let name = key.name.clone();
    next.keys.push(key);
    next.step = Step::KeyAdded;
    next.observed_rotation = desired.rotation;
    Outcome::Write {
        state: next,
        retire: Vec::new(),
        message: format!("{why}: key {name} added as a read-only key"),
    }
}

fn migrated(state: &KeyState, evidence: String) -> Outcome {
    let mut next = state.clone();
    next.step = Step::Migrated;
    Outcome::Write {
        state: next,
        retire: Vec::new(),
        message: format!("{evidence}; the old key is no longer needed"),
    }
}

/// The keys with `target` moved to the front.
fn promote(keys: &[Key], target: &str) -> Vec<Key> {
    let mut out: Vec<Key> = keys.iter().filter(|k| k.name == target).cloned().collect();
    out.extend(keys.iter().filter(|k| k.name != target).cloned());
    out
}

#[cfg(test)]
mod tests;
