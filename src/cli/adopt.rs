//! `kubeplane import` and `kubeplane diff`: reading the node's files around the pure
//! [`crate::adopt`] module; `diff` prints the agent's own plan ([`crate::agent::plan`]) for
//! each manifest, with `adopt`'s comparison for what a write would change.
//!
//! Exit codes of both: `0` nothing would change (import: the config reproduces every
//! manifest and is valid), `1` something would change (import: the config does not
//! reproduce a manifest exactly, or does not validate), `2` error (unreadable directory,
//! malformed manifest, invalid config file).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::{CliError, check_address, load_valid_config, print_report, read_optional, render_node};
use crate::adopt::{
    self, Change, FileStatus, ImportInput, Imported, ManifestFile, compare_manifest,
    compare_side_file,
};
use crate::agent::files::NodeDirs;
use crate::agent::plan::{Action, Step, plan};
use crate::agent::state::StateStore;
use crate::api::{Component, ControlPlaneConfig, NodeFacts};
use crate::render::{self, Rendered, RenderedPod, defaults, sha256_hex};

/// Exit code: something would change.
const EXIT_CHANGES: u8 = 1;
/// Exit code: error.
const EXIT_ERROR: u8 = 2;

/// Arguments of `kubeplane import`.
#[derive(Args, Debug, Clone)]
pub struct ImportArgs {
    /// The node's static Pod manifest directory (kubeadm: /etc/kubernetes/manifests).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "systemd_units",
        conflicts_with = "systemd_units"
    )]
    pub manifest_dir: Option<PathBuf>,
    /// A systemd unit that runs kube-apiserver, kube-controller-manager or kube-scheduler
    /// (repeatable, one per component). Its drop-ins (FILE.d/*.conf) and EnvironmentFile=s are
    /// read as systemd reads them.
    #[arg(long = "systemd-unit", value_name = "FILE")]
    pub systemd_units: Vec<PathBuf>,
    /// With --systemd-unit: the Kubernetes version the static Pods will run (a unit does not
    /// say which version its binary is); flags this version removed are dropped and listed.
    /// Default: v1.36.2.
    #[arg(long, value_name = "VERSION")]
    pub kubernetes_version: Option<String>,
    /// With --systemd-unit: read the EnvironmentFile= NODE_PATH from LOCAL_FILE instead
    /// (repeatable; for units copied off the node).
    #[arg(long = "environment-file", value_name = "NODE_PATH=LOCAL_FILE")]
    pub environment_files: Vec<String>,
    /// The node's name, needed for its kube-apiserver advertise address. Default: this
    /// machine's hostname, lowercased, as kubelet names its Node.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// The node's address, used only when the kube-apiserver manifest has no
    /// --advertise-address.
    #[arg(long, value_name = "IP")]
    pub address: Option<String>,
    /// `metadata.name` of the printed config. Default: the cluster name
    /// (kube-controller-manager's --cluster-name), else `kubernetes`.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Exit 0 even when the render of the imported config would change a manifest (the
    /// changes are still listed).
    #[arg(long)]
    pub allow_lossy: bool,
}

