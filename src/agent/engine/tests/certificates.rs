//! A renewed certificate restarts the component that loads it.

use super::*;

#[tokio::test(start_paused = true)]
async fn renewed_certificate_restarts_its_component_with_a_new_hash() {
    let env = env();
    let mut spec = node_spec(&[], &[], &env);
    let kc = env
        .dirs
        .state_dir()
        .parent()
        .unwrap()
        .join("scheduler.conf");
    let write_kc = |year: i32| {
        use base64::Engine as _;
        let pem = crate::agent::certs::tests::pem_cert("system:kube-scheduler", year);
        let b64 = base64::engine::general_purpose::STANDARD.encode(pem);
        std::fs::write(
            &kc,
            format!("users:\n- name: u\n  user:\n    client-certificate-data: {b64}\n"),
        )
        .unwrap();
    };
    write_kc(2030);
    spec.certificates = vec![CertificateRef {
        component: Component::Scheduler,
        flag: "kubeconfig".into(),
        path: kc.display().to_string(),
        kubeconfig: true,
    }];
    let mut engine = env.engine();
    assert_eq!(engine.apply(&spec, None, true).await, Outcome::Healthy);
    assert!(
        engine.restart_for_certificates().await.is_empty(),
        "nothing changed yet"
    );
    let status = env.last_status().await;
    assert_eq!(
        status["certificates"][0]["notAfter"],
        "2030-01-02T00:00:00Z"
    );

    write_kc(2031);
    let api_inode = env.inode(Component::ApiServer);
    assert_eq!(
        engine.restart_for_certificates().await,
        vec![Component::Scheduler]
    );
    let text = String::from_utf8(env.manifest(Component::Scheduler)).unwrap();
    assert!(
        text.contains("kubeplane.io/certificates-sha256: "),
        "{text}"
    );
    let new_hash = Kubelet::hash_of(text.as_bytes());
    assert_ne!(new_hash, hash_of(&spec, Component::Scheduler));
    assert_eq!(
        env.cluster.pod("kube-scheduler-cp-1").unwrap().hash,
        new_hash
    );
    assert_eq!(env.inode(Component::ApiServer), api_inode);
    let status = env.last_status().await;
    assert_eq!(
        status["certificates"][0]["notAfter"],
        "2031-01-02T00:00:00Z"
    );
    assert!(
        env.event_reasons()
            .contains(&"CertificateRestarted".to_string())
    );

    // The annotated manifest is the target from now on: a re-apply keeps it, and a
    // restarted engine enforces it.
    let inode = env.inode(Component::Scheduler);
    assert_eq!(engine.apply(&spec, None, true).await, Outcome::Healthy);
    assert_eq!(env.inode(Component::Scheduler), inode);
    let engine2 = env.engine();
    assert_eq!(
        engine2.desired().lock().get(Component::Scheduler),
        Some(text.as_bytes())
    );
}
