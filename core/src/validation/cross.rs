//! Checks across components and fields, made on the values the components really get (the
//! renderer's output): settings real clusters break on when two places disagree.

use ipnet::IpNet;

use super::args::{arg_field, flag_name};
use super::effective::Effective;
use super::spec::{parse_cidr_list, parse_port_range_flag};
use super::{Problem, Report};
use crate::api::{Component, ControlPlaneConfigSpec};
use crate::render::args::split_list;
use crate::render::{defaults, is_managed, settings};

/// kube-apiserver's default `--service-node-port-range`.
const DEFAULT_NODE_PORT_RANGE: &str = "30000-32767";

pub(super) fn check(spec: &ControlPlaneConfigSpec, effective: Option<&Effective>, r: &mut Report) {
    field_conflicts(spec, r);
    pod_service_overlap(spec, effective, r);
    if let Some(e) = effective {
        service_range_agreement(spec, e, r);
        node_port_range(spec, e, r);
        service_account_keys(spec, e, r);
    }
}

/// A value and the field it came from.
struct Sourced {
    field: String,
    value: String,
}

fn sourced(
    spec: &ControlPlaneConfigSpec,
    e: Option<&Effective>,
    c: Component,
    flag: &str,
    fallback_field: &str,
) -> Option<Sourced> {
    let value = e.and_then(|e| e.pod(c)).and_then(|p| p.last(flag))?;
    Some(Sourced {
        field: arg_field(spec, c, flag)
            .map(|f| format!("{f}.value"))
            .unwrap_or_else(|| fallback_field.to_string()),
        value: value.to_string(),
    })
}

/// The Service range(s) as kube-apiserver gets them (or the spec's, when it is not managed).
fn service_range(spec: &ControlPlaneConfigSpec, e: Option<&Effective>) -> Sourced {
    let field = "spec.networking.serviceSubnet";
    sourced(
        spec,
        e,
        Component::ApiServer,
        "service-cluster-ip-range",
        field,
    )
    .or_else(|| {
        sourced(
            spec,
            e,
            Component::ControllerManager,
            "service-cluster-ip-range",
            field,
        )
    })
    .unwrap_or_else(|| Sourced {
        field: field.to_string(),
        value: spec
            .networking
            .as_ref()
            .and_then(|n| n.service_subnet.clone())
            .unwrap_or_else(|| defaults::SERVICE_SUBNET.to_string()),
    })
}

/// The Pod range(s) as kube-controller-manager gets them (or the spec's).
fn pod_range(spec: &ControlPlaneConfigSpec, e: Option<&Effective>) -> Option<Sourced> {
    let field = "spec.networking.podSubnet";
    sourced(spec, e, Component::ControllerManager, "cluster-cidr", field).or_else(|| {
        spec.networking
            .as_ref()
            .and_then(|n| n.pod_subnet.clone())
            .map(|value| Sourced {
                field: field.to_string(),
                value,
            })
    })
}

/// Pod IPs and Service IPs come from different allocators; if the ranges overlap, a Pod and a
/// Service can get the same address and traffic to either goes astray.
fn pod_service_overlap(spec: &ControlPlaneConfigSpec, e: Option<&Effective>, r: &mut Report) {
    let svc = service_range(spec, e);
    let Some(pods) = pod_range(spec, e) else {
        return;
    };
    let (Ok(svc_nets), Ok(pod_nets)) = (parse_cidr_list(&svc.value), parse_cidr_list(&pods.value))
    else {
        return; // reported by the value checks
    };
    for s in &svc_nets {
        for p in &pod_nets {
            if overlap(s, p) {
                r.push(
                    Problem::error(
                        pods.field.clone(),
                        format!(
                            "the Pod range {p} overlaps the Service range {s} ({}): Pod IPs and Service IPs would collide",
                            svc.field
                        ),
                    )
                    .value(&pods.value)
                    .fix("pick disjoint ranges, like 10.244.0.0/16 for Pods and 10.96.0.0/12 for Services"),
                );
            }
        }
    }
}

