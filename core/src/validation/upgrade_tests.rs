use super::*;
use crate::api::{ApiServer, Arg, ControllerManager, Scheduler, UpgradePolicy};
use crate::validation::Severity;

fn v(s: &str) -> KubeVersion {
    KubeVersion::parse_any(s).unwrap()
}

fn spec(version: &str) -> ControlPlaneConfigSpec {
    ControlPlaneConfigSpec {
        kubernetes_version: version.into(),
        ..Default::default()
    }
}

fn with_api_args(version: &str, args: &[(&str, &str)]) -> ControlPlaneConfigSpec {
    let mut s = spec(version);
    s.api_server = Some(ApiServer {
        extra_args: args.iter().map(|(n, v)| Arg::new(*n, *v)).collect(),
        ..Default::default()
    });
    s
}

fn errors(ps: &[Problem]) -> Vec<&Problem> {
    ps.iter()
        .filter(|p| p.severity == Severity::Error)
        .collect()
}

#[test]
fn one_minor_forward_and_any_patch_pass() {
    for (old, new) in [
        ("v1.35.4", "v1.36.0"),
        ("v1.36.0", "v1.36.9"),
        ("v1.36.9", "v1.36.1"),
        ("1.36.2", "v1.36.2"),
        ("v1.32.9", "v1.33.0"),
        ("v1.36.0-rc.1", "v1.36.0"),
    ] {
        assert!(check_change(old, new, false).is_empty(), "{old} -> {new}");
    }
}

#[test]
fn skipping_a_minor_names_both_versions_and_the_fix() {
    let ps = check_change("v1.34.2", "v1.36.0", false);
    assert_eq!(ps.len(), 1);
    let p = &ps[0];
    assert!(p.is_error());
    assert_eq!(p.field, "spec.kubernetesVersion");
    assert!(
        p.message.contains("v1.34.2 → v1.36.0 skips 1.35"),
        "{}",
        p.message
    );
    assert!(p.message.contains("version-skew-policy"));
    assert_eq!(
        p.fix.as_deref(),
        Some("go to v1.35.x first, then on to v1.36.0")
    );
    // Two skipped minors are both named; allowing downgrades does not allow skips.
    let ps = check_change("v1.33.0", "v1.36.0", true);
    assert!(
        ps[0].message.contains("skips 1.34, 1.35"),
        "{}",
        ps[0].message
    );
}

#[test]
fn minor_downgrade_needs_the_field_and_goes_one_minor_at_a_time() {
    let ps = check_change("v1.36.1", "v1.35.4", false);
    assert_eq!(ps.len(), 1);
    assert!(
        ps[0]
            .message
            .contains("v1.36.1 → v1.35.4 is a minor downgrade")
    );
    assert!(
        ps[0]
            .fix
            .as_ref()
            .unwrap()
            .contains("spec.upgrade.allowMinorDowngrade: true")
    );
    assert!(check_change("v1.36.1", "v1.35.4", true).is_empty());
    let ps = check_change("v1.36.1", "v1.34.0", true);
    assert_eq!(ps.len(), 1);
    assert!(ps[0].message.contains("goes back 2 minor versions"));
    assert_eq!(ps[0].fix.as_deref(), Some("go back to v1.35.x first"));
}

#[test]
fn unparsable_running_version_is_an_error_and_a_bad_target_is_left_to_validate() {
    let ps = check_change("latest", "v1.36.0", false);
    assert_eq!(ps.len(), 1);
    assert!(ps[0].message.contains("\"latest\""));
    assert!(check_change("v1.35.0", "banana", false).is_empty());
}

#[test]
fn fleet_judges_each_running_version_and_names_its_nodes() {
    let nodes = vec![
        ("cp-1".to_string(), "v1.35.2".to_string()),
        ("cp-2".to_string(), "v1.34.9".to_string()),
        ("cp-3".to_string(), "v1.34.9".to_string()),
    ];
    let ps = check_fleet(&nodes, "v1.36.0", false);
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert!(ps[0].message.starts_with("node(s) cp-2, cp-3 run v1.34.9"));
    assert!(check_fleet(&nodes[..1], "v1.36.0", false).is_empty());
    assert!(check_fleet(&[], "v1.36.0", false).is_empty());
}

