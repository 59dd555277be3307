//! "Same Pod" comparison: whether two static Pod manifests mean the same Pod to kubelet, up to
//! the differences kubeplane's own rendering introduces. Pure: no I/O.
//!
//! The agent adopts a manifest already on disk when it is equivalent to the rendered one
//! (DESIGN: "Adoption restarts nothing"); `kubeplane diff` and `import` use the same test.

use k8s_openapi::api::core::v1::{Container, Pod};

/// Whether `a` and `b` describe the same Pod, ignoring only:
/// - `metadata.uid` (kubeplane stamps a content hash there; kubeadm writes none);
/// - the order of `--flag` arguments in each container's `command` and `args`: both are
///   stably sorted by flag name, so repeats of one flag keep their relative order (the order
///   of repeated values can matter, e.g. `--service-account-issuer`);
/// - YAML formatting, key order and quoting (the comparison is on parsed Pods);
/// - `status` (kubeadm writes `status: {}`; kubelet ignores a manifest's status).
///
/// Everything else — image, volumes, probes, annotations, resources — must be equal.
pub fn equivalent(a: &Pod, b: &Pod) -> bool {
    normalize(a) == normalize(b)
}

/// The Pod with `metadata.uid` and `status` removed and every container's flags stably
/// sorted by name.
pub fn normalize(pod: &Pod) -> Pod {
    let mut pod = pod.clone();
    pod.metadata.uid = None;
    pod.status = None;
    if let Some(spec) = pod.spec.as_mut() {
        for c in spec.containers.iter_mut() {
            sort_container(c);
        }
        if let Some(init) = spec.init_containers.as_mut() {
            for c in init.iter_mut() {
                sort_container(c);
            }
        }
    }
    pod
}

fn sort_container(c: &mut Container) {
    if let Some(command) = c.command.as_mut() {
        sort_flags(command);
    }
    if let Some(args) = c.args.as_mut() {
        sort_flags(args);
    }
}

/// Stably sorts the `--name[=value]` entries of a command line by name. Entries that are not
/// flags (the binary, positional arguments) keep their positions; flags are sorted among the
/// positions flags hold.
fn sort_flags(words: &mut [String]) {
    let positions: Vec<usize> = (0..words.len())
        .filter(|&i| flag_name(&words[i]).is_some())
        .collect();
    let mut flags: Vec<String> = positions.iter().map(|&i| words[i].clone()).collect();
    flags.sort_by(|x, y| flag_name(x).cmp(&flag_name(y)));
    for (slot, flag) in positions.into_iter().zip(flags) {
        words[slot] = flag;
    }
}

/// The name of a `--name=value` or `--name` word, `None` for anything else.
fn flag_name(word: &str) -> Option<&str> {
    let rest = word.strip_prefix("--")?;
    if rest.is_empty() {
        return None;
    }
    Some(rest.split_once('=').map_or(rest, |(name, _)| name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(command: &[&str]) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some("kube-scheduler".into());
        p.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            containers: vec![Container {
                name: "kube-scheduler".into(),
                command: Some(command.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            }],
            ..Default::default()
        });
        p
    }

    #[test]
    fn flag_order_and_uid_do_not_matter() {
        let a = pod(&["kube-scheduler", "--b=2", "--a=1"]);
        let mut b = pod(&["kube-scheduler", "--a=1", "--b=2"]);
        b.metadata.uid = Some("0123".into());
        b.status = Some(Default::default());
        assert!(equivalent(&a, &b));
    }

    #[test]
    fn repeated_flags_keep_their_order() {
        let a = pod(&["x", "--issuer=new", "--a=1", "--issuer=old"]);
        let b = pod(&["x", "--a=1", "--issuer=new", "--issuer=old"]);
        let c = pod(&["x", "--a=1", "--issuer=old", "--issuer=new"]);
        assert!(equivalent(&a, &b));
        assert!(!equivalent(&a, &c));
    }

    #[test]
    fn values_binary_and_other_fields_matter() {
        let a = pod(&["kube-scheduler", "--a=1"]);
        assert!(!equivalent(&a, &pod(&["kube-scheduler", "--a=2"])));
        assert!(!equivalent(&a, &pod(&["kube-other", "--a=1"])));
        assert!(!equivalent(&a, &pod(&["kube-scheduler", "--a=1", "--b"])));
        let mut b = a.clone();
        b.metadata.annotations = Some([("k".to_string(), "v".to_string())].into());
        assert!(!equivalent(&a, &b));
    }

    #[test]
    fn flag_name_parsing() {
        assert_eq!(flag_name("--a=b=c"), Some("a"));
        assert_eq!(flag_name("--v"), Some("v"));
        assert_eq!(flag_name("--"), None);
        assert_eq!(flag_name("-v"), None);
        assert_eq!(flag_name("kube-apiserver"), None);
    }
}
