//! Is kubelet running with the static Pod directory `migrate` writes to? From kubelet's
//! command line (`/proc/PID/cmdline`) and the KubeletConfiguration file its `--config` names.

use std::path::Path;

/// How to turn static Pods on, for messages.
pub fn how_to_enable(manifest_dir: &str) -> String {
    format!(
        "run kubelet on this node with a static Pod directory: add `staticPodPath: {manifest_dir}` to the KubeletConfiguration file kubelet's --config names (kubeadm: /var/lib/kubelet/config.yaml), or start it with --pod-manifest-path={manifest_dir}; create the directory, then `systemctl restart kubelet` (running containers keep running)"
    )
}

/// The value of a flag in an argv (`--name=value` or `--name value`), the last one wins.
fn flag<'a>(argv: &'a [String], name: &str) -> Option<&'a str> {
    let long = format!("--{name}");
    let mut found = None;
    let mut i = 0;
    while i < argv.len() {
        let a = argv[i].as_str();
        if let Some(v) = a.strip_prefix(&format!("{long}=")) {
            found = Some(v);
        } else if a == long {
            found = argv.get(i + 1).map(String::as_str);
            i += 1;
        }
        i += 1;
    }
    found
}

/// The static Pod directory of a kubelet, from its argv and its config file (`read` returns a
/// file's content). `Err` says what is missing.
pub fn static_pod_path(
    argv: &[String],
    read: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    if let Some(p) = flag(argv, "pod-manifest-path").filter(|p| !p.is_empty()) {
        return Ok(p.to_string());
    }
    let Some(config) = flag(argv, "config") else {
        return Err("kubelet runs with neither --pod-manifest-path nor --config".into());
    };
    let Some(text) = read(config) else {
        return Err(format!("cannot read kubelet's config file {config}"));
    };
    let value: serde_json::Value = serde_saphyr::from_str(&text)
        .map_err(|e| format!("kubelet's config file {config} is not YAML: {e}"))?;
    match value.get("staticPodPath").and_then(|v| v.as_str()) {
        Some(p) if !p.is_empty() => Ok(p.to_string()),
        _ => Err(format!(
            "kubelet's config file {config} sets no staticPodPath"
        )),
    }
}

/// The CRI socket a kubelet uses: `--container-runtime-endpoint`, else the config file's
/// `containerRuntimeEndpoint` (KubeletConfiguration v1beta1, a field since v1.27 when the flag
/// was deprecated: kubernetes/kubernetes pkg/kubelet/apis/config/v1beta1 and CHANGELOG-1.27),
/// else `None` (kubelet's own default, containerd's socket).
pub fn runtime_endpoint(argv: &[String], read: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    if let Some(e) = flag(argv, "container-runtime-endpoint").filter(|e| !e.is_empty()) {
        return Some(e.to_string());
    }
    let text = read(flag(argv, "config")?)?;
    let value: serde_json::Value = serde_saphyr::from_str(&text).ok()?;
    value
        .get("containerRuntimeEndpoint")
        .and_then(|v| v.as_str())
        .filter(|e| !e.is_empty())
        .map(str::to_string)
}

/// The argv of every running kubelet under a `/proc`.
pub fn kubelet_processes(proc_root: &Path) -> Vec<Vec<String>> {
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if argv
            .first()
            .is_some_and(|a0| a0.rsplit('/').next() == Some("kubelet"))
        {
            out.push(argv);
        }
    }
    out
}