#[test]
fn change_kinds() {
    assert_eq!(change_kind(&v("v1.35.0"), &v("v1.35.0")), ChangeKind::None);
    assert_eq!(change_kind(&v("v1.35.0"), &v("v1.35.1")), ChangeKind::Patch);
    assert_eq!(
        change_kind(&v("v1.35.0"), &v("v1.36.1")),
        ChangeKind::MinorUp
    );
    assert_eq!(
        change_kind(&v("v1.36.0"), &v("v1.35.1")),
        ChangeKind::MinorDown
    );
}

#[test]
fn allow_minor_downgrade_reads_the_spec() {
    let mut s = spec("v1.35.0");
    assert!(!allow_minor_downgrade(&s));
    s.upgrade = Some(UpgradePolicy {
        allow_minor_downgrade: Some(true),
    });
    assert!(allow_minor_downgrade(&s));
}

#[test]
fn locked_gate_set_against_its_lock_is_an_error_naming_version_and_fix() {
    // NodeSwap went GA and locked to true in 1.34.
    let s = with_api_args("v1.34.0", &[("feature-gates", "NodeSwap=false")]);
    let ps = check_target(&s, &v("v1.33.5"));
    let e = errors(&ps);
    assert_eq!(e.len(), 1, "{ps:?}");
    assert_eq!(e[0].field, "spec.apiServer.extraArgs[0]");
    assert_eq!(e[0].value.as_deref(), Some("NodeSwap=false"));
    assert!(
        e[0].message.contains("GA and locked to true in 1.34"),
        "{}",
        e[0].message
    );
    assert!(e[0].fix.as_ref().unwrap().contains("remove NodeSwap"));
    // Still beta in 1.33: no finding.
    let s = with_api_args("v1.33.5", &[("feature-gates", "NodeSwap=false")]);
    assert!(check_target(&s, &v("v1.32.0")).is_empty());
    // Set to its locked value: a warning, and the kube: prefix is understood.
    let s = with_api_args("v1.34.0", &[("feature-gates", "kube:NodeSwap=true")]);
    let ps = check_target(&s, &v("v1.33.5"));
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0].severity, Severity::Warning);
}

#[test]
fn removed_and_maybe_removed_gates() {
    let s = with_api_args(
        "v1.35.0",
        &[(
            "feature-gates",
            "LoadBalancerIPMode=false,MemoryManager=true",
        )],
    );
    let ps = check_target(&s, &v("v1.34.1"));
    let lb = ps
        .iter()
        .find(|p| p.message.contains("LoadBalancerIPMode"))
        .unwrap();
    assert!(lb.is_error());
    assert!(lb.message.contains("was removed in 1.35"));
    assert!(lb.fix.as_ref().unwrap().contains("always on"));
    // Asking for the value the release has anyway (GA, locked to true) is only a warning.
    let same = with_api_args("v1.35.0", &[("feature-gates", "LoadBalancerIPMode=true")]);
    let w = check_target(&same, &v("v1.34.1"));
    assert_eq!((w.len(), w[0].severity), (1, Severity::Warning), "{w:?}");
    let mm = ps
        .iter()
        .find(|p| p.message.contains("MemoryManager"))
        .unwrap();
    assert_eq!(mm.severity, Severity::Warning, "1.35: not established");
    let s = with_api_args("v1.36.0", &[("feature-gates", "MemoryManager=false")]);
    let ps = check_target(&s, &v("v1.35.1"));
    assert!(
        ps[0].is_error() && ps[0].message.contains("is gone by 1.36"),
        "{ps:?}"
    );
    // Gates the data does not know and other components' gates are not judged; bad values are
    // left to the flag checks.
    let s = with_api_args(
        "v1.36.0",
        &[(
            "feature-gates",
            "WatchList=true,wardle:TTLAfterFinished=true,TTLAfterFinished=maybe",
        )],
    );
    assert!(check_target(&s, &v("v1.35.1")).is_empty());
}

