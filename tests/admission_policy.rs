//! The chart's ValidatingAdmissionPolicy ("an agent writes only its own node's
//! ControlPlaneNode status"), evaluated with kube's CEL engine against sample admission
//! requests.
//!
//! The policy is read from `deploy/kubeplane.yaml`, the bundle generated from the chart with
//! default values (`.ci/run` fails when it is stale), so this tests what is installed. The
//! evaluation follows the admission order of the API server: `matchConditions` (all true, or
//! the policy does not apply), then `variables` in order (each visible to the later ones as
//! `variables.<name>`), then every `validations` expression (all true, or the request is
//! denied with the message). The request is shaped as the API server's CEL `request`
//! variable, converted from the admission request's JSON: a user without extra info has no
//! `extra` key at all (the field is `omitempty`), which the policy must survive.
//!
//! Facts used (Kubernetes sources): `authentication.kubernetes.io/node-name` is the user-info
//! extra key of a pod-bound service-account token (`k8s.io/apiserver/pkg/authentication/
//! serviceaccount`, `NodeNameKey`); feature ServiceAccountTokenPodNodeInfo is beta (on by
//! default) in 1.30 and GA in 1.32 (`pkg/features/kube_features.go`).

use kube::core::cel::KubeCelExt;
use kube::core::cel::cel::{Context, Program, Value, to_value};
use serde_json::{Value as Json, json};

const NODE_NAME_KEY: &str = "authentication.kubernetes.io/node-name";

/// All documents of the generated plain bundle.
fn bundle() -> Vec<Json> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubeplane.yaml");
    let text =
        std::fs::read_to_string(path).expect("deploy/kubeplane.yaml (scripts/gen-deploy.sh)");
    serde_saphyr::from_multiple::<Json>(&text)
        .expect("the bundle parses")
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Json], kind: &str) -> Vec<&'a Json> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Json], kind: &str) -> &'a Json {
    let found = find(docs, kind);
    assert_eq!(found.len(), 1, "exactly one {kind} in the bundle");
    found[0]
}

/// `system:serviceaccount:<ns>:<sa>` of the agent DaemonSet's pods.
fn agent_user(docs: &[Json]) -> String {
    let ds = one(docs, "DaemonSet");
    format!(
        "system:serviceaccount:{}:{}",
        ds["metadata"]["namespace"].as_str().unwrap(),
        ds["spec"]["template"]["spec"]["serviceAccountName"]
            .as_str()
            .unwrap()
    )
}

fn operator_user(docs: &[Json]) -> String {
    let d = one(docs, "Deployment");
    format!(
        "system:serviceaccount:{}:{}",
        d["metadata"]["namespace"].as_str().unwrap(),
        d["spec"]["template"]["spec"]["serviceAccountName"]
            .as_str()
            .unwrap()
    )
}

/// Evaluates one expression; `Err` for a compile or runtime error.
fn eval(ctx: &Context, expr: &str) -> Result<Value, String> {
    let program = Program::compile(expr).map_err(|e| format!("compile {expr:?}: {e}"))?;
    program
        .execute(ctx)
        .map_err(|e| format!("evaluate {expr:?}: {e}"))
}

fn context(
    request: &Json,
    object: &Json,
    variables: &serde_json::Map<String, Json>,
) -> Context<'static> {
    let mut ctx = Context::default().with_all();
    ctx.add_variable("request", to_value(request).unwrap())
        .unwrap();
    ctx.add_variable("object", to_value(object).unwrap())
        .unwrap();
    ctx.add_variable("oldObject", to_value(object).unwrap())
        .unwrap();
    ctx.add_variable("variables", to_value(variables).unwrap())
        .unwrap();
    ctx
}

fn cel_to_json(v: &Value) -> Json {
    match v {
        Value::String(s) => Json::String(s.to_string()),
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => json!(i),
        Value::UInt(u) => json!(u),
        Value::Null => Json::Null,
        other => panic!("variable of an unexpected type: {other:?}"),
    }
}

/// What the API server decides for `request` on `object` under `policy`.
#[derive(Debug, PartialEq)]
enum Decision {
    /// A matchCondition is false: the policy does not apply.
    NotMatched,
    Allowed,
    Denied(String),
}

