//! `kubeplane import --systemd-unit`: the `ControlPlaneConfig` that runs, as static Pods,
//! the components a "hard way" node runs as systemd units. Pure: the caller reads the units
//! and their environment files ([`super::unit`] reads them the way systemd does).
//!
//! Every flag of every unit is accounted for ([`Fate`]): rendered as kubeplane's default,
//! kept in a first-class field, made per node, kept as `extraArgs`, carried to the flag that
//! replaced it, or dropped because the target version removed it (with what that changes for
//! the user). Every file a flag names is mounted read-only and every directory a flag writes
//! is mounted read-write; protected flags are listed in `allowProtectedOverrides`. Values that
//! are wrong, not just old, are [`Finding`]s of severity error, with the fix.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::import::{
    Source, bare_value, drop_empty_settings, extra_args, hints, infer_first_class, rendered_flags,
};
use super::unit::{Command, EnvFiles, Origin, Unit, UnitError, command};
use crate::api::{
    Arg, Component, ControlPlaneConfig, ControlPlaneConfigSpec, EnvVar, Etcd, ExternalEtcd,
    FlagName, HostPathType, HostPathVolume, NodeFacts,
};
use crate::flags::policy::{Merge, is_protected, merge_of};
use crate::flags::{FlagStatus, FlagType, KubeVersion, Minor, VersionError, find, lookup};
use crate::render::args::{split_list, split_map};
use crate::render::{self, RenderError, RenderInput, Rendered, defaults};
use crate::validation::{self, Report, Severity, WRITTEN_FLAGS, check_value, paths_of};

/// The version `kubeplane import --systemd-unit` targets unless told otherwise: the one
/// kubeplane's defaults are checked against (kubeadm v1.36.2).
pub const DEFAULT_TARGET_VERSION: &str = "v1.36.2";

/// What [`import_units`] needs.
#[derive(Clone, Copy, Debug)]
pub struct HardWayInput<'a> {
    /// The units (each with its drop-ins), one per component.
    pub units: &'a [Unit],
    /// The content of every `EnvironmentFile=` the units name (`None`: does not exist).
    pub env_files: &'a EnvFiles,
    /// The content of the kubeconfig files the flags name, where readable: the files they
    /// reference by path (CA, client certificate and key) are mounted too.
    pub kubeconfigs: &'a BTreeMap<String, String>,
    /// The content of the service-account key files kube-apiserver's flags name, where
    /// readable: a CA certificate among them is an error even under another file name.
    pub key_files: &'a BTreeMap<String, Vec<u8>>,
    /// The node the units run on.
    pub node_name: Option<&'a str>,
    /// The node's address, used when kube-apiserver has no `--advertise-address`.
    pub advertise_address: Option<&'a str>,
    /// The Kubernetes version the static Pods will run (`v1.36.2`).
    pub kubernetes_version: &'a str,
    /// `metadata.name` of the config. Default: the cluster name, else `kubernetes`.
    pub config_name: Option<&'a str>,
}

/// Why nothing could be imported.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum HardWayError {
    /// A unit cannot be read the way systemd reads it.
    #[error("{0}")]
    Unit(#[from] UnitError),
    /// A unit does not start a control-plane component.
    #[error(
        "{origin}: ExecStart= runs {executable:?}, not kube-apiserver, kube-controller-manager or kube-scheduler; pass the units of the control-plane components only"
    )]
    NotAComponent {
        /// The ExecStart line.
        origin: Origin,
        /// The executable.
        executable: String,
    },
    /// Two units run the same component.
    #[error("{component} is started by {} and {}: pass one unit per component", .files[0], .files[1])]
    Duplicate {
        /// The component.
        component: Component,
        /// The units.
        files: Vec<String>,
    },
    /// No unit given.
    #[error("no unit given: pass --systemd-unit FILE for each control-plane component")]
    NoUnits,
    /// The target version.
    #[error("--kubernetes-version: {0}")]
    Version(#[from] VersionError),
    /// kube-apiserver's advertise address is per node and needs the node's name.
    #[error(
        "{0} starts kube-apiserver, whose advertise address is per node: pass --node NAME (the Node name of this machine)"
    )]
    NoNodeName(String),
    /// kube-apiserver has no advertise address.
    #[error(
        "{0}: kube-apiserver has no --advertise-address, and kubeplane always writes one: pass --address IP (this node's InternalIP)"
    )]
    NoAdvertiseAddress(String),
    /// The config cannot be rendered (a bug or an unsupported value).
    #[error("the imported config cannot be rendered: {0}")]
    Render(#[from] RenderError),
}

/// What became of one flag of a unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// kubeplane renders this flag with this value anyway; `via` names the field it comes
    /// from, when one does.
    Default {
        /// The field, if any.
        via: Option<String>,
    },
    /// Kept in a first-class field.
    Field {
        /// The field.
        field: String,
    },
    /// Kept per node, in `spec.nodes[]`.
    PerNode {
        /// The field.
        field: String,
    },
    /// Kept as an `extraArgs` entry (`protected`: also listed in `allowProtectedOverrides`).
    ExtraArg {
        /// The field.
        field: String,
        /// Protected flag.
        protected: bool,
    },
    /// The target version removed the flag; its value is kept under the flag that replaced
    /// it, which means the same.
    Replaced {
        /// The new flag.
        by: String,
        /// First release that refuses the old one.
        removed_in: Minor,
    },
    /// The target version removed the flag; it is left out.
    Dropped {
        /// First release that refuses it.
        removed_in: Minor,
        /// The flag to use instead, if any.
        replacement: Option<String>,
        /// What changes for the user.
        impact: String,
    },
    /// Given again later; the component uses the last value.
    Overridden,
    /// Left out because it is wrong (an error finding says why).
    Refused,
}

