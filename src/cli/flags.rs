//! `kubeplane flags COMPONENT [--version V] [--all]`: the flag table, for looking a flag up.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;

use crate::api::Component;
use crate::flags::policy::{Merge, is_protected, merge_of};
use crate::flags::version::{MAX_MINOR, MIN_MINOR};
use crate::flags::{FlagStatus, KubeVersion, Minor, VersionError, all};

/// Arguments of `kubeplane flags`.
#[derive(Args, Debug, Clone)]
pub struct FlagsArgs {
    /// kube-apiserver, kube-controller-manager or kube-scheduler.
    #[arg(value_name = "COMPONENT")]
    pub component: String,
    /// Kubernetes version whose flags to list: 1.36, v1.36 or v1.36.2. Default: the newest
    /// supported.
    #[arg(long, value_name = "V")]
    pub version: Option<String>,
    /// Also list the flags this version refuses: removed ones (with their replacement) and
    /// ones added in a later version.
    #[arg(long)]
    pub all: bool,
}

/// Why `kubeplane flags` cannot answer.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FlagsError {
    /// Not one of the three components.
    #[error(
        "unknown component {0:?}: kubeplane knows the flags of kube-apiserver, kube-controller-manager and kube-scheduler"
    )]
    UnknownComponent(String),
    /// The version is malformed or unsupported.
    #[error("--version: {0}")]
    Version(#[from] VersionError),
}

/// Parses a component name: `kube-apiserver`, `apiServer` or `apiserver`.
pub fn parse_component(s: &str) -> Result<Component, FlagsError> {
    Component::parse(s)
        .or_else(|| {
            Component::ALL
                .into_iter()
                .find(|c| c.name().strip_prefix("kube-") == Some(s))
        })
        .ok_or_else(|| FlagsError::UnknownComponent(s.to_string()))
}

/// Parses `1.36`, `v1.36` or a full version, within the supported range.
pub fn parse_version(s: &str) -> Result<KubeVersion, FlagsError> {
    let v = match Minor::parse(s) {
        Some(m) => KubeVersion {
            minor: m.0,
            patch: 0,
            suffix: String::new(),
        },
        None => KubeVersion::parse_any(s)?,
    };
    if !(MIN_MINOR..=MAX_MINOR).contains(&v.minor) {
        return Err(VersionError::Unsupported(format!("1.{}", v.minor)).into());
    }
    Ok(v)
}

/// The listing `kubeplane flags` prints.
pub fn flags_table(component: Component, version: &KubeVersion, include_refused: bool) -> String {
    let minor = version.minor;
    let mut rows: Vec<(String, String, String)> = Vec::new();
    for f in all(component) {
        let status = f.status_in(minor);
        let text = match &status {
            FlagStatus::Accepted { .. } => {
                let mut s = "accepted".to_string();
                match merge_of(component, &f.name) {
                    Merge::List | Merge::Map => s.push_str("; extraArgs merge with the defaults"),
                    Merge::Replace => {}
                }
                if is_protected(component, &f.name) {
                    s.push_str("; protected (needs allowProtectedOverrides)");
                }
                s
            }
            FlagStatus::Deprecated { flag, since } => match &flag.replacement {
                Some(r) => format!("deprecated since {since}, use --{r}"),
                None => format!("deprecated since {since}"),
            },
            FlagStatus::Removed { flag, removed_in } => match &flag.replacement {
                Some(r) => format!("removed in {removed_in}, use --{r}"),
                None => format!("removed in {removed_in}, no replacement"),
            },
            FlagStatus::NotYet { since, .. } => format!("added in {since}"),
            FlagStatus::Unknown { .. } => continue,
        };
        if !include_refused && !status.is_accepted() {
            continue;
        }
        let mut type_ = f.type_.to_string();
        if !f.values.is_empty() {
            type_.push_str(&format!(" ({})", f.values.join("|")));
        }
        rows.push((format!("--{}", f.name), type_, text));
    }
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(4).max(4);
    let w1 = rows
        .iter()
        .map(|r| r.1.len().min(24))
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = format!(
        "# {component} flags for Kubernetes 1.{minor}{}: {} listed\n",
        if include_refused {
            ", including the ones it refuses"
        } else {
            ""
        },
        rows.len()
    );
    out.push_str(&format!("{:w0$}  {:w1$}  STATUS\n", "FLAG", "TYPE"));
    for (name, type_, status) in rows {
        out.push_str(&format!("{name:w0$}  {type_:w1$}  {status}\n"));
    }
    out
}

