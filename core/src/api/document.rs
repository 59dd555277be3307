//! Reading a `ControlPlaneConfig` from YAML text, with errors that name the field.

use super::{ControlPlaneConfig, GROUP};

/// The apiVersion kubeplane reads.
pub const API_VERSION: &str = "kubeplane.io/v1alpha1";

/// A problem found while reading a document.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct DocumentError {
    /// Where: a field path such as `spec.apiServer.extraArgs[2].value`, or `document`.
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

fn doc_error(path: impl Into<String>, message: impl Into<String>) -> DocumentError {
    DocumentError {
        path: path.into(),
        message: message.into(),
    }
}

/// Parses YAML text holding one `ControlPlaneConfig` (other documents in the stream, such as
/// a Secret, are skipped). Unknown fields are errors: a misspelled field would otherwise be
/// dropped without a word.
pub fn parse_config(text: &str) -> Result<ControlPlaneConfig, Vec<DocumentError>> {
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| vec![doc_error("document", format!("not valid YAML: {e}"))])?;
    let mut configs = docs.into_iter().enumerate().filter(|(_, d)| {
        d.get("kind").and_then(|k| k.as_str()) == Some("ControlPlaneConfig")
            || d.get("apiVersion")
                .and_then(|k| k.as_str())
                .is_some_and(|v| v.starts_with(GROUP))
    });
    let Some((index, doc)) = configs.next() else {
        return Err(vec![doc_error(
            "document",
            "no ControlPlaneConfig found; the file needs `apiVersion: kubeplane.io/v1alpha1` and `kind: ControlPlaneConfig`",
        )]);
    };
    if configs.next().is_some() {
        return Err(vec![doc_error(
            "document",
            "more than one ControlPlaneConfig in the file; keep one per file",
        )]);
    }
    let prefix = if index == 0 {
        String::new()
    } else {
        format!("document {}: ", index + 1)
    };

    let mut errors = Vec::new();
    match doc.get("apiVersion").and_then(|v| v.as_str()) {
        Some(API_VERSION) => {}
        Some(other) => errors.push(doc_error(
            "apiVersion",
            format!("{prefix}{other:?} is not served by kubeplane; use {API_VERSION}"),
        )),
        None => errors.push(doc_error(
            "apiVersion",
            format!("{prefix}missing; use {API_VERSION}"),
        )),
    }
    match doc.get("kind").and_then(|v| v.as_str()) {
        Some("ControlPlaneConfig") => {}
        other => errors.push(doc_error(
            "kind",
            format!("{prefix}{other:?} is not ControlPlaneConfig; use kind: ControlPlaneConfig"),
        )),
    }
    if doc.get("spec").is_none_or(|s| s.is_null()) {
        errors.push(doc_error(
            "spec",
            "missing; a ControlPlaneConfig needs at least spec.kubernetesVersion",
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let mut unknown = Vec::new();
    let result: Result<ControlPlaneConfig, _> = {
        // serde_ignored marks Option layers with `?`; users think in field paths.
        let mut record =
            |path: serde_ignored::Path<'_>| unknown.push(path.to_string().replace(".?", ""));
        let ignored = serde_ignored::Deserializer::new(&doc, &mut record);
        serde_path_to_error::deserialize(ignored)
    };
    for path in unknown {
        // apiVersion and kind are checked above; kube's ObjectMeta fields we do not model
        // and any status are not errors.
        if matches!(path.as_str(), "apiVersion" | "kind" | "status")
            || path.starts_with("metadata.")
            || path.starts_with("status.")
        {
            continue;
        }
        errors.push(doc_error(
            path.clone(),
            format!("{prefix}unknown field; check its spelling against `kubectl explain controlplaneconfig.{path}` or `kubeplane crd`"),
        ));
    }
    match result {
        Ok(cfg) if errors.is_empty() => Ok(cfg),
        Ok(_) => Err(errors),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            let hint = if inner.contains("invalid type") && inner.contains("expected a string") {
                "; quote the value so YAML reads it as a string"
            } else {
                ""
            };
            errors.insert(0, doc_error(path, format!("{prefix}{inner}{hint}")));
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_minimal_config() {
        let cfg = parse_config(
            "apiVersion: kubeplane.io/v1alpha1\nkind: ControlPlaneConfig\nmetadata:\n  name: x\nspec:\n  kubernetesVersion: v1.36.2\n",
        )
        .unwrap();
        assert_eq!(cfg.spec.kubernetes_version, "v1.36.2");
        assert_eq!(cfg.metadata.name.as_deref(), Some("x"));
    }

    #[test]
    fn skips_other_documents() {
        let text = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n---\napiVersion: kubeplane.io/v1alpha1\nkind: ControlPlaneConfig\nmetadata: {name: x}\nspec: {kubernetesVersion: v1.36.2}\n";
        assert!(parse_config(text).is_ok());
    }

    #[test]
    fn names_the_path_of_a_wrong_type() {
        let text = "apiVersion: kubeplane.io/v1alpha1\nkind: ControlPlaneConfig\nmetadata: {name: x}\nspec:\n  kubernetesVersion: v1.36.2\n  apiServer:\n    extraArgs:\n    - name: audit-log-maxage\n      value: 30\n";
        let errs = parse_config(text).unwrap_err();
        assert_eq!(
            errs[0].path, "spec.apiServer.extraArgs[0].value",
            "{errs:?}"
        );
        assert!(errs[0].message.contains("quote"), "{errs:?}");
    }

    #[test]
    fn unknown_fields_are_errors() {
        let text = "apiVersion: kubeplane.io/v1alpha1\nkind: ControlPlaneConfig\nmetadata: {name: x}\nspec:\n  kubernetesVersion: v1.36.2\n  apiServer:\n    extraArg: []\n";
        let errs = parse_config(text).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, "spec.apiServer.extraArg");
    }

    #[test]
    fn wrong_kind_version_and_garbage_are_refused() {
        let errs = parse_config("apiVersion: kubeplane.io/v1\nkind: ControlPlaneConfig\nspec: {kubernetesVersion: v1.36.2}\n").unwrap_err();
        assert_eq!(errs[0].path, "apiVersion");
        let errs = parse_config("apiVersion: v1\nkind: Pod\n").unwrap_err();
        assert!(errs[0].message.contains("no ControlPlaneConfig"));
        let errs = parse_config("{{{{").unwrap_err();
        assert!(errs[0].message.contains("not valid YAML"));
        let errs = parse_config("").unwrap_err();
        assert_eq!(errs[0].path, "document");
        let errs = parse_config("apiVersion: kubeplane.io/v1alpha1\nkind: ControlPlaneConfig\n")
            .unwrap_err();
        assert_eq!(errs[0].path, "spec");
    }
}
