//! Import of the two hard-way fixtures (tests/fixtures/hard-way/) and every error path.

use super::*;
use crate::adopt::unit::parse_unit;

const API_UNIT: &str =
    include_str!("../../../tests/fixtures/hard-way/seed-001-apiserver/kube-apiserver.service");
const KCM_UNIT: &str = include_str!(
    "../../../tests/fixtures/hard-way/seed-000-controller-manager/kube-controller-manager.service"
);
const KCM_CONF: &str = include_str!(
    "../../../tests/fixtures/hard-way/seed-000-controller-manager/kube-controller-manager.conf"
);
const API_PATH: &str = "/etc/systemd/system/kube-apiserver.service";
const KCM_PATH: &str = "/etc/systemd/system/kube-controller-manager.service";

fn env_files() -> EnvFiles {
    EnvFiles::from([
        ("/etc/k8s/kubernetes/kube-apiserver".to_string(), None),
        (
            "/etc/kubernetes/config/kube-controller-manager.conf".to_string(),
            Some(KCM_CONF.to_string()),
        ),
    ])
}

fn run(
    units: &[(&str, &str)],
    env: &EnvFiles,
    node: Option<&str>,
) -> Result<HardWayImport, HardWayError> {
    let units: Vec<Unit> = units.iter().map(|(p, t)| parse_unit(p, t, &[])).collect();
    import_units(&HardWayInput {
        units: &units,
        env_files: env,
        kubeconfigs: &BTreeMap::new(),
        key_files: &BTreeMap::new(),
        node_name: node,
        advertise_address: None,
        kubernetes_version: "v1.36.2",
        config_name: None,
    })
}

fn names(flags: &[FlagReport], pred: impl Fn(&Fate) -> bool) -> Vec<String> {
    let mut v: Vec<String> = flags
        .iter()
        .filter(|f| pred(&f.fate))
        .map(|f| f.name.clone())
        .collect();
    v.sort();
    v
}

fn errors(i: &HardWayImport) -> Vec<String> {
    i.findings
        .iter()
        .filter(|f| f.is_error())
        .map(|f| f.to_string())
        .collect()
}

