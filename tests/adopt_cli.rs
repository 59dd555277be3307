//! `kubeplane import` and `kubeplane diff` as a user runs them: output, exit codes
//! (0 nothing would change, 1 something would, 2 error) and error messages.

use std::path::Path;
use std::process::{Command, Output};

fn kubeplane(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubeplane"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("kubeplane runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn all(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

const KUBEADM: &str = "tests/fixtures/kubeadm-v1.36.2";
const CA_DIRS: [&str; 6] = [
    "--host-ca-dir",
    "/etc/ca-certificates",
    "--host-ca-dir",
    "/usr/local/share/ca-certificates",
    "--host-ca-dir",
    "/usr/share/ca-certificates",
];

/// Imports the kubeadm fixtures into `dir/imported.yaml`.
fn import_kubeadm(dir: &Path) -> String {
    let o = kubeplane(&["import", "--manifest-dir", KUBEADM, "--node", "cp-1"]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    let path = dir.join("imported.yaml");
    std::fs::write(&path, &o.stdout).unwrap();
    path.to_string_lossy().into_owned()
}

fn diff(config: &str, dir: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "diff",
        "-f",
        config,
        "--node",
        "cp-1",
        "--manifest-dir",
        dir,
    ];
    args.extend_from_slice(&CA_DIRS);
    args.extend_from_slice(extra);
    kubeplane(&args)
}

fn copy_dir(from: &str, to: &Path) {
    for e in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(from)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn import_prints_a_config_that_validates_and_lists_what_it_skipped() {
    let o = kubeplane(&["import", "--manifest-dir", KUBEADM, "--node", "cp-1"]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    let cfg = kubeplane::api::parse_config(&stdout(&o)).unwrap();
    assert_eq!(cfg.spec.kubernetes_version, "v1.36.2");
    assert!(kubeplane::validation::validate(&cfg.spec).is_ok());
    let err = stderr(&o);
    assert!(
        err.contains(
            "imported kube-apiserver from tests/fixtures/kubeadm-v1.36.2/kube-apiserver.yaml"
        ),
        "{err}"
    );
    assert!(
        err.contains("skipped tests/fixtures/kubeadm-v1.36.2/kubeadm-config.yaml: not a Pod"),
        "{err}"
    );
    assert!(
        err.contains("skipped tests/fixtures/kubeadm-v1.36.2/README.md"),
        "{err}"
    );
    // The header says which node facts to diff with.
    assert!(stdout(&o).contains("--host-ca-dir /etc/ca-certificates"));
}

#[test]
fn diff_of_the_imported_kubeadm_config_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = import_kubeadm(tmp.path());
    let o = diff(&cfg, KUBEADM, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    let out = stdout(&o);
    for f in [
        "kube-apiserver.yaml",
        "kube-controller-manager.yaml",
        "kube-scheduler.yaml",
    ] {
        assert!(
            out.contains(&format!("{KUBEADM}/{f}: equivalent (differs only in uid/flag order/formatting; the agent adopts it without a restart)")),
            "{out}"
        );
    }
    assert!(out.contains("nothing would change"));
}

#[test]
fn diff_shows_a_changed_flag_and_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = import_kubeadm(tmp.path());
    let text = std::fs::read_to_string(&cfg).unwrap();
    let changed = text.replace(
        "spec:\n",
        "spec:\n  scheduler:\n    extraArgs:\n    - name: bind-address\n      value: 0.0.0.0\n",
    );
    assert_ne!(text, changed);
    std::fs::write(&cfg, changed).unwrap();
    let o = diff(&cfg, KUBEADM, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", all(&o));
    let out = stdout(&o);
    assert!(
        out.contains(&format!("{KUBEADM}/kube-scheduler.yaml: would change")),
        "{out}"
    );
    assert!(
        out.contains("flag changed: --bind-address=127.0.0.1 -> --bind-address=0.0.0.0"),
        "{out}"
    );
    // bind-address 0.0.0.0 cannot be probed: the probes lose their host.
    assert!(
        out.contains("livenessProbe.httpGet.host: 127.0.0.1 -> (none)"),
        "{out}"
    );
    assert!(out.contains("-    - --bind-address=127.0.0.1"), "{out}");
    assert!(out.contains("+    - --bind-address=0.0.0.0"), "{out}");
    assert!(out.contains(&format!("{KUBEADM}/kube-apiserver.yaml: equivalent")));
    assert!(out.contains("1 file(s) would change"));
}

#[test]
fn diff_reports_unchanged_new_and_unparseable_files() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = import_kubeadm(tmp.path());
    // What render writes is byte-for-byte what diff compares with.
    let root = tmp.path().join("root");
    let o = kubeplane(&[
        "render",
        "-f",
        &cfg,
        "--node",
        "cp-1",
        "--out",
        root.to_str().unwrap(),
        "--host-ca-dir",
        "/etc/ca-certificates",
        "--host-ca-dir",
        "/usr/local/share/ca-certificates",
        "--host-ca-dir",
        "/usr/share/ca-certificates",
    ]);
    assert!(o.status.success(), "{}", all(&o));
    let manifests = root.join("etc/kubernetes/manifests");
    let m = manifests.to_str().unwrap();
    let o = diff(&cfg, m, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    assert_eq!(stdout(&o).matches(": unchanged").count(), 3, "{}", all(&o));

    std::fs::remove_file(manifests.join("kube-controller-manager.yaml")).unwrap();
    std::fs::write(
        manifests.join("kube-scheduler.yaml"),
        "kind: Pod\nspec: [\n",
    )
    .unwrap();
    let o = diff(&cfg, m, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", all(&o));
    let out = stdout(&o);
    assert!(
        out.contains("kube-controller-manager.yaml: new file"),
        "{out}"
    );
    assert!(out.contains("kube-scheduler.yaml: would change"), "{out}");
    assert!(out.contains("file: does not parse"), "{out}");
    assert!(out.contains("kube-apiserver.yaml: unchanged"), "{out}");
}

#[test]
fn hard_way_import_is_exact_and_diff_flags_the_file_names() {
    let o = kubeplane(&[
        "import",
        "--manifest-dir",
        "tests/fixtures/hardway",
        "--node",
        "controller-0",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    let err = stderr(&o);
    assert!(err.contains("note: kube-apiserver reads its encryption keys from the host file /var/lib/kubernetes/encryption-config.yaml"), "{err}");
    assert!(!err.contains("warning:"), "{err}");
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("hw.yaml");
    std::fs::write(&cfg, &o.stdout).unwrap();
    let o = kubeplane(&[
        "diff",
        "-f",
        cfg.to_str().unwrap(),
        "--node",
        "controller-0",
        "--manifest-dir",
        "tests/fixtures/hardway",
        "--host-ca-dir",
        "/usr/share/ca-certificates",
    ]);
    // kubeplane writes kube-apiserver.yaml, not apiserver.yaml.
    assert_eq!(o.status.code(), Some(1), "{}", all(&o));
    let out = stdout(&o);
    assert!(
        out.contains("tests/fixtures/hardway/kube-apiserver.yaml: new file"),
        "{out}"
    );
    assert!(
        out.contains("tests/fixtures/hardway/apiserver.yaml: also runs kube-apiserver"),
        "{out}"
    );

    // Renamed as kubeplane names them, nothing changes.
    let dir = tmp.path().join("manifests");
    std::fs::create_dir(&dir).unwrap();
    for (from, to) in [
        ("apiserver.yaml", "kube-apiserver.yaml"),
        ("controller-manager.yaml", "kube-controller-manager.yaml"),
        ("scheduler.yaml", "kube-scheduler.yaml"),
    ] {
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/hardway")
                .join(from),
            dir.join(to),
        )
        .unwrap();
    }
    let o = kubeplane(&[
        "diff",
        "-f",
        cfg.to_str().unwrap(),
        "--node",
        "controller-0",
        "--manifest-dir",
        dir.to_str().unwrap(),
        "--host-ca-dir",
        "/usr/share/ca-certificates",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    assert_eq!(stdout(&o).matches(": equivalent").count(), 3, "{}", all(&o));
}

#[test]
fn lossy_import_names_the_default_flag_and_exits_1_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(KUBEADM, tmp.path());
    let api = tmp.path().join("kube-apiserver.yaml");
    let text = std::fs::read_to_string(&api).unwrap();
    std::fs::write(
        &api,
        text.replace("    - --enable-bootstrap-token-auth=true\n", ""),
    )
    .unwrap();
    let dir = tmp.path().to_str().unwrap();
    let o = kubeplane(&["import", "--manifest-dir", dir, "--node", "cp-1"]);
    assert_eq!(o.status.code(), Some(1), "{}", all(&o));
    let err = stderr(&o);
    assert!(
        err.contains("warning: kube-apiserver (")
            && err.contains("rendering this config would change the manifest"),
        "{err}"
    );
    assert!(
        err.contains("flag added: --enable-bootstrap-token-auth=true (a default kubeplane always writes; it cannot express \"remove this default flag\")"),
        "{err}"
    );
    assert!(err.contains("--allow-lossy"), "{err}");
    // The config is printed all the same.
    assert!(kubeplane::api::parse_config(&stdout(&o)).is_ok());

    let o = kubeplane(&[
        "import",
        "--manifest-dir",
        dir,
        "--node",
        "cp-1",
        "--allow-lossy",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    assert!(stderr(&o).contains("accepted with --allow-lossy"));
}

#[test]
fn import_error_paths_exit_2_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let o = kubeplane(&["import", "--manifest-dir", dir, "--node", "cp-1"]);
    assert_eq!(o.status.code(), Some(2), "{}", all(&o));
    assert!(
        stderr(&o).contains(
            "no kube-apiserver, kube-controller-manager or kube-scheduler manifest found"
        ),
        "{}",
        all(&o)
    );
    assert!(stdout(&o).is_empty());

    std::fs::write(tmp.path().join("notes.txt"), "hello\n").unwrap();
    std::fs::write(tmp.path().join(".hidden.yaml"), "{{{").unwrap();
    let o = kubeplane(&["import", "--manifest-dir", dir, "--node", "cp-1"]);
    assert_eq!(o.status.code(), Some(2), "{}", all(&o));
    assert!(stderr(&o).contains("notes.txt: not a Pod"), "{}", all(&o));
    assert!(!stderr(&o).contains("hidden"), "{}", all(&o));

    copy_dir(KUBEADM, tmp.path());
    std::fs::write(tmp.path().join("kube-vip.yaml"), "kind: Pod\nspec: [\n").unwrap();
    let o = kubeplane(&["import", "--manifest-dir", dir, "--node", "cp-1"]);
    assert_eq!(o.status.code(), Some(2), "{}", all(&o));
    assert!(
        stderr(&o).contains("kube-vip.yaml: not valid YAML"),
        "{}",
        all(&o)
    );
    assert!(stdout(&o).is_empty());

    let o = kubeplane(&["import", "--manifest-dir", "/no/such/dir"]);
    assert_eq!(o.status.code(), Some(2), "{}", all(&o));
    assert!(stderr(&o).contains("/no/such/dir"), "{}", all(&o));

    let o = kubeplane(&["import", "--manifest-dir", KUBEADM, "--address", "cp-1"]);
    assert_eq!(o.status.code(), Some(2), "{}", all(&o));
    assert!(stderr(&o).contains("not an IP address"), "{}", all(&o));
}

#[test]
fn import_defaults_the_node_name_to_the_hostname() {
    let o = kubeplane(&["import", "--manifest-dir", KUBEADM]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    let cfg = kubeplane::api::parse_config(&stdout(&o)).unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_lowercase();
    assert_eq!(cfg.spec.nodes[0].name, host);
}

#[test]
fn diff_error_paths_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("bad.yaml");
    std::fs::write(
        &cfg,
        "apiVersion: kubeplane.io/v1alpha1\nkind: ControlPlaneConfig\nmetadata: {name: x}\nspec:\n  kubernetesVersion: v1.36.2\n  scheduler:\n    extraArgs:\n    - {name: no-such-flag, value: x}\n",
    )
    .unwrap();
    let o = diff(cfg.to_str().unwrap(), KUBEADM, &["--address", "10.0.0.11"]);
    assert_eq!(o.status.code(), Some(2), "{}", all(&o));
    assert!(stderr(&o).contains("--no-such-flag"), "{}", all(&o));

    let good = import_kubeadm(tmp.path());
    let o = diff(&good, "/no/such/dir", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", all(&o));
    assert!(stderr(&o).contains("/no/such/dir"), "{}", all(&o));

    let o = diff("/no/such/file.yaml", KUBEADM, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", all(&o));
}

/// `kubeplane apply --no-wait` of the kubeadm-defaults example into fresh directories, with
/// the host CA directories of [`CA_DIRS`]; returns (temp dir, diff arguments).
fn applied() -> (tempfile::TempDir, Vec<String>) {
    let t = tempfile::tempdir().unwrap();
    let (m, s, root) = (
        t.path().join("m"),
        t.path().join("s"),
        t.path().join("root"),
    );
    std::fs::create_dir(&m).unwrap();
    for d in CA_DIRS.iter().skip(1).step_by(2) {
        std::fs::create_dir_all(root.join(d.trim_start_matches('/'))).unwrap();
    }
    let (m, s, root) = (
        m.display().to_string(),
        s.display().to_string(),
        root.display().to_string(),
    );
    let base = [
        "-f",
        "examples/kubeadm-defaults.yaml",
        "--node",
        "cp-1",
        "--address",
        "10.0.0.11",
    ];
    let mut apply = vec!["apply"];
    apply.extend(base);
    apply.extend([
        "--manifest-dir",
        &m,
        "--state-dir",
        &s,
        "--host-root",
        &root,
        "--no-wait",
    ]);
    let o = kubeplane(&apply);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    let mut diff: Vec<String> = vec!["diff".into()];
    diff.extend(base.iter().map(|a| a.to_string()));
    diff.extend(["--manifest-dir".into(), m, "--state-dir".into(), s]);
    diff.extend(CA_DIRS.iter().map(|a| a.to_string()));
    (t, diff)
}

fn run_diff(args: &[String]) -> Output {
    kubeplane(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn diff_prints_the_agents_plan_including_its_state() {
    let (t, args) = applied();
    let o = run_diff(&args);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    assert!(stdout(&o).contains("nothing would change"), "{}", all(&o));

    // The agent restarted kube-scheduler for renewed certificates: the file on disk carries
    // its restart annotation, and its state says so. The agent keeps that file (the render
    // did not change); comparing the render with the disk alone would say it changes.
    let manifest = t.path().join("m/kube-scheduler.yaml");
    let (annotated, _) = kubeplane::agent::certs::with_restart_annotation(
        &std::fs::read(&manifest).unwrap(),
        "feedface",
        "cp-1",
    )
    .unwrap();
    std::fs::write(&manifest, &annotated).unwrap();
    let state_file = t.path().join("s/state.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    let components = state["components"].as_object_mut().expect("components");
    let key = components
        .keys()
        .find(|k| k.contains("scheduler"))
        .cloned()
        .expect("kube-scheduler in state.json");
    let c = &mut components[&key];
    c["restartAnnotation"] = serde_json::json!("feedface");
    c["contentSha256"] = serde_json::json!(kubeplane::render::sha256_hex(&annotated));
    std::fs::write(&state_file, serde_json::to_vec(&state).unwrap()).unwrap();
    let o = run_diff(&args);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    assert!(
        stdout(&o).contains("kube-scheduler.yaml: unchanged"),
        "{}",
        all(&o)
    );
    // Without the state, the same file is one the agent would rewrite.
    let saved = std::fs::read(&state_file).unwrap();
    std::fs::remove_file(&state_file).unwrap();
    let o = run_diff(&args);
    assert_eq!(o.status.code(), Some(1), "{}", all(&o));
    assert!(
        stdout(&o).contains("kube-scheduler.yaml: would change"),
        "{}",
        all(&o)
    );
    std::fs::write(&state_file, saved).unwrap();

    // A state file that does not decode: planned from an empty state, as the agent would,
    // said on stderr, and the file is left where it is.
    std::fs::write(&state_file, "{not json").unwrap();
    let o = run_diff(&args);
    assert_eq!(o.status.code(), Some(1), "{}", all(&o));
    assert!(stderr(&o).contains("does not decode"), "{}", all(&o));
    assert_eq!(std::fs::read_to_string(&state_file).unwrap(), "{not json");
}
