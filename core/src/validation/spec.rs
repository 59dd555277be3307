//! Structural checks of a spec: versions, names, paths, networks, and the shape of each
//! field. Flag knowledge (unknown, removed, mistyped flags) lives in the flag checks.

mod network;

use std::net::IpAddr;

use self::network::{check_external_etcd, check_networking};
pub use self::network::{parse_cidr_list, parse_port_range_flag};
use super::{Problem, Report};
use crate::api::{Audit, CommonSettings, Component, ControlPlaneConfigSpec, bounds};
use crate::flags::KubeVersion;
use crate::render::{is_managed, settings};

pub(super) fn check(spec: &ControlPlaneConfigSpec, r: &mut Report) {
    if let Err(e) = KubeVersion::parse(&spec.kubernetes_version) {
        r.push(
            Problem::error("spec.kubernetesVersion", e.to_string()).value(&spec.kubernetes_version),
        );
    }
    if let Some(repo) = &spec.image_repository {
        check_image_repository(repo, r);
    }
    check_image_pull_secrets(spec, r);
    if let Some(name) = &spec.cluster_name
        && !is_dns_label(name)
    {
        r.push(
            Problem::error("spec.clusterName", "not a DNS label")
                .value(name)
                .fix("use lower-case letters, digits and '-', at most 63 characters, like kubernetes"),
        );
    }
    if let Some(dir) = &spec.certificates_dir {
        check_abs_path("spec.certificatesDir", dir, r);
    }
    check_networking(spec, r);
    if let Some(ext) = spec.etcd.as_ref().and_then(|e| e.external.as_ref()) {
        check_external_etcd(ext, r);
    }
    if Component::ALL.iter().all(|c| !is_managed(spec, *c)) {
        r.push(
            Problem::error(
                "spec",
                "every component has managed: false; there is nothing to roll out",
            )
            .fix("manage at least one of apiServer, controllerManager, scheduler"),
        );
    }
    for c in Component::ALL {
        check_common(c, settings(spec, c), r);
    }
    if let Some(api) = &spec.api_server {
        if let Some(audit) = &api.audit {
            check_audit(audit, r);
        }
        if let Some(enc) = &api.encryption {
            super::encryption::check(spec, enc, r);
        }
    }
    if let Some(kc) = spec
        .controller_manager
        .as_ref()
        .and_then(|c| c.kubeconfig.as_ref())
    {
        check_abs_path("spec.controllerManager.kubeconfig", kc, r);
    }
    if let Some(kc) = spec.scheduler.as_ref().and_then(|c| c.kubeconfig.as_ref()) {
        check_abs_path("spec.scheduler.kubeconfig", kc, r);
    }
    check_nodes(spec, r);
    if let Some(sel) = &spec.node_selector {
        for (k, v) in sel {
            if !is_label_key(k) {
                r.push(
                    Problem::error(format!("spec.nodeSelector[{k}]"), "not a valid label key")
                        .value(k),
                );
            }
            if !is_label_value(v) {
                r.push(
                    Problem::error(format!("spec.nodeSelector[{k}]"), "not a valid label value")
                        .value(v)
                        .fix("use at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"),
                );
            }
        }
    }
    if let Some(ro) = &spec.rollout {
        if let Some(s) = ro.min_ready_seconds
            && !bounds::MIN_READY_SECONDS.contains(s.into())
        {
            r.push(
                Problem::error(bounds::MIN_READY_SECONDS.path, "out of range")
                    .value(s.to_string())
                    .fix(bounds::MIN_READY_SECONDS.fix()),
            );
        }
        if let Some(t) = &ro.health_timeout_seconds {
            for (name, v) in [
                ("apiServer", t.api_server),
                ("controllerManager", t.controller_manager),
                ("scheduler", t.scheduler),
            ] {
                if let Some(v) = v
                    && !bounds::HEALTH_TIMEOUT_SECONDS.contains(v.into())
                {
                    r.push(
                        Problem::error(
                            format!("spec.rollout.healthTimeoutSeconds.{name}"),
                            "out of range",
                        )
                        .value(v.to_string())
                        .fix(bounds::HEALTH_TIMEOUT_SECONDS.fix()),
                    );
                }
            }
        }
        if let Some(d) = ro.progress_deadline_seconds {
            let f = bounds::PROGRESS_DEADLINE_SECONDS.path;
            let longest = crate::render::longest_wait_seconds(spec);
            if !bounds::PROGRESS_DEADLINE_SECONDS.contains(d.into()) {
                r.push(
                    Problem::error(f, "out of range")
                        .value(d.to_string())
                        .fix(bounds::PROGRESS_DEADLINE_SECONDS.fix()),
                );
            } else if d < longest {
                r.push(
                    Problem::error(
                        f,
                        format!(
                            "shorter than the longest healthTimeoutSeconds plus minReadySeconds ({longest}s): a node still waiting for a healthy component would be reported stuck"
                        ),
                    )
                    .value(d.to_string())
                    .fix(format!("use at least {longest} seconds, or leave it unset")),
                );
            }
        }
    }
}