#[test]
fn apiserver_fixture() {
    let i = run(&[(API_PATH, API_UNIT)], &env_files(), Some("node-22")).unwrap();
    assert!(i.report.is_ok(), "{:?}", i.report);
    assert_eq!(i.flags.len(), 56);
    assert_eq!(
        names(&i.flags, |f| matches!(f, Fate::Dropped { .. })),
        [
            "alsologtostderr",
            "enable-swagger-ui",
            "insecure-bind-address",
            "insecure-port",
            "kubelet-https",
            "log-dir",
            "logtostderr"
        ]
    );
    assert!(names(&i.flags, |f| matches!(f, Fate::Refused | Fate::Overridden)).is_empty());
    assert_eq!(
        names(&i.flags, |f| matches!(f, Fate::PerNode { .. })),
        ["advertise-address"]
    );
    let spec = &i.config.spec;
    assert_eq!(spec.nodes[0].name, "node-22");
    assert_eq!(
        spec.nodes[0].advertise_address.as_deref(),
        Some("10.10.10.22")
    );
    assert_eq!(spec.certificates_dir.as_deref(), Some("/etc/k8s/ssl"));
    let etcd = spec.etcd.as_ref().unwrap().external.as_ref().unwrap();
    assert_eq!(etcd.endpoints.len(), 3);
    // The insecure port's impact names the address the clients used.
    let insecure = i.flags.iter().find(|f| f.name == "insecure-port").unwrap();
    assert!(
        insecure
            .fate
            .to_string()
            .contains("http://10.10.10.22:8080"),
        "{}",
        insecure.fate
    );
    let logdir = i.flags.iter().find(|f| f.name == "log-dir").unwrap();
    assert!(
        logdir.fate.to_string().contains("/var/log/pods"),
        "{}",
        logdir.fate
    );
    assert_eq!(insecure.origin.line, 14);
    // The service-account key is the CA certificate: an error with the fix.
    let errs = errors(&i);
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0].contains("kube-apiserver.service:32") && errs[0].contains("fix:"),
        "{}",
        errs[0]
    );
    // Anonymous requests off: kubelet's probes would fail.
    assert!(
        errs[1].contains("kube-apiserver.service:18") && errs[1].contains("401"),
        "{}",
        errs[1]
    );
    // The audit policy stays a host file, with a hint on handing it to kubeplane.
    assert!(
        i.findings
            .iter()
            .any(|f| f.note && f.message.contains("audit policy"))
    );
    // The required signing key is added, the private half of ca.pem.
    let added: Vec<(&str, &str)> = i
        .added
        .iter()
        .map(|a| (a.name.as_str(), a.value.as_str()))
        .collect();
    assert!(
        added.contains(&(
            "service-account-signing-key-file",
            "/etc/k8s/ssl/ca-key.pem"
        )),
        "{added:?}"
    );
    assert!(added.iter().any(|(n, _)| *n == "service-account-issuer"));
    assert!(
        added
            .iter()
            .any(|(n, _)| *n == "kubelet-preferred-address-types")
    );
    assert_eq!(added.len(), 3, "{added:?}");
    // Protected flags kept in extraArgs are allowed.
    let api = spec.api_server.as_ref().unwrap();
    for a in &api.extra_args {
        if crate::flags::policy::is_protected(Component::ApiServer, &a.name) {
            assert!(
                api.allow_protected_overrides.iter().any(|p| p.0 == a.name),
                "{}",
                a.name
            );
        }
    }
    assert!(
        api.extra_args
            .iter()
            .any(|a| a.name == "requestheader-allowed-names" && a.value.is_empty())
    );
    // Mounts: the audit log directory read-write, the token file and audit policy read-only.
    let rw: Vec<&str> = i
        .mounts
        .iter()
        .filter(|m| !m.read_only)
        .map(|m| m.path.as_str())
        .collect();
    assert_eq!(rw, ["/data/apps/k8s/kubernetes/logs/kube-apiserver"]);
    let ro = i
        .mounts
        .iter()
        .find(|m| m.path == "/etc/k8s/kubernetes")
        .unwrap();
    assert!(ro.read_only && !ro.default);
    assert!(
        ro.flags.contains(&"token-auth-file".to_string())
            && ro.flags.contains(&"audit-policy-file".to_string())
    );
    // The missing optional environment file is a note, the rest of the unit too.
    assert!(
        i.findings
            .iter()
            .any(|f| f.note && f.message.contains("/etc/k8s/kubernetes/kube-apiserver"))
    );
    assert!(
        i.findings
            .iter()
            .any(|f| f.note && f.message.contains("user k8s"))
    );
    // Only kube-apiserver is managed.
    assert_eq!(
        spec.controller_manager.as_ref().unwrap().managed,
        Some(false)
    );
}

#[test]
fn controller_manager_fixture() {
    let i = run(&[(KCM_PATH, KCM_UNIT)], &env_files(), None).unwrap();
    assert!(i.report.is_ok(), "{:?}", i.report);
    assert_eq!(i.flags.len(), 28);
    assert_eq!(
        names(&i.flags, |f| matches!(f, Fate::Dropped { .. })),
        [
            "address",
            "deployment-controller-sync-period",
            "pod-eviction-timeout",
            "port"
        ]
    );
    assert_eq!(
        names(&i.flags, |f| matches!(f, Fate::Replaced { .. })),
        ["experimental-cluster-signing-duration"]
    );
    let kcm = i.config.spec.controller_manager.as_ref().unwrap();
    assert!(
        kcm.extra_args
            .iter()
            .any(|a| a.name == "cluster-signing-duration" && a.value == "87600h0m0s")
    );
    assert_eq!(
        kcm.kubeconfig.as_deref(),
        Some("/etc/kubernetes/config/kube-controller-manager.kubeconfig")
    );
    assert_eq!(
        names(
            &i.flags,
            |f| matches!(f, Fate::Field { field } if field == "spec.controllerManager.kubeconfig")
        ),
        [
            "authentication-kubeconfig",
            "authorization-kubeconfig",
            "kubeconfig"
        ]
    );
    // Flags come from the environment file, with its lines.
    let port = i.flags.iter().find(|f| f.name == "port").unwrap();
    assert_eq!(
        port.origin.file,
        "/etc/kubernetes/config/kube-controller-manager.conf"
    );
    assert_eq!(port.origin.line, 23);
    // Each continuation line's no-break spaces form a word of their own: a warning each.
    let nbsp = i
        .findings
        .iter()
        .filter(|f| f.message.contains("U+00A0"))
        .count();
    assert_eq!(nbsp, 27);
    // The three undefined variables.
    let undefined = i
        .findings
        .iter()
        .filter(|f| f.message.contains("expands it to nothing"))
        .count();
    assert_eq!(undefined, 3);
    // Tokens signed with the CA key: an error naming the file and line.
    let errs = errors(&i);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("kube-controller-manager.conf:32"),
        "{}",
        errs[0]
    );
    assert!(i.added.is_empty(), "{:?}", i.added);
    assert_eq!(i.config.metadata.name.as_deref(), Some("kubernetes"));
}

