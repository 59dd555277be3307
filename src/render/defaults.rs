//! kubeadm's defaults, the parity target of the renderer.
//!
//! Facts from kubeadm v1.36.2, as written by `kubeadm init phase control-plane all` (the
//! manifests in `shared/reference/kubeadm-v1.36.2/`), and from its sources at that tag:
//! - flags: `cmd/kubeadm/app/phases/controlplane/manifests.go`
//!   (`getAPIServerCommand`, `getControllerManagerCommand`, `getSchedulerCommand`);
//! - volumes: `cmd/kubeadm/app/phases/controlplane/volumes.go`
//!   (`caCertsExtraVolumePaths`, `getEtcdCertVolumes`);
//! - probes, labels, priority: `cmd/kubeadm/app/util/staticpod/utils.go`;
//! - ports, paths, CPU requests: `cmd/kubeadm/app/constants/constants.go` and
//!   `cmd/kubeadm/app/apis/kubeadm/v1beta4/defaults.go`.

/// Default image repository (`DefaultImageRepository`).
pub const IMAGE_REPOSITORY: &str = "registry.k8s.io";
/// Default cluster name (`DefaultClusterName`).
pub const CLUSTER_NAME: &str = "kubernetes";
/// Default certificates directory (`DefaultCertificatesDir`).
pub const CERTIFICATES_DIR: &str = "/etc/kubernetes/pki";
/// Default Service CIDR (`DefaultServicesSubnet`).
pub const SERVICE_SUBNET: &str = "10.96.0.0/12";
/// Default DNS domain (`DefaultServiceDNSDomain`).
pub const DNS_DOMAIN: &str = "cluster.local";
/// Default kube-apiserver secure port (`KubeAPIServerPort`).
pub const API_SERVER_PORT: i32 = 6443;
/// kube-controller-manager secure port (`KubeControllerManagerPort`).
pub const CONTROLLER_MANAGER_PORT: i32 = 10257;
/// kube-scheduler secure port (`KubeSchedulerPort`).
pub const SCHEDULER_PORT: i32 = 10259;
/// Local etcd client URL used when no external etcd is configured.
pub const LOCAL_ETCD_SERVER: &str = "https://127.0.0.1:2379";
/// kube-controller-manager kubeconfig (`KubernetesDir` + `ControllerManagerKubeConfigFileName`).
pub const CONTROLLER_MANAGER_KUBECONFIG: &str = "/etc/kubernetes/controller-manager.conf";
/// kube-scheduler kubeconfig (`KubernetesDir` + `SchedulerKubeConfigFileName`).
pub const SCHEDULER_KUBECONFIG: &str = "/etc/kubernetes/scheduler.conf";
/// Host CA bundle directory always mounted (`caCertsVolumePath`).
pub const CA_CERTS_DIR: &str = "/etc/ssl/certs";
/// Host CA directories mounted when they exist on the node (`caCertsExtraVolumePaths`).
pub const OPTIONAL_CA_DIRS: [&str; 5] = [
    "/etc/pki/ca-trust",
    "/etc/pki/tls/certs",
    "/etc/ca-certificates",
    "/usr/share/ca-certificates",
    "/usr/local/share/ca-certificates",
];
/// `priorityClassName` of every control-plane Pod.
pub const PRIORITY_CLASS: &str = "system-node-critical";
/// The priority value kubeadm writes beside it (`system-node-critical` is 2000001000).
pub const PRIORITY: i32 = 2_000_001_000;
/// Name of the container port the probes use.
pub const PROBE_PORT_NAME: &str = "probe-port";
/// Default state directory of the agent, where side files live.
pub const STATE_DIR: &str = "/etc/kubernetes/kubeplane";
/// Default audit log path.
pub const AUDIT_LOG_PATH: &str = "/var/log/kubernetes/audit/audit.log";
/// Default key of the encryption configuration in its Secret.
pub const ENCRYPTION_SECRET_KEY: &str = "config.yaml";
/// Default namespace of the encryption configuration Secret.
pub const ENCRYPTION_SECRET_NAMESPACE: &str = "kube-system";
/// Default seconds a component must stay healthy.
pub const MIN_READY_SECONDS: i32 = 10;
/// Default health timeout of a component, seconds.
pub const HEALTH_TIMEOUT_SECONDS: i32 = 300;
/// Seconds a node may stay in flight before the rollout is reported stuck
/// (`ProgressDeadlineExceeded`).
pub const PROGRESS_DEADLINE_SECONDS: i32 = 900;

/// CPU requests (`staticpodutil.ComponentResources("250m")` and friends).
pub const fn cpu_request(component: crate::api::Component) -> &'static str {
    match component {
        crate::api::Component::ApiServer => "250m",
        crate::api::Component::ControllerManager => "200m",
        crate::api::Component::Scheduler => "100m",
    }
}

/// Timing of one probe as kubeadm writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// `initialDelaySeconds` (`None` when kubeadm leaves it unset).
    pub initial_delay: Option<i32>,
    /// `periodSeconds`.
    pub period: i32,
    /// `timeoutSeconds`.
    pub timeout: i32,
    /// `failureThreshold`.
    pub failure_threshold: i32,
}

/// Liveness probe: `initialDelaySeconds: 10`, `periodSeconds: 10`, `timeoutSeconds: 15`,
/// `failureThreshold: 8`.
pub const LIVENESS: Timing = Timing {
    initial_delay: Some(10),
    period: 10,
    timeout: 15,
    failure_threshold: 8,
};
/// Readiness probe: `periodSeconds: 1`, `timeoutSeconds: 15`, `failureThreshold: 3`.
pub const READINESS: Timing = Timing {
    initial_delay: None,
    period: 1,
    timeout: 15,
    failure_threshold: 3,
};
/// Startup probe: as liveness, with `failureThreshold: 24` (the 4-minute control-plane
/// health-check timeout divided by the 10-second period).
pub const STARTUP: Timing = Timing {
    initial_delay: Some(10),
    period: 10,
    timeout: 15,
    failure_threshold: 24,
};

/// Startup probe of `spec.rollout.probeProfile: fast`: kubeadm's failure budget
/// ([`STARTUP`]: 10 s delay + 24 × 10 s = 250 s) checked every second from the start, so a
/// component that serves counts as started within about a second instead of up to 10 s
/// later. Same timeout.
pub const STARTUP_FAST: Timing = Timing {
    initial_delay: None,
    period: 1,
    timeout: 15,
    failure_threshold: 250,
};

impl Timing {
    /// Seconds of failed probes before kubelet gives up: initial delay + period × threshold.
    pub fn budget(self) -> i32 {
        self.initial_delay.unwrap_or(0) + self.period * self.failure_threshold
    }
}

/// The startup probe timing of a profile.
pub fn startup(profile: crate::api::ProbeProfile) -> Timing {
    match profile {
        crate::api::ProbeProfile::Kubeadm => STARTUP,
        crate::api::ProbeProfile::Fast => STARTUP_FAST,
    }
}
