//! End-to-end tests of kubeplane against the cluster `KUBECONFIG` names: the operator and the
//! agent run as local processes, the agent on the node's real manifest directory, and the
//! node's real kubelet runs what they write. See `e2e/README.md` for the command, every
//! environment variable and how to point the suite at kind, k3d, kubeadm or a hand-built
//! cluster. Without `KUBECONFIG` every test says it was skipped and passes.
//!
//! Scenarios never overlap (a suite-wide lock in [`harness`]); each has its own config name
//! (`kubeplane-e2e-<letter>`), and its cleanup restores the manifests it found, on failure
//! too. Scenarios h–k (`apiserver.rs`) manage the node's kube-apiserver itself.

mod apiserver;
#[path = "../tests/common/mod.rs"]
mod common;
mod hard_way;
mod harness;
mod settings;
mod timing;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;

use harness::{
    COMPONENTS, DriftMode, Scenario, component_status, metrics_text, pod_hash, pod_ready, rendered,
    rolled_out, set_arg, snapshot, snapshot_diff, write_atomically,
};
use kubeplane::api::{
    Component, ControlPlaneConfig, HealthTimeouts, NodePhase, Rollout, find_condition,
};

/// The container command of a Pod.
fn command(p: &Pod) -> Vec<String> {
    p.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.command.clone())
        .unwrap_or_default()
}

/// Whether the config's `type` condition is `status` for its current generation.
fn condition_is(c: &ControlPlaneConfig, type_: &str, status: &str) -> bool {
    let generation = c.metadata.generation;
    c.status.as_ref().is_some_and(|s| {
        s.observed_generation == generation
            && find_condition(&s.conditions, type_)
                .is_some_and(|x| x.status == status && x.observed_generation == generation)
    })
}

/// a. A config for kube-scheduler and kube-controller-manager writes both manifests, and both
/// components become Healthy in `kubectl get cpn`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_writes_manifests_and_both_components_become_healthy() {
    let Some(mut s) = Scenario::start("a", DriftMode::Enforce).await else {
        return;
    };
    let mut cpc = s.config();
    cpc.spec.controller_manager.get_or_insert_default().managed = Some(true);
    // A flag kubeadm does not set, so both manifests really change: a manifest on disk that
    // already means the rendered Pod would only be adopted, not written.
    set_arg(&mut cpc, Component::ControllerManager, "v", "2");
    set_arg(&mut cpc, Component::Scheduler, "v", "2");
    s.apply(&cpc);
    let cpn = s.wait_rolled_out(&cpc).await;
    let rev = s.revision(&cpc).await;
    assert_eq!(cpn.spec.manifests.len(), 2, "two managed components");

    for comp in COMPONENTS {
        let m = rendered(&cpn, comp);
        let path = s.manifest_dir.join(&m.file_name);
        let disk = std::fs::read(&path).expect("manifest on disk");
        assert_eq!(
            String::from_utf8_lossy(&disk),
            m.content,
            "{} holds the rendered manifest",
            path.display()
        );
        assert_ne!(
            Some(disk.as_slice()),
            s.backup().get(&m.file_name),
            "{} was rewritten",
            m.file_name
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} mode", m.file_name);

        let st = component_status(&cpn, comp).expect("component status");
        assert!(st.ready && st.healthy, "{comp} status: {st:?}");
        assert_eq!(st.expected_hash.as_deref(), Some(m.config_hash.as_str()));
        assert_eq!(st.observed_hash.as_deref(), Some(m.config_hash.as_str()));

        let pod = s.mirror_pod(comp).await.expect("mirror pod");
        assert_eq!(pod_hash(&pod), Some(m.config_hash.as_str()), "{comp} hash");
        assert!(pod_ready(&pod), "{comp} Ready");
        assert!(
            command(&pod).contains(&"--v=2".to_string()),
            "{comp} runs the new flag: {:?}",
            command(&pod)
        );
    }

    // What a user sees.
    let out = s
        .kubectl
        .run(&["get", "cpn", &s.node, "--no-headers"], None)
        .expect("kubectl get cpn");
    let cols: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(
        cols.get(..4),
        Some([s.node.as_str(), rev.as_str(), rev.as_str(), "Healthy"].as_slice()),
        "kubectl get cpn: {out}"
    );
    let cpc_now = s
        .wait_cpc("the config Ready", |c| condition_is(c, "Ready", "True"))
        .await;
    let st = cpc_now.status.unwrap();
    assert_eq!(
        (st.nodes, st.updated_nodes, st.ready_nodes),
        (1, 1, 1),
        "config counts"
    );
    s.finish();
}

