//! Every command line: the subcommands that run without a cluster (`render`, `validate`,
//! `crd`, `flags`, `import`, `diff`, `migrate`), and the argument structs of the roles
//! (`operator`, `rollout`, `agent`, `apply`), which this module turns into the plain config
//! structs of [`crate::operator`] and [`crate::agent`]. No clap below this layer.

mod adopt;
mod encryption;
mod flags;
mod hardway;
mod migrate;
mod node;
mod operator;
mod upgrade;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use crate::api::{ControlPlaneConfig, FileSource, NodeFacts, parse_config};
use crate::render::{self, RenderInput, Rendered, defaults, sha256_hex};
use crate::validation::{self, Report};

pub use self::adopt::{DiffArgs, ImportArgs, diff, import};
pub use self::encryption::{EncryptionArgs, EncryptionCommand, EncryptionStatusArgs, encryption};
pub use self::flags::{FlagsArgs, FlagsError, flags, flags_table};
pub use self::migrate::{MigrateArgs, migrate};
pub use self::node::{
    AgentArgs, ApplyArgs, DEFAULT_MANIFEST_DIR, DriftModeArg, NodeDirs, agent, apply,
};
pub use self::operator::{
    OperatorArgs, RolloutArgs, RolloutCommand, RolloutStatusArgs, operator, rollout,
};
pub use self::upgrade::{UpgradeArgs, upgrade};

/// Arguments of `kubeplane render`.
#[derive(Args, Debug, Clone)]
pub struct RenderArgs {
    /// The ControlPlaneConfig file.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,
    /// Node to render for.
    #[arg(long, value_name = "NAME")]
    pub node: String,
    /// Address kube-apiserver advertises on this node, unless the config's spec.nodes sets one.
    #[arg(long, value_name = "IP")]
    pub address: Option<String>,
    /// Write the files under DIR (DIR + each file's absolute path) instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// A host CA directory that exists on the node and gets mounted (repeatable), as the agent
    /// reports: /etc/ca-certificates, /etc/pki/ca-trust, /etc/pki/tls/certs,
    /// /usr/share/ca-certificates, /usr/local/share/ca-certificates.
    #[arg(long = "host-ca-dir", value_name = "DIR")]
    pub host_ca_dirs: Vec<String>,
    /// The node's manifest directory.
    #[arg(long, value_name = "DIR", default_value = "/etc/kubernetes/manifests")]
    pub manifest_dir: String,
    /// The agent's state directory, where side files live.
    #[arg(long, value_name = "DIR", default_value = defaults::STATE_DIR)]
    pub state_dir: String,
    /// A local copy of the EncryptionConfiguration the spec's Secret holds, to render the exact
    /// config hash and (with --out) the file itself.
    #[arg(long, value_name = "FILE")]
    pub encryption_config: Option<PathBuf>,
}

/// Arguments of `kubeplane validate`.
#[derive(Args, Debug, Clone)]
pub struct ValidateArgs {
    /// The ControlPlaneConfig file.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,
}

/// A failure of a CLI command, printed as `error: …`.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The input was refused; the problems were printed already.
    #[error("{0}")]
    Refused(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
    move |source| CliError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Reads and parses a ControlPlaneConfig file, printing every problem to `err`.
pub fn load_config(path: &Path, err: &mut dyn Write) -> Result<ControlPlaneConfig, CliError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| CliError::Refused(format!("{}: not UTF-8 text", path.display())))?;
    parse_config(&text).map_err(|errors| {
        for e in &errors {
            let _ = writeln!(err, "error: {e}");
        }
        CliError::Refused(format!(
            "{}: {} problem(s) reading the file",
            path.display(),
            errors.len()
        ))
    })
}

fn print_report(report: &Report, err: &mut dyn Write) {
    for p in &report.problems {
        let _ = writeln!(err, "{p}");
    }
}

/// Reads a ControlPlaneConfig and validates it, printing every problem to `err`; an invalid
/// config is refused (`what` says what did not happen: "rendered", "written", …).
pub fn load_valid_config(
    path: &Path,
    what: &str,
    err: &mut dyn Write,
) -> Result<ControlPlaneConfig, CliError> {
    let cfg = load_config(path, err)?;
    let report = validation::validate(&cfg.spec);
    print_report(&report, err);
    if !report.is_ok() {
        return Err(CliError::Refused(format!(
            "{}: invalid, nothing {what} (run kubeplane validate -f {0} for the list)",
            path.display()
        )));
    }
    Ok(cfg)
}

/// Refuses an `--address` that is not an IP address.
pub fn check_address(address: Option<&str>) -> Result<(), CliError> {
    match address {
        Some(a) if a.parse::<std::net::IpAddr>().is_err() => Err(CliError::Refused(format!(
            "--address {a:?} is not an IP address; give the node's IPv4 or IPv6 address, like 10.0.0.11"
        ))),
        _ => Ok(()),
    }
}

/// Reads a file given by an optional flag.
pub fn read_optional(path: Option<&Path>) -> Result<Option<Vec<u8>>, CliError> {
    path.map(|p| std::fs::read(p).map_err(io_err(p)))
        .transpose()
}

/// Renders a config for a node, printing the renderer's warnings to `err`.
pub fn render_node(
    cfg: &ControlPlaneConfig,
    node: &NodeFacts,
    encryption_config_sha256: Option<&str>,
    err: &mut dyn Write,
) -> Result<Rendered, CliError> {
    let rendered = render::render(&RenderInput {
        spec: &cfg.spec,
        node,
        encryption_config_sha256,
    })
    .map_err(|e| CliError::Refused(e.to_string()))?;
    for w in &rendered.warnings {
        let _ = writeln!(err, "warning: {w}");
    }
    Ok(rendered)
}

