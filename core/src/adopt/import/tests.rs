use super::*;
use crate::adopt::diff::Change;
use crate::adopt::manifest::{Parsed, parse_pod};
use crate::api::FlagName;

const API: &str = include_str!("../../../../tests/fixtures/kubeadm-v1.36.2/kube-apiserver.yaml");
const KCM: &str =
    include_str!("../../../../tests/fixtures/kubeadm-v1.36.2/kube-controller-manager.yaml");
const SCHED: &str = include_str!("../../../../tests/fixtures/kubeadm-v1.36.2/kube-scheduler.yaml");

fn file(name: &str, text: &str) -> ManifestFile {
    ManifestFile {
        name: name.into(),
        content: text.as_bytes().to_vec(),
    }
}

fn kubeadm() -> Vec<ManifestFile> {
    vec![
        file("kube-apiserver.yaml", API),
        file("kube-controller-manager.yaml", KCM),
        file("kube-scheduler.yaml", SCHED),
    ]
}

fn run(files: &[ManifestFile]) -> Result<Imported, ImportError> {
    import(&ImportInput {
        files,
        node_name: Some("cp-1"),
        ..Default::default()
    })
}

fn ok(files: &[ManifestFile]) -> Imported {
    run(files).unwrap_or_else(|e| panic!("{e}"))
}

/// The kubeadm set with one file's text edited.
fn edited(name: &str, edit: impl Fn(&str) -> String) -> Vec<ManifestFile> {
    kubeadm()
        .into_iter()
        .map(|f| {
            if f.name == name {
                let text = edit(std::str::from_utf8(&f.content).unwrap());
                file(&f.name, &text)
            } else {
                f
            }
        })
        .collect()
}

fn lossy_of(i: &Imported, c: Component) -> Vec<Change> {
    i.lossy
        .iter()
        .filter(|l| l.component == c)
        .flat_map(|l| l.changes.clone())
        .collect()
}

fn extra_args(i: &Imported, c: Component) -> Vec<(String, String)> {
    render::settings(&i.config.spec, c)
        .extra_args
        .iter()
        .map(|a| (a.name.clone(), a.value.clone()))
        .collect()
}

fn arg(n: &str, v: &str) -> (String, String) {
    (n.to_string(), v.to_string())
}

#[test]
fn kubeadm_defaults_import_exactly_with_an_empty_spec() {
    let i = ok(&kubeadm());
    assert!(i.is_exact(), "{:?}", i.lossy);
    assert!(i.report.is_ok(), "{:?}", i.report);
    assert!(i.config.spec.api_server.is_none());
    assert!(i.config.spec.networking.is_none());
    assert_eq!(i.config.metadata.name.as_deref(), Some("kubernetes"));
}

#[test]
fn a_missing_default_flag_is_reported_by_name() {
    let files = edited("kube-apiserver.yaml", |t| {
        t.replace("    - --enable-bootstrap-token-auth=true\n", "")
    });
    let i = ok(&files);
    assert!(!i.is_exact());
    assert_eq!(
        lossy_of(&i, Component::ApiServer),
        vec![Change::FlagAdded {
            name: "enable-bootstrap-token-auth".into(),
            to: vec!["--enable-bootstrap-token-auth=true".into()],
        }]
    );
    // The other components are still exact.
    assert_eq!(i.lossy.len(), 1);
}

#[test]
fn changed_flags_become_extra_args_and_protected_ones_are_allowed() {
    let files = edited("kube-apiserver.yaml", |t| {
        t.replace(
            "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt",
            "--tls-cert-file=/etc/kubernetes/pki/serving.crt",
        )
        .replace(
            "    - --secure-port=6443\n",
            "    - --secure-port=6443\n    - --profiling=false\n    - --event-ttl=2h\n",
        )
    });
    let i = ok(&files);
    assert!(i.is_exact(), "{:?}", i.lossy);
    assert!(i.report.is_ok(), "{:?}", i.report);
    assert_eq!(
        extra_args(&i, Component::ApiServer),
        vec![
            arg("profiling", "false"),
            arg("event-ttl", "2h"),
            arg("tls-cert-file", "/etc/kubernetes/pki/serving.crt"),
        ]
    );
    let allowed = &render::settings(&i.config.spec, Component::ApiServer).allow_protected_overrides;
    assert_eq!(allowed, &vec![FlagName("tls-cert-file".into())]);
}

