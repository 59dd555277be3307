//! What the HA scenarios share: their settings, `kubectl`, a watch recorder of the
//! ControlPlaneNodes' history, a `/readyz` sampler through the VIP, and the baseline guard
//! that puts the config back after every scenario (on failure too).
//!
//! Everything goes through `kubectl` (JSON) and `curl`, not through kubeplane's own types:
//! the scenarios check what a user sees of the installed product.

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod history;
pub use history::*;
/// Prints past libtest's capture.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[derive(Clone, Debug)]
pub struct Env {
    pub kubeconfig: String,
    /// The launcher's directory (`KUBEPLANE_CLUSTER_DIR` of `e2e/cluster/cluster.sh`).
    pub cluster_dir: PathBuf,
    pub cluster_sh: PathBuf,
    pub kubectl: String,
    /// The ControlPlaneConfig that manages every node (installed before the suite runs).
    pub config: String,
    /// kubeplane's release namespace.
    pub namespace: String,
    /// `kubeplane` for `rollout status`.
    pub bin: String,
    /// `https://VIP:6443`, the server of KUBECONFIG.
    pub server: String,
    pub start: Instant,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The settings, or `None` (after saying why) when the suite is skipped.
pub fn env_or_skip(test: &str) -> Option<Env> {
    let (Some(kubeconfig), Some(dir)) = (var("KUBECONFIG"), var("KUBEPLANE_HA_CLUSTER_DIR")) else {
        say(&format!(
            "e2e_ha {test}: skipped: KUBECONFIG and KUBEPLANE_HA_CLUSTER_DIR must both be set (a \
             running `e2e/cluster/cluster.sh up 3` with kubeplane installed by Helm; see \
             e2e/README.md, \"HA scenarios\")"
        ));
        return None;
    };
    let text = std::fs::read_to_string(&kubeconfig)
        .unwrap_or_else(|e| panic!("KUBECONFIG={kubeconfig}: {e}"));
    let server = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap_or_else(|| panic!("KUBECONFIG={kubeconfig}: no `server:` line"))
        .trim()
        .to_string();
    let cluster_dir = PathBuf::from(dir);
    assert!(
        cluster_dir.join("nodes.list").is_file(),
        "KUBEPLANE_HA_CLUSTER_DIR={}: no nodes.list: not a cluster.sh directory",
        cluster_dir.display()
    );
    Some(Env {
        kubeconfig,
        cluster_sh: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("e2e/cluster/cluster.sh"),
        cluster_dir,
        kubectl: var("KUBEPLANE_E2E_KUBECTL").unwrap_or_else(|| "kubectl".into()),
        config: var("KUBEPLANE_HA_CONFIG").unwrap_or_else(|| "kubernetes".into()),
        namespace: var("KUBEPLANE_HA_NAMESPACE").unwrap_or_else(|| "kubeplane-system".into()),
        bin: var("KUBEPLANE_E2E_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_kubeplane").into()),
        server,
        start: Instant::now(),
    })
}

/// One scenario at a time against the one cluster, whatever `--test-threads` says.
pub fn lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

impl Env {
    /// Seconds since the scenario started, for timelines.
    pub fn t(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    pub fn log(&self, line: &str) {
        say(&format!("[{:7.1}s] {line}", self.t()));
    }

    pub fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .map_err(|e| format!("{}: {e}", self.kubectl))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "kubectl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    pub fn get(&self, args: &[&str]) -> Result<Value, String> {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        let out = self.kubectl(&a)?;
        serde_json::from_str(&out).map_err(|e| format!("kubectl get {}: {e}", args.join(" ")))
    }

