use super::*;

fn pod(yaml: &str) -> Pod {
    match parse_pod(yaml).unwrap() {
        Parsed::Pod(p) => *p,
        other => panic!("{other:?}"),
    }
}

const BASE: &str = "kind: Pod\nmetadata: {name: kube-scheduler}\nspec:\n  containers:\n  - name: kube-scheduler\n    image: registry.k8s.io/kube-scheduler:v1.36.2\n    command: [kube-scheduler, --a=1, --b=2]\n    volumeMounts:\n    - {name: kubeconfig, mountPath: /etc/kubernetes/scheduler.conf, readOnly: true}\n  volumes:\n  - name: kubeconfig\n    hostPath: {path: /etc/kubernetes/scheduler.conf, type: FileOrCreate}\n";

#[test]
fn no_changes_between_equivalent_pods() {
    let a = pod(BASE);
    let b = pod(&BASE.replace("--a=1, --b=2", "--b=2, --a=1"));
    assert!(changes(&a, &b).is_empty());
    assert!(equivalent(&a, &b));
}

#[test]
fn flags_are_summarized_by_name() {
    let a = pod(BASE);
    let b = pod(&BASE.replace("--a=1, --b=2", "--b=3, --c, --v, '2'"));
    let got: Vec<String> = changes(&a, &b).iter().map(|c| c.to_string()).collect();
    assert_eq!(
        got,
        vec![
            "flag removed: --a=1",
            "flag changed: --b=2 -> --b=3",
            "flag added: --c",
            "flag added: --v 2",
        ]
    );
}

#[test]
fn image_volumes_and_other_fields_are_listed() {
    let a = pod(BASE);
    let edited = BASE
        .replace("v1.36.2", "v1.36.3")
        .replace("type: FileOrCreate", "type: File")
        .replace("  volumes:\n", "  hostNetwork: true\n  volumes:\n");
    let b = pod(&format!(
        "{edited}  - name: extra\n    hostPath: {{path: /x}}\n"
    ));
    let got: Vec<String> = changes(&a, &b).iter().map(|c| c.to_string()).collect();
    assert_eq!(
        got,
        vec![
            "image changed: registry.k8s.io/kube-scheduler:v1.36.2 -> registry.k8s.io/kube-scheduler:v1.36.3",
            "volume changed: kubeconfig: hostPath /etc/kubernetes/scheduler.conf (FileOrCreate) at /etc/kubernetes/scheduler.conf read-only -> hostPath /etc/kubernetes/scheduler.conf (File) at /etc/kubernetes/scheduler.conf read-only",
            "volume added: extra: hostPath /x (no type), not mounted",
            "spec.hostNetwork: (none) -> true",
        ]
    );
}

#[test]
fn binary_and_args_split_are_changes() {
    let a = pod(BASE);
    let b = pod(&BASE.replace("[kube-scheduler,", "[/usr/bin/kube-scheduler,"));
    let c = changes(&a, &b);
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(c[0].to_string().contains("words that are not flags"));
    let d = pod(&BASE.replace(
        "command: [kube-scheduler, --a=1, --b=2]",
        "command: [kube-scheduler]\n    args: [--a=1, --b=2]",
    ));
    let c = changes(&a, &d);
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(c[0].to_string().starts_with("spec.containers[0].args"));
    assert!(!equivalent(&a, &d));
}

#[test]
fn unified_diff_shows_hunks_with_context() {
    // Six unchanged lines between two changes: one hunk, as diff -u prints it.
    let old = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n";
    let new = "a\nb\nc\nD\ne\nf\ng\nh\ni\nj\nk\n";
    assert_eq!(
        unified_diff(old, new, "old", "new"),
        "--- old\n+++ new\n@@ -1,10 +1,11 @@\n a\n b\n c\n-d\n+D\n e\n f\n g\n h\n i\n j\n+k\n"
    );
    // Seven: two hunks.
    let old = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\n";
    let new = "a\nb\nc\nD\ne\nf\ng\nh\ni\nj\nk\nl\n";
    assert_eq!(
        unified_diff(old, new, "old", "new"),
        "--- old\n+++ new\n@@ -1,7 +1,7 @@\n a\n b\n c\n-d\n+D\n e\n f\n g\n@@ -9,3 +9,4 @@\n i\n j\n k\n+l\n"
    );
    assert_eq!(unified_diff("x\n", "x\n", "a", "b"), "");
    let d = unified_diff("", "x\n", "a", "b");
    assert_eq!(d, "--- a\n+++ b\n@@ -0,0 +1,1 @@\n+x\n");
    let d = unified_diff("x\ny\n", "y\n", "a", "b");
    assert_eq!(d, "--- a\n+++ b\n@@ -1,2 +1,1 @@\n-x\n y\n");
}

#[test]
fn unified_diff_of_large_inputs_is_bounded() {
    let old: String = (0..3000).map(|i| format!("a{i}\n")).collect();
    let new: String = (0..3000).map(|i| format!("b{i}\n")).collect();
    let d = unified_diff(&old, &new, "a", "b");
    assert_eq!(d.lines().filter(|l| l.starts_with('-')).count(), 3001);
    assert_eq!(d.lines().filter(|l| l.starts_with('+')).count(), 3001);
}

#[test]
fn side_files_compare_by_content_and_hide_secrets() {
    use crate::api::{Component, SecretKeyRef};
    let inline = RenderedFile {
        component: Component::ApiServer,
        path: "/p".into(),
        source: FileSource::Inline("a: 1\n".into()),
        sha256: String::new(),
    };
    assert_eq!(
        compare_side_file("/p", None, &inline, None),
        FileStatus::New
    );
    assert_eq!(
        compare_side_file("/p", Some(b"a: 1\n"), &inline, None),
        FileStatus::Unchanged
    );
    let FileStatus::Changed { diff, .. } = compare_side_file("/p", Some(b"a: 2\n"), &inline, None)
    else {
        panic!("changed")
    };
    assert!(diff.contains("-a: 2") && diff.contains("+a: 1"), "{diff}");
    let secret = RenderedFile {
        source: FileSource::Secret(SecretKeyRef {
            name: "enc".into(),
            namespace: Some("kube-system".into()),
            key: Some("config.yaml".into()),
        }),
        ..inline
    };
    let s = compare_side_file("/p", Some(b"k"), &secret, None);
    assert!(matches!(&s, FileStatus::Unknown { reason } if reason.contains("--encryption-config")));
    assert!(s.would_change());
    let FileStatus::Changed { diff, changes } =
        compare_side_file("/p", Some(b"old-key"), &secret, Some(b"new-key"))
    else {
        panic!("changed")
    };
    assert!(diff.is_empty());
    assert!(!format!("{changes:?}").contains("new-key"));
    assert_eq!(
        compare_side_file("/p", Some(b"k"), &secret, Some(b"k")),
        FileStatus::Unchanged
    );
}
