//! Flag values checked by type, the way the components parse them (Go `strconv`, `time`,
//! `net` and pflag), so a value the binary would refuse is refused here first.

use std::net::IpAddr;

use ipnet::IpNet;

use super::spec::{is_clean_abs_path, parse_cidr_list, parse_port_range_flag};
use crate::flags::{FlagInfo, FlagType};
use crate::render::args::split_list;

/// Why a value does not fit its flag: what is wrong and what to write instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Invalid {
    /// What is wrong, naming the flag and the value.
    pub message: String,
    /// What to write instead.
    pub fix: String,
}

fn invalid(flag: &FlagInfo, value: &str, what: &str, fix: impl Into<String>) -> Invalid {
    Invalid {
        message: format!("--{}={value:?} is not {what}", flag.name),
        fix: fix.into(),
    }
}

/// Checks a value against the flag's type (and its allowed values, if any).
pub(crate) fn check_value(flag: &FlagInfo, value: &str) -> Result<(), Invalid> {
    match flag.type_ {
        FlagType::Bool => {
            if !is_go_bool(value) {
                return Err(invalid(flag, value, "a boolean", "write true or false"));
            }
        }
        FlagType::Int => {
            if parse_go_int(value).is_none() {
                return Err(invalid(
                    flag,
                    value,
                    "an integer",
                    "write a whole number, like 10",
                ));
            }
        }
        FlagType::Float => {
            if value.trim() != value || value.parse::<f64>().is_err() {
                return Err(invalid(flag, value, "a number", "write a number, like 0.5"));
            }
        }
        FlagType::String => {}
        FlagType::Duration => {
            if !is_go_duration(value) {
                return Err(invalid(
                    flag,
                    value,
                    "a duration",
                    "write a number with a unit (ns, us, ms, s, m, h), like 30s, 500ms or 1h30m",
                ));
            }
        }
        FlagType::Ip => {
            if value.trim().parse::<IpAddr>().is_err() {
                return Err(invalid(
                    flag,
                    value,
                    "an IP address",
                    "write an IPv4 or IPv6 address, like 10.0.0.11 or 0.0.0.0",
                ));
            }
        }
        FlagType::Cidr => match value.trim().parse::<IpNet>() {
            Ok(n) if n.network() == n.addr() => {}
            Ok(n) => {
                return Err(Invalid {
                    message: format!("--{}={value:?} has host bits set", flag.name),
                    fix: format!("use the network address: {}", n.trunc()),
                });
            }
            Err(_) => {
                return Err(invalid(
                    flag,
                    value,
                    "a CIDR",
                    "write an address and prefix length, like 10.244.0.0/16",
                ));
            }
        },
        FlagType::Cidrs => {
            if let Err((why, fix)) = parse_cidr_list(value) {
                return Err(Invalid {
                    message: format!("--{}={value:?}: {why}", flag.name),
                    fix,
                });
            }
        }
        FlagType::Port => {
            if !parse_go_int(value).is_some_and(|p| (0..=65535).contains(&p)) {
                return Err(invalid(
                    flag,
                    value,
                    "a port number",
                    "write a port from 0 to 65535",
                ));
            }
        }
        FlagType::PortRange => {
            if parse_port_range_flag(value).is_none() {
                return Err(invalid(
                    flag,
                    value,
                    "a port range",
                    "write FIRST-LAST with 1 <= FIRST <= LAST <= 65535, like 30000-32767",
                ));
            }
        }
        FlagType::Strings => {
            if !flag.values.is_empty() {
                let unknown: Vec<&str> = split_list(value)
                    .filter(|item| !flag.values.iter().any(|v| v == item))
                    .collect();
                if !unknown.is_empty() {
                    return Err(Invalid {
                        message: format!(
                            "--{}={value:?}: {} not among its accepted values",
                            flag.name,
                            quote_list(&unknown)
                        ),
                        fix: format!("use items of {}", flag.values.join(", ")),
                    });
                }
            }
        }
        FlagType::Map => check_map(flag, value)?,
        FlagType::Path => {
            if !value.is_empty() && !is_clean_abs_path(value) {
                return Err(invalid(
                    flag,
                    value,
                    "an absolute path",
                    "give the path inside the container, starting with '/', without '..' or '//'",
                ));
            }
        }
        FlagType::Url => {
            if !value.is_empty() && !is_url(value, &["http", "https"]) {
                return Err(invalid(
                    flag,
                    value,
                    "a URL",
                    "write scheme and host, like https://issuer.example.com",
                ));
            }
        }
        FlagType::Urls => {
            let bad: Vec<&str> = value
                .split(',')
                .map(str::trim)
                .filter(|u| !is_url(u, &["http", "https", "unix"]))
                .collect();
            if !bad.is_empty() {
                return Err(Invalid {
                    message: format!(
                        "--{}={value:?}: {} not a URL",
                        flag.name,
                        quote_list(&bad)
                    ),
                    fix: "write comma-separated URLs with scheme, host and port, like https://10.0.0.21:2379,https://10.0.0.22:2379".into(),
                });
            }
        }
        FlagType::Enum => {
            if !flag.values.is_empty() && !flag.values.iter().any(|v| v == value) {
                return Err(Invalid {
                    message: format!("--{}={value:?} is not one of its values", flag.name),
                    fix: format!("use one of {}", flag.values.join(", ")),
                });
            }
        }
    }
    Ok(())
}

