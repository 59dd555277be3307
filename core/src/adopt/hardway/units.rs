//! [`import_units`]: the config whose render reproduces the units.

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

    // kube-apiserver's required service-account flags (since v1.20), when the unit lacks them.
    let mut extra_api: Vec<(String, String, String)> = Vec::new();
    if let Some(a) = api {
        let has = |n: &str| a.kept.iter().any(|(k, _, _)| k == n);
        let keys: Vec<String> = a
            .kept
            .iter()
            .filter(|(n, _, _)| n == "service-account-key-file")
            .flat_map(|(_, v, _)| split_list(v).map(str::to_string).collect::<Vec<_>>())
            .collect();
        if !has("service-account-signing-key-file") {
            let from_kcm = kcm.and_then(|k| {
                k.kept
                    .iter()
                    .rev()
                    .find(|(n, _, _)| n == "service-account-private-key-file")
                    .map(|(_, v, _)| v.clone())
            });
            let guess = from_kcm
                .clone()
                .map(|v| (v, "kube-controller-manager's --service-account-private-key-file (both must sign with the same key)".to_string()))
                .or_else(|| {
                    keys.first().and_then(|k| {
                        private_half(k).map(|p| {
                            (
                                p,
                                format!("named like the private half of --service-account-key-file={k}"),
                            )
                        })
                    })
                });
            match guess {
                Some((path, why)) => {
                    extra_api.push((
                        "service-account-signing-key-file".into(),
                        path.clone(),
                        format!(
                            "required since v1.20 (kube-apiserver signs service-account tokens itself); the unit has none, so the import uses {path}, {why}"
                        ),
                    ));
                    if from_kcm.is_none() {
                        findings.push(
                            Finding::warning(format!(
                                "the unit has no --service-account-signing-key-file, required since v1.20; the import uses {path} ({why})"
                            ))
                            .of(Component::ApiServer)
                            .fix(format!(
                                "check that {path} is the private key whose public half is in --service-account-key-file, and that kube-controller-manager's --service-account-private-key-file is the same file"
                            )),
                        );
                    }
                }
                None => findings.push(
                    Finding::error(
                        "the unit has no --service-account-signing-key-file, required since v1.20, and the import cannot tell which private key matches --service-account-key-file; the config keeps kubeplane's default (sa.key under certificatesDir), which this node does not have",
                    )
                    .of(Component::ApiServer)
                    .fix("add service-account-signing-key-file (the private key kube-controller-manager signs tokens with) to spec.apiServer.extraArgs and allowProtectedOverrides"),
                ),
            }
        }
        if !has("service-account-issuer") {
            findings.push(
                Finding::note(
                    "the unit has no --service-account-issuer, required since v1.20: the config uses kubeplane's default, https://kubernetes.default.svc.<dnsDomain>; tokens issued before keep working (kube-apiserver still accepts the legacy issuer kubernetes/serviceaccount)",
                )
                .of(Component::ApiServer)
                .fix("to use another issuer (for example the external URL of the API), add service-account-issuer to spec.apiServer.extraArgs and allowProtectedOverrides"),
            );
        }
    }

    // Service-account keys that are CA files.
    for p in &parsed {
        let c = p.component;
        let ca_files: Vec<(&str, &str, Component)> = parsed
            .iter()
            .flat_map(|q| {
                q.kept
                    .iter()
                    .filter(|(n, _, _)| CA_FLAGS.contains(&n.as_str()))
                    .map(move |(n, v, _)| (n.as_str(), v.as_str(), q.component))
            })
            .collect();
        let signing_key = parsed
            .iter()
            .flat_map(|q| {
                q.kept
                    .iter()
                    .filter(|(n, _, _)| n == "cluster-signing-key-file")
                    .map(|(_, v, _)| v.as_str())
            })
            .collect::<Vec<_>>();
        for (n, v, idx) in &p.kept {
            let origin = &reports[*idx].origin;
            if c == Component::ApiServer && n == "service-account-key-file" {
                for key in split_list(v) {
                    let shared = CA_FLAGS
                        .iter()
                        .any(|flag| ca_files.iter().any(|(n, f, _)| n == flag && *f == key));
                    if !shared
                        && input
                            .key_files
                            .get(key)
                            .is_some_and(|pem| is_ca_certificate(pem))
                    {
                        findings.push(
                            Finding::error(format!(
                                "the service-account verification key {key} is a CA certificate (basicConstraints CA:TRUE): whoever holds that CA's private key can mint service-account tokens"
                            ))
                            .at(origin)
                            .flag(c, n, Some(v))
                            .fix("create a key pair for service accounts only (openssl genrsa -out sa.key 2048; openssl rsa -in sa.key -pubout -out sa.pub) and rotate to it: list both public keys, sign with the new key, drop the CA once old tokens have expired"),
                        );
                    }
                    let hit = CA_FLAGS
                        .iter()
                        .find_map(|flag| ca_files.iter().find(|(n, f, _)| n == flag && *f == key));
                    if let Some((ca_flag, _, ca_c)) = hit {
                        findings.push(
                            Finding::error(format!(
                                "the service-account verification key is {key}, the CA certificate {ca_c} also uses as --{ca_flag}: whoever holds that CA's private key can mint service-account tokens, and rotating either one breaks the other"
                            ))
                            .at(origin)
                            .flag(c, n, Some(v))
                            .fix("create a key pair for service accounts only (openssl genrsa -out sa.key 2048; openssl rsa -in sa.key -pubout -out sa.pub), then rotate in three steps: list both public keys in service-account-key-file, switch kube-apiserver's --service-account-signing-key-file and kube-controller-manager's --service-account-private-key-file to sa.key, and drop the CA from service-account-key-file once old tokens have expired; the config keeps the current value so adoption changes nothing"),
                        );
                    }
                }
            }
            if c == Component::ControllerManager
                && n == "service-account-private-key-file"
                && signing_key.contains(&v.as_str())
            {
                findings.push(
                    Finding::error(format!(
                        "service-account tokens are signed with {v}, the cluster CA's private key (--cluster-signing-key-file): the CA key signs tokens, so rotating either one breaks the other"
                    ))
                    .at(origin)
                    .flag(c, n, Some(v))
                    .fix("create a key pair for service accounts only (sa.key, sa.pub), list sa.pub beside the current key in kube-apiserver's --service-account-key-file, then sign with sa.key (this flag and kube-apiserver's --service-account-signing-key-file); the config keeps the current value so adoption changes nothing"),
                );
            }
        }
    }

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

    // Volumes: every path a kept flag names, in a mount.
    let with_args = render_spec(&spec)?;
    let mut mounts: Vec<MountReport> = Vec::new();
    for s in &sources {
        let c = s.component;
        let Some(pod) = with_args.pods.iter().find(|p| p.component == c) else {
            continue;
        };
        let existing = pod_mounts(&pod.pod);
        let mut volumes: Vec<HostPathVolume> = Vec::new();
        let mut names: Vec<String> = existing.iter().map(|(n, _, _)| n.clone()).collect();
        let add = |mounts: &mut Vec<MountReport>,
                   path: String,
                   ro: bool,
                   volume: String,
                   default: bool,
                   flag: &str| {
            match mounts
                .iter_mut()
                .find(|m| m.component == c && m.path == path && m.read_only == ro)
            {
                Some(m) => {
                    if !m.flags.iter().any(|f| f == flag) {
                        m.flags.push(flag.to_string());
                    }
                }
                None => mounts.push(MountReport {
                    component: c,
                    path,
                    read_only: ro,
                    volume,
                    default,
                    flags: vec![flag.to_string()],
                }),
            }
        };
        // (what names it, path, written by the component)
        let mut wanted: Vec<(String, String, bool)> = Vec::new();
        for (name, value) in &s.flags {
            let Some(info) = find(c, name) else { continue };
            let Some(value) = value else { continue };
            let written = WRITTEN_FLAGS.contains(&name.as_str());
            for path in paths_of(info, value) {
                wanted.push((name.clone(), path.to_string(), written));
                if !name.ends_with("kubeconfig") {
                    continue;
                }
                let Some(text) = input.kubeconfigs.get(path) else {
                    continue;
                };
                let (files, servers) = kubeconfig_refs(path, text);
                for (key, file) in files {
                    if !wanted.iter().any(|(_, p, _)| *p == file) {
                        wanted.push((format!("{name} ({key} in {path})"), file, false));
                    }
                }
                for server in servers.iter().filter(|s| s.starts_with("http://")) {
                    findings.push(
                        Finding::error(format!(
                            "the kubeconfig {path} talks to {server}, plain HTTP: kube-apiserver's insecure port, which no supported version serves, so {c} cannot reach the API"
                        ))
                        .flag(c, name, Some(path))
                        .fix(format!(
                            "point the kubeconfig's server at https://ADDRESS:6443 with a client certificate (kubectl config set-cluster --kubeconfig={path} … --server=https://…)"
                        )),
                    );
                }
            }
        }
        for (name, path, written) in &wanted {
            let (name, path, written) = (name.as_str(), path.as_str(), *written);
            {
                let want_dir = if written {
                    parent(path)
                } else {
                    path.to_string()
                };
                if let Some((vname, mpath, ro)) = existing
                    .iter()
                    .filter(|(_, m, ro)| covers(m, &want_dir) && (!written || !ro))
                    .max_by_key(|(_, m, _)| m.len())
                {
                    add(&mut mounts, mpath.clone(), *ro, vname.clone(), true, name);
                    continue;
                }
                let dir = parent(path);
                if let Some(v) = volumes.iter().find(|v| {
                    covers(&v.host_path, &want_dir) && (!written || v.read_only != Some(true))
                }) {
                    add(
                        &mut mounts,
                        v.host_path.clone(),
                        v.read_only == Some(true),
                        v.name.clone(),
                        false,
                        name,
                    );
                    continue;
                }
                let vname = volume_name(&dir, &names);
                names.push(vname.clone());
                volumes.push(HostPathVolume {
                    name: vname.clone(),
                    host_path: dir.clone(),
                    mount_path: dir.clone(),
                    read_only: (!written).then_some(true),
                    path_type: (!written).then_some(HostPathType::Directory),
                });
                add(&mut mounts, dir, !written, vname, false, name);
            }
        }
        match c {
            Component::ApiServer => {
                spec.api_server
                    .get_or_insert_with(Default::default)
                    .extra_volumes = volumes
            }
            Component::ControllerManager => {
                spec.controller_manager
                    .get_or_insert_with(Default::default)
                    .extra_volumes = volumes
            }
            Component::Scheduler => {
                spec.scheduler
                    .get_or_insert_with(Default::default)
                    .extra_volumes = volumes
            }
        }
    }
    drop_empty_settings(&mut spec);
    let fin = render_spec(&spec)?;

    // Fates of kept flags, and what the render adds.
    let certs = spec
        .certificates_dir
        .clone()
        .unwrap_or_else(|| defaults::CERTIFICATES_DIR.to_string());
    let spec_json = serde_json::to_value(&spec).unwrap_or_default();
    let mut added = Vec::new();
    for p in &parsed {
        let c = p.component;
        let settings = render::settings(&spec, c);
        let rendered = rendered_flags(&fin, c);
        for (name, value, idx) in &p.kept {
            let r = &mut reports[*idx];
            if matches!(r.fate, Fate::Replaced { .. }) {
                continue;
            }
            r.fate = if c == Component::ApiServer && name == "advertise-address" {
                Fate::PerNode {
                    field: format!("spec.nodes[name={node_name}].advertiseAddress"),
                }
            } else if let Some(i) = settings.extra_args.iter().position(|a| a.name == *name) {
                Fate::ExtraArg {
                    field: format!("{}.extraArgs[{i}]", field_of(c)),
                    protected: is_protected(c, name),
                }
            } else if let Some(f) = owner(c, name) {
                if field_set(&spec_json, &f) {
                    Fate::Field { field: f }
                } else {
                    Fate::Default {
                        via: Some(format!("{f}, left at its default")),
                    }
                }
            } else if value.starts_with(&format!("{}/", certs.trim_end_matches('/')))
                && spec.certificates_dir.is_some()
            {
                Fate::Default {
                    via: Some("spec.certificatesDir".into()),
                }
            } else {
                Fate::Default { via: None }
            };
            if name == "bind-address" && Some(value) == advertise.as_ref() {
                findings.push(
                    Finding::warning(format!(
                        "this is the node's own address, and spec.nodes[] has no per-node bind address: kept in extraArgs, so every node would get {value}"
                    ))
                    .at(&r.origin)
                    .flag(c, name, Some(value))
                    .fix("bind to 0.0.0.0 (or ::) in the config before adding a second node"),
                );
            }
        }
        for (name, values) in &rendered {
            let in_unit = p.kept.iter().any(|(n, _, _)| n == name);
            if in_unit {
                // List flags merge with kubeplane's defaults: report items the unit lacks.
                if merge_of(c, name) == Merge::List {
                    let unit_items: Vec<&str> = p
                        .kept
                        .iter()
                        .filter(|(n, _, _)| n == name)
                        .flat_map(|(_, v, _)| split_list(v).collect::<Vec<_>>())
                        .collect();
                    let extra: Vec<&str> = values
                        .iter()
                        .flat_map(|v| split_list(v))
                        .filter(|i| !unit_items.contains(i))
                        .collect();
                    if !extra.is_empty() {
                        added.push(Added {
                            component: c,
                            name: name.clone(),
                            value: extra.join(","),
                            reason: format!(
                                "kubeplane merges --{name} with kubeadm's default list; to keep an item off, list it in disable-admission-plugins"
                            ),
                        });
                    }
                }
                continue;
            }
            let reason = match extra_api.iter().find(|(n, _, _)| n == name) {
                Some((_, _, why)) => why.clone(),
                None => added_reason(c, name),
            };
            added.push(Added {
                component: c,
                name: name.clone(),
                value: values.join(","),
                reason,
            });
        }
    }
    findings.extend(notes_unmanaged);
    for h in hints(&spec, &[]) {
        findings.push(Finding::note(h));
    }
    // kubelet's probes (and migrate's checks) call /livez and /readyz without credentials.
    if let Some(a) = api
        && a.kept
            .iter()
            .any(|(n, v, _)| n == "anonymous-auth" && v == "false")
        && !a.kept.iter().any(|(n, _, _)| n == "authentication-config")
    {
        let origin = a
            .kept
            .iter()
            .find(|(n, _, _)| n == "anonymous-auth")
            .map(|(_, _, i)| reports[*i].origin.clone());
        let mut f = Finding::error(
            "a static Pod is judged by kubelet's probes, which call /livez, /readyz and /livez again at start without credentials: with anonymous requests off they get 401, kubelet restarts kube-apiserver over and over, and migrate goes back to the unit",
        )
        .flag(Component::ApiServer, "anonymous-auth", Some("false"))
        .fix("drop --anonymous-auth=false from spec.apiServer.extraArgs (RBAC gives anonymous requests only the health, version and discovery endpoints, through system:public-info-viewer), or replace it by --authentication-config with an AuthenticationConfiguration whose anonymous section is enabled only for /livez, /readyz and /healthz (v1.32+), mounted read-only");
        if let Some(o) = origin {
            f = f.at(&o);
        }
        findings.push(f);
    }

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
