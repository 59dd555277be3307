//! `kubeplane validate` refuses a config carrying the flags old guides use, naming each one with
//! the release that removed it and its replacement, and passes the examples silently.

use std::path::Path;
use std::process::{Command, Output};

fn validate(file: &str) -> Output {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    Command::new(env!("CARGO_BIN_EXE_kubeplane"))
        .args(["validate", "-f"])
        .arg(&path)
        .output()
        .expect("kubeplane runs")
}

/// (component field, flag, release that removed it, replacement), as in
/// tests/fixtures/legacy-flags.yaml. Facts: core/src/flags/data/SOURCES.md.
const LEGACY: &[(&str, &str, &str, Option<&str>)] = &[
    ("apiServer", "insecure-port", "1.24", Some("secure-port")),
    (
        "apiServer",
        "insecure-bind-address",
        "1.24",
        Some("bind-address"),
    ),
    ("apiServer", "address", "1.24", Some("bind-address")),
    ("apiServer", "port", "1.24", Some("secure-port")),
    ("apiServer", "kubelet-https", "1.22", None),
    ("apiServer", "enable-swagger-ui", "1.24", None),
    (
        "apiServer",
        "experimental-encryption-provider-config",
        "1.24",
        Some("encryption-provider-config"),
    ),
    ("controllerManager", "address", "1.24", Some("bind-address")),
    ("controllerManager", "port", "1.24", Some("secure-port")),
    (
        "controllerManager",
        "experimental-cluster-signing-duration",
        "1.25",
        Some("cluster-signing-duration"),
    ),
    ("controllerManager", "pod-eviction-timeout", "1.27", None),
    (
        "controllerManager",
        "horizontal-pod-autoscaler-use-rest-clients",
        "1.22",
        None,
    ),
    (
        "controllerManager",
        "insecure-experimental-approve-all-kubelet-csrs-for-group",
        "1.13",
        None,
    ),
    (
        "controllerManager",
        "deployment-controller-sync-period",
        "1.24",
        None,
    ),
    ("scheduler", "address", "1.24", Some("bind-address")),
    ("scheduler", "port", "1.24", Some("secure-port")),
];

#[test]
fn every_legacy_flag_is_refused_with_version_and_replacement() {
    let out = validate("tests/fixtures/legacy-flags.yaml");
    assert!(!out.status.success(), "must exit non-zero");
    let stdout = String::from_utf8(out.stdout).unwrap();
    for (component, flag, removed, replacement) in LEGACY {
        let line = stdout
            .lines()
            .find(|l| {
                l.starts_with(&format!("error: spec.{component}.extraArgs["))
                    && l.contains(&format!("(\"{flag}\")"))
            })
            .unwrap_or_else(|| panic!("no error for {component} --{flag} in:\n{stdout}"));
        assert!(line.contains(&format!("--{flag} was removed")), "{line}");
        assert!(
            line.contains(&format!("in Kubernetes {removed};")),
            "{line}"
        );
        match replacement {
            Some(r) => assert!(line.contains(&format!("use --{r} instead")), "{line}"),
            None => assert!(line.contains("; remove it"), "{line}"),
        }
    }
    let errors = stdout.lines().filter(|l| l.starts_with("error:")).count();
    assert_eq!(errors, LEGACY.len(), "one error per legacy flag:\n{stdout}");
    assert!(stdout.contains(&format!("invalid: {} error(s)", LEGACY.len())));
}

#[test]
fn the_examples_report_nothing() {
    for file in [
        "examples/controlplane.yaml",
        "examples/kubeadm-defaults.yaml",
    ] {
        let out = validate(file);
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(out.status.success(), "{file}:\n{stdout}{stderr}");
        assert!(
            !stdout.contains("error:") && !stdout.contains("warning:"),
            "{file}:\n{stdout}"
        );
        assert!(stdout.contains("valid (0 warning(s))"), "{file}:\n{stdout}");
        assert!(stderr.is_empty(), "{file}: {stderr}");
    }
}

#[test]
fn flags_lists_a_component_and_refuses_an_unknown_one() {
    let out = Command::new(env!("CARGO_BIN_EXE_kubeplane"))
        .args(["flags", "kube-apiserver", "--version", "1.36", "--all"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.lines().any(|l| l.starts_with("--insecure-port ")
            && l.contains("removed in 1.24, use --secure-port")),
        "{stdout}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_kubeplane"))
        .args(["flags", "kubelet"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("kube-apiserver, kube-controller-manager and kube-scheduler"),
        "{stderr}"
    );
}
