//! Flag knowledge of the hard-way import: flags removed with a replacement, gone admission
//! plugins and feature gates, the parsing of ExecStart's words into flags, and what a wrong
//! or dropped flag means.

use super::*;

/// Removed flags whose replacement means the same, so their value moves over.
pub(super) const CARRIED: &[(Component, &str, &str)] = &[
    (
        Component::ControllerManager,
        "experimental-cluster-signing-duration",
        "cluster-signing-duration",
    ),
    (
        Component::ApiServer,
        "experimental-encryption-provider-config",
        "encryption-provider-config",
    ),
];

/// Admission plugins kube-apiserver v1.33 and later no longer has, and what replaced them.
pub(super) const GONE_ADMISSION_PLUGINS: &[(&str, &str)] = &[
    (
        "PodSecurityPolicy",
        "Pod Security Admission (the PodSecurity plugin, on by default; label namespaces with pod-security.kubernetes.io/enforce)",
    ),
    (
        "SecurityContextDeny",
        "Pod Security Admission (pod-security.kubernetes.io/enforce: restricted or baseline) or a ValidatingAdmissionPolicy",
    ),
    ("Initializers", "admission webhooks"),
];

/// Feature gates old guides set that no supported (v1.33+) component knows: they went GA or
/// were deprecated, and were removed. The facts live in the upgrade data
/// (`core/src/flags/data/upgrade/feature-gates.yaml`).
pub(super) fn gone_feature_gate(name: &str) -> bool {
    crate::flags::upgrade::gates_removed_before(crate::flags::version::MIN_MINOR)
        .any(|g| g.name == name)
}

/// One flag as parsed from the command line.
pub(super) struct RawFlag {
    pub(super) name: String,
    pub(super) value: Option<String>,
    pub(super) origin: Origin,
}

/// One component's unit, parsed.
pub(super) struct Parsed {
    pub(super) component: Component,
    pub(super) unit: String,
    pub(super) command: Command,
    /// Flags kept for the config: name, value, index into the flag reports.
    pub(super) kept: Vec<(String, String, usize)>,
}

pub(super) fn component_of(cmd: &Command) -> Option<(Component, usize)> {
    let exe = cmd.path.text.rsplit('/').next().unwrap_or_default();
    let by_name = |n: &str| {
        Component::ALL
            .into_iter()
            .find(|c| c.name() == n || c.name().strip_prefix("kube-") == Some(n))
    };
    if exe == "hyperkube" {
        let first = cmd.args.first()?;
        return by_name(&first.text).map(|c| (c, 1));
    }
    Component::ALL
        .into_iter()
        .find(|c| c.name() == exe)
        .map(|c| (c, 0))
}

/// The component a unit runs, its command after substitution, and how many leading
/// arguments are not flags (`hyperkube NAME`: one).
pub fn unit_component(
    unit: &Unit,
    env_files: &EnvFiles,
) -> Result<(Component, Command, usize), HardWayError> {
    let cmd = command(unit, env_files)?;
    match component_of(&cmd) {
        Some((c, skip)) => Ok((c, cmd, skip)),
        None => Err(HardWayError::NotAComponent {
            origin: cmd.path.origin.clone(),
            executable: cmd.path.text.clone(),
        }),
    }
}

