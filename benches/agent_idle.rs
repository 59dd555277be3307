//! Idle footprint of the real `kubeplane agent` binary: memory (VmRSS) and CPU while a
//! healthy node waits for something to happen.
//!
//! The harness plays the rest of the cluster on loopback with the test kit: its fake API
//! server (`kubeplane::testkit::apiserver`) serving one `ControlPlaneNode` whose spec is rendered
//! from `examples/kubeadm-defaults.yaml` (ports moved to free ones), mirror pods that already
//! show the expected config hashes and are Ready, and watches that stay open and silent; three
//! real HTTPS health endpoints (`kubeplane::testkit::tls`) answer 200. The agent applies the revision into a temporary
//! manifest directory, reports `Healthy`, and then idles with its watches (CPN, mirror pods
//! during waits, inotify on the manifest and certificate directories) open.
//!
//! Then, over `KUBEPLANE_IDLE_SECONDS` (default 60), `/proc/<pid>/status` VmRSS is sampled
//! every second and `/proc/<pid>/stat` utime+stime and the context switch counters are read
//! at both ends.
//!
//! `cargo bench --bench agent_idle` measures the bench-profile build; the shipped binary is the
//! `dist` profile (size-optimized), so measure that one for the RSS target:
//! `cargo build --profile dist && KUBEPLANE_AGENT_BIN=target/dist/kubeplane cargo bench --bench agent_idle`. Targets: RSS < 12 MiB, no busy loops (CPU ~0 %, a
//! handful of wake-ups). VmRSS is reported split into anonymous memory (heap, stacks) and
//! file-backed pages (the binary's code, clean and shared with the page cache).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use kubeplane::api::{ControlPlaneConfigSpec, NodeFacts, parse_config};
use kubeplane::render::{self, RenderInput};
use kubeplane::testkit::apiserver::{Fake, kubeconfig};
use kubeplane::testkit::tls::{self, Reply};
use serde_json::json;

const NODE: &str = "bench-node";

/// A real HTTPS endpoint answering 200 to anything, on an already bound listener.
fn health_endpoint(listener: std::net::TcpListener) {
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let acceptor = tls::self_signed_acceptor(&["localhost"]).unwrap();
    tls::serve(listener, acceptor, |_| Reply::Status(200, "ok".into()));
}

