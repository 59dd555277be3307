//! `spec.apiServer.encryption`: the pass-through Secret reference or the managed mode.

use super::spec::{is_dns_label, is_dns_subdomain};
use super::{Problem, Report};
use crate::api::{
    Component, ControlPlaneConfigSpec, Encryption, EncryptionProvider, ManagedEncryption, bounds,
};
use crate::render::is_managed;

const FIELD: &str = "spec.apiServer.encryption";

/// Every problem of `spec.apiServer.encryption`.
pub(super) fn check(spec: &ControlPlaneConfigSpec, enc: &Encryption, r: &mut Report) {
    match (&enc.secret_ref, &enc.managed) {
        (Some(_), Some(_)) => r.push(
            Problem::error(FIELD, "both secretRef and managed are set")
                .fix("keep secretRef to pass your own EncryptionConfiguration through, or managed to let kubeplane own the keys, not both"),
        ),
        (None, None) => r.push(
            Problem::error(FIELD, "neither secretRef nor managed is set")
                .fix("set secretRef (your EncryptionConfiguration in a Secret) or managed: {} (keys kubeplane generates), or remove encryption"),
        ),
        _ => {}
    }
    if let Some(sr) = &enc.secret_ref {
        let f = format!("{FIELD}.secretRef");
        if !is_dns_subdomain(&sr.name) {
            r.push(
                Problem::error(format!("{f}.name"), "not a valid Secret name")
                    .value(&sr.name)
                    .fix("use a DNS subdomain: lower-case letters, digits, '-' and '.'"),
            );
        }
        if let Some(ns) = &sr.namespace
            && !is_dns_label(ns)
        {
            r.push(
                Problem::error(format!("{f}.namespace"), "not a valid namespace name").value(ns),
            );
        }
        if let Some(key) = &sr.key
            && (key.is_empty()
                || !key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)))
        {
            r.push(
                Problem::error(format!("{f}.key"), "not a valid Secret key")
                    .value(key)
                    .fix("use letters, digits, '-', '_' and '.'"),
            );
        }
    }
    if let Some(m) = &enc.managed {
        check_managed(spec, m, r);
    }
}