    /// `get`, retried for up to a minute (the VIP may drop a connection while an API server
    /// goes away).
    pub fn get_retry(&self, args: &[&str]) -> Result<Value, String> {
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            match self.get(args) {
                Ok(v) => return Ok(v),
                Err(e) if Instant::now() > end => return Err(e),
                Err(_) => thread::sleep(Duration::from_millis(500)),
            }
        }
    }

    pub fn cpc(&self) -> Result<Value, String> {
        self.get_retry(&["controlplaneconfig", &self.config])
    }

    pub fn cpns(&self) -> Result<Vec<Value>, String> {
        Ok(self.get_retry(&["controlplanenodes"])?["items"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    pub fn nodes(&self) -> Vec<String> {
        std::fs::read_to_string(self.cluster_dir.join("nodes.list"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// The node's manifest directory as seen from the host.
    pub fn manifest_dir(&self, node: &str) -> PathBuf {
        self.cluster_dir
            .join("nodes")
            .join(node)
            .join("etc/kubernetes/manifests")
    }

    pub fn node_path(&self, node: &str, rel: &str) -> PathBuf {
        self.cluster_dir.join("nodes").join(node).join(rel)
    }

    /// `cluster.sh CMD ARGS…` (stop, start, …).
    pub fn cluster(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.cluster_sh)
            .args(args)
            .env("KUBEPLANE_CLUSTER_DIR", &self.cluster_dir)
            .output()
            .map_err(|e| format!("{}: {e}", self.cluster_sh.display()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "cluster.sh {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Replace the config's spec; returns the new generation.
    pub fn set_spec(&self, spec: &Value) -> Result<i64, String> {
        let patch = json!([{ "op": "replace", "path": "/spec", "value": spec }]).to_string();
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            match self.kubectl(&[
                "patch",
                "controlplaneconfig",
                &self.config,
                "--type=json",
                "-p",
                &patch,
                "-o",
                "json",
            ]) {
                Ok(out) => {
                    let v: Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
                    return v["metadata"]["generation"]
                        .as_i64()
                        .ok_or_else(|| "patched config has no generation".into());
                }
                Err(e) if Instant::now() > end => return Err(e),
                Err(_) => thread::sleep(Duration::from_millis(500)),
            }
        }
    }

    /// Waits until the config's generation `generation` is rolled out: observed, `Ready=True`
    /// for it, and every ControlPlaneNode `Healthy` at the config's revision. Returns the
    /// revision.
    pub fn wait_rolled_out(&self, generation: i64, timeout: Duration) -> Result<String, String> {
        let end = Instant::now() + timeout;
        loop {
            let last = match self.rolled_out(generation) {
                Ok(rev) => return Ok(rev),
                Err(why) => why,
            };
            if Instant::now() > end {
                return Err(format!(
                    "generation {generation} of {} not rolled out after {timeout:?}: {last}",
                    self.config
                ));
            }
            thread::sleep(Duration::from_secs(1));
        }
    }

    fn rolled_out(&self, generation: i64) -> Result<String, String> {
        let c = self.cpc()?;
        let st = &c["status"];
        if st["observedGeneration"].as_i64() != Some(generation) {
            return Err(format!("observedGeneration {}", st["observedGeneration"]));
        }
        let ready = condition(&c, "Ready");
        if ready["status"] != "True" || ready["observedGeneration"].as_i64() != Some(generation) {
            return Err(format!("Ready: {ready}"));
        }
        let rev = st["revision"].as_str().unwrap_or_default().to_string();
        for n in self.cpns()? {
            let name = n["metadata"]["name"].as_str().unwrap_or_default();
            if n["spec"]["revision"] != rev.as_str()
                || n["status"]["phase"] != "Healthy"
                || n["status"]["appliedRevision"] != rev.as_str()
            {
                return Err(format!(
                    "node {name}: {} at {} (applied {})",
                    n["status"]["phase"], n["spec"]["revision"], n["status"]["appliedRevision"]
                ));
            }
        }
        Ok(rev)
    }

    /// The nodes of the kube-controller-manager and kube-scheduler Lease holders (kubeadm
    /// identities are `<hostname>_<uuid>`; the launcher's nodes' hostnames are their names).
    pub fn leader_nodes(&self) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for lease in ["kube-controller-manager", "kube-scheduler"] {
            let l = self.get_retry(&["-n", "kube-system", "lease", lease])?;
            let holder = l["spec"]["holderIdentity"].as_str().unwrap_or_default();
            let node = holder.split('_').next().unwrap_or_default().to_string();
            if !node.is_empty() && !out.contains(&node) {
                out.push(node);
            }
        }
        Ok(out)
    }
}

pub fn condition(obj: &Value, type_: &str) -> Value {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_).cloned())
        .unwrap_or(Value::Null)
}

/// The config's spec with `f` applied (to a copy).
pub fn changed(spec: &Value, f: impl FnOnce(&mut Value)) -> Value {
    let mut s = spec.clone();
    f(&mut s);
    s
}

/// Sets `extraArgs` flag `name` of a component section (`apiServer`, `scheduler`, …),
/// replacing an existing value.
pub fn set_arg(spec: &mut Value, section: &str, name: &str, value: &str) {
    let sec = spec
        .as_object_mut()
        .unwrap()
        .entry(section)
        .or_insert_with(|| json!({}));
    let args = sec
        .as_object_mut()
        .unwrap()
        .entry("extraArgs")
        .or_insert_with(|| json!([]));
    let list = args.as_array_mut().unwrap();
    list.retain(|a| a["name"] != name);
    list.push(json!({ "name": name, "value": value }));
}

/// Merges `rollout` settings into the spec.
pub fn set_rollout(spec: &mut Value, rollout: Value) {
    let r = spec
        .as_object_mut()
        .unwrap()
        .entry("rollout")
        .or_insert_with(|| json!({}));
    for (k, v) in rollout.as_object().unwrap() {
        r[k] = v.clone();
    }
}

// ------------------------------------------------------------------ /readyz through the VIP

/// Samples `GET /readyz` through the VIP every 100 ms (each request at most 2 s), and with
/// each request haproxy's view of the API servers (`show stat` on the launcher's admin
/// socket): which were seen in `DRAIN` (kubeplane's agent check).
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<(usize, Vec<String>)>>,
    drained: Arc<Mutex<std::collections::BTreeSet<String>>>,
}

/// haproxy's servers of the API backend with their status (`UP`, `DOWN`, `DRAIN`, …), read
/// from its stats socket; empty when the socket cannot be read.
pub fn haproxy_servers(cluster_dir: &Path) -> Vec<(String, String)> {
    use std::io::Read;
    let Ok(mut sock) =
        std::os::unix::net::UnixStream::connect(cluster_dir.join("haproxy/admin.sock"))
    else {
        return Vec::new();
    };
    let _ = sock.set_read_timeout(Some(Duration::from_secs(1)));
    let mut text = String::new();
    if sock.write_all(b"show stat\n").is_err() || sock.read_to_string(&mut text).is_err() {
        return Vec::new();
    }
    text.lines()
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.len() > 17 && f[0] == "kube-apiservers" && f[1] != "BACKEND")
        .map(|f| (f[1].to_string(), f[17].to_string()))
        .collect()
}

impl Sampler {
    pub fn start(env: &Env) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let drained: Arc<Mutex<std::collections::BTreeSet<String>>> = Arc::default();
        let (e, st, dr) = (env.clone(), stop.clone(), drained.clone());
        let ca = env.cluster_dir.join("pki/ca.crt");
        let thread = thread::spawn(move || {
            let url = format!("{}/readyz", e.server.trim_end_matches('/'));
            let (mut n, mut failures) = (0usize, Vec::new());
            let t0 = Instant::now();
            while !st.load(Ordering::SeqCst) {
                let sent = e.t();
                let out = Command::new("curl")
                    .args([
                        "-s",
                        "-o",
                        "/dev/null",
                        "-w",
                        "%{http_code}",
                        "--max-time",
                        "2",
                    ])
                    .arg("--cacert")
                    .arg(&ca)
                    .arg(&url)
                    .output();
                n += 1;
                let code = out
                    .as_ref()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_else(|err| err.to_string());
                if code != "200" {
                    let exit = out.map(|o| o.status.code().unwrap_or(-1)).unwrap_or(-1);
                    failures.push(format!("{sent:.1}s: HTTP {code} (curl exit {exit})"));
                }
                for (server, status) in haproxy_servers(&e.cluster_dir) {
                    if status.contains("DRAIN") {
                        dr.lock().unwrap().insert(server);
                    }
                }
                let next = t0 + Duration::from_millis(100) * n as u32;
                if let Some(d) = next.checked_duration_since(Instant::now()) {
                    thread::sleep(d);
                }
            }
            (n, failures)
        });
        Sampler {
            stop,
            thread: Some(thread),
            drained,
        }
    }

    /// The API servers haproxy showed in `DRAIN` so far.
    pub fn drained(&self) -> Vec<String> {
        self.drained.lock().unwrap().iter().cloned().collect()
    }

    /// Requests sent and the failed ones.
    pub fn stop(&mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop();
    }
}

