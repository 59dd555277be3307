//! `spec.apiServer.audit`: audit logging of kube-apiserver.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Audit logging of kube-apiserver.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Audit {
    /// The audit Policy (`apiVersion: audit.k8s.io/v1`, `kind: Policy`), written to a managed
    /// file on each node and passed as `--audit-policy-file`.
    #[schemars(schema_with = "super::common::preserve_unknown_object")]
    pub policy: serde_json::Value,

    /// Where the audit log is written (`--audit-log-path`); its directory is mounted
    /// read-write from the host. `-` writes to standard output.
    /// Default: `/var/log/kubernetes/audit/audit.log`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub log_path: Option<String>,

    /// Days to keep old audit log files (`--audit-log-maxage`). Default: unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 36500))]
    pub max_age: Option<i32>,

    /// Number of old audit log files to keep (`--audit-log-maxbackup`). Default: unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub max_backup: Option<i32>,

    /// Megabytes an audit log file may reach before it is rotated (`--audit-log-maxsize`).
    /// Default: unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000000))]
    pub max_size: Option<i32>,
}
