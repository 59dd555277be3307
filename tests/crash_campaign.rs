//! Crash campaign of the write → wait → rollback → restore cycle (issue 16): `kubeplane apply`
//! of a revision whose kube-scheduler never becomes healthy is SIGKILLed at a random point,
//! then run again with the same (failing) revision, the way a restarted agent meets the same
//! ControlPlaneNode. A fake kubelet (`agent::runtime::fake`) follows the real one's rules over
//! real files: a new `metadata.uid` becomes a new container after a delay, reported through a
//! real CRI socket; a failing revision crash-loops and its endpoint never answers 200.
//!
//! After every restart: the failed revision is never on disk, every file in the manifest
//! directory is a complete managed manifest, nothing else is there, and the restored
//! last-known-good runs (by uid) in the fake kubelet.
//!
//! Opt-in (about 25 minutes with the default 1000 runs on 8 workers; the 10 s minimum health
//! timeout dominates):
//! `cargo test --release --test crash_campaign -- --ignored --nocapture`
//! (`KUBEPLANE_CRASH_ITERATIONS` sets the count, `KUBEPLANE_CRASH_WORKERS` the parallelism).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Rng, free_port, kubeplane};
use kubeplane::agent::runtime::fake::{FakeKubelet, FakeKubeletOptions, has_arg};

/// kube-scheduler runs healthy with `--v` below this and crash-loops from it on.
const FAILING_VERBOSITY: u32 = 5;

fn config(dir: &Path, name: &str, port: u16, verbosity: u32) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(
        &p,
        format!(
            r#"apiVersion: kubeplane.io/v1alpha1
kind: ControlPlaneConfig
metadata:
  name: campaign
spec:
  kubernetesVersion: v1.36.2
  apiServer:
    managed: false
  controllerManager:
    managed: false
  scheduler:
    extraArgs:
    - name: secure-port
      value: "{port}"
    - name: v
      value: "{verbosity}"
  rollout:
    minReadySeconds: 0
    healthTimeoutSeconds:
      scheduler: 10
"#
        ),
    )
    .unwrap();
    p
}

struct Node {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    manifests: PathBuf,
    state: PathBuf,
    root: PathBuf,
    kubelet: FakeKubelet,
    port: u16,
}

impl Node {
    fn new() -> Node {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let manifests = dir.join("manifests");
        std::fs::create_dir(&manifests).unwrap();
        std::fs::create_dir(dir.join("root")).unwrap();
        let opts = FakeKubeletOptions {
            start_delay: Duration::from_millis(200),
            ..FakeKubeletOptions::default()
        }
        .failing_when(|pod| {
            has_arg(pod, |a| {
                a.strip_prefix("--v=")
                    .and_then(|v| v.parse::<u32>().ok())
                    .is_some_and(|v| v >= FAILING_VERBOSITY)
            })
        });
        let kubelet = FakeKubelet::start(&manifests, opts).unwrap();
        Node {
            state: dir.join("kubeplane"),
            root: dir.join("root"),
            port: free_port(),
            manifests,
            dir,
            kubelet,
            _tmp: tmp,
        }
    }

    fn apply(&self, cfg: &Path) -> Command {
        let mut c = kubeplane();
        c.arg("apply")
            .arg("-f")
            .arg(cfg)
            .args(["--node", "cp-1", "--address", "10.0.0.11"])
            .arg("--manifest-dir")
            .arg(&self.manifests)
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--host-root")
            .arg(&self.root)
            .arg("--container-runtime-endpoint")
            .arg(format!("unix://{}", self.kubelet.cri_socket.display()))
            .env("KUBEPLANE_POLL_INTERVAL_MS", "100")
            .env("KUBEPLANE_LOG", "off")
            .env_remove("NODE_IP")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c
    }

    fn scheduler(&self) -> Option<Vec<u8>> {
        std::fs::read(self.manifests.join("kube-scheduler.yaml")).ok()
    }

    fn lifecycle_step(&self) -> String {
        std::fs::read(self.state.join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["lifecycle"]["step"].as_str().map(str::to_string))
            .unwrap_or_else(|| "none".into())
    }
}

#[derive(Default, Debug)]
struct Counts {
    runs: usize,
    killed_in_flight: usize,
    failed_revision_on_disk: usize,
    partial_files: usize,
    stray_files: usize,
    restored_not_running: usize,
    killed_at: BTreeMap<String, usize>,
    failures: Vec<String>,
}

/// The scheduler's `--v` in a manifest, if it parses.
fn verbosity(bytes: &[u8]) -> Option<u32> {
    let pod = kubeplane::agent::files::parse_pod(bytes).ok()?;
    let c = pod.spec?.containers.into_iter().next()?;
    c.command
        .unwrap_or_default()
        .iter()
        .find_map(|a| a.strip_prefix("--v=").and_then(|v| v.parse().ok()))
}