impl fmt::Display for Fate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fate::Default { via: Some(v) } => write!(f, "kubeplane renders it from {v}"),
            Fate::Default { via: None } => write!(f, "kubeplane's default, rendered as is"),
            Fate::Field { field } => write!(f, "kept in {field}"),
            Fate::PerNode { field } => write!(f, "kept per node in {field}"),
            Fate::ExtraArg {
                field,
                protected: true,
            } => write!(
                f,
                "kept in {field} (protected: listed in allowProtectedOverrides)"
            ),
            Fate::ExtraArg { field, .. } => write!(f, "kept in {field}"),
            Fate::Replaced { by, removed_in } => {
                write!(
                    f,
                    "removed in {removed_in}; its value is kept as --{by}, which replaced it"
                )
            }
            Fate::Dropped {
                removed_in,
                replacement,
                impact,
            } => {
                write!(f, "removed in {removed_in}")?;
                if let Some(r) = replacement {
                    write!(f, " (instead: --{r})")?;
                }
                write!(f, "; {impact}")
            }
            Fate::Overridden => write!(
                f,
                "given again later; the last value is the one the component uses"
            ),
            Fate::Refused => write!(f, "left out: see the error"),
        }
    }
}

/// One flag of a unit and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlagReport {
    /// The component.
    pub component: Component,
    /// Flag name without dashes.
    pub name: String,
    /// The value as the component gets it (`None`: a bare flag).
    pub value: Option<String>,
    /// Where it came from.
    pub origin: Origin,
    /// What became of it.
    pub fate: Fate,
}

/// A flag the render writes that the unit does not have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Added {
    /// The component.
    pub component: Component,
    /// Flag name.
    pub name: String,
    /// The rendered value.
    pub value: String,
    /// Why it is there.
    pub reason: String,
}

/// A volume of the config and the flags it serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountReport {
    /// The component.
    pub component: Component,
    /// The host path (the same inside the container).
    pub path: String,
    /// Read-only.
    pub read_only: bool,
    /// The volume name, and whether kubeplane renders it anyway (else an `extraVolumes`
    /// entry).
    pub volume: String,
    /// Rendered anyway (`k8s-certs`, `kubeconfig`, `etcd-certs-N`, …).
    pub default: bool,
    /// The flags naming files under it.
    pub flags: Vec<String>,
}

/// Something the user should know or fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Error (a wrong value: fix it), warning, or a plain note ([`Severity::Warning`] with
    /// `note: true`).
    pub severity: Severity,
    /// A note, not a warning.
    pub note: bool,
    /// Where.
    pub origin: Option<Origin>,
    /// The component.
    pub component: Option<Component>,
    /// The flag.
    pub flag: Option<String>,
    /// The value.
    pub value: Option<String>,
    /// What.
    pub message: String,
    /// What to do.
    pub fix: Option<String>,
}

impl Finding {
    fn new(severity: Severity, message: impl Into<String>) -> Self {
        Finding {
            severity,
            note: false,
            origin: None,
            component: None,
            flag: None,
            value: None,
            message: message.into(),
            fix: None,
        }
    }
    fn error(message: impl Into<String>) -> Self {
        Self::new(Severity::Error, message)
    }
    fn warning(message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, message)
    }
    fn note(message: impl Into<String>) -> Self {
        Finding {
            note: true,
            ..Self::new(Severity::Warning, message)
        }
    }
    fn at(mut self, origin: &Origin) -> Self {
        self.origin = Some(origin.clone());
        self
    }
    fn flag(mut self, c: Component, name: &str, value: Option<&str>) -> Self {
        self.component = Some(c);
        self.flag = Some(name.to_string());
        self.value = value.map(str::to_string);
        self
    }
    fn of(mut self, c: Component) -> Self {
        self.component = Some(c);
        self
    }
    fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match (self.severity, self.note) {
            (Severity::Error, _) => "error",
            (_, true) => "note",
            _ => "warning",
        };
        write!(f, "{level}: ")?;
        if let Some(o) = &self.origin {
            write!(f, "{o}: ")?;
        }
        if let Some(c) = self.component {
            write!(f, "{c}")?;
            match (&self.flag, &self.value) {
                (Some(n), Some(v)) => write!(f, " --{n}={v}")?,
                (Some(n), None) => write!(f, " --{n}")?,
                _ => {}
            }
            write!(f, ": ")?;
        }
        write!(f, "{}", self.message)?;
        if let Some(fix) = &self.fix {
            write!(f, "; fix: {fix}")?;
        }
        Ok(())
    }
}

/// The unit behind one component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitSource {
    /// The component.
    pub component: Component,
    /// The unit file.
    pub unit: String,
    /// The executable.
    pub executable: String,
    /// The arguments the process gets, after substitution.
    pub args: Vec<String>,
}

/// The result of [`import_units`].
#[derive(Clone, Debug)]
pub struct HardWayImport {
    /// The config.
    pub config: ControlPlaneConfig,
    /// The node facts it renders with.
    pub node: NodeFacts,
    /// One per component, in apply order.
    pub sources: Vec<UnitSource>,
    /// Every flag of every unit.
    pub flags: Vec<FlagReport>,
    /// Flags the render writes that the units lack.
    pub added: Vec<Added>,
    /// Every volume a flag's file lies in.
    pub mounts: Vec<MountReport>,
    /// Errors, warnings and notes.
    pub findings: Vec<Finding>,
    /// `validation::validate` of the config.
    pub report: Report,
}