// ------------------------------------------------------------------ one scenario

/// Runs a scenario: waits until the config is rolled out and the installation healthy,
/// remembers the spec, runs `body`, then — whatever happened — starts every stopped node,
/// puts the spec back and waits until that is rolled out again.
pub fn scenario(id: &str, body: impl FnOnce(&Env, &Value) -> Result<(), String>) {
    let Some(env) = env_or_skip(id) else { return };
    let _guard = lock();
    let env = Env {
        start: Instant::now(),
        ..env
    };
    env.log(&format!("e2e_ha {id}: start"));
    let baseline = preflight(&env).unwrap_or_else(|e| panic!("e2e_ha {id}: preflight: {e}"));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&env, &baseline)));
    let restored = restore(&env, &baseline);
    match (result, restored) {
        (Ok(Ok(())), Ok(())) => env.log(&format!("e2e_ha {id}: passed")),
        (Ok(Err(e)), r) => panic!("e2e_ha {id}: {e}{}", cleanup_note(r)),
        (Err(p), r) => {
            say(&format!("e2e_ha {id}: panicked{}", cleanup_note(r)));
            std::panic::resume_unwind(p)
        }
        (Ok(Ok(())), Err(e)) => panic!("e2e_ha {id}: the checks passed, the cleanup failed: {e}"),
    }
}