/// b. A flag change on kube-scheduler rolls out; the mirror pod's `kubernetes.io/config.hash`
/// becomes the rendered uid (`spec.manifests[].configHash`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_scheduler_flag_change_rolls_out_with_the_rendered_config_hash() {
    let Some(mut s) = Scenario::start("b", DriftMode::Enforce).await else {
        return;
    };
    let cpc = s.config();
    s.apply(&cpc);
    let first = s.wait_rolled_out(&cpc).await;
    let old_hash = rendered(&first, Component::Scheduler).config_hash.clone();

    let mut changed = cpc.clone();
    set_arg(&mut changed, Component::Scheduler, "v", "3");
    assert_ne!(
        s.revision(&changed).await,
        s.revision(&cpc).await,
        "a new revision"
    );
    s.apply(&changed);
    let cpn = s.wait_rolled_out(&changed).await;
    let m = rendered(&cpn, Component::Scheduler);
    assert_ne!(
        m.config_hash, old_hash,
        "the rendered uid changed with the flag"
    );

    // The rendered uid is the manifest's metadata.uid...
    let manifest: Pod = serde_saphyr::from_str(&m.content).expect("rendered manifest parses");
    assert_eq!(
        manifest.metadata.uid.as_deref(),
        Some(m.config_hash.as_str())
    );
    assert_eq!(
        s.manifest("kube-scheduler.yaml").as_deref(),
        Some(m.content.as_bytes()),
        "the manifest on disk"
    );
    // ...and kubelet reports it verbatim on the mirror pod, which runs the new flag.
    let pod = s
        .mirror_pod(Component::Scheduler)
        .await
        .expect("mirror pod");
    assert_eq!(pod_hash(&pod), Some(m.config_hash.as_str()));
    assert!(pod_ready(&pod));
    assert_ne!(
        pod_hash(&pod),
        s.baseline_hash(Component::Scheduler),
        "a restarted scheduler"
    );
    assert!(command(&pod).contains(&"--v=3".to_string()));
    let st = component_status(&cpn, Component::Scheduler).unwrap();
    assert_eq!(st.observed_hash.as_deref(), Some(m.config_hash.as_str()));
    s.finish();
}

/// c. A config with a flag kube-scheduler no longer has is refused (`Degraded=True`) and no
/// file in the manifest directory changes: content, mode, inode and mtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_removed_flag_is_refused_and_no_file_changes() {
    let Some(mut s) = Scenario::start("c", DriftMode::Enforce).await else {
        return;
    };
    let cpc = s.config();
    s.apply(&cpc);
    s.wait_rolled_out(&cpc).await;
    let before = snapshot(&s.manifest_dir);

    // --lock-object-name was removed from kube-scheduler in v1.28 (renamed to
    // --leader-elect-resource-name; kubernetes PR #113911, CHANGELOG-1.28).
    let mut bad = cpc.clone();
    set_arg(
        &mut bad,
        Component::Scheduler,
        "lock-object-name",
        "kube-scheduler",
    );
    s.apply(&bad);
    let refused = s
        .wait_cpc("Degraded=True for the new generation", |c| {
            condition_is(c, "Degraded", "True")
        })
        .await;
    let st = refused.status.as_ref().unwrap();
    let degraded = find_condition(&st.conditions, "Degraded").unwrap();
    assert_eq!(degraded.reason, "InvalidSpec", "{degraded:?}");
    assert!(
        degraded.message.contains("lock-object-name"),
        "the message names the flag: {}",
        degraded.message
    );
    assert!(
        find_condition(&st.conditions, "Ready").is_some_and(|c| c.status == "False"),
        "not Ready: {:?}",
        st.conditions
    );

    // Give the operator and the agent time to do the wrong thing, then compare every file.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = snapshot(&s.manifest_dir);
    assert!(
        before == after,
        "files changed in {}:\n{}",
        s.manifest_dir.display(),
        snapshot_diff(&before, &after)
    );
    let cpn = s.cpn().await.expect("ControlPlaneNode");
    let rev = s.revision(&cpc).await;
    assert!(
        rolled_out(&cpn, &rev),
        "the node stays on the last valid revision: {:?}",
        cpn.status
    );
    s.finish();
}

