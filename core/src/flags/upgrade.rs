//! What changes between Kubernetes minor releases beyond the flag table: feature gates (GA,
//! deprecated, locked, removed), kube-apiserver admission plugins, and API group/versions no
//! longer served. Read by the upgrade checks (`validation::upgrade`) and by `import --systemd-unit`
//! (`adopt::hardway`): the knowledge lives once.
//!
//! The facts live in `core/src/flags/data/upgrade/*.yaml` (each file's `sources` section names where
//! they come from), compiled into the binary and parsed once on first use. What the v1.36.2
//! binaries themselves say is captured in `data/upgrade/1.36/binary.yaml` (see `capture.sh`
//! there) and compared with this data by `tests/upgrade_data.rs`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::Deserialize;

use super::Minor;

/// The stage of a feature gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GateStage {
    /// Alpha.
    Alpha,
    /// Beta.
    Beta,
    /// Generally available.
    Ga,
    /// Deprecated: the old behaviour, going away.
    Deprecated,
}

impl GateStage {
    /// The stage as release notes write it.
    pub fn as_str(self) -> &'static str {
        match self {
            GateStage::Alpha => "alpha",
            GateStage::Beta => "beta",
            GateStage::Ga => "GA",
            GateStage::Deprecated => "deprecated",
        }
    }
}

/// From one release on, a gate's stage, default and lock.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSpec {
    /// First release with this spec.
    pub since: Minor,
    /// The stage.
    pub stage: GateStage,
    /// The value when the flag does not set it.
    pub default: bool,
    /// Whether any other value is refused.
    #[serde(default)]
    pub locked: bool,
}

/// What the data knows about one feature gate.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Gate {
    /// The gate's name.
    pub name: String,
    /// Keys of the file's `sources`.
    pub source: String,
    /// Changes of stage, oldest first.
    pub stages: Vec<GateSpec>,
    /// First release that does not know the gate.
    #[serde(default)]
    pub removed: Option<Minor>,
    /// Newest release known to have the gate, when `removed` is not established.
    #[serde(default)]
    pub last_seen: Option<Minor>,
    /// Oldest release known not to have the gate, when `removed` is not established.
    #[serde(default)]
    pub removed_by: Option<Minor>,
}

/// A gate's state in one release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GateState<'a> {
    /// Known, with this spec (`None` when the data has no spec that old).
    Known(Option<&'a GateSpec>),
    /// Removed in this or an earlier release.
    Removed {
        /// The first release without it (or the oldest known without it).
        in_: Minor,
        /// Whether `in_` is the exact release (false: it is only known to be gone by then).
        exact: bool,
        /// The last spec it had.
        last: Option<&'a GateSpec>,
    },
    /// Gone by a later release, but the data cannot say whether this release still has it.
    MaybeRemoved {
        /// Newest release known to have it.
        last_seen: Minor,
        /// Oldest release known not to have it.
        removed_by: Minor,
        /// The last spec it had.
        last: Option<&'a GateSpec>,
    },
}

impl Gate {
    /// The spec in force in a release (the newest `since` not after it).
    pub fn spec_in(&self, minor: u32) -> Option<&GateSpec> {
        self.stages.iter().rev().find(|s| s.since.0 <= minor)
    }

    /// The gate's state in a release.
    pub fn state_in(&self, minor: u32) -> GateState<'_> {
        let last = self.stages.last();
        if let Some(r) = self.removed
            && r.0 <= minor
        {
            return GateState::Removed {
                in_: r,
                exact: true,
                last,
            };
        }
        if let Some(by) = self.removed_by {
            if by.0 <= minor {
                return GateState::Removed {
                    in_: by,
                    exact: false,
                    last,
                };
            }
            if self.last_seen.is_none_or(|s| s.0 < minor) {
                return GateState::MaybeRemoved {
                    last_seen: self.last_seen.unwrap_or(Minor(minor.saturating_sub(1))),
                    removed_by: by,
                    last,
                };
            }
        }
        GateState::Known(self.spec_in(minor))
    }
}

/// A kube-apiserver admission plugin no supported release accepts.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RemovedPlugin {
    /// The plugin's name.
    pub name: String,
    /// First release without it, when a release note says so.
    #[serde(default)]
    pub removed: Option<Minor>,
    /// Oldest release known not to have it, when the exact release is not established.
    #[serde(default)]
    pub removed_by: Option<Minor>,
    /// Release that deprecated it.
    #[serde(default)]
    pub deprecated: Option<Minor>,
    /// Keys of the file's `sources`.
    pub source: String,
    /// What to use instead, in kubeplane's words.
    pub note: String,
}

