//! h. The hard-way migration on a real kubelet: kube-scheduler first runs as a plain process
//! from a unit's `ExecStart` (started by [`ProcessServices`], the service-manager stand-in that
//! runs real processes), `kubeplane import --systemd-unit` turns the unit into a config, and
//! `migrate` moves it to a static Pod the node's kubelet runs; then a second run with a flag
//! that makes kube-scheduler exit at start ends with the process back and healthy.
//!
//! Needs, besides `KUBECONFIG`: `KUBEPLANE_E2E_SCHEDULER_BINARY`, a kube-scheduler binary of
//! the cluster's version on this host (for example copied out of its image). Skipped without
//! it. Prints the seconds kube-scheduler did not answer on the node during each step.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kubeplane::adopt::hardway::{DEFAULT_TARGET_VERSION, HardWayInput, import_units};
use kubeplane::adopt::unit::{EnvFiles, parse_unit};
use kubeplane::agent::health::{Endpoint, HealthCheck, HttpsCheck};
use kubeplane::api::{Arg, Component, NodeFacts};
use kubeplane::migrate::{
    self, MigrateError, ProcessServices, ServiceManager, Timing, UnitInfo, unit_endpoint,
};

use crate::harness::{self, Backup, say, settings_or_skip};

/// The kube-scheduler binary the unit runs.
const SCHEDULER_BINARY: &str = "KUBEPLANE_E2E_SCHEDULER_BINARY";
const UNIT: &str = "kube-scheduler.service";

/// Puts the manifest directory back and stops the unit's process, on success and failure.
struct Restore {
    manifest_dir: PathBuf,
    backup: Backup,
    services: Option<ProcessServices>,
    /// The units to stop.
    units: Vec<String>,
}

impl Drop for Restore {
    fn drop(&mut self) {
        if let Some(s) = self.services.take() {
            for u in &self.units {
                let _ = s.stop(u);
            }
        }
        match self.backup.restore(&self.manifest_dir) {
            Ok(done) => {
                for d in done {
                    say(&format!("e2e l: cleanup: {d}"));
                }
            }
            Err(e) => say(&format!(
                "e2e l: cleanup FAILED: {e}; restore {} from the backup by hand",
                self.manifest_dir.display()
            )),
        }
    }
}

