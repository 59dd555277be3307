use super::*;
use std::fs;

const ALL: &[Component] = &Component::ALL;

#[test]
fn classification_by_name_and_content() {
    let api = Component::ApiServer;
    assert_eq!(
        classify("kube-apiserver.yaml", None, ALL),
        Kind::Managed(api)
    );
    for stray in [
        "kube-apiserver.yaml.bak",
        "kube-apiserver.yaml~",
        "kube-apiserver.yaml.orig",
        "kube-apiserver.yaml.old",
        "kube-apiserver.yml",
    ] {
        assert!(
            matches!(classify(stray, None, ALL), Kind::Stray(c, _) if c == api),
            "{stray}"
        );
    }
    assert_eq!(
        classify(".kube-apiserver.yaml.swp", None, ALL),
        Kind::Ignored
    );
    assert_eq!(classify("kube-vip.yaml", None, ALL), Kind::Unmanaged);
    let pod = b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-scheduler\n";
    assert!(matches!(
        classify("old-sched", Some(pod), ALL),
        Kind::Stray(Component::Scheduler, _)
    ));
    let etcd = b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\n";
    assert_eq!(classify("etcd.yaml", Some(etcd), ALL), Kind::Unmanaged);
    // An unmanaged component's files are not strays.
    assert_eq!(
        classify(
            "kube-scheduler.yaml.bak",
            Some(pod),
            &[Component::ApiServer]
        ),
        Kind::Unmanaged
    );
    assert_eq!(
        classify("kube-scheduler.yaml", None, &[Component::ApiServer]),
        Kind::Unmanaged
    );
}

fn setup(
    mode: DriftMode,
) -> (
    tempfile::TempDir,
    NodeDirs,
    Arc<Desired>,
    StatusBoard,
    DriftHandler,
) {
    let t = tempfile::tempdir().unwrap();
    let d = NodeDirs::new(t.path().join("manifests"), t.path().join("state"));
    fs::create_dir(d.manifest_dir()).unwrap();
    d.prepare().unwrap();
    let desired = Arc::new(Desired::new());
    {
        let mut g = desired.lock();
        g.set(Component::Scheduler, b"scheduler v1\n".to_vec());
        d.write_manifest(
            "kube-scheduler.yaml",
            &[Component::Scheduler],
            b"scheduler v1\n",
        )
        .unwrap();
    }
    let board = StatusBoard::new();
    let h = DriftHandler::new(d.clone(), desired.clone(), mode, board.clone());
    (t, d, desired, board, h)
}

