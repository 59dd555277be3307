//! Reading static Pod manifests: YAML text to a Pod, and which component a Pod runs.

use k8s_openapi::api::core::v1::{Container, Pod, Volume, VolumeMount};

use crate::api::Component;

/// What a manifest file holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Parsed {
    /// A Pod.
    Pod(Box<Pod>),
    /// Something else kubelet would not run, and why it is not a Pod.
    NotAPod(String),
}

/// Parses a manifest as kubelet reads one: a single YAML (or JSON) document holding a Pod.
/// `Err` when the text is not YAML, holds several documents, or is a Pod with fields of the
/// wrong type (kubelet refuses such a file); the message names the field.
pub fn parse_pod(text: &str) -> Result<Parsed, String> {
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(text).map_err(|e| format!("not valid YAML: {e}"))?;
    let docs: Vec<serde_json::Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
    let doc = match docs.len() {
        0 => return Ok(Parsed::NotAPod("empty".into())),
        1 => docs.into_iter().next().unwrap_or_default(),
        n => {
            let kinds: Vec<&str> = docs
                .iter()
                .map(|d| d.get("kind").and_then(|k| k.as_str()).unwrap_or("no kind"))
                .collect();
            if kinds.contains(&"Pod") {
                return Err(format!(
                    "holds {n} YAML documents; a static Pod manifest holds one Pod"
                ));
            }
            return Ok(Parsed::NotAPod(format!(
                "{n} YAML documents: {}",
                kinds.join(", ")
            )));
        }
    };
    let kind = doc.get("kind").and_then(|k| k.as_str()).unwrap_or_default();
    if !doc.is_object() {
        return Ok(Parsed::NotAPod("not a YAML mapping".into()));
    }
    if kind != "Pod" {
        return Ok(Parsed::NotAPod(if kind.is_empty() {
            "no kind".to_string()
        } else {
            format!("kind {kind}")
        }));
    }
    pod_from_value(doc)
        .map(|p| Parsed::Pod(Box::new(p)))
        .map_err(|e| format!("a Pod, but {e}"))
}

/// Reads the Pod of a static Pod manifest (YAML or JSON bytes), as kubelet does: the YAML is
/// read into a JSON value first and the Pod taken from that (YAML → JSON → object). The agent
/// reads every manifest through this; `Err` names the field of a type error.
pub fn read_pod(bytes: &[u8]) -> Result<Pod, String> {
    let value: serde_json::Value = serde_saphyr::from_slice(bytes).map_err(|e| e.to_string())?;
    pod_from_value(value)
}

/// The Pod in a JSON value; `Err` is `<field path>: <why>`.
fn pod_from_value(doc: serde_json::Value) -> Result<Pod, String> {
    serde_path_to_error::deserialize::<_, Pod>(doc).map_err(|e| {
        let path = e.path().to_string();
        format!("{path}: {}", e.into_inner())
    })
}

/// What a file in the manifest directory is to kubeplane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A managed manifest.
    Managed(Component),
    /// A stray copy of a managed component's manifest, and why it counts as one.
    Stray(Component, String),
    /// A static Pod (or anything) kubeplane does not manage.
    Unmanaged,
    /// A dot file or a directory: kubelet ignores it, and so does kubeplane.
    Ignored,
}

/// The one rule for "which file runs this component": a file of the manifest directory
/// classified by its name and (when given) its content. The managed file is
/// `<component>.yaml`; a stray is a backup-like copy of it (`kube-apiserver.yaml.bak`,
/// `kube-apiserver.yml`) or any other file holding a Pod that runs a managed component: named
/// after it, or running its binary or a container of its name ([`component_of`]). kubelet
/// would run a stray beside the managed file. The agent's drift handling quarantines strays,
/// `kubeplane diff` reports them, `kubeplane import` skips them beside the managed file.
pub fn classify_file(name: &str, content: Option<&[u8]>, managed: &[Component]) -> FileKind {
    if name.starts_with('.') || name.is_empty() {
        return FileKind::Ignored;
    }
    for &c in managed {
        let file = c.manifest_file();
        if name == file {
            return FileKind::Managed(c);
        }
        let stem = file.trim_end_matches(".yaml");
        if let Some(rest) = name.strip_prefix(file) {
            return FileKind::Stray(c, format!("backup-like copy of {file} (suffix {rest:?})"));
        }
        if let Some(rest) = name.strip_prefix(stem)
            && [".yml", ".json", ".manifest"]
                .iter()
                .any(|s| rest.starts_with(s))
        {
            return FileKind::Stray(c, format!("copy of {file} named {name}"));
        }
    }
    let Some(pod) = content.and_then(|bytes| read_pod(bytes).ok()) else {
        return FileKind::Unmanaged;
    };
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    if let Some(&c) = managed.iter().find(|c| c.name() == pod_name) {
        return FileKind::Stray(c, format!("declares Pod {pod_name}, a managed component"));
    }
    match component_of(&pod) {
        Some((c, _)) if managed.contains(&c) => FileKind::Stray(
            c,
            format!("its Pod {pod_name:?} runs {c}, a managed component"),
        ),
        _ => FileKind::Unmanaged,
    }
}

