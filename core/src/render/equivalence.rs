//! "Same Pod" comparison of static Pod manifests, shared by the agent's adoption
//! (DESIGN: "Adoption restarts nothing"), `kubeplane diff` and `kubeplane import`. Pure.
//!
//! Two manifests are *equivalent* when they differ only in
//! - `metadata.uid` (kubeplane stamps a content hash there; kubeadm writes none);
//! - the order of the flags on each container's command line: flags are stably sorted by
//!   name, so repeats of one flag keep their relative order (it matters for
//!   `--service-account-issuer`, whose first value is the one tokens are issued with);
//! - YAML formatting, key order and quoting (the comparison is on parsed Pods);
//! - `status` (kubeadm and kubeplane write `status: {}`; kubelet ignores a manifest's status).
//!
//! Nothing else is ignored: image, values of flags, volumes, mounts, probes, resources,
//! annotations and labels must be equal. A flag written `--name value` (two words) is not
//! the same as `--name=value` (one word), because the Pod differs, even though the component
//! would parse both alike.

use k8s_openapi::api::core::v1::{Container, Pod};

/// Whether `a` and `b` mean the same static Pod: equal after [`normalize`].
pub fn equivalent(a: &Pod, b: &Pod) -> bool {
    normalize(a) == normalize(b)
}