/// `kubeplane flags`: prints the table, or a clear error.
pub fn flags(args: &FlagsArgs, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    let answer = parse_component(&args.component).and_then(|c| {
        let v = match &args.version {
            Some(v) => parse_version(v)?,
            None => KubeVersion {
                minor: MAX_MINOR,
                patch: 0,
                suffix: String::new(),
            },
        };
        Ok(flags_table(c, &v, args.all))
    });
    match answer {
        Ok(text) => match out.write_all(text.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        },
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_parse_in_every_spelling_and_unknown_ones_list_the_three() {
        for s in ["kube-apiserver", "apiServer", "apiserver"] {
            assert_eq!(parse_component(s), Ok(Component::ApiServer));
        }
        assert_eq!(parse_component("scheduler"), Ok(Component::Scheduler));
        let e = parse_component("etcd").unwrap_err().to_string();
        for c in Component::ALL {
            assert!(e.contains(c.name()), "{e}");
        }
    }

    #[test]
    fn versions_parse_short_and_long_and_out_of_range_is_refused() {
        assert_eq!(parse_version("1.34").unwrap().minor, 34);
        assert_eq!(parse_version("v1.35").unwrap().minor, 35);
        assert_eq!(parse_version("v1.36.2").unwrap().minor, 36);
        let e = parse_version("1.30").unwrap_err().to_string();
        assert!(e.contains("not supported") && e.contains("v1.33"), "{e}");
        assert!(parse_version("latest").is_err());
    }

    #[test]
    fn the_table_shows_status_and_only_refused_flags_with_all() {
        let v = parse_version("1.35").unwrap();
        let t = flags_table(Component::ApiServer, &v, false);
        let line = |t: &str, flag: &str| {
            t.lines()
                .find(|l| l.starts_with(&format!("{flag} ")))
                .map(str::to_string)
        };
        assert!(line(&t, "--secure-port").unwrap().contains("accepted"));
        assert!(line(&t, "--tls-cert-file").unwrap().contains("protected"));
        assert!(
            line(&t, "--enable-admission-plugins")
                .unwrap()
                .contains("merge")
        );
        assert!(
            line(&t, "--admission-control")
                .unwrap()
                .contains("deprecated since 1.10, use --enable-admission-plugins")
        );
        assert!(line(&t, "--insecure-port").is_none());
        assert!(line(&t, "--tls-curve-preferences").is_none());
        assert!(line(&t, "--logging-format").unwrap().contains("text|json"));

        let t = flags_table(Component::ApiServer, &v, true);
        assert!(
            line(&t, "--insecure-port")
                .unwrap()
                .contains("removed in 1.24, use --secure-port")
        );
        assert!(
            line(&t, "--kubelet-https")
                .unwrap()
                .contains("removed in 1.22, no replacement")
        );
        assert!(
            line(&t, "--tls-curve-preferences")
                .unwrap()
                .contains("added in 1.36")
        );
    }

    #[test]
    fn the_command_defaults_to_the_newest_version_and_reports_errors() {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let args = FlagsArgs {
            component: "kube-controller-manager".into(),
            version: None,
            all: false,
        };
        assert_eq!(flags(&args, &mut out, &mut err), ExitCode::SUCCESS);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(&format!("Kubernetes 1.{MAX_MINOR}")));
        assert!(text.contains("--concurrent-disruption-syncs"));

        let mut out = Vec::new();
        let args = FlagsArgs {
            component: "kubelet".into(),
            version: None,
            all: false,
        };
        assert_eq!(flags(&args, &mut out, &mut err), ExitCode::FAILURE);
        assert!(out.is_empty());
        assert!(String::from_utf8(err).unwrap().contains("kube-scheduler"));
    }
}
