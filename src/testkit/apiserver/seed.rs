//! A seeded cluster for the operator benchmark and process tests: a config, control-plane and
//! worker Nodes with their ControlPlaneNodes, component Leases; its readiness; a kubeconfig.

use std::net::SocketAddr;

use serde_json::json;

use super::Fake;

/// Seeds a cluster: config `prod` (kubeadm defaults, v1.36.2), `nodes` control-plane Nodes
/// `cp-N` with their ControlPlaneNodes (facts reported, no revision yet) and 3 workers, and
/// the component Leases held by cp-1 and cp-2.
pub fn seed(fake: &Fake, nodes: usize) {
    fake.put(
        "controlplaneconfigs",
        "",
        json!({"metadata": {"name": "prod"},
               "spec": {"kubernetesVersion": "v1.36.2", "rollout": {"minReadySeconds": 0}}}),
    );
    for i in 1..=nodes + 3 {
        let control_plane = i <= nodes;
        let name = if control_plane {
            format!("cp-{i}")
        } else {
            format!("worker-{i}")
        };
        let mut labels = json!({
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": "amd64",
        });
        if control_plane {
            labels["node-role.kubernetes.io/control-plane"] = json!("");
            labels["node.kubernetes.io/exclude-from-external-load-balancers"] = json!("");
        }
        fake.put(
            "nodes",
            "",
            json!({"metadata": {"name": name, "labels": labels,
                                "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                                "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
                   "spec": {"podCIDR": format!("10.244.{i}.0/24")},
                   "status": {"addresses": [{"type": "InternalIP", "address": format!("10.0.0.{}", 10 + i)},
                                            {"type": "Hostname", "address": name}]}}),
        );
        if control_plane {
            fake.put(
                "controlplanenodes",
                "",
                json!({"metadata": {"name": name, "labels": {"kubeplane.io/config": "prod"}},
                       "spec": {"configName": "prod", "revision": "", "manifests": []},
                       "status": {"phase": "Pending",
                                  "nodeFacts": {"nodeName": name,
                                                "advertiseAddress": format!("10.0.0.{}", 10 + i),
                                                "addresses": [format!("InternalIP=10.0.0.{}", 10 + i)],
                                                "hostCaDirectories": ["/etc/ca-certificates", "/usr/local/share/ca-certificates", "/usr/share/ca-certificates"],
                                                "manifestDir": "/etc/kubernetes/manifests",
                                                "stateDir": "/etc/kubernetes/kubeplane"}}}),
            );
        }
    }
    for (lease, holder) in [
        ("kube-controller-manager", "cp-1_3b9c0f0e"),
        ("kube-scheduler", "cp-2_7d2e1a4b"),
    ] {
        fake.put(
            "leases",
            crate::render::defaults::NAMESPACE,
            json!({"metadata": {"name": lease},
                   "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "leaseTransitions": 3,
                            "acquireTime": "2026-01-01T00:00:00.000000Z", "renewTime": "2026-01-01T00:00:00.000000Z"}}),
        );
    }
}

/// Whether config `prod` reports `Ready=True` at its current generation.
pub fn complete(fake: &Fake) -> bool {
    let Some(cpc) = fake.get("controlplaneconfigs", "", "prod") else {
        return false;
    };
    let current = cpc["status"]["observedGeneration"] == cpc["metadata"]["generation"];
    let ready = cpc["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    });
    current && ready
}

/// Writes a kubeconfig for the server at `addr` into `dir`.
pub fn kubeconfig(dir: &std::path::Path, addr: SocketAddr) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\nusers:\n- name: test\n  user:\n    token: test\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: test\ncurrent-context: fake\n"
        ),
    )
    .expect("kubeconfig");
    path
}
