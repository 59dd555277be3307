//! kube-apiserver: kubeadm's default flags ([`defaults::API_SERVER_FLAGS`]), etcd, audit and
//! encryption, and the probe on the advertise address.

use std::collections::BTreeMap;

use super::args::{Flag, combine, last_value};
use super::pod::{self, Mount, ProbeTarget, merge_mounts};
use super::{
    Context, Plan, RenderError, Rendered, advertise_address, defaults, encryption_secret,
    files_dir, host_port, parent_dir, probe_host, sha256_hex, to_yaml,
};
use crate::api::{Component, FileSource, HostPathType, RenderedFile};

impl Context<'_> {
    pub(super) fn api_server(&self, out: &mut Rendered) -> Result<Plan, RenderError> {
        let advertise = advertise_address(self.spec, self.input.node).ok_or_else(|| {
            RenderError::NoAdvertiseAddress {
                node: self.input.node.node_name.clone(),
            }
        })?;
        let port = self.secure_port();
        let mut flags = self.default_flags(Component::ApiServer, Some(&advertise));
        let mut mounts = self.ca_mounts();
        self.external_etcd(&mut flags, &mut mounts);
        if let Some(range) = self
            .spec
            .networking
            .as_ref()
            .and_then(|n| n.service_node_port_range.clone())
        {
            flags.push(("service-node-port-range".into(), range));
        }

        let mut annotations = BTreeMap::from([(
            "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint".to_string(),
            host_port(&advertise, port),
        )]);
        let files_dir = files_dir(&self.state_dir, Component::ApiServer);
        let mut uses_files_dir =
            self.audit(&files_dir, out, &mut flags, &mut mounts, &mut annotations)?;
        uses_files_dir |= self.encryption(&files_dir, out, &mut flags, &mut annotations);
        if uses_files_dir {
            mounts.push(Mount::same_path(
                "kubeplane-files",
                &files_dir,
                true,
                HostPathType::DirectoryOrCreate,
            ));
        }

        let settings = self.settings(Component::ApiServer);
        let flags = combine(Component::ApiServer, flags, settings.extra_args);
        let host = last_value(&flags, "advertise-address")
            .map(probe_host)
            .unwrap_or_else(|| Some(advertise.clone()));
        let port = last_value(&flags, "secure-port")
            .and_then(|p| p.parse().ok())
            .unwrap_or(port);
        Ok(Plan {
            mounts: merge_mounts(mounts, self.extra_mounts(Component::ApiServer)),
            flags,
            annotations,
            probe: ProbeTarget {
                host,
                port,
                live_path: "/livez",
                ready_path: Some("/readyz"),
            },
        })
    }

    /// `spec.etcd.external`: its endpoints and TLS files, and mounts for the files' directories
    /// (kubeadm's local member's flags come from the defaults table).
    fn external_etcd(&self, flags: &mut Vec<Flag>, mounts: &mut Vec<Mount>) {
        let Some(ext) = self.spec.etcd.as_ref().and_then(|e| e.external.as_ref()) else {
            return;
        };
        let servers: Vec<&str> = ext.endpoints.iter().map(|e| &**e).collect();
        flags.push(("etcd-servers".into(), servers.join(",")));
        let files = [
            ("etcd-cafile", &ext.ca_file),
            ("etcd-certfile", &ext.cert_file),
            ("etcd-keyfile", &ext.key_file),
        ];
        for (flag, file) in files {
            if let Some(f) = file {
                flags.push((flag.to_string(), f.clone()));
            }
        }
        let extra = self.etcd_cert_mounts(files.iter().filter_map(|(_, f)| f.as_deref()), mounts);
        mounts.extend(extra);
    }

    /// `spec.apiServer.audit`: the policy as a side file, the log directory mounted. Whether
    /// the files directory is used.
    fn audit(
        &self,
        files_dir: &str,
        out: &mut Rendered,
        flags: &mut Vec<Flag>,
        mounts: &mut Vec<Mount>,
        annotations: &mut BTreeMap<String, String>,
    ) -> Result<bool, RenderError> {
        let Some(audit) = self.spec.api_server.as_ref().and_then(|a| a.audit.as_ref()) else {
            return Ok(false);
        };
        let path = format!("{files_dir}/audit-policy.yaml");
        let content = to_yaml(&audit.policy).map_err(|reason| RenderError::Yaml {
            field: "spec.apiServer.audit.policy".into(),
            reason,
        })?;
        let digest = sha256_hex(content.as_bytes());
        let file = SideFile {
            flag: "audit-policy-file",
            annotation: "kubeplane.io/audit-policy-sha256",
        };
        file.add(
            path,
            FileSource::Inline(content),
            digest,
            out,
            flags,
            annotations,
        );
        let log_path = audit
            .log_path
            .clone()
            .unwrap_or_else(|| defaults::AUDIT_LOG_PATH.to_string());
        if log_path != "-" {
            let dir = parent_dir(&log_path);
            mounts.push(Mount::same_path(
                "audit-log",
                &dir,
                false,
                HostPathType::DirectoryOrCreate,
            ));
        }
        flags.push(("audit-log-path".into(), log_path));
        let limits = [
            ("audit-log-maxage", audit.max_age),
            ("audit-log-maxbackup", audit.max_backup),
            ("audit-log-maxsize", audit.max_size),
        ];
        for (flag, value) in limits {
            if let Some(v) = value {
                flags.push((flag.to_string(), v.to_string()));
            }
        }
        Ok(true)
    }

    /// `spec.apiServer.encryption`: the configuration as a side file from its Secret. Whether
    /// the files directory is used.
    fn encryption(
        &self,
        files_dir: &str,
        out: &mut Rendered,
        flags: &mut Vec<Flag>,
        annotations: &mut BTreeMap<String, String>,
    ) -> bool {
        let Some(secret) = encryption_secret(self.spec) else {
            return false;
        };
        let path = format!("{files_dir}/encryption-config.yaml");
        let digest = match self.input.encryption_config_sha256 {
            Some(d) => d.to_string(),
            None => {
                out.warnings.push(format!(
                    "the content of Secret {}/{} (key {}) is unknown here, so the kube-apiserver config hash is provisional; the agent reads the Secret on the node",
                    secret.namespace.as_deref().unwrap_or_default(),
                    secret.name,
                    secret.key.as_deref().unwrap_or_default()
                ));
                "unresolved".to_string()
            }
        };
        let file = SideFile {
            flag: "encryption-provider-config",
            annotation: "kubeplane.io/encryption-config-sha256",
        };
        file.add(
            path,
            FileSource::Secret(secret),
            digest,
            out,
            flags,
            annotations,
        );
        true
    }

    /// kubeadm's `getEtcdCertVolumes`: one read-only mount per directory holding an etcd
    /// TLS file that no other mount covers, named `etcd-certs-N` in path order.
    fn etcd_cert_mounts<'f>(
        &self,
        files: impl Iterator<Item = &'f str>,
        existing: &[Mount],
    ) -> Vec<Mount> {
        let mut dirs: Vec<String> = Vec::new();
        for file in files {
            let dir = parent_dir(file);
            if existing
                .iter()
                .any(|m| pod::strip_dir_prefix(&dir, &m.mount_path).is_some())
            {
                continue;
            }
            if dirs
                .iter()
                .any(|d| pod::strip_dir_prefix(&dir, d).is_some())
            {
                continue;
            }
            dirs.retain(|d| pod::strip_dir_prefix(d, &dir).is_none());
            dirs.push(dir);
        }
        dirs.sort();
        dirs.iter()
            .enumerate()
            .map(|(i, d)| {
                Mount::same_path(
                    &format!("etcd-certs-{i}"),
                    d,
                    true,
                    HostPathType::DirectoryOrCreate,
                )
            })
            .collect()
    }
}

/// A side file of kube-apiserver: the flag that names it and the annotation that carries its
/// digest (so a change of content changes the Pod's hash).
struct SideFile {
    flag: &'static str,
    annotation: &'static str,
}

impl SideFile {
    fn add(
        &self,
        path: String,
        source: FileSource,
        sha256: String,
        out: &mut Rendered,
        flags: &mut Vec<Flag>,
        annotations: &mut BTreeMap<String, String>,
    ) {
        annotations.insert(self.annotation.into(), sha256.clone());
        out.files.push(RenderedFile {
            component: Component::ApiServer,
            path: path.clone(),
            source,
            sha256,
        });
        flags.push((self.flag.into(), path));
    }
}