async fn answers(ep: &Endpoint, within: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let check = HttpsCheck::new();
    loop {
        if check.check(ep).await.is_ok() {
            return Ok(start.elapsed());
        }
        if start.elapsed() > within {
            return Err(format!("{} did not answer within {within:?}", ep.url()));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn silent(ep: &Endpoint, within: Duration) {
    let check = HttpsCheck::new();
    let start = Instant::now();
    let mut fails = 0;
    while fails < 3 {
        assert!(start.elapsed() < within, "{} still answers", ep.url());
        if check.check(ep).await.is_err() {
            fails += 1;
        } else {
            fails = 0;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l_hard_way_scheduler_moves_from_a_unit_to_a_static_pod_and_back() {
    let Some(s) = settings_or_skip("l_hard_way") else {
        return;
    };
    let Some(binary) = std::env::var(SCHEDULER_BINARY)
        .ok()
        .filter(|b| !b.trim().is_empty())
    else {
        say(&format!(
            "e2e l_hard_way: skipped: set {SCHEDULER_BINARY} to a kube-scheduler binary of the cluster's version on this host"
        ));
        return;
    };
    let _lock = harness::lock().await;
    let node = s.node.clone().unwrap_or_else(hostname);
    let work = s.work_dir.join("h");
    std::fs::create_dir_all(&work).unwrap();
    let state_dir = s.state_root.join("h");
    let mut restore = Restore {
        manifest_dir: s.manifest_dir.clone(),
        backup: Backup::take(&s.manifest_dir, &work.join("backup")),
        services: None,
        units: vec![UNIT.to_string()],
    };
    let kubeconfig = format!("{}/scheduler.conf", s.kubeconfig_dir);
    let unit_path = work.join(UNIT);
    let unit_text = format!(
        "[Unit]\nDescription=kube-scheduler, hard way\n[Service]\nExecStart={binary} \\\n  --authentication-kubeconfig={kubeconfig} \\\n  --authorization-kubeconfig={kubeconfig} \\\n  --bind-address=127.0.0.1 \\\n  --kubeconfig={kubeconfig} \\\n  --leader-elect=true\nRestart=on-failure\n"
    );
    std::fs::write(&unit_path, &unit_text).unwrap();

    // 1. kube-scheduler leaves its static Pod and runs from the unit.
    let pod_ep = unit_endpoint(Component::Scheduler, &[]);
    let manifest = s.manifest_dir.join("kube-scheduler.yaml");
    if manifest.exists() {
        std::fs::remove_file(&manifest).unwrap();
        silent(&pod_ep, s.timeout).await;
    }
    let unit = parse_unit(&unit_path.display().to_string(), &unit_text, &[]);
    let services = ProcessServices::new();
    let (_, cmd, _) = kubeplane::adopt::hardway::unit_component(&unit, &EnvFiles::new()).unwrap();
    let mut argv = vec![cmd.path.text.clone()];
    argv.extend(cmd.args.iter().map(|w| w.text.clone()));
    services.add(UNIT, argv.clone(), vec![]);
    services.start(UNIT).unwrap();
    restore.services = Some(services);
    let services = restore.services.as_ref().unwrap();
    let up = answers(&pod_ep, s.timeout).await.unwrap();
    say(&format!(
        "e2e l: kube-scheduler runs from the unit, answering after {:.1} s",
        up.as_secs_f64()
    ));

    // 2. Import the unit.
    let version = s
        .kubernetes_version
        .clone()
        .unwrap_or_else(|| DEFAULT_TARGET_VERSION.to_string());
    let imported = import_units(&HardWayInput {
        units: std::slice::from_ref(&unit),
        env_files: &EnvFiles::new(),
        kubeconfigs: &Default::default(),
        key_files: &Default::default(),
        node_name: Some(&node),
        advertise_address: None,
        kubernetes_version: &version,
        config_name: Some("kubeplane-e2e-h"),
    })
    .unwrap();
    assert!(imported.report.is_ok(), "{:?}", imported.report);
    assert!(!imported.has_errors(), "{:?}", imported.findings);
    let mut config = imported.config;
    config.spec.image_repository = Some(s.image_repository.clone());
    config.spec.image_pull_policy = Some(s.pull_policy);
    config.spec.certificates_dir = Some(s.certificates_dir.clone());
    config.spec.rollout = Some(kubeplane::api::Rollout {
        min_ready_seconds: Some(2),
        ..Default::default()
    });
    let info = || UnitInfo {
        component: Component::Scheduler,
        name: UNIT.into(),
        path: unit_path.display().to_string(),
        text: unit_text.clone(),
        argv: argv.clone(),
        env_files: Default::default(),
        endpoint: unit_endpoint(Component::Scheduler, &argv),
    };
    let facts = NodeFacts {
        node_name: node.clone(),
        manifest_dir: Some(s.manifest_dir.display().to_string()),
        state_dir: Some(state_dir.display().to_string()),
        ..Default::default()
    };

    // 3. Migrate.
    let plan = migrate::plan(&config, &facts, vec![info()], Some(s.timeout)).unwrap();
    let mut log = |l: &str| say(&format!("e2e l: {l}"));
    // The agent's own evidence: the node's container runtime (CONTAINER_RUNTIME_ENDPOINT, as
    // the agent is given it), else containerd's default socket.
    let cri = kubeplane::agent::runtime_from_arg(
        s.container_runtime_endpoint
            .as_deref()
            .unwrap_or(kubeplane::agent::runtime::DEFAULT_ENDPOINT),
    );
    let cri = cri.as_deref();
    say(&format!(
        "e2e l: evidence: container runtime {}",
        if cri.is_some() {
            "and endpoint"
        } else {
            "unusable: endpoint only"
        }
    ));
    let outcomes = migrate::run(
        &plan,
        services,
        &HttpsCheck::new(),
        cri,
        Timing::default(),
        &mut log,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    say(&format!(
        "e2e l: FIGURE kube-scheduler migrated in {:.1} s, unavailable on the node for {:.1} s",
        outcomes[0].took.as_secs_f64(),
        outcomes[0].unavailable.as_secs_f64()
    ));
    assert!(!services.is_active(UNIT).unwrap());
    assert!(!services.is_enabled(UNIT));
    assert!(manifest.exists());
    answers(&pod_ep, Duration::from_secs(5)).await.unwrap();

    // 4. Back to the unit by hand, as the docs say: remove the manifest, wait, start it.
    std::fs::remove_file(&manifest).unwrap();
    silent(&pod_ep, s.timeout).await;
    std::fs::remove_dir_all(&state_dir).ok();
    services.start(UNIT).unwrap();
    answers(&pod_ep, s.timeout).await.unwrap();

    // 5. A revision that exits at start (lease duration below the renew deadline): the way
    // back brings the unit's process back, healthy.
    let mut broken = config.clone();
    broken
        .spec
        .scheduler
        .get_or_insert_with(Default::default)
        .extra_args
        .push(Arg::new("leader-elect-lease-duration", "5s"));
    let plan = migrate::plan(&broken, &facts, vec![info()], Some(Duration::from_secs(40))).unwrap();
    let started = Instant::now();
    let err = migrate::run(
        &plan,
        services,
        &HttpsCheck::new(),
        cri,
        Timing::default(),
        &mut log,
    )
    .await
    .unwrap_err();
    let MigrateError::Failed { after, .. } = &err else {
        panic!("{err}")
    };
    assert!(after.contains("and it is healthy"), "{after}");
    assert!(services.is_active(UNIT).unwrap());
    assert!(!manifest.exists());
    answers(&pod_ep, Duration::from_secs(5)).await.unwrap();
    say(&format!(
        "e2e l: FIGURE broken revision rolled back to the unit in {:.1} s: {err}",
        started.elapsed().as_secs_f64()
    ));
    // 6. The static Pod as the suite found it.
    drop(restore);
    answers(&pod_ep, s.timeout).await.unwrap();
}

/// The binaries the `l_hard_way_apiserver_and_controller_manager` scenario runs as units.
const APISERVER_BINARY: &str = "KUBEPLANE_E2E_APISERVER_BINARY";
const CONTROLLER_MANAGER_BINARY: &str = "KUBEPLANE_E2E_CONTROLLER_MANAGER_BINARY";

/// The command line of a component's static Pod as the node runs it (`command` after the
/// binary, then `args`).
fn static_pod_flags(manifest: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let pod: k8s_openapi::api::core::v1::Pod = serde_saphyr::from_str(&text).unwrap();
    let c = pod.spec.unwrap().containers.remove(0);
    let mut words: Vec<String> = c.command.unwrap_or_default().into_iter().skip(1).collect();
    words.extend(c.args.unwrap_or_default());
    words
}

/// m. kube-apiserver and kube-controller-manager, as a guide-built node runs them: each first
/// runs as a plain process from a unit whose `ExecStart` has the flags of the node's static Pod,
/// then `import --systemd-unit` and `migrate` move both back to static Pods in one run
/// (kube-apiserver first, stop-first because the unit holds its port). Prints the seconds each
/// was unavailable on the node. Needs `KUBEPLANE_E2E_APISERVER_BINARY` and
/// `KUBEPLANE_E2E_CONTROLLER_MANAGER_BINARY` (binaries of the cluster's version on this host).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m_hard_way_apiserver_and_controller_manager_move_from_units_to_static_pods() {
    let Some(s) = settings_or_skip("m_hard_way") else {
        return;
    };
    let bin = |var: &str| std::env::var(var).ok().filter(|b| !b.trim().is_empty());
    let (Some(apiserver_bin), Some(kcm_bin)) =
        (bin(APISERVER_BINARY), bin(CONTROLLER_MANAGER_BINARY))
    else {
        say(&format!(
            "e2e m_hard_way: skipped: set {APISERVER_BINARY} and {CONTROLLER_MANAGER_BINARY} to binaries of the cluster's version on this host"
        ));
        return;
    };
    let _lock = harness::lock().await;
    let node = s.node.clone().unwrap_or_else(hostname);
    let work = s.work_dir.join("m");
    std::fs::create_dir_all(&work).unwrap();
    let state_dir = s.state_root.join("m");
    let _ = std::fs::remove_dir_all(&state_dir);
    let mut restore = Restore {
        manifest_dir: s.manifest_dir.clone(),
        backup: Backup::take(&s.manifest_dir, &work.join("backup")),
        services: None,
        units: vec![
            "kube-apiserver.service".into(),
            "kube-controller-manager.service".into(),
        ],
    };
    let services = ProcessServices::new();
    let mut units = Vec::new();
    let mut infos = Vec::new();
    // 1. Each component leaves its static Pod and runs from a unit with the same flags.
    for (component, binary) in [
        (Component::ApiServer, apiserver_bin),
        (Component::ControllerManager, kcm_bin),
    ] {
        let manifest = s.manifest_dir.join(component.manifest_file());
        let flags = static_pod_flags(&manifest);
        let name = format!("{}.service", component.name());
        let unit_path = work.join(&name);
        let unit_text = format!(
            "[Unit]\nDescription={}, hard way\n[Service]\nExecStart={binary} \\\n  {}\nRestart=on-failure\n",
            component.name(),
            flags.join(" \\\n  ")
        );
        std::fs::write(&unit_path, &unit_text).unwrap();
        let unit = parse_unit(&unit_path.display().to_string(), &unit_text, &[]);
        let (_, cmd, _) =
            kubeplane::adopt::hardway::unit_component(&unit, &EnvFiles::new()).unwrap();
        let mut argv = vec![cmd.path.text.clone()];
        argv.extend(cmd.args.iter().map(|w| w.text.clone()));
        let ep = unit_endpoint(component, &argv[1..]);
        std::fs::remove_file(&manifest).unwrap();
        silent(&ep, s.timeout).await;
        services.add(&name, argv.clone(), vec![]);
        let stopped_at = Instant::now();
        services.start(&name).unwrap();
        let up = answers(&ep, s.timeout).await.unwrap();
        say(&format!(
            "e2e m: {component} runs from its unit, answering {:.1} s after the start ({:.1} s after the Pod's manifest went)",
            up.as_secs_f64(),
            stopped_at.elapsed().as_secs_f64()
        ));
        infos.push(UnitInfo {
            component,
            name: name.clone(),
            path: unit_path.display().to_string(),
            text: unit_text.clone(),
            argv: argv[1..].to_vec(),
            env_files: Default::default(),
            endpoint: ep,
        });
        units.push(unit);
    }
    restore.services = Some(services);
    let services = restore.services.as_ref().unwrap();

    // 2. Import both units.
    let version = s
        .kubernetes_version
        .clone()
        .unwrap_or_else(|| DEFAULT_TARGET_VERSION.to_string());
    let imported = import_units(&HardWayInput {
        units: &units,
        env_files: &EnvFiles::new(),
        kubeconfigs: &Default::default(),
        key_files: &Default::default(),
        node_name: Some(&node),
        advertise_address: None,
        kubernetes_version: &version,
        config_name: Some("kubeplane-e2e-m"),
    })
    .unwrap();
    assert!(imported.report.is_ok(), "{:?}", imported.report);
    assert!(!imported.has_errors(), "{:?}", imported.findings);
    let mut config = imported.config;
    config.spec.image_repository = Some(s.image_repository.clone());
    config.spec.image_pull_policy = Some(s.pull_policy);
    config.spec.certificates_dir = Some(s.certificates_dir.clone());
    config.spec.rollout = Some(kubeplane::api::Rollout {
        min_ready_seconds: Some(2),
        ..Default::default()
    });
    let facts = NodeFacts {
        node_name: node.clone(),
        manifest_dir: Some(s.manifest_dir.display().to_string()),
        state_dir: Some(state_dir.display().to_string()),
        ..Default::default()
    };

    // 3. Migrate both, with the node's container runtime as evidence.
    let plan = migrate::plan(&config, &facts, infos, Some(s.timeout)).unwrap();
    let cri = kubeplane::agent::runtime_from_arg(
        s.container_runtime_endpoint
            .as_deref()
            .unwrap_or(kubeplane::agent::runtime::DEFAULT_ENDPOINT),
    );
    let mut log = |l: &str| say(&format!("e2e m: {l}"));
    let outcomes = migrate::run(
        &plan,
        services,
        &HttpsCheck::new(),
        cri.as_deref(),
        Timing::default(),
        &mut log,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        outcomes.iter().map(|o| o.component).collect::<Vec<_>>(),
        [Component::ApiServer, Component::ControllerManager],
        "kube-apiserver first"
    );
    for o in &outcomes {
        say(&format!(
            "e2e m: FIGURE {} migrated in {:.1} s, unavailable on the node for {:.1} s",
            o.component,
            o.took.as_secs_f64(),
            o.unavailable.as_secs_f64()
        ));
        let name = format!("{}.service", o.component.name());
        assert!(!services.is_active(&name).unwrap());
        assert!(!services.is_enabled(&name));
        assert!(s.manifest_dir.join(o.component.manifest_file()).exists());
    }
    // 4. The static Pods as the suite found them.
    drop(restore);
    for c in [Component::ApiServer, Component::ControllerManager] {
        answers(&unit_endpoint(c, &[]), s.timeout).await.ok();
    }
}
