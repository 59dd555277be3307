//! `kubeplane migrate`: moves the components a node runs as systemd units to the static Pods
//! of a `ControlPlaneConfig`, one component at a time, kube-apiserver first, with a way back.
//!
//! Per component:
//! - when the static Pod listens on the port the unit's process holds (the usual case), the
//!   Pod cannot start beside the unit, and the port would answer for the unit: stop the unit,
//!   write the manifest, wait until the Pod's endpoint is healthy;
//! - when the ports differ, write the manifest, wait until the Pod is healthy, then stop the
//!   unit (no gap);
//! - then disable the unit (its file stays) and record what ran before under
//!   `<state-dir>/migrate/`;
//! - on failure or timeout: remove the manifest, wait until kubelet has stopped the Pod (its
//!   endpoint stops answering), start the unit again if it ran before, wait until the unit's
//!   endpoint is healthy, and stop there.
//!
//! "Healthy" is the agent's local evidence (`agent::kubelet_wait::wait`), which needs no API
//! server (the API server itself is among the components moved): the container runtime runs a
//! container of the manifest's `metadata.uid` created after the write, and the component's
//! endpoint answers for the config's `minReadySeconds`. An endpoint answered by something
//! else (the unit's process, which a failed stop left running) does not count. "Stopped" is the
//! runtime showing no running container of that uid and the endpoint no longer answering.
//! Without a reachable runtime (`--container-runtime-endpoint`) the endpoint alone decides, as
//! it does for the agent. The calls into the agent are in [`evidence`].

pub mod kubelet;
pub mod service;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::agent::files::{FileError, NodeDirs};
use crate::agent::health::{Endpoint, HealthCheck};
use crate::agent::runtime::ContainerRuntime;
use crate::api::{Component, ControlPlaneConfig, NodeFacts};
use crate::render::{self, RenderError, RenderInput, defaults};
use crate::validation;

pub use service::{ProcessServices, ServiceError, ServiceManager, Systemctl};

/// Why a migration did not start or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The config does not validate.
    #[error("the config does not validate:\n{0}")]
    Invalid(String),
    /// The config cannot be rendered for this node.
    #[error("the config cannot be rendered for this node: {0}")]
    Render(#[from] RenderError),
    /// The config does not manage a component a unit runs.
    #[error(
        "{0} runs as a unit here, but the config does not manage it (managed: false): import all units together (kubeplane import --systemd-unit … --systemd-unit …) and migrate with that config"
    )]
    NotManaged(Component),
    /// The rendered Pod has no HTTP probe to judge it by.
    #[error("the rendered {0} Pod has no HTTP probe, so migrate cannot tell when it is healthy")]
    NoProbe(Component),
    /// The config needs side files migrate does not write.
    #[error(
        "the config makes kubeplane write {0} (audit policy or encryption config managed by kubeplane); migrate writes manifests only: keep those host files as extraArgs and extraVolumes (as import does) for the migration"
    )]
    SideFiles(String),
    /// kube-apiserver refuses unauthenticated requests, so its probes would fail.
    #[error(
        "the config runs kube-apiserver with --anonymous-auth=false: kubelet's probes and migrate's checks call /livez and /readyz without credentials, get 401, and the static Pod would be restarted over and over; drop the flag (RBAC lets anonymous requests reach only the health, version and discovery endpoints) or use --authentication-config with anonymous access limited to /livez, /readyz and /healthz"
    )]
    AnonymousOff,
    /// A manifest for the component is already there.
    #[error(
        "{0} already exists: kubelet already runs this component as a static Pod; move the file away if it is a leftover, or skip this unit"
    )]
    ManifestExists(String),
    /// Two units for one component.
    #[error("two units run {0}: pass one unit per component")]
    Duplicate(Component),
    /// A file operation failed.
    #[error("{0}")]
    Files(#[from] FileError),
    /// The service manager failed.
    #[error("{0}")]
    Service(#[from] ServiceError),
    /// A component did not become healthy; what happened then.
    #[error("{component}: {reason}; {after}")]
    Failed {
        /// The component.
        component: Component,
        /// Why.
        reason: String,
        /// What the way back did.
        after: String,
    },
}

/// A unit that runs a component.
#[derive(Clone, Debug)]
pub struct UnitInfo {
    /// The component.
    pub component: Component,
    /// The unit's name for the service manager (`kube-apiserver.service`).
    pub name: String,
    /// The unit file.
    pub path: String,
    /// Its text, for the record.
    pub text: String,
    /// The command line it runs, after substitution.
    pub argv: Vec<String>,
    /// Its environment files and their content (`None`: missing), for the record.
    pub env_files: std::collections::BTreeMap<String, Option<String>>,
    /// Where its process answers health checks.
    pub endpoint: Endpoint,
}

/// Where a unit's process answers: its `--secure-port` (the component's default otherwise) on
/// its `--bind-address` (loopback when it binds every address), at the path kubeadm's probes
/// use.
pub fn unit_endpoint(component: Component, args: &[String]) -> Endpoint {
    let last = |name: &str| {
        let long = format!("--{name}");
        let mut found: Option<String> = None;
        for (i, a) in args.iter().enumerate() {
            if let Some(v) = a.strip_prefix(&format!("{long}=")) {
                found = Some(v.to_string());
            } else if *a == long {
                found = args.get(i + 1).cloned();
            }
        }
        found
    };
    let (port, path) = match component {
        Component::ApiServer => (defaults::API_SERVER_PORT, "/livez"),
        Component::ControllerManager => (defaults::CONTROLLER_MANAGER_PORT, "/healthz"),
        Component::Scheduler => (defaults::SCHEDULER_PORT, "/livez"),
    };
    let port = last("secure-port")
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| *p > 0)
        .unwrap_or(port as u16);
    let host = match last("bind-address").as_deref() {
        None | Some("") | Some("0.0.0.0") => "127.0.0.1".to_string(),
        Some("::") => "::1".to_string(),
        Some(h) => h.to_string(),
    };
    Endpoint {
        host,
        port,
        path: path.to_string(),
        https: true,
        timeout: crate::agent::health::MAX_CHECK_TIMEOUT,
    }
}

