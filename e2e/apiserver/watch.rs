//! What is measured from the outside: the API's availability and the manifest file's history.

use super::*;

/// One `/readyz` sample: when it was sent, whether it answered 200.
type Sample = (Instant, bool);

/// `GET /readyz` through the suite's kubeconfig every 150 ms (2 s timeout), in a task.
pub struct Availability {
    samples: Arc<Mutex<Vec<Sample>>>,
    task: tokio::task::JoinHandle<()>,
}

/// A stretch of failed samples: from the first failure to the first success after it.
#[derive(Clone, Copy, Debug)]
pub struct Outage {
    pub start: Instant,
    /// `None`: not over when last sampled.
    pub end: Option<Instant>,
}

impl Outage {
    pub fn seconds(&self) -> f64 {
        self.end
            .unwrap_or_else(Instant::now)
            .duration_since(self.start)
            .as_secs_f64()
    }
    pub fn contains(&self, t: Instant) -> bool {
        self.start <= t && self.end.is_none_or(|e| t < e)
    }
}

impl Availability {
    pub fn start(client: Client) -> Availability {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let out = samples.clone();
        let task = tokio::spawn(async move {
            loop {
                let t = Instant::now();
                let req = http::Request::get("/readyz").body(Vec::new()).unwrap();
                let ok = matches!(
                    tokio::time::timeout(Duration::from_secs(2), client.request_text(req)).await,
                    Ok(Ok(_))
                );
                out.lock().unwrap().push((t, ok));
                tokio::time::sleep_until((t + Duration::from_millis(150)).into()).await;
            }
        });
        Availability { samples, task }
    }

    /// Every outage so far, oldest first.
    pub fn outages(&self) -> Vec<Outage> {
        let samples = self.samples.lock().unwrap();
        let mut out = Vec::new();
        let mut open: Option<Instant> = None;
        for &(t, ok) in samples.iter() {
            match (ok, open) {
                (false, None) => open = Some(t),
                (true, Some(start)) => {
                    out.push(Outage {
                        start,
                        end: Some(t),
                    });
                    open = None;
                }
                _ => {}
            }
        }
        if let Some(start) = open {
            out.push(Outage { start, end: None });
        }
        out
    }

    /// Whether the last sample answered.
    pub fn up(&self) -> bool {
        self.samples
            .lock()
            .unwrap()
            .last()
            .is_some_and(|&(_, ok)| ok)
    }