/// `spec.imagePullSecrets`: valid names, each Secret once, at most 8.
fn check_image_pull_secrets(spec: &ControlPlaneConfigSpec, r: &mut Report) {
    let refs = &spec.image_pull_secrets;
    if refs.len() > 8 {
        r.push(
            Problem::error(
                "spec.imagePullSecrets",
                format!("{} Secrets named", refs.len()),
            )
            .fix("name at most 8 Secrets; one docker config JSON can hold many registries"),
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, s) in refs.iter().enumerate() {
        let f = format!("spec.imagePullSecrets[{i}]");
        if !is_dns_subdomain(&s.name) {
            r.push(
                Problem::error(format!("{f}.name"), "not a valid Secret name")
                    .value(&s.name)
                    .fix("use a DNS subdomain: lower-case letters, digits, '-' and '.'"),
            );
        }
        if let Some(ns) = &s.namespace
            && !is_dns_label(ns)
        {
            r.push(
                Problem::error(format!("{f}.namespace"), "not a valid namespace name")
                    .value(ns)
                    .fix("use a DNS label, like kube-system"),
            );
        }
        if !seen.insert((s.namespace(), s.name.as_str())) {
            r.push(
                Problem::error(f, "the same Secret is named twice")
                    .value(format!("{}/{}", s.namespace(), s.name))
                    .fix("name each Secret once"),
            );
        }
    }
}

fn check_image_repository(repo: &str, r: &mut Report) {
    let f = "spec.imageRepository";
    let last = repo.rsplit('/').next().unwrap_or_default();
    if repo.is_empty()
        || repo.contains(char::is_whitespace)
        || repo.contains('@')
        || repo.ends_with('/')
        || (repo.contains('/') && last.contains(':'))
        || repo.chars().any(|c| c.is_ascii_uppercase())
    {
        r.push(
            Problem::error(f, "not an image repository")
                .value(repo)
                .fix("give the registry and path only, without tag or trailing slash, like registry.k8s.io or registry.example.com:5000/k8s"),
        );
    }
}

fn check_common(c: Component, s: CommonSettings<'_>, r: &mut Report) {
    let base = format!("spec.{}", c.spec_field());
    for (i, a) in s.extra_args.iter().enumerate() {
        let field = format!("{base}.extraArgs[{i}]");
        if a.name.is_empty() {
            r.push(Problem::error(format!("{field}.name"), "empty flag name"));
        } else if a.name.starts_with('-') {
            r.push(
                Problem::error(
                    format!("{field}.name"),
                    "flag names are given without leading dashes",
                )
                .value(&a.name)
                .fix(format!("write {:?}", a.name.trim_start_matches('-'))),
            );
        } else if a.name.contains('=') {
            let (n, v) = a.name.split_once('=').unwrap_or_default();
            r.push(
                Problem::error(format!("{field}.name"), "the name holds a value")
                    .value(&a.name)
                    .fix(format!("write name: {n:?} and value: {v:?}")),
            );
        } else if !a
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            r.push(
                Problem::error(format!("{field}.name"), "not a flag name")
                    .value(&a.name)
                    .fix("flag names hold letters, digits and '-'"),
            );
        }
        if a.value.contains(['\n', '\r', '\0']) {
            r.push(
                Problem::error(format!("{field}.value"), "a flag value cannot span lines")
                    .value(&a.value),
            );
        }
    }

    let mut seen = Vec::new();
    for (i, v) in s.extra_volumes.iter().enumerate() {
        let field = format!("{base}.extraVolumes[{i}]");
        if !is_dns_label(&v.name) {
            r.push(
                Problem::error(format!("{field}.name"), "not a valid volume name")
                    .value(&v.name)
                    .fix("use a DNS label: lower-case letters, digits and '-', at most 63 characters"),
            );
        }
        if seen.contains(&v.name.as_str()) {
            r.push(
                Problem::error(
                    format!("{field}.name"),
                    "a volume of this name is already listed",
                )
                .value(&v.name)
                .fix("give each extra volume its own name"),
            );
        }
        seen.push(&v.name);
        check_abs_path(&format!("{field}.hostPath"), &v.host_path, r);
        check_abs_path(&format!("{field}.mountPath"), &v.mount_path, r);
    }

    let mut seen = Vec::new();
    for (i, e) in s.extra_env.iter().enumerate() {
        let field = format!("{base}.extraEnv[{i}].name");
        let valid = !e.name.is_empty()
            && !e.name.starts_with(|c: char| c.is_ascii_digit())
            && e.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if !valid {
            r.push(
                Problem::error(field.clone(), "not a valid environment variable name")
                    .value(&e.name)
                    .fix("use letters, digits, '_', '-' and '.', not starting with a digit"),
            );
        }
        if seen.contains(&e.name.as_str()) {
            r.push(
                Problem::error(field, "this variable is already listed")
                    .value(&e.name)
                    .fix("give each variable once"),
            );
        }
        seen.push(&e.name);
    }

    if let Some(res) = s.resources {
        for (kind, map) in [("requests", &res.requests), ("limits", &res.limits)] {
            for (k, v) in map {
                if !is_quantity(v) {
                    r.push(
                        Problem::error(format!("{base}.resources.{kind}.{k}"), "not a quantity")
                            .value(v)
                            .fix("write a Kubernetes quantity like 250m, 1, 512Mi or 2Gi"),
                    );
                }
            }
        }
    }

    for (i, name) in s.allow_protected_overrides.iter().enumerate() {
        if name.0.starts_with('-') || name.0.is_empty() {
            r.push(
                Problem::error(
                    format!("{base}.allowProtectedOverrides[{i}]"),
                    "flag names are given without leading dashes",
                )
                .value(&name.0),
            );
        }
    }
}

