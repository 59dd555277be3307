//! The fake kubelet's loop: it reads the manifest directory as kubelet's file source does and
//! moves each static pod through starting, running, crashing and stopping.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use super::super::{ContainerRunState, ContainerSeen};
use super::FakeRuntime;
use super::kubelet::{FakeKubeletOptions, KubeletEvent, KubeletEventKind, RunningInfo, Shared};
use super::manifest::{PodDesc, describe};
use super::probe::ContainerServer;

/// One file of the directory, as last read.
struct FileSeen {
    bytes: Vec<u8>,
    parsed: Result<PodDesc, String>,
    /// The pod it last described, for naming an unparseable file's pod.
    last_pod: Option<String>,
}

enum Phase {
    /// The container will be created at `at`.
    Starting { at: Instant },
    /// A container runs; its endpoint task lives in `server`.
    Running {
        id: String,
        crash_at: Option<Instant>,
        server: Option<ContainerServer>,
    },
    /// A failing container exited; it is restarted at `at`.
    CrashWait { at: Instant },
}

struct PodRun {
    want: PodDesc,
    attempt: u32,
    phase: Phase,
}

pub(super) struct Kubelet {
    dir: PathBuf,
    pub(super) opts: FakeKubeletOptions,
    runtime: FakeRuntime,
    shared: Arc<Mutex<Shared>>,
    pub(super) tls: tokio_rustls::TlsAcceptor,
    files: BTreeMap<String, FileSeen>,
    pods: BTreeMap<String, PodRun>,
}

impl Kubelet {
    pub(super) fn new(
        dir: PathBuf,
        opts: FakeKubeletOptions,
        runtime: FakeRuntime,
        shared: Arc<Mutex<Shared>>,
        tls: tokio_rustls::TlsAcceptor,
    ) -> Self {
        Kubelet {
            dir,
            opts,
            runtime,
            shared,
            tls,
            files: BTreeMap::new(),
            pods: BTreeMap::new(),
        }
    }

    pub(super) async fn run(mut self) {
        let mut tick = tokio::time::interval(self.opts.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let desired = self.scan();
            self.sync(desired).await;
        }
    }

    fn record(&self, component: &str, uid: &str, kind: KubeletEventKind) {
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        shared.history.push(KubeletEvent {
            at: SystemTime::now(),
            component: component.to_string(),
            uid: uid.to_string(),
            kind,
        });
    }

    /// Reads the directory as kubelet's file source does: every regular file whose name does
    /// not start with a dot; one pod per name, the first file (by name) wins.
    fn scan(&mut self) -> BTreeMap<String, PodDesc> {
        let mut names: Vec<String> = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.'))
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        self.files.retain(|name, _| names.contains(name));
        let mut desired = BTreeMap::new();
        for name in names {
            let Ok(bytes) = std::fs::read(self.dir.join(&name)) else {
                continue;
            };
            let changed = self.files.get(&name).is_none_or(|f| f.bytes != bytes);
            if changed {
                let parsed = describe(&name, &bytes, &self.opts);
                let last_pod = self.files.get(&name).and_then(|f| f.last_pod.clone());
                let last_pod = match &parsed {
                    Ok(d) => Some(d.name.clone()),
                    Err(_) => last_pod,
                };
                if let Err(e) = &parsed {
                    let component = last_pod.clone().unwrap_or_else(|| name.clone());
                    self.record(
                        &component,
                        "",
                        KubeletEventKind::Unparseable {
                            file: name.clone(),
                            error: e.clone(),
                        },
                    );
                }
                self.files.insert(
                    name.clone(),
                    FileSeen {
                        bytes,
                        parsed,
                        last_pod,
                    },
                );
            }
            let seen = &self.files[&name];
            if let (Ok(desc), Some(pod)) = (&seen.parsed, &seen.last_pod) {
                if desired.contains_key(pod) {
                    if changed {
                        self.record(
                            pod,
                            &desc.uid,
                            KubeletEventKind::Duplicate { file: name.clone() },
                        );
                    }
                } else {
                    desired.insert(pod.clone(), desc.clone());
                }
            }
        }
        desired
    }