fn admit(policy: &Json, request: &Json, object: &Json) -> Decision {
    let spec = &policy["spec"];
    let mut vars = serde_json::Map::new();
    for cond in spec["matchConditions"].as_array().unwrap() {
        let ctx = context(request, object, &vars);
        match eval(&ctx, cond["expression"].as_str().unwrap()) {
            Ok(Value::Bool(true)) => {}
            Ok(Value::Bool(false)) => return Decision::NotMatched,
            other => panic!("matchCondition {cond}: {other:?}"),
        }
    }
    for var in spec["variables"].as_array().unwrap() {
        let ctx = context(request, object, &vars);
        let value = match eval(&ctx, var["expression"].as_str().unwrap()) {
            Ok(v) => v,
            // failurePolicy: Fail — an evaluation error denies.
            Err(e) => return Decision::Denied(format!("evaluation failed: {e}")),
        };
        vars.insert(
            var["name"].as_str().unwrap().to_string(),
            cel_to_json(&value),
        );
    }
    let ctx = context(request, object, &vars);
    for v in spec["validations"].as_array().unwrap() {
        match eval(&ctx, v["expression"].as_str().unwrap()) {
            Ok(Value::Bool(true)) => {}
            Ok(Value::Bool(false)) => {
                let message = match v["messageExpression"].as_str() {
                    Some(m) => match eval(&ctx, m) {
                        Ok(Value::String(s)) => s.to_string(),
                        other => panic!("messageExpression {m:?}: {other:?}"),
                    },
                    None => v["message"].as_str().unwrap().to_string(),
                };
                assert!(
                    !message.contains('\n'),
                    "a VAP message has no line breaks: {message:?}"
                );
                return Decision::Denied(message);
            }
            // failurePolicy: Fail — an evaluation error denies.
            other => return Decision::Denied(format!("evaluation failed: {other:?}")),
        }
    }
    Decision::Allowed
}

/// A request to patch `controlplanenodes/<name>/status`, by `username` with `extra`.
fn request(username: &str, extra: Option<Json>, name: &str) -> Json {
    let mut user = json!({
        "username": username,
        "uid": "0d7c6f4e-0000-4000-8000-000000000001",
        "groups": ["system:serviceaccounts", "system:authenticated"],
    });
    if let Some(extra) = extra {
        user["extra"] = extra;
    }
    json!({
        "operation": "UPDATE",
        "name": name,
        "namespace": "",
        "kind": {"group": "kubeplane.io", "version": "v1alpha1", "kind": "ControlPlaneNode"},
        "resource": {"group": "kubeplane.io", "version": "v1alpha1", "resource": "controlplanenodes"},
        "subResource": "status",
        "userInfo": user,
        "dryRun": false,
    })
}

/// The user info extra of a pod-bound token of a pod on `node`.
fn pod_extra(node: &str) -> Json {
    json!({
        "authentication.kubernetes.io/pod-name": ["kubeplane-agent-x7k2p"],
        "authentication.kubernetes.io/pod-uid": ["5f1d2c3b-0000-4000-8000-000000000002"],
        "authentication.kubernetes.io/credential-id": ["JTI=9a8b7c6d"],
        (NODE_NAME_KEY): [node],
        "authentication.kubernetes.io/node-uid": ["77aa0c1e-0000-4000-8000-000000000003"],
    })
}

fn cpn(name: &str) -> Json {
    json!({
        "apiVersion": "kubeplane.io/v1alpha1",
        "kind": "ControlPlaneNode",
        "metadata": {"name": name, "labels": {"kubeplane.io/config": "production"}},
        "spec": {"revision": "3f9c0a"},
        "status": {"phase": "Healthy"},
    })
}

fn policy(docs: &[Json]) -> &Json {
    one(docs, "ValidatingAdmissionPolicy")
}

#[test]
fn policy_matches_only_controlplanenode_status_and_is_bound_with_deny() {
    let docs = bundle();
    let p = policy(&docs);
    assert_eq!(p["apiVersion"], "admissionregistration.k8s.io/v1");
    assert_eq!(p["spec"]["failurePolicy"], "Fail");
    let rules = p["spec"]["matchConstraints"]["resourceRules"]
        .as_array()
        .unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["apiGroups"], json!(["kubeplane.io"]));
    assert_eq!(rules[0]["resources"], json!(["controlplanenodes/status"]));
    let ops = rules[0]["operations"].as_array().unwrap();
    assert!(
        ops.contains(&json!("UPDATE")),
        "PATCH is admitted as UPDATE: {ops:?}"
    );
    assert!(
        !ops.contains(&json!("*")) && !ops.contains(&json!("DELETE")),
        "{ops:?}"
    );

    let binding = one(&docs, "ValidatingAdmissionPolicyBinding");
    assert_eq!(binding["spec"]["policyName"], p["metadata"]["name"]);
    assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]));
}