/// The order of one component's switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Stop the unit, then start the Pod (they share a port).
    StopFirst,
    /// Start the Pod, wait, then stop the unit (no gap).
    StartFirst,
}

/// One component's switch.
#[derive(Clone, Debug)]
pub struct Step {
    /// The unit.
    pub unit: UnitInfo,
    /// The manifest file name.
    pub manifest_file: String,
    /// The manifest.
    pub manifest: String,
    /// Its `metadata.uid` (kubelet's config hash).
    pub uid: String,
    /// Where the Pod answers health checks.
    pub pod_endpoint: Endpoint,
    /// The order.
    pub order: Order,
    /// How long the Pod may take to become healthy.
    pub timeout: Duration,
    /// How long it must stay healthy.
    pub min_ready: Duration,
}

/// The whole migration of a node.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The node.
    pub node: String,
    /// kubelet's static Pod directory.
    pub manifest_dir: PathBuf,
    /// kubeplane's state directory (history).
    pub state_dir: PathBuf,
    /// One step per component, kube-apiserver first.
    pub steps: Vec<Step>,
}

/// Builds the plan: renders the config for the node and pairs each unit with its Pod.
pub fn plan(
    config: &ControlPlaneConfig,
    node: &NodeFacts,
    units: Vec<UnitInfo>,
    timeout: Option<Duration>,
) -> Result<Plan, MigrateError> {
    let report = validation::validate(&config.spec);
    if !report.is_ok() {
        return Err(MigrateError::Invalid(report.error_messages().join("\n")));
    }
    let rendered = render::render(&RenderInput {
        spec: &config.spec,
        node,
        encryption_config_sha256: None,
    })?;
    if !rendered.files.is_empty() {
        let files: Vec<&str> = rendered.files.iter().map(|f| f.path.as_str()).collect();
        return Err(MigrateError::SideFiles(files.join(", ")));
    }
    let mut steps = Vec::new();
    for u in units {
        if steps.iter().any(|s: &Step| s.unit.component == u.component) {
            return Err(MigrateError::Duplicate(u.component));
        }
        let Some(pod) = rendered.pods.iter().find(|p| p.component == u.component) else {
            return Err(MigrateError::NotManaged(u.component));
        };
        let pod_endpoint =
            Endpoint::from_pod(&pod.pod, "127.0.0.1").ok_or(MigrateError::NoProbe(u.component))?;
        let command = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.command.clone())
            .unwrap_or_default();
        if u.component == Component::ApiServer
            && command.iter().any(|w| w == "--anonymous-auth=false")
            && !command
                .iter()
                .any(|w| w.starts_with("--authentication-config="))
        {
            return Err(MigrateError::AnonymousOff);
        }
        let order = if pod_endpoint.port == u.endpoint.port {
            Order::StopFirst
        } else {
            Order::StartFirst
        };
        steps.push(Step {
            manifest_file: u.component.manifest_file().to_string(),
            manifest: pod.yaml.clone(),
            uid: pod.uid.clone(),
            pod_endpoint,
            order,
            timeout: timeout.unwrap_or_else(|| {
                Duration::from_secs(
                    u64::try_from(render::health_timeout_seconds(&config.spec, u.component))
                        .unwrap_or(300),
                )
            }),
            min_ready: Duration::from_secs(
                u64::try_from(render::min_ready_seconds(&config.spec)).unwrap_or(10),
            ),
            unit: u,
        });
    }
    steps.sort_by_key(|s| Component::ALL.iter().position(|c| *c == s.unit.component));
    Ok(Plan {
        node: node.node_name.clone(),
        manifest_dir: PathBuf::from(
            node.manifest_dir
                .clone()
                .unwrap_or_else(|| "/etc/kubernetes/manifests".into()),
        ),
        state_dir: PathBuf::from(
            node.state_dir
                .clone()
                .unwrap_or_else(|| defaults::STATE_DIR.into()),
        ),
        steps,
    })
}

