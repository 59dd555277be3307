//! [`import_units`]: the config whose render reproduces the units.

mod auth;
mod fates;
mod mounts;

use self::auth::{anonymous_probes, required_service_account_flags, shared_keys};
use self::fates::settle_fates;
use self::mounts::mount_paths;
use super::*;

/// Imports the units.
pub fn import_units(input: &HardWayInput<'_>) -> Result<HardWayImport, HardWayError> {
    if input.units.is_empty() {
        return Err(HardWayError::NoUnits);
    }
    let version = KubeVersion::parse(input.kubernetes_version)?;
    let mut findings: Vec<Finding> = Vec::new();
    let mut reports: Vec<FlagReport> = Vec::new();
    let mut parsed: Vec<Parsed> = Vec::new();

    for unit in input.units {
        let p = read_unit(
            unit,
            input.env_files,
            &version,
            &parsed,
            &mut findings,
            &mut reports,
        )?;
        parsed.push(p);
    }
    parsed.sort_by_key(|p| Component::ALL.iter().position(|c| *c == p.component));

    let get = |c: Component| parsed.iter().find(|p| p.component == c);
    let api = get(Component::ApiServer);
    let kcm = get(Component::ControllerManager);

    // Node name and advertise address.
    let node_name = match (api, input.node_name.filter(|n| !n.is_empty())) {
        (_, Some(n)) => n.to_string(),
        (Some(a), None) => return Err(HardWayError::NoNodeName(a.unit.clone())),
        (None, None) => "node".to_string(),
    };
    let advertise = match api {
        None => None,
        Some(a) => match a
            .kept
            .iter()
            .rev()
            .find(|(n, _, _)| n == "advertise-address")
        {
            Some((_, v, _)) => Some(v.clone()),
            None => match input.advertise_address {
                Some(v) => Some(v.to_string()),
                None => return Err(HardWayError::NoAdvertiseAddress(a.unit.clone())),
            },
        },
    };

    let extra_api = required_service_account_flags(api, kcm, &mut findings);
    shared_keys(&parsed, &reports, input, &mut findings);

    // The spec: first-class fields inferred from the kept flags.
    let mut spec = ControlPlaneConfigSpec {
        kubernetes_version: version.to_string(),
        ..Default::default()
    };
    let mut notes_unmanaged = Vec::new();
    for c in Component::ALL {
        if get(c).is_none() {
            set_unmanaged(&mut spec, c);
            notes_unmanaged.push(Finding::note(format!(
                "no unit of {c} given: the config sets {}.managed: false, so kubeplane leaves it alone (import its unit too, in the same command, to move it as well)",
                field_of(c)
            )));
        }
    }
    let sources: Vec<Source> = parsed
        .iter()
        .map(|p| {
            let mut flags: Vec<(String, Option<String>)> = p
                .kept
                .iter()
                .map(|(n, v, _)| (n.clone(), Some(v.clone())))
                .collect();
            if p.component == Component::ApiServer {
                flags.extend(
                    extra_api
                        .iter()
                        .map(|(n, v, _)| (n.clone(), Some(v.clone()))),
                );
            }
            Source {
                component: p.component,
                file: p.unit.clone(),
                pod: Pod::default(),
                index: 0,
                flags,
            }
        })
        .collect();
    let src = |c: Component| sources.iter().find(|s| s.component == c);
    infer_first_class(
        &mut spec,
        src(Component::ApiServer),
        src(Component::ControllerManager),
        src(Component::Scheduler),
        advertise.as_deref(),
        &node_name,
    );
    // kube-controller-manager gets --service-cluster-ip-range from serviceSubnet only with a
    // podSubnet: without kube-apiserver, its own flag stays an extraArgs entry instead.
    if api.is_none()
        && let Some(net) = spec.networking.as_mut()
        && net.pod_subnet.is_none()
    {
        net.service_subnet = None;
        if *net == Default::default() {
            spec.networking = None;
        }
    }
    if let Some(a) = src(Component::ApiServer) {
        let one = |n: &str| {
            let v: Vec<&str> = a
                .flags
                .iter()
                .filter(|(k, _)| k == n)
                .filter_map(|(_, v)| v.as_deref())
                .collect();
            (v.len() == 1).then(|| v[0].to_string())
        };
        if let Some(servers) = one("etcd-servers").filter(|s| s != defaults::LOCAL_ETCD_SERVER) {
            spec.etcd = Some(external_etcd(
                &servers,
                one("etcd-cafile"),
                one("etcd-certfile"),
                one("etcd-keyfile"),
            ));
        }
    }
    let node = NodeFacts {
        node_name: node_name.clone(),
        advertise_address: advertise.clone(),
        ..Default::default()
    };
    let render_spec = |spec: &ControlPlaneConfigSpec| -> Result<Rendered, RenderError> {
        render::render(&RenderInput {
            spec,
            node: &node,
            encryption_config_sha256: None,
        })
    };

    // Flags: every one the render of the first-class fields does not produce as given.
    let base = render_spec(&spec)?;
    for s in &sources {
        let c = s.component;
        let (args, protected) = extra_args(&base, s, true, |_| String::new());
        // Variables the process sees that ExecStart does not consume.
        let p = parsed.iter().find(|p| p.component == c).map(|p| &p.command);
        let env: Vec<EnvVar> = p
            .map(|cmd| {
                cmd.environment
                    .iter()
                    .filter(|(n, _)| !cmd.references.iter().any(|(r, _, _)| r == n))
                    .map(|(n, v)| EnvVar {
                        name: n.clone(),
                        value: v.value.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        for e in &env {
            findings.push(
                Finding::note(format!(
                    "the unit sets the variable {} and ExecStart does not use it, so the process reads it from its environment: kept in {}.extraEnv",
                    e.name,
                    field_of(c)
                ))
                .of(c),
            );
        }
        set_common(&mut spec, c, args, protected, None, Some(env));
    }

    let with_args = render_spec(&spec)?;
    let mounts = mount_paths(&mut spec, &with_args, &sources, input, &mut findings);
    drop_empty_settings(&mut spec);
    let fin = render_spec(&spec)?;
    let added = settle_fates(
        &spec,
        &fin,
        &parsed,
        &mut reports,
        &node,
        &extra_api,
        &mut findings,
    );
    findings.extend(notes_unmanaged);
    for h in hints(&spec, &[]) {
        findings.push(Finding::note(h));
    }
    anonymous_probes(api, &reports, &mut findings);

    let name = input
        .config_name
        .map(str::to_string)
        .or_else(|| spec.cluster_name.clone())
        .unwrap_or_else(|| defaults::CLUSTER_NAME.to_string());
    let report = validation::validate(&spec);
    Ok(HardWayImport {
        config: named_config(name, spec),
        node,
        sources: parsed
            .iter()
            .map(|p| UnitSource {
                component: p.component,
                unit: p.unit.clone(),
                executable: p.command.path.text.clone(),
                args: p.command.args.iter().map(|w| w.text.clone()).collect(),
            })
            .collect(),
        flags: reports,
        added,
        mounts,
        findings,
        report,
    })
}

/// Why kubeplane writes a flag the unit lacked: the note of its kubeadm default
/// ([`defaults::default_flag`]), else the generic reason.
pub(super) fn added_reason(c: Component, name: &str) -> String {
    match defaults::default_flag(c, name).and_then(|f| f.note) {
        Some(note) => note.to_string(),
        None => format!(
            "one of kubeadm's default flags, which kubeplane always writes (check that the file or value exists on this node, or override it in {}.extraArgs)",
            field_of(c)
        ),
    }
}
