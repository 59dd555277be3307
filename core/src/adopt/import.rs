//! `kubeplane import`: the `ControlPlaneConfig` whose render reproduces a node's existing
//! control-plane manifests. Pure: the caller reads the files.
//!
//! The import works backwards from the renderer, which holds every default: it infers the
//! first-class fields (version and image repository from the image, certificates
//! directory, networking, etcd, kubeconfigs, cluster name, port, the node's advertise
//! address), renders that spec, and turns every remaining difference into `extraArgs`,
//! `extraVolumes`, `extraEnv`, `resources` and probe overrides. Finally it renders the
//! result and compares it with each manifest ([`crate::render::equivalent`]): whatever the
//! render would still change (a default flag the manifest lacks, which kubeplane cannot
//! remove; a field kubeplane does not model) is listed in [`Imported::lossy`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Probe, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::diff::{Change, changes};
use super::manifest::{Parsed, VolumeUse, component_of, container, parse_pod, volume_uses};
use crate::api::{
    Arg, Component, ControlPlaneConfig, ControlPlaneConfigSpec, EnvVar, Etcd, ExternalEtcd,
    FlagName, HostPathType, HostPathVolume, Networking, NodeFacts, NodeOverride, ProbeTiming,
    Probes, PullPolicy, Resources,
};
use crate::flags::policy::is_protected;
use crate::flags::{FlagType, KubeVersion};
use crate::render::equivalence::parse_command;
use crate::render::{self, RenderError, RenderInput, Rendered, defaults, equivalent};
use crate::validation::{self, Report};

/// Node name used for rendering when no kube-apiserver needs a real one (the name only
/// enters `metadata.uid`, which adoption ignores).
const PLACEHOLDER_NODE: &str = "node";

/// One file of the manifest directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestFile {
    /// File name (no directory).
    pub name: String,
    /// Its bytes.
    pub content: Vec<u8>,
}

/// What [`import`] needs.
#[derive(Clone, Copy, Debug, Default)]
pub struct ImportInput<'a> {
    /// Every file of the manifest directory (dot files already left out, as kubelet does).
    pub files: &'a [ManifestFile],
    /// The node the manifests belong to; needed when a kube-apiserver manifest is present.
    pub node_name: Option<&'a str>,
    /// The node's address, used when the kube-apiserver manifest has no
    /// `--advertise-address` (kubeplane always writes one).
    pub advertise_address: Option<&'a str>,
    /// `metadata.name` of the config. Default: the cluster name (`--cluster-name`), else
    /// `kubernetes`.
    pub config_name: Option<&'a str>,
}

/// A file that was not imported, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// File name.
    pub file: String,
    /// Why.
    pub reason: String,
}

/// What the render of the imported config would still change in one manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lossy {
    /// The component.
    pub component: Component,
    /// The file it came from.
    pub file: String,
    /// The changes, from the manifest to the render.
    pub changes: Vec<Change>,
}

/// The result of an import.
#[derive(Clone, Debug)]
pub struct Imported {
    /// The config.
    pub config: ControlPlaneConfig,
    /// The node facts it was checked with: node name, advertise address, and the optional
    /// host CA directories the manifests mount (facts the agent reports on the node).
    pub node: NodeFacts,
    /// Which file each component came from, in apply order.
    pub sources: Vec<(Component, String)>,
    /// Files not imported.
    pub skipped: Vec<Skipped>,
    /// Hints for the user (host files kept as they are, file names, unmanaged components).
    pub notes: Vec<String>,
    /// What rendering the config would still change; empty when adoption is a no-op.
    pub lossy: Vec<Lossy>,
    /// `validation::validate` of the config.
    pub report: Report,
}

impl Imported {
    /// Whether rendering the config reproduces every imported manifest (up to
    /// [`crate::render::equivalent`]).
    pub fn is_exact(&self) -> bool {
        self.lossy.is_empty()
    }
}