/// The plan in words, one line per action (`--dry-run`).
pub fn describe(plan: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    let dir = plan.manifest_dir.display();
    for (i, s) in plan.steps.iter().enumerate() {
        let c = s.unit.component;
        let n = i + 1;
        let unit = &s.unit.name;
        let write = format!(
            "write {dir}/{} (config hash {}) atomically",
            s.manifest_file, s.uid
        );
        let wait = format!(
            "wait up to {} s until {} answers for {} s",
            s.timeout.as_secs(),
            s.pod_endpoint.url(),
            s.min_ready.as_secs()
        );
        out.push(format!("{n}. {c} (unit {unit}, from {}):", s.unit.path));
        match s.order {
            Order::StopFirst => {
                out.push(format!(
                    "   the Pod listens on port {} like the unit, so: stop {unit}; {write}; {wait} ({c} is unavailable on this node meanwhile)",
                    s.pod_endpoint.port
                ));
            }
            Order::StartFirst => {
                out.push(format!(
                    "   {write}; {wait}; then stop {unit} (the unit answers on port {}, so there is no gap)",
                    s.unit.endpoint.port
                ));
            }
        }
        out.push(format!(
            "   disable {unit} (the file stays) and record the unit and the manifest in {}/migrate/{}.json",
            plan.state_dir.display(),
            c.name()
        ));
        out.push(format!(
            "   on failure: remove the manifest, wait until {} stops answering, start {unit} again, wait until {} answers; stop there",
            s.pod_endpoint.url(),
            s.unit.endpoint.url()
        ));
    }
    out
}

/// What happened to one component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The component.
    pub component: Component,
    /// How long the component did not answer on this node (stop of the unit until the Pod
    /// first answered; zero when they overlapped).
    pub unavailable: Duration,
    /// How long the switch took, up to the settled Pod.
    pub took: Duration,
}

/// Polling of the way back.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// How long kubelet may take to stop a removed Pod.
    pub stop_timeout: Duration,
    /// Pause between checks.
    pub poll: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            stop_timeout: Duration::from_secs(90),
            poll: Duration::from_secs(1),
        }
    }
}

/// The agent's evidence, in one place (the agent's API may change under it).
pub mod evidence {
    use std::time::{Duration, Instant, SystemTime};

