use proptest::prelude::*;

use super::*;
use crate::api::{KeyRotation, ManagedEncryption};
use crate::encryption::Desired;

mod properties;

const NOW: i64 = 1_800_000_000;
const FRESH: &str = "c2VjcmV0LWJ5dGVzLXNlY3JldC1ieXRlcy1zZWNyZXQtYnk=";

fn desired(provider: EncryptionProvider, generation: i64) -> Desired {
    Desired::from_spec(&ManagedEncryption {
        provider: Some(provider),
        rotation: Some(KeyRotation {
            generation: Some(generation),
            interval_days: None,
        }),
        ..Default::default()
    })
}

fn nodes(current: &[bool]) -> Vec<NodeView> {
    current
        .iter()
        .enumerate()
        .map(|(i, c)| NodeView {
            name: format!("cp{}", i + 1),
            selected: true,
            current: *c,
        })
        .collect()
}

fn input<'a>(
    desired: &'a Desired,
    state: Option<&'a KeyState>,
    nodes: &'a [NodeView],
    rewrite: Rewrite,
    check: Check,
) -> Input<'a> {
    Input {
        desired,
        state,
        reported_step: state.map(|s| s.step.as_str()),
        nodes,
        rewrite,
        check,
        now_unix: NOW,
        fresh_secret: FRESH,
    }
}

fn written(o: Outcome) -> (KeyState, Vec<Key>) {
    match o {
        Outcome::Write { state, retire, .. } => (state, retire),
        other => panic!("expected a write, got {other:?}"),
    }
}

/// Drives one whole rotation from `state` to rest, checking each step; returns the state at
/// rest and the keys retired.
fn rotate_to_rest(d: &Desired, mut state: KeyState, target: &str) -> (KeyState, Vec<Key>) {
    let all = nodes(&[true, true, true]);
    let lagging = nodes(&[true, false, true]);
    let mut retired = Vec::new();
    for expected in [
        Step::KeyPrimary,
        Step::Migrating,
        Step::Migrated,
        Step::OldKeyRetired,
    ] {
        // Never advances while a node runs an older configuration.
        let o = next(&input(
            d,
            Some(&state),
            &lagging,
            Rewrite::Complete,
            Check::NotConfigured,
        ));
        assert!(
            matches!(o, Outcome::Wait(ref m) if m.contains("cp2")),
            "{o:?}"
        );
        if state.step == Step::Migrating {
            let o = next(&input(
                d,
                Some(&state),
                &all,
                Rewrite::Pending,
                Check::NotRead,
            ));
            assert!(matches!(o, Outcome::Rewrite(_)), "{o:?}");
            let o = next(&input(
                d,
                Some(&state),
                &all,
                Rewrite::Complete,
                Check::NotRead,
            ));
            assert_eq!(o, Outcome::Check);
        }
        let check = if state.step == Step::Migrating {
            Check::Counts(vec![(target.to_string(), 200)])
        } else {
            Check::NotRead
        };
        let (s, r) = written(next(&input(
            d,
            Some(&state),
            &all,
            Rewrite::Complete,
            check,
        )));
        assert_eq!(s.step, expected);
        assert_eq!(s.target, target);
        retired.extend(r);
        state = s;
    }
    (state, retired)
}

