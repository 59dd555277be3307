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

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::diff::{Change, changes};
use super::manifest::container;
use crate::api::{Component, ControlPlaneConfig, ControlPlaneConfigSpec, NodeFacts, PullPolicy};
use crate::flags::KubeVersion;
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

// After the macro: the step modules use it.
mod infer;
mod sources;

pub(super) use infer::{
    bare_value, drop_empty_settings, external_etcd, extra_args, hints, infer_first_class,
};
use infer::{host_ca_dirs, infer_etcd, infer_pod_settings};
pub(super) use sources::{Source, rendered_flags};
use sources::{read_sources, rendered_pod};

/// Imports the manifests.
pub fn import(input: &ImportInput<'_>) -> Result<Imported, ImportError> {
    let (sources, skipped) = read_sources(input.files)?;
    let get = |c: Component| sources.iter().find(|s| s.component == c);
    let (api, kcm, sched) = (
        get(Component::ApiServer),
        get(Component::ControllerManager),
        get(Component::Scheduler),
    );
    let (node_name, advertise) = node_identity(input, api)?;
    let mut spec = version_and_repository(&sources)?;
    let mut notes = Vec::new();
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

    if let Some(a) = api {
        let base = render_spec(&spec)?;
        if let Some(etcd) = infer_etcd(a, &base) {
            spec.etcd = Some(etcd);
        }
    }
    // Flags: every one the render of the first-class fields does not produce as given.
    let base = render_spec(&spec)?;
    for s in &sources {
        let (extra_args, protected) =
            extra_args(&base, s, false, |name| bare_value(s.component, name));
        with_settings!(spec, s.component, |st| {
            st.extra_args = extra_args;
            st.allow_protected_overrides = protected;
        });
    }
    // Volumes, env, resources, probes: against the render with those flags (some mounts and
    // the probes' host and port follow the flags).
    let with_flags = render_spec(&spec)?;
    infer_pod_settings(&mut spec, &sources, &with_flags);
    drop_empty_settings(&mut spec);

    // The check: does the render reproduce every manifest?
    let lossy = lossy(&sources, &render_spec(&spec)?);
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
        config: named_config(name, spec),
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

/// The imported config: `spec` under `name`.
pub(super) fn named_config(name: String, spec: ControlPlaneConfigSpec) -> ControlPlaneConfig {
    ControlPlaneConfig {
        metadata: ObjectMeta {
            name: Some(name),
            ..Default::default()
        },
        spec,
        status: None,
    }
}

/// The node name, and the address kube-apiserver advertises (its last `--advertise-address`,
/// else the caller's).
fn node_identity(
    input: &ImportInput<'_>,
    api: Option<&Source>,
) -> Result<(String, Option<String>), ImportError> {
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
    Ok((node_name, advertise))
}

/// The spec's version, image repository and pull policy, from the first image that names
/// them.
fn version_and_repository(sources: &[Source]) -> Result<ControlPlaneConfigSpec, ImportError> {
    let mut image_error = None;
    let mut image = None;
    for s in sources {
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
    Ok(ControlPlaneConfigSpec {
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
    })
}

/// What the final render `fin` would still change in each source.
fn lossy(sources: &[Source], fin: &Rendered) -> Vec<Lossy> {
    sources
        .iter()
        .filter_map(|s| {
            let rendered = rendered_pod(fin, s.component)?;
            (!equivalent(&s.pod, rendered)).then(|| Lossy {
                component: s.component,
                file: s.file.clone(),
                changes: changes(&s.pod, rendered),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