    use crate::agent::health::{Endpoint, HealthCheck};
    use crate::agent::kubelet_wait::{self, Expect, Verdict, WaitSpec};
    use crate::agent::runtime::{ContainerRunState, ContainerRuntime};
    use crate::api::Component;

    /// What is waited for.
    #[derive(Clone, Copy, Debug)]
    pub enum Target<'a> {
        /// The static Pod of this `metadata.uid`, written at this time: judged by the container
        /// runtime (when there is one) and the endpoint.
        Pod {
            /// The manifest's uid.
            uid: &'a str,
            /// When the manifest was written.
            written_at: SystemTime,
        },
        /// The unit's process: the endpoint alone (it is not a container).
        Unit,
    }

    /// Waits until the target is up and its endpoint answers continuously for `min_ready`;
    /// returns when it first answered.
    #[allow(clippy::too_many_arguments)]
    pub async fn healthy(
        component: Component,
        node: &str,
        target: Target<'_>,
        endpoint: &Endpoint,
        timeout: Duration,
        min_ready: Duration,
        health: &dyn HealthCheck,
        runtime: Option<&dyn ContainerRuntime>,
    ) -> Result<Instant, String> {
        let (expect, written_at, runtime) = match target {
            Target::Pod { uid, written_at } => (Expect::Hash(uid.to_string()), written_at, runtime),
            Target::Unit => (Expect::Any, SystemTime::now(), None),
        };
        let spec = WaitSpec {
            component,
            pod_name: format!("{}-{}", component.name(), node.to_lowercase()),
            expect,
            endpoint: Some(endpoint.clone()),
            timeout,
            min_ready,
            use_api: false,
            written_at,
        };
        match kubelet_wait::wait(spec, None, runtime, health, |_| {}).await {
            Verdict::Updated { .. } => Ok(Instant::now()
                .checked_sub(min_ready)
                .unwrap_or_else(Instant::now)),
            Verdict::TimedOut(d) => Err(format!("{}: {}", d.reason, d.message)),
        }
    }

    /// Waits until the runtime runs no container of `uid` (when there is a runtime that
    /// answers) and `endpoint` has failed three checks in a row.
    pub async fn stopped(
        uid: &str,
        endpoint: &Endpoint,
        timeout: Duration,
        poll: Duration,
        health: &dyn HealthCheck,
        runtime: Option<&dyn ContainerRuntime>,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut failures = 0;
        loop {
            let running = match runtime {
                Some(rt) => match rt.containers_of_pod(uid).await {
                    Ok(cs) => cs
                        .iter()
                        .filter(|c| c.state == ContainerRunState::Running)
                        .map(|c| c.name.clone())
                        .collect(),
                    // Unreachable runtime: the endpoint alone decides.
                    Err(_) => Vec::new(),
                },
                None => Vec::new(),
            };
            if health.check(endpoint).await.is_err() {
                failures += 1;
                if failures >= 3 && running.is_empty() {
                    return Ok(());
                }
            } else {
                failures = 0;
            }
            if Instant::now() >= deadline {
                return Err(if running.is_empty() {
                    format!(
                        "{} still answers {} s after its manifest was removed",
                        endpoint.url(),
                        timeout.as_secs()
                    )
                } else {
                    format!(
                        "the container runtime still runs {} of pod uid {uid} {} s after its manifest was removed",
                        running.join(", "),
                        timeout.as_secs()
                    )
                });
            }
            tokio::time::sleep(poll).await;
        }
    }
}

fn record(
    dirs: &NodeDirs,
    plan: &Plan,
    step: &Step,
    phase: &str,
    message: &str,
) -> Result<(), MigrateError> {
    let dir = dirs.state_dir().join("migrate");
    std::fs::create_dir_all(&dir).map_err(|e| {
        MigrateError::Files(FileError::Io {
            op: "create",
            path: dir.display().to_string(),
            source: e,
        })
    })?;
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let body = serde_json::json!({
        "component": step.unit.component.name(),
        "node": plan.node,
        "phase": phase,
        "message": message,
        "at": at,
        "unit": {
            "name": step.unit.name,
            "path": step.unit.path,
            "text": step.unit.text,
            "argv": step.unit.argv,
            "environmentFiles": step.unit.env_files,
        },
        "manifest": {
            "path": plan.manifest_dir.join(&step.manifest_file).display().to_string(),
            "configHash": step.uid,
        },
        "wayBack": format!(
            "rm {}; wait until the container is gone (crictl ps); systemctl enable --now {}",
            plan.manifest_dir.join(&step.manifest_file).display(),
            step.unit.name
        ),
    });
    let bytes = serde_json::to_vec_pretty(&body).unwrap_or_default();
    let target = dir.join(format!("{}.json", step.unit.component.name()));
    crate::agent::files::atomic_write(&dirs.staging_dir(), &target, &bytes)?;
    Ok(())
}

