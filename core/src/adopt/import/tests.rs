use super::*;
use crate::adopt::diff::Change;
use crate::adopt::manifest::{Parsed, parse_pod};
use crate::api::FlagName;

mod errors;
mod properties;

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