/// Why nothing could be imported.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ImportError {
    /// No file holds a control-plane Pod.
    #[error(
        "no kube-apiserver, kube-controller-manager or kube-scheduler manifest found{}",
        skipped_list(.skipped)
    )]
    NoManifests {
        /// Every file looked at, and why it was not one.
        skipped: Vec<Skipped>,
    },
    /// Manifest files that do not parse.
    #[error("{}", malformed_list(.0))]
    Malformed(Vec<Skipped>),
    /// Two files run the same component.
    #[error(
        "{component} is defined by {}: kubelet runs every file, so they fight over the same Pod; keep one (kubeplane manages {})",
        .files.join(" and "),
        .component.manifest_file()
    )]
    Duplicate {
        /// The component.
        component: Component,
        /// The files.
        files: Vec<String>,
    },
    /// No image names the Kubernetes version.
    #[error(
        "{file}: image {image:?}: {reason}; kubeplane writes <imageRepository>/{component}:<kubernetesVersion>, so it needs the version from the image tag"
    )]
    Image {
        /// The file.
        file: String,
        /// The component.
        component: Component,
        /// The image.
        image: String,
        /// What is wrong with it.
        reason: String,
    },
    /// kube-apiserver needs the node's name.
    #[error(
        "{file} holds kube-apiserver, whose advertise address is per node: pass --node NAME (the Node name of this machine)"
    )]
    NoNodeName {
        /// The kube-apiserver file.
        file: String,
    },
    /// kube-apiserver has no advertise address and none was given.
    #[error(
        "{file}: kube-apiserver has no --advertise-address, and kubeplane always writes one: pass --address IP (this node's InternalIP)"
    )]
    NoAdvertiseAddress {
        /// The kube-apiserver file.
        file: String,
    },
    /// The inferred config cannot be rendered (a bug or an unsupported value).
    #[error("the imported config cannot be rendered: {0}")]
    Render(#[from] RenderError),
}

fn skipped_list(s: &[Skipped]) -> String {
    if s.is_empty() {
        return " (the directory holds no files)".into();
    }
    let items: Vec<String> = s
        .iter()
        .map(|s| format!("{}: {}", s.file, s.reason))
        .collect();
    format!(" ({})", items.join("; "))
}

fn malformed_list(s: &[Skipped]) -> String {
    let items: Vec<String> = s
        .iter()
        .map(|s| format!("{}: {}", s.file, s.reason))
        .collect();
    format!(
        "{}\nkubelet cannot run such a file either: fix or move it, then import again",
        items.join("\n")
    )
}

/// One component's manifest.
#[derive(Clone, Debug)]
pub(super) struct Source {
    pub(super) component: Component,
    pub(super) file: String,
    pub(super) pod: Pod,
    pub(super) index: usize,
    /// Flags in the order given, bare flags with `None`.
    pub(super) flags: Vec<(String, Option<String>)>,
}

impl Source {
    fn values(&self, name: &str) -> Vec<&str> {
        self.flags
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref().unwrap_or_default())
            .collect()
    }

    /// The value of a flag given exactly once with a value.
    fn single(&self, name: &str) -> Option<&str> {
        let mut it = self.flags.iter().filter(|(n, _)| n == name);
        match (it.next(), it.next()) {
            (Some((_, Some(v))), None) => Some(v),
            _ => None,
        }
    }

    fn has(&self, name: &str) -> bool {
        self.flags.iter().any(|(n, _)| n == name)
    }

    fn volumes(&self) -> Vec<VolumeUse> {
        volume_uses(&self.pod, self.index)
    }
}

fn is_manifest_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".yaml", ".yml", ".json"]
        .iter()
        .any(|ext| lower.ends_with(ext))
}