fn overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// kube-apiserver hands out ClusterIPs from its `--service-cluster-ip-range`;
/// kube-controller-manager keeps node Pod ranges clear of its own copy. Two different copies
/// let Pod and Service addresses collide.
fn service_range_agreement(spec: &ControlPlaneConfigSpec, e: &Effective, r: &mut Report) {
    let (Some(api), Some(kcm)) = (
        e.pod(Component::ApiServer),
        e.pod(Component::ControllerManager),
    ) else {
        return;
    };
    let flag = "service-cluster-ip-range";
    let (Some(a), Some(k)) = (api.last(flag), kcm.last(flag)) else {
        return;
    };
    let (Ok(an), Ok(kn)) = (parse_cidr_list(a), parse_cidr_list(k)) else {
        return;
    };
    if an == kn {
        return;
    }
    let field = arg_field(spec, Component::ControllerManager, flag)
        .or_else(|| arg_field(spec, Component::ApiServer, flag))
        .map(|f| format!("{f}.value"))
        .unwrap_or_else(|| "spec.networking.serviceSubnet".to_string());
    r.push(
        Problem::error(
            field,
            format!(
                "kube-controller-manager gets --{flag}={k} but kube-apiserver gets {a}: the API server hands out Service IPs from its range while the controller manager keeps node Pod ranges clear of its own, so with two different ranges Pod and Service IPs can collide"
            ),
        )
        .value(k)
        .fix(format!(
            "set the range once in spec.networking.serviceSubnet and drop {flag} from extraArgs"
        )),
    );
}

/// Ports the node-port range must leave alone, and whose they are.
fn well_known_ports(e: &Effective, spec: &ControlPlaneConfigSpec) -> Vec<(u16, String)> {
    let port_of = |c: Component, default: i32| -> (u16, String) {
        let given = e
            .pod(c)
            .and_then(|p| p.last("secure-port"))
            .and_then(|v| v.parse::<u16>().ok());
        let field_default = match c {
            Component::ApiServer => spec
                .api_server
                .as_ref()
                .and_then(|a| a.secure_port)
                .unwrap_or(default),
            _ => default,
        };
        let port = given.unwrap_or(u16::try_from(field_default).unwrap_or_default());
        (port, format!("{c} --secure-port"))
    };
    let mut ports = vec![
        port_of(Component::ApiServer, defaults::API_SERVER_PORT),
        port_of(
            Component::ControllerManager,
            defaults::CONTROLLER_MANAGER_PORT,
        ),
        port_of(Component::Scheduler, defaults::SCHEDULER_PORT),
    ];
    for (port, what) in [
        (2379, "etcd client"),
        (2380, "etcd peer"),
        (2381, "etcd metrics, as kubeadm sets it up"),
        (10248, "kubelet healthz"),
        (10249, "kube-proxy metrics"),
        (10250, "kubelet API"),
        (10256, "kube-proxy healthz"),
    ] {
        ports.push((port, what.to_string()));
    }
    ports
}