/// The component a Pod runs and the index of its container: by the binary a container
/// runs (`command[0]`, any directory), else by a container's name. `None` for other Pods
/// (etcd, kube-vip, haproxy) and Pods without containers.
pub fn component_of(pod: &Pod) -> Option<(Component, usize)> {
    let containers = &pod.spec.as_ref()?.containers;
    let by_name = |n: &str| Component::ALL.into_iter().find(|c| c.name() == n);
    containers
        .iter()
        .enumerate()
        .find_map(|(i, c)| {
            let binary = c.command.as_ref()?.first()?;
            by_name(binary.rsplit('/').next().unwrap_or(binary)).map(|comp| (comp, i))
        })
        .or_else(|| {
            containers
                .iter()
                .enumerate()
                .find_map(|(i, c)| by_name(&c.name).map(|comp| (comp, i)))
        })
}

/// The container at `index`, if any.
pub fn container(pod: &Pod, index: usize) -> Option<&Container> {
    pod.spec.as_ref()?.containers.get(index)
}

/// A volume of the Pod with the mounts a container makes of it; also a mount whose volume
/// the Pod lacks (then `volume` is `None`).
#[derive(Clone, Debug, PartialEq)]
pub struct VolumeUse {
    /// Volume name.
    pub name: String,
    /// The Pod's volume.
    pub volume: Option<Volume>,
    /// The container's mounts of it.
    pub mounts: Vec<VolumeMount>,
}