fn check_audit(audit: &Audit, r: &mut Report) {
    let f = "spec.apiServer.audit";
    let policy = &audit.policy;
    let api_version = policy.get("apiVersion").and_then(|v| v.as_str());
    let kind = policy.get("kind").and_then(|v| v.as_str());
    if !policy.is_object() {
        r.push(
            Problem::error(format!("{f}.policy"), "must be an audit Policy object")
                .fix("give apiVersion: audit.k8s.io/v1, kind: Policy and rules"),
        );
        return;
    }
    if api_version != Some("audit.k8s.io/v1") {
        r.push(
            Problem::error(
                format!("{f}.policy.apiVersion"),
                "kube-apiserver reads audit policies of audit.k8s.io/v1",
            )
            .value(api_version.unwrap_or_default())
            .fix("set apiVersion: audit.k8s.io/v1"),
        );
    }
    if kind != Some("Policy") {
        r.push(
            Problem::error(format!("{f}.policy.kind"), "must be Policy")
                .value(kind.unwrap_or_default())
                .fix("set kind: Policy"),
        );
    }
    match policy.get("rules").and_then(|v| v.as_array()) {
        Some(rules) if !rules.is_empty() => {
            for (i, rule) in rules.iter().enumerate() {
                let level = rule.get("level").and_then(|v| v.as_str());
                if !matches!(
                    level,
                    Some("None" | "Metadata" | "Request" | "RequestResponse")
                ) {
                    r.push(
                        Problem::error(
                            format!("{f}.policy.rules[{i}].level"),
                            "not an audit level",
                        )
                        .value(level.unwrap_or_default())
                        .fix("use None, Metadata, Request or RequestResponse"),
                    );
                }
            }
        }
        _ => r.push(
            Problem::error(
                format!("{f}.policy.rules"),
                "an audit policy needs at least one rule",
            )
            .fix("add a rule, for example - level: Metadata"),
        ),
    }
    if let Some(p) = &audit.log_path
        && p != "-"
    {
        check_abs_path(&format!("{f}.logPath"), p, r);
        if p.ends_with('/') {
            r.push(
                Problem::error(
                    format!("{f}.logPath"),
                    "names a directory; give the log file",
                )
                .value(p)
                .fix("write it like /var/log/kubernetes/audit/audit.log"),
            );
        }
    }
}

