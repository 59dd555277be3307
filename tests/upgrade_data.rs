//! The upgrade data (`core/src/flags/data/upgrade/*.yaml`) against what the v1.36.2 binaries say
//! (`core/src/flags/data/upgrade/1.36/binary.yaml`, captured by `capture.sh` there): every gate's
//! stage, default and lock in 1.33-1.36 as the binary's versioned gate specs have them, every
//! gate the data calls gone is unknown to the binary, the alpha/beta gates agree with --help,
//! and the admission plugins are exactly the ones --help lists.

use std::collections::BTreeMap;

use kubeplane::flags::Minor;
use kubeplane::flags::upgrade::{self, GateStage, GateState};

struct Capture {
    help_gates: BTreeMap<String, (String, bool)>,
    plugins: Vec<String>,
    /// minor -> gate -> (stage word, locked value)
    probes: BTreeMap<u32, BTreeMap<String, (String, Option<bool>)>>,
}

fn capture() -> Capture {
    let path = format!(
        "{}/core/src/flags/data/upgrade/1.36/binary.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("binary.yaml exists");
    let doc: serde_json::Value = serde_saphyr::from_str(&text).expect("binary.yaml parses");
    assert_eq!(doc["version"], "v1.36.2");
    let help_gates = doc["helpGates"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(n, g)| {
            (
                n.clone(),
                (
                    g["stage"].as_str().unwrap().to_string(),
                    g["default"].as_bool().unwrap(),
                ),
            )
        })
        .collect();
    let plugins = doc["admissionPlugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    let probes = doc["probes"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(minor, gates)| {
            let m = Minor::parse(minor).unwrap().0;
            let gates = gates
                .as_object()
                .unwrap()
                .iter()
                .map(|(n, s)| {
                    let s = s.as_str().unwrap();
                    let (stage, lock) = match s.split_once(" locked=") {
                        Some((st, l)) => (st, Some(l == "true")),
                        None => (s, None),
                    };
                    (n.clone(), (stage.to_string(), lock))
                })
                .collect();
            (m, gates)
        })
        .collect();
    Capture {
        help_gates,
        plugins,
        probes,
    }
}

/// What the data says about a gate in a release, in the capture's words.
fn data_word(gate: &upgrade::Gate, minor: u32) -> (String, Option<bool>) {
    match gate.state_in(minor) {
        GateState::Removed { .. } => ("unknown".into(), None),
        GateState::MaybeRemoved { .. } => ("maybe-removed".into(), None),
        GateState::Known(None) => ("no-spec".into(), None),
        GateState::Known(Some(s)) => {
            let stage = match s.stage {
                GateStage::Alpha | GateStage::Beta => "alpha-or-beta",
                GateStage::Ga => "ga",
                GateStage::Deprecated => "deprecated",
            };
            (stage.into(), s.locked.then_some(s.default))
        }
    }
}

#[test]
fn every_gate_agrees_with_the_v1_36_2_binary() {
    let cap = capture();
    let at36 = &cap.probes[&36];
    let mut mismatches = Vec::new();
    let mut compared = 0;
    for gate in upgrade::gates() {
        let probe = at36
            .get(&gate.name)
            .unwrap_or_else(|| panic!("{} was not probed: run capture.sh", gate.name));
        let still_there = probe.0 != "unknown";
        // In 1.36 every gate is compared; in 1.33-1.35 the gates the binary still has (its
        // versioned specs carry their history).
        for (minor, probes) in &cap.probes {
            if *minor != 36 && !still_there {
                continue;
            }
            let want = data_word(gate, *minor);
            let got = &probes[&gate.name];
            compared += 1;
            if &want != got {
                mismatches.push(format!(
                    "{} in 1.{minor}: data {want:?}, binary {got:?}",
                    gate.name
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert!(compared > 150, "only {compared} comparisons");
}

#[test]
fn help_lists_exactly_the_alpha_and_beta_gates_of_the_data() {
    let cap = capture();
    for gate in upgrade::gates() {
        if let GateState::Known(Some(s)) = gate.state_in(36) {
            let listed = cap.help_gates.get(&gate.name);
            match s.stage {
                GateStage::Alpha | GateStage::Beta => {
                    let want = (
                        if s.stage == GateStage::Alpha {
                            "alpha"
                        } else {
                            "beta"
                        }
                        .to_string(),
                        s.default,
                    );
                    assert_eq!(listed, Some(&want), "{}", gate.name);
                }
                GateStage::Ga | GateStage::Deprecated => {
                    assert!(listed.is_none(), "{} is listed by --help", gate.name)
                }
            }
        }
    }
    // --help never lists a gate the data calls gone.
    for gate in upgrade::gates() {
        if matches!(gate.state_in(36), GateState::Removed { .. }) {
            assert!(!cap.help_gates.contains_key(&gate.name), "{}", gate.name);
        }
    }
    assert!(cap.help_gates.len() > 100);
}

#[test]
fn admission_plugins_are_the_ones_the_binary_lists() {
    let cap = capture();
    let mut data: Vec<String> = upgrade::admission_plugins(Minor(36)).unwrap().to_vec();
    let mut bin = cap.plugins.clone();
    data.sort();
    bin.sort();
    assert_eq!(data, bin);
    for p in upgrade::removed_plugins() {
        assert!(p.gone_in(36).is_some(), "{} is not gone by 1.36", p.name);
        assert!(!bin.contains(&p.name), "{} is listed by v1.36.2", p.name);
    }
}

#[test]
fn removed_apis_are_removed_before_the_supported_range() {
    // Nothing in the data claims a removal kubeplane's supported releases would still serve.
    for a in upgrade::removed_apis() {
        assert!(a.removed.0 <= 36, "{}", a.group_version);
        assert!(a.group_version.contains('/'), "{}", a.group_version);
    }
}
