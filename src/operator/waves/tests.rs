use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::api::{
    CertificateRef, ControlPlaneConfigSpec, FileSource, NodePhase, RenderedFile, RenderedManifest,
};
use crate::operator::fixtures::{facts, fixture_ip};
use crate::operator::rollout::{Previous, RolloutInput, RolloutPhase, decide};
use crate::render::{RenderInput, node_spec, render, revision_of};

const NODES: [&str; 3] = ["cp-1", "cp-2", "cp-3"];

fn up(from: &str, to: &str, wave: i32) -> UpgradeStatus {
    UpgradeStatus {
        from_version: from.into(),
        to_version: to.into(),
        wave,
        revision: String::new(),
    }
}

#[test]
fn a_newer_minor_than_a_node_runs_starts_wave_1() {
    let u = upgrade_in_effect("v1.36.2", None, &["v1.35.4", "v1.36.0", ""], true);
    assert_eq!(
        u,
        Some(up("v1.35.4", "v1.36.2", 1)),
        "the lowest minor is the from"
    );
    // A patch change, a downgrade, nodes that never ran a revision: no waves.
    assert_eq!(upgrade_in_effect("v1.36.3", None, &["v1.36.2"], true), None);
    assert_eq!(upgrade_in_effect("v1.35.2", None, &["v1.36.2"], true), None);
    assert_eq!(upgrade_in_effect("v1.36.2", None, &["", ""], true), None);
    assert_eq!(upgrade_in_effect("v1.36.2", None, &[], true), None);
    // Without kube-apiserver there is nothing to do first.
    assert_eq!(
        upgrade_in_effect("v1.36.2", None, &["v1.35.4"], false),
        None
    );
    assert_eq!(upgrade_in_effect("latest", None, &["v1.35.4"], true), None);
}

#[test]
fn the_previous_status_carries_the_wave_until_the_spec_leaves_the_minor() {
    let prev = up("v1.35.4", "v1.36.2", 2);
    // Every node already runs 1.36 (wave 2 under way): still wave 2, a patch re-targets.
    assert_eq!(
        upgrade_in_effect("v1.36.3", Some(&prev), &["v1.36.2"; 3], true),
        Some(up("v1.35.4", "v1.36.3", 2))
    );
    // Back to 1.35: not an upgrade any more.
    assert_eq!(
        upgrade_in_effect("v1.35.4", Some(&prev), &["v1.36.2", "v1.35.4"], true),
        None
    );
    // On to 1.37 with a node at 1.36: a new upgrade from there.
    assert_eq!(
        upgrade_in_effect("v1.37.0", Some(&prev), &["v1.36.2", "v1.36.3"], true),
        Some(up("v1.36.2", "v1.37.0", 1))
    );
}

fn view(name: &str, rev: &str, phase: NodePhase) -> NodeView {
    NodeView {
        name: name.into(),
        has_cpn: true,
        spec_revision: rev.into(),
        target_revision: Some(rev.into()),
        applied_revision: (phase == NodePhase::Healthy).then(|| rev.to_string()),
        phase: Some(phase),
        has_facts: true,
        ..Default::default()
    }
}

#[test]
fn a_wave_ends_when_every_node_is_healthy_at_its_revision() {
    let u = up("v1.35.4", "v1.36.2", 1);
    let healthy = |r: &str| NODES.map(|n| view(n, r, NodePhase::Healthy)).to_vec();
    let mut nodes = healthy("r1");
    assert_eq!(advance(u.clone(), &nodes, "r1", "r2").unwrap().wave, 2);
    nodes[2] = view("cp-3", "r1", NodePhase::WaitingForKubelet);
    assert_eq!(advance(u.clone(), &nodes, "r1", "r2"), Some(u.clone()));
    nodes[2] = view("cp-3", "r1", NodePhase::RolledBack);
    assert_eq!(
        advance(u.clone(), &nodes, "r1", "r2"),
        Some(u.clone()),
        "halted"
    );
    let u2 = up("v1.35.4", "v1.36.2", 2);
    assert_eq!(
        advance(u2.clone(), &healthy("r1"), "r1", "r2"),
        Some(u2.clone())
    );
    assert_eq!(advance(u2, &healthy("r2"), "r1", "r2"), None, "done");
}

fn manifest(c: Component, version: &str) -> RenderedManifest {
    RenderedManifest {
        component: c,
        file_name: c.manifest_file().into(),
        config_hash: format!("{}-{version}", c.name()),
        content: format!("image: registry.k8s.io/{}:{version}\n", c.name()),
        health_timeout_seconds: 300,
    }
}

