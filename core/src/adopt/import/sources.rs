//! The sources of an import: which file holds which component's Pod, its flags, and the
//! flags of the render compared with them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use super::{ImportError, ManifestFile, Skipped};
use crate::adopt::manifest::{Parsed, VolumeUse, component_of, container, parse_pod, volume_uses};
use crate::api::Component;
use crate::render::Rendered;
use crate::render::equivalence::parse_command;

/// One component's manifest.
#[derive(Clone, Debug)]
pub(in crate::adopt) struct Source {
    pub(in crate::adopt) component: Component,
    pub(in crate::adopt) file: String,
    pub(in crate::adopt) pod: Pod,
    pub(in crate::adopt) index: usize,
    /// Flags in the order given, bare flags with `None`.
    pub(in crate::adopt) flags: Vec<(String, Option<String>)>,
}

impl Source {
    pub(in crate::adopt) fn values(&self, name: &str) -> Vec<&str> {
        self.flags
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref().unwrap_or_default())
            .collect()
    }

    /// The value of a flag given exactly once with a value.
    pub(in crate::adopt) fn single(&self, name: &str) -> Option<&str> {
        let mut it = self.flags.iter().filter(|(n, _)| n == name);
        match (it.next(), it.next()) {
            (Some((_, Some(v))), None) => Some(v),
            _ => None,
        }
    }

    pub(in crate::adopt) fn has(&self, name: &str) -> bool {
        self.flags.iter().any(|(n, _)| n == name)
    }

    pub(in crate::adopt) fn volumes(&self) -> Vec<VolumeUse> {
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
pub(super) fn read_sources(
    files: &[ManifestFile],
) -> Result<(Vec<Source>, Vec<Skipped>), ImportError> {
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

/// The flags of a rendered component, by name, values in order.
pub(in crate::adopt) fn rendered_flags(
    r: &Rendered,
    component: Component,
) -> BTreeMap<String, Vec<String>> {
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

pub(super) fn rendered_pod(r: &Rendered, component: Component) -> Option<&Pod> {
    r.pods
        .iter()
        .find(|p| p.component == component)
        .map(|p| &p.pod)
}