/// d. A revision whose kube-scheduler crashes is rolled back to last-known-good; status says
/// which component and why.
///
/// The crash: `--leader-elect-lease-duration=5s`, below kube-scheduler's default
/// `--leader-elect-renew-deadline` of 10s. kubeplane's validation accepts it (it checks each
/// flag's value, not leader-election timing across flags), and the binary exits 1 at start:
/// "couldn't create leader elector: leaseDuration must be greater than renewDeadline"
/// (client-go `tools/leaderelection`; seen with kube-scheduler v1.36.2). An unknown feature
/// gate does not do: the OpenShift-built v1.36.2 only warns "unrecognized feature gate".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_crashing_revision_is_rolled_back_to_last_known_good() {
    let Some(mut s) = Scenario::start("d", DriftMode::Enforce).await else {
        return;
    };
    let cpc = s.config();
    s.apply(&cpc);
    s.wait_rolled_out(&cpc).await;
    let good_rev = s.revision(&cpc).await;
    let good_bytes = s
        .manifest("kube-scheduler.yaml")
        .expect("scheduler manifest");

    let mut bad = cpc.clone();
    set_arg(
        &mut bad,
        Component::Scheduler,
        "leader-elect-lease-duration",
        "5s",
    );
    // Long enough for kubelet to swap the pod (~12 s) and show the crash loop, short enough
    // for a quick test. Last-known-good is then waited for with the default timeout.
    bad.spec.rollout = Some(Rollout {
        min_ready_seconds: Some(2),
        health_timeout_seconds: Some(HealthTimeouts {
            scheduler: Some(40),
            ..Default::default()
        }),
        ..Default::default()
    });
    let bad_rev = s.revision(&bad).await;
    s.apply(&bad);
    let cpn = s
        .wait_cpn("the bad revision RolledBack", |c| {
            let st = c.status.as_ref();
            st.and_then(|s| s.target_revision.as_deref()) == Some(bad_rev.as_str())
                && st
                    .and_then(|s| s.phase)
                    .is_some_and(|p| matches!(p, NodePhase::RolledBack | NodePhase::Failed))
        })
        .await;
    let st = cpn.status.as_ref().unwrap();
    assert_eq!(
        st.phase,
        Some(NodePhase::RolledBack),
        "rolled back, not failed: {:?} {:?}",
        st.reason,
        st.message
    );
    let message = st.message.clone().unwrap_or_default();
    // With the container runtime's socket (CONTAINER_RUNTIME_ENDPOINT) the agent sees the new
    // container exit and says so (`ContainerExited`); without it, the mirror pod's readiness
    // is what it has (`PodNotReady`). Either way the crash is the reason.
    let reason = st.reason.as_deref().unwrap_or_default();
    assert!(
        reason == "PodNotReady"
            || (reason == "ContainerExited" && message.contains("the new container exited")),
        "the crash is the reason: {reason}: {message}"
    );
    assert!(
        message.starts_with("kube-scheduler not updated"),
        "names the component: {message}"
    );
    assert!(
        message.contains("exit code") || message.contains("CrashLoopBackOff"),
        "says the container exited: {message}"
    );
    assert!(
        message.contains(&format!("restored last-known-good revision {good_rev}")),
        "{message}"
    );
    assert_eq!(st.applied_revision.as_deref(), Some(good_rev.as_str()));
    assert_eq!(
        st.last_known_good_revision.as_deref(),
        Some(good_rev.as_str())
    );

    // Last-known-good is back on disk and running: its bytes, marked as restored after the
    // failed revision (which gives it a fresh uid, so kubelet starts it anew).
    let (restored, _) = kubeplane::agent::engine::restored_manifest(&good_bytes, &bad_rev, &s.node);
    assert_eq!(
        s.manifest("kube-scheduler.yaml").as_deref(),
        Some(restored.as_slice())
    );
    let bad_hash = rendered(&cpn, Component::Scheduler).config_hash.clone();
    let pod = s
        .mirror_pod(Component::Scheduler)
        .await
        .expect("mirror pod");
    assert!(pod_ready(&pod), "the restored scheduler is Ready");
    assert_ne!(pod_hash(&pod), Some(bad_hash.as_str()));
    assert!(
        !command(&pod)
            .iter()
            .any(|a| a.starts_with("--leader-elect-lease-duration"))
    );

    // The rollout halts and says where and why.
    let cpc_now = s
        .wait_cpc("the config Degraded", |c| {
            condition_is(c, "Degraded", "True")
        })
        .await;
    let degraded = find_condition(&cpc_now.status.as_ref().unwrap().conditions, "Degraded")
        .unwrap()
        .clone();
    assert!(
        degraded.message.contains(&s.node) && degraded.message.contains("kube-scheduler"),
        "{degraded:?}"
    );
    s.finish();
}