fn file(c: Component, path: &str) -> RenderedFile {
    RenderedFile {
        component: c,
        path: path.into(),
        source: FileSource::Inline(path.into()),
        sha256: String::new(),
    }
}

fn cert(c: Component, path: &str) -> CertificateRef {
    CertificateRef {
        component: c,
        flag: "tls-cert-file".into(),
        path: path.into(),
        kubeconfig: false,
    }
}

fn spec_at(version: &str, revision: &str) -> ControlPlaneNodeSpec {
    ControlPlaneNodeSpec {
        config_name: "prod".into(),
        revision: revision.into(),
        kubernetes_version: version.into(),
        manifests: Component::ALL
            .iter()
            .map(|c| manifest(*c, version))
            .collect(),
        files: vec![
            file(Component::ApiServer, &format!("/audit-{version}")),
            file(Component::Scheduler, &format!("/sched-{version}")),
        ],
        certificates: Component::ALL
            .iter()
            .map(|c| cert(*c, &format!("/{}-{version}.crt", c.name())))
            .collect(),
        min_ready_seconds: 7,
        image_pull_secrets: vec![crate::api::ImagePullSecretRef {
            name: format!("pull-{version}"),
            namespace: None,
        }],
    }
}

#[test]
fn wave_1_takes_kube_apiserver_from_the_new_spec_and_the_rest_from_the_node() {
    let new = spec_at("v1.36.2", "r2");
    let old = spec_at("v1.35.4", "r0");
    let w = wave1_spec(&new, Some(&old));
    let images: Vec<&str> = w.manifests.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(
        images,
        [
            "image: registry.k8s.io/kube-apiserver:v1.36.2\n",
            "image: registry.k8s.io/kube-controller-manager:v1.35.4\n",
            "image: registry.k8s.io/kube-scheduler:v1.35.4\n",
        ]
    );
    let paths: Vec<&str> = w.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["/audit-v1.36.2", "/sched-v1.35.4"]);
    assert!(
        w.certificates
            .contains(&cert(Component::ApiServer, "/kube-apiserver-v1.36.2.crt"))
    );
    assert!(w.certificates.contains(&cert(
        Component::ControllerManager,
        "/kube-controller-manager-v1.35.4.crt"
    )));
    assert_eq!(w.certificates.len(), 3);
    assert_eq!(
        (w.kubernetes_version.as_str(), w.min_ready_seconds),
        ("v1.36.2", 7)
    );
    assert_eq!(
        w.image_pull_secrets[0].name, "pull-v1.36.2",
        "the new version's credentials pull the new images"
    );
    // A node that never got a revision: kube-apiserver only.
    let bare = wave1_spec(&new, None);
    assert_eq!(bare.manifests.len(), 1);
    assert_eq!(bare.manifests[0].component, Component::ApiServer);
    let empty = ControlPlaneNodeSpec::default();
    assert_eq!(wave1_spec(&new, Some(&empty)), bare);
}

#[test]
fn the_wave_1_revision_names_its_bytes() {
    let a = wave1_spec(&spec_at("v1.36.2", "r2"), Some(&spec_at("v1.35.4", "r0")));
    let b = wave1_spec(&spec_at("v1.36.2", "r2"), Some(&spec_at("v1.35.3", "r0")));
    let r = |nodes: &[(&str, &ControlPlaneNodeSpec)], full: &str| {
        wave1_revision(full, nodes.iter().copied())
    };
    let base = r(&[("cp-1", &a), ("cp-2", &a)], "r2");
    assert_eq!(base.len(), 10);
    assert_eq!(base, r(&[("cp-2", &a), ("cp-1", &a)], "r2"), "order-free");
    assert_ne!(base, r(&[("cp-1", &a), ("cp-2", &b)], "r2"), "content");
    assert_ne!(base, r(&[("cp-1", &a), ("cp-3", &a)], "r2"), "node names");
    assert_ne!(
        base,
        r(&[("cp-1", &a), ("cp-2", &a)], "r3"),
        "full revision"
    );
}

// ---------------------------------------------------------------------------------------------
// The whole upgrade, decided step by step as the operator does (stage, then decide), with
// agents that settle at once. The skew policy is checked after every step.