#[test]
fn scan_heals_quarantines_and_lists_unmanaged() {
    let (_t, d, _desired, board, h) = setup(DriftMode::Enforce);
    let m = d.manifest_dir();
    fs::write(m.join("kube-scheduler.yaml"), "edited").unwrap();
    fs::write(m.join("kube-scheduler.yaml.bak"), "old copy").unwrap();
    fs::write(
        m.join("kube-vip.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-vip\n",
    )
    .unwrap();
    fs::write(m.join(".kube-scheduler.yaml.swp"), "swap").unwrap();
    let findings = h.scan();
    assert!(
        findings.contains(&Finding::Restored("kube-scheduler.yaml".into())),
        "{findings:?}"
    );
    assert!(findings.contains(&Finding::Unmanaged("kube-vip.yaml".into())));
    assert_eq!(
        fs::read(m.join("kube-scheduler.yaml")).unwrap(),
        b"scheduler v1\n"
    );
    assert!(!m.join("kube-scheduler.yaml.bak").exists());
    assert!(m.join("kube-vip.yaml").exists());
    assert!(m.join(".kube-scheduler.yaml.swp").exists());
    let q: Vec<_> = fs::read_dir(d.quarantine_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(q.len(), 1);
    assert!(q[0].to_str().unwrap().ends_with("-kube-scheduler.yaml.bak"));
    let s = board.snapshot();
    assert_eq!(s.unmanaged, vec!["kube-vip.yaml"]);
    assert_eq!(s.drift.len(), 1);
    assert_eq!(s.drift[0].action, "Restored");
    assert_eq!(s.quarantined.len(), 1);
    // Nothing left to do.
    assert_eq!(h.scan(), vec![Finding::Unmanaged("kube-vip.yaml".into())]);
    fs::remove_file(m.join("kube-vip.yaml")).unwrap();
    h.scan();
    assert!(board.snapshot().unmanaged.is_empty());
}

#[test]
fn a_file_that_becomes_managed_leaves_the_unmanaged_list() {
    // Issue 11: status.unmanaged (and kubeplane_agent_unmanaged_files) kept listing a
    // file after kubeplane took it over, because check() returned early for managed
    // files and never cleared the entry.
    let (_t, d, desired, board, h) = setup(DriftMode::Enforce);
    let m = d.manifest_dir();
    let api = b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: my-apiserver\n";
    fs::write(m.join("kube-apiserver.yaml"), api).unwrap();
    assert_eq!(
        h.check("kube-apiserver.yaml"),
        Some(Finding::Unmanaged("kube-apiserver.yaml".into()))
    );
    assert_eq!(board.snapshot().unmanaged, vec!["kube-apiserver.yaml"]);
    // kubeplane takes kube-apiserver over (the engine sets it and writes it).
    {
        let mut g = desired.lock();
        g.set(Component::ApiServer, api.to_vec());
    }
    // By an event on the file ...
    assert_eq!(h.check("kube-apiserver.yaml"), None);
    assert!(
        board.snapshot().unmanaged.is_empty(),
        "{:?}",
        board.snapshot().unmanaged
    );
    // ... and by a scan.
    desired.lock().remove(Component::ApiServer);
    h.scan();
    assert_eq!(board.snapshot().unmanaged, vec!["kube-apiserver.yaml"]);
    desired.lock().set(Component::ApiServer, api.to_vec());
    assert!(h.scan().is_empty());
    assert!(board.snapshot().unmanaged.is_empty());
}

#[test]
fn observe_mode_reports_once_and_does_not_touch() {
    let (_t, d, _desired, board, h) = setup(DriftMode::Observe);
    let p = d.manifest_dir().join("kube-scheduler.yaml");
    fs::write(&p, "edited").unwrap();
    assert_eq!(
        h.check_managed(Component::Scheduler),
        Some(Finding::Reported("kube-scheduler.yaml".into()))
    );
    assert_eq!(
        h.check_managed(Component::Scheduler),
        Some(Finding::Reported("kube-scheduler.yaml".into()))
    );
    assert_eq!(fs::read(&p).unwrap(), b"edited");
    assert_eq!(board.snapshot().drift.len(), 1, "reported once per content");
    fs::remove_file(&p).unwrap();
    h.check_managed(Component::Scheduler);
    assert_eq!(board.snapshot().drift.len(), 2);
    assert!(!p.exists());
}

#[test]
fn deleted_or_symlinked_managed_file_is_restored() {
    let (t, d, _desired, _board, h) = setup(DriftMode::Enforce);
    let p = d.manifest_dir().join("kube-scheduler.yaml");
    fs::remove_file(&p).unwrap();
    assert!(h.check_managed(Component::Scheduler).is_some());
    assert_eq!(fs::read(&p).unwrap(), b"scheduler v1\n");
    let other = t.path().join("other");
    fs::write(&other, "x").unwrap();
    fs::remove_file(&p).unwrap();
    std::os::unix::fs::symlink(&other, &p).unwrap();
    // A second restore within a second of the first waits (drift backoff).
    assert!(matches!(
        h.check_managed(Component::Scheduler),
        Some(Finding::Deferred(..))
    ));
    std::thread::sleep(FIGHT_FIRST_BACKOFF + Duration::from_millis(50));
    assert!(matches!(
        h.check_managed(Component::Scheduler),
        Some(Finding::Restored(_))
    ));
    assert!(!fs::symlink_metadata(&p).unwrap().file_type().is_symlink());
    assert_eq!(fs::read(&other).unwrap(), b"x");
}

/// Waits (real time) until `cond` holds, up to 5 s.
async fn eventually(cond: impl FnMut() -> bool) -> bool {
    eventually_for(Duration::from_secs(5), cond).await
}

#[tokio::test]
async fn real_notify_events_drive_healing() {
    let (_t, d, desired, board, h) = setup(DriftMode::Enforce);
    let h = Arc::new(h);
    let (_w, rx) = watch(d.manifest_dir()).unwrap();
    tokio::spawn(h.clone().run(rx));
    let m = d.manifest_dir().to_path_buf();
    let p = m.join("kube-scheduler.yaml");
    fs::write(&p, "hand edit").unwrap();
    assert!(eventually(|| fs::read(&p).unwrap_or_default() == b"scheduler v1\n").await);
    // Unrelated static pod untouched, stray quarantined.
    fs::write(
        m.join("haproxy.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: haproxy\n",
    )
    .unwrap();
    fs::write(m.join("kube-scheduler.yaml~"), "copy").unwrap();
    assert!(eventually(|| !m.join("kube-scheduler.yaml~").exists()).await);
    assert!(eventually(|| board.snapshot().unmanaged == vec!["haproxy.yaml"]).await);
    assert!(m.join("haproxy.yaml").exists());
    // Reading files (the handler's own checks) does not trigger further checks.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let checks = h.checks();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.checks(), checks, "checks keep triggering checks");
    // The agent's own write (desired changed under the lock) is not drift.
    let before = board.snapshot().drift.len();
    {
        let mut g = desired.lock();
        g.set(Component::Scheduler, b"scheduler v2\n".to_vec());
        d.write_manifest(
            "kube-scheduler.yaml",
            &[Component::Scheduler],
            b"scheduler v2\n",
        )
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(board.snapshot().drift.len(), before);
    assert_eq!(fs::read(&p).unwrap(), b"scheduler v2\n");
}

#[test]
fn fights_back_off_doubling_and_are_reported_from_the_third_restore() {
    let t0 = Instant::now();
    let s = |ms: u64| t0 + Duration::from_millis(ms);
    let mut f = Fights::default();
    assert_eq!(f.allowed("a.yaml", t0), Ok(()));
    assert_eq!(f.restored("a.yaml", t0), None);
    assert_eq!(
        f.allowed("a.yaml", s(500)),
        Err(s(1000)),
        "1 s after the first"
    );
    assert_eq!(f.allowed("b.yaml", s(500)), Ok(()), "per file");
    assert_eq!(f.restored("a.yaml", s(1000)), None);
    assert_eq!(
        f.allowed("a.yaml", s(2500)),
        Err(s(3000)),
        "2 s after the second"
    );
    assert_eq!(
        f.restored("a.yaml", s(3000)),
        Some((3, Duration::from_secs(4)))
    );
    // Doubling stops at five minutes.
    let mut at = s(7000);
    for _ in 0..20 {
        f.restored("a.yaml", at);
        at += Duration::from_secs(1);
    }
    assert_eq!(
        f.restored("a.yaml", at).map(|(_, b)| b),
        Some(FIGHT_MAX_BACKOFF)
    );
    // Quiet for longer than the window: a new count.
    let later = at + FIGHT_WINDOW + Duration::from_secs(1);
    assert_eq!(f.restored("a.yaml", later), None);
    assert_eq!(
        f.allowed("a.yaml", later + Duration::from_millis(999)),
        Err(later + Duration::from_secs(1))
    );
}

#[tokio::test]
async fn a_tool_rewriting_a_managed_file_again_and_again_is_backed_off_and_reported() {
    let (_t, d, _desired, board, h) = setup(DriftMode::Enforce);
    let h = Arc::new(h);
    let (_w, rx) = watch(d.manifest_dir()).unwrap();
    tokio::spawn(h.clone().run(rx));
    let p = d.manifest_dir().join("kube-scheduler.yaml");
    // Another tool writes its version every 100 ms for 3.5 s.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(3500) {
        let tmp = d.manifest_dir().join(".tool-tmp");
        fs::write(&tmp, "the other tool's version\n").unwrap();
        fs::rename(&tmp, &p).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let restores = board
        .snapshot()
        .drift
        .iter()
        .filter(|r| r.action == "Restored")
        .count();
    // Without backoff ~35 restores; with 1 s, 2 s, … at most 1 + 1 + 1 + 1 in 3.5 s.
    assert!((2..=4).contains(&restores), "{restores} restores");
    let fights = board
        .event_counts()
        .into_iter()
        .filter(|(reason, _, _)| reason == "DriftFight")
        .map(|(_, _, n)| n)
        .sum::<u64>();
    assert!(fights >= 1, "a DriftFight event");
    // Once the tool stops, the file is restored when its wait ends.
    assert!(
        eventually_for(Duration::from_secs(10), || fs::read(&p).unwrap_or_default()
            == b"scheduler v1\n")
        .await
    );
}

/// Waits (real time) until `cond` holds, up to `limit`.
async fn eventually_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

#[tokio::test]
async fn real_notify_events_in_observe_mode_only_report() {
    let (_t, d, _desired, board, h) = setup(DriftMode::Observe);
    let h = Arc::new(h);
    let (_w, rx) = watch(d.manifest_dir()).unwrap();
    tokio::spawn(h.clone().run(rx));
    let p = d.manifest_dir().join("kube-scheduler.yaml");
    fs::write(&p, "hand edit").unwrap();
    assert!(
        eventually(|| board
            .snapshot()
            .drift
            .iter()
            .any(|r| r.action == "Reported"))
        .await
    );
    assert_eq!(fs::read(&p).unwrap(), b"hand edit");
}