/// Checks that a kubelet runs with `manifest_dir` as its static Pod directory. `Ok` says
/// what was found; `Err` says what is missing and how to turn it on.
pub fn check(
    manifest_dir: &str,
    kubelets: &[Vec<String>],
    read: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let want = manifest_dir.trim_end_matches('/');
    let Some(argv) = kubelets.first() else {
        return Err(format!(
            "no kubelet runs on this node, and static Pods need one; {}",
            how_to_enable(want)
        ));
    };
    match static_pod_path(argv, read) {
        Ok(p) if p.trim_end_matches('/') == want => {
            Ok(format!("kubelet reads static Pods from {p}"))
        }
        Ok(p) => Err(format!(
            "kubelet reads static Pods from {p}, not from --manifest-dir {want}: pass --manifest-dir {p}, or {}",
            how_to_enable(want)
        )),
        Err(why) => Err(format!("{why}; {}", how_to_enable(want))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn runtime_endpoint_from_flag_then_config() {
        let config = |text: &'static str| move |p: &str| (p == "/k.yaml").then(|| text.to_string());
        let with = config(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncontainerRuntimeEndpoint: unix:///run/crio/crio.sock\n",
        );
        assert_eq!(
            runtime_endpoint(
                &argv(&[
                    "kubelet",
                    "--config=/k.yaml",
                    "--container-runtime-endpoint",
                    "unix:///x.sock"
                ]),
                &with
            )
            .as_deref(),
            Some("unix:///x.sock"),
            "the flag wins"
        );
        assert_eq!(
            runtime_endpoint(&argv(&["kubelet", "--config", "/k.yaml"]), &with).as_deref(),
            Some("unix:///run/crio/crio.sock")
        );
        let without = config("kind: KubeletConfiguration\n");
        assert_eq!(
            runtime_endpoint(&argv(&["kubelet", "--config", "/k.yaml"]), &without),
            None
        );
        assert_eq!(runtime_endpoint(&argv(&["kubelet"]), &without), None);
        let unreadable = |_: &str| None;
        assert_eq!(
            runtime_endpoint(&argv(&["kubelet", "--config=/k.yaml"]), &unreadable),
            None
        );
    }

    #[test]
    fn static_pod_path_from_flag_or_config() {
        let none = |_: &str| None;
        assert_eq!(
            static_pod_path(&argv(&["kubelet", "--pod-manifest-path=/m"]), &none).unwrap(),
            "/m"
        );
        assert_eq!(
            static_pod_path(&argv(&["kubelet", "--pod-manifest-path", "/m"]), &none).unwrap(),
            "/m"
        );
        let read = |p: &str| {
            (p == "/var/lib/kubelet/config.yaml").then(|| {
                "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nstaticPodPath: /etc/kubernetes/manifests\n".to_string()
            })
        };
        let a = argv(&["/usr/bin/kubelet", "--config=/var/lib/kubelet/config.yaml"]);
        assert_eq!(
            static_pod_path(&a, &read).unwrap(),
            "/etc/kubernetes/manifests"
        );
        assert!(
            check(
                "/etc/kubernetes/manifests/",
                std::slice::from_ref(&a),
                &read
            )
            .is_ok()
        );
        let e = check("/srv/manifests", &[a], &read).unwrap_err();
        assert!(
            e.contains("pass --manifest-dir /etc/kubernetes/manifests"),
            "{e}"
        );
    }

    #[test]
    fn missing_kubelet_or_static_pod_path_says_how_to_turn_it_on() {
        let none = |_: &str| None;
        let e = check("/etc/kubernetes/manifests", &[], &none).unwrap_err();
        assert!(
            e.contains("no kubelet runs") && e.contains("staticPodPath: /etc/kubernetes/manifests"),
            "{e}"
        );
        let e = check("/m", &[argv(&["kubelet"])], &none).unwrap_err();
        assert!(
            e.contains("neither --pod-manifest-path nor --config"),
            "{e}"
        );
        let e = check("/m", &[argv(&["kubelet", "--config", "/c"])], &none).unwrap_err();
        assert!(e.contains("cannot read kubelet's config file /c"), "{e}");
        let read = |_: &str| Some("kind: KubeletConfiguration\n".to_string());
        let e = check("/m", &[argv(&["kubelet", "--config=/c"])], &read).unwrap_err();
        assert!(e.contains("sets no staticPodPath"), "{e}");
        let read = |_: &str| Some(": : :\n  - [".to_string());
        let e = check("/m", &[argv(&["kubelet", "--config=/c"])], &read).unwrap_err();
        assert!(e.contains("not YAML"), "{e}");
    }

    #[test]
    fn finds_kubelet_processes_under_a_proc_root() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("12")).unwrap();
        std::fs::write(p.join("12/cmdline"), b"/usr/bin/kubelet\0--config=/c\0").unwrap();
        std::fs::create_dir_all(p.join("13")).unwrap();
        std::fs::write(p.join("13/cmdline"), b"/usr/bin/containerd\0").unwrap();
        std::fs::create_dir_all(p.join("self")).unwrap();
        let found = kubelet_processes(p);
        assert_eq!(found, vec![argv(&["/usr/bin/kubelet", "--config=/c"])]);
        assert!(kubelet_processes(&p.join("none")).is_empty());
    }
}