#[test]
fn both_units_together_share_the_signing_key() {
    let i = run(
        &[(KCM_PATH, KCM_UNIT), (API_PATH, API_UNIT)],
        &env_files(),
        Some("node-22"),
    )
    .unwrap();
    assert_eq!(i.sources[0].component, Component::ApiServer);
    let signing = i
        .added
        .iter()
        .find(|a| a.name == "service-account-signing-key-file")
        .unwrap();
    assert_eq!(signing.value, "/etc/kubernetes/ssl/ca-key.pem");
}

fn one(unit: &str) -> Result<HardWayImport, HardWayError> {
    run(&[("/u/x.service", unit)], &EnvFiles::new(), Some("n"))
}

fn sched(args: &str) -> HardWayImport {
    one(&format!(
        "[Service]\nExecStart=/usr/bin/kube-scheduler --kubeconfig=/etc/k/s.kubeconfig {args}\n"
    ))
    .unwrap()
}

#[test]
fn refused_units() {
    let e = one("[Service]\nExecStart=/usr/bin/etcd --name=x\n").unwrap_err();
    assert!(matches!(e, HardWayError::NotAComponent { .. }), "{e}");
    assert!(e.to_string().contains("/u/x.service:2"), "{e}");
    let s = "[Service]\nExecStart=/usr/bin/kube-scheduler\n";
    let e = run(
        &[("/a.service", s), ("/b.service", s)],
        &EnvFiles::new(),
        None,
    )
    .unwrap_err();
    assert!(matches!(e, HardWayError::Duplicate { .. }), "{e}");
    let a = "[Service]\nExecStart=/usr/bin/kube-apiserver --advertise-address=10.0.0.1\n";
    let e = run(&[("/a.service", a)], &EnvFiles::new(), None).unwrap_err();
    assert!(matches!(e, HardWayError::NoNodeName(_)), "{e}");
    let e = one("[Service]\nExecStart=/usr/bin/kube-apiserver --v=2\n").unwrap_err();
    assert!(matches!(e, HardWayError::NoAdvertiseAddress(_)), "{e}");
    assert!(matches!(
        run(&[], &EnvFiles::new(), None),
        Err(HardWayError::NoUnits)
    ));
    let e = one("[Service]\nExecStart=/x \\q\n").unwrap_err();
    assert!(matches!(e, HardWayError::Unit(_)), "{e}");
    let units = [parse_unit(
        "/s",
        "[Service]\nExecStart=/usr/bin/kube-scheduler\n",
        &[],
    )];
    let e = import_units(&HardWayInput {
        units: &units,
        env_files: &EnvFiles::new(),
        kubeconfigs: &BTreeMap::new(),
        key_files: &BTreeMap::new(),
        node_name: None,
        advertise_address: None,
        kubernetes_version: "v1.20.0",
        config_name: None,
    })
    .unwrap_err();
    assert!(matches!(e, HardWayError::Version(_)), "{e}");
}

#[test]
fn hyperkube_and_short_names() {
    let i = one("[Service]\nExecStart=/opt/hyperkube scheduler --kubeconfig=/k/s.conf\n").unwrap();
    assert_eq!(i.sources[0].component, Component::Scheduler);
    assert_eq!(i.flags.len(), 1);
}