#[test]
fn repeated_flags_are_kept_in_their_order() {
    let files = edited("kube-apiserver.yaml", |t| {
        t.replace(
            "    - --service-account-issuer=https://kubernetes.default.svc.cluster.local\n",
            "    - --service-account-issuer=https://new.example\n    - --service-account-issuer=https://kubernetes.default.svc.cluster.local\n",
        )
    });
    let i = ok(&files);
    assert!(i.is_exact(), "{:?}", i.lossy);
    assert_eq!(
        extra_args(&i, Component::ApiServer),
        vec![
            arg("service-account-issuer", "https://new.example"),
            arg(
                "service-account-issuer",
                "https://kubernetes.default.svc.cluster.local"
            ),
        ]
    );
}

#[test]
fn admission_plugins_not_led_by_kubeadms_default_cannot_keep_their_order() {
    // Kubernetes The Hard Way lists NodeRestriction second; kubeplane merges the list after
    // kubeadm's default, so the order (not the set) changes.
    let files = edited("kube-apiserver.yaml", |t| {
        t.replace(
            "--enable-admission-plugins=NodeRestriction",
            "--enable-admission-plugins=NamespaceLifecycle,NodeRestriction,LimitRanger",
        )
    });
    let i = ok(&files);
    assert_eq!(
        lossy_of(&i, Component::ApiServer),
        vec![Change::FlagChanged {
            name: "enable-admission-plugins".into(),
            from: vec![
                "--enable-admission-plugins=NamespaceLifecycle,NodeRestriction,LimitRanger".into()
            ],
            to: vec![
                "--enable-admission-plugins=NodeRestriction,NamespaceLifecycle,LimitRanger".into()
            ],
        }]
    );
    // With kubeadm's default first it is exact.
    let files = edited("kube-apiserver.yaml", |t| {
        t.replace(
            "--enable-admission-plugins=NodeRestriction",
            "--enable-admission-plugins=NodeRestriction,NamespaceLifecycle",
        )
    });
    assert!(ok(&files).is_exact());
}

#[test]
fn a_bare_boolean_flag_is_kept_and_its_rewrite_reported() {
    let files = edited("kube-scheduler.yaml", |t| {
        t.replace(
            "    - --leader-elect=true\n",
            "    - --leader-elect=true\n    - --profiling\n",
        )
    });
    let i = ok(&files);
    assert_eq!(
        extra_args(&i, Component::Scheduler),
        vec![arg("profiling", "true")]
    );
    assert_eq!(
        lossy_of(&i, Component::Scheduler),
        vec![Change::FlagChanged {
            name: "profiling".into(),
            from: vec!["--profiling".into()],
            to: vec!["--profiling=true".into()],
        }]
    );
}

#[test]
fn unknown_and_removed_flags_are_kept_and_validation_says_why() {
    let files = edited("kube-scheduler.yaml", |t| {
        t.replace(
            "    - --leader-elect=true\n",
            "    - --leader-elect=true\n    - --no-such-flag=1\n",
        )
    });
    let i = ok(&files);
    assert!(i.is_exact());
    assert_eq!(
        extra_args(&i, Component::Scheduler),
        vec![arg("no-such-flag", "1")]
    );
    assert!(!i.report.is_ok());
    assert!(
        i.report
            .error_messages()
            .iter()
            .any(|m| m.contains("--no-such-flag")),
        "{:?}",
        i.report
    );
}