    async fn sync(&mut self, desired: BTreeMap<String, PodDesc>) {
        let now = Instant::now();
        let names: Vec<String> = self
            .pods
            .keys()
            .chain(desired.keys())
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for name in names {
            let want = desired.get(&name);
            let same = match (self.pods.get(&name), want) {
                (Some(run), Some(w)) => run.want.uid == w.uid && run.want.spec == w.spec,
                (None, None) => true,
                _ => false,
            };
            if !same {
                let old = self.pods.remove(&name);
                let mut attempt = 0;
                if let Some(old) = old {
                    if want.is_none() {
                        self.record(&name, &old.want.uid, KubeletEventKind::Removed);
                    }
                    if want.is_some_and(|w| w.uid == old.want.uid) {
                        attempt = old.attempt + 1;
                    }
                    self.stop_pod(&name, old);
                }
                if let Some(w) = want {
                    self.record(
                        &name,
                        &w.uid,
                        KubeletEventKind::ManifestSeen {
                            file: w.file.clone(),
                        },
                    );
                    self.pods.insert(
                        name.clone(),
                        PodRun {
                            want: w.clone(),
                            attempt,
                            phase: Phase::Starting {
                                at: now + self.opts.start_delay,
                            },
                        },
                    );
                }
            }
            self.step(&name, now).await;
        }
    }

    /// Kills the pod's running container: its endpoint stops answering before the test can see
    /// that it no longer runs.
    fn stop_pod(&self, name: &str, run: PodRun) {
        let PodRun { want, phase, .. } = run;
        let id = match phase {
            Phase::Running { id, server, .. } => {
                drop(server);
                Some(id)
            }
            _ => None,
        };
        self.shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .running
            .remove(name);
        if let Some(id) = id {
            self.exit(&id, 0);
            self.record(name, &want.uid, KubeletEventKind::Stopped { container: id });
        }
    }

    fn exit(&self, id: &str, code: i32) {
        self.runtime.update(|all| {
            if let Some(c) = all.iter_mut().find(|c| c.id == id) {
                c.state = ContainerRunState::Exited;
                c.exit_code = Some(code);
            }
        });
    }

    /// Timed transitions of one pod.
    async fn step(&mut self, name: &str, now: Instant) {
        let Some(run) = self.pods.get_mut(name) else {
            return;
        };
        match &run.phase {
            Phase::Starting { at } | Phase::CrashWait { at } if now >= *at => {}
            Phase::Running {
                crash_at: Some(at),
                id,
                ..
            } if now >= *at => {
                let id = id.clone();
                let uid = run.want.uid.clone();
                // Replacing the phase drops the endpoint (closed at once).
                run.phase = Phase::CrashWait {
                    at: now + self.opts.crash_backoff,
                };
                run.attempt += 1;
                self.shared
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .running
                    .remove(name);
                self.exit(&id, 1);
                self.record(
                    name,
                    &uid,
                    KubeletEventKind::Crashed {
                        container: id,
                        exit_code: 1,
                    },
                );
                return;
            }
            _ => return,
        }
        // Create and start a container.
        let want = run.want.clone();
        let attempt = run.attempt;
        let id = container_id();
        let created = SystemTime::now();
        self.runtime.update(|all| {
            // kubelet keeps one dead container per container name of a pod.
            all.retain(|c| {
                !(c.pod_uid == want.uid
                    && c.name == want.container
                    && c.state == ContainerRunState::Exited
                    && c.attempt + 1 < attempt)
            });
            all.push(ContainerSeen {
                id: id.clone(),
                name: want.container.clone(),
                pod_uid: want.uid.clone(),
                state: ContainerRunState::Running,
                created_at: created,
                started_at: Some(created),
                exit_code: None,
                attempt,
            });
        });
        self.record(
            name,
            &want.uid,
            KubeletEventKind::Started {
                container: id.clone(),
                attempt,
            },
        );
        let mut crash_at = want.failing.then(|| now + self.opts.crash_after);
        let mut server = None;
        let mut port = None;
        if let Some((endpoint, paths)) = &want.endpoint {
            match self.serve(endpoint, paths.clone(), want.failing).await {
                Ok(set) => {
                    server = Some(set);
                    port = Some(endpoint.port);
                }
                Err((addr, error)) => {
                    self.record(
                        name,
                        &want.uid,
                        KubeletEventKind::BindFailed { addr, error },
                    );
                    crash_at = Some(now);
                }
            }
        }
        if let Some(run) = self.pods.get_mut(name) {
            run.phase = Phase::Running {
                id,
                crash_at,
                server,
            };
        }
        self.shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .running
            .insert(
                name.to_string(),
                RunningInfo {
                    uid: want.uid.clone(),
                    port,
                },
            );
    }
}

fn container_id() -> String {
    static N: AtomicU64 = AtomicU64::new(1);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{}-{n}-{t}", std::process::id()));
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
