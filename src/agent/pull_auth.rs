//! Registry credentials for the pulls the agent makes before a restart: the docker config
//! JSON of the Secrets `spec.imagePullSecrets` names (type `kubernetes.io/dockerconfigjson`,
//! key `.dockerconfigjson`, or the legacy `kubernetes.io/dockercfg`, key `.dockercfg`),
//! matched to an image the way kubelet's credential keyring matches them
//! (`pkg/credentialprovider/keyring.go` of Kubernetes: a key is a host with an optional port
//! and path; the host may hold `*` globs per label, the port must be equal, the key's path
//! must prefix the image's; `index.docker.io` and an image without a registry mean
//! `docker.io`; the longest matching key wins).
//!
//! Pure: the caller reads the Secrets. Credentials never reach a log: [`RegistryAuth`]'s
//! `Debug` shows the server and the user only, and parse errors never quote the content.

use base64::Engine as _;
use serde_json::Value;

/// Credentials for one registry key.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    /// The key as written in the docker config (`registry.example.com:5000`, …).
    pub server: String,
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The entries of a docker config (`{"auths": {KEY: {...}}}`, or the legacy `{KEY: {...}}`).
/// An entry carries `auth` (base64 of `user:password`) or `username` and `password`.
/// `source` names the Secret in errors.
pub fn parse_docker_config(bytes: &[u8], source: &str) -> Result<Vec<RegistryAuth>, String> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| {
        format!(
            "{source}: not docker config JSON (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let auths = match doc.get("auths") {
        Some(a) => a,
        None => &doc,
    };
    let Some(auths) = auths.as_object() else {
        return Err(format!(
            "{source}: docker config JSON without an \"auths\" object"
        ));
    };
    let mut out = Vec::new();
    for (key, entry) in auths {
        let field = |name: &str| entry.get(name).and_then(Value::as_str).unwrap_or("");
        let (username, password) = if !field("auth").is_empty() {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(field("auth").trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    format!("{source}: the \"auth\" of {key:?} is not base64 of user:password")
                })?;
            let Some((u, p)) = decoded.split_once(':') else {
                return Err(format!(
                    "{source}: the \"auth\" of {key:?} is not base64 of user:password"
                ));
            };
            (u.to_string(), p.to_string())
        } else if !field("username").is_empty() {
            (field("username").to_string(), field("password").to_string())
        } else {
            // An entry with neither (an identity token only): nothing a pull can use.
            continue;
        };
        out.push(RegistryAuth {
            server: key.clone(),
            username,
            password,
        });
    }
    Ok(out)
}

/// (host with port, path) of a key or an image; `docker.io` for Docker Hub.
fn location(s: &str) -> (String, String) {
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let (host, path) = s.split_once('/').unwrap_or((s, ""));
    let host = host.to_ascii_lowercase();
    let host = match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        _ => host,
    };
    // Docker Hub's legacy key `https://index.docker.io/v1/` names the whole registry.
    let path = if host == "docker.io" && (path == "v1/" || path == "v1") {
        ""
    } else {
        path.trim_end_matches('/')
    };
    (host, path.to_string())
}

/// The registry part of an image reference, as the runtime resolves it: the first segment
/// when it holds a `.` or `:` or is `localhost`, else `docker.io`.
fn image_location(image: &str) -> (String, String) {
    let name = image.split('@').next().unwrap_or(image);
    let first = name.split('/').next().unwrap_or(name);
    let has_registry =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let repo = |r: &str| {
        // Drop the tag (a `:` after the last `/`).
        match r.rsplit_once('/') {
            Some((dir, last)) => format!("{dir}/{}", last.split(':').next().unwrap_or(last)),
            None => r.split(':').next().unwrap_or(r).to_string(),
        }
    };
    if has_registry {
        let (host, path) = location(name);
        (host, repo(&path))
    } else if name.contains('/') {
        ("docker.io".into(), repo(name))
    } else {
        ("docker.io".into(), format!("library/{}", repo(name)))
    }
}

/// Whether the host `pattern` (globs per label) matches `host`; ports must be equal.
fn host_matches(pattern: &str, host: &str) -> bool {
    let split = |h: &str| -> (String, Option<String>) {
        match h.rsplit_once(':') {
            Some((n, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                (n.to_string(), Some(p.to_string()))
            }
            _ => (h.to_string(), None),
        }
    };
    let ((pn, pp), (hn, hp)) = (split(pattern), split(host));
    if pp != hp {
        return false;
    }
    let (pl, hl): (Vec<&str>, Vec<&str>) = (pn.split('.').collect(), hn.split('.').collect());
    pl.len() == hl.len() && pl.iter().zip(&hl).all(|(p, h)| glob(p, h))
}

/// `*` matches any run of characters within a label.
fn glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, tail)) => {
            let Some(rest) = s.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len()).any(|i| rest.is_char_boundary(i) && glob(tail, &rest[i..]))
        }
    }
}

