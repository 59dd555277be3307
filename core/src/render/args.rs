//! Combining default flags with `extraArgs`.

use crate::api::{Arg, Component};
use crate::flags::policy::{Merge, displaces, merge_of};

/// One flag on a command line.
pub type Flag = (String, String);

/// Applies `extra` to `defaults`: a replaced flag loses every default value, list and map
/// flags merge (see [`merge_of`]), and flags come out sorted by name with repeats in their
/// given order.
pub fn combine(component: Component, mut defaults: Vec<Flag>, extra: &[Arg]) -> Vec<Flag> {
    // Names in the order they first appear, so each flag is handled once.
    let mut names: Vec<&str> = Vec::new();
    for a in extra {
        if !names.contains(&a.name.as_str()) {
            names.push(&a.name);
        }
    }

    // Admission plugins the user disables leave the default enabled list.
    let disabled: Vec<&str> = if component == Component::ApiServer {
        values_of(extra, "disable-admission-plugins")
            .flat_map(split_list)
            .collect()
    } else {
        Vec::new()
    };
    if !disabled.is_empty() {
        for (name, value) in defaults.iter_mut() {
            if name == "enable-admission-plugins" {
                *value = split_list(value)
                    .filter(|p| !disabled.contains(p))
                    .collect::<Vec<_>>()
                    .join(",");
            }
        }
        defaults.retain(|(n, v)| !(n == "enable-admission-plugins" && v.is_empty()));
    }

    let mut out: Vec<Flag> = Vec::with_capacity(defaults.len() + extra.len());
    for name in &names {
        defaults.retain(|(n, _)| !displaces(component, name).contains(&n.as_str()));
    }
    for name in names {
        let given = values_of(extra, name);
        match merge_of(component, name) {
            Merge::Replace => {
                defaults.retain(|(n, _)| n != name);
                out.extend(given.map(|v| (name.to_string(), v.to_string())));
            }
            Merge::List => {
                let mut items: Vec<String> = take_defaults(&mut defaults, name)
                    .iter()
                    .flat_map(|v| split_list(v).map(str::to_string).collect::<Vec<_>>())
                    .collect();
                for item in given.flat_map(split_list) {
                    if !items.iter().any(|i| i == item) {
                        items.push(item.to_string());
                    }
                }
                if !items.is_empty() {
                    out.push((name.to_string(), items.join(",")));
                }
            }
            Merge::Map => {
                let mut pairs: Vec<(String, String)> = take_defaults(&mut defaults, name)
                    .iter()
                    .flat_map(|v| split_map(v))
                    .collect();
                for (k, v) in given.flat_map(split_map) {
                    match pairs.iter_mut().find(|(pk, _)| *pk == k) {
                        Some(p) => p.1 = v,
                        None => pairs.push((k, v)),
                    }
                }
                let joined: Vec<String> = pairs
                    .into_iter()
                    .map(|(k, v)| if v.is_empty() { k } else { format!("{k}={v}") })
                    .collect();
                out.push((name.to_string(), joined.join(",")));
            }
        }
    }
    out.extend(defaults);
    // Stable: repeats of a name keep their relative order.
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn values_of<'a>(extra: &'a [Arg], name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    extra
        .iter()
        .filter(move |a| a.name == name)
        .map(|a| a.value.as_str())
}

fn take_defaults(defaults: &mut Vec<Flag>, name: &str) -> Vec<String> {
    let mut taken = Vec::new();
    defaults.retain(|(n, v)| {
        if n == name {
            taken.push(v.clone());
            false
        } else {
            true
        }
    });
    taken
}

/// Items of a comma-separated list, trimmed, empty items dropped.
pub fn split_list(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Pairs of a comma-separated `key=value` list; a bare key has an empty value.
pub fn split_map(v: &str) -> Vec<(String, String)> {
    split_list(v)
        .map(|item| match item.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
            None => (item.to_string(), String::new()),
        })
        .collect()
}

/// The last value of a flag, as the component would see it.
pub fn last_value<'a>(flags: &'a [Flag], name: &str) -> Option<&'a str> {
    flags
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(n: &str, v: &str) -> Flag {
        (n.to_string(), v.to_string())
    }

    #[test]
    fn replaces_every_default_of_a_name_and_sorts() {
        let defaults = vec![f("secure-port", "6443"), f("allow-privileged", "true")];
        let out = combine(
            Component::ApiServer,
            defaults,
            &[
                Arg::new("secure-port", "7443"),
                Arg::new("audit-log-maxage", "30"),
            ],
        );
        assert_eq!(
            out,
            vec![
                f("allow-privileged", "true"),
                f("audit-log-maxage", "30"),
                f("secure-port", "7443")
            ]
        );
    }

    #[test]
    fn repeats_keep_their_order() {
        let defaults = vec![f("service-account-issuer", "https://a")];
        let out = combine(
            Component::ApiServer,
            defaults,
            &[
                Arg::new("service-account-issuer", "https://new"),
                Arg::new("anonymous-auth", "false"),
                Arg::new("service-account-issuer", "https://old"),
            ],
        );
        assert_eq!(
            out,
            vec![
                f("anonymous-auth", "false"),
                f("service-account-issuer", "https://new"),
                f("service-account-issuer", "https://old"),
            ]
        );
    }

    #[test]
    fn admission_plugins_merge_and_disable_removes_defaults() {
        let defaults = vec![f("enable-admission-plugins", "NodeRestriction")];
        let out = combine(
            Component::ApiServer,
            defaults.clone(),
            &[Arg::new(
                "enable-admission-plugins",
                "PodSecurity, NodeRestriction,EventRateLimit",
            )],
        );
        assert_eq!(
            out,
            vec![f(
                "enable-admission-plugins",
                "NodeRestriction,PodSecurity,EventRateLimit"
            )]
        );
        let out = combine(
            Component::ApiServer,
            defaults,
            &[Arg::new("disable-admission-plugins", "NodeRestriction")],
        );
        assert_eq!(out, vec![f("disable-admission-plugins", "NodeRestriction")]);
    }

    #[test]
    fn feature_gates_merge_by_key() {
        let defaults = vec![f("feature-gates", "A=true,B=false")];
        let out = combine(
            Component::Scheduler,
            defaults,
            &[
                Arg::new("feature-gates", "B=true"),
                Arg::new("feature-gates", "C=false"),
            ],
        );
        assert_eq!(out, vec![f("feature-gates", "A=true,B=true,C=false")]);
    }

    #[test]
    fn authorization_config_displaces_authorization_mode() {
        let defaults = vec![f("authorization-mode", "Node,RBAC"), f("x", "1")];
        let out = combine(
            Component::ApiServer,
            defaults,
            &[Arg::new(
                "authorization-config",
                "/etc/kubernetes/authz.yaml",
            )],
        );
        assert_eq!(
            out,
            vec![
                f("authorization-config", "/etc/kubernetes/authz.yaml"),
                f("x", "1")
            ]
        );
    }

    #[test]
    fn last_value_wins() {
        let flags = vec![f("a", "1"), f("a", "2")];
        assert_eq!(last_value(&flags, "a"), Some("2"));
        assert_eq!(last_value(&flags, "b"), None);
    }
}