impl RemovedPlugin {
    /// Whether a release refuses the plugin, and since which release (exact or "by").
    pub fn gone_in(&self, minor: u32) -> Option<(Minor, bool)> {
        match (self.removed, self.removed_by) {
            (Some(r), _) if r.0 <= minor => Some((r, true)),
            (None, Some(by)) if by.0 <= minor => Some((by, false)),
            _ => None,
        }
    }
}

/// An API group/version no supported release serves.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RemovedApi {
    /// `GROUP/VERSION` as `--runtime-config` names it.
    pub group_version: String,
    /// First release that does not serve it.
    pub removed: Minor,
    /// The group/version(s) to use instead.
    #[serde(rename = "use")]
    pub use_: String,
    /// Keys of the file's `sources`.
    pub source: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GateFile {
    sources: BTreeMap<String, String>,
    gates: Vec<Gate>,
}

/// The admission plugins each release lists, and the removed ones.
type PluginData = (BTreeMap<String, Vec<String>>, Vec<RemovedPlugin>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginFile {
    sources: BTreeMap<String, String>,
    known: BTreeMap<String, Vec<String>>,
    removed: Vec<RemovedPlugin>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiFile {
    sources: BTreeMap<String, String>,
    removed: Vec<RemovedApi>,
}

const GATES: &str = include_str!("data/upgrade/feature-gates.yaml");
const PLUGINS: &str = include_str!("data/upgrade/admission-plugins.yaml");
const APIS: &str = include_str!("data/upgrade/apis.yaml");

/// Every `source` names keys of its file's `sources` section.
fn check_sources(file: &str, sources: &BTreeMap<String, String>, used: &str) -> Result<(), String> {
    for key in used.split(',').map(str::trim) {
        if !sources.contains_key(key) {
            return Err(format!(
                "{file}: source {key:?} is not in its sources section"
            ));
        }
    }
    Ok(())
}

fn parse_gates(text: &str) -> Result<Vec<Gate>, String> {
    let f: GateFile =
        serde_saphyr::from_str(text).map_err(|e| format!("feature-gates.yaml: {e}"))?;
    for g in &f.gates {
        check_sources("feature-gates.yaml", &f.sources, &g.source)?;
        if g.stages.is_empty() || g.stages.windows(2).any(|w| w[0].since >= w[1].since) {
            return Err(format!(
                "feature-gates.yaml: {}: stages must be non-empty and oldest first",
                g.name
            ));
        }
        if g.removed.is_some() && (g.removed_by.is_some() || g.last_seen.is_some()) {
            return Err(format!(
                "feature-gates.yaml: {}: removed is exact; removedBy/lastSeen are for when it is not",
                g.name
            ));
        }
    }
    Ok(f.gates)
}

fn parse_plugins(text: &str) -> Result<PluginData, String> {
    let f: PluginFile =
        serde_saphyr::from_str(text).map_err(|e| format!("admission-plugins.yaml: {e}"))?;
    for p in &f.removed {
        check_sources("admission-plugins.yaml", &f.sources, &p.source)?;
    }
    Ok((f.known, f.removed))
}

fn parse_apis(text: &str) -> Result<Vec<RemovedApi>, String> {
    let f: ApiFile = serde_saphyr::from_str(text).map_err(|e| format!("apis.yaml: {e}"))?;
    for a in &f.removed {
        check_sources("apis.yaml", &f.sources, &a.source)?;
    }
    Ok(f.removed)
}

// The data is compiled in and checked by the unit tests below; a failure here is a build
// defect, not bad user input.
static GATE_DATA: LazyLock<Vec<Gate>> =
    LazyLock::new(|| parse_gates(GATES).unwrap_or_else(|e| panic!("{e}")));
static PLUGIN_DATA: LazyLock<PluginData> =
    LazyLock::new(|| parse_plugins(PLUGINS).unwrap_or_else(|e| panic!("{e}")));
static API_DATA: LazyLock<Vec<RemovedApi>> =
    LazyLock::new(|| parse_apis(APIS).unwrap_or_else(|e| panic!("{e}")));

/// Every gate the data knows.
pub fn gates() -> &'static [Gate] {
    &GATE_DATA
}

/// A gate by name.
pub fn gate(name: &str) -> Option<&'static Gate> {
    GATE_DATA.iter().find(|g| g.name == name)
}

