//! `kubeplane upgrade plan`: what a version change would do — waves, nodes in order, images
//! per component before → after, and every check of [`super::upgrade`] — computed without I/O,
//! so the operator can publish the same plan in its status.
//!
//! The waves follow what the operator does (`operator::waves`): a minor upgrade rolls
//! kube-apiserver on every node first, one node at a time, then kube-controller-manager and
//! kube-scheduler (the version-skew policy, kubernetes.io/releases/version-skew-policy); a
//! patch or flag change, and a minor downgrade, roll node by node with every component.

use std::fmt::Write as _;

use crate::api::{Component, ControlPlaneConfigSpec};
use crate::flags::KubeVersion;
use crate::render::{self, defaults};

use super::Problem;
use super::upgrade::{self, ChangeKind};

/// A node the plan rolls, with the versions it runs now (empty: not known).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanNode {
    /// Node name.
    pub name: String,
    /// Versions its components run (image tags), lowest first.
    pub versions: Vec<String>,
}

/// What the plan starts from.
#[derive(Clone, Debug)]
pub struct PlanInput<'a> {
    /// The spec to go to.
    pub spec: &'a ControlPlaneConfigSpec,
    /// The version the cluster runs (its lowest, when nodes differ).
    pub from_version: &'a str,
    /// The image repository the running components come from (`None`: the spec's).
    pub from_image_repository: Option<&'a str>,
    /// The nodes, when known (else the spec's `nodes` names, else "every selected node").
    pub nodes: &'a [PlanNode],
}

/// One wave: these components on these nodes, one node at a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wave {
    /// Components the wave changes.
    pub components: Vec<Component>,
    /// Nodes in the order they are rolled.
    pub nodes: Vec<String>,
}

/// One component's image before and after.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageChange {
    /// The component.
    pub component: Component,
    /// The image it runs now.
    pub before: String,
    /// The image it will run.
    pub after: String,
}

/// What a version change would do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The running version.
    pub from: String,
    /// The target version.
    pub to: String,
    /// What kind of change it is (`None` when `from` does not parse).
    pub kind: Option<ChangeKind>,
    /// The waves, in order.
    pub waves: Vec<Wave>,
    /// Images per managed component.
    pub images: Vec<ImageChange>,
    /// Every problem: the spec's own, the skew rules, the target-version checks.
    pub problems: Vec<Problem>,
}

impl Plan {
    /// Whether the change can proceed (no errors; warnings allowed).
    pub fn can_proceed(&self) -> bool {
        !self.problems.iter().any(Problem::is_error)
    }

    /// The plan for a terminal.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let kind = match self.kind {
            Some(ChangeKind::None) => "no version change",
            Some(ChangeKind::Patch) => "patch change",
            Some(ChangeKind::MinorUp) => "minor upgrade",
            Some(ChangeKind::MinorDown) => "minor downgrade",
            None => "running version unknown",
        };
        let _ = writeln!(s, "upgrade plan: {} → {} ({kind})", self.from, self.to);
        for (i, w) in self.waves.iter().enumerate() {
            let comps: Vec<&str> = w.components.iter().map(|c| c.name()).collect();
            let _ = writeln!(
                s,
                "wave {} of {}: {} — one node at a time: {}",
                i + 1,
                self.waves.len(),
                comps.join(", "),
                w.nodes.join(", ")
            );
        }
        let _ = writeln!(s, "images:");
        for img in &self.images {
            let arrow = if img.before == img.after {
                "(unchanged)".to_string()
            } else {
                format!("→ {}", img.after)
            };
            let _ = writeln!(s, "  {}: {} {arrow}", img.component.name(), img.before);
        }
        let errors = self.problems.iter().filter(|p| p.is_error()).count();
        let warnings = self.problems.len() - errors;
        let _ = writeln!(s, "checks: {errors} error(s), {warnings} warning(s)");
        for p in &self.problems {
            let _ = writeln!(s, "  {p}");
        }
        let _ = writeln!(
            s,
            "result: {}",
            if self.can_proceed() {
                "can proceed"
            } else {
                "cannot proceed: fix the errors above"
            }
        );
        s
    }
}

