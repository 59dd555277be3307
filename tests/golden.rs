//! Golden files: what `kubeplane render` prints for the examples. A change in output shows
//! up as a diff of `tests/golden/`; after reviewing it, regenerate with
//! `UPDATE_GOLDEN=1 cargo test --test golden`.

use std::process::Command;

fn check(name: &str, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_kubeplane"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("render")
        .args(args)
        .output()
        .expect("kubeplane runs");
    assert!(
        out.status.success(),
        "render failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = String::from_utf8(out.stdout).expect("UTF-8 output");
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{path} missing: run UPDATE_GOLDEN=1 cargo test --test golden"));
    if got != want {
        let first = got
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(got.lines().count().min(want.lines().count()));
        panic!(
            "{name} differs from the golden file at line {}:\n  got:  {:?}\n  want: {:?}\nreview the change, then UPDATE_GOLDEN=1 cargo test --test golden",
            first + 1,
            got.lines().nth(first),
            want.lines().nth(first)
        );
    }
}

#[test]
fn ha_example_cp_1() {
    check(
        "controlplane-cp-1.yaml",
        &["-f", "examples/controlplane.yaml", "--node", "cp-1"],
    );
}

#[test]
fn ha_example_cp_3() {
    check(
        "controlplane-cp-3.yaml",
        &["-f", "examples/controlplane.yaml", "--node", "cp-3"],
    );
}

#[test]
fn kubeadm_defaults_cp_1() {
    check(
        "kubeadm-defaults-cp-1.yaml",
        &[
            "-f",
            "examples/kubeadm-defaults.yaml",
            "--node",
            "cp-1",
            "--address",
            "10.0.0.11",
            "--host-ca-dir",
            "/etc/ca-certificates",
            "--host-ca-dir",
            "/usr/local/share/ca-certificates",
            "--host-ca-dir",
            "/usr/share/ca-certificates",
        ],
    );
}