/// Every volume of the Pod and every mount of the container, joined by name; volumes in
/// the Pod's order, then mounts of missing volumes.
pub fn volume_uses(pod: &Pod, container_index: usize) -> Vec<VolumeUse> {
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    let mounts = container(pod, container_index)
        .and_then(|c| c.volume_mounts.clone())
        .unwrap_or_default();
    let mut out: Vec<VolumeUse> = volumes
        .into_iter()
        .map(|v| VolumeUse {
            name: v.name.clone(),
            mounts: mounts
                .iter()
                .filter(|m| m.name == v.name)
                .cloned()
                .collect(),
            volume: Some(v),
        })
        .collect();
    for m in mounts {
        if let Some(u) = out.iter_mut().find(|u| u.name == m.name) {
            if u.volume.is_none() {
                u.mounts.push(m);
            }
        } else {
            out.push(VolumeUse {
                name: m.name.clone(),
                volume: None,
                mounts: vec![m],
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_classified_by_name_then_by_the_pod_they_hold() {
        const ALL: &[Component] = &Component::ALL;
        let api = Component::ApiServer;
        assert_eq!(
            classify_file("kube-apiserver.yaml", None, ALL),
            FileKind::Managed(api)
        );
        for stray in [
            "kube-apiserver.yaml.bak",
            "kube-apiserver.yaml~",
            "kube-apiserver.yml",
        ] {
            assert!(
                matches!(classify_file(stray, None, ALL), FileKind::Stray(c, _) if c == api),
                "{stray}"
            );
        }
        assert_eq!(
            classify_file(".kube-apiserver.yaml.swp", None, ALL),
            FileKind::Ignored
        );
        assert_eq!(classify_file("", None, ALL), FileKind::Ignored);
        assert_eq!(
            classify_file("kube-vip.yaml", None, ALL),
            FileKind::Unmanaged
        );
        // By Pod name.
        let named = b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-scheduler\n";
        assert!(matches!(
            classify_file("old-sched", Some(named), ALL),
            FileKind::Stray(Component::Scheduler, _)
        ));
        // By the binary a container runs, whatever the Pod's name (a hard-way file name).
        let runs = b"kind: Pod\nmetadata: {name: apiserver}\nspec:\n  containers:\n  - name: main\n    command: [/usr/local/bin/kube-apiserver, --v=2]\n";
        match classify_file("apiserver.yaml", Some(runs), ALL) {
            FileKind::Stray(c, why) => {
                assert_eq!(c, api);
                assert!(why.contains("runs kube-apiserver"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        let etcd = b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\n";
        assert_eq!(
            classify_file("etcd.yaml", Some(etcd), ALL),
            FileKind::Unmanaged
        );
        assert_eq!(
            classify_file("junk", Some(b"{{{"), ALL),
            FileKind::Unmanaged
        );
        // An unmanaged component's files are not strays.
        let only_api = &[api];
        assert_eq!(
            classify_file("kube-scheduler.yaml.bak", Some(named), only_api),
            FileKind::Unmanaged
        );
        assert_eq!(
            classify_file("kube-scheduler.yaml", None, only_api),
            FileKind::Unmanaged
        );
        assert_eq!(
            classify_file("apiserver.yaml", Some(runs), &[Component::Scheduler]),
            FileKind::Unmanaged
        );
    }

    #[test]
    fn read_pod_reads_yaml_and_json_and_names_the_field_of_a_type_error() {
        let yaml = read_pod(b"apiVersion: v1\nkind: Pod\nmetadata: {name: x, uid: u1}\n").unwrap();
        assert_eq!(yaml.metadata.uid.as_deref(), Some("u1"));
        let json =
            read_pod(br#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "y"}}"#).unwrap();
        assert_eq!(json.metadata.name.as_deref(), Some("y"));
        let err = read_pod(b"kind: Pod\nspec:\n  containers: 3\n").unwrap_err();
        assert!(err.starts_with("spec.containers: "), "{err}");
        assert!(read_pod(b"kind: Pod\nmetadata: [unclosed\n").is_err());
        assert!(read_pod(b"apiVersion: v2\nkind: Pod\n").is_err());
    }

    #[test]
    fn parses_a_pod_and_names_the_field_of_a_type_error() {
        let ok = parse_pod(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers:\n  - name: kube-scheduler\n",
        )
        .unwrap();
        let Parsed::Pod(p) = ok else { panic!("a Pod") };
        assert_eq!(component_of(&p), Some((Component::Scheduler, 0)));

        let err = parse_pod(
            "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: x\n    command: [kube-apiserver, {a: 1}]\n",
        )
        .unwrap_err();
        assert!(err.contains("spec.containers[0].command[1]"), "{err}");
    }

    #[test]
    fn other_documents_are_not_pods_and_garbage_is_an_error() {
        assert_eq!(
            parse_pod("apiVersion: v1\nkind: ConfigMap\n").unwrap(),
            Parsed::NotAPod("kind ConfigMap".into())
        );
        assert_eq!(parse_pod("").unwrap(), Parsed::NotAPod("empty".into()));
        assert_eq!(
            parse_pod("- a\n- b\n").unwrap(),
            Parsed::NotAPod("not a YAML mapping".into())
        );
        assert!(parse_pod("a: [b\n").unwrap_err().contains("not valid YAML"));
        assert!(
            parse_pod("kind: Pod\n---\nkind: Pod\n")
                .unwrap_err()
                .contains("2 YAML documents")
        );
        assert_eq!(
            parse_pod("kind: A\n---\nkind: B\n").unwrap(),
            Parsed::NotAPod("2 YAML documents: A, B".into())
        );
    }

    #[test]
    fn component_by_binary_path_before_container_name() {
        let Parsed::Pod(p) = parse_pod(
            "kind: Pod\nspec:\n  containers:\n  - name: kube-scheduler\n  - name: main\n    command: [/usr/local/bin/kube-controller-manager, --v=2]\n",
        )
        .unwrap() else {
            panic!("a Pod")
        };
        assert_eq!(component_of(&p), Some((Component::ControllerManager, 1)));
        let Parsed::Pod(p) =
            parse_pod("kind: Pod\nspec:\n  containers:\n  - name: etcd\n    command: [etcd]\n")
                .unwrap()
        else {
            panic!("a Pod")
        };
        assert_eq!(component_of(&p), None);
        let Parsed::Pod(p) = parse_pod("kind: Pod\nspec:\n  containers: []\n").unwrap() else {
            panic!("a Pod")
        };
        assert_eq!(component_of(&p), None);
        let Parsed::Pod(p) = parse_pod("kind: Pod\n").unwrap() else {
            panic!("a Pod")
        };
        assert_eq!(component_of(&p), None);
    }

    #[test]
    fn volume_uses_join_volumes_and_mounts() {
        let Parsed::Pod(p) = parse_pod(
            "kind: Pod\nspec:\n  containers:\n  - name: kube-scheduler\n    volumeMounts:\n    - {name: a, mountPath: /a}\n    - {name: ghost, mountPath: /g}\n  volumes:\n  - name: a\n    hostPath: {path: /ha}\n  - name: unused\n    emptyDir: {}\n",
        )
        .unwrap() else {
            panic!("a Pod")
        };
        let uses = volume_uses(&p, 0);
        let summary: Vec<(&str, bool, usize)> = uses
            .iter()
            .map(|u| (u.name.as_str(), u.volume.is_some(), u.mounts.len()))
            .collect();
        assert_eq!(
            summary,
            vec![("a", true, 1), ("unused", true, 0), ("ghost", false, 1)]
        );
    }
}