#[test]
fn wrong_flags_and_values_are_errors_and_left_out() {
    let cases: &[(&str, &str)] = &[
        ("--no-such-flag=1", "not a flag of kube-scheduler"),
        ("--profiling=maybe", "a boolean"),
        ("-x", "single-dash"),
        ("stray", "not a flag"),
        (
            "--feature-gates=TaintBasedEvictions=true",
            "TaintBasedEvictions",
        ),
        ("--feature-gates=lower=true", "not a feature gate name"),
        ("--master=http://127.0.0.1:8080", "insecure HTTP port"),
        ("--config", "needs a value"),
    ];
    for (arg, want) in cases {
        let i = sched(arg);
        let errs = errors(&i);
        assert_eq!(errs.len(), 1, "{arg}: {errs:?}");
        assert!(errs[0].contains(want), "{arg}: {}", errs[0]);
        assert!(errs[0].contains("/u/x.service:2"), "{arg}: {}", errs[0]);
        assert!(i.report.is_ok(), "{arg}: {:?}", i.report);
    }
    // A flag newer than the target version.
    let units = [parse_unit(
        "/s",
        "[Service]\nExecStart=/usr/bin/kube-scheduler --tls-curve-preferences=X25519\n",
        &[],
    )];
    let i = import_units(&HardWayInput {
        units: &units,
        env_files: &EnvFiles::new(),
        kubeconfigs: &BTreeMap::new(),
        key_files: &BTreeMap::new(),
        node_name: None,
        advertise_address: None,
        kubernetes_version: "v1.35.0",
        config_name: None,
    })
    .unwrap();
    assert!(errors(&i)[0].contains("from 1.36"), "{:?}", errors(&i));
}

#[test]
fn admission_plugin_lists() {
    let i = one(
        "[Service]\nExecStart=/usr/bin/kube-apiserver --advertise-address=10.0.0.1 --enable-admission-plugins=NodeRestriction,PodSecurityPolicy,,bad-name,LimitRanger\n",
    )
    .unwrap();
    let errs: Vec<String> = errors(&i)
        .into_iter()
        .filter(|e| e.contains("--enable-admission-plugins"))
        .collect();
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(
        errs.iter()
            .any(|e| e.contains("PodSecurityPolicy") && e.contains("Pod Security Admission"))
    );
    let api = i.config.spec.api_server.as_ref().unwrap();
    let plugins = api
        .extra_args
        .iter()
        .find(|a| a.name == "enable-admission-plugins")
        .unwrap();
    assert_eq!(plugins.value, "NodeRestriction,LimitRanger");
}

#[test]
fn repeated_flags_bare_booleans_separate_values_and_relative_paths() {
    let i = one(
        "[Service]\nWorkingDirectory=/var/lib/sched\nExecStart=/usr/bin/kube-scheduler --v=1 -v 3 --profiling --kubeconfig sched.conf --leader-elect false\n",
    )
    .unwrap();
    let v: Vec<&Fate> = i
        .flags
        .iter()
        .filter(|f| f.name == "v")
        .map(|f| &f.fate)
        .collect();
    assert_eq!(v[0], &Fate::Overridden);
    let s = i.config.spec.scheduler.as_ref().unwrap();
    assert_eq!(s.kubeconfig.as_deref(), Some("/var/lib/sched/sched.conf"));
    assert!(
        s.extra_args
            .iter()
            .any(|a| a.name == "profiling" && a.value == "true")
    );
    assert!(s.extra_args.iter().any(|a| a.name == "v" && a.value == "3"));
    // `--leader-elect false`: a bare boolean, then a stray word.
    assert!(
        errors(&i)
            .iter()
            .any(|e| e.contains("\"false\" is not a flag")),
        "{:?}",
        errors(&i)
    );
}

#[test]
fn unconsumed_variables_become_extra_env_and_deprecated_flags_warn() {
    let i = one(
        "[Service]\nEnvironment=HTTPS_PROXY=http://proxy:3128 ARGS=--v=2\nExecStart=/usr/bin/kube-scheduler --kubeconfig=/k/s $ARGS --port=0\n",
    )
    .unwrap();
    let s = i.config.spec.scheduler.as_ref().unwrap();
    assert_eq!(s.extra_env.len(), 1);
    assert_eq!(s.extra_env[0].name, "HTTPS_PROXY");
    let port = i.flags.iter().find(|f| f.name == "port").unwrap();
    assert!(matches!(port.fate, Fate::Dropped { .. }));
}