/// The manifest directory holds only complete managed manifests: `(partial, stray)`. Right
/// after a kill (`after_kill`) a staging dot-file of kubeplane's may be left (kubelet ignores
/// dot-files); after a completed run none may.
fn check_dir(node: &Node, after_kill: bool) -> (usize, usize) {
    let (mut partial, mut stray) = (0, 0);
    for e in std::fs::read_dir(&node.manifests).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        if after_kill && name.starts_with(kubeplane::agent::files::STAGING_PREFIX) {
            continue;
        }
        if name != "kube-scheduler.yaml" {
            stray += 1;
            continue;
        }
        let bytes = std::fs::read(e.path()).unwrap();
        if kubeplane::agent::files::parse_pod(&bytes).is_err() {
            partial += 1;
        }
    }
    (partial, stray)
}

fn worker(id: usize, runs: usize, seed: u64, out: Arc<Mutex<Counts>>) {
    let node = Node::new();
    let good = config(&node.dir, "good.yaml", node.port, 2);
    let st = node.apply(&good).status().unwrap();
    assert!(st.success(), "worker {id}: the good revision did not apply");
    let mut rng = Rng(seed);
    for i in 0..runs {
        // Every run another failing revision (a failed one is never tried again).
        let v = FAILING_VERBOSITY + (id * runs + i) as u32;
        let bad = config(&node.dir, "bad.yaml", node.port, v);
        let mut child = node.apply(&bad).spawn().unwrap();
        // Kill points: a third in the write (first 0.6 s), a third around the timeout and the
        // rollback (10–11.5 s), a third anywhere in 0–12 s.
        let ms = match rng.next() % 3 {
            0 => rng.next() % 600,
            1 => 10_000 + rng.next() % 1_500,
            _ => rng.next() % 12_000,
        };
        std::thread::sleep(Duration::from_millis(ms));
        let in_flight = child.try_wait().unwrap().is_none();
        let _ = child.kill();
        let _ = child.wait();
        let step = node.lifecycle_step();
        let (partial_after_kill, stray_after_kill) = check_dir(&node, true);
        // The restart: the same failing revision again.
        let status = node.apply(&bad).status().unwrap();
        let (partial, stray) = check_dir(&node, false);
        let disk = node.scheduler();
        let v_disk = disk.as_deref().and_then(verbosity);
        let mut c = out.lock().unwrap();
        c.runs += 1;
        if in_flight {
            c.killed_in_flight += 1;
            *c.killed_at.entry(step).or_default() += 1;
        }
        c.partial_files += partial + partial_after_kill;
        c.stray_files += stray + stray_after_kill;
        if v_disk.is_none_or(|v| v >= FAILING_VERBOSITY) {
            c.failed_revision_on_disk += 1;
            c.failures.push(format!(
                "worker {id} run {i}: after the restart (exit {status}) the scheduler manifest has --v={v_disk:?}"
            ));
        }
        drop(c);
        // The restored manifest is what the fake kubelet runs.
        let uid = disk
            .as_deref()
            .and_then(|b| kubeplane::agent::files::parse_pod(b).ok())
            .and_then(|p| p.metadata.uid);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut running = false;
        while Instant::now() < deadline {
            if uid.is_some() && node.kubelet.running_uid("kube-scheduler") == uid {
                running = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !running {
            let mut c = out.lock().unwrap();
            c.restored_not_running += 1;
            c.failures.push(format!(
                "worker {id} run {i}: the fake kubelet does not run the manifest on disk (uid {uid:?})"
            ));
        }
    }
}

#[test]
#[ignore = "opt-in: 1000 SIGKILLs of a failing apply and its restart (about 25 minutes)"]
fn crash_campaign_kill_write_wait_rollback_restore_1000_times() {
    let iterations: usize = std::env::var("KUBEPLANE_CRASH_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let workers: usize = std::env::var("KUBEPLANE_CRASH_WORKERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8)
        .max(1);
    let counts = Arc::new(Mutex::new(Counts::default()));
    let begin = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let runs = iterations / workers + usize::from(w < iterations % workers);
            let counts = counts.clone();
            let seed = 0x9E37_79B9_7F4A_7C15 ^ ((std::process::id() as u64) << 8) ^ w as u64;
            std::thread::spawn(move || worker(w, runs, seed, counts))
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let c = counts.lock().unwrap();
    println!(
        "crash campaign: {} runs ({} killed in flight; lifecycle step at the kill: {:?}) in {:.0} s: {} ended with the failed revision on disk after the restart, {} partial files, {} stray files, {} restored manifests not running",
        c.runs,
        c.killed_in_flight,
        c.killed_at,
        begin.elapsed().as_secs_f64(),
        c.failed_revision_on_disk,
        c.partial_files,
        c.stray_files,
        c.restored_not_running
    );
    for f in c.failures.iter().take(20) {
        println!("  {f}");
    }
    assert_eq!(c.runs, iterations);
    assert_eq!(c.failed_revision_on_disk, 0, "{:?}", c.failures);
    assert_eq!(c.partial_files, 0);
    assert_eq!(c.stray_files, 0);
    assert_eq!(c.restored_not_running, 0, "{:?}", c.failures);
}
