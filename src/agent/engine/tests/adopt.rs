//! kubeadm's own manifests: equivalent ones adopted without a restart, the baseline
//! restored when the first revision fails.

use super::*;

fn kubeadm_facts(env: &Env) -> NodeFacts {
    kubeadm_facts_in(env.dirs.state_dir())
}

/// The facts of a kubeadm node whose state directory is `state_dir`.
fn kubeadm_facts_in(state_dir: &Path) -> NodeFacts {
    NodeFacts {
        host_ca_directories: vec![
            "/etc/ca-certificates".into(),
            "/usr/local/share/ca-certificates".into(),
            "/usr/share/ca-certificates".into(),
        ],
        ..facts_in(state_dir)
    }
}

fn kubeadm_defaults() -> ControlPlaneConfigSpec {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/kubeadm-defaults.yaml"
    ))
    .unwrap();
    crate::api::parse_config(&text).unwrap().spec
}

fn copy_kubeadm_fixtures(dir: &Path) {
    for c in Component::ALL {
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/kubeadm-v1.36.2")
                .join(c.manifest_file()),
            dir.join(c.manifest_file()),
        )
        .unwrap();
    }
}

#[test]
fn kubeadm_manifests_are_equivalent_to_the_kubeadm_defaults_render() {
    let tmp = tempfile::tempdir().unwrap();
    let facts = kubeadm_facts_in(tmp.path());
    let r = render::render(&RenderInput {
        spec: &kubeadm_defaults(),
        node: &facts,
        encryption_config_sha256: None,
    })
    .unwrap();
    for p in &r.pods {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/kubeadm-v1.36.2")
            .join(p.component.manifest_file());
        let kubeadm: k8s_openapi::api::core::v1::Pod =
            serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        if !render::equivalent(&kubeadm, &p.pod) {
            let a = serde_json::to_value(render::normalize(&kubeadm)).unwrap();
            let b = serde_json::to_value(render::normalize(&p.pod)).unwrap();
            panic!(
                "{}:\n{}\n---\n{}",
                p.component,
                serde_json::to_string_pretty(&a).unwrap(),
                serde_json::to_string_pretty(&b).unwrap()
            );
        }
        // One flag changed is not equivalent.
        let mut changed = kubeadm.clone();
        changed.spec.as_mut().unwrap().containers[0]
            .command
            .as_mut()
            .unwrap()
            .push("--v=2".into());
        assert!(!render::equivalent(&changed, &p.pod));
    }
}

#[tokio::test(start_paused = true)]
async fn kubeadm_manifests_are_adopted_not_rewritten() {
    let env = env();
    copy_kubeadm_fixtures(env.dirs.manifest_dir());
    env.kubelet.sync();
    let before: Vec<(Vec<u8>, u64)> = Component::ALL
        .iter()
        .map(|c| (env.manifest(*c), env.inode(*c)))
        .collect();
    let spec = node_spec_for(&kubeadm_defaults(), &kubeadm_facts(&env));
    let mut engine = env.engine();
    assert_eq!(engine.apply(&spec, None, true).await, Outcome::Healthy);
    let after: Vec<(Vec<u8>, u64)> = Component::ALL
        .iter()
        .map(|c| (env.manifest(*c), env.inode(*c)))
        .collect();
    assert_eq!(before, after, "an adopted manifest was rewritten");
    for c in Component::ALL {
        let cs = &engine.state().components[&c];
        assert!(cs.adopted && cs.confirmed, "{c}: {cs:?}");
        // The hash kubelet computed for the kubeadm file is remembered as the expected one.
        assert_eq!(
            cs.config_hash.as_deref(),
            Some(Kubelet::hash_of(&env.manifest(c)).as_str())
        );
    }
    let status = env.last_status().await;
    assert_eq!(status["phase"], "Healthy");
    assert_eq!(
        status["components"][2]["observedHash"],
        Kubelet::hash_of(&env.manifest(Component::Scheduler)).as_str()
    );
    // A restarted engine with the same spec does not rewrite either.
    let mut engine = env.engine();
    assert_eq!(engine.apply(&spec, None, true).await, Outcome::Healthy);
    assert_eq!(env.inode(Component::Scheduler), after[2].1);
}

#[tokio::test(start_paused = true)]
async fn a_changed_kubeadm_flag_is_written_and_the_baseline_restores_on_failure() {
    let env = env();
    copy_kubeadm_fixtures(env.dirs.manifest_dir());
    env.kubelet.sync();
    let kubeadm_scheduler = env.manifest(Component::Scheduler);
    let mut cfg = kubeadm_defaults();
    cfg.scheduler = Some(
        serde_json::from_value(serde_json::json!({"extraArgs": [{"name": "v", "value": "4"}]}))
            .unwrap(),
    );
    let spec = node_spec_for(&cfg, &kubeadm_facts(&env));
    let h = hash_of(&spec, Component::Scheduler);
    env.kubelet.fail(h.clone(), Behaviour::crashing());
    let mut engine = env.engine();
    let out = engine.apply(&spec, None, true).await;
    let Outcome::RolledBack { message, .. } = &out else {
        panic!("{out:?}")
    };
    assert!(
        message.contains("restored the manifests found before kubeplane's first write (history entry pre-kubeplane), healthy again"),
        "{message}"
    );
    let restored =
        crate::agent::engine::restored_manifest(&kubeadm_scheduler, &spec.revision, NODE).0;
    assert_eq!(env.manifest(Component::Scheduler), restored);
    let on_disk = crate::agent::files::parse_pod(&env.manifest(Component::Scheduler)).unwrap();
    let kubeadm = crate::agent::files::parse_pod(&kubeadm_scheduler).unwrap();
    assert_eq!(
        on_disk.spec, kubeadm.spec,
        "the baseline Pod itself is restored"
    );
    assert_eq!(
        on_disk.metadata.annotations.unwrap()[crate::agent::engine::RESTORED_ANNOTATION],
        spec.revision
    );
    assert!(
        on_disk.metadata.uid.is_some(),
        "a uid kubelet reports, so the wait is exact"
    );
}
