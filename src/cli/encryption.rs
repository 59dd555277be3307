//! `kubeplane encryption status NAME`: where managed encryption at rest stands.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use kube::{Api, Client};

use crate::api::{ControlPlaneConfig, EncryptionStatus};

/// Arguments of `kubeplane encryption`.
#[derive(Args, Debug, Clone)]
pub struct EncryptionArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: EncryptionCommand,
}

/// Subcommands of `kubeplane encryption`.
#[derive(Subcommand, Debug, Clone)]
pub enum EncryptionCommand {
    /// Show the step of the key lifecycle, the active key's name, each node's configuration
    /// and the rewrite's progress. Exit 0 at rest, 1 when halted (Degraded), 2 while a step
    /// is in progress or managed encryption is not configured.
    Status(EncryptionStatusArgs),
}

/// Arguments of `kubeplane encryption status`.
#[derive(Args, Debug, Clone)]
pub struct EncryptionStatusArgs {
    /// Name of the ControlPlaneConfig.
    pub name: String,
}

/// `kubeplane encryption …`.
pub async fn encryption(
    args: &EncryptionArgs,
    out: &mut (dyn Write + Send),
    err: &mut dyn Write,
) -> ExitCode {
    let EncryptionCommand::Status(a) = &args.command;
    let cpc = async {
        let client = Client::try_default()
            .await
            .map_err(|e| format!("cannot reach the API server: {e}"))?;
        let api: Api<ControlPlaneConfig> = Api::all(client);
        api.get_opt(&a.name)
            .await
            .map_err(|e| format!("get controlplaneconfig {}: {e}", a.name))?
            .ok_or_else(|| format!("controlplaneconfig {} not found", a.name))
    }
    .await;
    match cpc {
        Ok(cpc) => {
            let managed = cpc
                .spec
                .api_server
                .as_ref()
                .and_then(|s| s.encryption.as_ref())
                .is_some_and(|e| e.managed.is_some());
            let status = cpc.status.and_then(|s| s.encryption);
            let (text, code) = format_status(managed, status.as_ref());
            let _ = out.write_all(text.as_bytes());
            ExitCode::from(code)
        }
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            ExitCode::from(2)
        }
    }
}

/// The report and the exit code. Pure.
pub fn format_status(managed: bool, status: Option<&EncryptionStatus>) -> (String, u8) {
    if !managed {
        return (
            "managed encryption is not configured (spec.apiServer.encryption.managed)\n".into(),
            2,
        );
    }
    let Some(s) = status else {
        return ("managed encryption: not reconciled yet\n".into(), 2);
    };
    let mut t = String::new();
    let field = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    t.push_str(&format!("step:       {}\n", field(&s.step)));
    t.push_str(&format!("health:     {}\n", field(&s.health)));
    t.push_str(&format!(
        "active key: {} ({})\n",
        field(&s.active_key),
        field(&s.provider)
    ));
    t.push_str(&format!("keys:       {}\n", s.keys.join(", ")));
    if let Some(m) = &s.message {
        t.push_str(&format!("message:    {m}\n"));
    }
    for n in &s.nodes {
        t.push_str(&format!(
            "node {:<20} revision {:<12} {}\n",
            n.node,
            n.revision.as_deref().unwrap_or("-"),
            if n.current {
                "runs this step's configuration"
            } else {
                "NOT YET on this step's configuration"
            }
        ));
    }
    if let Some(m) = &s.migration {
        t.push_str(&format!(
            "rewrite:    {} objects rewritten to {}, {} failed{}{}\n",
            m.migrated,
            m.key.as_deref().unwrap_or("-"),
            m.failed,
            m.resource
                .as_deref()
                .map(|r| format!(", now {r}"))
                .unwrap_or_default(),
            if m.complete { ", complete" } else { "" }
        ));
    }
    if let Some(v) = &s.verification {
        let counts: Vec<String> = v
            .counts
            .iter()
            .map(|c| format!("{} x {}", c.count, c.key))
            .collect();
        t.push_str(&format!(
            "verified:   by {}{}\n",
            v.method,
            if counts.is_empty() {
                String::new()
            } else {
                format!(": {}", counts.join(", "))
            }
        ));
    }
    let code = match s.health.as_deref() {
        Some("Stable") => 0,
        Some("Degraded") => 1,
        _ => 2,
    };
    (t, code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{KeyCount, MigrationStatus, NodeEncryption, VerificationStatus};

    #[test]
    fn status_report_and_exit_codes() {
        assert_eq!(format_status(false, None).1, 2);
        assert_eq!(format_status(true, None).1, 2);
        let mut s = EncryptionStatus {
            step: Some("Migrating".into()),
            health: Some("Progressing".into()),
            provider: Some("secretbox".into()),
            active_key: Some("key2-9".into()),
            keys: vec!["key2-9".into(), "key1-1".into()],
            nodes: vec![
                NodeEncryption {
                    node: "cp1".into(),
                    revision: Some("abc123".into()),
                    current: true,
                },
                NodeEncryption {
                    node: "cp2".into(),
                    revision: None,
                    current: false,
                },
            ],
            migration: Some(MigrationStatus {
                key: Some("key2-9".into()),
                resource: Some("secrets".into()),
                migrated: 120,
                ..Default::default()
            }),
            verification: Some(VerificationStatus {
                method: "etcd".into(),
                counts: vec![KeyCount {
                    key: "key2-9".into(),
                    count: 200,
                }],
            }),
            ..Default::default()
        };
        let (text, code) = format_status(true, Some(&s));
        assert_eq!(code, 2);
        assert!(text.contains("active key: key2-9 (secretbox)"), "{text}");
        assert!(text.contains("cp2") && text.contains("NOT YET"), "{text}");
        assert!(text.contains("revision abc123"), "{text}");
        assert!(
            text.contains("120 objects rewritten to key2-9, 0 failed, now secrets"),
            "{text}"
        );
        assert!(text.contains("verified:   by etcd: 200 x key2-9"), "{text}");
        s.health = Some("Degraded".into());
        assert_eq!(format_status(true, Some(&s)).1, 1);
        s.health = Some("Stable".into());
        assert_eq!(format_status(true, Some(&s)).1, 0);
    }
}
