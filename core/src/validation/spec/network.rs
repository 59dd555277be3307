//! Networks and endpoints of a spec: the Service and Pod ranges, the DNS domain, the NodePort
//! range, and the URLs and files of an external etcd.

use ipnet::IpNet;

use super::{check_abs_path, is_dns_subdomain, parse_url_host_port};
use crate::api::{ControlPlaneConfigSpec, ExternalEtcd};
use crate::validation::{Problem, Report};

pub(super) fn check_networking(spec: &ControlPlaneConfigSpec, r: &mut Report) {
    let Some(net) = &spec.networking else { return };
    // Overlap of the Pod and Service ranges is a cross-component check (cross.rs), made on
    // the values the components really get.
    if let Some(s) = &net.service_subnet {
        parse_cidrs("spec.networking.serviceSubnet", s, r);
    }
    if let Some(s) = &net.pod_subnet {
        parse_cidrs("spec.networking.podSubnet", s, r);
    }
    if let Some(d) = &net.dns_domain
        && !is_dns_subdomain(d)
    {
        r.push(
            Problem::error("spec.networking.dnsDomain", "not a DNS domain")
                .value(d)
                .fix("use a lower-case DNS name like cluster.local"),
        );
    }
    if let Some(range) = &net.service_node_port_range
        && parse_port_range(range).is_none()
    {
        r.push(
            Problem::error(
                "spec.networking.serviceNodePortRange",
                "not a port range FIRST-LAST with 1 <= FIRST <= LAST <= 65535",
            )
            .value(range)
            .fix("write it like 30000-32767"),
        );
    }
}

/// Parses one CIDR or a dual-stack pair; pushes an error and returns `None` when invalid.
pub(super) fn parse_cidrs(field: &str, value: &str, r: &mut Report) -> Option<Vec<IpNet>> {
    match parse_cidr_list(value) {
        Ok(nets) => Some(nets),
        Err((message, fix)) => {
            r.push(Problem::error(field, message).value(value).fix(fix));
            None
        }
    }
}

/// One CIDR, or one IPv4 and one IPv6 CIDR for dual-stack, comma-separated, without host
/// bits. The error is what is wrong and how to fix it.
pub fn parse_cidr_list(value: &str) -> Result<Vec<IpNet>, (String, String)> {
    let mut nets = Vec::new();
    for p in value.split(',').map(str::trim) {
        match p.parse::<IpNet>() {
            Ok(n) if n.network() == n.addr() => nets.push(n),
            Ok(n) => {
                return Err((
                    format!("{p} has host bits set"),
                    format!("use the network address: {}", n.trunc()),
                ));
            }
            Err(_) => {
                return Err((
                    format!("{p:?} is not a CIDR"),
                    "write an address and prefix length, like 10.96.0.0/12".to_string(),
                ));
            }
        }
    }
    let dual_ok = nets.len() == 1
        || (nets.len() == 2
            && matches!(
                (&nets[0], &nets[1]),
                (IpNet::V4(_), IpNet::V6(_)) | (IpNet::V6(_), IpNet::V4(_))
            ));
    if !dual_ok {
        return Err((
            "give one CIDR, or one IPv4 and one IPv6 CIDR for dual-stack".to_string(),
            "write it like 10.96.0.0/12 or 10.96.0.0/12,fd00:10:96::/112".to_string(),
        ));
    }
    Ok(nets)
}

/// `FIRST-LAST` with 1 <= FIRST <= LAST <= 65535.
pub fn parse_port_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-')?;
    let (a, b): (u16, u16) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a >= 1 && a <= b).then_some((a, b))
}

/// A port range as kube-apiserver's `--service-node-port-range` parses it: `FIRST-LAST`,
/// `FIRST+SIZE` (FIRST to FIRST+SIZE) or a single port, within 1..=65535.
pub fn parse_port_range_flag(s: &str) -> Option<(u16, u16)> {
    let s = s.trim();
    if let Some((a, n)) = s.split_once('+') {
        let a: u16 = a.trim().parse().ok()?;
        let n: u16 = n.trim().parse().ok()?;
        let b = a.checked_add(n)?;
        return (a >= 1).then_some((a, b));
    }
    if s.contains('-') {
        return parse_port_range(s);
    }
    let p: u16 = s.parse().ok()?;
    (p >= 1).then_some((p, p))
}

pub(super) fn check_external_etcd(ext: &ExternalEtcd, r: &mut Report) {
    let f = "spec.etcd.external";
    if ext.endpoints.is_empty() {
        r.push(
            Problem::error(format!("{f}.endpoints"), "no endpoints")
                .fix("list the client URLs of the etcd members, like https://10.0.0.21:2379"),
        );
    }
    let mut any_https = false;
    for (i, e) in ext.endpoints.iter().enumerate() {
        let field = format!("{f}.endpoints[{i}]");
        match parse_url_host_port(e) {
            Some((scheme, _, _)) => any_https |= scheme == "https",
            None => r.push(
                Problem::error(field, "not an etcd client URL")
                    .value(&**e)
                    .fix("write scheme, host and port, like https://10.0.0.21:2379"),
            ),
        }
    }
    for (name, v) in [
        ("caFile", &ext.ca_file),
        ("certFile", &ext.cert_file),
        ("keyFile", &ext.key_file),
    ] {
        if let Some(p) = v {
            check_abs_path(&format!("{f}.{name}"), p, r);
        }
    }
    if ext.cert_file.is_some() != ext.key_file.is_some() {
        r.push(
            Problem::error(f, "certFile and keyFile go together")
                .fix("set both the client certificate and its key, or neither"),
        );
    }
    if any_https && ext.ca_file.is_none() {
        r.push(
            Problem::warning(format!("{f}.caFile"), "https endpoints without a CA file: kube-apiserver verifies etcd against the system trust store")
                .fix("set caFile to the CA that signed the etcd serving certificates"),
        );
    }
}