/// Computes the plan. Never panics; every problem is in [`Plan::problems`].
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let spec = input.spec;
    let to = spec.kubernetes_version.clone();
    let mut problems: Vec<Problem> = super::validate(spec).problems;
    let allow = upgrade::allow_minor_downgrade(spec);
    let from = KubeVersion::parse_any(input.from_version).ok();
    let target = KubeVersion::parse_any(&to).ok();
    let known: Vec<(String, String)> = input
        .nodes
        .iter()
        .flat_map(|n| n.versions.iter().map(|v| (n.name.clone(), v.clone())))
        .collect();
    if known.is_empty() {
        problems.extend(upgrade::check_change(input.from_version, &to, allow));
    } else {
        problems.extend(upgrade::check_fleet(&known, &to, allow));
    }
    if let Some(f) = &from {
        problems.extend(upgrade::check_target(spec, f));
    }
    let kind = match (&from, &target) {
        (Some(f), Some(t)) => Some(upgrade::change_kind(f, t)),
        _ => None,
    };
    if kind == Some(ChangeKind::MinorDown) {
        problems.push(
            Problem::warning(
                "spec.kubernetesVersion",
                format!(
                    "a minor downgrade rolls node by node with every component: until the last node is done, a newer kube-controller-manager or kube-scheduler on a node not yet done can reach an older kube-apiserver through a load-balanced address, which the version-skew policy does not allow ({from} → {to})",
                    from = input.from_version
                ),
            )
            .fix("expect controller errors until the downgrade finishes, or point each controller at its own node's kube-apiserver"),
        );
    }

    let nodes: Vec<String> = if !input.nodes.is_empty() {
        input.nodes.iter().map(|n| n.name.clone()).collect()
    } else if !spec.nodes.is_empty() {
        let mut names: Vec<String> = spec.nodes.iter().map(|n| n.name.clone()).collect();
        names.sort();
        names
    } else {
        vec!["(every node the nodeSelector selects, in name order)".to_string()]
    };
    let managed: Vec<Component> = Component::ALL
        .into_iter()
        .filter(|c| render::is_managed(spec, *c))
        .collect();
    let waves = match kind {
        Some(ChangeKind::MinorUp) if managed.contains(&Component::ApiServer) => {
            let rest: Vec<Component> = managed
                .iter()
                .copied()
                .filter(|c| *c != Component::ApiServer)
                .collect();
            let mut w = vec![Wave {
                components: vec![Component::ApiServer],
                nodes: nodes.clone(),
            }];
            if !rest.is_empty() {
                w.push(Wave {
                    components: rest,
                    nodes: nodes.clone(),
                });
            }
            w
        }
        _ if managed.is_empty() => Vec::new(),
        _ => vec![Wave {
            components: managed.clone(),
            nodes: nodes.clone(),
        }],
    };
    let repo = |r: Option<&str>| {
        r.unwrap_or(defaults::IMAGE_REPOSITORY)
            .trim_end_matches('/')
            .to_string()
    };
    let after_repo = repo(spec.image_repository.as_deref());
    let before_repo = match input.from_image_repository {
        Some(r) => repo(Some(r)),
        None => after_repo.clone(),
    };
    let tag =
        |v: &Option<KubeVersion>, raw: &str| v.as_ref().map_or(raw.to_string(), KubeVersion::tag);
    let images = managed
        .iter()
        .map(|c| ImageChange {
            component: *c,
            before: format!(
                "{before_repo}/{}:{}",
                c.name(),
                tag(&from, input.from_version)
            ),
            after: format!("{after_repo}/{}:{}", c.name(), tag(&target, &to)),
        })
        .collect();
    Plan {
        from: input.from_version.to_string(),
        to,
        kind,
        waves,
        images,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ApiServer, Arg, NodeOverride, Scheduler};

    fn spec(v: &str) -> ControlPlaneConfigSpec {
        ControlPlaneConfigSpec {
            kubernetes_version: v.into(),
            ..Default::default()
        }
    }

    fn nodes(list: &[(&str, &str)]) -> Vec<PlanNode> {
        list.iter()
            .map(|(n, v)| PlanNode {
                name: n.to_string(),
                versions: vec![v.to_string()],
            })
            .collect()
    }

    #[test]
    fn minor_upgrade_rolls_apiservers_first_then_the_controllers() {
        let s = spec("v1.36.2");
        let ns = nodes(&[
            ("cp-1", "v1.35.4"),
            ("cp-2", "v1.35.4"),
            ("cp-3", "v1.35.4"),
        ]);
        let p = plan(&PlanInput {
            spec: &s,
            from_version: "v1.35.4",
            from_image_repository: None,
            nodes: &ns,
        });
        assert!(p.can_proceed(), "{:?}", p.problems);
        assert_eq!(p.kind, Some(ChangeKind::MinorUp));
        assert_eq!(p.waves.len(), 2);
        assert_eq!(p.waves[0].components, [Component::ApiServer]);
        assert_eq!(
            p.waves[1].components,
            [Component::ControllerManager, Component::Scheduler]
        );
        assert_eq!(p.waves[1].nodes, ["cp-1", "cp-2", "cp-3"]);
        assert_eq!(p.images[0].before, "registry.k8s.io/kube-apiserver:v1.35.4");
        assert_eq!(p.images[0].after, "registry.k8s.io/kube-apiserver:v1.36.2");
        let text = p.to_text();
        assert!(
            text.contains("wave 1 of 2: kube-apiserver — one node at a time: cp-1, cp-2, cp-3"),
            "{text}"
        );
        assert!(text.ends_with("result: can proceed\n"));
    }

    #[test]
    fn patch_change_is_one_wave_with_every_managed_component() {
        let mut s = spec("v1.36.3");
        s.scheduler = Some(Scheduler {
            managed: Some(false),
            ..Default::default()
        });
        s.nodes = vec![
            NodeOverride {
                name: "b".into(),
                ..Default::default()
            },
            NodeOverride {
                name: "a".into(),
                ..Default::default()
            },
        ];
        let p = plan(&PlanInput {
            spec: &s,
            from_version: "v1.36.2",
            from_image_repository: Some("old.example/k8s/"),
            nodes: &[],
        });
        assert_eq!(p.kind, Some(ChangeKind::Patch));
        assert_eq!(p.waves.len(), 1);
        assert_eq!(
            p.waves[0].components,
            [Component::ApiServer, Component::ControllerManager]
        );
        assert_eq!(p.waves[0].nodes, ["a", "b"]);
        assert_eq!(p.images.len(), 2);
        assert_eq!(
            p.images[1].before,
            "old.example/k8s/kube-controller-manager:v1.36.2"
        );
    }

    #[test]
    fn a_skip_and_a_bad_gate_stop_the_plan() {
        let mut s = spec("v1.36.2");
        s.api_server = Some(ApiServer {
            extra_args: vec![Arg::new("feature-gates", "NodeSwap=false")],
            ..Default::default()
        });
        let ns = nodes(&[("cp-1", "v1.34.1")]);
        let p = plan(&PlanInput {
            spec: &s,
            from_version: "v1.34.1",
            from_image_repository: None,
            nodes: &ns,
        });
        assert!(!p.can_proceed());
        let text = p.to_text();
        assert!(text.contains("v1.34.1 → v1.36.2 skips 1.35"), "{text}");
        assert!(
            text.contains("NodeSwap is GA and locked to true in 1.36"),
            "{text}"
        );
        assert!(text.ends_with("result: cannot proceed: fix the errors above\n"));
    }

    #[test]
    fn a_downgrade_is_one_wave_and_warned_about() {
        let mut s = spec("v1.35.4");
        s.upgrade = Some(crate::api::UpgradePolicy {
            allow_minor_downgrade: Some(true),
        });
        let p = plan(&PlanInput {
            spec: &s,
            from_version: "v1.36.1",
            from_image_repository: None,
            nodes: &[],
        });
        assert!(p.can_proceed(), "{:?}", p.problems);
        assert_eq!(p.waves.len(), 1);
        assert!(
            p.problems
                .iter()
                .any(|w| w.message.contains("minor downgrade rolls node by node"))
        );
        assert_eq!(
            p.waves[0].nodes,
            ["(every node the nodeSelector selects, in name order)"]
        );
    }

    #[test]
    fn an_invalid_target_or_running_version_is_reported_not_panicked() {
        let s = spec("v1.99.0");
        let p = plan(&PlanInput {
            spec: &s,
            from_version: "v1.36.0",
            from_image_repository: None,
            nodes: &[],
        });
        assert!(!p.can_proceed());
        let s = spec("v1.36.0");
        let p = plan(&PlanInput {
            spec: &s,
            from_version: "soon",
            from_image_repository: None,
            nodes: &[],
        });
        assert!(!p.can_proceed());
        assert_eq!(p.kind, None);
        assert!(p.to_text().contains("running version unknown"));
    }
}
