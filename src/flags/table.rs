//! The flag table: every flag kube-apiserver, kube-controller-manager and kube-scheduler accept
//! in the supported versions, plus legacy flags removed earlier that old guides still carry.
//!
//! The facts live in `src/flags/data/*.yaml` (sources in `data/SOURCES.md`), compiled into the
//! binary and parsed once on first use.

use std::fmt;
use std::sync::LazyLock;

use serde::{Deserialize, Deserializer};

use super::KubeVersion;
use crate::api::Component;

/// A Kubernetes minor release, `1.MINOR`, as the flag table names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Minor(pub u32);

impl Minor {
    /// Parses `1.24` (or `v1.24`).
    pub fn parse(s: &str) -> Option<Minor> {
        let body = s.strip_prefix('v').unwrap_or(s);
        let (major, minor) = body.split_once('.')?;
        if major != "1"
            || minor.is_empty()
            || minor.len() > 4
            || !minor.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        minor.parse().ok().map(Minor)
    }
}

impl fmt::Display for Minor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "1.{}", self.0)
    }
}

impl<'de> Deserialize<'de> for Minor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Minor::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("{s:?} is not a version like \"1.24\""))
        })
    }
}

/// The value type of a flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlagType {
    /// `true` or `false` (Go `strconv.ParseBool`).
    Bool,
    /// An integer.
    Int,
    /// A floating-point number.
    Float,
    /// Any string.
    String,
    /// A Go duration such as `1h30m` or `500ms`.
    Duration,
    /// An IPv4 or IPv6 address.
    Ip,
    /// One CIDR.
    Cidr,
    /// One CIDR, or an IPv4 and an IPv6 CIDR for dual-stack, comma-separated.
    Cidrs,
    /// A port number.
    Port,
    /// A port range `FIRST-LAST`.
    PortRange,
    /// A comma-separated list.
    Strings,
    /// Comma-separated `key=value` pairs.
    Map,
    /// An absolute file or directory path.
    Path,
    /// A URL.
    Url,
    /// A comma-separated list of URLs.
    Urls,
    /// One of a fixed set of values.
    Enum,
}

impl FlagType {
    /// The name the data files use.
    pub fn as_str(self) -> &'static str {
        match self {
            FlagType::Bool => "bool",
            FlagType::Int => "int",
            FlagType::Float => "float",
            FlagType::String => "string",
            FlagType::Duration => "duration",
            FlagType::Ip => "ip",
            FlagType::Cidr => "cidr",
            FlagType::Cidrs => "cidrs",
            FlagType::Port => "port",
            FlagType::PortRange => "port-range",
            FlagType::Strings => "strings",
            FlagType::Map => "map",
            FlagType::Path => "path",
            FlagType::Url => "url",
            FlagType::Urls => "urls",
            FlagType::Enum => "enum",
        }
    }
}

impl fmt::Display for FlagType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the table knows about one flag of one component.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagInfo {
    /// Name without leading dashes.
    pub name: String,
    /// Value type.
    #[serde(rename = "type")]
    pub type_: FlagType,
    /// Whether values accumulate when the flag is given more than once.
    #[serde(default)]
    pub repeatable: bool,
    /// The allowed values (for `enum`, or each item of `strings`), when the set is fixed.
    #[serde(default)]
    pub values: Vec<String>,
    /// First minor release that accepts it, when that is newer than the oldest supported one.
    #[serde(default)]
    pub since: Option<Minor>,
    /// Minor release that deprecated it.
    #[serde(default)]
    pub deprecated: Option<Minor>,
    /// First minor release that refuses it.
    #[serde(default)]
    pub removed: Option<Minor>,
    /// The flag to use instead, if there is one.
    #[serde(default)]
    pub replacement: Option<String>,
    /// What to do, in kubeplane's words.
    #[serde(default)]
    pub note: Option<String>,
    /// Accepted but not listed by the binaries' `--help` (pflag `MarkDeprecated` or
    /// `MarkHidden` in the source), where the release that first hid it is not verified; the
    /// `--help` check (`tests/flag_help.rs`) expects it unlisted.
    #[serde(default)]
    pub hidden: bool,
}

impl FlagInfo {
    /// Whether the flag is accepted (possibly deprecated) by a release.
    pub fn accepted_in(&self, minor: u32) -> bool {
        self.since.is_none_or(|s| s.0 <= minor) && self.removed.is_none_or(|r| r.0 > minor)
    }

