//! The API's authentication in the units: kube-apiserver's service-account flags required
//! since v1.20, service-account keys that are CA files or keys, and anonymous requests that
//! kubelet's probes need.

use super::*;

/// kube-apiserver's required service-account flags (since v1.20), when its unit lacks them:
/// (flag, value, why) to add to its flags.
pub(super) fn required_service_account_flags(
    api: Option<&Parsed>,
    kcm: Option<&Parsed>,
    findings: &mut Vec<Finding>,
) -> Vec<(String, String, String)> {
    let mut extra_api: Vec<(String, String, String)> = Vec::new();
    if let Some(a) = api {
        let has = |n: &str| a.kept.iter().any(|(k, _, _)| k == n);
        let keys: Vec<String> = a
            .kept
            .iter()
            .filter(|(n, _, _)| n == "service-account-key-file")
            .flat_map(|(_, v, _)| split_list(v).map(str::to_string).collect::<Vec<_>>())
            .collect();
        if !has("service-account-signing-key-file") {
            let from_kcm = kcm.and_then(|k| {
                k.kept
                    .iter()
                    .rev()
                    .find(|(n, _, _)| n == "service-account-private-key-file")
                    .map(|(_, v, _)| v.clone())
            });
            let guess = from_kcm
                .clone()
                .map(|v| (v, "kube-controller-manager's --service-account-private-key-file (both must sign with the same key)".to_string()))
                .or_else(|| {
                    keys.first().and_then(|k| {
                        private_half(k).map(|p| {
                            (
                                p,
                                format!("named like the private half of --service-account-key-file={k}"),
                            )
                        })
                    })
                });
            match guess {
                Some((path, why)) => {
                    extra_api.push((
                        "service-account-signing-key-file".into(),
                        path.clone(),
                        format!(
                            "required since v1.20 (kube-apiserver signs service-account tokens itself); the unit has none, so the import uses {path}, {why}"
                        ),
                    ));
                    if from_kcm.is_none() {
                        findings.push(
                            Finding::warning(format!(
                                "the unit has no --service-account-signing-key-file, required since v1.20; the import uses {path} ({why})"
                            ))
                            .of(Component::ApiServer)
                            .fix(format!(
                                "check that {path} is the private key whose public half is in --service-account-key-file, and that kube-controller-manager's --service-account-private-key-file is the same file"
                            )),
                        );
                    }
                }
                None => findings.push(
                    Finding::error(
                        "the unit has no --service-account-signing-key-file, required since v1.20, and the import cannot tell which private key matches --service-account-key-file; the config keeps kubeplane's default (sa.key under certificatesDir), which this node does not have",
                    )
                    .of(Component::ApiServer)
                    .fix("add service-account-signing-key-file (the private key kube-controller-manager signs tokens with) to spec.apiServer.extraArgs and allowProtectedOverrides"),
                ),
            }
        }
        if !has("service-account-issuer") {
            findings.push(
                Finding::note(
                    "the unit has no --service-account-issuer, required since v1.20: the config uses kubeplane's default, https://kubernetes.default.svc.<dnsDomain>; tokens issued before keep working (kube-apiserver still accepts the legacy issuer kubernetes/serviceaccount)",
                )
                .of(Component::ApiServer)
                .fix("to use another issuer (for example the external URL of the API), add service-account-issuer to spec.apiServer.extraArgs and allowProtectedOverrides"),
            );
        }
    }
    extra_api
}