/// The credentials for `image`: the entry whose key matches it, the longest key first.
pub fn auth_for<'a>(image: &str, entries: &'a [RegistryAuth]) -> Option<&'a RegistryAuth> {
    let (host, path) = image_location(image);
    entries
        .iter()
        .filter(|e| {
            let (kh, kp) = location(&e.server);
            host_matches(&kh, &host)
                && (kp.is_empty() || path == kp || path.starts_with(&format!("{kp}/")))
        })
        .max_by_key(|e| {
            let (kh, kp) = location(&e.server);
            (kh.len() + kp.len(), !kh.contains('*'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn both_entry_forms_and_the_legacy_layout_parse() {
        let cfg = format!(
            r#"{{"auths": {{"registry.example.com:5000": {{"auth": "{}"}},
                          "ghcr.io": {{"username": "bot", "password": "tok"}},
                          "token.example.com": {{"identitytoken": "x"}}}}}}"#,
            b64("alice:s3cr:et")
        );
        let mut e = parse_docker_config(cfg.as_bytes(), "Secret kube-system/pull").unwrap();
        e.sort_by(|a, b| a.server.cmp(&b.server));
        assert_eq!(e.len(), 2, "an identity token alone is skipped: {e:?}");
        assert_eq!(
            (
                e[0].server.as_str(),
                e[0].username.as_str(),
                e[0].password.as_str()
            ),
            ("ghcr.io", "bot", "tok")
        );
        assert_eq!(
            (e[1].username.as_str(), e[1].password.as_str()),
            ("alice", "s3cr:et"),
            "only the first ':' separates"
        );
        let legacy = format!(r#"{{"quay.io": {{"auth": "{}"}}}}"#, b64("u:p"));
        let l = parse_docker_config(legacy.as_bytes(), "s").unwrap();
        assert_eq!(l[0].server, "quay.io");
    }

    #[test]
    fn bad_content_is_refused_without_quoting_it() {
        let e = parse_docker_config(
            b"{\"auths\": {\"r.io\": {\"auth\": \"c2VjcmV0\"}}}",
            "Secret ns/s",
        )
        .unwrap_err();
        assert!(e.contains("Secret ns/s") && e.contains("r.io"), "{e}");
        assert!(!e.contains("c2VjcmV0") && !e.contains("secret"), "{e}");
        let e = parse_docker_config(b"password=hunter2", "Secret ns/s").unwrap_err();
        assert!(
            e.contains("not docker config JSON") && !e.contains("hunter2"),
            "{e}"
        );
        let e = parse_docker_config(b"[1]", "Secret ns/s").unwrap_err();
        assert!(e.contains("\"auths\""), "{e}");
    }

    #[test]
    fn debug_never_shows_the_password() {
        let a = RegistryAuth {
            server: "r.io".into(),
            username: "u".into(),
            password: "hunter2".into(),
        };
        let d = format!("{a:?}");
        assert!(d.contains("r.io") && !d.contains("hunter2"), "{d}");
    }

    fn entry(server: &str) -> RegistryAuth {
        RegistryAuth {
            server: server.into(),
            username: format!("user-of-{server}"),
            password: "p".into(),
        }
    }

    fn matched(image: &str, keys: &[&str]) -> Option<String> {
        let e: Vec<_> = keys.iter().map(|k| entry(k)).collect();
        auth_for(image, &e).map(|a| a.server.clone())
    }

    #[test]
    fn images_match_keys_as_kubelet_matches_them() {
        let keys = [
            "registry.example.com:5000",
            "https://registry.example.com/team",
            "*.corp.example",
            "https://index.docker.io/v1/",
        ];
        let m = |i: &str| matched(i, &keys);
        assert_eq!(
            m("registry.example.com:5000/kube-apiserver:v1.36.2").as_deref(),
            Some("registry.example.com:5000")
        );
        assert_eq!(
            m("registry.example.com/team/kube-apiserver:v1.36.2").as_deref(),
            Some("https://registry.example.com/team")
        );
        assert_eq!(m("registry.example.com/other/x:1"), None, "path prefix");
        assert_eq!(
            m("registry.example.com/teamster/x:1"),
            None,
            "whole segments"
        );
        assert_eq!(
            m("registry.example.com:6000/x:1"),
            None,
            "ports must be equal"
        );
        assert_eq!(
            m("mirror.corp.example/k8s/x:1").as_deref(),
            Some("*.corp.example")
        );
        assert_eq!(m("a.b.corp.example/x:1"), None, "a glob is one label");
        assert_eq!(
            m("nginx:1.27").as_deref(),
            Some("https://index.docker.io/v1/"),
            "no registry: Docker Hub"
        );
        assert_eq!(
            m("docker.io/library/nginx@sha256:00").as_deref(),
            Some("https://index.docker.io/v1/")
        );
        assert_eq!(m("registry.k8s.io/kube-apiserver:v1.36.2"), None);
    }

    #[test]
    fn the_longest_key_wins() {
        let keys = ["registry.example.com", "registry.example.com/team/sub"];
        assert_eq!(
            matched("registry.example.com/team/sub/x:1", &keys).as_deref(),
            Some("registry.example.com/team/sub")
        );
        assert_eq!(
            matched("registry.example.com/team/x:1", &keys).as_deref(),
            Some("registry.example.com")
        );
    }
}
