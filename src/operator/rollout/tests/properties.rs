use super::*;

// ---- property tests ----

fn arb_phase() -> impl Strategy<Value = Option<NodePhase>> {
    prop_oneof![
        Just(None),
        Just(Some(Pending)),
        Just(Some(Applying)),
        Just(Some(WaitingForKubelet)),
        Just(Some(Healthy)),
        Just(Some(RolledBack)),
        Just(Some(Failed)),
    ]
}

fn arb_rev() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("r0".to_string()),
        Just("r1".to_string()),
        Just("r2".to_string())
    ]
}

fn arb_node(name: String) -> impl Strategy<Value = NodeView> {
    (
        arb_rev(),
        proptest::option::of(arb_rev()),
        proptest::option::of(arb_rev()),
        arb_phase(),
        any::<bool>(),
        any::<u8>(),
    )
        .prop_map(move |(spec, target, applied, phase, facts, rb)| NodeView {
            name: name.clone(),
            has_cpn: true,
            spec_revision: spec,
            target_revision: target,
            applied_revision: applied,
            phase,
            reason: None,
            message: None,
            has_facts: facts,
            rolling_back: rb % 4 == 0,
            unreachable: false,
        })
}

fn arb_nodes() -> impl Strategy<Value = Vec<NodeView>> {
    (1usize..=7).prop_flat_map(|n| {
        (0..n)
            .map(|i| arb_node(format!("cp-{i}")))
            .collect::<Vec<_>>()
    })
}

proptest! {
    /// Whatever the nodes report, the operator starts a node only when none is in flight, the
    /// rollout is not halted or paused, and the node has facts and is behind; Lease holders
    /// only when no other node is behind (a re-target keeps the node in flight, whatever it is).
    #[test]
    fn a_start_is_always_safe(
        nodes in arb_nodes(),
        rev in prop_oneof![Just("r1"), Just("r2")],
        paused in any::<bool>(),
        holder_mask in any::<u8>(),
    ) {
        let holders: BTreeSet<String> = nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| holder_mask & (1 << i) != 0)
            .map(|(_, n)| n.name.clone())
            .collect();
        let prev = Previous::default();
        let d = decide(&RolloutInput { revision: rev, paused, nodes: &nodes, lease_holders: &holders, previous: &prev, now: now(), progress_deadline_seconds: 900 });
        let halted = nodes.iter().any(|n| matches!(n.settled_at(rev), Some(RolledBack | Failed)));
        prop_assert_eq!(halted, d.halted.is_some());
        if let Some(s) = &d.start {
            prop_assert!(!halted);
            prop_assert!(!paused);
            let n = nodes.iter().find(|n| &n.name == s).unwrap();
            // No node in flight, or the one in flight is re-targeted while it neither writes
            // files nor rolls back.
            prop_assert!(nodes.iter().all(|o| !o.in_flight() || o.name == *s));
            prop_assert_eq!(d.retarget, n.in_flight());
            if n.in_flight() {
                prop_assert!(n.phase != Some(Applying) && !n.rolling_back);
            }
            prop_assert!(n.has_facts);
            prop_assert_ne!(&n.spec_revision, rev);
            if holders.contains(s) && !d.retarget {
                prop_assert!(nodes.iter().all(|o| holders.contains(&o.name) || !o.has_facts || o.spec_revision == rev));
            }
        }
        if halted { prop_assert_eq!(d.phase, RolloutPhase::Halted); }
        for c in &d.conditions { prop_assert!(is_condition_reason(&c.reason)); }
    }
}

/// One step of the simulated world.
#[derive(Clone, Debug)]
enum Step {
    /// The operator reconciles (a restarted operator is the same: `decide` keeps no state).
    Reconcile,
    /// An operator replica reconciles, writes its status (the claim), and stalls before its
    /// ControlPlaneNode write, which carries the resourceVersion it read.
    Stall,
    /// The stalled write arrives; the API server refuses it if the ControlPlaneNode changed.
    Land,
    /// The agent on node `i` makes one move allowed by the protocol; `choice` picks among them.
    Agent(usize, u8),
    /// The spec changes to another revision.
    NewGeneration(u8),
    /// `spec.rollout.paused` flips.
    TogglePause,
    /// The Lease holders change.
    Leases(u8),
    /// Minutes pass.
    Tick(u8),
    /// Node `i`'s ControlPlaneNode is deleted and re-created empty (or its node leaves the
    /// selector and comes back).
    Recreate(usize),
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => Just(Step::Reconcile),
        1 => Just(Step::Stall),
        1 => Just(Step::Land),
        6 => (0usize..7, any::<u8>()).prop_map(|(i, c)| Step::Agent(i, c)),
        1 => (0u8..4).prop_map(Step::NewGeneration),
        1 => Just(Step::TogglePause),
        1 => any::<u8>().prop_map(Step::Leases),
        1 => any::<u8>().prop_map(Step::Tick),
        1 => (0usize..7).prop_map(Step::Recreate),
    ]
}

