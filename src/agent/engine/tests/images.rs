//! Images before restarts (issue 13): pulled through the runtime before any file is written.

use super::*;

/// The fake kubelet's containers, and an image store.
struct WithImages {
    containers: crate::agent::fixtures::FakeRuntime,
    images: crate::agent::runtime::fake::FakeRuntime,
}

impl crate::agent::runtime::ContainerRuntime for WithImages {
    fn containers_of_pod<'a>(
        &'a self,
        pod_uid: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Vec<crate::agent::runtime::ContainerSeen>, String>>
    {
        self.containers.containers_of_pod(pod_uid)
    }

    fn image_present<'a>(
        &'a self,
        image: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<bool, String>> {
        self.images.image_present(image)
    }

    fn pull_image<'a>(
        &'a self,
        image: &'a str,
        auth: Option<&'a crate::agent::pull_auth::RegistryAuth>,
        timeout: Duration,
    ) -> futures::future::BoxFuture<'a, Result<String, String>> {
        self.images.pull_image(image, auth, timeout)
    }
}

impl Env {
    fn engine_with_images(&self, images: &crate::agent::runtime::fake::FakeRuntime) -> Engine {
        Engine::open(EngineParts {
            node_name: NODE.into(),
            dirs: self.dirs.clone(),
            history: 5,
            pods: Some(Arc::new(KubeMirrorPods::new(self.client.clone()))),
            runtime: Some(Arc::new(WithImages {
                containers: crate::agent::fixtures::FakeRuntime(self.kubelet.clone()),
                images: images.clone(),
            })),
            health: Arc::new(FakeHealth(self.kubelet.clone())),
            secrets: Arc::new(KubeSecrets::new(self.client.clone())),
            board: self.board.clone(),
            desired: Arc::new(Desired::new()),
        })
        .unwrap()
    }
}

fn image_of(spec: &ControlPlaneNodeSpec, c: Component) -> String {
    crate::agent::engine::images_to_pull(&content_of(spec, c))
        .pop()
        .unwrap()
}

/// The test's spec with the images from another registry.
fn node_spec_from(repo: &str, api_args: &[(&str, &str)], env: &Env) -> ControlPlaneNodeSpec {
    let facts = facts_in(env.dirs.state_dir());
    let mut spec = config(api_args, &[]);
    spec.image_repository = Some(repo.into());
    node_spec_for(&spec, &facts)
}

const COMPONENTS: [Component; 3] = [
    Component::ApiServer,
    Component::ControllerManager,
    Component::Scheduler,
];

/// An engine with an image store holding every image of the test's spec, and that spec
/// applied.
async fn healthy_with_every_image(env: &Env) -> (crate::agent::runtime::fake::FakeRuntime, Engine) {
    let images = crate::agent::runtime::fake::FakeRuntime::new();
    let good = node_spec(&[], &[], env);
    images.images(|i| i.present.extend(COMPONENTS.map(|c| image_of(&good, c))));
    let mut engine = env.engine_with_images(&images);
    assert_eq!(engine.apply(&good, None, true).await, Outcome::Healthy);
    (images, engine)
}