/// e. A hand edit of a managed manifest is healed; a stray `kube-scheduler.yaml.bak` is moved
/// to `<state-dir>/quarantine/` and reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_hand_edit_is_healed_and_stray_backup_quarantined() {
    let Some(mut s) = Scenario::start("e", DriftMode::Enforce).await else {
        return;
    };
    let cpc = s.config();
    s.apply(&cpc);
    let cpn = s.wait_rolled_out(&cpc).await;
    let managed_hash = component_status(&cpn, Component::Scheduler)
        .and_then(|c| c.observed_hash.clone())
        .expect("observed hash");
    let path = s.manifest_dir.join("kube-scheduler.yaml");
    let managed = std::fs::read(&path).unwrap();

    // A hand edit: one more flag, written the way `sed -i` does (new file, rename).
    let mut pod: serde_json::Value = serde_saphyr::from_slice(&managed).unwrap();
    pod["spec"]["containers"][0]["command"]
        .as_array_mut()
        .expect("command")
        .push("--v=5".into());
    let edited = serde_json::to_vec_pretty(&pod).unwrap();
    write_atomically(&path, &edited, 0o600).unwrap();
    let dir = s.manifest_dir.clone();
    let t = s.settings.timeout;
    s.eventually("the hand edit healed", t, async || {
        let now = std::fs::read(dir.join("kube-scheduler.yaml")).unwrap_or_default();
        if now == managed {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&now).into_owned())
        }
    })
    .await;
    let healed = s
        .wait_cpn("the drift reported", |c| {
            c.status.as_ref().is_some_and(|st| {
                st.drift
                    .iter()
                    .any(|d| d.file == "kube-scheduler.yaml" && d.action == "Restored")
            })
        })
        .await;
    assert_eq!(healed.status.unwrap().phase, Some(NodePhase::Healthy));

    // A stray backup copy.
    let bak = s.manifest_dir.join("kube-scheduler.yaml.bak");
    std::fs::write(&bak, &managed).unwrap();
    let qdir = s.state_dir.join("quarantine");
    let moved = s
        .eventually("kube-scheduler.yaml.bak quarantined", t, async || {
            if bak.exists() {
                return Err(format!("{} still there", bak.display()));
            }
            let found = std::fs::read_dir(&qdir)
                .map_err(|e| format!("{}: {e}", qdir.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with("-kube-scheduler.yaml.bak"));
            found.ok_or_else(|| format!("nothing in {}", qdir.display()))
        })
        .await;
    assert_eq!(std::fs::read(&moved).unwrap(), managed, "content kept");
    let moved_to = moved.display().to_string();
    let reported = s
        .wait_cpn("the quarantine reported", |c| {
            c.status.as_ref().is_some_and(|st| {
                st.quarantined
                    .iter()
                    .any(|q| q.file == "kube-scheduler.yaml.bak" && q.moved_to == moved_to)
            })
        })
        .await;
    let q = &reported.status.as_ref().unwrap().quarantined;
    assert!(q.iter().all(|q| !q.reason.is_empty()), "{q:?}");

    // The agent's /metrics counts what it did.
    let node = s.node.clone();
    let restored = format!(
        "kubeplane_agent_events_total{{node=\"{node}\",reason=\"DriftRestored\",type=\"Warning\"}} "
    );
    let quarantined = format!(
        "kubeplane_agent_events_total{{node=\"{node}\",reason=\"Quarantined\",type=\"Warning\"}} "
    );
    let files = format!("kubeplane_agent_quarantined_files{{node=\"{node}\"}} ");
    let counted = |text: &str, series: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let port = s.agent_port();
    s.eventually(
        "the agent's /metrics counts the heal and the quarantine",
        t,
        async || {
            let text = metrics_text(port);
            if counted(&text, &restored) >= 1.0
                && counted(&text, &quarantined) >= 1.0
                && counted(&text, &files) >= 1.0
            {
                Ok(())
            } else {
                Err(text)
            }
        },
    )
    .await;
    assert_eq!(
        std::fs::read(&path).unwrap(),
        managed,
        "managed file untouched"
    );

    // The scheduler runs the managed manifest again.
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), "kube-system");
    let pod_name = Component::Scheduler.mirror_pod_name(&s.node);
    s.eventually(
        "the scheduler back on the managed manifest",
        t,
        async || match pods.get_opt(&pod_name).await {
            Ok(Some(p)) if pod_hash(&p) == Some(managed_hash.as_str()) && pod_ready(&p) => Ok(()),
            Ok(p) => Err(format!(
                "{:?}",
                p.map(|p| (pod_hash(&p).map(String::from), pod_ready(&p)))
            )),
            Err(e) => Err(e.to_string()),
        },
    )
    .await;
    s.finish();
}