/// The agent's moves (docs/architecture.md, agent phases): take up a new spec revision, advance
/// the phase, settle; or report facts. An agent may also restart and report `Pending` again for
/// the revision it is working on.
fn agent_step(n: &mut NodeView, choice: u8) {
    if !n.has_facts {
        n.has_facts = true;
        n.phase = Some(Pending);
        return;
    }
    if n.spec_revision.is_empty() {
        return;
    }
    if n.target_revision.as_deref() != Some(n.spec_revision.as_str()) {
        // A new revision is taken up only after a write or a restore is finished.
        if n.phase == Some(Applying) {
            n.applied_revision = n.target_revision.clone();
            n.phase = Some(WaitingForKubelet);
            return;
        }
        if n.rolling_back {
            n.rolling_back = false;
            n.phase = Some(RolledBack);
            return;
        }
        n.target_revision = Some(n.spec_revision.clone());
        n.phase = Some(Pending);
        return;
    }
    if n.rolling_back {
        n.rolling_back = false;
        n.phase = Some(if choice.is_multiple_of(3) {
            Failed
        } else {
            RolledBack
        });
        return;
    }
    match n.phase {
        Some(Pending) => n.phase = Some(Applying),
        Some(Applying) => {
            n.applied_revision = n.target_revision.clone();
            n.phase = Some(if choice.is_multiple_of(7) {
                Failed
            } else {
                WaitingForKubelet
            });
        }
        Some(WaitingForKubelet) => match choice % 5 {
            0 => n.rolling_back = true,
            1 => n.phase = Some(Pending), // agent restarted mid-wait
            _ => n.phase = Some(Healthy),
        },
        None => n.phase = Some(Pending),
        // Settled: nothing to do until a new spec revision.
        Some(Healthy | RolledBack | Failed) => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// With agents following the protocol, in any interleaving of agent moves, reconciles
    /// (including from a restarted operator), new generations, pauses, Lease moves, passing
    /// time and re-created ControlPlaneNodes, no two nodes are ever in flight, a halted
    /// rollout never starts a node, a node is never given a new revision while it writes files
    /// or rolls back, and a revision the operator saw fail on a node is never given to that
    /// node again.
    #[test]
    fn never_two_nodes_in_flight(
        count in 1usize..=7,
        facts_mask in any::<u8>(),
        steps in proptest::collection::vec(arb_step(), 1..300),
    ) {
        let revs = ["r0", "r1", "r2", "r3"];
        let mut rev = "r0";
        let mut paused = false;
        let mut holders = BTreeSet::new();
        let mut prev = Previous::default();
        let mut clock = now();
        let mut seen_failed: BTreeSet<(String, String)> = BTreeSet::new();
        // A stalled ControlPlaneNode write: node, revision, and the node's resourceVersion as
        // read. Versions count every change of a node (as resourceVersions do).
        let mut stalled: Option<(usize, String, u64)> = None;
        let mut nodes: Vec<NodeView> = (0..count)
            .map(|i| NodeView {
                name: format!("cp-{i}"),
                has_cpn: true,
                has_facts: facts_mask & (1 << i) != 0,
                ..Default::default()
            })
            .collect();
        let mut versions: Vec<u64> = vec![0; nodes.len()];
        for step in steps {
            let before = nodes.clone();
            match step {
                Step::Land => {
                    if let Some((i, r, seen)) = stalled.take()
                        && versions[i] == seen
                    {
                        nodes[i].spec_revision = r;
                    }
                }
                Step::Reconcile | Step::Stall => {
                    for n in &nodes {
                        if matches!(n.settled_at(&n.spec_revision), Some(RolledBack | Failed)) {
                            seen_failed.insert((n.name.clone(), n.spec_revision.clone()));
                        }
                    }
                    let d = decide(&RolloutInput { revision: rev, paused, nodes: &nodes, lease_holders: &holders, previous: &prev, now: clock, progress_deadline_seconds: 900 });
                    if d.halted.is_some() {
                        prop_assert_eq!(&d.start, &None);
                    }
                    if let Some(s) = &d.start {
                        prop_assert!(!seen_failed.contains(&(s.clone(), rev.to_string())), "{} retried {}", s, rev);
                        let i = nodes.iter().position(|n| &n.name == s).unwrap();
                        let n = &mut nodes[i];
                        prop_assert!(n.phase != Some(Applying) || !n.in_flight());
                        prop_assert!(!n.rolling_back || !n.in_flight());
                        if matches!(step, Step::Stall) && stalled.is_none() {
                            stalled = Some((i, rev.to_string(), versions[i]));
                        } else {
                            n.spec_revision = rev.to_string();
                        }
                    }
                    prev = Previous {
                        revision: Some(rev.to_string()),
                        node_in_flight: d.node_in_flight.clone(),
                        ready: d.phase == RolloutPhase::Complete,
                        degraded_reason: d.halted.as_ref().map(|h| h.reason.clone()),
                        in_flight_revision: d.in_flight_revision.clone(),
                        in_flight_since: d.in_flight_since,
                        failed: d.failed_revisions.clone(),
                    };
                }
                Step::Tick(minutes) => {
                    clock += SignedDuration::from_mins(i64::from(minutes));
                }
                Step::Recreate(i) => {
                    if let Some(n) = nodes.get_mut(i) {
                        let name = n.name.clone();
                        let facts = n.has_facts;
                        *n = NodeView { name, has_cpn: true, has_facts: facts, phase: Some(Pending), ..Default::default() };
                    }
                }
                Step::Agent(i, choice) => {
                    if let Some(n) = nodes.get_mut(i) {
                        agent_step(n, choice);
                    }
                }
                Step::NewGeneration(r) => rev = revs[r as usize],
                Step::TogglePause => paused = !paused,
                Step::Leases(mask) => {
                    holders = nodes
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| mask & (1 << i) != 0)
                        .map(|(_, n)| n.name.clone())
                        .collect();
                }
            }
            for (i, (now, was)) in nodes.iter().zip(&before).enumerate() {
                if now != was {
                    versions[i] += 1;
                }
            }
            let flying = nodes.iter().filter(|n| n.in_flight()).count();
            prop_assert!(flying <= 1, "two nodes in flight: {:?}", nodes);
        }
    }
}