    /// Waits (up to `timeout`) until a sample taken after `after` answered.
    pub async fn wait_up_after(&self, after: Instant, timeout: Duration) -> Instant {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(&(t, _)) = self
                .samples
                .lock()
                .unwrap()
                .iter()
                .find(|&&(t, ok)| ok && t > after)
            {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "the API did not come back within {}s",
                timeout.as_secs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Availability {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the watcher saw change.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// `kube-apiserver.yaml` now holds this uid (and this `kubeplane.io/restored-after`).
    Manifest {
        uid: Option<String>,
        restored_after: Option<String>,
    },
    /// `state.json`'s `lifecycle.step` (and the whole lifecycle, as JSON).
    Step(String, String),
    /// The watcher SIGKILLed the agent.
    Killed { pid: i32, step_then: String },
}

/// Polls `kube-apiserver.yaml` and `<state-dir>/state.json` every 10 ms in a thread and
/// records every change; optionally SIGKILLs a pid as soon as the manifest carries
/// `kubeplane.io/restored-after`.
pub struct FileWatch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<(Instant, Change)>>>,
    kill: Arc<Mutex<Option<i32>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// `metadata.uid` and the restored-after annotation of a manifest.
pub fn uid_of(bytes: &[u8]) -> (Option<String>, Option<String>) {
    match serde_saphyr::from_slice::<Pod>(bytes) {
        Ok(p) => (
            p.metadata.uid.clone(),
            p.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(RESTORED).cloned()),
        ),
        Err(_) => (Some("<unparsable>".into()), None),
    }
}

/// `lifecycle.step` and the lifecycle of a `state.json`.
fn step_of(bytes: &[u8]) -> (String, String) {
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    let l = &v["lifecycle"];
    (
        l["step"].as_str().unwrap_or("<none>").to_string(),
        l.to_string(),
    )
}

impl FileWatch {
    pub fn start(manifest: PathBuf, state: PathBuf) -> FileWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kill: Arc<Mutex<Option<i32>>> = Arc::new(Mutex::new(None));
        let (st, se, ki) = (stop.clone(), seen.clone(), kill.clone());
        let thread = std::thread::spawn(move || {
            let mut last_m: Option<Vec<u8>> = None;
            let mut last_s: Option<Vec<u8>> = None;
            let mut last_step = String::new();
            while !st.load(Ordering::Relaxed) {
                let now = Instant::now();
                if let Ok(b) = std::fs::read(&manifest)
                    && last_m.as_ref() != Some(&b)
                {
                    let (uid, restored_after) = uid_of(&b);
                    if restored_after.is_some()
                        && let Some(pid) = ki.lock().unwrap().take()
                    {
                        // SAFETY: kill(2) of the agent, our own unreaped child.
                        unsafe {
                            libc::kill(pid, libc::SIGKILL);
                        }
                        let after = Instant::now();
                        let step_then = std::fs::read(&state)
                            .map(|b| step_of(&b).0)
                            .unwrap_or_default();
                        se.lock().unwrap().push((
                            after,
                            Change::Killed {
                                pid,
                                step_then: format!("{step_then} (last seen {last_step})"),
                            },
                        ));
                    }
                    se.lock().unwrap().push((
                        now,
                        Change::Manifest {
                            uid,
                            restored_after,
                        },
                    ));
                    last_m = Some(b);
                }
                if let Ok(b) = std::fs::read(&state)
                    && last_s.as_ref() != Some(&b)
                {
                    let (step, l) = step_of(&b);
                    if step != last_step {
                        se.lock()
                            .unwrap()
                            .push((now, Change::Step(step.clone(), l)));
                        last_step = step;
                    }
                    last_s = Some(b);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        FileWatch {
            stop,
            seen,
            kill,
            thread: Some(thread),
        }
    }

    /// SIGKILL `pid` as soon as the manifest carries `kubeplane.io/restored-after`.
    pub fn kill_on_restore(&self, pid: i32) {
        *self.kill.lock().unwrap() = Some(pid);
    }

    /// Everything seen, in time order.
    pub fn seen(&self) -> Vec<(Instant, Change)> {
        let mut v = self.seen.lock().unwrap().clone();
        v.sort_by_key(|(t, _)| *t);
        v
    }

    /// When the agent was killed.
    pub fn killed(&self) -> Option<(Instant, Change)> {
        self.seen()
            .into_iter()
            .find(|(_, c)| matches!(c, Change::Killed { .. }))
    }

    /// First time the manifest held `uid`.
    pub fn first_uid(&self, uid: &str) -> Option<Instant> {
        self.seen().into_iter().find_map(|(t, c)| match c {
            Change::Manifest { uid: Some(u), .. } if u == uid => Some(t),
            _ => None,
        })
    }

    /// First time the manifest carried the restored-after annotation.
    pub fn first_restored(&self) -> Option<(Instant, String, String)> {
        self.seen().into_iter().find_map(|(t, c)| match c {
            Change::Manifest {
                uid: Some(u),
                restored_after: Some(r),
            } => Some((t, u, r)),
            _ => None,
        })
    }

    /// First time `state.json` said `step`, after `after`.
    pub fn first_step(&self, step: &str, after: Instant) -> Option<(Instant, String)> {
        self.seen().into_iter().find_map(|(t, c)| match c {
            Change::Step(s, l) if s == step && t >= after => Some((t, l)),
            _ => None,
        })
    }

    /// The timeline, relative to `t0`.
    pub fn timeline(&self, t0: Instant) -> String {
        self.seen()
            .iter()
            .map(|(t, c)| format!("  {:>8.3}s {c:?}", secs(t0, *t)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for FileWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
