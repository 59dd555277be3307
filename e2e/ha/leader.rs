//! Scenario c: the operator's leader deleted mid-rollout.

use super::*;

/// The operator's Lease: (holder pod, renew time).
fn operator_holder(env: &Env) -> Result<String, String> {
    let l = env.get_retry(&["-n", &env.namespace, "lease", "kubeplane-operator"])?;
    Ok(l["spec"]["holderIdentity"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// c. The operator's leader pod is deleted mid-rollout: the standby takes over within 20 s,
/// and never are two nodes in flight.
#[test]
fn c_operator_leader_deleted_mid_rollout_standby_takes_over() {
    scenario("c", |env, baseline| {
        let mut rec = Recorder::start(env);
        let generation = env.set_spec(&scheduler_change(baseline, "3"))?;
        let rev = revision_of(env, generation)?;
        let first = wait_in_flight(&rec, &rev)?;
        let holder = operator_holder(env)?;
        let pod = holder.split('_').next().unwrap_or_default().to_string();
        let pods = env.get(&[
            "-n",
            &env.namespace,
            "pods",
            "-l",
            "app.kubernetes.io/component=operator",
        ])?;
        let standby: Vec<String> = pods["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
            .filter(|n| *n != pod)
            .collect();
        check(standby.len() == 1, || {
            format!("expected one standby beside the leader {pod}: {standby:?}")
        })?;
        let standby = standby[0].clone();
        // The replacement pod the Deployment creates must not win the race for the Lease:
        // every node is cordoned until the standby holds it (uncordoned in the cleanup too).
        for n in env.nodes() {
            env.kubectl(&["cordon", &n])?;
        }
        env.log(&format!(
            "{first} in flight for {rev}; nodes cordoned; deleting the leader pod {pod} (holder {holder}); standby {standby}"
        ));
        let t0 = Instant::now();
        env.kubectl(&["-n", &env.namespace, "delete", "pod", &pod, "--wait=false"])?;
        let waited = loop {
            let h = operator_holder(env)?;
            if !h.is_empty() && !h.starts_with(&format!("{pod}_")) {
                break Ok((t0.elapsed(), h));
            }
            if t0.elapsed() > Duration::from_secs(60) {
                break Err(format!(
                    "no other operator holds the Lease 60 s after the leader was deleted (holder {h})"
                ));
            }
            thread::sleep(Duration::from_millis(100));
        };
        for n in env.nodes() {
            env.kubectl(&["uncordon", &n])?;
        }
        let (takeover, new_holder) = waited?;
        check(new_holder.starts_with(&format!("{standby}_")), || {
            format!("the Lease went to {new_holder}, not to the standby {standby}")
        })?;
        env.log(&format!("FIGURES c: standby {new_holder} took the Lease {:.1} s after the leader pod was deleted", takeover.as_secs_f64()));
        let done = env.wait_rolled_out(generation, ROLLOUT_TIMEOUT);
        let history = rec.stop();
        env.log(&format!("history:\n{}", timeline(&history)));
        done?;
        let ord = check_one_at_a_time(&history, &rev, env.nodes().len())?;
        env.log(&format!("order {ord:?}"));
        check(takeover <= Duration::from_secs(20), || {
            format!(
                "the standby took over after {:.1} s (> 20 s)",
                takeover.as_secs_f64()
            )
        })?;
        Ok(())
    });
}