impl HardWayImport {
    /// Whether any finding is an error.
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(Finding::is_error)
    }
}

/// Removed flags whose replacement means the same, so their value moves over.
const CARRIED: &[(Component, &str, &str)] = &[
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
const GONE_ADMISSION_PLUGINS: &[(&str, &str)] = &[
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

/// Feature gates old guides set that no v1.33+ component knows (they went GA and were
/// removed): a component refuses an unknown gate and does not start.
const GONE_FEATURE_GATES: &[&str] = &[
    "CSIMigration",
    "DynamicKubeletConfig",
    "ExpandPersistentVolumes",
    "PodPriority",
    "TTLAfterFinished",
    "TaintBasedEvictions",
];

/// One flag as parsed from the command line.
struct RawFlag {
    name: String,
    value: Option<String>,
    origin: Origin,
}

/// One component's unit, parsed.
struct Parsed {
    component: Component,
    unit: String,
    command: Command,
    /// Flags kept for the config: name, value, index into the flag reports.
    kept: Vec<(String, String, usize)>,
}

fn component_of(cmd: &Command) -> Option<(Component, usize)> {
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
fn parse_flags(
    c: Component,
    words: &[super::unit::Word],
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

fn positional(c: Component, w: &super::unit::Word) -> Finding {
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
fn impact(c: Component, name: &str, value: Option<&str>, all: &[RawFlag]) -> String {
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
fn owner(c: Component, name: &str) -> Option<String> {
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
fn field_set(spec: &serde_json::Value, field: &str) -> bool {
    let mut v = spec;
    for seg in field.trim_start_matches("spec.").split('.') {
        match v.get(seg) {
            Some(next) if !next.is_null() => v = next,
            _ => return false,
        }
    }
    true
}

fn field_of(c: Component) -> &'static str {
    match c {
        Component::ApiServer => "spec.apiServer",
        Component::ControllerManager => "spec.controllerManager",
        Component::Scheduler => "spec.scheduler",
    }
}

/// Checks of values that are wrong, not just old. Returns the value to keep (possibly with
/// bad list items removed), or `None` to leave the flag out.
fn check_wrong(
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
                if GONE_FEATURE_GATES.contains(&gate) {
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

/// The files a kubeconfig names by path (`certificate-authority`, `client-certificate`,
/// `client-key`, `tokenFile`; relative ones against the kubeconfig's directory) and its
/// servers. A kubeconfig that does not parse names nothing.
pub fn kubeconfig_refs(path: &str, text: &str) -> (Vec<(String, String)>, Vec<String>) {
    let Ok(doc) = serde_saphyr::from_str::<serde_json::Value>(text) else {
        return (Vec::new(), Vec::new());
    };
    let dir = parent(path);
    let mut files = Vec::new();
    let mut servers = Vec::new();
    let list = |key: &str| {
        doc.get(key)
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default()
    };
    let mut take = |obj: Option<&serde_json::Value>, keys: &[&str]| {
        for k in keys {
            if let Some(p) = obj.and_then(|o| o.get(*k)).and_then(|v| v.as_str()) {
                if p.is_empty() {
                    continue;
                }
                let abs = if p.starts_with('/') {
                    p.to_string()
                } else {
                    format!("{}/{p}", dir.trim_end_matches('/'))
                };
                files.push((k.to_string(), abs));
            }
        }
    };
    for c in list("clusters") {
        let cluster = c.get("cluster");
        take(cluster, &["certificate-authority"]);
        if let Some(s) = cluster
            .and_then(|x| x.get("server"))
            .and_then(|v| v.as_str())
        {
            servers.push(s.to_string());
        }
    }
    for u in list("users") {
        take(
            u.get("user"),
            &["client-certificate", "client-key", "tokenFile"],
        );
    }
    (files, servers)
}

/// Whether a PEM file's first certificate is a CA certificate.
pub fn is_ca_certificate(pem: &[u8]) -> bool {
    x509_parser::pem::parse_x509_pem(pem)
        .ok()
        .and_then(|(_, p)| p.parse_x509().ok().map(|c| c.is_ca()))
        .unwrap_or(false)
}

/// The CA files a service-account key must not be.
const CA_FLAGS: &[&str] = &[
    "client-ca-file",
    "requestheader-client-ca-file",
    "kubelet-certificate-authority",
    "etcd-cafile",
    "cluster-signing-cert-file",
    "root-ca-file",
];

/// The private half of a public key or certificate file by common naming: `x.pem` →
/// `x-key.pem` (cfssl), `x.pub`/`x.crt` → `x.key`.
fn private_half(public: &str) -> Option<String> {
    if let Some(stem) = public.strip_suffix("-pub.pem") {
        return Some(format!("{stem}-key.pem"));
    }
    if let Some(stem) = public.strip_suffix(".pem") {
        return Some(format!("{stem}-key.pem"));
    }
    if let Some(stem) = public
        .strip_suffix(".pub")
        .or_else(|| public.strip_suffix(".crt"))
    {
        return Some(format!("{stem}.key"));
    }
    None
}

fn volume_name(path: &str, taken: &[String]) -> String {
    let mut base: String = path
        .trim_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while base.contains("--") {
        base = base.replace("--", "-");
    }
    let mut base = base.trim_matches('-').to_string();
    if base.is_empty() {
        base = "host".into();
    }
    base.truncate(55);
    let base = base.trim_end_matches('-').to_string();
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

fn parent(path: &str) -> String {
    match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) | None => "/".into(),
        Some((d, _)) => d.to_string(),
    }
}

fn covers(dir: &str, path: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    dir.is_empty() || path == dir || path.starts_with(&format!("{dir}/"))
}

fn pod_mounts(p: &Pod) -> Vec<(String, String, bool)> {
    p.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.volume_mounts.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|m| (m.name, m.mount_path, m.read_only.unwrap_or(false)))
        .collect()
}

/// Sets the settings every component shares.
fn set_common(
    spec: &mut ControlPlaneConfigSpec,
    c: Component,
    args: Vec<Arg>,
    protected: Vec<FlagName>,
    volumes: Option<Vec<HostPathVolume>>,
    env: Option<Vec<EnvVar>>,
) {
    macro_rules! apply {
        ($s:expr) => {{
            let s = $s.get_or_insert_with(Default::default);
            s.extra_args = args;
            s.allow_protected_overrides = protected;
            if let Some(v) = volumes {
                s.extra_volumes = v;
            }
            if let Some(e) = env {
                s.extra_env = e;
            }
        }};
    }
    match c {
        Component::ApiServer => apply!(spec.api_server),
        Component::ControllerManager => apply!(spec.controller_manager),
        Component::Scheduler => apply!(spec.scheduler),
    }
}

fn set_unmanaged(spec: &mut ControlPlaneConfigSpec, c: Component) {
    match c {
        Component::ApiServer => {
            spec.api_server.get_or_insert_with(Default::default).managed = Some(false)
        }
        Component::ControllerManager => {
            spec.controller_manager
                .get_or_insert_with(Default::default)
                .managed = Some(false)
        }
        Component::Scheduler => {
            spec.scheduler.get_or_insert_with(Default::default).managed = Some(false)
        }
    }
}

/// Imports the units.
pub fn import_units(input: &HardWayInput<'_>) -> Result<HardWayImport, HardWayError> {
    if input.units.is_empty() {
        return Err(HardWayError::NoUnits);
    }
    let version = KubeVersion::parse(input.kubernetes_version)?;
    let mut findings: Vec<Finding> = Vec::new();
    let mut reports: Vec<FlagReport> = Vec::new();
    let mut parsed: Vec<Parsed> = Vec::new();

    for unit in input.units {
        let cmd = command(unit, input.env_files)?;
        let Some((component, skip)) = component_of(&cmd) else {
            return Err(HardWayError::NotAComponent {
                origin: cmd.path.origin.clone(),
                executable: cmd.path.text.clone(),
            });
        };
        if let Some(other) = parsed.iter().find(|p| p.component == component) {
            return Err(HardWayError::Duplicate {
                component,
                files: vec![other.unit.clone(), unit.path.clone()],
            });
        }
        unit_notes(unit, &cmd, component, &mut findings);
        let raw = parse_flags(component, &cmd.args[skip..], &mut findings);
        let working_dir = unit
            .service_value("WorkingDirectory")
            .map(|d| d.value.trim_start_matches('-').to_string())
            .filter(|d| d.starts_with('/'))
            .unwrap_or_else(|| "/".into());
        let mut kept: Vec<(String, String, usize)> = Vec::new();
        for f in &raw {
            let idx = reports.len();
            let mut report = FlagReport {
                component,
                name: f.name.clone(),
                value: f.value.clone(),
                origin: f.origin.clone(),
                fate: Fate::Refused,
            };
            let status = lookup(component, &f.name, &version);
            match status {
                FlagStatus::Unknown {
                    suggestion,
                    elsewhere,
                } => {
                    let mut fix = match suggestion {
                        Some(s) => format!("did you mean --{s}?"),
                        None => "remove it".to_string(),
                    };
                    if !elsewhere.is_empty() {
                        let names: Vec<&str> = elsewhere.iter().map(|c| c.name()).collect();
                        fix.push_str(&format!(" (it is a flag of {})", names.join(", ")));
                    }
                    findings.push(
                        Finding::error(format!(
                            "not a flag of {component} {version}, which refuses to start with it (\"unknown flag\"); the import leaves it out"
                        ))
                        .at(&f.origin)
                        .flag(component, &f.name, f.value.as_deref())
                        .fix(fix),
                    );
                }
                FlagStatus::NotYet { since, .. } => {
                    findings.push(
                        Finding::error(format!(
                            "{component} accepts this flag from {since} on, not in {version}; the import leaves it out"
                        ))
                        .at(&f.origin)
                        .flag(component, &f.name, f.value.as_deref())
                        .fix(format!("import for {since} or later (--kubernetes-version), or remove it")),
                    );
                }
                FlagStatus::Removed { flag, removed_in } => {
                    let carried = CARRIED
                        .iter()
                        .find(|(c, old, _)| *c == component && *old == f.name)
                        .map(|(_, _, new)| *new)
                        .filter(|new| !raw.iter().any(|r| r.name == *new));
                    match (carried, &f.value) {
                        (Some(new), Some(v)) => {
                            report.fate = Fate::Replaced {
                                by: new.to_string(),
                                removed_in,
                            };
                            kept.push((new.to_string(), v.clone(), idx));
                        }
                        _ => {
                            report.fate = Fate::Dropped {
                                removed_in,
                                replacement: flag.replacement.clone(),
                                impact: impact(component, &f.name, f.value.as_deref(), &raw),
                            };
                        }
                    }
                }
                FlagStatus::Accepted { flag } | FlagStatus::Deprecated { flag, .. } => {
                    let mut value = match &f.value {
                        Some(v) => v.clone(),
                        None => bare_value(component, &f.name),
                    };
                    if flag.type_ == FlagType::Path && !value.is_empty() && !value.starts_with('/')
                    {
                        let abs = format!("{}/{}", working_dir.trim_end_matches('/'), value);
                        findings.push(
                            Finding::note(format!(
                                "a relative path, which the unit resolves in its working directory {working_dir}; the static Pod gets the absolute path {abs}"
                            ))
                            .at(&f.origin)
                            .flag(component, &f.name, Some(&value)),
                        );
                        value = abs;
                    }
                    if let Err(e) = check_value(flag, &value) {
                        findings.push(
                            Finding::error(format!("{}; {component} refuses to start with it; the import leaves it out", e.message))
                                .at(&f.origin)
                                .flag(component, &f.name, Some(&value))
                                .fix(e.fix),
                        );
                    } else if let Some(v) =
                        check_wrong(component, &f.name, &value, &f.origin, &mut findings)
                    {
                        if let FlagStatus::Deprecated { since, .. } = status {
                            let instead = flag
                                .replacement
                                .as_ref()
                                .map(|r| format!("use --{r}"))
                                .or_else(|| flag.note.clone())
                                .unwrap_or_else(|| "plan to remove it".into());
                            findings.push(
                                Finding::warning(format!(
                                    "deprecated since {since}; kept (it still works in {version})"
                                ))
                                .at(&f.origin)
                                .flag(component, &f.name, Some(&v))
                                .fix(instead),
                            );
                        }
                        kept.push((f.name.clone(), v, idx));
                    }
                }
            }
            reports.push(report);
        }
        // A flag given twice that does not accumulate: the component uses the last value.
        let mut seen: Vec<String> = Vec::new();
        for i in (0..kept.len()).rev() {
            let name = kept[i].0.clone();
            let repeatable = find(component, &name).is_some_and(|f| f.repeatable);
            if !repeatable && seen.contains(&name) {
                reports[kept[i].2].fate = Fate::Overridden;
                kept.remove(i);
            } else {
                seen.push(name);
            }
        }
        parsed.push(Parsed {
            component,
            unit: unit.path.clone(),
            command: cmd,
            kept,
        });
    }
    parsed.sort_by_key(|p| Component::ALL.iter().position(|c| *c == p.component));

    let get = |c: Component| parsed.iter().find(|p| p.component == c);
    let api = get(Component::ApiServer);
    let kcm = get(Component::ControllerManager);

    // Node name and advertise address.
    let node_name = match (api, input.node_name.filter(|n| !n.is_empty())) {
        (_, Some(n)) => n.to_string(),
        (Some(a), None) => return Err(HardWayError::NoNodeName(a.unit.clone())),
        (None, None) => "node".to_string(),
    };
    let advertise = match api {
        None => None,
        Some(a) => match a
            .kept
            .iter()
            .rev()
            .find(|(n, _, _)| n == "advertise-address")
        {
            Some((_, v, _)) => Some(v.clone()),
            None => match input.advertise_address {
                Some(v) => Some(v.to_string()),
                None => return Err(HardWayError::NoAdvertiseAddress(a.unit.clone())),
            },
        },
    };

    // kube-apiserver's required service-account flags (since v1.20), when the unit lacks them.
    let mut extra_api: Vec<(String, String, String)> = Vec::new();
    if let Some(a) = api {
        let has = |n: &str| a.kept.iter().any(|(k, _, _)| k == n);
        let keys: Vec<String> = a
            .kept
            .iter()
            .filter(|(n, _, _)| n == "service-account-key-file")
            .flat_map(|(_, v, _)| split_list(v).map(str::to_string).collect::<Vec<_>>())
            .collect();
        if !has("service-account-signing-key-file") {
            let from_kcm = kcm.and_then(|k| {
                k.kept
                    .iter()
                    .rev()
                    .find(|(n, _, _)| n == "service-account-private-key-file")
                    .map(|(_, v, _)| v.clone())
            });
            let guess = from_kcm
                .clone()
                .map(|v| (v, "kube-controller-manager's --service-account-private-key-file (both must sign with the same key)".to_string()))
                .or_else(|| {
                    keys.first().and_then(|k| {
                        private_half(k).map(|p| {
                            (
                                p,
                                format!("named like the private half of --service-account-key-file={k}"),
                            )
                        })
                    })
                });
            match guess {
                Some((path, why)) => {
                    extra_api.push((
                        "service-account-signing-key-file".into(),
                        path.clone(),
                        format!(
                            "required since v1.20 (kube-apiserver signs service-account tokens itself); the unit has none, so the import uses {path}, {why}"
                        ),
                    ));
                    if from_kcm.is_none() {
                        findings.push(
                            Finding::warning(format!(
                                "the unit has no --service-account-signing-key-file, required since v1.20; the import uses {path} ({why})"
                            ))
                            .of(Component::ApiServer)
                            .fix(format!(
                                "check that {path} is the private key whose public half is in --service-account-key-file, and that kube-controller-manager's --service-account-private-key-file is the same file"
                            )),
                        );
                    }
                }
                None => findings.push(
                    Finding::error(
                        "the unit has no --service-account-signing-key-file, required since v1.20, and the import cannot tell which private key matches --service-account-key-file; the config keeps kubeplane's default (sa.key under certificatesDir), which this node does not have",
                    )
                    .of(Component::ApiServer)
                    .fix("add service-account-signing-key-file (the private key kube-controller-manager signs tokens with) to spec.apiServer.extraArgs and allowProtectedOverrides"),
                ),
            }
        }
        if !has("service-account-issuer") {
            findings.push(
                Finding::note(
                    "the unit has no --service-account-issuer, required since v1.20: the config uses kubeplane's default, https://kubernetes.default.svc.<dnsDomain>; tokens issued before keep working (kube-apiserver still accepts the legacy issuer kubernetes/serviceaccount)",
                )
                .of(Component::ApiServer)
                .fix("to use another issuer (for example the external URL of the API), add service-account-issuer to spec.apiServer.extraArgs and allowProtectedOverrides"),
            );
        }
    }

    // Service-account keys that are CA files.
    for p in &parsed {
        let c = p.component;
        let ca_files: Vec<(&str, &str, Component)> = parsed
            .iter()
            .flat_map(|q| {
                q.kept
                    .iter()
                    .filter(|(n, _, _)| CA_FLAGS.contains(&n.as_str()))
                    .map(move |(n, v, _)| (n.as_str(), v.as_str(), q.component))
            })
            .collect();
        let signing_key = parsed
            .iter()
            .flat_map(|q| {
                q.kept
                    .iter()
                    .filter(|(n, _, _)| n == "cluster-signing-key-file")
                    .map(|(_, v, _)| v.as_str())
            })
            .collect::<Vec<_>>();
        for (n, v, idx) in &p.kept {
            let origin = &reports[*idx].origin;
            if c == Component::ApiServer && n == "service-account-key-file" {
                for key in split_list(v) {
                    let shared = CA_FLAGS
                        .iter()
                        .any(|flag| ca_files.iter().any(|(n, f, _)| n == flag && *f == key));
                    if !shared
                        && input
                            .key_files
                            .get(key)
                            .is_some_and(|pem| is_ca_certificate(pem))
                    {
                        findings.push(
                            Finding::error(format!(
                                "the service-account verification key {key} is a CA certificate (basicConstraints CA:TRUE): whoever holds that CA's private key can mint service-account tokens"
                            ))
                            .at(origin)
                            .flag(c, n, Some(v))
                            .fix("create a key pair for service accounts only (openssl genrsa -out sa.key 2048; openssl rsa -in sa.key -pubout -out sa.pub) and rotate to it: list both public keys, sign with the new key, drop the CA once old tokens have expired"),
                        );
                    }
                    let hit = CA_FLAGS
                        .iter()
                        .find_map(|flag| ca_files.iter().find(|(n, f, _)| n == flag && *f == key));
                    if let Some((ca_flag, _, ca_c)) = hit {
                        findings.push(
                            Finding::error(format!(
                                "the service-account verification key is {key}, the CA certificate {ca_c} also uses as --{ca_flag}: whoever holds that CA's private key can mint service-account tokens, and rotating either one breaks the other"
                            ))
                            .at(origin)
                            .flag(c, n, Some(v))
                            .fix("create a key pair for service accounts only (openssl genrsa -out sa.key 2048; openssl rsa -in sa.key -pubout -out sa.pub), then rotate in three steps: list both public keys in service-account-key-file, switch kube-apiserver's --service-account-signing-key-file and kube-controller-manager's --service-account-private-key-file to sa.key, and drop the CA from service-account-key-file once old tokens have expired; the config keeps the current value so adoption changes nothing"),
                        );
                    }
                }
            }
            if c == Component::ControllerManager
                && n == "service-account-private-key-file"
                && signing_key.contains(&v.as_str())
            {
                findings.push(
                    Finding::error(format!(
                        "service-account tokens are signed with {v}, the cluster CA's private key (--cluster-signing-key-file): the CA key signs tokens, so rotating either one breaks the other"
                    ))
                    .at(origin)
                    .flag(c, n, Some(v))
                    .fix("create a key pair for service accounts only (sa.key, sa.pub), list sa.pub beside the current key in kube-apiserver's --service-account-key-file, then sign with sa.key (this flag and kube-apiserver's --service-account-signing-key-file); the config keeps the current value so adoption changes nothing"),
                );
            }
        }
    }

    // The spec: first-class fields inferred from the kept flags.
    let mut spec = ControlPlaneConfigSpec {
        kubernetes_version: version.to_string(),
        ..Default::default()
    };
    let mut notes_unmanaged = Vec::new();
    for c in Component::ALL {
        if get(c).is_none() {
            set_unmanaged(&mut spec, c);
            notes_unmanaged.push(Finding::note(format!(
                "no unit of {c} given: the config sets {}.managed: false, so kubeplane leaves it alone (import its unit too, in the same command, to move it as well)",
                field_of(c)
            )));
        }
    }
    let sources: Vec<Source> = parsed
        .iter()
        .map(|p| {
            let mut flags: Vec<(String, Option<String>)> = p
                .kept
                .iter()
                .map(|(n, v, _)| (n.clone(), Some(v.clone())))
                .collect();
            if p.component == Component::ApiServer {
                flags.extend(
                    extra_api
                        .iter()
                        .map(|(n, v, _)| (n.clone(), Some(v.clone()))),
                );
            }
            Source {
                component: p.component,
                file: p.unit.clone(),
                pod: Pod::default(),
                index: 0,
                flags,
            }
        })
        .collect();
    let src = |c: Component| sources.iter().find(|s| s.component == c);
    infer_first_class(
        &mut spec,
        src(Component::ApiServer),
        src(Component::ControllerManager),
        src(Component::Scheduler),
        advertise.as_deref(),
        &node_name,
    );
    // kube-controller-manager gets --service-cluster-ip-range from serviceSubnet only with a
    // podSubnet: without kube-apiserver, its own flag stays an extraArgs entry instead.
    if api.is_none()
        && let Some(net) = spec.networking.as_mut()
        && net.pod_subnet.is_none()
    {
        net.service_subnet = None;
        if *net == Default::default() {
            spec.networking = None;
        }
    }
    if let Some(a) = src(Component::ApiServer) {
        let one = |n: &str| {
            let v: Vec<&str> = a
                .flags
                .iter()
                .filter(|(k, _)| k == n)
                .filter_map(|(_, v)| v.as_deref())
                .collect();
            (v.len() == 1).then(|| v[0].to_string())
        };
        if let Some(servers) = one("etcd-servers").filter(|s| s != defaults::LOCAL_ETCD_SERVER) {
            spec.etcd = Some(Etcd {
                external: Some(ExternalEtcd {
                    endpoints: servers
                        .split(',')
                        .map(str::trim)
                        .filter(|e| !e.is_empty())
                        .map(Into::into)
                        .collect(),
                    ca_file: one("etcd-cafile"),
                    cert_file: one("etcd-certfile"),
                    key_file: one("etcd-keyfile"),
                }),
            });
        }
    }
    let node = NodeFacts {
        node_name: node_name.clone(),
        advertise_address: advertise.clone(),
        ..Default::default()
    };
    let render_spec = |spec: &ControlPlaneConfigSpec| -> Result<Rendered, RenderError> {
        render::render(&RenderInput {
            spec,
            node: &node,
            encryption_config_sha256: None,
        })
    };

    // Flags: every one the render of the first-class fields does not produce as given.
    let base = render_spec(&spec)?;
    for s in &sources {
        let c = s.component;
        let (args, protected) = extra_args(&base, s, true, |_| String::new());
        // Variables the process sees that ExecStart does not consume.
        let p = parsed.iter().find(|p| p.component == c).map(|p| &p.command);
        let env: Vec<EnvVar> = p
            .map(|cmd| {
                cmd.environment
                    .iter()
                    .filter(|(n, _)| !cmd.references.iter().any(|(r, _, _)| r == n))
                    .map(|(n, v)| EnvVar {
                        name: n.clone(),
                        value: v.value.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        for e in &env {
            findings.push(
                Finding::note(format!(
                    "the unit sets the variable {} and ExecStart does not use it, so the process reads it from its environment: kept in {}.extraEnv",
                    e.name,
                    field_of(c)
                ))
                .of(c),
            );
        }
        set_common(&mut spec, c, args, protected, None, Some(env));
    }

    // Volumes: every path a kept flag names, in a mount.
    let with_args = render_spec(&spec)?;
    let mut mounts: Vec<MountReport> = Vec::new();
    for s in &sources {
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
    drop_empty_settings(&mut spec);
    let fin = render_spec(&spec)?;

    // Fates of kept flags, and what the render adds.
    let certs = spec
        .certificates_dir
        .clone()
        .unwrap_or_else(|| defaults::CERTIFICATES_DIR.to_string());
    let spec_json = serde_json::to_value(&spec).unwrap_or_default();
    let mut added = Vec::new();
    for p in &parsed {
        let c = p.component;
        let settings = render::settings(&spec, c);
        let rendered = rendered_flags(&fin, c);
        for (name, value, idx) in &p.kept {
            let r = &mut reports[*idx];
            if matches!(r.fate, Fate::Replaced { .. }) {
                continue;
            }
            r.fate = if c == Component::ApiServer && name == "advertise-address" {
                Fate::PerNode {
                    field: format!("spec.nodes[name={node_name}].advertiseAddress"),
                }
            } else if let Some(i) = settings.extra_args.iter().position(|a| a.name == *name) {
                Fate::ExtraArg {
                    field: format!("{}.extraArgs[{i}]", field_of(c)),
                    protected: is_protected(c, name),
                }
            } else if let Some(f) = owner(c, name) {
                if field_set(&spec_json, &f) {
                    Fate::Field { field: f }
                } else {
                    Fate::Default {
                        via: Some(format!("{f}, left at its default")),
                    }
                }
            } else if value.starts_with(&format!("{}/", certs.trim_end_matches('/')))
                && spec.certificates_dir.is_some()
            {
                Fate::Default {
                    via: Some("spec.certificatesDir".into()),
                }
            } else {
                Fate::Default { via: None }
            };
            if name == "bind-address" && Some(value) == advertise.as_ref() {
                findings.push(
                    Finding::warning(format!(
                        "this is the node's own address, and spec.nodes[] has no per-node bind address: kept in extraArgs, so every node would get {value}"
                    ))
                    .at(&r.origin)
                    .flag(c, name, Some(value))
                    .fix("bind to 0.0.0.0 (or ::) in the config before adding a second node"),
                );
            }
        }
        for (name, values) in &rendered {
            let in_unit = p.kept.iter().any(|(n, _, _)| n == name);
            if in_unit {
                // List flags merge with kubeplane's defaults: report items the unit lacks.
                if merge_of(c, name) == Merge::List {
                    let unit_items: Vec<&str> = p
                        .kept
                        .iter()
                        .filter(|(n, _, _)| n == name)
                        .flat_map(|(_, v, _)| split_list(v).collect::<Vec<_>>())
                        .collect();
                    let extra: Vec<&str> = values
                        .iter()
                        .flat_map(|v| split_list(v))
                        .filter(|i| !unit_items.contains(i))
                        .collect();
                    if !extra.is_empty() {
                        added.push(Added {
                            component: c,
                            name: name.clone(),
                            value: extra.join(","),
                            reason: format!(
                                "kubeplane merges --{name} with kubeadm's default list; to keep an item off, list it in disable-admission-plugins"
                            ),
                        });
                    }
                }
                continue;
            }
            let reason = match extra_api.iter().find(|(n, _, _)| n == name) {
                Some((_, _, why)) => why.clone(),
                None => added_reason(c, name),
            };
            added.push(Added {
                component: c,
                name: name.clone(),
                value: values.join(","),
                reason,
            });
        }
    }
    findings.extend(notes_unmanaged);
    for h in hints(&spec, &[]) {
        findings.push(Finding::note(h));
    }
    // kubelet's probes (and migrate's checks) call /livez and /readyz without credentials.
    if let Some(a) = api
        && a.kept
            .iter()
            .any(|(n, v, _)| n == "anonymous-auth" && v == "false")
        && !a.kept.iter().any(|(n, _, _)| n == "authentication-config")
    {
        let origin = a
            .kept
            .iter()
            .find(|(n, _, _)| n == "anonymous-auth")
            .map(|(_, _, i)| reports[*i].origin.clone());
        let mut f = Finding::error(
            "a static Pod is judged by kubelet's probes, which call /livez, /readyz and /livez again at start without credentials: with anonymous requests off they get 401, kubelet restarts kube-apiserver over and over, and migrate goes back to the unit",
        )
        .flag(Component::ApiServer, "anonymous-auth", Some("false"))
        .fix("drop --anonymous-auth=false from spec.apiServer.extraArgs (RBAC gives anonymous requests only the health, version and discovery endpoints, through system:public-info-viewer), or replace it by --authentication-config with an AuthenticationConfiguration whose anonymous section is enabled only for /livez, /readyz and /healthz (v1.32+), mounted read-only");
        if let Some(o) = origin {
            f = f.at(&o);
        }
        findings.push(f);
    }

    let name = input
        .config_name
        .map(str::to_string)
        .or_else(|| spec.cluster_name.clone())
        .unwrap_or_else(|| defaults::CLUSTER_NAME.to_string());
    let report = validation::validate(&spec);
    Ok(HardWayImport {
        config: ControlPlaneConfig {
            metadata: ObjectMeta {
                name: Some(name),
                ..Default::default()
            },
            spec,
            status: None,
        },
        node,
        sources: parsed
            .iter()
            .map(|p| UnitSource {
                component: p.component,
                unit: p.unit.clone(),
                executable: p.command.path.text.clone(),
                args: p.command.args.iter().map(|w| w.text.clone()).collect(),
            })
            .collect(),
        flags: reports,
        added,
        mounts,
        findings,
        report,
    })
}

/// Why kubeplane writes a flag the unit lacked: the note of its kubeadm default
/// ([`defaults::default_flag`]), else the generic reason.
fn added_reason(c: Component, name: &str) -> String {
    match defaults::default_flag(c, name).and_then(|f| f.note) {
        Some(note) => note.to_string(),
        None => format!(
            "one of kubeadm's default flags, which kubeplane always writes (check that the file or value exists on this node, or override it in {}.extraArgs)",
            field_of(c)
        ),
    }
}

/// Notes about the unit's other settings: what a static Pod does differently.
fn unit_notes(unit: &Unit, cmd: &Command, c: Component, findings: &mut Vec<Finding>) {
    for (origin, w) in &cmd.warnings {
        findings.push(
            Finding::warning(format!("{w} (as systemd does)"))
                .at(origin)
                .of(c),
        );
    }
    for f in &cmd.missing_optional {
        findings.push(
            Finding::note(format!(
                "EnvironmentFile=-{} does not exist; the '-' makes systemd skip it, and so does the import",
                f.path
            ))
            .at(&f.origin)
            .of(c),
        );
    }
    let mut undefined: Vec<&str> = Vec::new();
    for (name, defined, origin) in &cmd.references {
        if !defined && !undefined.contains(&name.as_str()) {
            undefined.push(name);
            findings.push(
                Finding::note(format!("${name} is not defined by the unit or its environment files, so systemd expands it to nothing"))
                    .at(origin)
                    .of(c),
            );
        }
    }
    if cmd.prefixes.ignore_failure {
        findings.push(Finding::note("the '-' prefix of ExecStart (ignore a failing exit) has no meaning for a static Pod: kubelet restarts the container whenever it exits").at(&cmd.path.origin).of(c));
    }
    if let Some(p) = &cmd.prefixes.privileged {
        findings.push(Finding::note(format!("the '{p}' prefix ran the command with full privileges; a kubeplane static Pod runs as root with the runtime's default capabilities")).at(&cmd.path.origin).of(c));
    }
    type Note = fn(&str) -> String;
    let notes: [(&str, Note); 5] = [
        ("User", |v| {
            format!(
                "the unit runs as user {v}; the static Pod runs as root, as kubeadm's do, so files it writes become root's and it can read files only root can"
            )
        }),
        ("LimitNOFILE", |v| {
            format!(
                "LimitNOFILE={v} does not carry over: the container gets the container runtime's open-files limit"
            )
        }),
        ("WorkingDirectory", |v| {
            format!(
                "WorkingDirectory={v} does not carry over; relative paths in flags are made absolute against it"
            )
        }),
        ("Restart", |v| {
            format!(
                "Restart={v} does not carry over: kubelet restarts a static Pod's container whenever it exits, with back-off"
            )
        }),
        ("Type", |v| {
            format!("Type={v} does not carry over: kubelet judges the Pod by its probes")
        }),
    ];
    for (key, text) in notes {
        if let Some(d) = unit.service_value(key) {
            findings.push(Finding::note(text(&d.value)).at(&d.origin).of(c));
        }
    }
}

#[cfg(test)]
#[path = "hardway_tests.rs"]
mod tests;