fn rendered(version: &str) -> (String, BTreeMap<String, ControlPlaneNodeSpec>) {
    let spec = ControlPlaneConfigSpec {
        kubernetes_version: version.into(),
        ..Default::default()
    };
    let r: Vec<(String, crate::render::Rendered)> = NODES
        .iter()
        .map(|n| {
            let f = facts(n, &fixture_ip(n));
            let input = RenderInput {
                spec: &spec,
                node: &f,
                encryption_config_sha256: None,
            };
            (n.to_string(), render(&input).unwrap())
        })
        .collect();
    let rev = revision_of(r.iter().map(|(n, x)| (n.as_str(), x)));
    let specs = r
        .iter()
        .map(|(n, x)| (n.clone(), node_spec("prod", &spec, &rev, x)))
        .collect();
    (rev, specs)
}

/// The minor version of a component's image in a node spec.
fn image_minor(spec: &ControlPlaneNodeSpec, c: Component) -> Option<u32> {
    let m = spec.manifests.iter().find(|m| m.component == c)?;
    let image = m
        .content
        .lines()
        .find_map(|l| l.trim().strip_prefix("image: "))?;
    let tag = image.rsplit(':').next()?;
    KubeVersion::parse(tag).ok().map(|v| v.minor)
}

/// No kube-controller-manager or kube-scheduler newer than any kube-apiserver.
fn skew_holds(nodes: &BTreeMap<String, ControlPlaneNodeSpec>) -> Result<(), String> {
    let api_min = nodes
        .values()
        .filter_map(|s| image_minor(s, Component::ApiServer))
        .min()
        .unwrap();
    for (n, s) in nodes {
        for c in [Component::ControllerManager, Component::Scheduler] {
            if let Some(m) = image_minor(s, c)
                && m > api_min
            {
                return Err(format!(
                    "{n}: {c} at 1.{m} while a kube-apiserver is at 1.{api_min}"
                ));
            }
        }
    }
    Ok(())
}

struct Sim {
    nodes: BTreeMap<String, ControlPlaneNodeSpec>,
    phases: BTreeMap<String, NodePhase>,
    previous: Previous,
    upgrade: Option<UpgradeStatus>,
    /// (wave, node) of every node started.
    started: Vec<(i32, String)>,
    events: Vec<&'static str>,
    messages: Vec<String>,
}

impl Sim {
    fn at(version: &str) -> Self {
        let (_, specs) = rendered(version);
        Sim {
            phases: specs
                .keys()
                .map(|n| (n.clone(), NodePhase::Healthy))
                .collect(),
            nodes: specs,
            previous: Previous::default(),
            upgrade: None,
            started: vec![],
            events: vec![],
            messages: vec![],
        }
    }

    fn views(&self) -> Vec<NodeView> {
        self.nodes
            .iter()
            .map(|(n, s)| view(n, &s.revision, self.phases[n]))
            .collect()
    }

    /// One reconcile; `fails(node, wave)` says whether the node's agent rolls back.
    fn step(&mut self, target: &str, fails: &dyn Fn(&str, i32) -> bool) -> RolloutPhase {
        let (full_rev, full) = rendered(target);
        let views = self.views();
        let st = stage(
            target,
            &full_rev,
            full,
            &self.nodes,
            &views,
            self.upgrade.as_ref(),
        );
        let mut d = decide(&RolloutInput {
            revision: &st.revision,
            paused: false,
            nodes: &views,
            lease_holders: &BTreeSet::new(),
            previous: &self.previous,
            now: Timestamp::now(),
            progress_deadline_seconds: 600,
        });
        annotate(&mut d, self.upgrade.as_ref(), st.upgrade.as_ref());
        self.events.extend(d.events.iter().map(|e| e.reason));
        self.messages.extend(
            d.conditions
                .iter()
                .filter(|c| c.status)
                .map(|c| c.message.clone()),
        );
        if let Some(n) = &d.start {
            let wave = st.upgrade.as_ref().map_or(0, |u| u.wave);
            self.started.push((wave, n.clone()));
            self.nodes.insert(n.clone(), st.specs[n].clone());
            self.phases.insert(
                n.clone(),
                if fails(n, wave) {
                    NodePhase::RolledBack
                } else {
                    NodePhase::Healthy
                },
            );
        }
        self.previous = Previous {
            revision: Some(st.revision.clone()),
            node_in_flight: d.node_in_flight.clone(),
            in_flight_revision: d.in_flight_revision.clone(),
            in_flight_since: d.in_flight_since,
            failed: d.failed_revisions.clone(),
            ..Default::default()
        };
        self.upgrade = st.upgrade;
        d.phase
    }
}