/// `kubeplane validate -f FILE`: every problem, non-zero exit when there is an error.
pub fn validate(args: &ValidateArgs, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    let cfg = match load_config(&args.file, err) {
        Ok(c) => c,
        Err(e) => return fail(e, err),
    };
    let report = validation::validate(&cfg.spec);
    print_report(&report, out);
    let errors = report.errors().count();
    let warnings = report.warnings().count();
    if errors > 0 {
        let _ = writeln!(
            out,
            "{}: invalid: {errors} error(s), {warnings} warning(s)",
            args.file.display()
        );
        ExitCode::FAILURE
    } else {
        let _ = writeln!(
            out,
            "{}: valid ({warnings} warning(s))",
            args.file.display()
        );
        ExitCode::SUCCESS
    }
}

fn fail(e: CliError, err: &mut dyn Write) -> ExitCode {
    let _ = writeln!(err, "error: {e}");
    ExitCode::FAILURE
}

/// `kubeplane render`: the exact files the agent would write for a node.
pub fn render(args: &RenderArgs, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    match render_inner(args, out, err) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e, err),
    }
}

/// A file the agent would write, with its content when known.
struct OutFile {
    path: String,
    content: Option<Vec<u8>>,
    mode: u32,
    note: Option<String>,
}

fn render_inner(
    args: &RenderArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), CliError> {
    check_address(args.address.as_deref())?;
    let cfg = load_valid_config(&args.file, "rendered", err)?;
    for d in &args.host_ca_dirs {
        if !defaults::OPTIONAL_CA_DIRS.contains(&d.as_str()) {
            let _ = writeln!(
                err,
                "warning: --host-ca-dir {d}: not one of the optional CA directories kubeplane mounts ({}); ignored",
                defaults::OPTIONAL_CA_DIRS.join(", ")
            );
        }
    }
    let encryption = read_optional(args.encryption_config.as_deref())?;
    let node = NodeFacts {
        node_name: args.node.clone(),
        advertise_address: args.address.clone(),
        host_ca_directories: args.host_ca_dirs.clone(),
        manifest_dir: Some(args.manifest_dir.clone()),
        state_dir: Some(args.state_dir.clone()),
        ..Default::default()
    };
    let digest = encryption.as_deref().map(sha256_hex);
    let rendered = render_node(&cfg, &node, digest.as_deref(), err)?;
    let files = out_files(&rendered, &args.manifest_dir, encryption);
    match &args.out {
        None => print_files(&files, out).map_err(|source| CliError::Io {
            path: "stdout".into(),
            source,
        }),
        Some(root) => {
            for f in &files {
                let Some(content) = &f.content else {
                    let _ = writeln!(
                        err,
                        "skipped {}: {}",
                        f.path,
                        f.note.as_deref().unwrap_or("")
                    );
                    continue;
                };
                let target = root.join(f.path.trim_start_matches('/'));
                write_file(&target, content, f.mode).map_err(io_err(&target))?;
                let _ = writeln!(out, "wrote {}", target.display());
            }
            Ok(())
        }
    }
}

fn out_files(r: &Rendered, manifest_dir: &str, encryption: Option<Vec<u8>>) -> Vec<OutFile> {
    let mut files: Vec<OutFile> = r
        .pods
        .iter()
        .map(|p| OutFile {
            path: format!(
                "{}/{}",
                manifest_dir.trim_end_matches('/'),
                p.component.manifest_file()
            ),
            content: Some(p.yaml.clone().into_bytes()),
            mode: 0o600,
            note: None,
        })
        .collect();
    for f in &r.files {
        let (content, note) = match &f.source {
            FileSource::Inline(c) => (Some(c.clone().into_bytes()), None),
            FileSource::Secret(s) => (
                encryption.clone(),
                Some(format!(
                    "content from Secret {}/{} key {}; pass --encryption-config FILE to write it",
                    s.namespace.as_deref().unwrap_or_default(),
                    s.name,
                    s.key.as_deref().unwrap_or_default()
                )),
            ),
        };
        files.push(OutFile {
            path: f.path.clone(),
            content,
            mode: 0o600,
            note,
        });
    }
    files
}

fn print_files(files: &[OutFile], out: &mut dyn Write) -> std::io::Result<()> {
    for f in files {
        writeln!(out, "---")?;
        writeln!(out, "# {}", f.path)?;
        match &f.content {
            Some(c) if f.note.is_none() => out.write_all(c)?,
            _ => writeln!(
                out,
                "# {}",
                f.note.as_deref().unwrap_or("content not shown")
            )?,
        }
    }
    Ok(())
}

/// Writes a file whole: into a temporary sibling, then renamed into place.
/// Writes one rendered file under `--out`: parent directories created, then
/// [`crate::fsio::atomic_write`] through a dot-file beside it.
fn write_file(target: &Path, content: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    crate::fsio::atomic_write(dir, target, content, mode).map_err(std::io::Error::other)
}

/// `kubeplane crd`: both CustomResourceDefinitions as a YAML stream.
pub fn crd(out: &mut dyn Write) -> ExitCode {
    match crd_yaml() {
        Ok(text) => match out.write_all(text.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        },
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Both CRDs as the YAML stream `kubeplane crd` prints and `crds/` holds.
pub fn crd_yaml() -> Result<String, String> {
    let mut text = String::new();
    for crd in crate::api::crds() {
        text.push_str("---\n");
        text.push_str(&render::to_yaml(&crd)?);
    }
    Ok(text)
}