#[test]
fn agent_may_write_its_own_node_status() {
    let docs = bundle();
    let user = agent_user(&docs);
    let d = admit(
        policy(&docs),
        &request(&user, Some(pod_extra("cp-1")), "cp-1"),
        &cpn("cp-1"),
    );
    assert_eq!(d, Decision::Allowed);
}

#[test]
fn agent_may_not_write_another_node_status() {
    let docs = bundle();
    let user = agent_user(&docs);
    match admit(
        policy(&docs),
        &request(&user, Some(pod_extra("cp-1")), "cp-2"),
        &cpn("cp-2"),
    ) {
        Decision::Denied(m) => {
            assert!(m.contains("node cp-1"), "{m}");
            assert!(m.contains("not of cp-2"), "{m}");
        }
        other => panic!("cp-1's agent wrote cp-2's status: {other:?}"),
    }
}

#[test]
fn agent_credentials_without_a_node_are_refused() {
    let docs = bundle();
    let user = agent_user(&docs);
    // A token not bound to a pod (for example `kubectl create token`): no extra at all.
    let no_extra = request(&user, None, "cp-1");
    // Bound to a pod, but on an API server that does not add the node (before 1.30, or the
    // feature gate off): pod name and uid only.
    let pod_only = request(
        &user,
        Some(json!({"authentication.kubernetes.io/pod-name": ["kubeplane-agent-x7k2p"]})),
        "cp-1",
    );
    // Extra with an empty node name list, and with two node names.
    let empty = request(&user, Some(json!({(NODE_NAME_KEY): []})), "cp-1");
    let two = request(
        &user,
        Some(json!({(NODE_NAME_KEY): ["cp-1", "cp-2"]})),
        "cp-1",
    );
    for (what, req) in [
        ("no extra", no_extra),
        ("pod only", pod_only),
        ("empty", empty),
        ("two names", two),
    ] {
        match admit(policy(&docs), &req, &cpn("cp-1")) {
            Decision::Denied(m) => assert!(m.contains(NODE_NAME_KEY), "{what}: {m}"),
            other => panic!("{what}: admitted without a node name: {other:?}"),
        }
    }
}

#[test]
fn policy_applies_to_the_agent_service_account_only() {
    let docs = bundle();
    let p = policy(&docs);
    // The operator (and any other user) is not this policy's concern: RBAC decides for them.
    let op = request(&operator_user(&docs), Some(pod_extra("cp-1")), "cp-2");
    assert_eq!(admit(p, &op, &cpn("cp-2")), Decision::NotMatched);
    let admin = request("kubernetes-admin", None, "cp-2");
    assert_eq!(admit(p, &admin, &cpn("cp-2")), Decision::NotMatched);
    // A same-named service account in another namespace is another user.
    let agent = agent_user(&docs);
    let other_ns = agent.replacen(":kubeplane-system:", ":elsewhere:", 1);
    assert_ne!(
        other_ns, agent,
        "the bundle's agent runs in kubeplane-system"
    );
    assert_eq!(
        admit(
            p,
            &request(&other_ns, Some(pod_extra("cp-1")), "cp-2"),
            &cpn("cp-2")
        ),
        Decision::NotMatched
    );
}

#[test]
fn rbac_lets_the_agent_write_only_controlplanenode_status() {
    // The policy guards the status subresource; RBAC must not let the agent write anything
    // else of a ControlPlaneNode (its spec is the operator's).
    let docs = bundle();
    let agent_sa =
        one(&docs, "DaemonSet")["spec"]["template"]["spec"]["serviceAccountName"].clone();
    let writes = [
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection",
        "*",
    ];
    for binding in find(&docs, "ClusterRoleBinding")
        .into_iter()
        .chain(find(&docs, "RoleBinding"))
    {
        let subjects = binding["subjects"].as_array().unwrap();
        if !subjects.iter().any(|s| s["name"] == agent_sa) {
            continue;
        }
        let role_kind = binding["roleRef"]["kind"].as_str().unwrap();
        let role = docs
            .iter()
            .find(|d| d["kind"] == role_kind && d["metadata"]["name"] == binding["roleRef"]["name"])
            .expect("bound role in the bundle");
        for rule in role["rules"].as_array().unwrap() {
            let verbs: Vec<&str> = rule["verbs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            let resources: Vec<&str> = rule["resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            let writes_something = verbs.iter().any(|v| writes.contains(v));
            if !writes_something {
                continue;
            }
            for r in resources {
                assert!(
                    r == "controlplanenodes/status" || r == "events",
                    "the agent may write {r} ({verbs:?}) through {}",
                    role["metadata"]["name"]
                );
            }
        }
    }
}