/// A NodePort Service takes over its port on every node (kube-proxy redirects traffic to that
/// port on any node address), so the range must not include a port a node component serves.
fn node_port_range(spec: &ControlPlaneConfigSpec, e: &Effective, r: &mut Report) {
    let spec_range = spec
        .networking
        .as_ref()
        .and_then(|n| n.service_node_port_range.clone());
    let range = sourced(
        spec,
        Some(e),
        Component::ApiServer,
        "service-node-port-range",
        "spec.networking.serviceNodePortRange",
    )
    .or_else(|| {
        spec_range.map(|value| Sourced {
            field: "spec.networking.serviceNodePortRange".into(),
            value,
        })
    });
    let (field, value, user_set) = match &range {
        Some(s) => (s.field.clone(), s.value.clone(), true),
        None => (String::new(), DEFAULT_NODE_PORT_RANGE.to_string(), false),
    };
    let Some((first, last)) = parse_port_range_flag(&value) else {
        return; // reported by the value checks
    };
    let mut covered: Vec<(u16, String)> = well_known_ports(e, spec)
        .into_iter()
        .filter(|(p, _)| (first..=last).contains(p))
        .collect();
    covered.sort();
    if covered.is_empty() {
        return;
    }
    let list: Vec<String> = covered.iter().map(|(p, w)| format!("{p} ({w})")).collect();
    let message = format!(
        "the node-port range {first}-{last} covers {}: a NodePort Service given such a port takes over that port on every node and cuts the component off",
        list.join(", ")
    );
    let problem = if user_set {
        Problem::error(field, message)
            .value(value)
            .fix("keep the range clear of component ports, like 30000-32767")
    } else {
        let field = arg_field(spec, Component::ApiServer, "secure-port")
            .map(|f| format!("{f}.value"))
            .unwrap_or_else(|| "spec.apiServer.securePort".to_string());
        Problem::error(field, message)
            .fix("move the port out of kube-apiserver's default node-port range 30000-32767, or set spec.networking.serviceNodePortRange to a range that leaves it free")
    };
    r.push(problem);
}

/// Names a public key file conventionally has beside its private key: `sa.key` → `sa.pub`
/// (kubeadm), `service-account-key.pem` → `service-account.pem` (cfssl), `x.key` → `x.crt`,
/// `x-private.pem` → `x-public.pem`; and the private key itself, which kube-apiserver also
/// accepts in `--service-account-key-file`.
fn public_halves(private: &str) -> Vec<String> {
    let (dir, file) = private.rsplit_once('/').unwrap_or(("", private));
    let mut names = vec![file.to_string()];
    if let Some(stem) = file.strip_suffix("-key.pem") {
        names.extend([
            format!("{stem}.pem"),
            format!("{stem}-pub.pem"),
            format!("{stem}.pub"),
        ]);
    } else if let Some(stem) = file.strip_suffix(".key") {
        names.extend([
            format!("{stem}.pub"),
            format!("{stem}.pem"),
            format!("{stem}.crt"),
        ]);
    } else if let Some(stem) = file.strip_suffix(".pem") {
        names.extend([format!("{stem}.pub"), format!("{stem}-pub.pem")]);
    }
    if file.contains("private") {
        names.push(file.replace("private", "public"));
    }
    names.into_iter().map(|n| format!("{dir}/{n}")).collect()
}

/// kube-controller-manager signs service-account tokens with
/// `--service-account-private-key-file`, kube-apiserver with
/// `--service-account-signing-key-file`, and kube-apiserver verifies every token against
/// `--service-account-key-file`. Both signers must use the same private key (kubeadm: `sa.key`),
/// and the verification list must hold its public half (kubeadm: `sa.pub`).
fn service_account_keys(spec: &ControlPlaneConfigSpec, e: &Effective, r: &mut Report) {
    let (Some(api), Some(kcm)) = (
        e.pod(Component::ApiServer),
        e.pod(Component::ControllerManager),
    ) else {
        return;
    };
    let (Some(k), Some(s)) = (
        kcm.last("service-account-private-key-file"),
        api.last("service-account-signing-key-file"),
    ) else {
        return;
    };
    if k != s {
        let field = arg_field(
            spec,
            Component::ControllerManager,
            "service-account-private-key-file",
        )
        .or_else(|| {
            arg_field(
                spec,
                Component::ApiServer,
                "service-account-signing-key-file",
            )
        })
        .map(|f| format!("{f}.value"))
        .unwrap_or_else(|| "spec.controllerManager".to_string());
        r.push(
            Problem::error(
                field,
                format!(
                    "kube-controller-manager signs service-account tokens with {k} but kube-apiserver signs with {s}: tokens from one of them fail verification"
                ),
            )
            .value(k)
            .fix("give --service-account-private-key-file (kube-controller-manager) and --service-account-signing-key-file (kube-apiserver) the same private key file, as kubeadm does with sa.key"),
        );
    }
    let keys: Vec<&str> = api
        .values("service-account-key-file")
        .flat_map(split_list)
        .collect();
    if keys.is_empty() {
        return; // kube-apiserver then verifies with the signing key itself
    }
    let halves = public_halves(s);
    if !keys.iter().any(|k| halves.iter().any(|h| h == k)) {
        let field = arg_field(spec, Component::ApiServer, "service-account-key-file")
            .or_else(|| {
                arg_field(
                    spec,
                    Component::ApiServer,
                    "service-account-signing-key-file",
                )
            })
            .map(|f| format!("{f}.value"))
            .unwrap_or_else(|| "spec.apiServer".to_string());
        r.push(
            Problem::warning(
                field,
                format!(
                    "--service-account-key-file ({}) has no file named like the public half of the signing key {s}; if none of them holds its public key, every token kube-apiserver issues is refused",
                    keys.join(",")
                ),
            )
            .value(keys.join(","))
            .fix(format!(
                "list the public key of {s} (for example {}) in service-account-key-file",
                halves.get(1).map(String::as_str).unwrap_or(s)
            )),
        );
    }
}

