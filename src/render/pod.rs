//! Building one component's static Pod from its flags, volumes and settings.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, HTTPGetAction, HostPathVolumeSource, Pod, PodSecurityContext,
    PodSpec, Probe, ResourceRequirements, SeccompProfile, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::args::Flag;
use super::defaults::{self, Timing};
use crate::api::{CommonSettings, Component, HostPathType, ProbeTiming};

/// A hostPath volume together with its mount, as kubeadm pairs them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Volume and mount name.
    pub name: String,
    /// Path on the host.
    pub host_path: String,
    /// Path in the container.
    pub mount_path: String,
    /// Read-only mount.
    pub read_only: bool,
    /// hostPath type.
    pub path_type: HostPathType,
}

impl Mount {
    /// A mount at the same path on the host and in the container.
    pub fn same_path(name: &str, path: &str, read_only: bool, path_type: HostPathType) -> Mount {
        Mount {
            name: name.to_string(),
            host_path: path.to_string(),
            mount_path: path.to_string(),
            read_only,
            path_type,
        }
    }
}

/// Adds or replaces (by name) mounts; the result is sorted by name as kubeadm writes them.
pub fn merge_mounts(mut base: Vec<Mount>, extra: impl IntoIterator<Item = Mount>) -> Vec<Mount> {
    for m in extra {
        base.retain(|b| b.name != m.name);
        base.push(m);
    }
    base.sort_by(|a, b| a.name.cmp(&b.name));
    base
}

/// Where a component's probes knock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeTarget {
    /// Host the probes use; `None` lets kubelet use the Pod IP (the node's, with hostNetwork).
    pub host: Option<String>,
    /// Container port number behind `probe-port`.
    pub port: i32,
    /// Liveness and startup path.
    pub live_path: &'static str,
    /// Readiness path, for components kubeadm gives a readiness probe.
    pub ready_path: Option<&'static str>,
}

/// Everything that makes up one component's Pod.
pub struct PodParts<'a> {
    /// The component.
    pub component: Component,
    /// Image reference.
    pub image: String,
    /// Image pull policy.
    pub pull_policy: &'a str,
    /// Final flags, sorted.
    pub flags: &'a [Flag],
    /// Volumes and mounts, sorted by name.
    pub mounts: &'a [Mount],
    /// Probe target.
    pub probe: ProbeTarget,
    /// Startup probe timing (`defaults::startup` of the probe profile).
    pub startup: Timing,
    /// Shared settings (env, resources, probe overrides).
    pub settings: CommonSettings<'a>,
    /// Pod annotations.
    pub annotations: BTreeMap<String, String>,
}

