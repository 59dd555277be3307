//! What [`Scenario::start_with`] does before the scenario runs: the client, the CRDs, the
//! node, and the processes.

use super::*;

pub(super) async fn client(s: &Settings) -> Client {
    let kc = Kubeconfig::read_from(&s.kubeconfig)
        .unwrap_or_else(|e| panic!("read {}: {e}", s.kubeconfig.display()));
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("kubeconfig {}: {e}", s.kubeconfig.display()));
    Client::try_from(config).expect("a Kubernetes client")
}

/// `kubeplane crd`, server-side applied, then Established.
pub(super) async fn install_crds(client: &Client, s: &Settings) {
    let timeout = s.timeout;
    let out = Command::new(&s.kubeplane)
        .arg("crd")
        .output()
        .expect("run kubeplane crd");
    assert!(out.status.success(), "kubeplane crd failed");
    let docs: Vec<CustomResourceDefinition> =
        serde_saphyr::from_multiple(std::str::from_utf8(&out.stdout).expect("UTF-8"))
            .expect("kubeplane crd prints CustomResourceDefinitions");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply("kubeplane-e2e").force();
    for crd in &docs {
        let name = crd.name_any();
        api.patch(&name, &params, &Patch::Apply(crd))
            .await
            .unwrap_or_else(|e| panic!("apply CRD {name}: {e}"));
    }
    for crd in &docs {
        let name = crd.name_any();
        let established = kube::runtime::wait::await_condition(
            api.clone(),
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        );
        tokio::time::timeout(timeout, established)
            .await
            .unwrap_or_else(|_| panic!("CRD {name} not Established within {timeout:?}"))
            .unwrap_or_else(|e| panic!("watching CRD {name}: {e}"));
    }
}

/// The node to run on: the setting, else the only control-plane Node, else this host.
pub(super) async fn find_node(client: &Client, s: &Settings) -> (String, String) {
    let nodes: Api<Node> = Api::all(client.clone());
    let name = match &s.node {
        Some(n) => n.clone(),
        None => {
            let cp = nodes
                .list_metadata(
                    &ListParams::default().labels("node-role.kubernetes.io/control-plane"),
                )
                .await
                .expect("list Nodes");
            let host = fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap_or_default()
                .trim()
                .to_lowercase();
            match cp.items.as_slice() {
                [one] => one.name_any(),
                _ if !host.is_empty() => host,
                _ => panic!("cannot tell which Node this is: set {}", settings::NODE),
            }
        }
    };
    let node = nodes.get_opt(&name).await.expect("get Node").unwrap_or_else(|| {
        panic!(
            "Node {name} does not exist: set {} to the name of the control-plane node this suite runs on",
            settings::NODE
        )
    });
    let label = node
        .labels()
        .get("kubernetes.io/hostname")
        .cloned()
        .unwrap_or_else(|| panic!("Node {name} has no kubernetes.io/hostname label"));
    (name, label)
}

/// Deletes what an interrupted earlier run left; refuses a cluster where another kubeplane
/// configures this node.
pub(super) async fn refuse_foreign_kubeplane(client: &Client, kubectl: &Kubectl, node: &str) {
    let cpcs: Api<ControlPlaneConfig> = Api::all(client.clone());
    for c in cpcs
        .list(&ListParams::default())
        .await
        .expect("list ControlPlaneConfigs")
    {
        let name = c.name_any();
        if name.starts_with(PREFIX) {
            eprintln!("deleting ControlPlaneConfig {name}, left by an earlier run");
            let _ = cpcs.delete(&name, &DeleteParams::default()).await;
        } else {
            panic!(
                "ControlPlaneConfig {name} exists: kubeplane is in use on this cluster, and the suite's operator would reconcile that config too. Run the suite on a cluster without kubeplane."
            );
        }
    }
    let cpns: Api<ControlPlaneNode> = Api::all(client.clone());
    if let Some(c) = cpns.get_opt(node).await.expect("get ControlPlaneNode") {
        let owner = c.labels().get(CONFIG_LABEL).cloned().unwrap_or_default();
        if owner.is_empty() || owner.starts_with(PREFIX) {
            eprintln!("deleting ControlPlaneNode {node}, left by an earlier run");
            let _ = kubectl.run(
                &["delete", "controlplanenode", node, "--ignore-not-found"],
                None,
            );
        } else {
            panic!("ControlPlaneNode {node} belongs to ControlPlaneConfig {owner}");
        }
    }
}

pub(super) fn same_filesystem(a: &Path, b: &Path) -> bool {
    let dev = |p: &Path| {
        p.ancestors()
            .find_map(|x| fs::metadata(x).ok())
            .map(|m| m.dev())
    };
    dev(a) == dev(b)
}

pub(super) fn spawn(
    name: &'static str,
    args: &[String],
    s: &Settings,
    dir: &Path,
    port: u16,
) -> Proc {
    spawn_logged(name, &format!("{name}.log"), args, s, dir, port)
}

pub(super) fn spawn_logged(
    name: &'static str,
    log_name: &str,
    args: &[String],
    s: &Settings,
    dir: &Path,
    port: u16,
) -> Proc {
    let log = dir.join(log_name);
    let child = Command::new(&s.kubeplane)
        .args(args)
        .env("KUBECONFIG", &s.kubeconfig)
        .env("KUBEPLANE_LOG", "info,kubeplane=debug")
        .env_remove("NODE_NAME")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).expect("log file"))
        .spawn()
        .unwrap_or_else(|e| panic!("start kubeplane {name}: {e}"));
    Proc {
        name,
        child,
        log,
        port,
    }
}