/// Splits arguments into flags the way pflag does: `--name=value`, `--name value` for a
/// flag that takes a value, a bare boolean `--name`, klog's `-v` shorthand, `--` ending the
/// flags. Other words are findings.
pub(super) fn parse_flags(
    c: Component,
    words: &[crate::adopt::unit::Word],
    findings: &mut Vec<Finding>,
) -> Vec<RawFlag> {
    let mut out = Vec::new();
    let mut i = 0;
    let needs_value = |name: &str| find(c, name).is_some_and(|f| f.type_ != FlagType::Bool);
    while i < words.len() {
        let w = &words[i];
        i += 1;
        let text = w.text.as_str();
        if text == "--" {
            for rest in &words[i..] {
                findings.push(positional(c, rest));
            }
            break;
        }
        let (name, inline) = if let Some(body) = text.strip_prefix("--") {
            match body.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (body.to_string(), None),
            }
        } else if let Some(body) = text.strip_prefix('-').filter(|b| !b.is_empty()) {
            // Single dash: shorthands. Only klog's -v has one.
            let (n, v) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None if body.len() > 1 && body.starts_with('v') => {
                    ("v", Some(body[1..].to_string()))
                }
                None => (body, None),
            };
            if n != "v" {
                findings.push(
                    Finding::error(format!(
                        "{text:?} is a single-dash shorthand, and {c} has none but -v, so it refuses to start (\"unknown shorthand flag\")"
                    ))
                    .at(&w.origin)
                    .of(c)
                    .fix(format!("write --{} with two dashes", n.trim_start_matches('-'))),
                );
                continue;
            }
            ("v".to_string(), v)
        } else {
            findings.push(positional(c, w));
            continue;
        };
        if name.is_empty() {
            findings.push(positional(c, w));
            continue;
        }
        let value = match inline {
            Some(v) => Some(v),
            None if needs_value(&name) => match words.get(i) {
                Some(next) => {
                    i += 1;
                    Some(next.text.clone())
                }
                None => {
                    findings.push(
                        Finding::error(format!(
                            "--{name} needs a value and is the last word, so {c} refuses to start (\"flag needs an argument\")"
                        ))
                        .at(&w.origin)
                        .flag(c, &name, None)
                        .fix(format!("write --{name}=VALUE")),
                    );
                    continue;
                }
            },
            None => None,
        };
        out.push(RawFlag {
            name,
            value,
            origin: w.origin.clone(),
        });
    }
    out
}

pub(super) fn positional(c: Component, w: &crate::adopt::unit::Word) -> Finding {
    let blank = !w.text.is_empty() && w.text.chars().all(char::is_whitespace);
    if blank {
        let names: Vec<String> = {
            let mut v: Vec<String> = w
                .text
                .chars()
                .map(|ch| format!("U+{:04X}", ch as u32))
                .collect();
            v.dedup();
            v
        };
        return Finding::warning(format!(
            "a word of {} invisible space character(s) ({}) that systemd does not treat as whitespace (it splits only at space, tab, CR and LF), so the unit passes it to {c} as an argument, which {c} refuses (\"does not take any arguments\"); the import leaves it out",
            w.text.chars().count(),
            names.join(", ")
        ))
        .at(&w.origin)
        .of(c)
        .fix("replace those characters with plain spaces in the file (they usually come from a web page copied into it)");
    }
    if w.text.is_empty() {
        return Finding::warning(format!(
            "an empty argument (an undefined ${{VAR}} alone, or \"\"): {c} ignores empty arguments; the import leaves it out"
        ))
        .at(&w.origin)
        .of(c);
    }
    Finding::error(format!(
        "{:?} is not a flag: {c} takes no arguments, and refuses to start (\"does not take any arguments\"); the import leaves it out",
        w.text
    ))
    .at(&w.origin)
    .of(c)
    .fix("remove the word, or join it to its flag as --name=value")
}