fn check_managed(spec: &ControlPlaneConfigSpec, m: &ManagedEncryption, r: &mut Report) {
    let f = format!("{FIELD}.managed");
    if !is_managed(spec, Component::ApiServer) {
        r.push(
            Problem::error(
                &f,
                "managed encryption needs kube-apiserver managed by kubeplane",
            )
            .value("apiServer.managed: false")
            .fix(
                "set spec.apiServer.managed to true, or pass your own configuration with secretRef",
            ),
        );
    }
    if m.provider == Some(EncryptionProvider::Aesgcm)
        && m.rotation.as_ref().and_then(|x| x.interval_days).is_none()
    {
        r.push(
            Problem::error(format!("{f}.provider"), "aesgcm keys must be rotated at least every 200,000 writes (kubernetes.io/docs/tasks/administer-cluster/encrypt-data)")
                .value("aesgcm")
                .fix("set rotation.intervalDays, or use secretbox"),
        );
    }
    let numbers = [
        (
            bounds::ENCRYPTION_ROTATION_GENERATION,
            m.rotation.as_ref().and_then(|r| r.generation),
        ),
        (
            bounds::ENCRYPTION_INTERVAL_DAYS,
            m.rotation
                .as_ref()
                .and_then(|r| r.interval_days)
                .map(i64::from),
        ),
        (
            bounds::ENCRYPTION_OBJECTS_PER_SECOND,
            m.migration
                .as_ref()
                .and_then(|x| x.objects_per_second)
                .map(i64::from),
        ),
    ];
    for (bound, value) in numbers {
        if let Some(v) = value
            && !bound.contains(v)
        {
            r.push(
                Problem::error(bound.path, "out of range")
                    .value(v.to_string())
                    .fix(bound.fix()),
            );
        }
    }
    for (i, res) in m.resources.iter().enumerate() {
        if !is_dns_subdomain(res) || res.contains('*') {
            r.push(
                Problem::error(format!("{f}.resources[{i}]"), "not a resource name")
                    .value(res)
                    .fix("use a lower-case resource name such as secrets, configmaps or widgets.example.com"),
            );
        }
    }
    if let Some(name) = &m.secret_name
        && !is_dns_subdomain(name)
    {
        r.push(
            Problem::error(format!("{f}.secretName"), "not a valid Secret name")
                .value(name)
                .fix("use a DNS subdomain: lower-case letters, digits, '-' and '.'"),
        );
    }
    if let Some(etcd) = m.verification.as_ref().and_then(|v| v.etcd.as_ref()) {
        let ef = format!("{f}.verification.etcd");
        if !is_dns_subdomain(&etcd.secret_name) {
            r.push(
                Problem::error(format!("{ef}.secretName"), "not a valid Secret name")
                    .value(&etcd.secret_name),
            );
        }
        let external = spec
            .etcd
            .as_ref()
            .and_then(|e| e.external.as_ref())
            .is_some_and(|e| !e.endpoints.is_empty());
        if etcd.endpoints.is_empty() && !external {
            r.push(
                Problem::error(format!("{ef}.endpoints"), "no etcd endpoint to verify against")
                    .fix("list etcd client URLs here (https://HOST:2379); the default is spec.etcd.external.endpoints, which is not set"),
            );
        }
        for (i, e) in etcd.endpoints.iter().enumerate() {
            if !e.starts_with("https://") || super::spec::parse_url_host_port(e).is_none() {
                r.push(
                    Problem::error(
                        format!("{ef}.endpoints[{i}]"),
                        "not an https URL with a host",
                    )
                    .value(e)
                    .fix("use https://HOST:2379"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::api::*;
    use crate::validation::validate;

    fn with(enc: Encryption) -> ControlPlaneConfigSpec {
        ControlPlaneConfigSpec {
            kubernetes_version: "v1.36.2".into(),
            api_server: Some(ApiServer {
                encryption: Some(enc),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn errors(spec: &ControlPlaneConfigSpec) -> Vec<(String, String)> {
        validate(spec)
            .errors()
            .map(|p| (p.field.clone(), p.to_string()))
            .collect()
    }

    fn managed(m: ManagedEncryption) -> ControlPlaneConfigSpec {
        with(Encryption {
            secret_ref: None,
            managed: Some(m),
        })
    }

    #[test]
    fn managed_defaults_are_valid() {
        assert_eq!(errors(&managed(ManagedEncryption::default())), vec![]);
    }

    #[test]
    fn exactly_one_mode() {
        let both = with(Encryption {
            secret_ref: Some(SecretKeyRef {
                name: "enc".into(),
                ..Default::default()
            }),
            managed: Some(ManagedEncryption::default()),
        });
        let e = errors(&both);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].1.contains("not both"), "{e:?}");
        let e = errors(&with(Encryption::default()));
        assert!(e[0].1.contains("neither secretRef nor managed"), "{e:?}");
    }

    #[test]
    fn aesgcm_needs_an_interval() {
        let mut m = ManagedEncryption {
            provider: Some(EncryptionProvider::Aesgcm),
            ..Default::default()
        };
        let e = errors(&managed(m.clone()));
        assert_eq!(e[0].0, "spec.apiServer.encryption.managed.provider");
        assert!(e[0].1.contains("200,000 writes") && e[0].1.contains("rotation.intervalDays"));
        m.rotation = Some(KeyRotation {
            generation: None,
            interval_days: Some(30),
        });
        assert_eq!(errors(&managed(m)), vec![]);
    }

    #[test]
    fn bad_resources_names_and_etcd_access_are_named() {
        let m = ManagedEncryption {
            resources: vec!["secrets".into(), "Config Maps".into()],
            secret_name: Some("Keys!".into()),
            verification: Some(Verification {
                etcd: Some(EtcdAccess {
                    endpoints: vec![],
                    secret_name: "etcd-client".into(),
                    prefix: None,
                }),
            }),
            ..Default::default()
        };
        let fields: Vec<String> = errors(&managed(m)).into_iter().map(|e| e.0).collect();
        assert_eq!(
            fields,
            vec![
                "spec.apiServer.encryption.managed.resources[1]",
                "spec.apiServer.encryption.managed.secretName",
                "spec.apiServer.encryption.managed.verification.etcd.endpoints",
            ]
        );
    }

    #[test]
    fn numbers_out_of_their_bounds_are_named_with_the_range() {
        let m = ManagedEncryption {
            rotation: Some(KeyRotation {
                generation: Some(-1),
                interval_days: Some(0),
            }),
            migration: Some(Migration {
                objects_per_second: Some(20_000),
            }),
            ..Default::default()
        };
        let e = errors(&managed(m));
        let fields: Vec<&str> = e.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "spec.apiServer.encryption.managed.rotation.generation",
                "spec.apiServer.encryption.managed.rotation.intervalDays",
                "spec.apiServer.encryption.managed.migration.objectsPerSecond",
            ]
        );
        assert!(
            e[2].1.contains("use 1 to 10000 objects per second"),
            "{e:?}"
        );
    }

    #[test]
    fn managed_encryption_needs_a_managed_api_server() {
        let mut spec = managed(ManagedEncryption::default());
        spec.api_server.as_mut().unwrap().managed = Some(false);
        let e = errors(&spec);
        assert!(
            e.iter()
                .any(|(f, m)| f == "spec.apiServer.encryption.managed"
                    && m.contains("kube-apiserver managed by kubeplane")),
            "{e:?}"
        );
    }
}