/// Service-account keys that are CA files (by name, or by content: `input.key_files`), or
/// the cluster CA's private key.
pub(super) fn shared_keys(
    parsed: &[Parsed],
    reports: &[FlagReport],
    input: &HardWayInput<'_>,
    findings: &mut Vec<Finding>,
) {
    for p in parsed {
        let c = p.component;
        let ca_files: Vec<(&str, &str, Component)> = parsed
            .iter()
            .flat_map(|q| {
                q.kept
                    .iter()
                    .filter(|(n, _, _)| CA_FLAGS.contains(&n.as_str()))
                    .map(move |(n, v, _)| (n.as_str(), v.as_str(), q.component))
            })
            .collect();
        let signing_key = parsed
            .iter()
            .flat_map(|q| {
                q.kept
                    .iter()
                    .filter(|(n, _, _)| n == "cluster-signing-key-file")
                    .map(|(_, v, _)| v.as_str())
            })
            .collect::<Vec<_>>();
        for (n, v, idx) in &p.kept {
            let origin = &reports[*idx].origin;
            if c == Component::ApiServer && n == "service-account-key-file" {
                for key in split_list(v) {
                    let shared = CA_FLAGS
                        .iter()
                        .any(|flag| ca_files.iter().any(|(n, f, _)| n == flag && *f == key));
                    if !shared
                        && input
                            .key_files
                            .get(key)
                            .is_some_and(|pem| is_ca_certificate(pem))
                    {
                        findings.push(
                            Finding::error(format!(
                                "the service-account verification key {key} is a CA certificate (basicConstraints CA:TRUE): whoever holds that CA's private key can mint service-account tokens"
                            ))
                            .at(origin)
                            .flag(c, n, Some(v))
                            .fix("create a key pair for service accounts only (openssl genrsa -out sa.key 2048; openssl rsa -in sa.key -pubout -out sa.pub) and rotate to it: list both public keys, sign with the new key, drop the CA once old tokens have expired"),
                        );
                    }
                    let hit = CA_FLAGS
                        .iter()
                        .find_map(|flag| ca_files.iter().find(|(n, f, _)| n == flag && *f == key));
                    if let Some((ca_flag, _, ca_c)) = hit {
                        findings.push(
                            Finding::error(format!(
                                "the service-account verification key is {key}, the CA certificate {ca_c} also uses as --{ca_flag}: whoever holds that CA's private key can mint service-account tokens, and rotating either one breaks the other"
                            ))
                            .at(origin)
                            .flag(c, n, Some(v))
                            .fix("create a key pair for service accounts only (openssl genrsa -out sa.key 2048; openssl rsa -in sa.key -pubout -out sa.pub), then rotate in three steps: list both public keys in service-account-key-file, switch kube-apiserver's --service-account-signing-key-file and kube-controller-manager's --service-account-private-key-file to sa.key, and drop the CA from service-account-key-file once old tokens have expired; the config keeps the current value so adoption changes nothing"),
                        );
                    }
                }
            }
            if c == Component::ControllerManager
                && n == "service-account-private-key-file"
                && signing_key.contains(&v.as_str())
            {
                findings.push(
                    Finding::error(format!(
                        "service-account tokens are signed with {v}, the cluster CA's private key (--cluster-signing-key-file): the CA key signs tokens, so rotating either one breaks the other"
                    ))
                    .at(origin)
                    .flag(c, n, Some(v))
                    .fix("create a key pair for service accounts only (sa.key, sa.pub), list sa.pub beside the current key in kube-apiserver's --service-account-key-file, then sign with sa.key (this flag and kube-apiserver's --service-account-signing-key-file); the config keeps the current value so adoption changes nothing"),
                );
            }
        }
    }
}

/// kubelet's probes (and migrate's checks) call /livez and /readyz without credentials.
pub(super) fn anonymous_probes(
    api: Option<&Parsed>,
    reports: &[FlagReport],
    findings: &mut Vec<Finding>,
) {
    if let Some(a) = api
        && a.kept
            .iter()
            .any(|(n, v, _)| n == "anonymous-auth" && v == "false")
        && !a.kept.iter().any(|(n, _, _)| n == "authentication-config")
    {
        let origin = a
            .kept
            .iter()
            .find(|(n, _, _)| n == "anonymous-auth")
            .map(|(_, _, i)| reports[*i].origin.clone());
        let mut f = Finding::error(
            "a static Pod is judged by kubelet's probes, which call /livez, /readyz and /livez again at start without credentials: with anonymous requests off they get 401, kubelet restarts kube-apiserver over and over, and migrate goes back to the unit",
        )
        .flag(Component::ApiServer, "anonymous-auth", Some("false"))
        .fix("drop --anonymous-auth=false from spec.apiServer.extraArgs (RBAC gives anonymous requests only the health, version and discovery endpoints, through system:public-info-viewer), or replace it by --authentication-config with an AuthenticationConfiguration whose anonymous section is enabled only for /livez, /readyz and /healthz (v1.32+), mounted read-only");
        if let Some(o) = origin {
            f = f.at(&o);
        }
        findings.push(f);
    }
}