#[test]
fn a_relative_working_directory_flag_value_and_hostile_input_do_not_panic() {
    for text in [
        "[Service]\nExecStart=/usr/bin/kube-scheduler --\n",
        "[Service]\nExecStart=/usr/bin/kube-scheduler -- a b\n",
        "[Service]\nExecStart=/usr/bin/kube-scheduler --=x -- -\n",
        "[Service]\nExecStart=/usr/bin/kube-scheduler -v\n",
        "[Service]\nExecStart=/usr/bin/kube-scheduler -\n",
        "[Service]\nExecStart=/usr/bin/kube-scheduler --kubeconfig=\n",
        "[Service]\nExecStart=/usr/bin/kube-scheduler ${X} --feature-gates=\n",
        "[Service]\nExecStart=/usr/bin/hyperkube\n",
        "[Service]\nExecStart=/usr/bin/kube-apiserver --advertise-address=::1 --service-account-key-file=/x/weird\n",
    ] {
        let _ = one(text);
    }
}

#[test]
fn files_a_kubeconfig_names_are_mounted_and_an_insecure_server_is_an_error() {
    let units = [parse_unit(
        "/u/s.service",
        "[Service]\nExecStart=/usr/bin/kube-scheduler --kubeconfig=/etc/k/s.kubeconfig\n",
        &[],
    )];
    let kubeconfig = "apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster:\n    certificate-authority: /etc/pki/k8s/ca.pem\n    server: http://127.0.0.1:8080\nusers:\n- name: s\n  user:\n    client-certificate: certs/s.pem\n    client-key: certs/s-key.pem\n";
    let kubeconfigs = BTreeMap::from([("/etc/k/s.kubeconfig".to_string(), kubeconfig.to_string())]);
    let i = import_units(&HardWayInput {
        units: &units,
        env_files: &EnvFiles::new(),
        kubeconfigs: &kubeconfigs,
        key_files: &BTreeMap::new(),
        node_name: None,
        advertise_address: None,
        kubernetes_version: "v1.36.2",
        config_name: None,
    })
    .unwrap();
    let paths: Vec<(&str, bool)> = i
        .mounts
        .iter()
        .map(|m| (m.path.as_str(), m.read_only))
        .collect();
    assert!(paths.contains(&("/etc/pki/k8s", true)), "{paths:?}");
    assert!(paths.contains(&("/etc/k/certs", true)), "{paths:?}");
    assert!(i.report.is_ok(), "{:?}", i.report);
    let errs = errors(&i);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("http://127.0.0.1:8080"), "{}", errs[0]);
    assert_eq!(kubeconfig_refs("/x", "not: [yaml").0.len(), 0);
}

proptest::proptest! {
    #[test]
    fn no_command_line_makes_the_import_panic(
        args in proptest::collection::vec("(--?[a-z-]{0,20}(=[ -~]{0,12})?|[ -~\u{a0}]{0,8})", 0..8),
        exe in "(kube-apiserver|kube-controller-manager|kube-scheduler|hyperkube|etcd)",
    ) {
        let quoted: Vec<String> = args.iter().map(|a| format!("'{}'", a.replace('\'', ""))).collect();
        let text = format!("[Service]\nExecStart=/usr/bin/{exe} --advertise-address=10.0.0.1 {}\n", quoted.join(" "));
        let _ = one(&text);
    }
}

#[test]
fn a_service_account_key_that_is_a_ca_certificate_under_any_name_is_an_error() {
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let ca = params.self_signed(&key).unwrap().pem();
    let leaf = rcgen::CertificateParams::new(vec!["x".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap()
        .pem();
    assert!(is_ca_certificate(ca.as_bytes()));
    assert!(!is_ca_certificate(leaf.as_bytes()));
    assert!(!is_ca_certificate(b"not pem"));
    let text = "[Service]\nExecStart=/usr/bin/kube-apiserver --advertise-address=10.0.0.1 --service-account-key-file=/k/sa.pem,/k/other.pem --service-account-signing-key-file=/k/sa-key.pem\n";
    let units = [parse_unit("/u/a.service", text, &[])];
    let keys = BTreeMap::from([
        ("/k/sa.pem".to_string(), ca.into_bytes()),
        ("/k/other.pem".to_string(), leaf.into_bytes()),
    ]);
    let i = import_units(&HardWayInput {
        units: &units,
        env_files: &EnvFiles::new(),
        kubeconfigs: &BTreeMap::new(),
        key_files: &keys,
        node_name: Some("n"),
        advertise_address: None,
        kubernetes_version: "v1.36.2",
        config_name: None,
    })
    .unwrap();
    let errs = errors(&i);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("/k/sa.pem is a CA certificate") && errs[0].contains("/u/a.service:2"),
        "{}",
        errs[0]
    );
}
