//! One component's move, and its way back: stop the unit, write the static Pod, wait for it
//! with the node's evidence (container runtime and endpoint); on failure remove the manifest
//! and start the unit again.

use super::*;

/// Where migrate's evidence comes from.
#[derive(Clone, Copy)]
pub(super) struct Evidence<'a> {
    pub(super) health: &'a dyn HealthCheck,
    pub(super) runtime: Option<&'a dyn ContainerRuntime>,
}

pub(super) async fn switch(
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
pub(super) async fn way_back(
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