/// What dropping a removed flag changes for the user, beyond the table's note.
pub(super) fn impact(c: Component, name: &str, value: Option<&str>, all: &[RawFlag]) -> String {
    let val = |n: &str| {
        all.iter()
            .rev()
            .find(|f| f.name == n)
            .and_then(|f| f.value.clone())
    };
    let info = find(c, name);
    let note = info
        .and_then(|f| f.note.clone())
        .unwrap_or_else(|| "the target version refuses it".to_string());
    match (c, name) {
        (Component::ApiServer, "insecure-port" | "insecure-bind-address" | "port" | "address") => {
            let addr = val("insecure-bind-address")
                .or_else(|| val("address"))
                .unwrap_or_else(|| "127.0.0.1".into());
            let port = val("insecure-port")
                .or_else(|| val("port"))
                .unwrap_or_else(|| "8080".into());
            format!(
                "nothing serves plain, unauthenticated HTTP on {addr}:{port} any more: every client that used http://{addr}:{port} (old kubeconfigs, scripts, health checks, monitoring) must use https on the secure port with credentials"
            )
        }
        (Component::ControllerManager | Component::Scheduler, "port" | "address") => {
            let port = val("port").unwrap_or_else(|| match c {
                Component::ControllerManager => "10252".into(),
                _ => "10251".into(),
            });
            let secure = match c {
                Component::ControllerManager => defaults::CONTROLLER_MANAGER_PORT,
                _ => defaults::SCHEDULER_PORT,
            };
            format!(
                "the plain-HTTP /healthz and /metrics on port {port} are gone: probe https://127.0.0.1:{secure}/healthz instead (kubelet's probes do), and scrape /metrics there with authorized credentials"
            )
        }
        (_, "log-dir" | "log-file" | "logtostderr" | "alsologtostderr" | "log-file-max-size" | "stderrthreshold" | "one-output" | "skip-log-headers" | "log-backtrace-at" | "add-dir-header" | "skip-headers") => {
            let dir = val("log-dir").or_else(|| val("log-file"));
            let files = dir
                .map(|d| format!("; nothing is written under {d} any more"))
                .unwrap_or_default();
            format!(
                "the component logs to stderr only, and kubelet keeps the container's log: kubectl logs -n kube-system {c}-NODE, crictl logs, or the files under /var/log/pods/{files}; point log shipping there"
            )
        }
        (Component::ApiServer, "kubelet-https") => format!(
            "kube-apiserver always talks HTTPS to kubelets now{}",
            if value == Some("false") {
                " (the unit turned it off: kubelets must serve HTTPS)"
            } else {
                "; nothing changes"
            }
        ),
        (Component::ApiServer, "enable-swagger-ui") => {
            "the /swagger-ui pages are gone; the API description is served at /openapi/v2 and /openapi/v3".into()
        }
        (Component::ControllerManager, "pod-eviction-timeout") => format!(
            "Pods leave an unreachable or not-ready node through taint-based eviction, after the tolerationSeconds kube-apiserver's DefaultTolerationSeconds admission gives them (--default-unreachable-toleration-seconds and --default-not-ready-toleration-seconds, 300 s by default) instead of after {}",
            value.unwrap_or("the timeout")
        ),
        _ => note,
    }
}

/// The field a first-class flag lives in (for the report).
pub(super) fn owner(c: Component, name: &str) -> Option<String> {
    let f = match (c, name) {
        (_, "service-cluster-ip-range") => "spec.networking.serviceSubnet",
        (Component::ApiServer, "service-node-port-range") => "spec.networking.serviceNodePortRange",
        (Component::ApiServer, "secure-port") => "spec.apiServer.securePort",
        (Component::ApiServer, "etcd-servers") => "spec.etcd.external.endpoints",
        (Component::ApiServer, "etcd-cafile") => "spec.etcd.external.caFile",
        (Component::ApiServer, "etcd-certfile") => "spec.etcd.external.certFile",
        (Component::ApiServer, "etcd-keyfile") => "spec.etcd.external.keyFile",
        (Component::ControllerManager, "cluster-name") => "spec.clusterName",
        (Component::ControllerManager, "cluster-cidr" | "allocate-node-cidrs") => {
            "spec.networking.podSubnet"
        }
        (
            Component::ControllerManager,
            "kubeconfig" | "authentication-kubeconfig" | "authorization-kubeconfig",
        ) => "spec.controllerManager.kubeconfig",
        (
            Component::Scheduler,
            "kubeconfig" | "authentication-kubeconfig" | "authorization-kubeconfig",
        ) => "spec.scheduler.kubeconfig",
        _ => return None,
    };
    Some(f.to_string())
}