fn quote_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    let verb = if items.len() == 1 { "is" } else { "are" };
    format!("{} {verb}", quoted.join(", "))
}

/// `key=value` maps. `feature-gates` is `[component:]Name=true|false`, `runtime-config` is
/// `group/version[/resource][=true|false]`; other maps need `=` in each item.
fn check_map(flag: &FlagInfo, value: &str) -> Result<(), Invalid> {
    let items: Vec<&str> = split_list(value).collect();
    match flag.name.as_str() {
        "feature-gates" => {
            for item in &items {
                let ok = item.split_once('=').is_some_and(|(k, v)| {
                    let name = k.trim().rsplit_once(':').map_or(k.trim(), |(_, n)| n);
                    !name.is_empty()
                        && name.bytes().all(|b| b.is_ascii_alphanumeric())
                        && is_go_bool(v.trim())
                });
                if !ok {
                    return Err(Invalid {
                        message: format!(
                            "--feature-gates={value:?}: {item:?} is not Name=true or Name=false"
                        ),
                        fix: "write comma-separated gates like SidecarContainers=true,InPlacePodVerticalScaling=false".into(),
                    });
                }
            }
        }
        "runtime-config" => {
            for item in &items {
                let (k, v) = item.split_once('=').unwrap_or((item, ""));
                let key_ok = !k.trim().is_empty()
                    && k.trim()
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"./-".contains(&b));
                if !key_ok || !(v.trim().is_empty() || is_go_bool(v.trim())) {
                    return Err(Invalid {
                        message: format!(
                            "--runtime-config={value:?}: {item:?} is not group/version=true or =false"
                        ),
                        fix: "write comma-separated entries like api/all=true or batch/v2alpha1=false".into(),
                    });
                }
            }
        }
        _ => {
            if items.is_empty() || !items.iter().any(|i| i.contains('=')) {
                return Err(invalid(
                    flag,
                    value,
                    "a key=value list",
                    "write comma-separated key=value pairs",
                ));
            }
        }
    }
    Ok(())
}

/// Go `strconv.ParseBool`.
pub(super) fn is_go_bool(v: &str) -> bool {
    matches!(
        v,
        "1" | "t" | "T" | "TRUE" | "true" | "True" | "0" | "f" | "F" | "FALSE" | "false" | "False"
    )
}