#[test]
fn first_class_fields_come_from_the_flags() {
    let files = edited("kube-apiserver.yaml", |t| {
        t.replace("--secure-port=6443", "--secure-port=7443")
            .replace("containerPort: 6443", "containerPort: 7443")
            .replace("10.0.0.11:6443", "10.0.0.11:7443")
            .replace("svc.cluster.local", "svc.corp.example")
            .replace("10.96.0.0/12", "10.100.0.0/16")
            .replace(
                "registry.k8s.io/kube-apiserver",
                "registry.example.com:5000/k8s/kube-apiserver",
            )
            .replace("imagePullPolicy: IfNotPresent", "imagePullPolicy: Always")
            .replace(
                "    - --service-cluster-ip-range",
                "    - --service-node-port-range=30000-31000\n    - --service-cluster-ip-range",
            )
    });
    let files: Vec<ManifestFile> = files
        .into_iter()
        .map(|f| {
            let t = std::str::from_utf8(&f.content)
                .unwrap()
                .replace("registry.k8s.io/", "registry.example.com:5000/k8s/");
            file(
                &f.name,
                &t.replace("imagePullPolicy: IfNotPresent", "imagePullPolicy: Always"),
            )
        })
        .collect();
    let i = ok(&files);
    assert!(i.is_exact(), "{:?}", i.lossy);
    assert!(i.report.is_ok(), "{:?}", i.report);
    let spec = &i.config.spec;
    assert_eq!(spec.api_server.as_ref().unwrap().secure_port, Some(7443));
    let net = spec.networking.as_ref().unwrap();
    assert_eq!(net.dns_domain.as_deref(), Some("corp.example"));
    assert_eq!(net.service_subnet.as_deref(), Some("10.100.0.0/16"));
    assert_eq!(net.service_node_port_range.as_deref(), Some("30000-31000"));
    assert_eq!(
        spec.image_repository.as_deref(),
        Some("registry.example.com:5000/k8s")
    );
    assert_eq!(spec.image_pull_policy, Some(PullPolicy::Always));
    assert!(extra_args(&i, Component::ApiServer).is_empty());
}

#[test]
fn etcd_flags_other_than_the_local_default_become_external_etcd() {
    let files = edited("kube-apiserver.yaml", |t| {
        t.replace(
            "--etcd-cafile=/etc/kubernetes/pki/etcd/ca.crt",
            "--etcd-cafile=/etc/etcd/ca.crt",
        )
    });
    let i = ok(&files);
    let ext = i
        .config
        .spec
        .etcd
        .as_ref()
        .unwrap()
        .external
        .clone()
        .unwrap();
    assert_eq!(ext.endpoints, vec!["https://127.0.0.1:2379".into()]);
    assert_eq!(ext.ca_file.as_deref(), Some("/etc/etcd/ca.crt"));
    assert!(extra_args(&i, Component::ApiServer).is_empty());
    // The renderer mounts the CA's directory, as kubeadm does for external etcd; this
    // manifest lacks that volume (its kube-apiserver could not read the file).
    assert_eq!(
        lossy_of(&i, Component::ApiServer),
        vec![Change::VolumeAdded {
            name: "etcd-certs-0".into(),
            to: "hostPath /etc/etcd (DirectoryOrCreate) at /etc/etcd read-only".into()
        }]
    );
    // With the volume kubeadm would write, it is exact.
    let files = edited("kube-apiserver.yaml", |t| {
        t.replace(
            "--etcd-cafile=/etc/kubernetes/pki/etcd/ca.crt",
            "--etcd-cafile=/etc/etcd/ca.crt",
        )
        .replace(
            "    - mountPath: /etc/kubernetes/pki\n",
            "    - mountPath: /etc/etcd\n      name: etcd-certs-0\n      readOnly: true\n    - mountPath: /etc/kubernetes/pki\n",
        )
        .replace(
            "  - hostPath:\n      path: /etc/kubernetes/pki\n",
            "  - hostPath:\n      path: /etc/etcd\n      type: DirectoryOrCreate\n    name: etcd-certs-0\n  - hostPath:\n      path: /etc/kubernetes/pki\n",
        )
    });
    let i = ok(&files);
    assert!(i.is_exact(), "{:?}", i.lossy);
    assert!(
        render::settings(&i.config.spec, Component::ApiServer)
            .extra_volumes
            .is_empty()
    );
}

