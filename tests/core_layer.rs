//! The pure layer (`core/`, crate `kubeplane_core`: api, flags, render, validation, adopt) does
//! no I/O and no async. Its own code cannot reach what its dependencies do not provide, so this
//! test keeps the I/O crates out of its normal dependency tree, as cargo resolves it.

use std::process::Command;

/// Crates that do I/O or async at runtime: none of them may be a normal dependency of the core.
const FORBIDDEN: [&str; 10] = [
    "tokio",
    "kube-client",
    "kube-runtime",
    "hyper",
    "hyper-util",
    "notify",
    "tonic",
    "axum",
    "mio",
    "tempfile",
];

/// The package names in `cargo tree -e normal --prefix none` output (one `name vX.Y.Z ...` a line).
fn packages(tree: &str) -> Vec<&str> {
    let mut names: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// The forbidden crates among `names`.
fn forbidden<'a>(names: &[&'a str]) -> Vec<&'a str> {
    names
        .iter()
        .copied()
        .filter(|n| FORBIDDEN.contains(n))
        .collect()
}

fn cargo_tree(package: &str) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--locked",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args(["-p", package])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("cargo tree prints UTF-8")
}

#[test]
fn core_has_no_io_crate_in_its_dependency_tree() {
    let tree = cargo_tree("kubeplane-core");
    let names = packages(&tree);
    assert!(
        names.contains(&"kubeplane-core") && names.contains(&"kube-core"),
        "unexpected cargo tree output:\n{tree}"
    );
    let bad = forbidden(&names);
    assert!(
        bad.is_empty(),
        "the pure layer (core/) depends on {bad:?}: move the code that needs them to the root \
         package (agent, operator, cli), or feed the core plain values; `cargo tree -p \
         kubeplane-core -e normal -i {}` shows the path",
        bad[0]
    );
}

#[test]
fn the_check_sees_io_crates_where_they_are() {
    // The root package runs the agent and the operator: the same check must find tokio and
    // the kube client there, or the test above proves nothing.
    let tree = cargo_tree("kubeplane");
    let names = packages(&tree);
    let bad = forbidden(&names);
    for expected in ["tokio", "kube-client", "hyper", "notify"] {
        assert!(bad.contains(&expected), "{expected} not found in {names:?}");
    }
}

#[test]
fn package_names_are_read_from_each_line() {
    let tree = "kubeplane-core v0.1.0 (/x/core)\nserde v1.0.1\ntokio v1.48.0 (*)\nserde v1.0.1\n";
    assert_eq!(packages(tree), ["kubeplane-core", "serde", "tokio"]);
    assert_eq!(forbidden(&packages(tree)), ["tokio"]);
    assert!(forbidden(&packages("serde v1\n")).is_empty());
}