#[test]
fn turning_on_then_one_rotation_walks_every_step() {
    let d = desired(EncryptionProvider::Secretbox, 0);
    let all = nodes(&[true, true, true]);
    let o = next(&input(&d, None, &all, Rewrite::Pending, Check::NotRead));
    let Outcome::Write { state, message, .. } = o else {
        panic!("expected a write")
    };
    assert!(message.contains("encryption turned on"), "{message}");
    assert_eq!(state.step, Step::KeyAdded);
    let k1 = format!("key1-{NOW}");
    assert_eq!(state.key_names(), vec!["identity".to_string(), k1.clone()]);
    assert_eq!(state.keys[1].secret, FRESH);

    let (rest, retired) = rotate_to_rest(&d, state, &k1);
    assert_eq!(rest.key_names(), vec![k1.clone()]);
    assert!(retired.is_empty(), "identity is not backed up");
    assert_eq!(rest.last_rotation_unix, Some(NOW));
    assert!(matches!(
        next(&input(
            &d,
            Some(&rest),
            &all,
            Rewrite::Pending,
            Check::NotRead
        )),
        Outcome::Stable(_)
    ));

    // One rotation: bump the generation.
    let d2 = desired(EncryptionProvider::Secretbox, 1);
    let (added, _) = written(next(&input(
        &d2,
        Some(&rest),
        &all,
        Rewrite::Pending,
        Check::NotRead,
    )));
    let k2 = format!("key2-{NOW}");
    assert_eq!(added.step, Step::KeyAdded);
    assert_eq!(added.key_names(), vec![k1.clone(), k2.clone()]);
    assert_eq!(added.observed_rotation, 1);
    let (rest2, retired) = rotate_to_rest(&d2, added, &k2);
    assert_eq!(rest2.key_names(), vec![k2]);
    assert_eq!(retired.len(), 1);
    assert_eq!(retired[0].name, k1);
    assert_eq!(
        retired[0].secret, FRESH,
        "the retired key is backed up with its material"
    );
}

#[test]
fn key_primary_lists_the_new_key_first_and_keeps_the_old_one() {
    let d = desired(EncryptionProvider::Aescbc, 0);
    let all = nodes(&[true]);
    let (added, _) = written(next(&input(
        &d,
        None,
        &all,
        Rewrite::Pending,
        Check::NotRead,
    )));
    let (primary, _) = written(next(&input(
        &d,
        Some(&added),
        &all,
        Rewrite::Pending,
        Check::NotRead,
    )));
    assert_eq!(primary.step, Step::KeyPrimary);
    assert_eq!(primary.keys[0].name, added.target);
    assert_eq!(primary.keys[1].name, "identity");
}

#[test]
fn turning_off_rewrites_in_plain_text_before_the_key_goes() {
    let d = desired(EncryptionProvider::Secretbox, 0);
    let all = nodes(&[true, true]);
    let (added, _) = written(next(&input(
        &d,
        None,
        &all,
        Rewrite::Pending,
        Check::NotRead,
    )));
    let k1 = added.target.clone();
    let (rest, _) = rotate_to_rest(&d, added, &k1);

    let off = desired(EncryptionProvider::Identity, 0);
    let (added, _) = written(next(&input(
        &off,
        Some(&rest),
        &all,
        Rewrite::Pending,
        Check::NotRead,
    )));
    assert_eq!(added.key_names(), vec![k1.clone(), "identity".to_string()]);
    assert_eq!(
        added.serial, rest.serial,
        "no key generated to turn encryption off"
    );
    let (off_rest, retired) = rotate_to_rest(&off, added, "identity");
    assert_eq!(off_rest.key_names(), vec!["identity".to_string()]);
    assert_eq!(
        retired.iter().map(|k| k.name.clone()).collect::<Vec<_>>(),
        vec![k1]
    );
    assert_eq!(
        next(&input(
            &off,
            Some(&off_rest),
            &all,
            Rewrite::Pending,
            Check::NotRead
        )),
        Outcome::Stable("encryption is off (identity)".into())
    );
}

#[test]
fn objects_left_under_the_old_key_halt_before_retirement() {
    let d = desired(EncryptionProvider::Secretbox, 0);
    let all = nodes(&[true]);
    let (mut s, _) = written(next(&input(
        &d,
        None,
        &all,
        Rewrite::Pending,
        Check::NotRead,
    )));
    s.step = Step::Migrating;
    let counts = Check::Counts(vec![(s.target.clone(), 198), ("identity".into(), 2)]);
    match next(&input(&d, Some(&s), &all, Rewrite::Complete, counts)) {
        Outcome::Halt(m) => {
            assert!(m.contains("2 under identity"), "{m}");
            assert!(m.contains("nothing is lost"), "{m}");
        }
        other => panic!("expected a halt, got {other:?}"),
    }
    let failed = Check::Failed("connection refused".into());
    match next(&input(&d, Some(&s), &all, Rewrite::Complete, failed)) {
        Outcome::Halt(m) => assert!(
            m.contains("connection refused") && m.contains("verification.etcd"),
            "{m}"
        ),
        other => panic!("expected a halt, got {other:?}"),
    }
}

