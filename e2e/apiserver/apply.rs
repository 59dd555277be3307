//! Scenario k: `kubeplane apply` of a broken kube-apiserver.

use super::*;

/// One `kubeplane apply` run: exit code, stdout, stderr, when it ended.
struct ApplyRun {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    seconds: f64,
    end: Instant,
}

async fn kubeplane_apply(s: &Scenario, file: &Path) -> ApplyRun {
    let mut cmd = tokio::process::Command::new(&s.settings.kubeplane);
    cmd.arg("apply")
        .arg("-f")
        .arg(file)
        .args(["--node", &s.node])
        .arg("--manifest-dir")
        .arg(&s.manifest_dir)
        .arg("--state-dir")
        .arg(&s.state_dir);
    if let Some(e) = &s.settings.container_runtime_endpoint {
        cmd.args(["--container-runtime-endpoint", e]);
    }
    cmd.env("KUBEPLANE_LOG", "info,kubeplane=debug");
    let start = Instant::now();
    let out = cmd.output().await.expect("run kubeplane apply");
    let end = Instant::now();
    let run = ApplyRun {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        seconds: end.duration_since(start).as_secs_f64(),
        end,
    };
    let name = file.file_stem().unwrap().to_string_lossy();
    let _ = std::fs::write(
        s.dir.join(format!("apply-{name}.log")),
        format!(
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            run.code, run.stdout, run.stderr
        ),
    );
    run
}

fn write_config(s: &Scenario, name: &str, cpc: &ControlPlaneConfig) -> PathBuf {
    let path = s.dir.join(format!("{name}.yaml"));
    let mut v = serde_json::to_value(cpc).unwrap();
    v.as_object_mut().unwrap().remove("status");
    std::fs::write(&path, serde_saphyr::to_string(&v).unwrap()).unwrap();
    path
}

