//! The bounds of the spec's numeric fields, once. The CRD schema carries them as
//! `minimum`/`maximum` (`#[schemars(range)]` in `config.rs`, so `kubectl apply` refuses a value
//! outside them), validation checks them with these values (so `kubeplane validate` and the
//! operator say the same for a spec that never met the API server), and the CEL rule of
//! `serviceNodePortRange` spells out [`PORT`]'s maximum. Tests keep the schema and the CEL
//! rule equal to this table.

/// An inclusive range of a numeric field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound {
    /// Where the field is, `*` standing for any one component or probe name.
    pub path: &'static str,
    /// Smallest value accepted.
    pub min: i64,
    /// Largest value accepted.
    pub max: i64,
    /// What the number counts, for messages (`seconds`, ...).
    pub unit: &'static str,
}

impl Bound {
    /// Whether `value` is within the bound.
    pub fn contains(&self, value: i64) -> bool {
        (self.min..=self.max).contains(&value)
    }

    /// The fix a message offers: `use 10 to 3600 seconds`.
    pub fn fix(&self) -> String {
        format!("use {} to {} {}", self.min, self.max, self.unit)
    }

    /// Whether `path` (concrete, like `spec.rollout.healthTimeoutSeconds.scheduler`) is this
    /// bound's field.
    pub fn matches(&self, path: &str) -> bool {
        let mut want = self.path.split('.');
        let mut got = path.split('.');
        loop {
            match (want.next(), got.next()) {
                (None, None) => return true,
                (Some(w), Some(g)) if w == "*" || w == g => {}
                _ => return false,
            }
        }
    }
}

/// `spec.rollout.minReadySeconds`.
pub const MIN_READY_SECONDS: Bound = Bound {
    path: "spec.rollout.minReadySeconds",
    min: 0,
    max: 3600,
    unit: "seconds",
};
/// `spec.rollout.healthTimeoutSeconds.<component>`.
pub const HEALTH_TIMEOUT_SECONDS: Bound = Bound {
    path: "spec.rollout.healthTimeoutSeconds.*",
    min: 10,
    max: 3600,
    unit: "seconds",
};
/// `spec.rollout.progressDeadlineSeconds`.
pub const PROGRESS_DEADLINE_SECONDS: Bound = Bound {
    path: "spec.rollout.progressDeadlineSeconds",
    min: 60,
    max: 86400,
    unit: "seconds",
};
/// A TCP port: `spec.apiServer.securePort`, and the ends of `serviceNodePortRange`.
pub const PORT: Bound = Bound {
    path: "spec.apiServer.securePort",
    min: 1,
    max: 65535,
    unit: "(a TCP port)",
};
/// `spec.apiServer.audit.maxAge`.
pub const AUDIT_MAX_AGE: Bound = Bound {
    path: "spec.apiServer.audit.maxAge",
    min: 0,
    max: 36500,
    unit: "days",
};
/// `spec.apiServer.audit.maxBackup`.
pub const AUDIT_MAX_BACKUP: Bound = Bound {
    path: "spec.apiServer.audit.maxBackup",
    min: 0,
    max: 100_000,
    unit: "files",
};
/// `spec.apiServer.audit.maxSize`.
pub const AUDIT_MAX_SIZE: Bound = Bound {
    path: "spec.apiServer.audit.maxSize",
    min: 0,
    max: 1_000_000,
    unit: "megabytes",
};
/// `spec.<component>.probes.<probe>.initialDelaySeconds`.
pub const PROBE_INITIAL_DELAY_SECONDS: Bound = Bound {
    path: "spec.*.probes.*.initialDelaySeconds",
    min: 0,
    max: 3600,
    unit: "seconds",
};
/// `spec.<component>.probes.<probe>.periodSeconds`.
pub const PROBE_PERIOD_SECONDS: Bound = Bound {
    path: "spec.*.probes.*.periodSeconds",
    min: 1,
    max: 3600,
    unit: "seconds",
};
/// `spec.<component>.probes.<probe>.timeoutSeconds`.
pub const PROBE_TIMEOUT_SECONDS: Bound = Bound {
    path: "spec.*.probes.*.timeoutSeconds",
    min: 1,
    max: 3600,
    unit: "seconds",
};
/// `spec.<component>.probes.<probe>.failureThreshold`.
pub const PROBE_FAILURE_THRESHOLD: Bound = Bound {
    path: "spec.*.probes.*.failureThreshold",
    min: 1,
    max: 1000,
    unit: "failures",
};

