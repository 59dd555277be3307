//! Kubernetes versions kubeplane supports.

use std::fmt;

/// Oldest supported minor version (k8s-openapi 0.29 covers v1.33 to v1.37).
pub const MIN_MINOR: u32 = 33;
/// Newest supported minor version.
pub const MAX_MINOR: u32 = 37;

/// A Kubernetes release version, `v1.MINOR.PATCH[-pre]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeVersion {
    /// Minor version.
    pub minor: u32,
    /// Patch version.
    pub patch: u32,
    /// Pre-release or build suffix including its leading `-` or `+`, if any.
    pub suffix: String,
}

/// Why a version string was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// Not of the form `v1.MINOR.PATCH`.
    #[error("{0:?} is not a Kubernetes version; write it like v1.36.2")]
    Malformed(String),
    /// Outside the supported range.
    #[error(
        "Kubernetes {0} is not supported: kubeplane knows the flags of v1.{MIN_MINOR} to v1.{MAX_MINOR}; pick a version in that range"
    )]
    Unsupported(String),
}

impl KubeVersion {
    /// Parses `v1.36.2` or `1.36.2` (with an optional `-rc.1`-style suffix) and checks the
    /// supported range.
    pub fn parse(s: &str) -> Result<KubeVersion, VersionError> {
        let v = Self::parse_any(s)?;
        if !(MIN_MINOR..=MAX_MINOR).contains(&v.minor) {
            return Err(VersionError::Unsupported(v.to_string()));
        }
        Ok(v)
    }

    /// Parses without the range check.
    pub fn parse_any(s: &str) -> Result<KubeVersion, VersionError> {
        let malformed = || VersionError::Malformed(s.to_string());
        let body = s.strip_prefix('v').unwrap_or(s);
        let (core, suffix) = match body.find(['-', '+']) {
            Some(i) => (&body[..i], &body[i..]),
            None => (body, ""),
        };
        let mut parts = core.split('.');
        let (Some(major), Some(minor), Some(patch), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        let num = |p: &str| -> Result<u32, VersionError> {
            if p.is_empty() || p.len() > 6 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(malformed());
            }
            p.parse().map_err(|_| malformed())
        };
        if num(major)? != 1 {
            return Err(VersionError::Unsupported(s.to_string()));
        }
        if suffix.len() == 1
            || !suffix[1.min(suffix.len())..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'+')
        {
            return Err(malformed());
        }
        Ok(KubeVersion {
            minor: num(minor)?,
            patch: num(patch)?,
            suffix: suffix.to_string(),
        })
    }

    /// The image tag: `v1.MINOR.PATCH[suffix]`.
    pub fn tag(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v1.{}.{}{}", self.minor, self.patch, self.suffix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_and_without_v() {
        assert_eq!(KubeVersion::parse("v1.36.2").unwrap().tag(), "v1.36.2");
        assert_eq!(KubeVersion::parse("1.33.0").unwrap().minor, 33);
        assert_eq!(
            KubeVersion::parse("v1.37.0-rc.1").unwrap().tag(),
            "v1.37.0-rc.1"
        );
    }

    #[test]
    fn refuses_out_of_range_and_malformed() {
        assert!(matches!(
            KubeVersion::parse("v1.32.9"),
            Err(VersionError::Unsupported(_))
        ));
        assert!(matches!(
            KubeVersion::parse("v1.38.0"),
            Err(VersionError::Unsupported(_))
        ));
        assert!(matches!(
            KubeVersion::parse("v2.1.0"),
            Err(VersionError::Unsupported(_))
        ));
        for bad in [
            "",
            "v1.36",
            "1.36.x",
            "v1.36.2.1",
            "latest",
            "v1.36.2-",
            "v1..2",
        ] {
            assert!(
                matches!(KubeVersion::parse(bad), Err(VersionError::Malformed(_))),
                "{bad}"
            );
        }
        let msg = KubeVersion::parse("v1.30.1").unwrap_err().to_string();
        assert!(msg.contains("v1.33") && msg.contains("v1.37"), "{msg}");
    }
}
