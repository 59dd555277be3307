//! HA scenarios (issue 11, item 3): kubeplane installed in a real three-node control plane
//! (`e2e/cluster/cluster.sh up 3`, haproxy VIP, external etcd) the way users install it —
//! its image in every node's containerd, the Helm chart, the operator and agents as pods —
//! and one ControlPlaneConfig managing all three nodes. The tests change that config the way
//! a user does (`kubectl`), watch what the cluster does, and put the config back.
//!
//! Without `KUBECONFIG` and `KUBEPLANE_HA_CLUSTER_DIR` every test says it is skipped and
//! passes. The command, the install and every variable: e2e/README.md, "HA scenarios".

mod kit;
mod leader;
mod token;

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use kit::{
    Env, Recorder, Sampler, changed, condition, max_in_flight, order, scenario, set_arg,
    set_rollout, timeline,
};

const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(900);

/// The revision the config rolls out for `generation`, once the operator has observed it.
fn revision_of(env: &Env, generation: i64) -> Result<String, String> {
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        let c = env.cpc()?;
        if c["status"]["observedGeneration"].as_i64() == Some(generation)
            && let Some(r) = c["status"]["revision"].as_str()
        {
            return Ok(r.to_string());
        }
        if Instant::now() > end {
            return Err(format!(
                "the operator did not observe generation {generation} in 120 s: {}",
                c["status"]
            ));
        }
        thread::sleep(Duration::from_millis(200));
    }
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

/// Checks every rollout property the history shows: one node at a time, each node once.
fn check_one_at_a_time(
    history: &[kit::Seen],
    rev: &str,
    nodes: usize,
) -> Result<Vec<String>, String> {
    let (max, when) = max_in_flight(history);
    check(max <= 1, || {
        format!(
            "{max} nodes in flight at once ({when}); history:\n{}",
            timeline(history)
        )
    })?;
    let ord = order(history, rev);
    check(ord.len() == nodes, || {
        format!(
            "{} of {nodes} nodes were seen in flight for revision {rev}: {ord:?}; history:\n{}",
            ord.len(),
            timeline(history)
        )
    })?;
    Ok(ord.into_iter().map(|(n, _)| n).collect())
}

