use super::network::parse_port_range;
use super::*;

#[test]
fn quantities() {
    for ok in ["250m", "1", "0.5", "512Mi", "2Gi", "1e3", "100k"] {
        assert!(is_quantity(ok), "{ok}");
    }
    for bad in ["", "m", "1.2.3", "12 Mi", "1GB", "abc", "--1"] {
        assert!(!is_quantity(bad), "{bad}");
    }
}

#[test]
fn url_host_port() {
    assert_eq!(
        parse_url_host_port("https://10.0.0.21:2379"),
        Some(("https", "10.0.0.21", 2379))
    );
    assert_eq!(
        parse_url_host_port("https://[fd00::1]:2379/"),
        Some(("https", "fd00::1", 2379))
    );
    for bad in [
        "10.0.0.21:2379",
        "https://10.0.0.21",
        "ftp://a:1",
        "https://a:0",
        "https://a:1/x",
    ] {
        assert_eq!(parse_url_host_port(bad), None, "{bad}");
    }
}

#[test]
fn names_and_paths() {
    assert!(is_dns_label("cp-1"));
    assert!(!is_dns_label("CP-1"));
    assert!(!is_dns_label("-a"));
    assert!(is_dns_subdomain("cluster.local"));
    assert!(!is_dns_subdomain("a..b"));
    assert!(is_clean_abs_path("/etc/kubernetes/pki"));
    for bad in ["etc", "/etc/../x", "/a//b", "/a/./b", ""] {
        assert!(!is_clean_abs_path(bad), "{bad}");
    }
    assert!(is_label_key("node-role.kubernetes.io/control-plane"));
    assert!(!is_label_key("/x"));
    assert!(is_label_value(""));
    assert!(!is_label_value("-x"));
}

#[test]
fn port_ranges() {
    assert_eq!(parse_port_range("30000-32767"), Some((30000, 32767)));
    for bad in ["0-10", "10-5", "1-70000", "30000", "a-b"] {
        assert_eq!(parse_port_range(bad), None, "{bad}");
    }
    assert_eq!(parse_port_range_flag("30000+2767"), Some((30000, 32767)));
    assert_eq!(parse_port_range_flag("30000"), Some((30000, 30000)));
    assert_eq!(parse_port_range_flag(" 30000-32767 "), Some((30000, 32767)));
    for bad in ["", "0", "65535+1", "10-5", "x+1", "1+-1"] {
        assert_eq!(parse_port_range_flag(bad), None, "{bad}");
    }
}

#[test]
fn cidr_lists() {
    assert_eq!(parse_cidr_list("10.96.0.0/12").unwrap().len(), 1);
    assert_eq!(
        parse_cidr_list("fd00::/108, 10.96.0.0/12").unwrap().len(),
        2
    );
    for bad in [
        "",
        "10.96.0.1/12",
        "10.96.0.0/12,10.97.0.0/16",
        "x",
        "10.0.0.0/8,fd00::/64,10.1.0.0/16",
    ] {
        assert!(parse_cidr_list(bad).is_err(), "{bad}");
    }
}

#[test]
fn image_pull_secrets_name_valid_secrets_once() {
    use crate::api::ImagePullSecretRef;
    let with = |refs: &[(&str, Option<&str>)]| {
        let spec = ControlPlaneConfigSpec {
            kubernetes_version: "v1.36.2".into(),
            image_pull_secrets: refs
                .iter()
                .map(|(n, ns)| ImagePullSecretRef {
                    name: n.to_string(),
                    namespace: ns.map(str::to_string),
                })
                .collect(),
            ..Default::default()
        };
        crate::validation::validate(&spec).error_messages()
    };
    assert!(with(&[("regcred", None), ("regcred", Some("infra"))]).is_empty());
    let e = with(&[("RegCred", Some("Kube_System"))]);
    assert!(
        e.iter()
            .any(|m| m.contains("spec.imagePullSecrets[0].name") && m.contains("RegCred")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.contains("spec.imagePullSecrets[0].namespace") && m.contains("Kube_System")),
        "{e:?}"
    );
    let e = with(&[("regcred", None), ("regcred", Some("kube-system"))]);
    assert!(
        e.iter().any(|m| m.contains("spec.imagePullSecrets[1]")
            && m.contains("kube-system/regcred")
            && m.contains("twice")),
        "{e:?}"
    );
    let nine: Vec<String> = (0..9).map(|i| format!("s{i}")).collect();
    let nine: Vec<(&str, Option<&str>)> = nine.iter().map(|n| (n.as_str(), None)).collect();
    let e = with(&nine);
    assert!(e.iter().any(|m| m.contains("9 Secrets named")), "{e:?}");
}
