//! What an import needs, refuses or skips.

use super::*;

#[test]
fn kube_apiserver_needs_the_node_name_and_an_address() {
    let err = import(&ImportInput {
        files: &kubeadm(),
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(err, ImportError::NoNodeName { .. }), "{err}");
    assert!(err.to_string().contains("--node"));

    let files = edited("kube-apiserver.yaml", |t| {
        t.replace("    - --advertise-address=10.0.0.11\n", "")
    });
    let err = run(&files).unwrap_err();
    assert!(err.to_string().contains("--address IP"), "{err}");
    let i = import(&ImportInput {
        files: &files,
        node_name: Some("cp-1"),
        advertise_address: Some("10.0.0.11"),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        i.config.spec.nodes[0].advertise_address.as_deref(),
        Some("10.0.0.11")
    );
    assert_eq!(
        lossy_of(&i, Component::ApiServer),
        vec![Change::FlagAdded {
            name: "advertise-address".into(),
            to: vec!["--advertise-address=10.0.0.11".into()]
        }]
    );
}

#[test]
fn malformed_manifests_are_errors_that_name_the_file() {
    let mut files = kubeadm();
    files.push(file(
        "kube-vip.yaml",
        "apiVersion: v1\nkind: Pod\nspec: [\n",
    ));
    files.push(file("notes.txt", "a: [\n"));
    let err = run(&files).unwrap_err();
    let ImportError::Malformed(bad) = &err else {
        panic!("{err}")
    };
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].file, "kube-vip.yaml");
    assert!(
        err.to_string().starts_with("kube-vip.yaml: not valid YAML"),
        "{err}"
    );

    // A Pod with a field of the wrong type is malformed whatever its name.
    let mut files = kubeadm();
    files.push(file("x", "kind: Pod\nspec:\n  containers: 3\n"));
    let err = run(&files).unwrap_err();
    assert!(
        err.to_string().contains("x: a Pod, but spec.containers"),
        "{err}"
    );
}