/// Runs the plan. `log` gets one line per action. Stops at the first component that does
/// not become healthy, after its way back.
pub async fn run(
    plan: &Plan,
    services: &dyn ServiceManager,
    health: &dyn HealthCheck,
    runtime: Option<&dyn ContainerRuntime>,
    timing: Timing,
    log: &mut (dyn FnMut(&str) + Send),
) -> Result<Vec<Outcome>, MigrateError> {
    let dirs = NodeDirs::new(&plan.manifest_dir, &plan.state_dir);
    dirs.prepare()?;
    for s in &plan.steps {
        if dirs.read_manifest(&s.manifest_file)?.is_some() {
            return Err(MigrateError::ManifestExists(
                plan.manifest_dir
                    .join(&s.manifest_file)
                    .display()
                    .to_string(),
            ));
        }
    }
    let mut outcomes = Vec::new();
    for s in &plan.steps {
        let ev = Evidence { health, runtime };
        outcomes.push(switch(plan, &dirs, s, services, ev, timing, log).await?);
    }
    Ok(outcomes)
}

/// Where migrate's evidence comes from.
#[derive(Clone, Copy)]
struct Evidence<'a> {
    health: &'a dyn HealthCheck,
    runtime: Option<&'a dyn ContainerRuntime>,
}

