//! The mounts of the imported config: every path a kept flag names (and every file a named
//! kubeconfig references), in an existing mount of the rendered Pod or a new `extraVolumes`
//! entry — read-only, or read-write for a directory the component writes.

use super::*;

/// Volumes: every path a kept flag names, in a mount. Sets each component's `extraVolumes`
/// in `spec`; returns every mount and the flags that need it.
pub(super) fn mount_paths(
    spec: &mut ControlPlaneConfigSpec,
    with_args: &Rendered,
    sources: &[Source],
    input: &HardWayInput<'_>,
    findings: &mut Vec<Finding>,
) -> Vec<MountReport> {
    let mut mounts: Vec<MountReport> = Vec::new();
    for s in sources {
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
    mounts
}