/// Classifies every file: component manifests, skipped files, malformed manifests.
fn read_sources(files: &[ManifestFile]) -> Result<(Vec<Source>, Vec<Skipped>), ImportError> {
    let mut found: Vec<Source> = Vec::new();
    let mut skipped = Vec::new();
    let mut malformed = Vec::new();
    let mut sorted: Vec<&ManifestFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for f in sorted {
        let skip = |reason: String| Skipped {
            file: f.name.clone(),
            reason,
        };
        let parsed = std::str::from_utf8(&f.content)
            .map_err(|_| "not UTF-8 text".to_string())
            .and_then(parse_pod);
        let pod = match parsed {
            Ok(Parsed::Pod(p)) => *p,
            Ok(Parsed::NotAPod(why)) => {
                skipped.push(skip(format!("not a Pod ({why})")));
                continue;
            }
            Err(why) if is_manifest_name(&f.name) || why.starts_with("a Pod") => {
                malformed.push(skip(why));
                continue;
            }
            Err(why) => {
                // Not named like a manifest: the parser's first line says enough.
                skipped.push(skip(why.lines().next().unwrap_or_default().to_string()));
                continue;
            }
        };
        let Some((component, index)) = component_of(&pod) else {
            let name = pod.metadata.name.clone().unwrap_or_default();
            skipped.push(skip(format!(
                "static Pod {name:?} runs no kube-apiserver, kube-controller-manager or kube-scheduler container; kubeplane leaves it alone"
            )));
            continue;
        };
        let flags = container(&pod, index)
            .map(|c| {
                let mut words: Vec<String> = c.command.clone().unwrap_or_default();
                // command[0] is the binary; without a command, args follow the image's
                // entrypoint.
                if !words.is_empty() {
                    words.remove(0);
                }
                words.extend(c.args.clone().unwrap_or_default());
                parse_command(&words)
                    .flags
                    .into_iter()
                    .map(|f| (f.name, f.value))
                    .collect()
            })
            .unwrap_or_default();
        found.push(Source {
            component,
            file: f.name.clone(),
            pod,
            index,
            flags,
        });
    }
    if !malformed.is_empty() {
        return Err(ImportError::Malformed(malformed));
    }
    let mut sources = Vec::new();
    for component in Component::ALL {
        let mut of: Vec<Source> = found
            .iter()
            .filter(|s| s.component == component)
            .cloned()
            .collect();
        match of.len() {
            0 => {}
            1 => sources.push(of.remove(0)),
            _ => {
                // A backup copy beside the real file: take the file kubeplane manages.
                let Some(pos) = of.iter().position(|s| s.file == component.manifest_file()) else {
                    return Err(ImportError::Duplicate {
                        component,
                        files: of.into_iter().map(|s| s.file).collect(),
                    });
                };
                let chosen = of.remove(pos);
                for other in of {
                    skipped.push(Skipped {
                        file: other.file,
                        reason: format!(
                            "another {component} Pod beside {}; kubelet runs it too (the agent quarantines such copies): not imported",
                            chosen.file
                        ),
                    });
                }
                sources.push(chosen);
            }
        }
    }
    if sources.is_empty() {
        return Err(ImportError::NoManifests { skipped });
    }
    Ok((sources, skipped))
}

/// Repository and tag of `<repository>/<component>:<tag>`.
fn parse_image(image: &str, component: Component) -> Result<(String, String), String> {
    if image.contains('@') {
        return Err("is pinned by digest".into());
    }
    let Some((name, tag)) = image.rsplit_once(':').filter(|(_, t)| !t.contains('/')) else {
        return Err("has no tag".into());
    };
    let Some((repo, last)) = name.rsplit_once('/') else {
        return Err("has no repository part".into());
    };
    if last != component.name() || repo.is_empty() {
        return Err(format!("is not named {}", component.name()));
    }
    Ok((repo.to_string(), tag.to_string()))
}

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
fn host_ca_dirs(sources: &[&Source]) -> Vec<String> {
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

/// Mutable access to the settings every component shares.
macro_rules! with_settings {
    ($spec:expr, $component:expr, |$s:ident| $body:expr) => {
        match $component {
            Component::ApiServer => {
                let $s = $spec.api_server.get_or_insert_with(Default::default);
                $body
            }
            Component::ControllerManager => {
                let $s = $spec
                    .controller_manager
                    .get_or_insert_with(Default::default);
                $body
            }
            Component::Scheduler => {
                let $s = $spec.scheduler.get_or_insert_with(Default::default);
                $body
            }
        }
    };
}

/// The flags of a rendered component, by name, values in order.
pub(super) fn rendered_flags(r: &Rendered, component: Component) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some(p) = r.pods.iter().find(|p| p.component == component) {
        let words = container(&p.pod, 0)
            .and_then(|c| c.command.clone())
            .unwrap_or_default();
        for f in parse_command(&words).flags {
            map.entry(f.name)
                .or_default()
                .push(f.value.unwrap_or_default());
        }
    }
    map
}