/// Flags a first-class field sets, and that field.
fn owned_flags(spec: &ControlPlaneConfigSpec) -> Vec<(Component, &'static str, &'static str)> {
    use Component::{ApiServer as A, ControllerManager as K, Scheduler as S};
    let net = spec.networking.clone().unwrap_or_default();
    let api = spec.api_server.clone().unwrap_or_default();
    let audit = api.audit.as_ref();
    let ext = spec.etcd.as_ref().and_then(|e| e.external.as_ref());
    let kcm_kubeconfig = spec
        .controller_manager
        .as_ref()
        .is_some_and(|c| c.kubeconfig.is_some());
    let sched_kubeconfig = spec
        .scheduler
        .as_ref()
        .is_some_and(|c| c.kubeconfig.is_some());
    let rows: Vec<(bool, Component, &'static str, &'static str)> = vec![
        (
            api.secure_port.is_some(),
            A,
            "secure-port",
            "spec.apiServer.securePort",
        ),
        (
            net.service_subnet.is_some(),
            A,
            "service-cluster-ip-range",
            "spec.networking.serviceSubnet",
        ),
        (
            net.service_subnet.is_some(),
            K,
            "service-cluster-ip-range",
            "spec.networking.serviceSubnet",
        ),
        (
            net.pod_subnet.is_some(),
            K,
            "cluster-cidr",
            "spec.networking.podSubnet",
        ),
        (
            net.pod_subnet.is_some(),
            K,
            "allocate-node-cidrs",
            "spec.networking.podSubnet",
        ),
        (
            net.service_node_port_range.is_some(),
            A,
            "service-node-port-range",
            "spec.networking.serviceNodePortRange",
        ),
        (
            audit.is_some(),
            A,
            "audit-policy-file",
            "spec.apiServer.audit.policy",
        ),
        (
            audit.is_some(),
            A,
            "audit-log-path",
            "spec.apiServer.audit.logPath",
        ),
        (
            audit.is_some_and(|a| a.max_age.is_some()),
            A,
            "audit-log-maxage",
            "spec.apiServer.audit.maxAge",
        ),
        (
            audit.is_some_and(|a| a.max_backup.is_some()),
            A,
            "audit-log-maxbackup",
            "spec.apiServer.audit.maxBackup",
        ),
        (
            audit.is_some_and(|a| a.max_size.is_some()),
            A,
            "audit-log-maxsize",
            "spec.apiServer.audit.maxSize",
        ),
        (
            api.encryption.is_some(),
            A,
            "encryption-provider-config",
            "spec.apiServer.encryption",
        ),
        (
            ext.is_some(),
            A,
            "etcd-servers",
            "spec.etcd.external.endpoints",
        ),
        (
            ext.is_some_and(|x| x.ca_file.is_some()),
            A,
            "etcd-cafile",
            "spec.etcd.external.caFile",
        ),
        (
            ext.is_some_and(|x| x.cert_file.is_some()),
            A,
            "etcd-certfile",
            "spec.etcd.external.certFile",
        ),
        (
            ext.is_some_and(|x| x.key_file.is_some()),
            A,
            "etcd-keyfile",
            "spec.etcd.external.keyFile",
        ),
        (
            kcm_kubeconfig,
            K,
            "kubeconfig",
            "spec.controllerManager.kubeconfig",
        ),
        (
            kcm_kubeconfig,
            K,
            "authentication-kubeconfig",
            "spec.controllerManager.kubeconfig",
        ),
        (
            kcm_kubeconfig,
            K,
            "authorization-kubeconfig",
            "spec.controllerManager.kubeconfig",
        ),
        (
            sched_kubeconfig,
            S,
            "kubeconfig",
            "spec.scheduler.kubeconfig",
        ),
        (
            sched_kubeconfig,
            S,
            "authentication-kubeconfig",
            "spec.scheduler.kubeconfig",
        ),
        (
            sched_kubeconfig,
            S,
            "authorization-kubeconfig",
            "spec.scheduler.kubeconfig",
        ),
        (
            spec.cluster_name.is_some(),
            K,
            "cluster-name",
            "spec.clusterName",
        ),
        (
            spec.nodes.iter().any(|n| n.advertise_address.is_some()),
            A,
            "advertise-address",
            "spec.nodes[].advertiseAddress",
        ),
    ];
    rows.into_iter()
        .filter(|(set, ..)| *set)
        .map(|(_, c, f, field)| (c, f, field))
        .collect()
}

