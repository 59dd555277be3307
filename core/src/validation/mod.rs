//! Validation: every problem in a spec, before any node is touched. Pure: no I/O.
//!
//! `kubeplane validate`, `kubeplane render` and the operator all call [`validate`].

mod args;
mod cross;
mod effective;
mod encryption;
mod spec;
pub mod upgrade;
pub mod upgrade_plan;
mod values;

pub(crate) use args::{WRITTEN_FLAGS, paths_of};
pub use spec::parse_url_host_port;
pub(crate) use values::check_value;

use std::fmt;

use crate::api::ControlPlaneConfigSpec;
use crate::flags::KubeVersion;
use crate::render::RenderError;

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The spec must not be rolled out.
    Error,
    /// Worth a look; the spec can be rolled out.
    Warning,
}

/// One problem, naming the field, the value and the fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// Field path, such as `spec.apiServer.extraArgs[2]`.
    pub field: String,
    /// The offending value, as given.
    pub value: Option<String>,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub fix: Option<String>,
}

impl Problem {
    /// An error.
    pub fn error(field: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Error,
            field: field.into(),
            value: None,
            message: message.into(),
            fix: None,
        }
    }

    /// A warning.
    pub fn warning(field: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Warning,
            ..Problem::error(field, message)
        }
    }

    /// With the offending value.
    pub fn value(mut self, value: impl Into<String>) -> Self {
        self.value = Some(value.into());
        self
    }

    /// With a fix.
    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The problem in one line without its severity: `FIELD ("VALUE"): MESSAGE; FIX`.
    pub fn summary(&self) -> String {
        let mut s = self.field.clone();
        if let Some(v) = &self.value {
            s.push_str(&format!(" ({v:?})"));
        }
        s.push_str(": ");
        s.push_str(&self.message);
        if let Some(fix) = &self.fix {
            s.push_str("; ");
            s.push_str(fix);
        }
        s
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level}: {}", self.summary())
    }
}

/// Every problem found in a spec.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Problems in the order found.
    pub problems: Vec<Problem>,
}

impl Report {
    /// Whether the spec may be rolled out (no errors; warnings allowed).
    pub fn is_ok(&self) -> bool {
        !self.problems.iter().any(Problem::is_error)
    }

    /// The errors.
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.is_error())
    }

    /// The warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| !p.is_error())
    }

    /// The warnings as one line each (`FIELD ("VALUE"): MESSAGE; FIX`, without the
    /// `warning:` prefix), ready for `ControlPlaneConfig` `status.warnings`.
    pub fn warning_messages(&self) -> Vec<String> {
        self.warnings().map(Problem::summary).collect()
    }

    /// The errors as one line each, like [`Report::warning_messages`].
    pub fn error_messages(&self) -> Vec<String> {
        self.errors().map(Problem::summary).collect()
    }

    pub(crate) fn push(&mut self, p: Problem) {
        self.problems.push(p);
    }
}

/// Validates a spec: structure, values, flags for the target version, cross-component
/// agreement. Never panics.
pub fn validate(spec: &ControlPlaneConfigSpec) -> Report {
    let mut report = Report::default();
    spec::check(spec, &mut report);
    // The flag table is chosen by the version; without a supported version (reported by the
    // structural checks) the flags cannot be judged.
    let Ok(version) = KubeVersion::parse(&spec.kubernetes_version) else {
        cross::check(spec, None, &mut report);
        return report;
    };
    let effective = match effective::render_effective(spec) {
        Ok(e) => Some(e),
        // Reported by the structural checks already.
        Err(RenderError::Version(_) | RenderError::NothingManaged) => None,
        Err(e) => {
            report.push(
                Problem::error("spec", format!("cannot be rendered: {e}"))
                    .fix("fix the field the message names"),
            );
            None
        }
    };
    args::check(spec, &version, effective.as_ref(), &mut report);
    cross::check(spec, effective.as_ref(), &mut report);
    report
}

#[cfg(test)]
mod tests;