    /// The status of the flag in a release.
    pub fn status_in(&'static self, minor: u32) -> FlagStatus {
        match (self.removed, self.since, self.deprecated) {
            (Some(removed_in), _, _) if removed_in.0 <= minor => FlagStatus::Removed {
                flag: self,
                removed_in,
            },
            (_, Some(since), _) if since.0 > minor => FlagStatus::NotYet { flag: self, since },
            (_, _, Some(since)) if since.0 <= minor => FlagStatus::Deprecated { flag: self, since },
            _ => FlagStatus::Accepted { flag: self },
        }
    }
}

/// What the table says about a flag name for a component and version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlagStatus {
    /// Accepted, not deprecated.
    Accepted {
        /// The flag.
        flag: &'static FlagInfo,
    },
    /// Accepted but deprecated.
    Deprecated {
        /// The flag (its `replacement` and `note` say what to use instead).
        flag: &'static FlagInfo,
        /// Release that deprecated it.
        since: Minor,
    },
    /// Refused: removed in an earlier release.
    Removed {
        /// The flag (its `replacement` and `note` say what to use instead).
        flag: &'static FlagInfo,
        /// First release that refuses it.
        removed_in: Minor,
    },
    /// Refused: added in a later release.
    NotYet {
        /// The flag.
        flag: &'static FlagInfo,
        /// First release that accepts it.
        since: Minor,
    },
    /// Not a flag of this component.
    Unknown {
        /// The nearest flag this component accepts in this version, when one is close.
        suggestion: Option<&'static str>,
        /// Other components that accept a flag of this name in this version.
        elsewhere: Vec<Component>,
    },
}

impl FlagStatus {
    /// The flag, when the table knows the name.
    pub fn flag(&self) -> Option<&'static FlagInfo> {
        match self {
            FlagStatus::Accepted { flag }
            | FlagStatus::Deprecated { flag, .. }
            | FlagStatus::Removed { flag, .. }
            | FlagStatus::NotYet { flag, .. } => Some(flag),
            FlagStatus::Unknown { .. } => None,
        }
    }

    /// Whether the component starts with this flag (accepted or deprecated).
    pub fn is_accepted(&self) -> bool {
        matches!(
            self,
            FlagStatus::Accepted { .. } | FlagStatus::Deprecated { .. }
        )
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    component: String,
    flags: Vec<FlagInfo>,
}

/// One component's table.
struct Table {
    component: Component,
    flags: Vec<FlagInfo>,
}

const SOURCES: [(Component, &str); 3] = [
    (
        Component::ApiServer,
        include_str!("data/kube-apiserver.yaml"),
    ),
    (
        Component::ControllerManager,
        include_str!("data/kube-controller-manager.yaml"),
    ),
    (
        Component::Scheduler,
        include_str!("data/kube-scheduler.yaml"),
    ),
];

/// Parses one data file; checks that it names the expected component.
fn parse_table(component: Component, text: &str) -> Result<Table, String> {
    let file: TableFile = serde_saphyr::from_str(text)
        .map_err(|e| format!("flag data of {}: {e}", component.name()))?;
    if file.component != component.name() {
        return Err(format!(
            "flag data of {} names component {:?}",
            component.name(),
            file.component
        ));
    }
    Ok(Table {
        component,
        flags: file.flags,
    })
}

static TABLES: LazyLock<Vec<Table>> = LazyLock::new(|| {
    SOURCES
        .iter()
        .map(|(c, text)| {
            // The data is compiled in and checked by the unit tests below; a failure here is a
            // build defect, not bad user input.
            parse_table(*c, text).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect()
});

fn table(component: Component) -> &'static [FlagInfo] {
    TABLES
        .iter()
        .find(|t| t.component == component)
        .map(|t| t.flags.as_slice())
        .unwrap_or_default()
}

/// Every flag the table lists for a component, including removed and not-yet-added ones,
/// sorted by name.
pub fn all(component: Component) -> &'static [FlagInfo] {
    table(component)
}

/// The table entry of a flag, whatever its status.
pub fn find(component: Component, name: &str) -> Option<&'static FlagInfo> {
    let flags = table(component);
    flags
        .binary_search_by(|f| f.name.as_str().cmp(name))
        .ok()
        .map(|i| &flags[i])
}

/// The flags a component accepts in a version (deprecated ones included), sorted by name.
pub fn known(component: Component, version: &KubeVersion) -> Vec<&'static FlagInfo> {
    table(component)
        .iter()
        .filter(|f| f.accepted_in(version.minor))
        .collect()
}