#[test]
fn a_minor_upgrade_rolls_kube_apiserver_everywhere_first_and_the_skew_policy_holds_throughout() {
    let mut sim = Sim::at("v1.35.4");
    skew_holds(&sim.nodes).unwrap();
    let mut phase = RolloutPhase::Progressing;
    for _ in 0..20 {
        phase = sim.step("v1.36.2", &|_, _| false);
        skew_holds(&sim.nodes).unwrap_or_else(|e| panic!("{e} after {:?}", sim.started));
        if phase == RolloutPhase::Complete && sim.upgrade.is_none() {
            break;
        }
    }
    assert_eq!(phase, RolloutPhase::Complete);
    let order: Vec<(i32, &str)> = sim.started.iter().map(|(w, n)| (*w, n.as_str())).collect();
    assert_eq!(
        order,
        [
            (1, "cp-1"),
            (1, "cp-2"),
            (1, "cp-3"),
            (2, "cp-1"),
            (2, "cp-2"),
            (2, "cp-3")
        ]
    );
    // The end state is the new version's own revision on every node.
    let (rev, full) = rendered("v1.36.2");
    assert_eq!(sim.nodes, full);
    assert!(sim.nodes.values().all(|s| s.revision == rev));
    assert_eq!(
        sim.events
            .iter()
            .filter(|r| **r == reason::UPGRADE_WAVE_STARTED)
            .count(),
        2
    );
    assert_eq!(sim.events.last(), Some(&reason::UPGRADE_COMPLETED));
    assert!(
        sim.messages
            .iter()
            .any(|m| m
                .contains("upgrade v1.35.4 → v1.36.2, wave 1 of 2: kube-apiserver on every node")),
        "{:?}",
        sim.messages
    );
}

#[test]
fn without_waves_the_same_rollout_breaks_the_policy() {
    // What the per-node order did before: the full revision node by node. The check above can
    // fail.
    let mut sim = Sim::at("v1.35.4");
    let (_, full) = rendered("v1.36.2");
    sim.nodes.insert("cp-1".into(), full["cp-1"].clone());
    assert!(skew_holds(&sim.nodes).is_err());
}

#[test]
fn a_patch_upgrade_is_one_wave() {
    let mut sim = Sim::at("v1.36.2");
    for _ in 0..10 {
        if sim.step("v1.36.3", &|_, _| false) == RolloutPhase::Complete {
            break;
        }
    }
    assert!(
        sim.started.iter().all(|(w, _)| *w == 0),
        "{:?}",
        sim.started
    );
    assert_eq!(sim.started.len(), 3);
    assert!(!sim.events.contains(&reason::UPGRADE_WAVE_STARTED));
}

#[test]
fn a_failure_in_wave_1_halts_there_and_says_which_wave() {
    let mut sim = Sim::at("v1.35.4");
    let fails = |n: &str, w: i32| n == "cp-2" && w == 1;
    let mut phase = RolloutPhase::Progressing;
    for _ in 0..10 {
        phase = sim.step("v1.36.2", &fails);
    }
    assert_eq!(phase, RolloutPhase::Halted);
    let order: Vec<(i32, &str)> = sim.started.iter().map(|(w, n)| (*w, n.as_str())).collect();
    assert_eq!(order, [(1, "cp-1"), (1, "cp-2")], "cp-3 never receives it");
    assert_eq!(sim.upgrade.as_ref().map(|u| u.wave), Some(1));
    let last = sim.messages.last().unwrap();
    assert!(
        last.contains("cp-2") && last.contains("wave 1 of 2"),
        "{last}"
    );
    skew_holds(&sim.nodes).unwrap();
}

#[test]
fn an_operator_that_lost_the_status_mid_wave_1_finds_the_same_wave() {
    let mut sim = Sim::at("v1.35.4");
    sim.step("v1.36.2", &|_, _| false);
    sim.step("v1.36.2", &|_, _| false);
    assert_eq!(sim.started.len(), 2);
    // A new operator with an empty status: wave 1 again, the same revision, cp-1 and cp-2 are
    // not restarted.
    sim.previous = Previous::default();
    sim.upgrade = None;
    for _ in 0..20 {
        if sim.step("v1.36.2", &|_, _| false) == RolloutPhase::Complete && sim.upgrade.is_none() {
            break;
        }
        skew_holds(&sim.nodes).unwrap();
    }
    let order: Vec<(i32, &str)> = sim.started.iter().map(|(w, n)| (*w, n.as_str())).collect();
    assert_eq!(
        order,
        [
            (1, "cp-1"),
            (1, "cp-2"),
            (1, "cp-3"),
            (2, "cp-1"),
            (2, "cp-2"),
            (2, "cp-3")
        ]
    );
}
