//! `kubeplane upgrade plan` as a user runs it: exit 0 (can proceed), 1 (cannot), 2 (bad input),
//! and what it prints.

use std::process::{Command, Output};

fn kubeplane(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kubeplane"));
    c.current_dir(env!("CARGO_MANIFEST_DIR")).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("kubeplane runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write_config(dir: &tempfile::TempDir, body: &str) -> String {
    let path = dir.path().join("cpc.yaml");
    std::fs::write(&path, body).unwrap();
    path.to_string_lossy().into_owned()
}

const HEADER: &str =
    "apiVersion: kubeplane.io/v1alpha1\nkind: ControlPlaneConfig\nmetadata:\n  name: t\n";

#[test]
fn one_minor_up_can_proceed_in_two_waves() {
    let o = kubeplane(
        &[
            "upgrade",
            "plan",
            "-f",
            "examples/controlplane.yaml",
            "--from-version",
            "v1.35.1",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("upgrade plan: v1.35.1 → v1.36.2 (minor upgrade)\n"),
        "{out}"
    );
    assert!(out.contains("wave 1 of 2: kube-apiserver — one node at a time: cp-1, cp-2, cp-3"));
    assert!(out.contains("wave 2 of 2: kube-controller-manager, kube-scheduler — one node at a time: cp-1, cp-2, cp-3"));
    assert!(out.contains(
        "kube-apiserver: registry.k8s.io/kube-apiserver:v1.35.1 → registry.k8s.io/kube-apiserver:v1.36.2"
    ));
    assert!(out.ends_with("result: can proceed\n"));
}

#[test]
fn a_skipped_minor_cannot_proceed_and_says_why() {
    let o = kubeplane(
        &[
            "upgrade",
            "plan",
            "-f",
            "examples/controlplane.yaml",
            "--from-version",
            "v1.34.1",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains("v1.34.1 → v1.36.2 skips 1.35"), "{out}");
    assert!(out.contains("go to v1.35.x first"));
    assert!(out.ends_with("result: cannot proceed: fix the errors above\n"));
}

#[test]
fn target_checks_are_printed_with_version_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(
        &dir,
        &format!(
            "{HEADER}spec:\n  kubernetesVersion: v1.36.2\n  apiServer:\n    extraArgs:\n      - name: feature-gates\n        value: KMSv1=true,TopologyAwareHints=false\n      - name: runtime-config\n        value: flowcontrol.apiserver.k8s.io/v1beta3=true\n"
        ),
    );
    let o = kubeplane(
        &["upgrade", "plan", "-f", &file, "--from-version", "v1.35.0"],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(out.contains("checks: 2 error(s), 1 warning(s)"), "{out}");
    assert!(out.contains("TopologyAwareHints is gone by 1.36"));
    assert!(out.contains("flowcontrol.apiserver.k8s.io/v1beta3 is not served since 1.32"));
    assert!(out.contains("warning: spec.apiServer.extraArgs[0]"));
}

#[test]
fn the_files_own_status_gives_the_running_version() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(
        &dir,
        &format!(
            "{HEADER}spec:\n  kubernetesVersion: v1.36.3\nstatus:\n  upgrade:\n    fromVersion: v1.36.1\n    toVersion: v1.36.3\n    wave: 1\n    revision: r\n"
        ),
    );
    let o = kubeplane(&["upgrade", "plan", "-f", &file], &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).starts_with("upgrade plan: v1.36.1 → v1.36.3 (patch change)\n"));
    assert!(
        stdout(&o).contains("wave 1 of 1: kube-apiserver, kube-controller-manager, kube-scheduler")
    );
}

#[test]
fn bad_input_exits_2_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(
        &dir,
        &format!("{HEADER}spec:\n  kubernetesVersion: v1.36.2\n"),
    );
    // No running version known.
    let o = kubeplane(&["upgrade", "plan", "-f", &file], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("give --from-version"), "{}", stderr(&o));
    // A running version that is not one.
    let o = kubeplane(
        &["upgrade", "plan", "-f", &file, "--from-version", "1.35"],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--from-version"));
    // No such file; a file that is not a ControlPlaneConfig.
    let o = kubeplane(
        &[
            "upgrade",
            "plan",
            "-f",
            "/nonexistent/cpc.yaml",
            "--from-version",
            "v1.35.0",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    let junk = dir.path().join("junk.yaml");
    std::fs::write(&junk, "kind: Pod\n").unwrap();
    let o = kubeplane(
        &[
            "upgrade",
            "plan",
            "-f",
            junk.to_str().unwrap(),
            "--from-version",
            "v1.35.0",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // --from-cluster without a cluster.
    let o = kubeplane(
        &["upgrade", "plan", "-f", &file, "--from-cluster"],
        &[("KUBECONFIG", "/nonexistent/kubeconfig")],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--from-cluster: no cluster to read"),
        "{}",
        stderr(&o)
    );
    // Both ways of saying where the cluster stands.
    let o = kubeplane(
        &[
            "upgrade",
            "plan",
            "-f",
            &file,
            "--from-cluster",
            "--from-version",
            "v1.35.0",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
}
