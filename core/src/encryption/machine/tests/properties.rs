//! Property tests.

use super::*;

fn any_state() -> impl Strategy<Value = KeyState> {
    let steps = prop_oneof![
        Just(Step::KeyAdded),
        Just(Step::KeyPrimary),
        Just(Step::Migrating),
        Just(Step::Migrated),
        Just(Step::OldKeyRetired),
    ];
    (steps, 0u32..3, any::<bool>()).prop_map(|(step, serial, off)| {
        let old = Key {
            name: "key1-1".into(),
            provider: EncryptionProvider::Aescbc,
            secret: "b2xk".into(),
        };
        let new = if off {
            Key::identity()
        } else {
            Key {
                name: "key2-2".into(),
                provider: EncryptionProvider::Secretbox,
                secret: "bmV3".into(),
            }
        };
        let keys = match step {
            Step::KeyAdded => vec![old, new.clone()],
            Step::OldKeyRetired => vec![new.clone()],
            _ => vec![new.clone(), old],
        };
        KeyState {
            step,
            resources: vec!["secrets".into()],
            keys,
            target: new.name,
            observed_rotation: 0,
            serial,
            last_rotation_unix: Some(0),
        }
    })
}

fn any_check() -> impl Strategy<Value = Check> {
    prop_oneof![
        Just(Check::NotConfigured),
        Just(Check::NotRead),
        Just(Check::Failed("x".into())),
        (0i64..3, 0i64..3).prop_map(|(a, b)| Check::Counts(vec![
            ("key1-1".into(), a),
            ("key2-2".into(), b),
            ("identity".into(), a)
        ])),
    ]
}

proptest! {
    /// Whatever the nodes, the rewrite and the check say, and whatever an operator restart
    /// replays: a key leaves the configuration only from `Migrated` with every node current,
    /// keys are never reordered before every node reads the new one, and the same input
    /// always gives the same decision.
    #[test]
    fn no_key_is_removed_before_its_objects_are_rewritten(
        state in any_state(),
        current in proptest::collection::vec(any::<bool>(), 0..4),
        complete in any::<bool>(),
        check in any_check(),
        generation in 0i64..2,
    ) {
        let d = desired(EncryptionProvider::Secretbox, generation);
        let view = nodes(&current);
        let rewrite = if complete { Rewrite::Complete } else { Rewrite::Pending };
        let i = input(&d, Some(&state), &view, rewrite, check);
        let o = next(&i);
        prop_assert_eq!(&o, &next(&i));
        let rolled = !current.is_empty() && current.iter().all(|c| *c);
        if let Outcome::Write { state: after, retire, .. } = &o {
            // Every step, including the start of a rotation, waits for every node.
            prop_assert!(rolled);
            let dropped: Vec<&Key> = state.keys.iter().filter(|k| !after.keys.iter().any(|a| a.name == k.name)).collect();
            if !dropped.is_empty() {
                prop_assert_eq!(state.step, Step::Migrated);
                prop_assert!(rolled);
                for k in dropped.iter().filter(|k| !k.is_identity()) {
                    prop_assert!(retire.iter().any(|r| r.name == k.name), "{} not backed up", k.name);
                }
            }
            if after.keys.first().map(|k| &k.name) != state.keys.first().map(|k| &k.name) {
                prop_assert_eq!(state.step, Step::KeyAdded);
            }
        }
    }
}
