//! The ControlPlaneNodes' history, recorded by a watch.

use super::*;

// ------------------------------------------------------------------ ControlPlaneNode history

/// One observation of a ControlPlaneNode from the watch.
#[derive(Clone, Debug)]
pub struct Seen {
    pub t: f64,
    pub node: String,
    pub spec_revision: String,
    pub phase: String,
    pub applied: String,
    pub reason: String,
}

impl Seen {
    /// The node is claimed for a revision it has not settled at: the operator has set a
    /// target it is not `Healthy` at, and it has not stopped (`RolledBack`, `Failed`).
    pub fn in_flight(&self) -> bool {
        let settled = self.phase == "Healthy" && self.applied == self.spec_revision;
        let halted = self.phase == "RolledBack" || self.phase == "Failed";
        !self.spec_revision.is_empty() && !settled && !halted
    }
}

/// Records every version of every ControlPlaneNode (`kubectl get cpn -w -o json`, started
/// again whenever the watch ends, as it does when the API server behind the VIP goes away).
pub struct Recorder {
    pub seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    child: Arc<Mutex<Option<Child>>>,
    thread: Option<JoinHandle<()>>,
}

impl Recorder {
    pub fn start(env: &Env) -> Recorder {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let child: Arc<Mutex<Option<Child>>> = Arc::new(Mutex::new(None));
        let (e, s, st, ch) = (env.clone(), seen.clone(), stop.clone(), child.clone());
        let thread = thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let Ok(mut c) = Command::new(&e.kubectl)
                    .args(["--kubeconfig", &e.kubeconfig, "get", "controlplanenodes"])
                    // A watch through the VIP can hang on a backend that went away:
                    // each kubectl ends after 60 s and is started again (a fresh list).
                    .args(["-w", "-o", "json", "--request-timeout=60s"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                else {
                    thread::sleep(Duration::from_millis(200));
                    continue;
                };
                let out = c.stdout.take().unwrap();
                *ch.lock().unwrap() = Some(c);
                let stream =
                    serde_json::Deserializer::from_reader(BufReader::new(out)).into_iter::<Value>();
                for v in stream {
                    let Ok(v) = v else { break };
                    let str_ = |p: &Value| p.as_str().unwrap_or_default().to_string();
                    s.lock().unwrap().push(Seen {
                        t: e.t(),
                        node: str_(&v["metadata"]["name"]),
                        spec_revision: str_(&v["spec"]["revision"]),
                        phase: str_(&v["status"]["phase"]),
                        applied: str_(&v["status"]["appliedRevision"]),
                        reason: str_(&v["status"]["reason"]),
                    });
                }
                if let Some(mut c) = ch.lock().unwrap().take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                thread::sleep(Duration::from_millis(100));
            }
        });
        Recorder {
            seen,
            stop,
            child,
            thread: Some(thread),
        }
    }

    pub fn history(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn stop(&mut self) -> Vec<Seen> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(c) = self.child.lock().unwrap().as_mut() {
            let _ = c.kill();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.history()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Replays the history: the largest number of nodes in flight at one moment, with the
/// moment, and every node's latest state then.
pub fn max_in_flight(history: &[Seen]) -> (usize, String) {
    let mut latest: std::collections::BTreeMap<String, Seen> = Default::default();
    let (mut max, mut when) = (0, String::new());
    for s in history {
        latest.insert(s.node.clone(), s.clone());
        let flying: Vec<&Seen> = latest.values().filter(|x| x.in_flight()).collect();
        if flying.len() > max {
            max = flying.len();
            when = format!(
                "at {:.1}s: {}",
                s.t,
                flying
                    .iter()
                    .map(|x| format!("{} {} at {}", x.node, x.phase, x.spec_revision))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    (max, when)
}

/// The order in which nodes were first in flight for `revision`, with the times.
pub fn order(history: &[Seen], revision: &str) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for s in history {
        if s.spec_revision == revision && s.in_flight() && !out.iter().any(|(n, _)| n == &s.node) {
            out.push((s.node.clone(), s.t));
        }
    }
    out
}

/// The history as lines (phase changes only).
pub fn timeline(history: &[Seen]) -> String {
    let mut last: std::collections::BTreeMap<&str, (&str, &str, &str)> = Default::default();
    let mut out = String::new();
    for s in history {
        let key = (
            s.phase.as_str(),
            s.spec_revision.as_str(),
            s.applied.as_str(),
        );
        if last.get(s.node.as_str()) != Some(&key) {
            last.insert(&s.node, key);
            out += &format!(
                "  {:7.1}s {} {} target {} applied {} {}\n",
                s.t, s.node, s.phase, s.spec_revision, s.applied, s.reason
            );
        }
    }
    out
}