#[test]
fn other_files_are_skipped_with_a_reason() {
    let mut files = kubeadm();
    files.push(file("notes.txt", "a: [\n"));
    files.push(file(
        "etcd.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: etcd}\nspec:\n  containers:\n  - name: etcd\n    command: [etcd]\n",
    ));
    files.push(file("empty.yaml", ""));
    files.push(file("binary", "\u{0}\u{1}"));
    files.push(file("cm.yaml", "apiVersion: v1\nkind: ConfigMap\n"));
    files.push(file("bad-utf8", ""));
    files.last_mut().unwrap().content = vec![0xff, 0xfe];
    let i = ok(&files);
    assert!(i.is_exact());
    let skipped: Vec<(&str, &str)> = i
        .skipped
        .iter()
        .map(|s| (s.file.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(skipped.len(), 6, "{skipped:?}");
    let reason = |f: &str| skipped.iter().find(|s| s.0 == f).unwrap().1;
    assert!(reason("etcd.yaml").contains("leaves it alone"));
    assert!(reason("notes.txt").starts_with("not valid YAML"));
    assert!(!reason("notes.txt").contains('\n'));
    assert_eq!(reason("empty.yaml"), "not a Pod (empty)");
    assert_eq!(reason("cm.yaml"), "not a Pod (kind ConfigMap)");
    assert_eq!(reason("bad-utf8"), "not UTF-8 text");
}

#[test]
fn no_manifests_is_an_error_listing_what_was_found() {
    let err = run(&[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no kube-apiserver, kube-controller-manager or kube-scheduler manifest found (the directory holds no files)"
    );
    let err = run(&[file(
        "etcd.yaml",
        "kind: Pod\nspec:\n  containers:\n  - name: etcd\n",
    )])
    .unwrap_err();
    assert!(matches!(err, ImportError::NoManifests { .. }));
    assert!(err.to_string().contains("etcd.yaml: static Pod"), "{err}");
}

#[test]
fn a_backup_copy_beside_the_managed_file_is_skipped_two_strangers_are_an_error() {
    let mut files = kubeadm();
    files.push(file("kube-scheduler.yaml.bak", SCHED));
    let i = ok(&files);
    assert!(
        i.sources
            .contains(&(Component::Scheduler, "kube-scheduler.yaml".into()))
    );
    assert!(
        i.skipped
            .iter()
            .any(|s| s.file == "kube-scheduler.yaml.bak")
    );

    let files = vec![file("a.yaml", SCHED), file("b.yaml", SCHED)];
    let err = run(&files).unwrap_err();
    assert!(
        matches!(&err, ImportError::Duplicate { component: Component::Scheduler, files } if files.len() == 2),
        "{err}"
    );
}

#[test]
fn images_must_name_a_supported_version() {
    let digest = edited("kube-scheduler.yaml", |t| {
        t.replace(":v1.36.2", "@sha256:0123")
    });
    let i = ok(&digest);
    // The version comes from kube-apiserver's image; the pinned scheduler image is a change.
    assert!(
        lossy_of(&i, Component::Scheduler)
            .iter()
            .any(|c| matches!(c, Change::ImageChanged { .. }))
    );
    let err = run(&[file(
        "kube-scheduler.yaml",
        &SCHED.replace(":v1.36.2", "@sha256:0"),
    )])
    .unwrap_err();
    assert!(err.to_string().contains("pinned by digest"), "{err}");
    let err = run(&[file(
        "kube-scheduler.yaml",
        &SCHED.replace("v1.36.2", "v1.20.0"),
    )])
    .unwrap_err();
    assert!(err.to_string().contains("not supported"), "{err}");
    let err = run(&[file(
        "kube-scheduler.yaml",
        &SCHED.replace("registry.k8s.io/kube-scheduler", "hyperkube"),
    )])
    .unwrap_err();
    assert!(
        err.to_string().contains("image \"hyperkube:v1.36.2\""),
        "{err}"
    );
}

#[test]
fn kthw_style_manifest_without_kubeplanes_defaults_lists_every_difference() {
    // The flags of Kubernetes The Hard Way's controller manager, nothing more.
    let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-controller-manager\n  namespace: kube-system\nspec:\n  hostNetwork: true\n  containers:\n  - name: kube-controller-manager\n    image: registry.k8s.io/kube-controller-manager:v1.36.2\n    command:\n    - /usr/local/bin/kube-controller-manager\n    - --bind-address=0.0.0.0\n    - --cluster-cidr=10.200.0.0/16\n    - --cluster-name=kubernetes\n    - --cluster-signing-cert-file=/var/lib/kubernetes/ca.pem\n    - --cluster-signing-key-file=/var/lib/kubernetes/ca-key.pem\n    - --kubeconfig=/var/lib/kubernetes/kube-controller-manager.kubeconfig\n    - --leader-elect=true\n    - --root-ca-file=/var/lib/kubernetes/ca.pem\n    - --service-account-private-key-file=/var/lib/kubernetes/service-account-key.pem\n    - --service-cluster-ip-range=10.32.0.0/24\n    - --use-service-account-credentials=true\n    - --v=2\n    volumeMounts:\n    - {name: var-lib-kubernetes, mountPath: /var/lib/kubernetes, readOnly: true}\n  volumes:\n  - name: var-lib-kubernetes\n    hostPath: {path: /var/lib/kubernetes}\n";
    let i = run(&[file("controller-manager.yaml", text)]).unwrap();
    assert!(!i.is_exact());
    let changes = lossy_of(&i, Component::ControllerManager);
    let added: Vec<&str> = changes
        .iter()
        .filter_map(|c| match c {
            Change::FlagAdded { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    for f in [
        "authentication-kubeconfig",
        "authorization-kubeconfig",
        "client-ca-file",
        "controllers",
        "requestheader-client-ca-file",
    ] {
        assert!(added.contains(&f), "{f}: {added:?}");
    }
    // Every flag of the manifest is kept; none is dropped.
    let kept: Vec<String> = extra_args(&i, Component::ControllerManager)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for f in ["v", "bind-address", "cluster-cidr", "root-ca-file"] {
        assert!(kept.iter().any(|k| k == f), "{f}: {kept:?}");
    }
    let text: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
    assert!(
        text.iter().any(|c| c.contains("words that are not flags")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|c| c.starts_with("volume added: kubeconfig")),
        "{text:?}"
    );
    assert!(text.iter().any(|c| c.contains("livenessProbe")), "{text:?}");
}