async fn switch(
    plan: &Plan,
    dirs: &NodeDirs,
    s: &Step,
    services: &dyn ServiceManager,
    ev: Evidence<'_>,
    timing: Timing,
    log: &mut (dyn FnMut(&str) + Send),
) -> Result<Outcome, MigrateError> {
    let c = s.unit.component;
    let unit = s.unit.name.as_str();
    let managed = [c];
    let was_active = services.is_active(unit)?;
    record(dirs, plan, s, "started", "")?;
    let start = Instant::now();
    let mut gap_start = None;
    if s.order == Order::StopFirst {
        log(&format!("{c}: stop {unit}"));
        gap_start = Some(Instant::now());
        services.stop(unit)?;
    }
    log(&format!(
        "{c}: write {}",
        plan.manifest_dir.join(&s.manifest_file).display()
    ));
    // Containers created from here on are the Pod's (the runtime's clock is this host's).
    let written_at = std::time::SystemTime::now();
    if let Err(e) = dirs.write_manifest(&s.manifest_file, &managed, s.manifest.as_bytes()) {
        // The unit may be stopped already: go back to it.
        let reason = format!("could not write the manifest: {e}");
        log(&format!("{c}: {reason}; going back to {unit}"));
        let after = match way_back(plan, dirs, s, services, ev, timing, was_active, log).await {
            Ok(m) | Err(m) => m,
        };
        let _ = record(dirs, plan, s, "rolled back", &format!("{reason}; {after}"));
        return Err(MigrateError::Failed {
            component: c,
            reason,
            after,
        });
    }
    log(&format!(
        "{c}: wait up to {} s for {}",
        s.timeout.as_secs(),
        s.pod_endpoint.url()
    ));
    let waited = evidence::healthy(
        c,
        &plan.node,
        evidence::Target::Pod {
            uid: &s.uid,
            written_at,
        },
        &s.pod_endpoint,
        s.timeout,
        s.min_ready,
        ev.health,
        ev.runtime,
    )
    .await;
    match waited {
        Ok(first_ok) => {
            if s.order == Order::StartFirst {
                log(&format!("{c}: healthy; stop {unit}"));
                services.stop(unit)?;
            }
            log(&format!("{c}: disable {unit} (the unit file stays)"));
            services.disable(unit)?;
            let unavailable = gap_start
                .map(|g| first_ok.saturating_duration_since(g))
                .unwrap_or_default();
            let took = start.elapsed();
            record(
                dirs,
                plan,
                s,
                "migrated",
                &format!(
                    "static Pod healthy after {:.1} s; unavailable on this node for {:.1} s",
                    took.as_secs_f64(),
                    unavailable.as_secs_f64()
                ),
            )?;
            log(&format!(
                "{c}: migrated in {:.1} s (unavailable on this node for {:.1} s)",
                took.as_secs_f64(),
                unavailable.as_secs_f64()
            ));
            Ok(Outcome {
                component: c,
                unavailable,
                took,
            })
        }
        Err(reason) => {
            log(&format!(
                "{c}: not healthy ({reason}); going back to {unit}"
            ));
            let after = way_back(plan, dirs, s, services, ev, timing, was_active, log).await;
            let (Ok(after) | Err(after)) = after;
            let _ = record(dirs, plan, s, "rolled back", &format!("{reason}; {after}"));
            Err(MigrateError::Failed {
                component: c,
                reason: format!(
                    "the static Pod was not healthy within {} s: {reason}",
                    s.timeout.as_secs()
                ),
                after,
            })
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn way_back(
    plan: &Plan,
    dirs: &NodeDirs,
    s: &Step,
    services: &dyn ServiceManager,
    ev: Evidence<'_>,
    timing: Timing,
    was_active: bool,
    log: &mut (dyn FnMut(&str) + Send),
) -> Result<String, String> {
    let c = s.unit.component;
    let unit = s.unit.name.as_str();
    let path = plan.manifest_dir.join(&s.manifest_file);
    dirs.remove_manifest(&s.manifest_file, &[c]).map_err(|e| {
        format!(
            "could not remove {}: {e}; remove it by hand, then systemctl start {unit}",
            path.display()
        )
    })?;
    log(&format!(
        "{c}: removed {}; wait until kubelet stops the Pod",
        path.display()
    ));
    let stopped = evidence::stopped(
        &s.uid,
        &s.pod_endpoint,
        timing.stop_timeout,
        timing.poll,
        ev.health,
        ev.runtime,
    )
    .await;
    if let Err(e) = &stopped {
        log(&format!("{c}: {e}; starting {unit} anyway"));
    }
    if !was_active {
        return Ok(format!(
            "removed {}; {unit} was not running before, so it stays stopped",
            path.display()
        ));
    }
    if services.is_active(unit).unwrap_or(false) {
        return Ok(format!("removed {}; {unit} kept running", path.display()));
    }
    log(&format!("{c}: start {unit}"));
    services
        .start(unit)
        .map_err(|e| format!("removed {}, but {e}: start it by hand", path.display()))?;
    log(&format!(
        "{c}: wait until {} answers",
        s.unit.endpoint.url()
    ));
    match evidence::healthy(
        c,
        &plan.node,
        evidence::Target::Unit,
        &s.unit.endpoint,
        s.timeout,
        s.min_ready,
        ev.health,
        None,
    )
    .await
    {
        Ok(_) => Ok(format!(
            "removed {}, started {unit} again, and it is healthy ({})",
            path.display(),
            s.unit.endpoint.url()
        )),
        Err(e) => Err(format!(
            "removed {} and started {unit} again, but it is not healthy: {e}; check journalctl -u {unit}",
            path.display()
        )),
    }
}

/// The path a unit is known by to the service manager: its file name.
pub fn unit_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn unit_endpoints_follow_the_flags_and_defaults() {
        let e = unit_endpoint(Component::ApiServer, &args(&["--bind-address=0.0.0.0"]));
        assert_eq!(e.url(), "https://127.0.0.1:6443/livez");
        let e = unit_endpoint(
            Component::ControllerManager,
            &args(&["--secure-port", "10300", "--bind-address=10.0.0.2"]),
        );
        assert_eq!(e.url(), "https://10.0.0.2:10300/healthz");
        let e = unit_endpoint(
            Component::Scheduler,
            &args(&["--bind-address=::", "--secure-port=0"]),
        );
        assert_eq!(e.url(), "https://[::1]:10259/livez");
    }
}
