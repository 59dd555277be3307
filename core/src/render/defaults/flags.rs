//! kubeadm's default flags, as data: what `getAPIServerCommand`, `getControllerManagerCommand`
//! and `getSchedulerCommand` (kubeadm v1.36.2, `cmd/kubeadm/app/phases/controlplane/
//! manifests.go`) write before any `extraArgs`. The renderer builds each component's flags from
//! these tables, `import` explains with their notes why a flag appears that a unit lacked, and
//! `docs/flags.md` shows them (a test keeps that table equal to [`markdown_table`]).

use crate::api::Component;

/// Where a default flag's value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultValue {
    /// Always this text.
    Literal(&'static str),
    /// A file in the certificates directory (`spec.certificatesDir`, default
    /// [`super::CERTIFICATES_DIR`]).
    Cert(&'static str),
    /// The component's kubeconfig (`spec.controllerManager.kubeconfig` /
    /// `spec.scheduler.kubeconfig`, default [`super::CONTROLLER_MANAGER_KUBECONFIG`] /
    /// [`super::SCHEDULER_KUBECONFIG`]).
    Kubeconfig,
    /// The node's advertise address (`spec.nodes[].advertiseAddress`, else the node's facts).
    AdvertiseAddress,
    /// `spec.apiServer.securePort` (default [`super::API_SERVER_PORT`]).
    SecurePort,
    /// `https://kubernetes.default.svc.<spec.networking.dnsDomain>` (default
    /// [`super::DNS_DOMAIN`]).
    ServiceAccountIssuer,
    /// `spec.networking.serviceSubnet` (default [`super::SERVICE_SUBNET`]).
    ServiceSubnet,
    /// `spec.networking.podSubnet`.
    PodSubnet,
    /// `spec.clusterName` (default [`super::CLUSTER_NAME`]).
    ClusterName,
}

impl DefaultValue {
    /// The value as the docs show it.
    pub fn describe(self) -> String {
        match self {
            DefaultValue::Literal(v) => format!("`{v}`"),
            DefaultValue::Cert(f) => format!("`<certificatesDir>/{f}`"),
            DefaultValue::Kubeconfig => "`<kubeconfig>`".into(),
            DefaultValue::AdvertiseAddress => "the node's advertise address".into(),
            DefaultValue::SecurePort => format!("`securePort` ({})", super::API_SERVER_PORT),
            DefaultValue::ServiceAccountIssuer => {
                "`https://kubernetes.default.svc.<dnsDomain>`".into()
            }
            DefaultValue::ServiceSubnet => {
                format!("`serviceSubnet` ({})", super::SERVICE_SUBNET)
            }
            DefaultValue::PodSubnet => "`podSubnet`".into(),
            DefaultValue::ClusterName => format!("`clusterName` ({})", super::CLUSTER_NAME),
        }
    }
}

/// When a default flag is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// Always.
    Always,
    /// Without `spec.etcd.external` (kubeadm's local etcd member).
    LocalEtcd,
    /// With `spec.networking.podSubnet` (the controller manager allocates node CIDRs).
    PodSubnet,
}

/// One flag kubeadm writes by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultFlag {
    /// The flag name, without dashes.
    pub name: &'static str,
    /// Its value.
    pub value: DefaultValue,
    /// When it is written.
    pub when: When,
    /// Why kubeplane writes it, for a unit that lacked it (`kubeplane import --from-units`);
    /// `None`: the generic "one of kubeadm's default flags".
    pub note: Option<&'static str>,
}

const fn flag(name: &'static str, value: DefaultValue) -> DefaultFlag {
    DefaultFlag {
        name,
        value,
        when: When::Always,
        note: None,
    }
}

const fn noted(mut f: DefaultFlag, note: &'static str) -> DefaultFlag {
    f.note = Some(note);
    f
}

const fn when(mut f: DefaultFlag, when: When) -> DefaultFlag {
    f.when = when;
    f
}

use DefaultValue::{
    AdvertiseAddress, Cert, ClusterName, Kubeconfig, Literal, PodSubnet, SecurePort,
    ServiceAccountIssuer, ServiceSubnet,
};

const KUBECONFIG_NOTE: &str = "kubeplane always writes it, the same file as --kubeconfig: the component checks who calls its /metrics and other endpoints with the API server";
const LEADER_ELECT_NOTE: &str = "kubeplane always writes it (several control-plane nodes)";
const BIND_ADDRESS_NOTE: &str =
    "kubeadm's default: the secure port listens on 127.0.0.1 only (kubelet's probes use it)";

