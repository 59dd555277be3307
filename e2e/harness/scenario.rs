//! The scenario's processes, configs and waits.

use super::*;

impl Scenario {
    /// Undoes the scenario and fails the test when the control plane could not be put back.
    /// The port of the agent's /healthz, /readyz, /metrics on 127.0.0.1.
    pub fn agent_port(&self) -> u16 {
        self.cleanup
            .procs
            .iter()
            .find(|p| p.name == "agent")
            .map(|p| p.port)
            .expect("the agent process")
    }

    /// The agent's pid (the process is not reaped until [`Scenario::restart_agent`]).
    pub fn agent_pid(&self) -> i32 {
        self.cleanup
            .procs
            .iter()
            .find(|p| p.name == "agent")
            .map(|p| p.child.id() as i32)
            .expect("the agent process")
    }

    /// Reaps the agent (SIGKILLed by the caller, or killed here) and starts it again with
    /// the same command line; its log goes to `agent-<n>.log`. Returns the new log's path.
    pub fn restart_agent(&mut self) -> PathBuf {
        let i = self
            .cleanup
            .procs
            .iter()
            .position(|p| p.name == "agent")
            .expect("the agent process");
        let mut old = self.cleanup.procs.remove(i);
        let _ = old.child.kill();
        let _ = old.child.wait();
        self.agent_runs += 1;
        let p = spawn_logged(
            "agent",
            &format!("agent-{}.log", self.agent_runs),
            &self.agent_args,
            &self.settings,
            &self.dir,
            old.port,
        );
        let log = p.log.clone();
        self.cleanup.procs.push(p);
        log
    }

    pub fn finish(mut self) {
        let problems = self.cleanup.run();
        assert!(
            problems.is_empty(),
            "cleanup of {}:\n{}",
            self.name,
            problems.join("\n")
        );
        say(&format!(
            "e2e {}: passed (logs in {})",
            self.name,
            self.dir.display()
        ));
    }

    /// The manifests backed up when the scenario started.
    pub fn backup(&self) -> &Backup {
        &self.cleanup.backup
    }

    /// The scheduler's and controller-manager's mirror pod hashes when the scenario started.
    pub fn baseline_hash(&self, c: Component) -> Option<&str> {
        self.cleanup
            .baseline
            .get(&c.mirror_pod_name(&self.node))
            .map(String::as_str)
    }

    /// Fails with the process's log when the operator or the agent has exited.
    pub fn check_processes(&mut self) {
        for p in &mut self.cleanup.procs {
            if let Some(status) = p.exited() {
                panic!(
                    "kubeplane {} exited ({status}); its log:\n{}",
                    p.name,
                    tail(&p.log, 80)
                );
            }
        }
    }

