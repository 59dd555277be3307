//! The no-cluster commands as a user runs them: exit codes, messages, files written.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

fn kubeplane(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubeplane"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("kubeplane runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn write_config(dir: &tempfile::TempDir, body: &str) -> String {
    let path = dir.path().join("cpc.yaml");
    std::fs::write(&path, body).unwrap();
    path.to_string_lossy().into_owned()
}

const HEADER: &str =
    "apiVersion: kubeplane.io/v1alpha1\nkind: ControlPlaneConfig\nmetadata:\n  name: t\n";

#[test]
fn render_prints_three_pod_manifests_for_the_ha_example() {
    let o = kubeplane(&[
        "render",
        "-f",
        "examples/controlplane.yaml",
        "--node",
        "cp-1",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(std::str::from_utf8(&o.stdout).unwrap()).unwrap();
    let pods: Vec<&serde_json::Value> = docs.iter().filter(|d| d["kind"] == "Pod").collect();
    assert_eq!(pods.len(), 3);
    for p in pods {
        let _: k8s_openapi::api::core::v1::Pod = serde_json::from_value(p.clone()).unwrap();
    }
    // The encryption config comes from a Secret: named, not shown.
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("Secret kube-system/kubeplane-encryption-config")
    );
}

#[test]
fn render_out_writes_the_agent_files_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let enc = dir.path().join("enc.yaml");
    std::fs::write(
        &enc,
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources: []\n",
    )
    .unwrap();
    let out = dir.path().join("root");
    let o = kubeplane(&[
        "render",
        "-f",
        "examples/controlplane.yaml",
        "--node",
        "cp-2",
        "--out",
        out.to_str().unwrap(),
        "--encryption-config",
        enc.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    for f in [
        "etc/kubernetes/manifests/kube-apiserver.yaml",
        "etc/kubernetes/manifests/kube-controller-manager.yaml",
        "etc/kubernetes/manifests/kube-scheduler.yaml",
        "etc/kubernetes/kubeplane/files/kube-apiserver/audit-policy.yaml",
        "etc/kubernetes/kubeplane/files/kube-apiserver/encryption-config.yaml",
    ] {
        let meta = std::fs::metadata(out.join(f)).unwrap_or_else(|_| panic!("{f} written"));
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{f}");
    }
    // No temporary files are left behind.
    let names: Vec<String> = std::fs::read_dir(out.join("etc/kubernetes/manifests"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    let api =
        std::fs::read_to_string(out.join("etc/kubernetes/manifests/kube-apiserver.yaml")).unwrap();
    assert!(!api.contains("unresolved"));
    assert!(!text(&o).contains("provisional"));
}

#[test]
fn validate_accepts_the_examples() {
    for f in [
        "examples/controlplane.yaml",
        "examples/kubeadm-defaults.yaml",
    ] {
        let o = kubeplane(&["validate", "-f", f]);
        assert!(o.status.success(), "{f}: {}", text(&o));
        assert!(!text(&o).contains("error:"), "{f}: {}", text(&o));
    }
}

#[test]
fn validate_lists_every_problem_with_field_value_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        &dir,
        &format!(
            "{HEADER}spec:\n  kubernetesVersion: v1.29.0\n  networking:\n    serviceSubnet: 10.96.0.1/12\n    podSubnet: 10.96.0.0/16\n  apiServer:\n    extraArgs:\n    - name: --v\n      value: \"2\"\n  nodes:\n  - name: cp-1\n    advertiseAddress: not-an-ip\n"
        ),
    );
    let o = kubeplane(&["validate", "-f", &cfg]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    for needle in [
        "spec.kubernetesVersion (\"v1.29.0\")",
        "v1.33",
        "spec.networking.serviceSubnet",
        "10.96.0.0/12",
        "spec.apiServer.extraArgs[0].name (\"--v\")",
        "spec.nodes[0].advertiseAddress (\"not-an-ip\")",
    ] {
        assert!(t.contains(needle), "missing {needle:?} in:\n{t}");
    }
}

#[test]
fn render_refuses_an_invalid_config_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        &dir,
        &format!("{HEADER}spec:\n  kubernetesVersion: v1.99.0\n"),
    );
    let out = dir.path().join("root");
    let o = kubeplane(&[
        "render",
        "-f",
        &cfg,
        "--node",
        "cp-1",
        "--address",
        "10.0.0.1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("nothing rendered"), "{}", text(&o));
    assert!(!out.exists());
}

#[test]
fn render_without_an_address_says_how_to_give_one() {
    let o = kubeplane(&[
        "render",
        "-f",
        "examples/kubeadm-defaults.yaml",
        "--node",
        "cp-1",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(
        t.contains("advertise address") && t.contains("--address"),
        "{t}"
    );
}

#[test]
fn bad_input_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let huge = "x".repeat(2_000_000);
    let cases = [
        ("missing file", None),
        ("empty", Some(String::new())),
        ("garbage", Some(":\n  - : [".to_string())),
        (
            "wrong kind",
            Some("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n".to_string()),
        ),
        ("no spec", Some(HEADER.to_string())),
        ("null spec", Some(format!("{HEADER}spec: null\n"))),
        ("spec is a list", Some(format!("{HEADER}spec: [1, 2]\n"))),
        (
            "number version",
            Some(format!("{HEADER}spec:\n  kubernetesVersion: 1.36\n")),
        ),
        (
            "huge value",
            Some(format!("{HEADER}spec:\n  kubernetesVersion: \"{huge}\"\n")),
        ),
        (
            "deep nesting",
            Some(format!(
                "{HEADER}spec:\n  kubernetesVersion: v1.36.2\n  apiServer:\n    audit:\n      policy: {}{}\n",
                "[".repeat(5000),
                "]".repeat(5000)
            )),
        ),
        (
            "billion laughs",
            Some(format!(
                "{HEADER}a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nspec: {{kubernetesVersion: v1.36.2}}\n"
            )),
        ),
        (
            "binary",
            Some(String::from_utf8_lossy(&[0xff, 0xfe, 0x00, 0x01]).into_owned()),
        ),
    ];
    for (name, body) in cases {
        let path = match &body {
            Some(b) => {
                let p = dir.path().join(format!("{}.yaml", name.replace(' ', "-")));
                std::fs::write(&p, b).unwrap();
                p
            }
            None => dir.path().join("does-not-exist.yaml"),
        };
        for cmd in ["validate", "render"] {
            let mut args = vec![cmd, "-f", path.to_str().unwrap()];
            if cmd == "render" {
                args.extend(["--node", "cp-1", "--address", "10.0.0.1"]);
            }
            let o = kubeplane(&args);
            assert_eq!(o.status.code(), Some(1), "{name} / {cmd}: {}", text(&o));
            let t = text(&o);
            assert!(!t.contains("panicked"), "{name} / {cmd} panicked: {t}");
            assert!(t.contains("error"), "{name} / {cmd}: no error message: {t}");
        }
    }
}

#[test]
fn render_refuses_a_bad_address_and_warns_about_unknown_ca_dirs() {
    let o = kubeplane(&[
        "render",
        "-f",
        "examples/kubeadm-defaults.yaml",
        "--node",
        "cp-1",
        "--address",
        "cp-1.example",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("not an IP address"), "{}", text(&o));
    let o = kubeplane(&[
        "render",
        "-f",
        "examples/kubeadm-defaults.yaml",
        "--node",
        "cp-1",
        "--address",
        "10.0.0.11",
        "--host-ca-dir",
        "/opt/certs",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("--host-ca-dir /opt/certs") && t.contains("ignored"),
        "{t}"
    );
    assert!(!String::from_utf8_lossy(&o.stdout).contains("/opt/certs"));
}

#[test]
fn agent_and_apply_take_the_node_as_node_and_as_the_old_node_name() {
    for role in ["agent", "apply"] {
        for flag in ["--node", "--node-name"] {
            let out = kubeplane(&[role, flag, "cp-1", "--help"]);
            assert!(out.status.success(), "{role} {flag}: {}", text(&out));
        }
        // Not vacuous: clap refuses a flag it does not know before `--help`.
        let out = kubeplane(&[role, "--node-nam", "cp-1", "--help"]);
        assert!(!out.status.success(), "{role} --node-nam: {}", text(&out));
    }
}