/// kube-apiserver (`getAPIServerCommand`), in the order the renderer writes them.
pub const API_SERVER_FLAGS: &[DefaultFlag] = &[
    flag("advertise-address", AdvertiseAddress),
    flag("allow-privileged", Literal("true")),
    flag("authorization-mode", Literal("Node,RBAC")),
    flag("client-ca-file", Cert("ca.crt")),
    flag("enable-admission-plugins", Literal("NodeRestriction")),
    flag("enable-bootstrap-token-auth", Literal("true")),
    flag(
        "kubelet-client-certificate",
        Cert("apiserver-kubelet-client.crt"),
    ),
    flag("kubelet-client-key", Cert("apiserver-kubelet-client.key")),
    noted(
        flag(
            "kubelet-preferred-address-types",
            Literal("InternalIP,ExternalIP,Hostname"),
        ),
        "kubeadm's default, which kubeplane always writes: kube-apiserver reaches kubelets (logs, exec, port-forward) by InternalIP first, where its own default tries the Hostname first",
    ),
    flag("proxy-client-cert-file", Cert("front-proxy-client.crt")),
    flag("proxy-client-key-file", Cert("front-proxy-client.key")),
    flag("requestheader-allowed-names", Literal("front-proxy-client")),
    flag("requestheader-client-ca-file", Cert("front-proxy-ca.crt")),
    flag(
        "requestheader-extra-headers-prefix",
        Literal("X-Remote-Extra-"),
    ),
    flag("requestheader-group-headers", Literal("X-Remote-Group")),
    flag("requestheader-username-headers", Literal("X-Remote-User")),
    flag("secure-port", SecurePort),
    noted(
        flag("service-account-issuer", ServiceAccountIssuer),
        "required since v1.20; kubeplane's default issuer (tokens issued before keep working)",
    ),
    flag("service-account-key-file", Cert("sa.pub")),
    flag("service-account-signing-key-file", Cert("sa.key")),
    flag("service-cluster-ip-range", ServiceSubnet),
    flag("tls-cert-file", Cert("apiserver.crt")),
    flag("tls-private-key-file", Cert("apiserver.key")),
    when(
        flag("etcd-servers", Literal(super::LOCAL_ETCD_SERVER)),
        When::LocalEtcd,
    ),
    when(flag("etcd-cafile", Cert("etcd/ca.crt")), When::LocalEtcd),
    when(
        flag("etcd-certfile", Cert("apiserver-etcd-client.crt")),
        When::LocalEtcd,
    ),
    when(
        flag("etcd-keyfile", Cert("apiserver-etcd-client.key")),
        When::LocalEtcd,
    ),
];

/// kube-controller-manager (`getControllerManagerCommand`), in the order the renderer writes
/// them.
pub const CONTROLLER_MANAGER_FLAGS: &[DefaultFlag] = &[
    noted(
        flag("authentication-kubeconfig", Kubeconfig),
        KUBECONFIG_NOTE,
    ),
    noted(
        flag("authorization-kubeconfig", Kubeconfig),
        KUBECONFIG_NOTE,
    ),
    noted(
        flag("bind-address", Literal("127.0.0.1")),
        BIND_ADDRESS_NOTE,
    ),
    flag("client-ca-file", Cert("ca.crt")),
    flag("cluster-name", ClusterName),
    flag("cluster-signing-cert-file", Cert("ca.crt")),
    flag("cluster-signing-key-file", Cert("ca.key")),
    flag("controllers", Literal("*,bootstrapsigner,tokencleaner")),
    flag("kubeconfig", Kubeconfig),
    noted(flag("leader-elect", Literal("true")), LEADER_ELECT_NOTE),
    flag("requestheader-client-ca-file", Cert("front-proxy-ca.crt")),
    flag("root-ca-file", Cert("ca.crt")),
    flag("service-account-private-key-file", Cert("sa.key")),
    flag("use-service-account-credentials", Literal("true")),
    when(
        flag("allocate-node-cidrs", Literal("true")),
        When::PodSubnet,
    ),
    when(flag("cluster-cidr", PodSubnet), When::PodSubnet),
    when(
        flag("service-cluster-ip-range", ServiceSubnet),
        When::PodSubnet,
    ),
];

/// kube-scheduler (`getSchedulerCommand`), in the order the renderer writes them.
pub const SCHEDULER_FLAGS: &[DefaultFlag] = &[
    noted(
        flag("authentication-kubeconfig", Kubeconfig),
        KUBECONFIG_NOTE,
    ),
    noted(
        flag("authorization-kubeconfig", Kubeconfig),
        KUBECONFIG_NOTE,
    ),
    noted(
        flag("bind-address", Literal("127.0.0.1")),
        BIND_ADDRESS_NOTE,
    ),
    flag("kubeconfig", Kubeconfig),
    noted(flag("leader-elect", Literal("true")), LEADER_ELECT_NOTE),
];