/// f. The kube-controller-manager and kube-scheduler Lease holders appear in the config's
/// `status.leaders`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f_lease_holders_appear_in_config_status() {
    let Some(mut s) = Scenario::start("f", DriftMode::Enforce).await else {
        return;
    };
    let mut cpc = s.config();
    cpc.spec.controller_manager.get_or_insert_default().managed = Some(true);
    s.apply(&cpc);
    s.wait_rolled_out(&cpc).await;
    let leases: Api<Lease> = Api::namespaced(s.client.clone(), "kube-system");
    let cpcs: Api<ControlPlaneConfig> = Api::all(s.client.clone());
    let (name, node) = (s.name.clone(), s.node.clone());
    let t = s.settings.timeout;
    let leaders = s
        .eventually("status.leaders to match the Leases", t, async || {
            let cpc = cpcs.get(&name).await.map_err(|e| e.to_string())?;
            let leaders = cpc.status.map(|s| s.leaders).unwrap_or_default();
            for component in ["kube-controller-manager", "kube-scheduler"] {
                let lease = leases.get(component).await.map_err(|e| e.to_string())?;
                let holder = lease
                    .spec
                    .and_then(|s| s.holder_identity)
                    .ok_or(format!("Lease {component} has no holder yet"))?;
                let on_node = holder
                    .split('_')
                    .next()
                    .is_some_and(|h| h.eq_ignore_ascii_case(&node));
                let Some(l) = leaders.iter().find(|l| l.component == component) else {
                    return Err(format!("no leader for {component} in {leaders:?}"));
                };
                if l.holder.as_deref() != Some(holder.as_str())
                    || l.node.as_deref() != on_node.then_some(node.as_str())
                {
                    return Err(format!("{l:?}, Lease holder {holder:?}"));
                }
            }
            Ok(leaders)
        })
        .await;
    assert_eq!(leaders.len(), 2, "{leaders:?}");
    for l in &leaders {
        assert!(l.renew_time.is_some(), "{l:?}");
    }
    s.finish();
}

/// g. `kubectl wait --for=condition=Ready cpc/NAME` returns once the rollout completes, for a
/// new config and for a new generation of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g_kubectl_wait_ready_returns_once_the_rollout_completes() {
    let Some(s) = Scenario::start("g", DriftMode::Enforce).await else {
        return;
    };
    let cpc = s.config();
    let mut changed = cpc.clone();
    set_arg(&mut changed, Component::Scheduler, "v", "3");
    for (step, config) in [("create", &cpc), ("change", &changed)] {
        s.apply(config);
        let out = s
            .kubectl
            .tokio_command()
            .args([
                "wait",
                "--for=condition=Ready",
                &format!("cpc/{}", s.name),
                &format!("--timeout={}s", s.settings.timeout.as_secs()),
            ])
            .output()
            .await
            .expect("run kubectl wait");
        assert!(
            out.status.success(),
            "{step}: kubectl wait failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Right when kubectl returns, the node runs the revision and is Healthy.
        let rev = s.revision(config).await;
        let cpn = s.cpn().await.expect("ControlPlaneNode");
        assert!(
            rolled_out(&cpn, &rev),
            "{step}: kubectl wait returned before revision {rev} was Healthy: {:?}",
            cpn.status
        );
        let now = s.cpc().await;
        let st = now.status.as_ref().unwrap();
        assert_eq!(st.revision.as_deref(), Some(rev.as_str()), "{step}");
        assert_eq!(st.observed_generation, now.metadata.generation, "{step}");
        assert_eq!((st.updated_nodes, st.ready_nodes), (1, 1), "{step}");
    }
    s.finish();
}