/// Go `strconv.ParseInt(v, 0, 64)`: optional sign, decimal, `0x`/`0o`/`0b` or leading-zero
/// octal, `_` between digits.
pub(super) fn parse_go_int(v: &str) -> Option<i64> {
    let (neg, body) = match v.as_bytes().first()? {
        b'-' => (true, &v[1..]),
        b'+' => (false, &v[1..]),
        _ => (false, v),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    // After a base prefix Go allows one '_' before the first digit (0x_1f).
    let digits = if radix == 10 {
        digits
    } else {
        digits.strip_prefix('_').unwrap_or(digits)
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits
            .bytes()
            .all(|b| b == b'_' || b.is_ascii_alphanumeric())
    {
        return None;
    }
    let clean: String = digits.chars().filter(|c| *c != '_').collect();
    let magnitude = i128::from(u64::from_str_radix(&clean, radix).ok()?);
    let n = if neg { -magnitude } else { magnitude };
    i64::try_from(n).ok()
}

/// Go `time.ParseDuration`: `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, or `0`.
pub(super) fn is_go_duration(v: &str) -> bool {
    let s = v.strip_prefix(['-', '+']).unwrap_or(v);
    if s == "0" {
        return true;
    }
    if s.is_empty() {
        return false;
    }
    let mut rest = s;
    while !rest.is_empty() {
        let int_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int, after) = rest.split_at(int_end);
        let (frac, after) = match after.strip_prefix('.') {
            Some(a) => {
                let end = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
                a.split_at(end)
            }
            None => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return false;
        }
        let unit_end = after
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        if !matches!(unit, "ns" | "us" | "µs" | "μs" | "ms" | "s" | "m" | "h") {
            return false;
        }
        rest = next;
    }
    true
}

/// `scheme://host[:port][/path]` with one of the given schemes (`unix://` takes a path).
fn is_url(v: &str, schemes: &[&str]) -> bool {
    let Some((scheme, rest)) = v.split_once("://") else {
        return false;
    };
    if !schemes.contains(&scheme) || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    if scheme == "unix" {
        return rest.len() > 1 && rest.starts_with('/');
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, port)) => {
                if h.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                if !port.is_empty() && !is_port_suffix(port) {
                    return false;
                }
                h
            }
            None => return false,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, port)) => {
                if !is_port_suffix(&format!(":{port}")) {
                    return false;
                }
                h
            }
            None => authority,
        }
    };
    !host.is_empty()
        && !host.contains('@')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b))
}

