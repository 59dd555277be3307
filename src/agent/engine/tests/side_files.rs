//! Secret-backed side files and their rendered digest.

use super::*;

#[tokio::test(start_paused = true)]
async fn secret_backed_file_is_written_when_its_digest_matches_and_refused_when_not() {
    let env = env();
    let mut cfg = config(&[], &[]);
    cfg.api_server = Some(
        serde_json::from_value(serde_json::json!({"encryption": {"secretRef": {"name": "enc"}}}))
            .unwrap(),
    );
    let facts = facts_in(env.dirs.state_dir());
    let content = b"kind: EncryptionConfiguration\n";
    let digest = render::sha256_hex(content);
    let r = render::render(&RenderInput {
        spec: &cfg,
        node: &facts,
        encryption_config_sha256: Some(&digest),
    })
    .unwrap();
    let spec = render::node_spec("test", &cfg, &render::revision(&cfg, Some(&digest)), &r);

    // The Secret changed after rendering: nothing is written.
    env.cluster
        .set_secret("kube-system", "enc", "config.yaml", b"something else");
    let mut engine = env.engine();
    let out = engine.apply(&spec, None, true).await;
    let Outcome::Pending {
        reason,
        message,
        retry,
    } = &out
    else {
        panic!("{out:?}")
    };
    assert_eq!(reason, "SecretChanged");
    assert!(*retry);
    assert!(
        message.contains("the Secret changed after rendering"),
        "{message}"
    );
    assert_eq!(
        std::fs::read_dir(env.dirs.manifest_dir()).unwrap().count(),
        0
    );
    let get = env
        .cluster
        .requests()
        .into_iter()
        .find(|r| r.path.contains("/secrets/"))
        .unwrap();
    assert_eq!(get.method, "GET");
    assert_eq!(get.path, "/api/v1/namespaces/kube-system/secrets/enc");
    assert_eq!(env.last_status().await["reason"], "SecretChanged");

    env.cluster
        .set_secret("kube-system", "enc", "config.yaml", content);
    assert_eq!(engine.apply(&spec, None, true).await, Outcome::Healthy);
    let path = env
        .dirs
        .files_dir()
        .join("kube-apiserver/encryption-config.yaml");
    assert_eq!(std::fs::read(&path).unwrap(), content);
}