/// `spec.apiServer.encryption.managed.rotation.generation`.
pub const ENCRYPTION_ROTATION_GENERATION: Bound = Bound {
    path: "spec.apiServer.encryption.managed.rotation.generation",
    min: 0,
    max: 1_000_000_000,
    unit: "(a number you change to rotate)",
};
/// `spec.apiServer.encryption.managed.rotation.intervalDays`.
pub const ENCRYPTION_INTERVAL_DAYS: Bound = Bound {
    path: "spec.apiServer.encryption.managed.rotation.intervalDays",
    min: 1,
    max: 3650,
    unit: "days",
};
/// `spec.apiServer.encryption.managed.migration.objectsPerSecond`.
pub const ENCRYPTION_OBJECTS_PER_SECOND: Bound = Bound {
    path: "spec.apiServer.encryption.managed.migration.objectsPerSecond",
    min: 1,
    max: 10_000,
    unit: "objects per second",
};

/// Every bound of `ControlPlaneConfig`.
pub const BOUNDS: [Bound; 14] = [
    MIN_READY_SECONDS,
    HEALTH_TIMEOUT_SECONDS,
    PROGRESS_DEADLINE_SECONDS,
    PORT,
    AUDIT_MAX_AGE,
    AUDIT_MAX_BACKUP,
    AUDIT_MAX_SIZE,
    PROBE_INITIAL_DELAY_SECONDS,
    PROBE_PERIOD_SECONDS,
    PROBE_TIMEOUT_SECONDS,
    PROBE_FAILURE_THRESHOLD,
    ENCRYPTION_ROTATION_GENERATION,
    ENCRYPTION_INTERVAL_DAYS,
    ENCRYPTION_OBJECTS_PER_SECOND,
];

/// The bound of a concrete field path, if it has one.
pub fn bound_of(path: &str) -> Option<&'static Bound> {
    BOUNDS.iter().find(|b| b.matches(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    /// Every `minimum`/`maximum` of a JSON schema, by field path.
    fn ranges(schema: &serde_json::Value, path: &str, out: &mut Vec<(String, i64, i64)>) {
        let num = |k: &str| schema.get(k).and_then(|v| v.as_f64()).map(|f| f as i64);
        if num("minimum").is_some() || num("maximum").is_some() {
            out.push((
                path.to_string(),
                num("minimum").unwrap_or(i64::MIN),
                num("maximum").unwrap_or(i64::MAX),
            ));
        }
        if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, s) in props {
                ranges(s, &format!("{path}.{name}"), out);
            }
        }
        if let Some(items) = schema.get("items") {
            ranges(items, &format!("{path}[]"), out);
        }
    }

    fn crd_ranges() -> Vec<(String, i64, i64)> {
        let crd = serde_json::to_value(crate::api::ControlPlaneConfig::crd()).unwrap();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let mut out = Vec::new();
        ranges(schema, "spec", &mut out);
        out
    }

    #[test]
    fn the_crd_schema_has_exactly_the_bounds_of_the_table() {
        let found = crd_ranges();
        assert!(found.len() > BOUNDS.len(), "{found:?}");
        for (path, min, max) in &found {
            let b = bound_of(path).unwrap_or_else(|| {
                panic!("{path}: the schema bounds it ({min}..={max}); add it to api::bounds")
            });
            assert_eq!(
                (b.min, b.max),
                (*min, *max),
                "{path}: schema and api::bounds differ"
            );
        }
        for b in BOUNDS {
            assert!(
                found.iter().any(|(p, _, _)| b.matches(p)),
                "{}: in api::bounds but not in the schema",
                b.path
            );
        }
    }

    #[test]
    fn the_cel_rule_of_the_node_port_range_has_the_port_bounds() {
        let crd = serde_json::to_string(&crate::api::ControlPlaneConfig::crd()).unwrap();
        let rule = format!(
            "int(self.split('-')[0]) >= {} && int(self.split('-')[0]) <= int(self.split('-')[1]) && int(self.split('-')[1]) <= {}",
            PORT.min, PORT.max
        );
        assert!(
            crd.contains(&rule),
            "serviceNodePortRange's CEL rule differs from {rule}"
        );
    }

    #[test]
    fn paths_match_by_segment_with_wildcards() {
        assert!(HEALTH_TIMEOUT_SECONDS.matches("spec.rollout.healthTimeoutSeconds.scheduler"));
        assert!(!HEALTH_TIMEOUT_SECONDS.matches("spec.rollout.healthTimeoutSeconds"));
        assert!(!HEALTH_TIMEOUT_SECONDS.matches("spec.rollout.healthTimeoutSeconds.a.b"));
        assert!(PROBE_PERIOD_SECONDS.matches("spec.scheduler.probes.startup.periodSeconds"));
        assert!(!PROBE_PERIOD_SECONDS.matches("spec.scheduler.probes.startup.timeoutSeconds"));
        assert_eq!(bound_of("spec.apiServer.securePort"), Some(&PORT));
        assert_eq!(bound_of("spec.nothing"), None);
        assert!(PORT.contains(1) && PORT.contains(65535) && !PORT.contains(0));
        assert_eq!(MIN_READY_SECONDS.fix(), "use 0 to 3600 seconds");
    }
}