#[tokio::test(start_paused = true)]
async fn missing_images_are_pulled_before_the_write() {
    let env = env();
    let (images, mut engine) = healthy_with_every_image(&env).await;
    // Every image present: nothing pulled.
    assert!(images.images(|i| i.pulls.is_empty()));
    // A revision whose images come from another registry: pulled, in apply order, then
    // written.
    let next = node_spec_from("registry.example", &[], &env);
    let wanted = COMPONENTS.map(|c| image_of(&next, c));
    assert_eq!(wanted[0], "registry.example/kube-apiserver:v1.36.2");
    images.images(|i| i.pull_time = Duration::from_secs(20));
    assert_eq!(engine.apply(&next, None, true).await, Outcome::Healthy);
    assert_eq!(images.images(|i| i.pulls.clone()), wanted);
    for c in COMPONENTS {
        assert_eq!(env.manifest(c), content_of(&next, c));
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_pull_writes_nothing_and_fails_the_revision() {
    let env = env();
    let (images, mut engine) = healthy_with_every_image(&env).await;
    let before = COMPONENTS.map(|c| (env.manifest(c), env.inode(c)));
    let next = node_spec_from("registry.example", &[], &env);
    // kube-apiserver's image pulls, kube-controller-manager's does not.
    images.images(|i| {
        i.failing.insert(
            image_of(&next, Component::ControllerManager),
            "manifest unknown".into(),
        )
    });
    let out = engine.apply(&next, None, true).await;
    let message = failed(&out, "ImagePullFailed");
    assert!(
        message.contains("manifest unknown") && message.contains("nothing was written"),
        "{message}"
    );
    assert_eq!(
        COMPONENTS.map(|c| (env.manifest(c), env.inode(c))),
        before,
        "no manifest written, not even kube-apiserver's whose image pulled"
    );
    let status = env.last_status().await;
    assert_eq!(status["phase"], "Failed");
    assert_eq!(status["reason"], "ImagePullFailed");
    assert!(matches!(
        env.lifecycle(),
        crate::agent::state::Lifecycle::Settled { .. }
    ));
    // Without an image service (the runtime cannot say), kubelet pulls as before.
    let env2 = super::env();
    let mut plain = env2.local_engine();
    assert_eq!(
        plain
            .apply(&node_spec_from("registry.example", &[], &env2), None, true)
            .await,
        Outcome::Healthy
    );
}

#[test]
fn images_to_pull_skips_never_and_reads_init_containers() {
    let pod = br#"apiVersion: v1
kind: Pod
metadata: {name: x}
spec:
  initContainers:
  - {name: i, image: "registry.k8s.io/busybox:1"}
  containers:
  - {name: a, image: "registry.k8s.io/kube-apiserver:v1.36.2"}
  - {name: b, image: "local/only:v1", imagePullPolicy: Never}
"#;
    assert_eq!(
        crate::agent::engine::images_to_pull(pod),
        [
            "registry.k8s.io/busybox:1",
            "registry.k8s.io/kube-apiserver:v1.36.2"
        ]
    );
    assert!(crate::agent::engine::images_to_pull(b"not yaml: [").is_empty());
}

/// The test's spec from `repo`, with `spec.imagePullSecrets` naming `secrets`.
fn node_spec_with_pull_secrets(repo: &str, secrets: &[&str], env: &Env) -> ControlPlaneNodeSpec {
    let mut spec = node_spec_from(repo, &[], env);
    spec.image_pull_secrets = secrets
        .iter()
        .map(|n| crate::api::ImagePullSecretRef {
            name: n.to_string(),
            namespace: None,
        })
        .collect();
    spec
}

#[tokio::test(start_paused = true)]
async fn pulls_carry_the_credentials_of_the_matching_pull_secret() {
    use base64::Engine as _;
    let env = env();
    let (images, mut engine) = healthy_with_every_image(&env).await;
    let auth = base64::engine::general_purpose::STANDARD.encode("puller:s3cret-token");
    let other = base64::engine::general_purpose::STANDARD.encode("someone:else");
    env.cluster.set_secret(
        "kube-system",
        "regcred",
        ".dockerconfigjson",
        format!(
            r#"{{"auths": {{"registry.example:5000": {{"auth": "{auth}"}}, "ghcr.io": {{"auth": "{other}"}}}}}}"#
        )
        .as_bytes(),
    );
    let next = node_spec_with_pull_secrets("registry.example:5000/k8s", &["regcred"], &env);
    assert_eq!(engine.apply(&next, None, true).await, Outcome::Healthy);
    assert_eq!(
        images.images(|i| i.pull_users.clone()),
        vec![Some("puller".to_string()); 3],
        "every pull from registry.example:5000 with its entry's user"
    );
    // An image from a registry the Secret has no entry for: no credentials.
    let third = node_spec_with_pull_secrets("quay.example/k8s", &["regcred"], &env);
    assert_eq!(engine.apply(&third, None, true).await, Outcome::Healthy);
    assert_eq!(
        images.images(|i| i.pull_users[3..].to_vec()),
        [None, None, None]
    );
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_pull_secret_writes_nothing_and_never_shows_its_content() {
    let env = env();
    let (images, mut engine) = healthy_with_every_image(&env).await;
    let before = COMPONENTS.map(|c| (env.manifest(c), env.inode(c)));
    // Missing: the revision fails naming the Secret.
    let next = node_spec_with_pull_secrets("registry.example:5000/k8s", &["absent"], &env);
    let out = engine.apply(&next, None, true).await;
    let message = failed(&out, "ImagePullFailed").to_string();
    assert!(
        message.contains("kube-system/absent") && message.contains("nothing was written"),
        "{message}"
    );
    // Not docker config JSON: refused without quoting it.
    env.cluster.set_secret(
        "kube-system",
        "garbled",
        ".dockerconfigjson",
        b"user=admin password=hunter2",
    );
    let next = node_spec_with_pull_secrets("registry.example:6000/k8s", &["garbled"], &env);
    let out = engine.apply(&next, None, true).await;
    let message = failed(&out, "ImagePullFailed").to_string();
    assert!(
        message.contains("Secret kube-system/garbled: not docker config JSON"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
    let status = env.last_status().await.to_string();
    assert!(!status.contains("hunter2"), "{status}");
    assert!(images.images(|i| i.pulls.is_empty()), "nothing pulled");
    assert_eq!(COMPONENTS.map(|c| (env.manifest(c), env.inode(c))), before);
}
