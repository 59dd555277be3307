//! The steps of an import that infer the spec from the sources: first-class fields, etcd,
//! `extraArgs`, and the Pod settings (volumes, env, resources, probes).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Probe, ResourceRequirements};

use super::{Source, rendered_flags, rendered_pod};
use crate::adopt::manifest::{VolumeUse, container, volume_uses};
use crate::api::{
    Arg, Component, ControlPlaneConfigSpec, EnvVar, Etcd, ExternalEtcd, FlagName, HostPathType,
    HostPathVolume, Networking, NodeOverride, ProbeTiming, Probes, Resources,
};
use crate::flags::FlagType;
use crate::flags::policy::{Merge, is_protected, merge_of};
use crate::render::args::split_list;
use crate::render::{Rendered, defaults};

fn parent_dir(path: &str) -> Option<String> {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some(("", _)) => Some("/".into()),
        Some((dir, _)) => Some(dir.to_string()),
        None => None,
    }
}

/// kubeadm's name for a host CA directory volume: `/etc/pki/ca-trust` → `etc-pki-ca-trust`.
fn ca_volume_name(path: &str) -> String {
    path.trim_start_matches('/').replace('/', "-")
}

/// The optional host CA directories the manifests mount the way kubeadm does (a volume
/// named after the path, same path on host and in the container, read-only): node facts,
/// not spec.
pub(in crate::adopt) fn host_ca_dirs(sources: &[&Source]) -> Vec<String> {
    defaults::OPTIONAL_CA_DIRS
        .iter()
        .filter(|dir| {
            sources.iter().any(|s| {
                s.volumes().iter().any(|u| {
                    u.name == ca_volume_name(dir)
                        && u.volume
                            .as_ref()
                            .and_then(|v| v.host_path.as_ref())
                            .is_some_and(|h| h.path == **dir)
                        && u.mounts.iter().any(|m| m.mount_path == **dir)
                })
            })
        })
        .map(|d| d.to_string())
        .collect()
}

/// etcd: `None` for kubeadm's local member (the four flags exactly the renderer's defaults in
/// `base`), else the external cluster the flags name, when each is given once.
pub(in crate::adopt) fn infer_etcd(a: &Source, base: &Rendered) -> Option<Etcd> {
    let base = rendered_flags(base, Component::ApiServer);
    let names = [
        "etcd-servers",
        "etcd-cafile",
        "etcd-certfile",
        "etcd-keyfile",
    ];
    let local = names.iter().all(|n| {
        let want: Vec<&str> = base.get(*n).into_iter().flatten().map(|s| &**s).collect();
        a.values(n) == want
    });
    let once = |n: &str| a.values(n).len() <= 1 && (!a.has(n) || a.single(n).is_some());
    if local || !names.iter().all(|n| once(n)) {
        return None;
    }
    let servers = a.single("etcd-servers")?;
    let file = |n: &str| a.single(n).map(str::to_string);
    Some(external_etcd(
        servers,
        file("etcd-cafile"),
        file("etcd-certfile"),
        file("etcd-keyfile"),
    ))
}

/// `spec.etcd.external` from `--etcd-servers` (comma-separated) and the three TLS files.
pub(in crate::adopt) fn external_etcd(
    servers: &str,
    ca_file: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
) -> Etcd {
    Etcd {
        external: Some(ExternalEtcd {
            endpoints: servers
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(Into::into)
                .collect(),
            ca_file,
            cert_file,
            key_file,
        }),
    }
}