fn check_nodes(spec: &ControlPlaneConfigSpec, r: &mut Report) {
    let mut seen = Vec::new();
    for (i, n) in spec.nodes.iter().enumerate() {
        let f = format!("spec.nodes[{i}]");
        if !is_dns_subdomain(&n.name) {
            r.push(Problem::error(format!("{f}.name"), "not a valid Node name").value(&n.name));
        }
        if seen.contains(&n.name.as_str()) {
            r.push(
                Problem::error(format!("{f}.name"), "this node is already listed")
                    .value(&n.name)
                    .fix("list each node once"),
            );
        }
        seen.push(&n.name);
        if let Some(a) = &n.advertise_address {
            match a.parse::<IpAddr>() {
                Ok(ip) if ip.is_unspecified() => r.push(
                    Problem::error(
                        format!("{f}.advertiseAddress"),
                        "the unspecified address cannot be advertised",
                    )
                    .value(a)
                    .fix("give the node's own IP address"),
                ),
                Ok(ip) if ip.is_loopback() => r.push(
                    Problem::warning(
                        format!("{f}.advertiseAddress"),
                        "a loopback address is unreachable from other nodes",
                    )
                    .value(a),
                ),
                Ok(_) => {}
                Err(_) => r.push(
                    Problem::error(format!("{f}.advertiseAddress"), "not an IP address")
                        .value(a)
                        .fix("give an IPv4 or IPv6 address, like 10.0.0.11"),
                ),
            }
        }
    }
}

/// Splits `scheme://host:port[/]` (host may be a bracketed IPv6 address).
pub fn parse_url_host_port(url: &str) -> Option<(&str, &str, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    if !matches!(scheme, "http" | "https") {
        return None;
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') || rest.contains('@') {
        return None;
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, p) = v6.split_once("]:")?;
        h.parse::<std::net::Ipv6Addr>().ok()?;
        (h, p)
    } else {
        rest.rsplit_once(':')?
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:".contains(&b))
    {
        return None;
    }
    let port: u16 = port.parse().ok()?;
    (port > 0).then_some((scheme, host, port))
}

/// Pushes an error unless `p` is an absolute path without `..` or empty components.
pub(super) fn check_abs_path(field: &str, p: &str, r: &mut Report) {
    if !is_clean_abs_path(p) {
        r.push(
            Problem::error(field, "not an absolute path")
                .value(p)
                .fix("give a path starting with '/', without '..' or '//'"),
        );
    }
}

/// An absolute path without `..`, `.`, empty components or control characters.
pub fn is_clean_abs_path(p: &str) -> bool {
    p.starts_with('/')
        && !p.contains("//")
        && !p.chars().any(char::is_control)
        && p.split('/').all(|c| c != ".." && c != ".")
}

/// A DNS-1123 label.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_label_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

fn is_label_key(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && is_label_value(name)
}

/// A Kubernetes quantity: a number with an optional binary, decimal or exponent suffix.
pub fn is_quantity(q: &str) -> bool {
    let num_end = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(num_end);
    let num = num.strip_prefix(['+', '-']).unwrap_or(num);
    let num_ok = !num.is_empty()
        && num.bytes().filter(|b| *b == b'.').count() <= 1
        && num.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && num != ".";
    let suffix_ok = matches!(
        suffix,
        "" | "Ki"
            | "Mi"
            | "Gi"
            | "Ti"
            | "Pi"
            | "Ei"
            | "n"
            | "u"
            | "m"
            | "k"
            | "M"
            | "G"
            | "T"
            | "P"
            | "E"
    ) || (suffix.len() > 1
        && suffix.starts_with(['e', 'E'])
        && suffix[1..]
            .strip_prefix(['+', '-'])
            .unwrap_or(&suffix[1..])
            .bytes()
            .all(|b| b.is_ascii_digit())
        && suffix.len() < 6);
    num_ok && suffix_ok
}

#[cfg(test)]
mod tests;