    /// Polls `probe` until it returns `Ok`, checking that the processes still run; fails
    /// after `timeout` with the last thing `probe` saw.
    pub async fn eventually<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        probe: impl AsyncFn() -> Result<T, String>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = match probe().await {
                Ok(v) => return v,
                Err(seen) => seen,
            };
            self.check_processes();
            if Instant::now() > deadline {
                panic!(
                    "timed out after {}s waiting for {what}; last seen:\n{seen}",
                    timeout.as_secs()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// A config for this node only: kube-apiserver and kube-controller-manager not managed,
    /// kube-scheduler managed, the cluster's paths, images and version, `minReadySeconds` 2.
    pub fn config(&self) -> ControlPlaneConfig {
        let kubeconfig = |f: &str| Some(format!("{}/{f}", self.settings.kubeconfig_dir));
        let spec = ControlPlaneConfigSpec {
            kubernetes_version: self.version.clone(),
            image_repository: Some(self.settings.image_repository.clone()),
            image_pull_policy: Some(self.settings.pull_policy),
            certificates_dir: Some(self.settings.certificates_dir.clone()),
            node_selector: Some(BTreeMap::from([(
                "kubernetes.io/hostname".to_string(),
                self.hostname_label.clone(),
            )])),
            api_server: Some(ApiServer {
                managed: Some(false),
                ..Default::default()
            }),
            controller_manager: Some(ControllerManager {
                managed: Some(false),
                kubeconfig: kubeconfig("controller-manager.conf"),
                ..Default::default()
            }),
            scheduler: Some(Scheduler {
                kubeconfig: kubeconfig("scheduler.conf"),
                ..Default::default()
            }),
            rollout: Some(Rollout {
                min_ready_seconds: Some(2),
                ..Default::default()
            }),
            ..Default::default()
        };
        ControlPlaneConfig::new(&self.name, spec)
    }

    /// `kubectl apply -f -` of a config, as a user would.
    pub fn apply(&self, cpc: &ControlPlaneConfig) {
        self.kubectl
            .run(&["apply", "-f", "-"], Some(&manifest_json(cpc)))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The node's `ControlPlaneNode`, if any.
    pub async fn cpn(&self) -> Option<ControlPlaneNode> {
        Api::<ControlPlaneNode>::all(self.client.clone())
            .get_opt(&self.node)
            .await
            .expect("get ControlPlaneNode")
    }

    /// The scenario's config as stored.
    pub async fn cpc(&self) -> ControlPlaneConfig {
        Api::<ControlPlaneConfig>::all(self.client.clone())
            .get(&self.name)
            .await
            .expect("get ControlPlaneConfig")
    }

    /// A component's mirror pod on the node.
    pub async fn mirror_pod(&self, c: Component) -> Option<Pod> {
        Api::<Pod>::namespaced(self.client.clone(), "kube-system")
            .get_opt(&c.mirror_pod_name(&self.node))
            .await
            .expect("get mirror pod")
    }

    /// Waits until the node's `ControlPlaneNode` satisfies `pred`.
    pub async fn wait_cpn(
        &mut self,
        what: &str,
        pred: impl Fn(&ControlPlaneNode) -> bool,
    ) -> ControlPlaneNode {
        let api = Api::<ControlPlaneNode>::all(self.client.clone());
        let node = self.node.clone();
        let t = self.settings.timeout;
        self.eventually(what, t, async || match api.get_opt(&node).await {
            Ok(Some(c)) if pred(&c) => Ok(c),
            Ok(Some(c)) => Err(dump(&c)),
            Ok(None) => Err(format!("no ControlPlaneNode {node}")),
            Err(e) => Err(e.to_string()),
        })
        .await
    }

    /// Waits until the scenario's config satisfies `pred`.
    pub async fn wait_cpc(
        &mut self,
        what: &str,
        pred: impl Fn(&ControlPlaneConfig) -> bool,
    ) -> ControlPlaneConfig {
        let api = Api::<ControlPlaneConfig>::all(self.client.clone());
        let name = self.name.clone();
        let t = self.settings.timeout;
        self.eventually(what, t, async || match api.get_opt(&name).await {
            Ok(Some(c)) if pred(&c) => Ok(c),
            Ok(Some(c)) => Err(dump(&c.status)),
            Ok(None) => Err(format!("no ControlPlaneConfig {name}")),
            Err(e) => Err(e.to_string()),
        })
        .await
    }

    /// The revision the operator computes for `cpc` on this node (no encryption Secret): it
    /// covers the rendered bytes, so it needs the facts the node's agent reports.
    pub async fn revision(&self, cpc: &ControlPlaneConfig) -> String {
        let facts = self
            .cpn()
            .await
            .and_then(|c| c.status?.node_facts)
            .expect("the node's agent reported its facts");
        kubeplane::render::revision_for(&cpc.spec, None, &[facts]).expect("renders")
    }

    /// Waits until the node runs `cpc`'s revision and reports `Healthy`.
    pub async fn wait_rolled_out(&mut self, cpc: &ControlPlaneConfig) -> ControlPlaneNode {
        self.wait_cpn("the node's facts", |c| {
            c.status.as_ref().is_some_and(|s| s.node_facts.is_some())
        })
        .await;
        let rev = self.revision(cpc).await;
        self.wait_cpn(&format!("revision {rev} Healthy on the node"), |c| {
            rolled_out(c, &rev)
        })
        .await
    }

    /// The manifest directory's file `name`.
    pub fn manifest(&self, name: &str) -> Option<Vec<u8>> {
        fs::read(self.manifest_dir.join(name)).ok()
    }
}