/// Whether a field path (`spec.networking.serviceSubnet`) is set in the spec's JSON.
pub(super) fn field_set(spec: &serde_json::Value, field: &str) -> bool {
    let mut v = spec;
    for seg in field.trim_start_matches("spec.").split('.') {
        match v.get(seg) {
            Some(next) if !next.is_null() => v = next,
            _ => return false,
        }
    }
    true
}

pub(super) fn field_of(c: Component) -> &'static str {
    match c {
        Component::ApiServer => "spec.apiServer",
        Component::ControllerManager => "spec.controllerManager",
        Component::Scheduler => "spec.scheduler",
    }
}

/// Checks of values that are wrong, not just old. Returns the value to keep (possibly with
/// bad list items removed), or `None` to leave the flag out.
pub(super) fn check_wrong(
    c: Component,
    name: &str,
    value: &str,
    origin: &Origin,
    findings: &mut Vec<Finding>,
) -> Option<String> {
    let err = |msg: String| Finding::error(msg).at(origin).flag(c, name, Some(value));
    match name {
        "enable-admission-plugins" | "disable-admission-plugins" | "admission-control" => {
            let mut keep = Vec::new();
            for item in value.split(',') {
                let t = item.trim();
                if let Some((_, instead)) = GONE_ADMISSION_PLUGINS.iter().find(|(p, _)| *p == t) {
                    findings.push(
                        err(format!(
                            "{t} is not an admission plugin of kube-apiserver v1.33 and later, which refuses to start with it; the import leaves it out of the list"
                        ))
                        .fix(format!("use {instead}")),
                    );
                } else if t.is_empty() {
                    findings.push(
                        err("the list has an empty item (two commas, or a comma at an end), which kube-apiserver refuses as plugin \"\"; the import leaves it out".into())
                            .fix("write the plugin names separated by single commas"),
                    );
                } else if !t.starts_with(|ch: char| ch.is_ascii_uppercase())
                    || !t.chars().all(|ch| ch.is_ascii_alphanumeric())
                {
                    findings.push(
                        err(format!(
                            "{t:?} is not an admission plugin name (plugin names are CamelCase words such as NodeRestriction), and kube-apiserver refuses to start with it; the import leaves it out"
                        ))
                        .fix("separate plugin names with commas only, no spaces or quotes, and spell them as kube-apiserver --help lists them"),
                    );
                } else {
                    keep.push(t);
                }
            }
            (!keep.is_empty()).then(|| keep.join(","))
        }
        "feature-gates" => {
            let mut keep = Vec::new();
            for (k, v) in split_map(value) {
                let gate = k.rsplit_once(':').map(|(_, g)| g).unwrap_or(&k);
                if gone_feature_gate(gate) {
                    findings.push(
                        err(format!(
                            "the feature gate {gate} does not exist in v1.33 and later (it graduated and was removed), and {c} refuses to start with an unknown gate (\"unrecognized feature gate\"); the import leaves it out"
                        ))
                        .fix(format!("remove {gate} from --feature-gates: its feature is always on")),
                    );
                } else if !gate.starts_with(|ch: char| ch.is_ascii_uppercase())
                    || !gate.chars().all(|ch| ch.is_ascii_alphanumeric())
                {
                    findings.push(
                        err(format!(
                            "{gate:?} is not a feature gate name (gates are CamelCase words), and {c} refuses to start with it; the import leaves it out"
                        ))
                        .fix(format!("spell the gate as {c} --help lists it under --feature-gates")),
                    );
                } else {
                    keep.push(if v.is_empty() { k } else { format!("{k}={v}") });
                }
            }
            (!keep.is_empty()).then(|| keep.join(","))
        }
        "master" if value.starts_with("http://") => {
            findings.push(
                err(format!(
                    "{value} is kube-apiserver's insecure HTTP port, which no supported version serves; the import leaves --master out, so {c} talks to the server its --kubeconfig names"
                ))
                .fix("make sure the kubeconfig names https://ADDRESS:6443 with a client certificate"),
            );
            None
        }
        _ => Some(value.to_string()),
    }
}