fn proc_status(pid: u32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Per thread: (name, utime+stime ticks, voluntary, involuntary context switches).
fn threads(pid: u32) -> BTreeMap<String, (String, u64, u64, u64)> {
    let mut out = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for e in rd.flatten() {
        let tid = e.file_name().into_string().unwrap_or_default();
        let base = format!("/proc/{pid}/task/{tid}");
        let name = std::fs::read_to_string(format!("{base}/comm"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let ticks = cpu_ticks_of(&format!("{base}/stat"));
        let status = std::fs::read_to_string(format!("{base}/status")).unwrap_or_default();
        let get = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        out.insert(
            tid,
            (
                name,
                ticks,
                get("voluntary_ctxt_switches:"),
                get("nonvoluntary_ctxt_switches:"),
            ),
        );
    }
    out
}

fn cpu_ticks(pid: u32) -> u64 {
    cpu_ticks_of(&format!("/proc/{pid}/stat"))
}

fn cpu_ticks_of(path: &str) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name (which is in parentheses): state is field 3; utime and
    // stime are fields 14 and 15.
    let after = text.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn spec_with_ports(api: u16, cm: u16, sched: u16) -> ControlPlaneConfigSpec {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/kubeadm-defaults.yaml"
    ))
    .unwrap();
    let mut v = serde_json::to_value(parse_config(&text).unwrap().spec).unwrap();
    v["apiServer"] = json!({"securePort": api});
    v["controllerManager"] =
        json!({"extraArgs": [{"name": "secure-port", "value": cm.to_string()}]});
    v["scheduler"] = json!({"extraArgs": [{"name": "secure-port", "value": sched.to_string()}]});
    v["rollout"] = json!({"minReadySeconds": 1});
    serde_json::from_value(v).unwrap()
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` does not: measure only when asked.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "skipped: run with `cargo bench --bench {}`",
            env!("CARGO_CRATE_NAME")
        );
        return;
    }
    let idle_secs: u64 = std::env::var("KUBEPLANE_IDLE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let tmp = tempfile::tempdir().unwrap();
    let manifests = tmp.path().join("manifests");
    let state = tmp.path().join("kubeplane");
    let root = tmp.path().join("root");
    std::fs::create_dir(&manifests).unwrap();
    std::fs::create_dir(&root).unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Bound now and kept, so the three ports are distinct and stay ours.
    let listeners: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    let spec = spec_with_ports(ports[0], ports[1], ports[2]);
    let facts = NodeFacts {
        node_name: NODE.into(),
        advertise_address: Some("127.0.0.1".into()),
        manifest_dir: Some(manifests.display().to_string()),
        state_dir: Some(state.display().to_string()),
        ..Default::default()
    };
    let rendered = render::render(&RenderInput {
        spec: &spec,
        node: &facts,
        encryption_config_sha256: None,
    })
    .unwrap();
    let revision = render::revision(&spec, None);
    let node_spec = render::node_spec("bench", &spec, &revision, &rendered);
    let fake = Fake::new(Duration::ZERO);
    fake.put(
        "controlplanenodes",
        "",
        json!({"metadata": {"name": NODE}, "spec": node_spec}),
    );
    for m in &node_spec.manifests {
        let name = m.component.mirror_pod_name(NODE);
        fake.put(
            "pods",
            "kube-system",
            json!({"metadata": {"name": name,
                                "annotations": {"kubernetes.io/config.hash": m.config_hash}},
                   "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        );
    }
    let api = rt.block_on(async {
        for l in listeners {
            health_endpoint(l);
        }
        fake.serve().await
    });
    let kubeconfig = kubeconfig(tmp.path(), api);

    // KUBEPLANE_AGENT_BIN measures another build of the same source, such as the shipped
    // `dist` profile.
    let bin = std::env::var("KUBEPLANE_AGENT_BIN").unwrap_or_else(|_| {
        eprintln!(
            "note: measuring the bench-profile build; the shipped one is target/dist/kubeplane (cargo build --profile dist), pass it as KUBEPLANE_AGENT_BIN"
        );
        env!("CARGO_BIN_EXE_kubeplane").to_string()
    });
    let bin_size = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);
    let mut child = std::process::Command::new(&bin)
        .args(["agent", "--node", NODE])
        .arg("--manifest-dir")
        .arg(&manifests)
        .arg("--state-dir")
        .arg(&state)
        .arg("--host-root")
        .arg(&root)
        .env("KUBECONFIG", &kubeconfig)
        .env("NODE_IP", "127.0.0.1")
        .env("KUBEPLANE_LOG", "warn")
        .spawn()
        .expect("start the agent");
    let pid = child.id();

    let start = Instant::now();
    loop {
        if fake.phases().iter().any(|(_, _, p)| p == "Healthy") {
            break;
        }
        if start.elapsed() > Duration::from_secs(120) || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!(
                "the agent did not report Healthy; phases {:?}",
                fake.phases()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let healthy_after = start.elapsed();
    let manifests_written = std::fs::read_dir(Path::new(&manifests)).unwrap().count();
    std::thread::sleep(Duration::from_secs(5));

    let clk = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let ticks0 = cpu_ticks(pid);
    let threads0 = threads(pid);
    let requests0 = fake.requests();
    let mut rss: Vec<u64> = Vec::new();
    let t0 = Instant::now();
    for _ in 0..idle_secs {
        rss.push(proc_status(pid, "VmRSS:"));
        std::thread::sleep(Duration::from_secs(1));
    }
    let window = t0.elapsed().as_secs_f64();
    let ticks = cpu_ticks(pid) - ticks0;
    let threads1 = threads(pid);
    let (mut vol, mut invol) = (0u64, 0u64);
    let mut per_thread = Vec::new();
    for (tid, (name, t1, v1, i1)) in &threads1 {
        let (t0, v0, i0) = threads0
            .get(tid)
            .map(|x| (x.1, x.2, x.3))
            .unwrap_or((0, 0, 0));
        vol += v1 - v0;
        invol += i1 - i0;
        per_thread.push(format!(
            "{name}: {:.2} s CPU, {} wake-ups",
            (t1 - t0) as f64 / 100.0,
            (v1 - v0) + (i1 - i0)
        ));
    }
    let requests = fake.requests() - requests0;
    let threads = proc_status(pid, "Threads:");
    let hwm = proc_status(pid, "VmHWM:");
    let rss_anon = proc_status(pid, "RssAnon:");
    let rss_file = proc_status(pid, "RssFile:");
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let _ = child.wait();

    let max = *rss.iter().max().unwrap_or(&0);
    let mean = rss.iter().sum::<u64>() as f64 / rss.len().max(1) as f64;
    println!("binary: {bin} ({:.1} MB)", bin_size as f64 / 1e6);
    println!(
        "agent idle: Healthy after {:.1} s ({manifests_written} manifests written); over {window:.0} s idle: VmRSS mean {:.1} MiB, max {:.1} MiB (VmHWM {:.1} MiB), CPU {:.2} s = {:.3} %, {vol} voluntary + {invol} involuntary context switches, {requests} API requests, {threads} threads",
        healthy_after.as_secs_f64(),
        mean / 1024.0,
        max as f64 / 1024.0,
        hwm as f64 / 1024.0,
        ticks as f64 / clk,
        ticks as f64 / clk / window * 100.0,
    );
    println!(
        "  VmRSS at the end: RssAnon {:.1} MiB (heap, stacks), RssFile {:.1} MiB (the binary's mapped pages)",
        rss_anon as f64 / 1024.0,
        rss_file as f64 / 1024.0
    );
    println!("  per thread: {}", per_thread.join("; "));
}