fn rendered_pod(r: &Rendered, component: Component) -> Option<&Pod> {
    r.pods
        .iter()
        .find(|p| p.component == component)
        .map(|p| &p.pod)
}

/// Imports the manifests.
pub fn import(input: &ImportInput<'_>) -> Result<Imported, ImportError> {
    let (sources, skipped) = read_sources(input.files)?;
    let get = |c: Component| sources.iter().find(|s| s.component == c);
    let (api, kcm, sched) = (
        get(Component::ApiServer),
        get(Component::ControllerManager),
        get(Component::Scheduler),
    );
    let mut notes = Vec::new();

    // Node name and advertise address.
    let node_name = match (api, input.node_name.filter(|n| !n.is_empty())) {
        (_, Some(n)) => n.to_string(),
        (Some(a), None) => {
            return Err(ImportError::NoNodeName {
                file: a.file.clone(),
            });
        }
        (None, None) => PLACEHOLDER_NODE.to_string(),
    };
    let advertise = match api {
        None => None,
        // The last value is the one kube-apiserver uses.
        Some(a) => match a
            .values("advertise-address")
            .last()
            .filter(|v| !v.is_empty())
        {
            Some(v) => Some(v.to_string()),
            None => match input.advertise_address {
                Some(v) => Some(v.to_string()),
                None => {
                    return Err(ImportError::NoAdvertiseAddress {
                        file: a.file.clone(),
                    });
                }
            },
        },
    };

    // Version and image repository from the first image that names them.
    let mut image_error = None;
    let mut image = None;
    for s in &sources {
        let img = container(&s.pod, s.index)
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        match parse_image(&img, s.component) {
            Ok(found) => {
                image = Some((s, found));
                break;
            }
            Err(reason) => {
                image_error.get_or_insert(ImportError::Image {
                    file: s.file.clone(),
                    component: s.component,
                    image: img,
                    reason,
                });
            }
        }
    }
    let Some((primary, (repo, tag))) = image else {
        return Err(image_error.unwrap_or(ImportError::NoManifests {
            skipped: Vec::new(),
        }));
    };
    if let Err(e) = KubeVersion::parse(&tag) {
        return Err(ImportError::Image {
            file: primary.file.clone(),
            component: primary.component,
            image: format!("{repo}/{}:{tag}", primary.component),
            reason: e.to_string(),
        });
    }

    let mut spec = ControlPlaneConfigSpec {
        kubernetes_version: tag,
        image_repository: (repo != defaults::IMAGE_REPOSITORY).then_some(repo),
        image_pull_policy: container(&primary.pod, primary.index)
            .and_then(|c| c.image_pull_policy.as_deref())
            .and_then(|p| match p {
                "Always" => Some(PullPolicy::Always),
                "Never" => Some(PullPolicy::Never),
                _ => None,
            }),
        ..Default::default()
    };
    for c in Component::ALL {
        if get(c).is_none() {
            with_settings!(spec, c, |s| s.managed = Some(false));
            notes.push(format!(
                "no {c} manifest: the config sets {}.managed: false, so kubeplane leaves {c} alone (it may run another way, e.g. as a systemd unit)",
                c.spec_field()
            ));
        }
    }

    infer_first_class(&mut spec, api, kcm, sched, advertise.as_deref(), &node_name);

    let api_kcm: Vec<&Source> = [api, kcm].into_iter().flatten().collect();
    let node = NodeFacts {
        node_name: node_name.clone(),
        advertise_address: advertise.clone(),
        host_ca_directories: host_ca_dirs(&api_kcm),
        ..Default::default()
    };
    let render_spec = |spec: &ControlPlaneConfigSpec| {
        render::render(&RenderInput {
            spec,
            node: &node,
            encryption_config_sha256: None,
        })
    };

    // etcd: kubeadm's local member when the four flags are exactly the renderer's defaults,
    // else the external cluster the flags name.
    if let Some(a) = api {
        let base = rendered_flags(&render_spec(&spec)?, Component::ApiServer);
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
        if !local
            && let Some(servers) = a.single("etcd-servers")
            && names.iter().all(|n| once(n))
        {
            spec.etcd = Some(Etcd {
                external: Some(ExternalEtcd {
                    endpoints: servers
                        .split(',')
                        .map(str::trim)
                        .filter(|e| !e.is_empty())
                        .map(Into::into)
                        .collect(),
                    ca_file: a.single("etcd-cafile").map(str::to_string),
                    cert_file: a.single("etcd-certfile").map(str::to_string),
                    key_file: a.single("etcd-keyfile").map(str::to_string),
                }),
            });
        }
    }

    // Flags: every one the render of the first-class fields does not produce as given.
    let base = render_spec(&spec)?;
    for s in &sources {
        let defaults = rendered_flags(&base, s.component);
        let mut by_name: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (n, v) in &s.flags {
            by_name
                .entry(n)
                .or_default()
                .push(v.as_deref().unwrap_or_default());
        }
        let differs = |name: &str| {
            let want: Vec<&str> = defaults
                .get(name)
                .into_iter()
                .flatten()
                .map(|s| &**s)
                .collect();
            // A bare flag never equals a rendered `--name=value`.
            by_name.get(name) != Some(&want)
                || s.flags.iter().any(|(n, v)| n == name && v.is_none())
        };
        let mut extra_args = Vec::new();
        let mut protected: Vec<FlagName> = Vec::new();
        for (name, value) in &s.flags {
            if !differs(name) {
                continue;
            }
            let value = value
                .clone()
                .unwrap_or_else(|| bare_value(s.component, name));
            extra_args.push(Arg::new(name.clone(), value));
            if is_protected(s.component, name) && !protected.iter().any(|p| p.0 == *name) {
                protected.push(FlagName(name.clone()));
            }
        }
        with_settings!(spec, s.component, |st| {
            st.extra_args = extra_args;
            st.allow_protected_overrides = protected;
        });
    }

    // Volumes, env, resources, probes: against the render with those flags (some mounts and
    // the probes' host and port follow the flags).
    let base = render_spec(&spec)?;
    for s in &sources {
        let Some(rendered) = rendered_pod(&base, s.component) else {
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
    drop_empty_settings(&mut spec);

    // The check: does the render reproduce every manifest?
    let fin = render_spec(&spec)?;
    let mut lossy = Vec::new();
    for s in &sources {
        let Some(rendered) = rendered_pod(&fin, s.component) else {
            continue;
        };
        if !equivalent(&s.pod, rendered) {
            lossy.push(Lossy {
                component: s.component,
                file: s.file.clone(),
                changes: changes(&s.pod, rendered),
            });
        }
    }

    notes.extend(hints(&spec, &sources));
    let name = input
        .config_name
        .map(str::to_string)
        .or_else(|| {
            kcm.and_then(|k| k.single("cluster-name"))
                .map(str::to_string)
        })
        .unwrap_or_else(|| defaults::CLUSTER_NAME.to_string());
    let report = validation::validate(&spec);
    Ok(Imported {
        config: ControlPlaneConfig {
            metadata: ObjectMeta {
                name: Some(name),
                ..Default::default()
            },
            spec,
            status: None,
        },
        node,
        sources: sources
            .iter()
            .map(|s| (s.component, s.file.clone()))
            .collect(),
        skipped,
        notes,
        lossy,
        report,
    })
}

/// The value an `extraArgs` entry gets for a bare `--name`: `true` for a boolean flag (what
/// the component reads), else empty.
pub(super) fn bare_value(component: Component, name: &str) -> String {
    match crate::flags::find(component, name) {
        Some(f) if f.type_ == FlagType::Bool => "true".into(),
        _ => String::new(),
    }
}

/// First-class fields, each set only when every flag it owns agrees with it in every
/// manifest (otherwise the flags stay `extraArgs`, and validation never sees one value set
/// in two places).
pub(super) fn infer_first_class(
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
pub(super) fn drop_empty_settings(spec: &mut ControlPlaneConfigSpec) {
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
pub(super) fn hints(spec: &ControlPlaneConfigSpec, sources: &[Source]) -> Vec<String> {
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

#[cfg(test)]
mod tests;