/// The default flags of a component.
pub const fn default_flags(component: Component) -> &'static [DefaultFlag] {
    match component {
        Component::ApiServer => API_SERVER_FLAGS,
        Component::ControllerManager => CONTROLLER_MANAGER_FLAGS,
        Component::Scheduler => SCHEDULER_FLAGS,
    }
}

/// The default flag `name` of a component, when kubeadm writes one.
pub fn default_flag(component: Component, name: &str) -> Option<&'static DefaultFlag> {
    default_flags(component).iter().find(|f| f.name == name)
}

/// The tables as Markdown, as `docs/flags.md` shows them between its
/// `<!-- kubeadm-default-flags -->` markers.
pub fn markdown_table() -> String {
    let mut out = String::from("| component | flag | value | written |\n|---|---|---|---|\n");
    for component in Component::ALL {
        for f in default_flags(component) {
            let written = match f.when {
                When::Always => "always",
                When::LocalEtcd => "without `etcd.external`",
                When::PodSubnet => "with `networking.podSubnet`",
            };
            out.push_str(&format!(
                "| {} | `--{}` | {} | {written} |\n",
                component.name(),
                f.name,
                f.value.describe()
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_names_are_unique_per_component_and_known_to_the_flag_table() {
        let v = crate::flags::KubeVersion::parse("v1.36.2").unwrap();
        for component in Component::ALL {
            let flags = default_flags(component);
            for (i, f) in flags.iter().enumerate() {
                assert!(
                    flags[..i].iter().all(|g| g.name != f.name),
                    "{component}: --{} twice",
                    f.name
                );
                assert!(
                    crate::flags::known(component, &v)
                        .iter()
                        .any(|k| k.name == f.name),
                    "{component}: --{} unknown to the flag table",
                    f.name
                );
            }
        }
    }

    #[test]
    fn lookup_finds_a_default_and_misses_a_non_default() {
        let f = default_flag(Component::Scheduler, "leader-elect").unwrap();
        assert_eq!(f.value, Literal("true"));
        assert_eq!(f.note, Some(LEADER_ELECT_NOTE));
        assert!(default_flag(Component::Scheduler, "client-ca-file").is_none());
        assert!(default_flag(Component::ApiServer, "client-ca-file").is_some());
    }

    #[test]
    fn markdown_names_every_flag_once_per_component() {
        let md = markdown_table();
        let rows = md.lines().count() - 2;
        assert_eq!(
            rows,
            API_SERVER_FLAGS.len() + CONTROLLER_MANAGER_FLAGS.len() + SCHEDULER_FLAGS.len()
        );
        assert!(md.contains("| kube-scheduler | `--leader-elect` | `true` | always |"));
        assert!(md.contains(
            "| kube-apiserver | `--etcd-cafile` | `<certificatesDir>/etcd/ca.crt` | without `etcd.external` |"
        ));
    }
}

#[cfg(test)]
mod docs {
    /// docs/flags.md, compiled in: the test reruns when it changes.
    const FLAGS_MD: &str = include_str!("../../../../docs/flags.md");
    const BEGIN: &str = "<!-- kubeadm-default-flags:begin -->\n";
    const END: &str = "<!-- kubeadm-default-flags:end -->";

    /// The text between the markers.
    fn section(doc: &str) -> Option<&str> {
        let start = doc.find(BEGIN)? + BEGIN.len();
        let len = doc[start..].find(END)?;
        Some(&doc[start..start + len])
    }

    #[test]
    fn docs_table_matches_the_data() {
        let table = super::markdown_table();
        let got = section(FLAGS_MD).expect("docs/flags.md has the kubeadm-default-flags markers");
        assert!(
            got == table,
            "docs/flags.md: the table of kubeadm's default flags differs from render::defaults; \
             replace the lines between the markers with:\n{table}"
        );
    }

    #[test]
    fn a_changed_row_or_missing_markers_are_seen() {
        let table = super::markdown_table();
        let doc = format!("x\n{BEGIN}{table}{END}\n");
        assert_eq!(section(&doc), Some(table.as_str()));
        let edited = doc.replace("`Node,RBAC`", "`RBAC`");
        assert_ne!(section(&edited), Some(table.as_str()));
        assert_eq!(section("no markers"), None);
    }
}