/// The flags of `s` the render `base` does not produce as given, in the order given: its
/// `extraArgs`, and the protected flags among them. A bare flag never equals a rendered
/// `--name=value` and gets `bare(name)`. `lists_as_sets`: a list flag (`merge_of` is
/// [`Merge::List`]) that names the same items in another order or split differently is not
/// an extra (systemd units, whose list flags kubeplane merges).
pub(in crate::adopt) fn extra_args(
    base: &Rendered,
    s: &Source,
    lists_as_sets: bool,
    bare: impl Fn(&str) -> String,
) -> (Vec<Arg>, Vec<FlagName>) {
    let c = s.component;
    let defaults = rendered_flags(base, c);
    let mut by_name: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (n, v) in &s.flags {
        by_name
            .entry(n)
            .or_default()
            .push(v.as_deref().unwrap_or_default());
    }
    let items = |v: &[&str]| {
        let mut s: Vec<String> = v
            .iter()
            .flat_map(|x| split_list(x).map(str::to_string).collect::<Vec<_>>())
            .collect();
        s.sort();
        s.dedup();
        s
    };
    let differs = |name: &str| {
        let want: Vec<&str> = defaults
            .get(name)
            .into_iter()
            .flatten()
            .map(|s| &**s)
            .collect();
        let have = by_name.get(name).cloned().unwrap_or_default();
        let same = if lists_as_sets && matches!(merge_of(c, name), Merge::List) {
            items(&have) == items(&want)
        } else {
            by_name.contains_key(name) && have == want
        };
        !same || s.flags.iter().any(|(n, v)| n == name && v.is_none())
    };
    let mut args = Vec::new();
    let mut protected: Vec<FlagName> = Vec::new();
    for (name, value) in &s.flags {
        if !differs(name) {
            continue;
        }
        let value = value.clone().unwrap_or_else(|| bare(name));
        args.push(Arg::new(name.clone(), value));
        if is_protected(c, name) && !protected.iter().any(|p| p.0 == *name) {
            protected.push(FlagName(name.clone()));
        }
    }
    (args, protected)
}

/// Volumes, env, resources and probes of each source that the render `base` lacks.
pub(in crate::adopt) fn infer_pod_settings(
    spec: &mut ControlPlaneConfigSpec,
    sources: &[Source],
    base: &Rendered,
) {
    for s in sources {
        let Some(rendered) = rendered_pod(base, s.component) else {
            continue;
        };
        let rendered_uses = volume_uses(rendered, 0);
        let mut extra_volumes = Vec::new();
        for u in s.volumes() {
            if rendered_uses.contains(&u) {
                continue;
            }
            if let Some(v) = as_host_path_volume(&u) {
                extra_volumes.push(v);
            }
        }
        let c = container(&s.pod, s.index).cloned().unwrap_or_default();
        let rc = container(rendered, 0).cloned().unwrap_or_default();
        let extra_env: Vec<EnvVar> = c
            .env
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.value_from.is_none())
            .map(|e| EnvVar {
                name: e.name,
                value: e.value.unwrap_or_default(),
            })
            .collect();
        let resources = resources_of(c.resources.as_ref(), rc.resources.as_ref());
        let probes = Probes {
            liveness: timing(c.liveness_probe.as_ref(), rc.liveness_probe.as_ref()),
            readiness: timing(c.readiness_probe.as_ref(), rc.readiness_probe.as_ref()),
            startup: timing(c.startup_probe.as_ref(), rc.startup_probe.as_ref()),
        };
        with_settings!(spec, s.component, |st| {
            st.extra_volumes = extra_volumes;
            st.extra_env = extra_env;
            st.resources = resources;
            st.probes = (probes != Probes::default()).then_some(probes);
        });
    }
}

/// The value an `extraArgs` entry gets for a bare `--name`: `true` for a boolean flag (what
/// the component reads), else empty.
pub(in crate::adopt) fn bare_value(component: Component, name: &str) -> String {
    match crate::flags::find(component, name) {
        Some(f) if f.type_ == FlagType::Bool => "true".into(),
        _ => String::new(),
    }
}