/// Similarity (normalized Damerau-Levenshtein) above which a known flag is offered as the
/// likely intended one.
const SUGGESTION_THRESHOLD: f64 = 0.75;

/// The accepted flag nearest to `name`, when it is close enough to be a typo of it.
pub fn suggest(component: Component, name: &str, version: &KubeVersion) -> Option<&'static str> {
    // Very long names are not typos of a flag; skip the quadratic comparison.
    if name.is_empty() || name.len() > 100 {
        return None;
    }
    let mut best: Option<(&'static str, f64)> = None;
    for f in table(component)
        .iter()
        .filter(|f| f.accepted_in(version.minor))
    {
        let score = strsim::normalized_damerau_levenshtein(name, &f.name);
        if score >= SUGGESTION_THRESHOLD && best.is_none_or(|(_, b)| score > b) {
            best = Some((&f.name, score));
        }
    }
    best.map(|(n, _)| n)
}

/// What the table says about `name` for a component and version.
pub fn lookup(component: Component, name: &str, version: &KubeVersion) -> FlagStatus {
    match find(component, name) {
        Some(flag) => flag.status_in(version.minor),
        None => FlagStatus::Unknown {
            suggestion: suggest(component, name, version),
            elsewhere: Component::ALL
                .into_iter()
                .filter(|c| *c != component)
                .filter(|c| find(*c, name).is_some_and(|f| f.accepted_in(version.minor)))
                .collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::version::{MAX_MINOR, MIN_MINOR};

    fn v(minor: u32) -> KubeVersion {
        KubeVersion {
            minor,
            patch: 0,
            suffix: String::new(),
        }
    }

    #[test]
    fn every_data_file_parses_names_its_component_and_is_sorted_and_unique() {
        for (c, text) in SOURCES {
            let t = parse_table(c, text).expect("parses");
            assert!(t.flags.len() > 50, "{c}: only {} flags", t.flags.len());
            for w in t.flags.windows(2) {
                assert!(
                    w[0].name < w[1].name,
                    "{c}: {:?} before {:?} (names must be unique and sorted)",
                    w[0].name,
                    w[1].name
                );
            }
        }
        // The wrong component name is refused.
        assert!(parse_table(Component::Scheduler, SOURCES[0].1).is_err());
        assert!(
            parse_table(
                Component::Scheduler,
                "component: kube-scheduler\nflags: [{name: x, type: nope}]"
            )
            .is_err()
        );
        assert!(
            parse_table(
                Component::Scheduler,
                "component: kube-scheduler\nflags: [{name: x, type: bool, removed: \"2.1\"}]"
            )
            .is_err()
        );
    }

    #[test]
    fn entries_are_consistent() {
        for c in Component::ALL {
            for f in all(c) {
                let ctx = format!("{c} --{}", f.name);
                assert!(
                    !f.name.is_empty()
                        && f.name
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                        && !f.name.starts_with('-'),
                    "{ctx}: bad name"
                );
                if f.type_ == FlagType::Enum {
                    assert!(!f.values.is_empty(), "{ctx}: enum without values");
                }
                if !f.values.is_empty() {
                    assert!(
                        matches!(f.type_, FlagType::Enum | FlagType::Strings),
                        "{ctx}: values on a {} flag",
                        f.type_
                    );
                }
                if let Some(s) = f.since {
                    assert!(
                        s.0 > MIN_MINOR && s.0 <= MAX_MINOR,
                        "{ctx}: since {s} is outside the supported range"
                    );
                }
                if let (Some(d), Some(r)) = (f.deprecated, f.removed) {
                    assert!(d < r, "{ctx}: deprecated {d} not before removed {r}");
                }
                if let Some(rep) = &f.replacement {
                    let target = find(c, rep).unwrap_or_else(|| {
                        panic!("{ctx}: replacement --{rep} is not in the table")
                    });
                    assert!(
                        (MIN_MINOR..=MAX_MINOR).all(|m| target.accepted_in(m)),
                        "{ctx}: replacement --{rep} is not accepted in every supported version"
                    );
                }
                if f.removed.is_some() && f.replacement.is_none() {
                    assert!(
                        f.note.is_some(),
                        "{ctx}: removed without replacement needs a note saying what to do"
                    );
                }
            }
        }
    }

    #[test]
    fn policy_names_only_flags_the_table_knows() {
        use crate::flags::policy::{certificate_flags, displaces, protected};
        for c in Component::ALL {
            let names = protected(c)
                .iter()
                .copied()
                .chain(certificate_flags(c).iter().map(|(n, _)| *n))
                .chain(displaces(c, "authorization-config").iter().copied())
                .chain(
                    [
                        "enable-admission-plugins",
                        "disable-admission-plugins",
                        "runtime-config",
                    ]
                    .into_iter()
                    .filter(|_| c == Component::ApiServer),
                )
                .chain(["feature-gates"]);
            for n in names {
                let f = find(c, n).unwrap_or_else(|| panic!("{c}: policy names unknown --{n}"));
                assert!(
                    (MIN_MINOR..=MAX_MINOR).all(|m| f.accepted_in(m)),
                    "{c} --{n}"
                );
            }
        }
    }

    #[test]
    fn minor_parses_only_one_dot_versions() {
        assert_eq!(Minor::parse("1.24"), Some(Minor(24)));
        assert_eq!(Minor::parse("v1.7"), Some(Minor(7)));
        for bad in ["", "1", "2.1", "1.", "1.x", "1.24.0", "1.-2"] {
            assert_eq!(Minor::parse(bad), None, "{bad}");
        }
        assert_eq!(Minor(24).to_string(), "1.24");
    }

    #[test]
    fn lookup_follows_the_versions() {
        let api = Component::ApiServer;
        assert!(matches!(
            lookup(api, "bind-address", &v(36)),
            FlagStatus::Accepted { flag } if flag.type_ == FlagType::Ip
        ));
        match lookup(api, "insecure-port", &v(33)) {
            FlagStatus::Removed { flag, removed_in } => {
                assert_eq!(removed_in, Minor(24));
                assert_eq!(flag.replacement.as_deref(), Some("secure-port"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            lookup(api, "admission-control", &v(36)),
            FlagStatus::Deprecated {
                since: Minor(10),
                ..
            }
        ));
        assert!(matches!(
            lookup(api, "tls-curve-preferences", &v(35)),
            FlagStatus::NotYet {
                since: Minor(36),
                ..
            }
        ));
        assert!(lookup(api, "tls-curve-preferences", &v(36)).is_accepted());
        assert!(matches!(
            lookup(
                Component::ControllerManager,
                "concurrent-disruption-syncs",
                &v(36)
            ),
            FlagStatus::NotYet {
                since: Minor(37),
                ..
            }
        ));
    }

    #[test]
    fn unknown_flags_get_a_close_suggestion_or_none() {
        let api = Component::ApiServer;
        match lookup(api, "bind-adress", &v(36)) {
            FlagStatus::Unknown { suggestion, .. } => assert_eq!(suggestion, Some("bind-address")),
            other => panic!("{other:?}"),
        }
        match lookup(Component::Scheduler, "feature-gate", &v(33)) {
            FlagStatus::Unknown { suggestion, .. } => {
                assert_eq!(suggestion, Some("feature-gates"))
            }
            other => panic!("{other:?}"),
        }
        for garbage in ["xyzzy", "qqqqqqqqqqqq", "a", "zz-top-hat-trick"] {
            match lookup(api, garbage, &v(36)) {
                FlagStatus::Unknown { suggestion, .. } => {
                    assert_eq!(suggestion, None, "{garbage}")
                }
                other => panic!("{garbage}: {other:?}"),
            }
        }
        // Removed flags are never suggested: tls-curve-preference is close to a flag that 1.35
        // does not have yet.
        assert_eq!(
            suggest(api, "tls-curve-preference", &v(35)),
            None,
            "a flag that does not exist yet is not suggested"
        );
        assert_eq!(
            suggest(api, "tls-curve-preference", &v(36)),
            Some("tls-curve-preferences")
        );
    }

    #[test]
    fn unknown_flags_name_the_component_that_has_them() {
        match lookup(Component::ApiServer, "cluster-cidr", &v(36)) {
            FlagStatus::Unknown { elsewhere, .. } => {
                assert_eq!(elsewhere, vec![Component::ControllerManager])
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn known_lists_accepted_flags_only() {
        let k = known(Component::ApiServer, &v(35));
        assert!(k.iter().any(|f| f.name == "secure-port"));
        assert!(k.iter().any(|f| f.name == "admission-control"));
        assert!(!k.iter().any(|f| f.name == "insecure-port"));
        assert!(!k.iter().any(|f| f.name == "tls-curve-preferences"));
        assert!(k.windows(2).all(|w| w[0].name < w[1].name));
        assert!(known(Component::ApiServer, &v(36)).len() > k.len());
    }
}