/// A flag given in `extraArgs` that a first-class field also sets: two sources for one value.
fn field_conflicts(spec: &ControlPlaneConfigSpec, r: &mut Report) {
    let owned = owned_flags(spec);
    for c in Component::ALL {
        if !is_managed(spec, c) {
            continue;
        }
        let mut reported: Vec<&str> = Vec::new();
        for (i, arg) in settings(spec, c).extra_args.iter().enumerate() {
            let Some(name) = flag_name(&arg.name) else {
                continue;
            };
            let field = format!("spec.{}.extraArgs[{i}].name", c.spec_field());
            if let Some((_, flag, owner)) = owned.iter().find(|(oc, f, _)| *oc == c && *f == name) {
                if !reported.contains(flag) {
                    reported.push(flag);
                    r.push(
                        Problem::error(
                            field,
                            format!("--{name} is also set by {owner}: one value, two places"),
                        )
                        .value(&arg.name)
                        .fix(format!(
                            "remove this extraArgs entry and set the value in {owner}"
                        )),
                    );
                }
            } else if c == Component::ApiServer
                && name == "advertise-address"
                && !reported.contains(&"advertise-address")
            {
                reported.push("advertise-address");
                r.push(
                    Problem::warning(
                        field,
                        "--advertise-address in extraArgs is the same on every node, so every kube-apiserver would advertise one address; that only works with a single control-plane node",
                    )
                    .value(&arg.name)
                    .fix("set each node's address in spec.nodes[].advertiseAddress, or let the agent report it"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_halves_follow_common_conventions() {
        let h = public_halves("/etc/kubernetes/pki/sa.key");
        assert!(h.contains(&"/etc/kubernetes/pki/sa.pub".to_string()));
        assert!(h.contains(&"/etc/kubernetes/pki/sa.key".to_string()));
        let h = public_halves("/var/lib/kubernetes/service-account-key.pem");
        assert!(h.contains(&"/var/lib/kubernetes/service-account.pem".to_string()));
        let h = public_halves("/k/sa-private.pem");
        assert!(h.contains(&"/k/sa-public.pem".to_string()));
        assert!(!public_halves("/k/sa.key").contains(&"/other/sa.pub".to_string()));
    }
}