#[test]
fn a_vanished_keys_secret_halts_and_generates_nothing() {
    let d = desired(EncryptionProvider::Secretbox, 0);
    let all = nodes(&[true]);
    let mut i = input(&d, None, &all, Rewrite::Pending, Check::NotRead);
    i.reported_step = Some("OldKeyRetired");
    match next(&i) {
        Outcome::Halt(m) => {
            assert!(
                m.contains("kube-system/kubeplane-encryption is gone"),
                "{m}"
            );
            assert!(!m.contains(FRESH));
        }
        other => panic!("expected a halt, got {other:?}"),
    }
}

#[test]
fn a_node_that_left_the_selector_holds_the_rotation_until_its_cpn_is_deleted() {
    let d = desired(EncryptionProvider::Secretbox, 0);
    let mut view = nodes(&[true, true, true]);
    let (added, _) = written(next(&input(
        &d,
        None,
        &view,
        Rewrite::Pending,
        Check::NotRead,
    )));
    view[2].selected = false;
    view[2].current = false;
    match next(&input(
        &d,
        Some(&added),
        &view,
        Rewrite::Pending,
        Check::NotRead,
    )) {
        Outcome::Wait(m) => assert!(m.contains("kubectl delete cpn") && m.contains("cp3"), "{m}"),
        other => panic!("expected a wait, got {other:?}"),
    }
    view.pop();
    let (primary, _) = written(next(&input(
        &d,
        Some(&added),
        &view,
        Rewrite::Pending,
        Check::NotRead,
    )));
    assert_eq!(primary.step, Step::KeyPrimary);
}

#[test]
fn no_selected_node_is_no_evidence() {
    let d = desired(EncryptionProvider::Secretbox, 0);
    let (added, _) = written(next(&input(
        &d,
        None,
        &[],
        Rewrite::Pending,
        Check::NotRead,
    )));
    assert!(matches!(
        next(&input(
            &d,
            Some(&added),
            &[],
            Rewrite::Complete,
            Check::NotConfigured
        )),
        Outcome::Wait(_)
    ));
}

#[test]
fn the_interval_and_a_provider_change_start_a_rotation() {
    let mut d = desired(EncryptionProvider::Aesgcm, 0);
    d.interval_seconds = Some(86_400);
    let all = nodes(&[true]);
    let (added, _) = written(next(&input(
        &d,
        None,
        &all,
        Rewrite::Pending,
        Check::NotRead,
    )));
    let t = added.target.clone();
    let (mut rest, _) = rotate_to_rest(&d, added, &t);
    rest.last_rotation_unix = Some(NOW - 86_399);
    assert!(matches!(
        next(&input(
            &d,
            Some(&rest),
            &all,
            Rewrite::Pending,
            Check::NotRead
        )),
        Outcome::Stable(_)
    ));
    rest.last_rotation_unix = Some(NOW - 86_400);
    let Outcome::Write { message, .. } = next(&input(
        &d,
        Some(&rest),
        &all,
        Rewrite::Pending,
        Check::NotRead,
    )) else {
        panic!("expected a rotation")
    };
    assert!(message.contains("intervalDays"), "{message}");

    let to_secretbox = desired(EncryptionProvider::Secretbox, 0);
    rest.last_rotation_unix = Some(NOW);
    let (s, _) = written(next(&input(
        &to_secretbox,
        Some(&rest),
        &all,
        Rewrite::Pending,
        Check::NotRead,
    )));
    assert_eq!(s.keys[1].provider, EncryptionProvider::Secretbox);
    assert_eq!(s.keys[0].provider, EncryptionProvider::Aesgcm);
}