/// Arguments of `kubeplane diff`.
#[derive(Args, Debug, Clone)]
pub struct DiffArgs {
    /// The ControlPlaneConfig file.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,
    /// Node to render for.
    #[arg(long, value_name = "NAME")]
    pub node: String,
    /// The node's static Pod manifest directory.
    #[arg(long, value_name = "DIR")]
    pub manifest_dir: PathBuf,
    /// Address kube-apiserver advertises on this node, unless the config's spec.nodes sets one.
    #[arg(long, value_name = "IP")]
    pub address: Option<String>,
    /// The agent's state directory, where side files live.
    #[arg(long, value_name = "DIR", default_value = defaults::STATE_DIR)]
    pub state_dir: String,
    /// A host CA directory the node has (repeatable). Default: the ones that exist on this
    /// machine, of /etc/ca-certificates, /etc/pki/ca-trust, /etc/pki/tls/certs,
    /// /usr/share/ca-certificates and /usr/local/share/ca-certificates.
    #[arg(long = "host-ca-dir", value_name = "DIR")]
    pub host_ca_dirs: Vec<String>,
    /// A local copy of the EncryptionConfiguration the spec's Secret holds, to compare the
    /// exact kube-apiserver manifest and the file (its content is never printed).
    #[arg(long, value_name = "FILE")]
    pub encryption_config: Option<PathBuf>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
    move |source| CliError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The files kubelet would read from a manifest directory: every regular file whose name
/// does not start with a dot, sorted by name. Directories are listed in `skipped`.
fn read_manifest_dir(dir: &Path) -> Result<(Vec<ManifestFile>, Vec<String>), CliError> {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    let mut entries: Vec<std::fs::DirEntry> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .collect::<Result<_, _>>()
        .map_err(io_err(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue; // kubelet ignores dot files
        }
        let path = entry.path();
        let meta = std::fs::metadata(&path).map_err(io_err(&path))?;
        if !meta.is_file() {
            skipped.push(name);
            continue;
        }
        let content = std::fs::read(&path).map_err(io_err(&path))?;
        files.push(ManifestFile { name, content });
    }
    Ok((files, skipped))
}

/// This machine's hostname, lowercased (kubelet's default Node name).
pub(super) fn hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|h| h.trim().to_lowercase())
        .filter(|h| !h.is_empty())
}

fn change_line(c: &Change) -> String {
    match c {
        Change::FlagAdded { .. } => format!(
            "{c} (a default kubeplane always writes; it cannot express \"remove this default flag\")"
        ),
        _ => c.to_string(),
    }
}

