//! kubeplane's policy for flags: which ones merge with the defaults instead of replacing
//! them, which ones are protected, which ones name certificate files.
//!
//! This is kubeplane's own decision, not upstream fact; the upstream facts (which flags exist
//! in which version) live in the flag table.

use crate::api::Component;

/// How a flag given in `extraArgs` combines with a default of the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// The given values replace every default value of the flag.
    Replace,
    /// Comma-separated list: the given items are added to the default items, in order, each
    /// once.
    List,
    /// Comma-separated `key=value` pairs: the given keys are added, or replace the default
    /// value of the same key.
    Map,
}

/// How `extraArgs` entries of a flag combine with its defaults.
///
/// `authorization-mode` replaces: the order of authorizers decides which one answers first,
/// so kubeplane does not guess where an added mode belongs. Validation warns when a
/// replacement drops `Node` or `RBAC`.
pub fn merge_of(component: Component, flag: &str) -> Merge {
    match (component, flag) {
        (Component::ApiServer, "enable-admission-plugins" | "disable-admission-plugins") => {
            Merge::List
        }
        (Component::ApiServer, "runtime-config") => Merge::Map,
        (_, "feature-gates") => Merge::Map,
        _ => Merge::Replace,
    }
}

/// Default flags a given flag displaces, because the component refuses both together.
pub fn displaces(component: Component, flag: &str) -> &'static [&'static str] {
    match (component, flag) {
        // kube-apiserver refuses --authorization-mode together with --authorization-config.
        (Component::ApiServer, "authorization-config") => &["authorization-mode"],
        _ => &[],
    }
}

/// Flags whose replacement needs an explicit opt-in (`allowProtectedOverrides`): they point
/// at the cluster's trust anchors and keys, and a wrong value locks clients out or breaks
/// every service-account token.
pub fn protected(component: Component) -> &'static [&'static str] {
    match component {
        Component::ApiServer => &[
            "client-ca-file",
            "etcd-cafile",
            "etcd-certfile",
            "etcd-keyfile",
            "kubelet-client-certificate",
            "kubelet-client-key",
            "proxy-client-cert-file",
            "proxy-client-key-file",
            "requestheader-client-ca-file",
            "service-account-issuer",
            "service-account-key-file",
            "service-account-signing-key-file",
            "tls-cert-file",
            "tls-private-key-file",
        ],
        Component::ControllerManager => &[
            "client-ca-file",
            "cluster-signing-cert-file",
            "cluster-signing-key-file",
            "requestheader-client-ca-file",
            "root-ca-file",
            "service-account-private-key-file",
            "tls-cert-file",
            "tls-private-key-file",
        ],
        Component::Scheduler => &["client-ca-file", "tls-cert-file", "tls-private-key-file"],
    }
}

/// Whether a flag is protected for a component.
pub fn is_protected(component: Component, flag: &str) -> bool {
    protected(component).contains(&flag)
}

/// What a certificate-bearing flag points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertFile {
    /// A PEM file whose first certificate matters.
    Pem,
    /// A kubeconfig whose client certificate matters.
    Kubeconfig,
}

/// Flags that name a certificate (or a kubeconfig with a client certificate) the component
/// reads at start-up. The agent reports their expiry and restarts the component when one
/// changes on disk.
pub fn certificate_flags(component: Component) -> &'static [(&'static str, CertFile)] {
    match component {
        Component::ApiServer => &[
            ("client-ca-file", CertFile::Pem),
            ("etcd-cafile", CertFile::Pem),
            ("etcd-certfile", CertFile::Pem),
            ("kubelet-client-certificate", CertFile::Pem),
            ("proxy-client-cert-file", CertFile::Pem),
            ("requestheader-client-ca-file", CertFile::Pem),
            ("tls-cert-file", CertFile::Pem),
        ],
        Component::ControllerManager => &[
            ("client-ca-file", CertFile::Pem),
            ("cluster-signing-cert-file", CertFile::Pem),
            ("kubeconfig", CertFile::Kubeconfig),
            ("requestheader-client-ca-file", CertFile::Pem),
            ("root-ca-file", CertFile::Pem),
            ("tls-cert-file", CertFile::Pem),
        ],
        Component::Scheduler => &[
            ("client-ca-file", CertFile::Pem),
            ("kubeconfig", CertFile::Kubeconfig),
            ("requestheader-client-ca-file", CertFile::Pem),
            ("tls-cert-file", CertFile::Pem),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn additive_flags_merge_and_others_replace() {
        assert_eq!(
            merge_of(Component::ApiServer, "enable-admission-plugins"),
            Merge::List
        );
        assert_eq!(merge_of(Component::Scheduler, "feature-gates"), Merge::Map);
        assert_eq!(merge_of(Component::ApiServer, "runtime-config"), Merge::Map);
        assert_eq!(
            merge_of(Component::ApiServer, "authorization-mode"),
            Merge::Replace
        );
        assert_eq!(
            merge_of(Component::ControllerManager, "controllers"),
            Merge::Replace
        );
    }

    #[test]
    fn protected_lists_are_sorted_and_cover_tls() {
        for c in Component::ALL {
            let p = protected(c);
            assert!(p.windows(2).all(|w| w[0] < w[1]), "{c}");
            assert!(is_protected(c, "tls-cert-file"));
            assert!(!is_protected(c, "v"));
        }
    }
}