/// k. `kubeplane apply` (no operator, no agent) of a broken kube-apiserver revision on the
/// node rolls back (exit 1); of a good one reports healthy only once a container of the new
/// uid runs and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k_kubeplane_apply_rolls_back_a_broken_apiserver_and_waits_for_the_new_uid() {
    let Some(mut s) = start("k", false).await else {
        return;
    };
    let base = import_config(&s, GOOD_TIMEOUT);
    let bad = broken(&base);
    let mut good = base.clone();
    set_arg(&mut good, Component::ApiServer, "v", "2");
    let (base_f, bad_f, good_f) = (
        write_config(&s, "base", &base),
        write_config(&s, "bad", &bad),
        write_config(&s, "good", &good),
    );
    let (manifest, state) = paths(&s);
    let avail = Availability::start(s.client.clone());
    let watch = FileWatch::start(manifest, state);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(avail.up(), "the API answers before the change");

    // The node's own manifests: adopted, nothing restarts.
    let r = kubeplane_apply(&s, &base_f).await;
    assert_eq!(r.code, Some(0), "apply base: {}{}", r.stdout, r.stderr);
    say(&format!(
        "e2e k: apply of the imported config: exit 0 after {:.1}s",
        r.seconds
    ));

    // Broken: rolled back, exit 1.
    let t0 = Instant::now();
    let r = kubeplane_apply(&s, &bad_f).await;
    let back = avail.wait_up_after(r.end, s.settings.timeout).await;
    say(&format!(
        "e2e k: broken revision: timeline (s from the start of kubeplane apply):\n{}\n{}\n  {:>8.3}s kubeplane apply exited {:?}",
        watch.timeline(t0),
        outages_text(&avail.outages(), t0),
        secs(t0, r.end),
        r.code
    ));
    assert_eq!(
        r.code,
        Some(1),
        "apply of the broken revision: {}{}",
        r.stdout,
        r.stderr
    );
    assert!(
        r.stderr.contains("rolled back") && r.stderr.contains("kube-apiserver"),
        "says it rolled back kube-apiserver: {}",
        r.stderr
    );
    let bad_uid = watch
        .seen()
        .into_iter()
        .filter(|(t, _)| *t >= t0)
        .find_map(|(_, c)| match c {
            Change::Manifest {
                uid: Some(u),
                restored_after: None,
            } => Some(u),
            _ => None,
        })
        .expect("the watcher saw the broken manifest");
    let (t_restore, _, after) = watch.first_restored().expect("a restored manifest");
    // `kubeplane apply` names its revision by the bytes it rendered for this node; the agent's
    // state remembers it as failed.
    let failed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.state_dir.join("state.json")).unwrap()).unwrap();
    let failed_rev = failed["failedRevisions"]
        .as_array()
        .and_then(|a| a.last())
        .and_then(|f| f["revision"].as_str())
        .expect("state.json remembers the failed revision")
        .to_string();
    assert_eq!(after, failed_rev);
    assert_not_on_disk(&s, &bad_uid);
    let o = avail
        .outages()
        .into_iter()
        .find(|o| o.contains(t_restore))
        .expect("the API was down when the restore was written");
    let message = r.stderr.lines().last().unwrap_or_default().to_string();
    say(&format!(
        "e2e k: FIGURES: broken revision: kubeplane apply exit 1 after {:.1}s; API unavailable {:.1}s; back {:.1}s after apply exited; message: {message}",
        r.seconds,
        o.seconds(),
        secs(r.end, back),
    ));
    let restored_uid = uid_of(&s.manifest("kube-apiserver.yaml").unwrap())
        .0
        .unwrap();
    apiserver_pod(&mut s, &restored_uid).await;

    // Good: exit 0 "healthy" only once a kube-apiserver of the new uid runs and serves.
    let t1 = Instant::now();
    let r = kubeplane_apply(&s, &good_f).await;
    // Right when it returns: the evidence, before anything else.
    let disk_uid = uid_of(&s.manifest("kube-apiserver.yaml").unwrap())
        .0
        .unwrap();
    let procs_new = processes_of_pod("kube-apiserver", &disk_uid);
    let procs_old = processes_of_pod("kube-apiserver", &restored_uid);
    let livez = local_https(6443, "/livez");
    let ticks_at_exit = uptime_ticks();
    let back = avail.wait_up_after(r.end, s.settings.timeout).await;
    say(&format!(
        "e2e k: good revision: timeline (s from the start of kubeplane apply):\n{}\n{}\n  {:>8.3}s kubeplane apply exited {:?}",
        watch.timeline(t1),
        outages_text(
            &avail
                .outages()
                .into_iter()
                .filter(|o| o.start >= t1)
                .collect::<Vec<_>>(),
            t1
        ),
        secs(t1, r.end),
        r.code
    ));
    assert_eq!(
        r.code,
        Some(0),
        "apply of the good revision: {}{}",
        r.stdout,
        r.stderr
    );
    assert!(r.stdout.contains("healthy"), "{}", r.stdout);
    assert_ne!(disk_uid, restored_uid, "a new uid on disk");
    assert!(
        !procs_new.is_empty(),
        "when kubeplane apply said healthy, no kube-apiserver ran in the cgroup of pod {disk_uid} (old pod's processes: {procs_old:?})"
    );
    assert_eq!(
        livez, 200,
        "the local /livez when kubeplane apply said healthy"
    );
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let ran_for = procs_new
        .iter()
        .map(|(_, start)| ticks_at_exit.saturating_sub(*start) as f64 / hz)
        .fold(0.0, f64::max);
    let outage = avail
        .outages()
        .into_iter()
        .filter(|o| o.start >= t1)
        .map(|o| o.seconds())
        .sum::<f64>();
    let pod = apiserver_pod(&mut s, &disk_uid).await;
    assert!(
        pod.spec.as_ref().unwrap().containers[0]
            .command
            .as_ref()
            .unwrap()
            .contains(&"--v=2".to_string()),
        "the new pod runs the new flag"
    );
    say(&format!(
        "e2e k: FIGURES: good revision: kubeplane apply exit 0 \"healthy\" after {:.1}s; at that moment kube-apiserver pid {:?} ran in pod {disk_uid}'s cgroup for {ran_for:.1}s, old pod processes {procs_old:?}, local /livez {livez}; API unavailable {outage:.1}s, back {:.1}s after apply exited; mirror pod hash {disk_uid} Ready",
        r.seconds,
        procs_new.iter().map(|p| p.0).collect::<Vec<_>>(),
        secs(r.end, back),
    ));
    drop(watch);
    drop(avail);
    s.finish();
}