/// `kubeplane import`: prints the ControlPlaneConfig that reproduces a node's manifests.
pub fn import(args: &ImportArgs, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    match import_inner(args, out, err) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn import_inner(
    args: &ImportArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitCode, CliError> {
    check_address(args.address.as_deref())?;
    let Some(dir) = &args.manifest_dir else {
        return super::hardway::import_units(args, out, err);
    };
    if args.kubernetes_version.is_some() || !args.environment_files.is_empty() {
        return Err(CliError::Refused(
            "--kubernetes-version and --environment-file go with --systemd-unit; a manifest names its version in its image".into(),
        ));
    }
    let (files, dirs) = read_manifest_dir(dir)?;
    let node = args.node.clone().or_else(hostname);
    let imported = adopt::import(&ImportInput {
        files: &files,
        node_name: node.as_deref(),
        advertise_address: args.address.as_deref(),
        config_name: args.name.as_deref(),
    })
    .map_err(|e| CliError::Refused(format!("{}: {e}", dir.display())))?;

    let d = dir.display();
    for (c, file) in &imported.sources {
        let _ = writeln!(err, "imported {c} from {d}/{file}");
    }
    for s in &imported.skipped {
        let _ = writeln!(err, "skipped {d}/{}: {}", s.file, s.reason);
    }
    for name in dirs {
        let _ = writeln!(err, "skipped {d}/{name}: not a regular file");
    }
    for n in &imported.notes {
        let _ = writeln!(err, "note: {n}");
    }
    for l in &imported.lossy {
        let _ = writeln!(
            err,
            "warning: {} ({d}/{}): rendering this config would change the manifest:",
            l.component, l.file
        );
        for c in &l.changes {
            let _ = writeln!(err, "  {}", change_line(c));
        }
    }
    print_report(&imported.report, err);

    let yaml = render::to_yaml(&imported.config).map_err(CliError::Refused)?;
    let header = import_header(&imported, dir);
    out.write_all(header.as_bytes())
        .and_then(|()| out.write_all(yaml.as_bytes()))
        .map_err(|source| CliError::Io {
            path: "stdout".into(),
            source,
        })?;

    let mut failed = false;
    if !imported.is_exact() {
        let n = imported.lossy.len();
        if args.allow_lossy {
            let _ = writeln!(
                err,
                "warning: the config does not reproduce {n} manifest(s) exactly; accepted with --allow-lossy: adopting it rewrites and restarts them"
            );
        } else {
            let _ = writeln!(
                err,
                "error: the config does not reproduce {n} manifest(s) exactly: adopting it would rewrite and restart them (see the changes above); edit the manifests or the config, or pass --allow-lossy to accept"
            );
            failed = true;
        }
    }
    if !imported.report.is_ok() {
        let _ = writeln!(
            err,
            "error: the imported config does not validate (see above); fix the manifests' flags or edit the config before applying it"
        );
        failed = true;
    }
    Ok(if failed {
        ExitCode::from(EXIT_CHANGES)
    } else {
        ExitCode::SUCCESS
    })
}

fn import_header(imported: &Imported, dir: &Path) -> String {
    let mut h = format!(
        "# Imported by `kubeplane import` from {} on node {}.\n",
        dir.display(),
        imported.node.node_name
    );
    let ca: String = imported
        .node
        .host_ca_directories
        .iter()
        .map(|d| format!(" --host-ca-dir {d}"))
        .collect();
    h.push_str(&format!(
        "# Check it before applying: kubeplane diff -f FILE --node {} --manifest-dir {}{ca}\n",
        imported.node.node_name,
        dir.display()
    ));
    h
}

/// The agent's plan ([`crate::agent::plan::plan`]) for the render, as `kubeplane apply` would
/// hand it to the engine: the node spec of this one node, the manifests on disk, and the
/// components of `<state-dir>/state.json` when it exists and decodes (otherwise none, as the
/// agent starts from an empty state; said on `err`).
fn agent_plan(
    args: &DiffArgs,
    cfg: &ControlPlaneConfig,
    rendered: &Rendered,
    err: &mut dyn Write,
) -> Result<Vec<Step>, CliError> {
    let revision = render::revision_of([(args.node.as_str(), rendered)]);
    let name = cfg.metadata.name.clone().unwrap_or_else(|| "local".into());
    let spec = render::node_spec(&name, &cfg.spec, &revision, rendered);
    let dirs = NodeDirs::new(&args.manifest_dir, &args.state_dir);
    let state = match StateStore::new(dirs.state_file(), dirs.staging_dir()).peek() {
        Ok(s) => s.map(|s| s.components).unwrap_or_default(),
        Err(e) => {
            let _ = writeln!(
                err,
                "note: the agent's state file does not decode ({e}); planning as the agent would, from an empty state"
            );
            Default::default()
        }
    };
    plan(&spec, &state, &args.node, &dirs)
        .map_err(|e| CliError::Refused(format!("{}: {e}", args.manifest_dir.display())))
}

/// `kubeplane diff`: per file, what writing the render for a node would change on disk.
pub fn diff(args: &DiffArgs, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    match diff_inner(args, out, err) {
        Ok(true) => ExitCode::from(EXIT_CHANGES),
        Ok(false) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Reads a file, `None` when it does not exist.
fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>, CliError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

fn print_status(out: &mut dyn Write, path: &str, status: &FileStatus) -> std::io::Result<()> {
    match status {
        FileStatus::Unchanged => writeln!(out, "{path}: unchanged"),
        FileStatus::Equivalent => writeln!(
            out,
            "{path}: equivalent (differs only in uid/flag order/formatting; the agent adopts it without a restart)"
        ),
        FileStatus::New => writeln!(out, "{path}: new file"),
        FileStatus::Unknown { reason } => writeln!(out, "{path}: unknown ({reason})"),
        FileStatus::Changed { changes, diff } => {
            writeln!(out, "{path}: would change")?;
            for c in changes {
                writeln!(out, "  {c}")?;
            }
            for line in diff.lines() {
                writeln!(out, "  {line}")?;
            }
            Ok(())
        }
    }
}

fn diff_inner(args: &DiffArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<bool, CliError> {
    check_address(args.address.as_deref())?;
    let cfg = load_valid_config(&args.file, "compared", err)?;
    let host_ca_dirs = if args.host_ca_dirs.is_empty() {
        let found = crate::facts::host_ca_directories(Path::new("/"));
        let _ = writeln!(
            err,
            "host CA directories found on this machine: {}",
            if found.is_empty() {
                "none".to_string()
            } else {
                found.join(" ")
            }
        );
        found
    } else {
        args.host_ca_dirs.clone()
    };
    let encryption = read_optional(args.encryption_config.as_deref())?;
    let digest = encryption.as_deref().map(sha256_hex);
    let manifest_dir = args.manifest_dir.display().to_string();
    let node = NodeFacts {
        node_name: args.node.clone(),
        advertise_address: args.address.clone(),
        host_ca_directories: host_ca_dirs,
        manifest_dir: Some(manifest_dir.clone()),
        state_dir: Some(args.state_dir.clone()),
        ..Default::default()
    };
    let rendered = render_node(&cfg, &node, digest.as_deref(), err)?;

    let (files, _) = read_manifest_dir(&args.manifest_dir)?;
    let io = |source| CliError::Io {
        path: "stdout".into(),
        source,
    };
    // What the agent would do with each manifest: its own plan, from the files on disk and
    // (when there is one) its state file, read without touching anything.
    let steps = agent_plan(args, &cfg, &rendered, err)?;
    let mut changed = 0;
    for p in &rendered.pods {
        let file = p.component.manifest_file();
        let current = files
            .iter()
            .find(|f| f.name == file)
            .map(|f| f.content.as_slice());
        let path = format!("{manifest_dir}/{file}");
        let step = steps.iter().find(|s| s.component == p.component);
        let status = match step {
            // Left as it is on disk: the render itself, or the render with the agent's own
            // certificate-restart annotation.
            Some(s) if matches!(s.action, Action::Keep | Action::Wait) => {
                if s.bytes == p.yaml.as_bytes() || s.restart_annotation.is_some() {
                    FileStatus::Unchanged
                } else {
                    FileStatus::Equivalent
                }
            }
            Some(s) if s.action == Action::Adopt => FileStatus::Equivalent,
            // Written: what changes, against the bytes the agent would write.
            Some(s) => compare_manifest(
                &path,
                current,
                &RenderedPod {
                    pod: s.pod.clone(),
                    yaml: String::from_utf8_lossy(&s.bytes).into_owned(),
                    ..p.clone()
                },
            ),
            None => compare_manifest(&path, current, p),
        };
        changed += usize::from(status.would_change());
        print_status(out, &path, &status).map_err(io)?;
    }
    for c in Component::ALL {
        if !render::is_managed(&cfg.spec, c) {
            writeln!(
                out,
                "{manifest_dir}/{}: not managed (left alone)",
                c.manifest_file()
            )
            .map_err(io)?;
        }
    }
    for f in &rendered.files {
        let path = Path::new(&f.path);
        let current = read_if_exists(path)?;
        let status = compare_side_file(&f.path, current.as_deref(), f, encryption.as_deref());
        changed += usize::from(status.would_change());
        print_status(out, &f.path, &status).map_err(io)?;
    }
    // Another file running a managed component: kubelet would run both.
    let managed: Vec<Component> = Component::ALL
        .into_iter()
        .filter(|c| render::is_managed(&cfg.spec, *c))
        .collect();
    for f in &files {
        if let adopt::FileKind::Stray(c, _) =
            adopt::classify_file(&f.name, Some(&f.content), &managed)
        {
            changed += 1;
            writeln!(
                out,
                "{manifest_dir}/{}: also runs {c}: kubelet would run it beside {}; remove or rename it",
                f.name,
                c.manifest_file()
            )
            .map_err(io)?;
        }
    }
    if changed == 0 {
        writeln!(out, "nothing would change").map_err(io)?;
    } else {
        writeln!(out, "{changed} file(s) would change").map_err(io)?;
    }
    Ok(changed > 0)
}
