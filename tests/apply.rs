//! `kubeplane apply` driven through the built binary, over temporary directories.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU16;

use common::{free_port, https_endpoint, run, snapshot};

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/kubeadm-defaults.yaml"
);

struct Dirs {
    _tmp: tempfile::TempDir,
    manifests: String,
    state: String,
    root: String,
    tmp: std::path::PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("manifests");
    let root = tmp.path().join("root");
    std::fs::create_dir(&m).unwrap();
    std::fs::create_dir(&root).unwrap();
    Dirs {
        manifests: m.display().to_string(),
        state: tmp.path().join("kubeplane").display().to_string(),
        root: root.display().to_string(),
        tmp: tmp.path().to_path_buf(),
        _tmp: tmp,
    }
}

fn apply_args<'a>(d: &'a Dirs, file: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "apply",
        "-f",
        file,
        "--node",
        "cp-1",
        "--manifest-dir",
        &d.manifests,
        "--state-dir",
        &d.state,
        "--host-root",
        &d.root,
    ];
    v.extend_from_slice(extra);
    v
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

#[test]
fn no_wait_writes_the_manifests_and_a_second_run_changes_nothing() {
    let d = dirs();
    let args = apply_args(&d, EXAMPLE, &["--address", "10.0.0.11", "--no-wait"]);
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("(not waited for: --no-wait)"),
        "{}",
        text(&out.stdout)
    );
    let mut names: Vec<String> = std::fs::read_dir(&d.manifests)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "kube-apiserver.yaml",
            "kube-controller-manager.yaml",
            "kube-scheduler.yaml"
        ]
    );
    for n in &names {
        let p = Path::new(&d.manifests).join(n);
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let api = std::fs::read_to_string(Path::new(&d.manifests).join("kube-apiserver.yaml")).unwrap();
    assert!(api.contains("--advertise-address=10.0.0.11"), "{api}");
    assert!(Path::new(&d.state).join("state.json").is_file());

    let before = snapshot(&d.tmp);
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(snapshot(&d.tmp), before, "the second run changed the disk");
}

#[test]
fn an_invalid_config_is_refused_and_nothing_is_written() {
    let d = dirs();
    let bad = d.tmp.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: kubeplane.io/v1alpha1\nkind: ControlPlaneConfig\nmetadata:\n  name: x\nspec:\n  kubernetesVersion: v1.20.0\n",
    )
    .unwrap();
    let bad = bad.display().to_string();
    let out = run(&apply_args(
        &d,
        &bad,
        &["--address", "10.0.0.11", "--no-wait"],
    ));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("kubernetesVersion"), "{err}");
    assert!(err.contains("nothing written"), "{err}");
    assert_eq!(std::fs::read_dir(&d.manifests).unwrap().count(), 0);
}

/// A config managing only kube-scheduler, probed on `port`.
fn scheduler_only(d: &Dirs, name: &str, port: u16, verbosity: &str) -> String {
    let p = d.tmp.join(name);
    std::fs::write(
        &p,
        format!(
            r#"apiVersion: kubeplane.io/v1alpha1
kind: ControlPlaneConfig
metadata:
  name: local
spec:
  kubernetesVersion: v1.36.2
  apiServer:
    managed: false
  controllerManager:
    managed: false
  scheduler:
    extraArgs:
    - name: secure-port
      value: "{port}"
    - name: v
      value: "{verbosity}"
  rollout:
    minReadySeconds: 1
    healthTimeoutSeconds:
      scheduler: 10
"#
        ),
    )
    .unwrap();
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_on_the_local_endpoint_and_rolls_back_a_revision_whose_endpoint_fails() {
    let d = Arc::new(dirs());
    let port = https_endpoint(Arc::new(AtomicU16::new(200))).await;
    let good = scheduler_only(&d, "good.yaml", port, "2");
    let dd = d.clone();
    let out = tokio::task::spawn_blocking(move || run(&apply_args(&dd, &good, &[])))
        .await
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("no API server: instead of the mirror pod, the container runtime"),
        "{stdout}"
    );
    assert!(stdout.contains("is healthy on node cp-1"), "{stdout}");
    let good_bytes = std::fs::read(Path::new(&d.manifests).join("kube-scheduler.yaml")).unwrap();

    // The next revision listens on a port nothing answers: rolled back, exit status 1.
    let bad = scheduler_only(&d, "bad.yaml", free_port(), "4");
    let dd = d.clone();
    let out = tokio::task::spawn_blocking(move || run(&apply_args(&dd, &bad, &[])))
        .await
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}{stderr}", text(&out.stdout));
    assert!(
        stderr.contains("error: rolled back (EndpointFailing)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("kube-scheduler not updated within 10s"),
        "{stderr}"
    );
    assert!(stderr.contains("failing: connect"), "{stderr}");
    assert!(
        stderr.contains("restored last-known-good revision"),
        "{stderr}"
    );
    // The good manifest is back, under a fresh uid that names the revision it undoes (so
    // kubelet starts it as a new pod).
    let restored =
        std::fs::read_to_string(Path::new(&d.manifests).join("kube-scheduler.yaml")).unwrap();
    let good_text = String::from_utf8(good_bytes).unwrap();
    assert!(
        restored.contains("kubeplane.io/restored-after:"),
        "{restored}"
    );
    let spec_of = |t: &str| t[t.find("\nspec:").unwrap()..].to_string();
    assert_eq!(spec_of(&restored), spec_of(&good_text));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_revision_that_never_gets_healthy_fails_with_the_reason() {
    let d = Arc::new(dirs());
    let port = https_endpoint(Arc::new(AtomicU16::new(500))).await;
    let cfg = scheduler_only(&d, "c.yaml", port, "2");
    let dd = d.clone();
    let out = tokio::task::spawn_blocking(move || run(&apply_args(&dd, &cfg, &[])))
        .await
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("error: failed (EndpointFailing)"),
        "{stderr}"
    );
    assert!(stderr.contains("HTTP 500"), "{stderr}");
    assert!(stderr.contains("no last-known-good revision"), "{stderr}");
}

#[test]
fn the_old_node_flag_name_still_works_and_writes_the_same_files() {
    let (a, b) = (dirs(), dirs());
    let mut old = apply_args(&a, EXAMPLE, &["--address", "10.0.0.11", "--no-wait"]);
    old[3] = "--node-name";
    let new = apply_args(&b, EXAMPLE, &["--address", "10.0.0.11", "--no-wait"]);
    for args in [&old, &new] {
        let out = run(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    }
    for f in ["kube-apiserver.yaml", "kube-scheduler.yaml"] {
        let read = |d: &Dirs| std::fs::read(Path::new(&d.manifests).join(f)).unwrap();
        assert_eq!(read(&a), read(&b), "{f}");
    }
    // The old name is an alias, not advertised.
    let help = run(&["apply", "--help"]);
    assert!(
        text(&help.stdout).contains("--node <NAME>"),
        "{}",
        text(&help.stdout)
    );
    assert!(
        !text(&help.stdout).contains("--node-name"),
        "{}",
        text(&help.stdout)
    );
}

#[test]
fn apply_without_a_manifest_dir_is_refused_and_writes_nothing() {
    let d = dirs();
    let out = common::kubeplane()
        .args(["apply", "-f", EXAMPLE, "--node", "cp-1", "--no-wait"])
        .args(["--state-dir", &d.state, "--host-root", &d.root])
        .env_remove("KUBEPLANE_MANIFEST_DIR")
        .env("KUBEPLANE_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--manifest-dir <DIR>"),
        "{}",
        text(&out.stderr)
    );
    assert!(!Path::new(&d.state).exists(), "nothing written");
}