/// The Pod with `metadata.uid` and `status` removed and the flags of every container's
/// `command` and `args` stably sorted by name (see [`sort_flags`]).
pub fn normalize(pod: &Pod) -> Pod {
    let mut pod = pod.clone();
    pod.metadata.uid = None;
    pod.status = None;
    if let Some(spec) = pod.spec.as_mut() {
        spec.containers.iter_mut().for_each(sort_container);
        if let Some(init) = spec.init_containers.as_mut() {
            init.iter_mut().for_each(sort_container);
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

/// One flag on a command line and the words that make it up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandFlag {
    /// Name without the leading dashes.
    pub name: String,
    /// The value: after `=` in `--name=value`, or the next word in `--name value`; `None` for
    /// a bare `--name`.
    pub value: Option<String>,
    /// Whether the value was a separate word (`--name value`).
    pub separate: bool,
}

/// A command line split into the words before the first flag (the binary), the flags, and
/// the words from a lone `--` on (kept in place).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedCommand {
    /// Words before the first flag: the binary and any positional arguments.
    pub leading: Vec<String>,
    /// The flags in the order given.
    pub flags: Vec<CommandFlag>,
    /// A lone `--` and everything after it.
    pub trailing: Vec<String>,
}

/// The name of a flag word (`--name=value` or `--name`); `None` for other words, including
/// a lone `--` and single-dash words.
pub fn flag_name(word: &str) -> Option<&str> {
    let rest = word.strip_prefix("--")?;
    let name = rest.split_once('=').map_or(rest, |(n, _)| n);
    (!name.is_empty() && !name.starts_with('-')).then_some(name)
}

/// Groups a command line: each flag word with the one value word after it, when the flag has
/// no `=` and the next word is not itself a flag. The control-plane components take no
/// positional arguments, so such a word can only be the flag's value.
/// Returns the index where flags start, the groups `(name, start, end)` and the index where
/// trailing words (a lone `--` and after) start.
fn groups(words: &[String]) -> (usize, Vec<(&str, usize, usize)>, usize) {
    let start = words
        .iter()
        .position(|w| flag_name(w).is_some() || w == "--")
        .unwrap_or(words.len());
    let mut out = Vec::new();
    let mut i = start;
    while i < words.len() {
        let Some(name) = flag_name(&words[i]) else {
            // A lone `--`, or a word after a `--name=value` flag: the rest stays in place.
            break;
        };
        let takes_next = !words[i].contains('=')
            && words
                .get(i + 1)
                .is_some_and(|n| !n.starts_with('-') && flag_name(n).is_none());
        let end = if takes_next { i + 2 } else { i + 1 };
        out.push((name, i, end));
        i = end;
    }
    (start, out, i)
}

/// Stably sorts the flags of a command line by name; the words before the first flag (the
/// binary) and from the first word that is neither a flag nor a flag's value on stay where
/// they are; `--name value` pairs move together.
pub fn sort_flags(words: &mut Vec<String>) {
    let (start, mut flags, end) = groups(words);
    if flags.len() < 2 {
        return;
    }
    flags.sort_by(|a, b| a.0.cmp(b.0));
    let mut sorted: Vec<String> = Vec::with_capacity(words.len());
    sorted.extend_from_slice(&words[..start]);
    for (_, s, e) in &flags {
        sorted.extend_from_slice(&words[*s..*e]);
    }
    sorted.extend_from_slice(&words[end..]);
    *words = sorted;
}

/// Splits a command line into binary, flags and trailing words (see [`ParsedCommand`]).
pub fn parse_command(words: &[String]) -> ParsedCommand {
    let (start, flags, end) = groups(words);
    ParsedCommand {
        leading: words[..start].to_vec(),
        flags: flags
            .into_iter()
            .map(|(name, s, e)| {
                let word = &words[s];
                match word.split_once('=') {
                    Some((_, v)) => CommandFlag {
                        name: name.to_string(),
                        value: Some(v.to_string()),
                        separate: false,
                    },
                    None if e > s + 1 => CommandFlag {
                        name: name.to_string(),
                        value: Some(words[s + 1].clone()),
                        separate: true,
                    },
                    None => CommandFlag {
                        name: name.to_string(),
                        value: None,
                        separate: false,
                    },
                }
            })
            .collect(),
        trailing: words[end..].to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    fn pod(command: &[&str]) -> Pod {
        Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("kube-scheduler".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "kube-scheduler".into(),
                    command: Some(words(command)),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn uid_status_and_flag_order_do_not_matter() {
        let a = pod(&["kube-scheduler", "--v=2", "--bind-address=0.0.0.0"]);
        let mut b = pod(&["kube-scheduler", "--bind-address=0.0.0.0", "--v=2"]);
        b.metadata.uid = Some("0123456789abcdef".into());
        b.status = Some(Default::default());
        assert!(equivalent(&a, &b));
        assert!(equivalent(&b, &a));
    }

    #[test]
    fn repeated_flags_keep_their_relative_order() {
        let a = pod(&["x", "--issuer=new", "--a=1", "--issuer=old"]);
        let b = pod(&["x", "--a=1", "--issuer=new", "--issuer=old"]);
        let c = pod(&["x", "--a=1", "--issuer=old", "--issuer=new"]);
        assert!(equivalent(&a, &b));
        assert!(!equivalent(&a, &c));
    }

    #[test]
    fn values_binary_and_every_other_field_matter() {
        let a = pod(&["kube-scheduler", "--a=1"]);
        assert!(!equivalent(&a, &pod(&["kube-scheduler", "--a=2"])));
        assert!(!equivalent(
            &a,
            &pod(&["/usr/local/bin/kube-scheduler", "--a=1"])
        ));
        assert!(!equivalent(&a, &pod(&["kube-scheduler", "--a=1", "--b"])));
        assert!(!equivalent(&a, &pod(&["kube-scheduler", "--a", "1"])));
        let mut b = a.clone();
        b.metadata.annotations = Some([("k".to_string(), "v".to_string())].into());
        assert!(!equivalent(&a, &b));
        let mut c = a.clone();
        c.spec.as_mut().unwrap().containers[0].image = Some("img".into());
        assert!(!equivalent(&a, &c));
        let mut d = a.clone();
        d.spec.as_mut().unwrap().host_network = Some(true);
        assert!(!equivalent(&a, &d));
    }

    #[test]
    fn separate_values_move_with_their_flag() {
        let mut w = words(&["kube-apiserver", "--v", "2", "--alpha=1", "--bool"]);
        sort_flags(&mut w);
        assert_eq!(
            w,
            words(&["kube-apiserver", "--alpha=1", "--bool", "--v", "2"])
        );
        let a = pod(&["k", "--v", "2", "--alpha=1"]);
        let b = pod(&["k", "--alpha=1", "--v", "2"]);
        assert!(equivalent(&a, &b));
    }

    #[test]
    fn words_after_a_lone_double_dash_stay_put() {
        let mut w = words(&["k", "--b=1", "--a=1", "--", "--z", "pos"]);
        sort_flags(&mut w);
        assert_eq!(w, words(&["k", "--a=1", "--b=1", "--", "--z", "pos"]));
    }

    #[test]
    fn args_and_init_containers_are_sorted_too() {
        let mut a = pod(&["k"]);
        a.spec.as_mut().unwrap().containers[0].args = Some(words(&["--b=1", "--a=1"]));
        let mut b = pod(&["k"]);
        b.spec.as_mut().unwrap().containers[0].args = Some(words(&["--a=1", "--b=1"]));
        assert!(equivalent(&a, &b));
        // command + args is not the same Pod as command alone, though the process is alike.
        let c = pod(&["k", "--a=1", "--b=1"]);
        assert!(!equivalent(&a, &c));
    }

    #[test]
    fn parse_command_reads_every_flag_form() {
        let p = parse_command(&words(&[
            "kube-apiserver",
            "--a=1=2",
            "--v",
            "2",
            "--bool",
            "--empty=",
            "--",
            "x",
        ]));
        assert_eq!(p.leading, words(&["kube-apiserver"]));
        assert_eq!(p.trailing, words(&["--", "x"]));
        let got: Vec<(&str, Option<&str>, bool)> = p
            .flags
            .iter()
            .map(|f| (f.name.as_str(), f.value.as_deref(), f.separate))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", Some("1=2"), false),
                ("v", Some("2"), true),
                ("bool", None, false),
                ("empty", Some(""), false),
            ]
        );
        assert_eq!(parse_command(&[]), ParsedCommand::default());
    }

    proptest::proptest! {
        #[test]
        fn any_reordering_of_distinct_flags_is_equivalent_and_sorting_is_idempotent(
            flags in proptest::collection::btree_map("[a-z][a-z-]{0,10}", "[a-z0-9=,]{0,6}", 0..10),
            seed in proptest::prelude::any::<u64>(),
        ) {
            let mut words: Vec<String> = flags.iter().map(|(n, v)| format!("--{n}={v}")).collect();
            let original = words.clone();
            let n = words.len();
            for k in 0..n {
                let j = (seed.rotate_left(k as u32) as usize) % n;
                words.swap(k, j);
            }
            let mut a = vec!["kube-scheduler".to_string()];
            a.extend(original);
            let mut b = vec!["kube-scheduler".to_string()];
            b.extend(words);
            let (pa, pb) = (pod(&a.iter().map(|s| s.as_str()).collect::<Vec<_>>()), pod(&b.iter().map(|s| s.as_str()).collect::<Vec<_>>()));
            proptest::prop_assert!(equivalent(&pa, &pb));
            let once = normalize(&pb);
            proptest::prop_assert_eq!(normalize(&once), once);
        }
    }

    #[test]
    fn flag_names() {
        assert_eq!(flag_name("--a=b=c"), Some("a"));
        assert_eq!(flag_name("--v"), Some("v"));
        assert_eq!(flag_name("--"), None);
        assert_eq!(flag_name("---x"), None);
        assert_eq!(flag_name("-v=2"), None);
        assert_eq!(flag_name("kube-apiserver"), None);
        assert_eq!(flag_name("--=x"), None);
    }
}
