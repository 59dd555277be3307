//! Leader election between operator replicas.
//!
//! Choice: `kube-lease-manager` 0.13, which supports kube 5 / k8s-openapi 0.29, so no pin of an
//! older kube and no lease loop of our own to get right. It takes and renews a
//! `coordination.k8s.io/v1` Lease with server-side apply (conflicts are detected by the API
//! server, so two replicas cannot both hold it), tolerates clock skew up to its grace period,
//! and runs its loop in a task whose state comes through a `watch` channel. Only the holder
//! runs the controller; the process exits (non-zero) as soon as the channel says leadership is
//! lost or the task ends, so a deposed leader never keeps reconciling: its restart makes it a
//! standby. On SIGTERM the lease is released, so the other replica takes over at once instead of
//! waiting for the lease to expire.
//!
//! Known limit of the crate: while the API server is unreachable the holder cannot renew, and
//! it learns that it lost the lease only when the API answers again; it cannot write anything in
//! between either, so it cannot move a node during that time.

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Seconds a lease stays valid after its last renewal (kube-controller-manager uses 15).
pub const LEASE_DURATION_SECONDS: u64 = 15;

/// Seconds before expiry the holder renews (so it renews every 10 seconds).
pub const LEASE_GRACE_SECONDS: u64 = 5;

/// This replica's identity in the Lease: `<pod or host name>_<random>`, the shape
/// Kubernetes components use.
pub fn identity() -> String {
    use std::hash::{BuildHasher, Hasher};
    let host = std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "kubeplane-operator".into());
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.write_u32(std::process::id());
    format!("{host}_{:016x}", h.finish())
}

/// A running election: the leadership channel and the lease task.
pub struct Election {
    /// `true` while this replica holds the Lease.
    pub is_leader: watch::Receiver<bool>,
    /// The lease loop; it ends (releasing the Lease) when `is_leader` is dropped.
    pub task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
}

/// Joins the election on Lease `namespace/name` (created when missing).
pub async fn elect(
    client: Client,
    namespace: &str,
    name: &str,
    identity: &str,
) -> Result<Election, LeaseManagerError> {
    let manager = LeaseManagerBuilder::new(client, name)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(LEASE_DURATION_SECONDS)
        .with_grace(LEASE_GRACE_SECONDS)
        .build()
        .await?;
    let (is_leader, task) = manager.watch().await;
    Ok(Election { is_leader, task })
}

/// Resolves when this replica holds the lease (`Ok`), or when the lease task is gone (`Err`).
pub async fn acquired(rx: &mut watch::Receiver<bool>) -> Result<(), watch::error::RecvError> {
    rx.wait_for(|leader| *leader).await.map(|_| ())
}

/// Resolves when this replica no longer holds the lease, or the lease task is gone.
pub async fn lost(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|leader| !*leader).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_name_the_host_and_differ() {
        let a = identity();
        let b = identity();
        assert_ne!(a, b);
        let (host, suffix) = a.rsplit_once('_').expect("host_suffix");
        assert!(!host.is_empty());
        assert_eq!(suffix.len(), 16);
    }

    #[tokio::test]
    async fn leadership_changes_are_followed() {
        let (tx, mut rx) = watch::channel(false);
        let (got, leading) = tokio::sync::oneshot::channel();
        let waiter = tokio::spawn(async move {
            acquired(&mut rx).await.expect("acquired");
            got.send(()).unwrap();
            lost(&mut rx).await;
            "lost"
        });
        tx.send(true).unwrap();
        leading.await.expect("became leader");
        assert!(!waiter.is_finished());
        tx.send(false).unwrap();
        assert_eq!(waiter.await.unwrap(), "lost");

        // A dropped lease task (closed channel) is never taken for leadership.
        let (tx, mut rx) = watch::channel(false);
        drop(tx);
        assert!(acquired(&mut rx).await.is_err());
        lost(&mut rx).await; // returns at once
    }
}