#[test]
fn deprecated_gate_warns_and_mixed_prefixes_are_refused_by_1_36() {
    let s = with_api_args("v1.36.0", &[("feature-gates", "KMSv1=true")]);
    let ps = check_target(&s, &v("v1.35.0"));
    assert_eq!(ps.len(), 1);
    assert!(ps[0].message.contains("deprecated in 1.36"));
    let s = with_api_args(
        "v1.36.0",
        &[("feature-gates", "kube:WatchList=true,AllAlpha=false")],
    );
    let ps = check_target(&s, &v("v1.35.0"));
    assert_eq!(errors(&ps).len(), 1);
    assert!(ps[0].message.contains("mix kube:Name and plain Name"));
    let s = with_api_args(
        "v1.35.0",
        &[("feature-gates", "kube:WatchList=true,AllAlpha=false")],
    );
    assert!(
        check_target(&s, &v("v1.34.0")).is_empty(),
        "only verified for 1.36"
    );
}

#[test]
fn gates_of_every_component_are_checked() {
    let mut s = spec("v1.34.0");
    s.controller_manager = Some(ControllerManager {
        extra_args: vec![Arg::new("feature-gates", "JobPodReplacementPolicy=false")],
        ..Default::default()
    });
    s.scheduler = Some(Scheduler {
        extra_args: vec![Arg::new("feature-gates", "SchedulerQueueingHints=false")],
        ..Default::default()
    });
    let ps = check_target(&s, &v("v1.33.0"));
    let fields: Vec<&str> = errors(&ps).iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.controllerManager.extraArgs[0]",
            "spec.scheduler.extraArgs[0]"
        ]
    );
}

#[test]
fn admission_plugins_removed_or_unknown() {
    let s = with_api_args(
        "v1.36.0",
        &[
            (
                "enable-admission-plugins",
                "NodeRestriction,PodSecurityPolicy",
            ),
            (
                "disable-admission-plugins",
                "SecurityContextDeny,PodPreset,NoSuchPlugin",
            ),
        ],
    );
    let ps = check_target(&s, &v("v1.35.0"));
    let e = errors(&ps);
    let named: Vec<&str> = e.iter().map(|p| p.value.as_deref().unwrap()).collect();
    assert_eq!(
        named,
        [
            "PodSecurityPolicy",
            "SecurityContextDeny",
            "PodPreset",
            "NoSuchPlugin"
        ]
    );
    assert!(e[0].message.contains("was removed in 1.25"));
    assert!(e[0].fix.as_ref().unwrap().contains("PodSecurity"));
    assert!(e[2].message.contains("is gone by 1.36"));
    assert!(
        e[3].message
            .contains("has no admission plugin NoSuchPlugin")
    );
    // Below 1.36 the data has no complete list: only known removals are reported.
    let s = with_api_args(
        "v1.35.0",
        &[("enable-admission-plugins", "NoSuchPlugin,NodeRestriction")],
    );
    assert!(check_target(&s, &v("v1.34.0")).is_empty());
}

#[test]
fn runtime_config_of_removed_apis() {
    let s = with_api_args(
        "v1.36.0",
        &[(
            "runtime-config",
            "flowcontrol.apiserver.k8s.io/v1beta3=true,batch/v1beta1/cronjobs=false,api/all=true,storage.k8s.io/v1beta1=true",
        )],
    );
    let ps = check_target(&s, &v("v1.35.0"));
    let e = errors(&ps);
    assert_eq!(e.len(), 2, "{ps:?}");
    assert!(
        e[0].message
            .contains("flowcontrol.apiserver.k8s.io/v1beta3 is not served since 1.32")
    );
    assert!(
        e[0].fix
            .as_ref()
            .unwrap()
            .contains("flowcontrol.apiserver.k8s.io/v1")
    );
    assert!(e[1].message.contains("batch/v1beta1"));
}

