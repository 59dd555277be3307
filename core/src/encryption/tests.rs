use super::*;
use crate::api::{KeyRotation, ManagedEncryption, Migration};

fn key(name: &str, provider: EncryptionProvider, secret: &str) -> Key {
    Key {
        name: name.into(),
        provider,
        secret: secret.into(),
    }
}

#[test]
fn the_configuration_is_byte_for_byte_the_documented_shape() {
    let keys = vec![
        key("key2-20", EncryptionProvider::Secretbox, "TkVX"),
        key("key1-10", EncryptionProvider::Aescbc, "T0xE"),
        Key::identity(),
    ];
    let expected = "\
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources:
  - secrets
  - configmaps
  providers:
  - secretbox:
      keys:
      - name: key2-20
        secret: TkVX
  - aescbc:
      keys:
      - name: key1-10
        secret: T0xE
  - identity: {}
";
    assert_eq!(
        render_config(&["secrets".into(), "configmaps".into()], &keys),
        expected
    );
}

#[test]
fn the_rendered_configuration_parses_as_yaml_with_the_keys_in_order() {
    let state = KeyState {
        step: Step::KeyAdded,
        resources: vec!["secrets".into()],
        keys: vec![
            Key::identity(),
            key("key1-1", EncryptionProvider::Aesgcm, "QUJD"),
        ],
        target: "key1-1".into(),
        observed_rotation: 0,
        serial: 1,
        last_rotation_unix: None,
    };
    let v: serde_json::Value = serde_saphyr::from_str(&state.render()).expect("valid YAML");
    let providers = &v["resources"][0]["providers"];
    assert!(providers[0]["identity"].is_object());
    assert_eq!(providers[1]["aesgcm"]["keys"][0]["name"], "key1-1");
    assert_eq!(providers[1]["aesgcm"]["keys"][0]["secret"], "QUJD");
    assert_eq!(state.config_sha256().len(), 64);
    assert_ne!(state.config_sha256(), {
        let mut s = state.clone();
        s.keys.reverse();
        s.config_sha256()
    });
}

#[test]
fn key_material_never_shows_in_debug_output() {
    let state = KeyState {
        step: Step::KeyPrimary,
        resources: vec!["secrets".into()],
        keys: vec![key(
            "key1-1",
            EncryptionProvider::Secretbox,
            "c3VwZXJzZWNyZXQ=",
        )],
        target: "key1-1".into(),
        observed_rotation: 0,
        serial: 1,
        last_rotation_unix: None,
    };
    let printed = format!("{state:?} {:?}", state.keys[0]);
    assert!(!printed.contains("c3VwZXJzZWNyZXQ="), "{printed}");
    assert!(printed.contains("key1-1") && printed.contains("<redacted>"));
}

#[test]
fn the_state_round_trips_through_json() {
    let state = KeyState {
        step: Step::Migrating,
        resources: vec!["secrets".into()],
        keys: vec![
            key("key2-2", EncryptionProvider::Secretbox, "TkVX"),
            Key::identity(),
        ],
        target: "key2-2".into(),
        observed_rotation: 3,
        serial: 2,
        last_rotation_unix: Some(5),
    };
    let json = serde_json::to_string(&state).unwrap();
    assert_eq!(serde_json::from_str::<KeyState>(&json).unwrap(), state);
}

#[test]
fn stored_prefixes_name_their_key() {
    assert_eq!(
        classify_stored(b"k8s\x00\x0a\x0c\x0a\x02v1"),
        StoredKey::Identity
    );
    assert_eq!(
        classify_stored(b"{\"kind\":\"Secret\"}"),
        StoredKey::Identity
    );
    assert_eq!(
        classify_stored(b"k8s:enc:secretbox:v1:key2-17:\x01\x02:x"),
        StoredKey::Key {
            provider: "secretbox".into(),
            name: "key2-17".into()
        }
    );
    assert_eq!(
        classify_stored(b"k8s:enc:aescbc:v1:key1-1:abc").name(),
        "key1-1"
    );
    // A KMS v2 value or a damaged prefix: a key, never identity, so it blocks retirement.
    assert_eq!(
        classify_stored(b"k8s:enc:kms:v2:"),
        StoredKey::Key {
            provider: "kms".into(),
            name: String::new()
        }
    );
}

#[test]
fn etcd_prefixes_of_core_and_grouped_resources() {
    assert_eq!(etcd_prefix("/registry", "secrets"), "/registry/secrets/");
    assert_eq!(
        etcd_prefix("/registry/", "configmaps"),
        "/registry/configmaps/"
    );
    assert_eq!(
        etcd_prefix("/registry", "widgets.example.com"),
        "/registry/example.com/widgets/"
    );
}

#[test]
fn defaults_of_the_managed_spec() {
    let d = Desired::from_spec(&ManagedEncryption::default());
    assert_eq!(d.provider, EncryptionProvider::Secretbox);
    assert_eq!(d.resources, vec!["secrets".to_string()]);
    assert_eq!(d.rotation, 0);
    assert_eq!(d.interval_seconds, None);
    assert_eq!(d.objects_per_second, DEFAULT_OBJECTS_PER_SECOND);
    assert_eq!(d.secret_name, DEFAULT_SECRET_NAME);
    let d = Desired::from_spec(&ManagedEncryption {
        rotation: Some(KeyRotation {
            generation: Some(4),
            interval_days: Some(30),
        }),
        migration: Some(Migration {
            objects_per_second: Some(7),
        }),
        ..Default::default()
    });
    assert_eq!(
        (d.rotation, d.interval_seconds, d.objects_per_second),
        (4, Some(2_592_000), 7)
    );
}
