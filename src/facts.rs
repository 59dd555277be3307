//! Node facts the renderer needs, as seen from the host: by the agent (it runs with
//! hostNetwork and has no RBAC on Node objects), `kubeplane apply` and `kubeplane import`.
//!
//! - `addresses`: the host's interface addresses, loopback and IPv6 link-local excluded
//!   (`getifaddrs`), IPv4 first;
//! - `advertiseAddress`: `NODE_IP` (the chart sets it from the downward API
//!   `status.hostIP`), else the `--advertise-address` of a kube-apiserver manifest already on
//!   disk, else the first address;
//! - `hostCaDirectories`: which of [`OPTIONAL_CA_DIRS`](crate::render::defaults::OPTIONAL_CA_DIRS)
//!   exist;
//! - `manifestDir`, `stateDir`.

use std::net::IpAddr;
use std::path::Path;

use k8s_openapi::api::core::v1::Pod;

use crate::agent::files;
use crate::api::NodeFacts;
use crate::render::defaults::OPTIONAL_CA_DIRS;

/// Environment variable carrying the node's IP (downward API `status.hostIP`).
pub const NODE_IP_ENV: &str = "NODE_IP";

/// The host's non-loopback, non-link-local interface addresses, IPv4 first, each once.
pub fn interface_addresses() -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs; every
    // pointer is checked for null before use and only read while the list is alive.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut cur = head;
        while !cur.is_null() {
            let ifa = &*cur;
            let addr = ifa.ifa_addr;
            if !addr.is_null() && (ifa.ifa_flags & libc::IFF_LOOPBACK as u32) == 0 {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(addr as *const libc::sockaddr_in);
                        let ip = IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes());
                        out.push(ip);
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(addr as *const libc::sockaddr_in6);
                        out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(head);
    }
    usable(out)
}

/// Drops loopback, unspecified and IPv6 link-local addresses and duplicates; IPv4 first.
fn usable(addrs: Vec<IpAddr>) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for a in addrs {
        let link_local_v6 = matches!(a, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
        if a.is_loopback() || a.is_unspecified() || link_local_v6 || out.contains(&a) {
            continue;
        }
        out.push(a);
    }
    out.sort_by_key(|a| a.is_ipv6());
    out
}

/// The `--advertise-address` of the kube-apiserver manifest in `manifest_dir`, if any.
pub fn advertise_from_manifest(manifest_dir: &Path) -> Option<String> {
    let bytes = crate::fsio::read_nofollow(&manifest_dir.join("kube-apiserver.yaml")).ok()??;
    let pod: Pod = files::parse_pod(&bytes).ok()?;
    let container = pod.spec?.containers.into_iter().next()?;
    container
        .command
        .unwrap_or_default()
        .into_iter()
        .chain(container.args.unwrap_or_default())
        .filter_map(|w| w.strip_prefix("--advertise-address=").map(str::to_string))
        .next_back()
}

/// Which optional host CA directories exist, looked up under `root` (`/` on a node).
pub fn host_ca_directories(root: &Path) -> Vec<String> {
    OPTIONAL_CA_DIRS
        .iter()
        .filter(|d| root.join(d.trim_start_matches('/')).is_dir())
        .map(|d| d.to_string())
        .collect()
}

/// Everything the agent reports about its node. `node_ip` is the `NODE_IP` value, if set.
pub fn collect(
    node_name: &str,
    manifest_dir: &Path,
    state_dir: &Path,
    node_ip: Option<&str>,
    root: &Path,
) -> NodeFacts {
    let addresses: Vec<String> = interface_addresses()
        .into_iter()
        .map(|a| a.to_string())
        .collect();
    let advertise = node_ip
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or_else(|| advertise_from_manifest(manifest_dir))
        .or_else(|| addresses.first().cloned());
    NodeFacts {
        node_name: node_name.to_string(),
        advertise_address: advertise,
        addresses,
        host_ca_directories: host_ca_directories(root),
        manifest_dir: Some(manifest_dir.display().to_string()),
        state_dir: Some(state_dir.display().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_addresses_exclude_loopback() {
        let a = interface_addresses();
        assert!(a.iter().all(|ip| !ip.is_loopback()), "{a:?}");
    }

    #[test]
    fn usable_filters_and_orders() {
        let v: Vec<IpAddr> = [
            "::1",
            "fe80::1",
            "2001:db8::1",
            "10.0.0.11",
            "127.0.0.1",
            "10.0.0.11",
            "0.0.0.0",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let out: Vec<String> = usable(v).iter().map(|a| a.to_string()).collect();
        assert_eq!(out, vec!["10.0.0.11", "2001:db8::1"]);
    }

    #[test]
    fn advertise_address_prefers_node_ip_then_manifest_then_first_address() {
        let t = tempfile::tempdir().unwrap();
        let m = t.path().join("manifests");
        std::fs::create_dir(&m).unwrap();
        let root = t.path().join("root");
        for d in ["etc/ca-certificates", "usr/share/ca-certificates"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let f = collect("cp-1", &m, t.path(), Some("10.9.9.9"), &root);
        assert_eq!(f.advertise_address.as_deref(), Some("10.9.9.9"));
        assert_eq!(
            f.host_ca_directories,
            vec!["/etc/ca-certificates", "/usr/share/ca-certificates"]
        );
        assert_eq!(f.manifest_dir.as_deref(), Some(m.to_str().unwrap()));

        std::fs::copy(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/kubeadm-v1.36.2/kube-apiserver.yaml"
            ),
            m.join("kube-apiserver.yaml"),
        )
        .unwrap();
        let f = collect("cp-1", &m, t.path(), None, &root);
        assert_eq!(f.advertise_address.as_deref(), Some("10.0.0.11"));

        std::fs::remove_file(m.join("kube-apiserver.yaml")).unwrap();
        let f = collect("cp-1", &m, t.path(), Some(""), &root);
        assert_eq!(f.advertise_address, f.addresses.first().cloned());
    }
}