#[test]
fn a_default_volume_at_another_path_is_an_extra_volume_of_the_same_name() {
    let files = edited("kube-controller-manager.yaml", |t| {
        t.replace(
            "      path: /etc/ssl/certs\n",
            "      path: /etc/pki/tls/certs\n",
        )
    });
    let i = ok(&files);
    assert!(i.is_exact(), "{:?}", i.lossy);
    let v = &render::settings(&i.config.spec, Component::ControllerManager).extra_volumes;
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].name, "ca-certs");
    assert_eq!(v[0].host_path, "/etc/pki/tls/certs");
    assert_eq!(v[0].mount_path, "/etc/ssl/certs");
    assert_eq!(v[0].read_only, Some(true));
    // Host CA directories are node facts, not volumes of the spec.
    assert!(
        render::settings(&i.config.spec, Component::ApiServer)
            .extra_volumes
            .is_empty()
    );
    assert_eq!(i.node.host_ca_directories.len(), 3);
}

#[test]
fn a_host_ca_directory_on_the_scheduler_is_an_extra_volume() {
    let files = edited("kube-scheduler.yaml", |t| {
        t.replace(
            "    volumeMounts:\n",
            "    volumeMounts:\n    - mountPath: /etc/ca-certificates\n      name: etc-ca-certificates\n      readOnly: true\n",
        )
        .replace(
            "  volumes:\n",
            "  volumes:\n  - hostPath:\n      path: /etc/ca-certificates\n      type: DirectoryOrCreate\n    name: etc-ca-certificates\n",
        )
    });
    let i = ok(&files);
    assert!(i.is_exact(), "{:?}", i.lossy);
    let v = &render::settings(&i.config.spec, Component::Scheduler).extra_volumes;
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].name, "etc-ca-certificates");
}

#[test]
fn env_resources_and_probe_timing_are_imported() {
    let files = edited("kube-scheduler.yaml", |t| {
        t.replace(
            "    image: registry.k8s.io",
            "    env:\n    - name: GOGC\n      value: \"50\"\n    image: registry.k8s.io",
        )
        .replace(
            "        cpu: 100m\n",
            "        cpu: 300m\n      limits:\n        memory: 1Gi\n",
        )
        .replace("      periodSeconds: 1\n", "      periodSeconds: 3\n")
    });
    let i = ok(&files);
    assert!(i.is_exact(), "{:?}", i.lossy);
    let s = render::settings(&i.config.spec, Component::Scheduler);
    assert_eq!(s.extra_env.len(), 1);
    let r = s.resources.unwrap();
    assert_eq!(r.requests.get("cpu").map(String::as_str), Some("300m"));
    assert_eq!(r.limits.get("memory").map(String::as_str), Some("1Gi"));
    let p = s.probes.unwrap();
    assert_eq!(p.readiness.unwrap().period_seconds, Some(3));
    assert!(p.liveness.is_none() && p.startup.is_none());
}

#[test]
fn what_kubeplane_cannot_express_is_listed_not_dropped() {
    // A probe without initialDelaySeconds where kubeadm sets 10, a label and a second
    // annotation kubeplane does not write.
    let files = edited("kube-scheduler.yaml", |t| {
        let t = t.replacen("      initialDelaySeconds: 10\n", "", 1);
        t.replace(
            "    tier: control-plane\n",
            "    tier: control-plane\n    team: infra\n",
        )
    });
    let i = ok(&files);
    let got: Vec<String> = lossy_of(&i, Component::Scheduler)
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(
        got,
        vec![
            "metadata.labels.team: infra -> (none)",
            "spec.containers[0].livenessProbe.initialDelaySeconds: (none) -> 10",
        ]
    );
}

