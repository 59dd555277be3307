//! Scenario d: what an agent's token may write and list.

use super::*;

/// The service-account token mounted into the agent pod on `node`, read from kubelet's
/// volume directory inside the node.
fn agent_token(env: &Env, node: &str) -> Result<(String, String), String> {
    let pods = env.get(&[
        "-n",
        &env.namespace,
        "pods",
        "-l",
        "app.kubernetes.io/component=agent",
        "--field-selector",
        &format!("spec.nodeName={node}"),
    ])?;
    let pod = &pods["items"][0];
    let uid = pod["metadata"]["uid"]
        .as_str()
        .ok_or_else(|| format!("no agent pod on {node}"))?;
    let name = pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let dir = env.node_path(
        node,
        &format!("var/lib/kubelet/pods/{uid}/volumes/kubernetes.io~projected"),
    );
    // A tmpfs mounted in the node's mount namespace: read it there.
    let token = env.cluster(&[
        "exec",
        node,
        "--",
        "sh",
        "-c",
        &format!("cat {}/*/token", dir.display()),
    ])?;
    Ok((name, token.trim().to_string()))
}

/// The JSON payload of a JWT.
fn jwt_claims(token: &str) -> Result<Value, String> {
    let part = token.split('.').nth(1).ok_or("not a JWT")?;
    let out = Command::new("base64")
        .args(["-d"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            let mut padded = part.replace('-', "+").replace('_', "/");
            while padded.len() % 4 != 0 {
                padded.push('=');
            }
            c.stdin.take().unwrap().write_all(padded.as_bytes())?;
            c.wait_with_output()
        })
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&out.stdout).map_err(|e| format!("JWT payload: {e}"))
}

/// `curl` as the token: (HTTP code, body).
fn as_token(
    env: &Env,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String), String> {
    let mut c = Command::new("curl");
    c.args([
        "-s",
        "--max-time",
        "10",
        "-w",
        "\n%{http_code}",
        "-X",
        method,
    ])
    .arg("--cacert")
    .arg(env.cluster_dir.join("pki/ca.crt"))
    .args(["-H", &format!("Authorization: Bearer {token}")]);
    if let Some(b) = body {
        c.args([
            "-H",
            "Content-Type: application/merge-patch+json",
            "--data",
            b,
        ]);
    }
    let out = c
        .arg(format!("{}{path}", env.server.trim_end_matches('/')))
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    Ok((code.trim().parse().unwrap_or(0), body.to_string()))
}

/// d. With the agent's own node-bound token: another node's ControlPlaneNode status is
/// refused, its own allowed (server-side dry run: nothing is changed), Secrets not listable.
#[test]
fn d_agent_token_writes_only_its_own_node_status_and_lists_no_secrets() {
    scenario("d", |env, _| {
        let nodes = env.nodes();
        let (me, other) = (&nodes[0], &nodes[1]);
        let (pod, token) = agent_token(env, me)?;
        let claims = jwt_claims(&token)?;
        let bound_node = claims["kubernetes.io"]["node"]["name"]
            .as_str()
            .unwrap_or_default();
        env.log(&format!(
            "agent pod {pod} on {me}: token bound to node {bound_node:?}, pod {}",
            claims["kubernetes.io"]["pod"]["name"]
        ));
        check(bound_node == me, || {
            format!("the agent's token is not bound to node {me}: {claims}")
        })?;
        let patch = json!({ "status": { "message": "e2e_ha d: dry run" } }).to_string();
        let path = |n: &str| {
            format!(
                "/apis/kubeplane.io/v1alpha1/controlplanenodes/{n}/status?dryRun=All&fieldManager=e2e-ha"
            )
        };
        let (own, own_body) = as_token(env, &token, "PATCH", &path(me), Some(&patch))?;
        let (foreign, foreign_body) = as_token(env, &token, "PATCH", &path(other), Some(&patch))?;
        let (secrets, _) = as_token(env, &token, "GET", "/api/v1/secrets", None)?;
        let (ks_secrets, _) = as_token(
            env,
            &token,
            "GET",
            "/api/v1/namespaces/kube-system/secrets",
            None,
        )?;
        let foreign_msg = serde_json::from_str::<Value>(&foreign_body)
            .map(|v| v["message"].clone())
            .unwrap_or_default();
        env.log(&format!(
            "FIGURES d: own status {own}, {other}'s status {foreign} ({foreign_msg}), list Secrets {secrets}, list kube-system Secrets {ks_secrets}"
        ));
        check(own == 200, || {
            format!("writing its own status ({me}) gave {own}: {own_body}")
        })?;
        check(foreign == 403, || {
            format!("writing {other}'s status gave {foreign}, expected 403: {foreign_body}")
        })?;
        check(secrets == 403 && ks_secrets == 403, || {
            format!(
                "listing Secrets gave {secrets} (all namespaces), {ks_secrets} (kube-system); expected 403"
            )
        })?;
        Ok(())
    });
}