/// Builds the Pod (without `metadata.uid`).
pub fn build(parts: PodParts<'_>) -> Pod {
    let name = parts.component.name();
    let mut command = Vec::with_capacity(parts.flags.len() + 1);
    command.push(name.to_string());
    command.extend(parts.flags.iter().map(|(n, v)| format!("--{n}={v}")));

    let overrides = parts.settings.probes.cloned().unwrap_or_default();
    let probe = |path: &str, timing: Timing, over: Option<ProbeTiming>| {
        let over = over.unwrap_or_default();
        Probe {
            http_get: Some(HTTPGetAction {
                host: parts.probe.host.clone(),
                path: Some(path.to_string()),
                port: IntOrString::String(defaults::PROBE_PORT_NAME.to_string()),
                scheme: Some("HTTPS".to_string()),
                ..Default::default()
            }),
            initial_delay_seconds: over.initial_delay_seconds.or(timing.initial_delay),
            period_seconds: Some(over.period_seconds.unwrap_or(timing.period)),
            timeout_seconds: Some(over.timeout_seconds.unwrap_or(timing.timeout)),
            failure_threshold: Some(over.failure_threshold.unwrap_or(timing.failure_threshold)),
            ..Default::default()
        }
    };

    let container = Container {
        name: name.to_string(),
        image: Some(parts.image),
        image_pull_policy: Some(parts.pull_policy.to_string()),
        command: Some(command),
        env: (!parts.settings.extra_env.is_empty()).then(|| {
            parts
                .settings
                .extra_env
                .iter()
                .map(|e| EnvVar {
                    name: e.name.clone(),
                    value: Some(e.value.clone()),
                    ..Default::default()
                })
                .collect()
        }),
        liveness_probe: Some(probe(
            parts.probe.live_path,
            defaults::LIVENESS,
            overrides.liveness,
        )),
        readiness_probe: parts
            .probe
            .ready_path
            .map(|p| probe(p, defaults::READINESS, overrides.readiness)),
        startup_probe: Some(probe(
            parts.probe.live_path,
            parts.startup,
            overrides.startup,
        )),
        ports: Some(vec![ContainerPort {
            container_port: parts.probe.port,
            name: Some(defaults::PROBE_PORT_NAME.to_string()),
            protocol: Some("TCP".to_string()),
            ..Default::default()
        }]),
        resources: Some(resources(parts.component, parts.settings)),
        volume_mounts: (!parts.mounts.is_empty()).then(|| {
            parts
                .mounts
                .iter()
                .map(|m| VolumeMount {
                    name: m.name.clone(),
                    mount_path: m.mount_path.clone(),
                    read_only: m.read_only.then_some(true),
                    ..Default::default()
                })
                .collect()
        }),
        ..Default::default()
    };

    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some("kube-system".to_string()),
            labels: Some(BTreeMap::from([
                ("component".to_string(), name.to_string()),
                ("tier".to_string(), "control-plane".to_string()),
            ])),
            annotations: (!parts.annotations.is_empty()).then_some(parts.annotations),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            host_network: Some(true),
            priority: Some(defaults::PRIORITY),
            priority_class_name: Some(defaults::PRIORITY_CLASS.to_string()),
            security_context: Some(PodSecurityContext {
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".to_string(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            volumes: (!parts.mounts.is_empty()).then(|| {
                parts
                    .mounts
                    .iter()
                    .map(|m| Volume {
                        name: m.name.clone(),
                        host_path: Some(HostPathVolumeSource {
                            path: m.host_path.clone(),
                            type_: Some(m.path_type.as_str().to_string()),
                        }),
                        ..Default::default()
                    })
                    .collect()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

fn resources(component: Component, settings: CommonSettings<'_>) -> ResourceRequirements {
    let to_map = |m: &BTreeMap<String, String>| -> Option<BTreeMap<String, Quantity>> {
        (!m.is_empty()).then(|| {
            m.iter()
                .map(|(k, v)| (k.clone(), Quantity(v.clone())))
                .collect()
        })
    };
    match settings.resources {
        Some(r) if !r.requests.is_empty() || !r.limits.is_empty() => ResourceRequirements {
            requests: to_map(&r.requests),
            limits: to_map(&r.limits),
            ..Default::default()
        },
        _ => ResourceRequirements {
            requests: Some(BTreeMap::from([(
                "cpu".to_string(),
                Quantity(defaults::cpu_request(component).to_string()),
            )])),
            ..Default::default()
        },
    }
}

/// Maps a path as the container sees it to the host path behind it, through the mount with
/// the longest matching mount path. `None` when no mount covers it.
pub fn host_path_of(mounts: &[Mount], container_path: &str) -> Option<String> {
    mounts
        .iter()
        .filter_map(|m| {
            let rest = strip_dir_prefix(container_path, &m.mount_path)?;
            Some((m.mount_path.len(), join(&m.host_path, rest)))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, p)| p)
}

/// `path` relative to `dir` if `path` is `dir` or lies below it.
pub fn strip_dir_prefix<'a>(path: &'a str, dir: &str) -> Option<&'a str> {
    let dir = dir.trim_end_matches('/');
    let rest = path.strip_prefix(dir)?;
    if rest.is_empty() || rest.starts_with('/') || dir.is_empty() {
        Some(rest.trim_start_matches('/'))
    } else {
        None
    }
}

fn join(dir: &str, rest: &str) -> String {
    if rest.is_empty() {
        dir.to_string()
    } else {
        format!("{}/{}", dir.trim_end_matches('/'), rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_path_uses_longest_mount() {
        let mounts = vec![
            Mount::same_path("a", "/etc/kubernetes", true, HostPathType::Directory),
            Mount {
                name: "b".into(),
                host_path: "/srv/pki".into(),
                mount_path: "/etc/kubernetes/pki".into(),
                read_only: true,
                path_type: HostPathType::Directory,
            },
        ];
        assert_eq!(
            host_path_of(&mounts, "/etc/kubernetes/pki/ca.crt").as_deref(),
            Some("/srv/pki/ca.crt")
        );
        assert_eq!(
            host_path_of(&mounts, "/etc/kubernetes/admin.conf").as_deref(),
            Some("/etc/kubernetes/admin.conf")
        );
        assert_eq!(host_path_of(&mounts, "/etc/kubernetes-other/x"), None);
        assert_eq!(host_path_of(&mounts, "/var/lib/x"), None);
    }

    #[test]
    fn merge_mounts_replaces_by_name_and_sorts() {
        let base = vec![
            Mount::same_path(
                "k8s-certs",
                "/etc/kubernetes/pki",
                true,
                HostPathType::DirectoryOrCreate,
            ),
            Mount::same_path(
                "ca-certs",
                "/etc/ssl/certs",
                true,
                HostPathType::DirectoryOrCreate,
            ),
        ];
        let out = merge_mounts(
            base,
            [Mount::same_path(
                "k8s-certs",
                "/srv/pki",
                false,
                HostPathType::Directory,
            )],
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].name, "ca-certs");
        assert_eq!(out[1].host_path, "/srv/pki");
    }
}