/// a. A kube-apiserver change (audit logging with an inline policy) rolls to all three nodes
/// one at a time, the Lease holders' nodes last, and the VIP answers every `/readyz`.
#[test]
fn a_apiserver_audit_rolls_one_node_at_a_time_leaders_last_vip_never_fails() {
    scenario("a", |env, baseline| {
        let leaders = env.leader_nodes()?;
        env.log(&format!(
            "kube-controller-manager/kube-scheduler Lease holders on {leaders:?}"
        ));
        let spec = changed(baseline, |s| {
            s["apiServer"]["audit"] = json!({
                "policy": {
                    "apiVersion": "audit.k8s.io/v1",
                    "kind": "Policy",
                    "rules": [{ "level": "Metadata" }]
                },
                "logPath": "/etc/kubernetes/audit/audit.log"
            });
            set_rollout(
                s,
                json!({ "minReadySeconds": 5, "healthTimeoutSeconds": { "apiServer": 180 } }),
            );
        });
        let mut rec = Recorder::start(env);
        let mut sampler = Sampler::start(env);
        thread::sleep(Duration::from_secs(2));
        let t_apply = env.t();
        let generation = env.set_spec(&spec)?;
        let rev = revision_of(env, generation)?;
        env.log(&format!("applied generation {generation}: revision {rev}"));
        let done = env.wait_rolled_out(generation, ROLLOUT_TIMEOUT);
        let t_done = env.t();
        let (requests, failures) = sampler.stop();
        let drained = sampler.drained();
        let history = rec.stop();
        env.log(&format!("history:\n{}", timeline(&history)));
        done?;
        let ord = check_one_at_a_time(&history, &rev, env.nodes().len())?;
        let times = order(&history, &rev);
        env.log(&format!(
            "FIGURES a: order {:?}; rollout {:.1} s; /readyz through the VIP: {requests} requests, {} failed; haproxy showed DRAIN for {drained:?}",
            times,
            t_done - t_apply,
            failures.len()
        ));
        // With the agents answering haproxy's agent check (chart value
        // agent.loadBalancer.agentCheckPort), every node was drained before its restart.
        let agent = env.get(&["-n", &env.namespace, "daemonset", "kubeplane-agent"])?;
        let args = agent["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
        if args.contains("--lb-agent-check-addr") {
            check(drained.len() == env.nodes().len(), || {
                format!("haproxy showed DRAIN only for {drained:?}, not for every node")
            })?;
        }
        for f in &failures {
            env.log(&format!("  failed: {f}"));
        }
        // The Lease holders' nodes come last.
        let tail = &ord[ord.len() - leaders.len()..];
        check(leaders.iter().all(|l| tail.contains(l)), || {
            format!("order {ord:?}: the Lease holders' nodes {leaders:?} are not last")
        })?;
        check(requests >= 100, || {
            format!("only {requests} /readyz requests sampled")
        })?;
        check(failures.is_empty(), || {
            format!(
                "{} of {requests} /readyz requests through the VIP failed: {failures:?}",
                failures.len()
            )
        })?;
        // Every node runs the audit policy and writes events.
        for n in env.nodes() {
            let pod = env.get(&["-n", "kube-system", "pod", &format!("kube-apiserver-{n}")])?;
            let cmd = pod["spec"]["containers"][0]["command"].to_string();
            check(cmd.contains("--audit-policy-file="), || {
                format!("kube-apiserver-{n} runs without --audit-policy-file: {cmd}")
            })?;
            let log = env.node_path(&n, "etc/kubernetes/audit/audit.log");
            let lines = std::fs::read_to_string(&log)
                .map(|s| s.lines().count())
                .unwrap_or(0);
            check(lines > 0, || format!("{}: no audit events", log.display()))?;
            env.log(&format!("{n}: {lines} audit events"));
        }
        Ok(())
    });
}

/// The content and mtime of a node's kube-apiserver.yaml.
fn manifest_stamp(env: &Env, node: &str) -> Result<(Vec<u8>, SystemTime), String> {
    let p = env.manifest_dir(node).join("kube-apiserver.yaml");
    let bytes = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    let mtime = std::fs::metadata(&p)
        .and_then(|m| m.modified())
        .map_err(|e| format!("{}: {e}", p.display()))?;
    Ok((bytes, mtime))
}

/// b. A kube-apiserver revision that never becomes healthy is rolled back on the first node;
/// the other nodes never receive it; the config is Degraded naming node, component, reason.
#[test]
fn b_broken_apiserver_rolled_back_on_first_node_others_untouched() {
    scenario("b", |env, baseline| {
        let nodes = env.nodes();
        let before: Vec<_> = nodes
            .iter()
            .map(|n| manifest_stamp(env, n))
            .collect::<Result<_, _>>()?;
        // Valid for kubeplane, fatal for kube-apiserver: nothing listens on a port below 1000
        // of a node's loopback. The port differs from run to run: the operator remembers a
        // failed revision and gives it to no node again until the spec changes.
        let port = 1 + SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() % 900);
        let spec = changed(baseline, |s| {
            s["etcd"]["external"]["endpoints"] = json!([format!("https://127.0.0.1:{port}")]);
            set_rollout(
                s,
                json!({ "minReadySeconds": 5, "healthTimeoutSeconds": { "apiServer": 45 } }),
            );
        });
        let mut rec = Recorder::start(env);
        let mut sampler = Sampler::start(env);
        thread::sleep(Duration::from_secs(2));
        let generation = env.set_spec(&spec)?;
        let bad = revision_of(env, generation)?;
        env.log(&format!(
            "applied generation {generation}: broken revision {bad}"
        ));
        // Wait for the rollback and the halt.
        let end = Instant::now() + Duration::from_secs(600);
        let (victim, degraded) = loop {
            let c = env.cpc()?;
            let d = condition(&c, "Degraded");
            let rolled: Vec<Value> = env
                .cpns()?
                .into_iter()
                .filter(|n| {
                    n["status"]["phase"] == "RolledBack" && n["spec"]["revision"] == bad.as_str()
                })
                .collect();
            if d["status"] == "True"
                && d["observedGeneration"].as_i64() == Some(generation)
                && rolled.len() == 1
            {
                break (rolled[0].clone(), d);
            }
            if Instant::now() > end {
                return Err(format!(
                    "no rollback and Degraded config after 600 s: {}; history:\n{}",
                    c["status"],
                    timeline(&rec.history())
                ));
            }
            thread::sleep(Duration::from_secs(1));
        };
        let t_rolled = env.t();
        let name = victim["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let reason = victim["status"]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        env.log(&format!(
            "{name} RolledBack ({reason}): {}; config Degraded: {}",
            victim["status"]["message"], degraded["message"]
        ));
        // It stays halted: 30 s more, then the other nodes' files are compared.
        thread::sleep(Duration::from_secs(30));
        let (requests, failures) = sampler.stop();
        let history = rec.stop();
        env.log(&format!("history:\n{}", timeline(&history)));
        env.log(&format!(
            "FIGURES b: rolled back on {name} ({reason}) {t_rolled:.1} s after the start; /readyz through the VIP: {requests} requests, {} failed",
            failures.len()
        ));
        for f in &failures {
            env.log(&format!("  failed: {f}"));
        }
        let msg = degraded["message"].as_str().unwrap_or_default();
        check(
            msg.contains(&name)
                && msg.contains("kube-apiserver")
                && !reason.is_empty()
                && degraded["reason"] == reason.as_str(),
            || {
                format!(
                    "Degraded does not name node {name} and kube-apiserver in its message and \
                     the node's reason {reason:?} as its reason: {degraded}"
                )
            },
        )?;
        let receivers: Vec<&str> = {
            let mut v: Vec<&str> = history
                .iter()
                .filter(|s| s.spec_revision == bad)
                .map(|s| s.node.as_str())
                .collect();
            v.sort();
            v.dedup();
            v
        };
        check(receivers == [name.as_str()], || {
            format!("the broken revision was given to {receivers:?}, expected only {name}")
        })?;
        for (n, (bytes, mtime)) in nodes.iter().zip(&before) {
            if *n == name {
                continue;
            }
            let (now_bytes, now_mtime) = manifest_stamp(env, n)?;
            check(now_bytes == *bytes && now_mtime == *mtime, || {
                format!(
                    "{n}: kube-apiserver.yaml changed (content equal: {}, mtime {mtime:?} -> {now_mtime:?})",
                    now_bytes == *bytes
                )
            })?;
        }
        check(failures.is_empty(), || {
            format!(
                "{} of {requests} /readyz requests through the VIP failed: {failures:?}",
                failures.len()
            )
        })?;
        Ok(())
    });
}