#[test]
fn any_subset_of_components_imports_and_the_rest_is_unmanaged() {
    let i = import(&ImportInput {
        files: &[file("kube-scheduler.yaml", SCHED)],
        node_name: None,
        ..Default::default()
    })
    .unwrap();
    assert!(i.is_exact(), "{:?}", i.lossy);
    assert!(i.report.is_ok(), "{:?}", i.report);
    let spec = &i.config.spec;
    assert!(!render::is_managed(spec, Component::ApiServer));
    assert!(!render::is_managed(spec, Component::ControllerManager));
    assert!(render::is_managed(spec, Component::Scheduler));
    assert!(spec.nodes.is_empty());
    assert_eq!(
        i.notes
            .iter()
            .filter(|n| n.contains("managed: false"))
            .count(),
        2
    );
}

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

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn arbitrary_files_never_panic(
            texts in proptest::collection::vec(".{0,300}", 1..4),
            names in proptest::collection::vec("[a-z.-]{1,12}", 4),
        ) {
            let files: Vec<ManifestFile> = texts
                .iter()
                .zip(&names)
                .map(|(t, n)| file(n, t))
                .collect();
            let _ = run(&files);
        }

        #[test]
        fn arbitrary_command_lines_never_panic_and_exact_means_reproduced(
            words in proptest::collection::vec(
                prop_oneof![
                    "--[a-z-]{1,12}=[a-zA-Z0-9/.,:=-]{0,12}",
                    "--[a-z-]{1,12}",
                    "[a-zA-Z0-9/.=-]{0,8}",
                    Just("--".to_string()),
                ],
                0..8,
            )
        ) {
            let mut list = String::new();
            for w in &words {
                list.push_str(&format!("    - {}\n", serde_json::to_string(w).unwrap()));
            }
            let text = SCHED.replace("    - --leader-elect=true\n", &format!("    - --leader-elect=true\n{list}"));
            let files = [file("kube-scheduler.yaml", &text)];
            if let Ok(i) = run(&files) && i.is_exact() {
                let node = i.node.clone();
                let r = render::render(&RenderInput { spec: &i.config.spec, node: &node, encryption_config_sha256: None }).unwrap();
                let Parsed::Pod(disk) = parse_pod(&text).unwrap() else { panic!() };
                prop_assert!(equivalent(&disk, &r.pods[0].pod));
            }
        }

        #[test]
        fn extra_scheduler_flags_in_any_order_import_exactly(
            picked in proptest::sample::subsequence(
                vec![
                    ("v", "4"),
                    ("profiling", "false"),
                    ("leader-elect-lease-duration", "30s"),
                    ("leader-elect-renew-deadline", "20s"),
                    ("kube-api-qps", "100"),
                    ("feature-gates", "A=true,B=false"),
                ],
                0..6,
            ),
            shuffle_seed in any::<u64>(),
        ) {
            let mut picked = picked;
            // A deterministic shuffle from the seed.
            let n = picked.len();
            for k in 0..n {
                let j = (shuffle_seed.rotate_left(k as u32) as usize) % n;
                picked.swap(k, j);
            }
            let list: String = picked.iter().map(|(n, v)| format!("    - --{n}={v}\n")).collect();
            let text = SCHED.replace("    - --bind-address=127.0.0.1\n", &format!("{list}    - --bind-address=127.0.0.1\n"));
            let i = run(&[file("kube-scheduler.yaml", &text)]).unwrap();
            prop_assert!(i.is_exact(), "{:?}", i.lossy);
            let got = extra_args(&i, Component::Scheduler);
            let want: Vec<(String, String)> = picked.iter().map(|(n, v)| arg(n, v)).collect();
            prop_assert_eq!(got, want);
        }
    }
}