#[test]
fn changed_resources_at_rest_halt_with_the_fix() {
    let d = desired(EncryptionProvider::Secretbox, 0);
    let all = nodes(&[true]);
    let (added, _) = written(next(&input(
        &d,
        None,
        &all,
        Rewrite::Pending,
        Check::NotRead,
    )));
    let t = added.target.clone();
    let (rest, _) = rotate_to_rest(&d, added, &t);
    let mut more = d.clone();
    more.resources.push("configmaps".into());
    match next(&input(
        &more,
        Some(&rest),
        &all,
        Rewrite::Pending,
        Check::NotRead,
    )) {
        Outcome::Halt(m) => assert!(m.contains("set them back to [secrets]"), "{m}"),
        other => panic!("expected a halt, got {other:?}"),
    }
}

#[test]
fn key_names_never_repeat_across_rotations() {
    let all = nodes(&[true]);
    let mut names = std::collections::BTreeSet::new();
    let d0 = desired(EncryptionProvider::Secretbox, 0);
    let (mut s, _) = written(next(&input(
        &d0,
        None,
        &all,
        Rewrite::Pending,
        Check::NotRead,
    )));
    for generation in 1..=5 {
        let t = s.target.clone();
        assert!(names.insert(t.clone()), "{t} reused");
        let d = desired(EncryptionProvider::Secretbox, generation - 1);
        let (rest, _) = rotate_to_rest(&d, s, &t);
        let d = desired(EncryptionProvider::Secretbox, generation);
        s = written(next(&input(
            &d,
            Some(&rest),
            &all,
            Rewrite::Pending,
            Check::NotRead,
        )))
        .0;
    }
}

/// The configuration every node gets at each step of turning encryption on and one rotation,
/// byte for byte.
#[test]
fn the_configuration_at_each_step() {
    let d0 = desired(EncryptionProvider::Secretbox, 0);
    let all = nodes(&[true]);
    let header = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources:\n  - secrets\n  providers:\n";
    let k = |n: &str| {
        format!("  - secretbox:\n      keys:\n      - name: {n}-{NOW}\n        secret: {FRESH}\n")
    };
    let id = "  - identity: {}\n";
    let mut s = written(next(&input(
        &d0,
        None,
        &all,
        Rewrite::Pending,
        Check::NotRead,
    )))
    .0;
    let mut seen = vec![(s.step, s.render())];
    let mut d = d0.clone();
    for _ in 0..10 {
        let o = next(&input(
            &d,
            Some(&s),
            &all,
            Rewrite::Complete,
            Check::NotConfigured,
        ));
        match o {
            Outcome::Write { state, .. } => s = state,
            Outcome::Stable(_) => d = desired(EncryptionProvider::Secretbox, 1),
            other => panic!("{other:?}"),
        }
        if seen.last().map(|x| x.0) != Some(s.step) {
            seen.push((s.step, s.render()));
        }
    }
    let expected = vec![
        (Step::KeyAdded, format!("{header}{id}{}", k("key1"))),
        (Step::KeyPrimary, format!("{header}{}{id}", k("key1"))),
        (Step::Migrating, format!("{header}{}{id}", k("key1"))),
        (Step::Migrated, format!("{header}{}{id}", k("key1"))),
        (Step::OldKeyRetired, format!("{header}{}", k("key1"))),
        (
            Step::KeyAdded,
            format!("{header}{}{}", k("key1"), k("key2")),
        ),
        (
            Step::KeyPrimary,
            format!("{header}{}{}", k("key2"), k("key1")),
        ),
        (
            Step::Migrating,
            format!("{header}{}{}", k("key2"), k("key1")),
        ),
        (
            Step::Migrated,
            format!("{header}{}{}", k("key2"), k("key1")),
        ),
        (Step::OldKeyRetired, format!("{header}{}", k("key2"))),
    ];
    assert_eq!(seen, expected);
}
