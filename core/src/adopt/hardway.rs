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

use super::import::{
    Source, bare_value, drop_empty_settings, external_etcd, extra_args, hints, infer_first_class,
    named_config, rendered_flags,
};
use super::unit::{Command, EnvFiles, Origin, Unit, UnitError, command};
use crate::api::{
    Arg, Component, ControlPlaneConfig, ControlPlaneConfigSpec, EnvVar, FlagName, HostPathType,
    HostPathVolume, NodeFacts,
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

mod files;
mod flags;
mod read;
mod units;

pub use files::{is_ca_certificate, kubeconfig_refs};
pub use flags::unit_component;
pub use units::import_units;
#[allow(unused_imports)] // each step module takes what it needs from here
use {files::*, flags::*, read::*, units::*};

#[cfg(test)]
#[path = "hardway_tests.rs"]
mod tests;