/// First-class fields, each set only when every flag it owns agrees with it in every
/// manifest (otherwise the flags stay `extraArgs`, and validation never sees one value set
/// in two places).
pub(in crate::adopt) fn infer_first_class(
    spec: &mut ControlPlaneConfigSpec,
    api: Option<&Source>,
    kcm: Option<&Source>,
    sched: Option<&Source>,
    advertise: Option<&str>,
    node_name: &str,
) {
    // certificatesDir: where kubeadm's k8s-certs volume is mounted, else the client CA's
    // directory.
    let certs = [api, kcm]
        .into_iter()
        .flatten()
        .find_map(|s| {
            s.volumes()
                .into_iter()
                .find(|u| u.name == "k8s-certs" && u.mounts.len() == 1)
                .map(|u| u.mounts[0].mount_path.trim_end_matches('/').to_string())
        })
        .or_else(|| {
            [api, kcm]
                .into_iter()
                .flatten()
                .find_map(|s| s.single("client-ca-file").and_then(parent_dir))
        })
        .filter(|d| d.starts_with('/') && d != "/");
    spec.certificates_dir = certs.filter(|d| d != defaults::CERTIFICATES_DIR);

    let mut net = Networking::default();
    // serviceSubnet: kube-apiserver's range, when kube-controller-manager agrees.
    let api_range = api.map(|a| a.single("service-cluster-ip-range"));
    let kcm_range = kcm
        .filter(|k| k.has("service-cluster-ip-range"))
        .map(|k| k.single("service-cluster-ip-range"));
    let service = match (api_range, kcm_range) {
        (Some(Some(a)), None) => Some(a),
        (Some(Some(a)), Some(Some(k))) if a == k => Some(a),
        (None, Some(Some(k))) => Some(k),
        _ => None,
    };
    if let Some(v) = service.filter(|v| *v != defaults::SERVICE_SUBNET) {
        net.service_subnet = Some(v.to_string());
    }
    // podSubnet: the three flags kubeadm writes for it, consistent with the Service range.
    if let Some(k) = kcm
        && let (Some(cidr), Some("true"), Some(range)) = (
            k.single("cluster-cidr"),
            k.single("allocate-node-cidrs"),
            k.single("service-cluster-ip-range"),
        )
        && range
            == net
                .service_subnet
                .as_deref()
                .unwrap_or(defaults::SERVICE_SUBNET)
    {
        net.pod_subnet = Some(cidr.to_string());
    }
    if let Some(a) = api {
        // dnsDomain: from kubeadm's service-account issuer.
        if let Some(domain) = a
            .single("service-account-issuer")
            .and_then(|i| i.strip_prefix("https://kubernetes.default.svc."))
            .filter(|d| !d.is_empty() && *d != defaults::DNS_DOMAIN && !d.contains(['/', ':']))
        {
            net.dns_domain = Some(domain.to_string());
        }
        if let Some(range) = a.single("service-node-port-range").filter(|r| {
            r.split_once('-').is_some_and(|(x, y)| {
                !x.is_empty()
                    && !y.is_empty()
                    && x.len() <= 5
                    && y.len() <= 5
                    && x.bytes().chain(y.bytes()).all(|b| b.is_ascii_digit())
            })
        }) {
            net.service_node_port_range = Some(range.to_string());
        }
        let port = a
            .single("secure-port")
            .and_then(|p| p.parse::<i32>().ok())
            .filter(|p| (1..=65535).contains(p) && *p != defaults::API_SERVER_PORT);
        if let Some(port) = port {
            spec.api_server
                .get_or_insert_with(Default::default)
                .secure_port = Some(port);
        }
        if let Some(addr) = advertise {
            spec.nodes.push(NodeOverride {
                name: node_name.to_string(),
                advertise_address: Some(addr.to_string()),
            });
        }
    }
    if net != Networking::default() {
        spec.networking = Some(net);
    }

    if let Some(k) = kcm {
        if let Some(name) = k
            .single("cluster-name")
            .filter(|n| *n != defaults::CLUSTER_NAME)
        {
            spec.cluster_name = Some(name.to_string());
        }
        if let Some(path) = kubeconfig_of(k, defaults::CONTROLLER_MANAGER_KUBECONFIG) {
            spec.controller_manager
                .get_or_insert_with(Default::default)
                .kubeconfig = Some(path);
        }
    }
    if let Some(s) = sched
        && let Some(path) = kubeconfig_of(s, defaults::SCHEDULER_KUBECONFIG)
    {
        spec.scheduler
            .get_or_insert_with(Default::default)
            .kubeconfig = Some(path);
    }
}

/// The kubeconfig field of kube-controller-manager or kube-scheduler: `--kubeconfig`, when
/// it is not the default and the authentication and authorization kubeconfigs are the same
/// file (or absent).
fn kubeconfig_of(s: &Source, default: &str) -> Option<String> {
    let k = s.single("kubeconfig")?;
    let agrees = |flag: &str| !s.has(flag) || s.single(flag) == Some(k);
    (k != default && agrees("authentication-kubeconfig") && agrees("authorization-kubeconfig"))
        .then(|| k.to_string())
}