/// Gates no release from `minor` on knows, with the exact release they went away in.
pub fn gates_removed_before(minor: u32) -> impl Iterator<Item = &'static Gate> {
    GATE_DATA
        .iter()
        .filter(move |g| g.removed.is_some_and(|r| r.0 <= minor))
}

/// The admission plugins a release's `--help` lists, when the data has that release.
pub fn admission_plugins(minor: Minor) -> Option<&'static [String]> {
    PLUGIN_DATA.0.get(&minor.to_string()).map(Vec::as_slice)
}

/// An admission plugin no supported release accepts, by name.
pub fn removed_plugin(name: &str) -> Option<&'static RemovedPlugin> {
    PLUGIN_DATA.1.iter().find(|p| p.name == name)
}

/// Every removed admission plugin the data knows.
pub fn removed_plugins() -> &'static [RemovedPlugin] {
    &PLUGIN_DATA.1
}

/// A removed API group/version, by `GROUP/VERSION`.
pub fn removed_api(group_version: &str) -> Option<&'static RemovedApi> {
    API_DATA.iter().find(|a| a.group_version == group_version)
}

/// Every removed API group/version the data knows.
pub fn removed_apis() -> &'static [RemovedApi] {
    &API_DATA
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_parses_and_names_its_sources() {
        assert!(parse_gates(GATES).unwrap().len() > 50);
        assert!(parse_plugins(PLUGINS).unwrap().0["1.36"].len() > 30);
        assert!(parse_apis(APIS).unwrap().len() > 10);
    }

    #[test]
    fn bad_data_is_refused() {
        let no_source = "sources: {a: x}\ngates:\n  - {name: G, source: b, stages: [{since: \"1.30\", stage: ga, default: true}]}\n";
        assert!(parse_gates(no_source).unwrap_err().contains("\"b\""));
        let unordered = "sources: {a: x}\ngates:\n  - {name: G, source: a, stages: [{since: \"1.31\", stage: ga, default: true}, {since: \"1.30\", stage: beta, default: true}]}\n";
        assert!(parse_gates(unordered).unwrap_err().contains("oldest first"));
        let both = "sources: {a: x}\ngates:\n  - {name: G, source: a, removed: \"1.30\", removedBy: \"1.31\", stages: [{since: \"1.29\", stage: ga, default: true}]}\n";
        assert!(parse_gates(both).unwrap_err().contains("removed is exact"));
        assert!(parse_apis("sources: {}\nremoved: [{groupVersion: a/v1, removed: \"1.2\", use: b, source: nope}]\n").is_err());
    }

    #[test]
    fn states_follow_the_stages() {
        let g = gate("AnyVolumeDataSource").unwrap();
        assert_eq!(
            g.state_in(32),
            GateState::Known(Some(&g.stages[0])),
            "beta before 1.33"
        );
        match g.state_in(33) {
            GateState::Known(Some(s)) => assert!(s.stage == GateStage::Ga && s.locked),
            other => panic!("{other:?}"),
        }
        let lb = gate("LoadBalancerIPMode").unwrap();
        assert!(matches!(lb.state_in(34), GateState::Known(Some(_))));
        assert!(matches!(
            lb.state_in(35),
            GateState::Removed {
                exact: true,
                in_: Minor(35),
                ..
            }
        ));
        let m = gate("MemoryManager").unwrap();
        assert!(matches!(m.state_in(33), GateState::Known(Some(_))));
        assert!(matches!(m.state_in(34), GateState::MaybeRemoved { .. }));
        assert!(matches!(m.state_in(35), GateState::MaybeRemoved { .. }));
        assert!(matches!(
            m.state_in(36),
            GateState::Removed { exact: false, .. }
        ));
    }

    #[test]
    fn lookups() {
        assert!(
            removed_plugin("PodSecurityPolicy")
                .unwrap()
                .gone_in(25)
                .is_some()
        );
        assert!(
            removed_plugin("PodSecurityPolicy")
                .unwrap()
                .gone_in(24)
                .is_none()
        );
        assert!(removed_plugin("NodeRestriction").is_none());
        assert_eq!(removed_api("batch/v1beta1").unwrap().removed, Minor(25));
        assert!(removed_api("batch/v1").is_none());
        assert!(gates_removed_before(33).any(|g| g.name == "TTLAfterFinished"));
        assert!(!gates_removed_before(33).any(|g| g.name == "LoadBalancerIPMode"));
        assert!(
            admission_plugins(Minor(36))
                .unwrap()
                .iter()
                .any(|p| p == "NodeRestriction")
        );
        assert!(admission_plugins(Minor(20)).is_none());
    }
}