/// A cheap revision: kube-scheduler's `--v` (each node restarts kube-scheduler only).
fn scheduler_change(baseline: &Value, v: &str) -> Value {
    changed(baseline, |s| {
        set_arg(s, "scheduler", "v", v);
        set_rollout(s, json!({ "minReadySeconds": 2 }));
    })
}

/// Waits until some node is in flight for `rev`; returns it.
fn wait_in_flight(rec: &Recorder, rev: &str) -> Result<String, String> {
    let end = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(s) = rec
            .history()
            .iter()
            .find(|s| s.spec_revision == rev && s.in_flight())
        {
            return Ok(s.node.clone());
        }
        if Instant::now() > end {
            return Err(format!("no node in flight for {rev} after 300 s"));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// e. A control-plane node stopped during a rollout: the rollout halts, the status names the
/// node; it resumes and completes when the node is back.
#[test]
fn e_node_stopped_mid_rollout_halts_and_resumes() {
    scenario("e", |env, baseline| {
        let mut rec = Recorder::start(env);
        let generation = env.set_spec(&scheduler_change(baseline, "4"))?;
        let rev = revision_of(env, generation)?;
        let first = wait_in_flight(&rec, &rev)?;
        // A node the rollout has not reached: stopped as soon as the first one is done.
        let end = Instant::now() + Duration::from_secs(300);
        let victim = loop {
            let h = rec.history();
            let done_first = h.iter().any(|s| {
                s.node == first
                    && s.spec_revision == rev
                    && s.phase == "Healthy"
                    && s.applied == rev
            });
            let touched: Vec<&str> = h
                .iter()
                .filter(|s| s.spec_revision == rev)
                .map(|s| s.node.as_str())
                .collect();
            if done_first
                && let Some(v) = env
                    .nodes()
                    .into_iter()
                    .rev()
                    .find(|n| !touched.contains(&n.as_str()))
            {
                break v;
            }
            if Instant::now() > end {
                return Err(format!("{first} not Healthy at {rev} after 300 s"));
            }
            thread::sleep(Duration::from_millis(100));
        };
        env.log(&format!("{first} done; stopping {victim}"));
        env.cluster(&["stop", &victim])?;
        let t_stop = env.t();
        // Halted: the others finish, the victim does not, and the config says which node.
        let end = Instant::now() + Duration::from_secs(600);
        let halted = loop {
            let cpns = env.cpns()?;
            let others_done = cpns
                .iter()
                .filter(|n| n["metadata"]["name"] != victim.as_str())
                .all(|n| {
                    n["spec"]["revision"] == rev.as_str()
                        && n["status"]["phase"] == "Healthy"
                        && n["status"]["appliedRevision"] == rev.as_str()
                });
            if others_done {
                break cpns;
            }
            if Instant::now() > end {
                return Err(format!(
                    "the other nodes did not finish in 600 s; history:\n{}",
                    timeline(&rec.history())
                ));
            }
            thread::sleep(Duration::from_secs(1));
        };
        let _ = halted;
        thread::sleep(Duration::from_secs(60));
        let c = env.cpc()?;
        let v = env.get_retry(&["controlplanenode", &victim])?;
        let ready = condition(&c, "Ready");
        let progressing = condition(&c, "Progressing");
        env.log(&format!(
            "FIGURES e: {:.0} s after {victim} stopped: {victim} {} at {} (applied {}); config Ready={} \"{}\"; Progressing={} \"{}\"; `kubectl get cpn`:\n{}",
            env.t() - t_stop,
            v["status"]["phase"], v["spec"]["revision"], v["status"]["appliedRevision"],
            ready["status"], ready["message"].as_str().unwrap_or_default(),
            progressing["status"], progressing["message"].as_str().unwrap_or_default(),
            env.kubectl(&["get", "cpn"]).unwrap_or_default()
        ));
        check(
            !(v["status"]["phase"] == "Healthy" && v["status"]["appliedRevision"] == rev.as_str()),
            || format!("{victim} reports Healthy at {rev} although it is stopped"),
        )?;
        check(
            ready["status"] == "False"
                && ready["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(&victim),
            || {
                format!(
                    "the config's Ready condition does not name the stopped node {victim}: {ready}"
                )
            },
        )?;
        // Back: the rollout resumes and completes.
        let t_start = env.t();
        env.cluster(&["start", &victim])?;
        env.log(&format!(
            "{victim} started again ({:.0} s)",
            env.t() - t_start
        ));
        let done = env.wait_rolled_out(generation, ROLLOUT_TIMEOUT);
        let history = rec.stop();
        env.log(&format!("history:\n{}", timeline(&history)));
        done?;
        env.log(&format!(
            "FIGURES e: rollout complete {:.0} s after {victim} was started again",
            env.t() - t_start
        ));
        check_one_at_a_time(&history, &rev, env.nodes().len())?;
        Ok(())
    });
}

/// f. `kubectl get cpn` during a rollout is the progress table; `kubeplane rollout status
/// --watch` ends with exit 0 once (and only once) the rollout is complete.
#[test]
fn f_kubectl_get_cpn_shows_progress_and_rollout_status_watch_exits_0() {
    scenario("f", |env, baseline| {
        let generation = env.set_spec(&scheduler_change(baseline, "5"))?;
        let rev = revision_of(env, generation)?;
        let mut watch = Command::new(&env.bin)
            .args([
                "rollout",
                "status",
                &env.config,
                "--watch",
                "--timeout",
                "900",
            ])
            .env("KUBECONFIG", &env.kubeconfig)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", env.bin))?;
        let mut table = None;
        let end = Instant::now() + ROLLOUT_TIMEOUT;
        let status = loop {
            if let Some(st) = watch.try_wait().map_err(|e| e.to_string())? {
                break st;
            }
            if table.is_none()
                && let Ok(out) = env.kubectl(&["get", "cpn"])
                && out.lines().any(|l| {
                    l.contains(&rev[..rev.len().min(10)])
                        && (l.contains("Applying") || l.contains("WaitingForKubelet"))
                })
            {
                env.log(&format!("`kubectl get cpn` mid-rollout:\n{out}"));
                table = Some(out);
            }
            if Instant::now() > end {
                let _ = watch.kill();
                return Err("kubeplane rollout status --watch did not end".into());
            }
            thread::sleep(Duration::from_millis(500));
        };
        let rolled = env.wait_rolled_out(generation, Duration::from_secs(5));
        let out = watch.wait_with_output().map_err(|e| e.to_string())?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        env.log(&format!("FIGURES f: kubeplane rollout status --watch exited {status} after {:.0} s; last lines:\n{}", env.t(), text.lines().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")));
        check(status.success(), || {
            format!("rollout status --watch exited {status}: {text}")
        })?;
        rolled.map_err(|e| {
            format!("rollout status --watch exited 0 before the rollout was complete: {e}")
        })?;
        let table =
            table.ok_or("never saw a node Applying or WaitingForKubelet in `kubectl get cpn`")?;
        let header: Vec<&str> = table
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        check(
            header.starts_with(&["NAME", "REVISION", "APPLIED", "PHASE"]),
            || format!("`kubectl get cpn` header is {header:?}"),
        )?;
        check(table.lines().count() == env.nodes().len() + 1, || {
            format!("`kubectl get cpn` has not one row per node:\n{table}")
        })?;
        Ok(())
    });
}

/// The recorder every rollout check relies on sees the ControlPlaneNodes (a check of the
/// suite itself: with an empty history, "never two in flight" would hold vacuously).
#[test]
fn z_recorder_sees_every_controlplanenode() {
    let Some(env) = kit::env_or_skip("z") else {
        return;
    };
    let mut rec = Recorder::start(&env);
    thread::sleep(Duration::from_secs(5));
    let history = rec.stop();
    let mut nodes: Vec<String> = history.iter().map(|s| s.node.clone()).collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes, env.nodes(), "recorded: {history:?}");
}