/// A volume the spec can express: a hostPath volume with exactly one plain mount.
fn as_host_path_volume(u: &VolumeUse) -> Option<HostPathVolume> {
    let h = u.volume.as_ref()?.host_path.as_ref()?;
    let [m] = u.mounts.as_slice() else {
        return None;
    };
    if m.sub_path.is_some()
        || m.sub_path_expr.is_some()
        || m.mount_propagation.is_some()
        || m.recursive_read_only.is_some()
    {
        return None;
    }
    let path_type = match h.type_.as_deref() {
        None | Some("") => None,
        Some(t) => Some(serde_json::from_value::<HostPathType>(t.into()).ok()?),
    };
    Some(HostPathVolume {
        name: u.name.clone(),
        host_path: h.path.clone(),
        mount_path: m.mount_path.clone(),
        read_only: m.read_only.filter(|r| *r),
        path_type: path_type.filter(|t| *t != HostPathType::DirectoryOrCreate),
    })
}

fn resources_of(
    current: Option<&ResourceRequirements>,
    rendered: Option<&ResourceRequirements>,
) -> Option<Resources> {
    let current = current?;
    if Some(current) == rendered {
        return None;
    }
    let map =
        |m: &Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>| {
            m.iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect::<BTreeMap<String, String>>()
        };
    let r = Resources {
        requests: map(&current.requests),
        limits: map(&current.limits),
    };
    (r != Resources::default()).then_some(r)
}

/// Probe timing overrides: the manifest's values where they differ from the render's
/// (kubeadm's). A value the manifest leaves unset while kubeadm sets it cannot be
/// expressed and shows up in the final check.
fn timing(current: Option<&Probe>, rendered: Option<&Probe>) -> Option<ProbeTiming> {
    let (c, r) = (current?, rendered?);
    let pick = |c: Option<i32>, r: Option<i32>| c.filter(|_| c != r);
    let t = ProbeTiming {
        initial_delay_seconds: pick(c.initial_delay_seconds, r.initial_delay_seconds),
        period_seconds: pick(c.period_seconds, r.period_seconds),
        timeout_seconds: pick(c.timeout_seconds, r.timeout_seconds),
        failure_threshold: pick(c.failure_threshold, r.failure_threshold),
    };
    (t != ProbeTiming::default()).then_some(t)
}

/// Component settings equal to their defaults are left out of the config.
pub(in crate::adopt) fn drop_empty_settings(spec: &mut ControlPlaneConfigSpec) {
    if spec
        .api_server
        .as_ref()
        .is_some_and(|s| *s == Default::default())
    {
        spec.api_server = None;
    }
    if spec
        .controller_manager
        .as_ref()
        .is_some_and(|s| *s == Default::default())
    {
        spec.controller_manager = None;
    }
    if spec
        .scheduler
        .as_ref()
        .is_some_and(|s| *s == Default::default())
    {
        spec.scheduler = None;
    }
}

/// Hints about what was kept as host files, and about file names.
pub(in crate::adopt) fn hints(spec: &ControlPlaneConfigSpec, sources: &[Source]) -> Vec<String> {
    let mut out = Vec::new();
    let api_args = spec
        .api_server
        .as_ref()
        .map(|a| a.extra_args.as_slice())
        .unwrap_or_default();
    if let Some(a) = api_args.iter().find(|a| a.name == "audit-policy-file") {
        out.push(format!(
            "kube-apiserver reads its audit policy from the host file {}: kept as it is (extraArgs and an extraVolume), so adoption restarts nothing. To have kubeplane manage the policy on every node, move its content into spec.apiServer.audit.policy and drop the audit-* extraArgs and that volume; kube-apiserver then restarts once with the policy under the agent's state directory",
            a.value
        ));
    }
    if let Some(a) = api_args
        .iter()
        .find(|a| a.name == "encryption-provider-config")
    {
        out.push(format!(
            "kube-apiserver reads its encryption keys from the host file {}: kept as it is, and never copied into the config. To have kubeplane manage it, store it in a Secret (kubectl -n kube-system create secret generic kubeplane-encryption-config --from-file=config.yaml={0}), set spec.apiServer.encryption.secretRef and drop the extraArgs entry; kube-apiserver then restarts once",
            a.value
        ));
    }
    for s in sources {
        if s.file != s.component.manifest_file() {
            out.push(format!(
                "{} comes from {}, but kubeplane writes {}: rename the file to {2} before the agent or `kubeplane apply` takes over, or kubelet runs two {0} Pods",
                s.component,
                s.file,
                s.component.manifest_file()
            ));
        }
    }
    out
}