fn cleanup_note(r: Result<(), String>) -> String {
    match r {
        Ok(()) => String::new(),
        Err(e) => format!(" (and the cleanup failed: {e})"),
    }
}

/// The config must exist and be rolled out on every node, and the operator and agents be
/// available; returns its spec.
fn preflight(env: &Env) -> Result<Value, String> {
    let c = env.cpc().map_err(|e| {
        format!("{e}: install kubeplane and its config first (e2e/README.md, \"HA scenarios\")")
    })?;
    let generation = c["metadata"]["generation"].as_i64().unwrap_or_default();
    env.wait_rolled_out(generation, Duration::from_secs(900))?;
    let cpns = env.cpns()?;
    let nodes = env.nodes();
    if cpns.len() != nodes.len() || nodes.len() < 3 {
        return Err(format!(
            "{} ControlPlaneNodes for the {} nodes {nodes:?}: the scenarios need three nodes managed by {}",
            cpns.len(),
            nodes.len(),
            env.config
        ));
    }
    for (kind, name) in [
        ("deployment", "kubeplane-operator"),
        ("daemonset", "kubeplane-agent"),
    ] {
        env.kubectl(&[
            "-n",
            &env.namespace,
            "rollout",
            "status",
            kind,
            name,
            "--timeout=300s",
        ])?;
    }
    Ok(env.cpc()?["spec"].clone())
}

fn restore(env: &Env, baseline: &Value) -> Result<(), String> {
    for n in env.nodes() {
        let pid = env.node_path(&n, "containerd.pid");
        let running = std::fs::read_to_string(&pid)
            .ok()
            .is_some_and(|p| Path::new(&format!("/proc/{}", p.trim())).exists());
        if !running {
            env.log(&format!("cleanup: starting node {n}"));
            env.cluster(&["start", &n])?;
        }
    }
    for n in env.nodes() {
        env.kubectl(&["uncordon", &n])?;
    }
    let current = env.cpc()?;
    if current["spec"] == *baseline {
        return Ok(());
    }
    env.log("cleanup: putting the config's spec back");
    let generation = env.set_spec(baseline)?;
    let rev = env.wait_rolled_out(generation, Duration::from_secs(900))?;
    env.log(&format!("cleanup: spec back, rolled out at revision {rev}"));
    Ok(())
}
