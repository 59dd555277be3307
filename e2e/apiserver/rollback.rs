//! Scenarios i and j: a broken kube-apiserver rolled back without the API.

use super::*;

/// Applies `broken(base)` with the watchers running (and, with `kill`, SIGKILLs the agent as
/// soon as the restored manifest is on disk, then starts it again); waits until the node
/// settles; checks what i and j share. Returns the figures' text.
async fn rolled_back_without_the_api(s: &mut Scenario, kill: bool) {
    let id = if kill { "j" } else { "i" };
    let base = adopt(s).await;
    let good_rev = s.revision(&base).await;
    let bad = broken(&base);
    let bad_rev = s.revision(&bad).await;
    let (manifest, state) = paths(s);
    let avail = Availability::start(s.client.clone());
    let watch = FileWatch::start(manifest, state);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(avail.up(), "the API answers before the change");
    if kill {
        watch.kill_on_restore(s.agent_pid());
    }
    let t0 = Instant::now();
    s.apply(&bad);

    let mut restart = None;
    if kill {
        let deadline = Instant::now() + Duration::from_secs(BAD_TIMEOUT as u64 + 240);
        let killed = loop {
            if let Some(k) = watch.killed() {
                break k;
            }
            assert!(
                Instant::now() < deadline,
                "no restored manifest appeared (the agent was to be killed then):\n{}",
                watch.timeline(t0)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let log = s.restart_agent();
        let t_restart = Instant::now();
        say(&format!(
            "e2e j: killed the agent {:.3}s after kubectl apply ({:?}); started it again {:.0} ms later, log {}",
            secs(t0, killed.0),
            killed.1,
            secs(killed.0, t_restart) * 1000.0,
            log.display()
        ));
        restart = Some((killed.0, t_restart, log));
    }

    let timeout = s.settings.timeout + Duration::from_secs(BAD_TIMEOUT as u64);
    let (t_seen, cpn) = poll_cpn(s, &format!("revision {bad_rev} RolledBack"), timeout, |c| {
        settled_bad(c, &bad_rev)
    })
    .await;
    let bad_uid = apiserver_uid(&cpn);
    let t_bad = watch
        .first_uid(&bad_uid)
        .expect("the watcher saw the failed revision's kube-apiserver.yaml");
    let (t_restore, restored_uid, after) = watch
        .first_restored()
        .expect("the watcher saw the restored kube-apiserver.yaml");
    // Let the agent settle and the watcher look a little longer.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = avail.outages();
    say(&format!(
        "e2e {id}: timeline (s from kubectl apply):\n{}\n{}\n  {:>8.3}s RolledBack seen in the ControlPlaneNode",
        watch.timeline(t0),
        outages_text(&all, t0),
        secs(t0, t_seen)
    ));
    assert_eq!(after, bad_rev, "{RESTORED} names the failed revision");
    assert_ne!(restored_uid, bad_uid);

    // The API was down the whole time: one outage from after the failed write until after
    // the restore was written.
    let o = all
        .iter()
        .find(|o| o.contains(t_restore))
        .copied()
        .unwrap_or_else(|| {
            panic!(
                "the API answered when the restore was written ({:.3}s): the rollback did not happen without the API\n{}",
                secs(t0, t_restore),
                outages_text(&all, t0)
            )
        });
    assert!(
        o.start > t_bad,
        "the outage began after the failed manifest was written"
    );
    let back = o.end.expect("the API is back");

    let (reason, message) = check_rolled_back_status(&cpn, &bad_rev);
    let st = cpn.status.as_ref().unwrap();
    assert_eq!(
        st.last_known_good_revision.as_deref(),
        Some(good_rev.as_str())
    );

    // The failed revision never reappears on disk after the restore (j: after the kill).
    let from = restart.as_ref().map(|r| r.0).unwrap_or(t_restore);
    let uids_after: Vec<String> = watch
        .seen()
        .into_iter()
        .filter(|(t, _)| *t >= from)
        .filter_map(|(_, c)| match c {
            Change::Manifest { uid, .. } => uid,
            _ => None,
        })
        .collect();
    assert!(
        !uids_after.contains(&bad_uid),
        "the failed uid {bad_uid} reappeared on disk: {uids_after:?}"
    );
    assert_not_on_disk(s, &bad_uid);
    let disk = s.manifest("kube-apiserver.yaml").expect("manifest");
    let (now_uid, now_after) = uid_of(&disk);
    assert_eq!(now_after.as_deref(), Some(bad_rev.as_str()));
    let now_uid = now_uid.expect("uid");
    let pod = apiserver_pod(s, &now_uid).await;
    assert!(pod_ready(&pod));
    // What the status says of kube-apiserver once the API has been back a while.
    if let Some(c) = cpn_now(s).await {
        say(&format!(
            "e2e {id}: kube-apiserver's component status {:.1}s after the API was back: {:?}",
            secs(back, Instant::now()),
            component_status(&c, Component::ApiServer)
        ));
    }

    say(&format!(
        "e2e {id}: FIGURES: failed manifest written {:.1}s after kubectl apply; API unavailable {:.1}s without a break (from {:.1}s after the failed write to {:.1}s after it; restore written {:.1}s after the failed write, {:.1}s into the outage; API back {:.1}s after the restore); RolledBack seen {:.1}s after the API was back; reason {reason}: {message}",
        secs(t0, t_bad),
        o.seconds(),
        secs(t_bad, o.start),
        secs(t_bad, back),
        secs(t_bad, t_restore),
        secs(o.start, t_restore),
        secs(t_restore, back),
        secs(back, t_seen),
    ));

    if let Some((t_kill, t_restart, log)) = restart {
        let settled = watch.first_step("settled", t_restart);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let resumed = text.contains("resuming an interrupted rollback");
        say(&format!(
            "e2e j: FIGURES: killed {:.0} ms after the restored manifest appeared; uid on disk at the kill {restored_uid}, at the end {now_uid}; manifests written after the kill: {uids_after:?} (failed uid {bad_uid}: never); restarted agent logged \"resuming an interrupted rollback\": {resumed}; state.json settled {} ; the API came back {:.1}s after the restart",
            secs(t_restore, t_kill) * 1000.0,
            match &settled {
                Some((t, l)) => format!(
                    "{:.1}s after the restart, {:.1}s {} the API was back ({l})",
                    secs(t_restart, *t),
                    secs(*t, back).abs(),
                    if *t <= back { "before" } else { "after" }
                ),
                None => "never seen".into(),
            },
            secs(t_restart, back),
        ));
        assert!(
            settled.is_some_and(|(_, l)| l.contains("rolledBack")),
            "the restarted agent settled the rollback in state.json:\n{}",
            watch.timeline(t0)
        );
        assert!(
            resumed,
            "the restarted agent resumed the rollback (log {})",
            log.display()
        );
    }
    drop(watch);
    drop(avail);
}

/// i. A kube-apiserver revision that never becomes healthy (`--etcd-servers=https://127.0.0.1:1`)
/// is rolled back with the API down the whole time; once the API is back, the status says
/// which component and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i_broken_apiserver_is_rolled_back_without_the_api() {
    let Some(mut s) = start("i", true).await else {
        return;
    };
    rolled_back_without_the_api(&mut s, false).await;
    s.finish();
}

/// j. As i, with the agent SIGKILLed right after it wrote the restored manifest and started
/// again: it completes the rollback without the API, and the failed uid never reappears on
/// disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn j_agent_killed_during_the_restore_completes_the_rollback() {
    let Some(mut s) = start("j", true).await else {
        return;
    };
    rolled_back_without_the_api(&mut s, true).await;
    s.finish();
}