fn is_port_suffix(s: &str) -> bool {
    s.strip_prefix(':')
        .is_some_and(|p| p.parse::<u16>().is_ok_and(|n| n > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(name: &str, t: FlagType, values: &[&str]) -> FlagInfo {
        FlagInfo {
            name: name.into(),
            type_: t,
            repeatable: false,
            values: values.iter().map(|v| v.to_string()).collect(),
            since: None,
            deprecated: None,
            removed: None,
            replacement: None,
            note: None,
            hidden: false,
        }
    }

    fn ok(t: FlagType, v: &str) -> bool {
        check_value(&flag("x", t, &[]), v).is_ok()
    }

    #[test]
    fn bools_follow_go_parse_bool() {
        for good in ["true", "false", "1", "0", "T", "False"] {
            assert!(ok(FlagType::Bool, good), "{good}");
        }
        for bad in ["", "yes", "on", "tRUE", " true"] {
            assert!(!ok(FlagType::Bool, bad), "{bad}");
        }
    }

    #[test]
    fn ints_follow_go_parse_int_base_zero() {
        assert_eq!(parse_go_int("10"), Some(10));
        assert_eq!(parse_go_int("-3"), Some(-3));
        assert_eq!(parse_go_int("0x1f"), Some(31));
        assert_eq!(parse_go_int("017"), Some(15));
        assert_eq!(parse_go_int("1_000"), Some(1000));
        assert_eq!(parse_go_int("0"), Some(0));
        for bad in [
            "",
            "-",
            "1.5",
            "08",
            "ten",
            "1__0",
            "_1",
            "99999999999999999999",
            " 1",
        ] {
            assert_eq!(parse_go_int(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations_follow_go_parse_duration() {
        for good in [
            "0", "1h30m", "500ms", "1.5h", "-2s", "30s", "10us", "3µs", ".5s", "1h0m0s",
        ] {
            assert!(is_go_duration(good), "{good}");
        }
        for bad in ["", "30", "1d", "s", "1h 30m", "1.5", "-", "1hour", "."] {
            assert!(!is_go_duration(bad), "{bad}");
        }
    }

    #[test]
    fn each_type_refuses_what_its_parser_refuses() {
        let cases: &[(FlagType, &str, &str)] = &[
            (FlagType::Float, "0.5", "half"),
            (FlagType::Ip, "::1", "10.0.0.256"),
            (FlagType::Cidr, "10.244.0.0/16", "10.244.0.1/16"),
            (
                FlagType::Cidrs,
                "10.96.0.0/12,fd00::/108",
                "10.96.0.0/12,10.97.0.0/16",
            ),
            (FlagType::Port, "6443", "70000"),
            (FlagType::PortRange, "30000-32767", "32767-30000"),
            (FlagType::Map, "a=b,c=d", "abc"),
            (
                FlagType::Path,
                "/etc/kubernetes/a.yaml",
                "etc/kubernetes/a.yaml",
            ),
            (
                FlagType::Url,
                "https://issuer.example.com/x",
                "issuer.example.com",
            ),
            (
                FlagType::Urls,
                "https://10.0.0.1:2379,https://[fd00::1]:2379",
                "https://10.0.0.1:2379,10.0.0.2:2379",
            ),
            (FlagType::Int, "5", "5s"),
            (FlagType::Duration, "5s", "5"),
            (FlagType::Bool, "true", "enabled"),
        ];
        for (t, good, bad) in cases {
            assert!(ok(*t, good), "{t} {good}");
            let e = check_value(&flag("the-flag", *t, &[]), bad).unwrap_err();
            assert!(
                e.message.contains("--the-flag") && e.message.contains(bad),
                "{t}: message names flag and value: {}",
                e.message
            );
            assert!(!e.fix.is_empty());
        }
        // Strings take anything; empty paths and URLs mean "unset".
        assert!(ok(FlagType::String, ""));
        assert!(ok(FlagType::Path, ""));
        assert!(!ok(FlagType::Urls, ""));
    }

    #[test]
    fn enums_and_listed_values() {
        let e = flag("logging-format", FlagType::Enum, &["text", "json"]);
        assert!(check_value(&e, "json").is_ok());
        let err = check_value(&e, "JSON").unwrap_err();
        assert!(err.fix.contains("text, json"), "{}", err.fix);
        let s = flag(
            "authorization-mode",
            FlagType::Strings,
            &["Node", "RBAC", "Webhook"],
        );
        assert!(check_value(&s, "Node,RBAC").is_ok());
        let err = check_value(&s, "Node,rbac,Foo").unwrap_err();
        assert!(err.message.contains("\"rbac\", \"Foo\""), "{}", err.message);
    }

    #[test]
    fn feature_gates_and_runtime_config() {
        let fg = flag("feature-gates", FlagType::Map, &[]);
        assert!(check_value(&fg, "A=true,kube:B=false").is_ok());
        for bad in ["A", "A=yes", "=true", "A B=true"] {
            let e = check_value(&fg, bad).unwrap_err();
            assert!(e.message.contains("--feature-gates"), "{}", e.message);
        }
        let rc = flag("runtime-config", FlagType::Map, &[]);
        assert!(check_value(&rc, "api/all=true,batch/v2alpha1=false,apps/v1").is_ok());
        assert!(check_value(&rc, "api/all=maybe").is_err());
    }

    #[test]
    fn urls() {
        assert!(is_url("https://a.example:6443/path", &["https"]));
        assert!(is_url("unix:///run/etcd.sock", &["unix"]));
        assert!(!is_url("https://", &["https"]));
        assert!(!is_url("https://a:0", &["https"]));
        assert!(!is_url("ftp://a", &["https"]));
        assert!(!is_url("https://user@a", &["https"]));
    }
}