#[test]
fn flags_removed_or_not_yet_there_between_the_versions() {
    // --tls-curve-preferences exists since 1.36 (flag table): going back to 1.35 refuses it.
    let s = with_api_args("v1.35.0", &[("tls-curve-preferences", "29")]);
    let ps = check_target(&s, &v("v1.36.0"));
    let e = errors(&ps);
    assert_eq!(e.len(), 1, "{ps:?}");
    assert!(e[0].message.contains("only exists since 1.36"));
    assert_eq!(e[0].field, "spec.apiServer.extraArgs[0]");
    // Same minor: nothing between the versions to report.
    let s = with_api_args("v1.36.0", &[("tls-curve-preferences", "29")]);
    assert!(check_target(&s, &v("v1.36.2")).is_empty());
}

#[test]
fn the_default_render_passes_every_check() {
    for (from, to) in [
        ("v1.33.0", "v1.34.0"),
        ("v1.35.1", "v1.36.2"),
        ("v1.36.2", "v1.37.0"),
        ("v1.36.2", "v1.35.0"),
    ] {
        let ps = check_target(&spec(to), &v(from));
        assert!(ps.is_empty(), "{from} -> {to}: {ps:?}");
    }
    assert!(check_target(&spec("v1.99.0"), &v("v1.36.0")).is_empty());
}

#[test]
fn node_versions_come_from_the_manifests_images() {
    use crate::api::NodeFacts;
    let facts = NodeFacts {
        node_name: "cp-1".into(),
        advertise_address: Some("192.0.2.5".into()),
        ..Default::default()
    };
    let old = spec("v1.35.4");
    let r = render::render(&render::RenderInput {
        spec: &old,
        node: &facts,
        encryption_config_sha256: None,
    })
    .unwrap();
    let mut node = render::node_spec("prod", &old, "r1", &r);
    assert_eq!(node_versions(&node), ["v1.35.4"]);
    // Wave 1 of an upgrade: kube-apiserver newer than the rest.
    node.kubernetes_version = "v1.36.2".into();
    node.manifests[0].content = node.manifests[0]
        .content
        .replace("kube-apiserver:v1.35.4", "kube-apiserver:v1.36.2");
    assert_eq!(node_versions(&node), ["v1.35.4", "v1.36.2"]);
    // Going to 1.37 now would leave 1.35 controllers two minors behind.
    let nodes: Vec<(String, String)> = node_versions(&node)
        .into_iter()
        .map(|v| ("cp-1".to_string(), v))
        .collect();
    assert_eq!(check_fleet(&nodes, "v1.37.0", false).len(), 1);
    // Custom images without a version tag, and no manifests: the spec's version.
    node.manifests.truncate(1);
    node.manifests[0].content = "    image: example.com/apiserver:latest".into();
    assert_eq!(node_versions(&node), ["v1.36.2"]);
    node.manifests.clear();
    node.kubernetes_version.clear();
    assert!(node_versions(&node).is_empty());
}

#[test]
fn minor_change_from_is_the_lowest_running_version_of_a_minor_change() {
    let n = |v: &[&str]| -> Vec<(String, String)> {
        v.iter().map(|x| ("n".to_string(), x.to_string())).collect()
    };
    assert_eq!(
        minor_change_from(&n(&["v1.35.4", "v1.36.0", "v1.35.2"]), "v1.36.2"),
        Some(v("v1.35.2"))
    );
    assert_eq!(
        minor_change_from(&n(&["v1.36.0", "v1.36.1"]), "v1.36.2"),
        None
    );
    assert_eq!(minor_change_from(&[], "v1.36.2"), None);
    assert_eq!(minor_change_from(&n(&["v1.35.0"]), "nonsense"), None);
}
