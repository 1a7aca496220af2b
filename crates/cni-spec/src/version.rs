//! Spec versions this implementation speaks, and which are refused.

use crate::error::Error;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

impl Version {
    pub const ALL: [Version; 5] = [
        Self::V0_3_0,
        Self::V0_3_1,
        Self::V0_4_0,
        Self::V1_0_0,
        Self::V1_1_0,
    ];
    pub const LATEST: Version = Version::V1_1_0;

    pub fn as_str(self) -> &'static str {
        match self {
            Self::V0_3_0 => "0.3.0",
            Self::V0_3_1 => "0.3.1",
            Self::V0_4_0 => "0.4.0",
            Self::V1_0_0 => "1.0.0",
            Self::V1_1_0 => "1.1.0",
        }
    }

    /// Parses a `cniVersion`. An empty version means 0.1.0 in the spec, which is refused
    /// like every version before 0.3.0.
    pub fn parse(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "0.3.0" => Self::V0_3_0,
            "0.3.1" => Self::V0_3_1,
            "0.4.0" => Self::V0_4_0,
            "1.0.0" => Self::V1_0_0,
            "1.1.0" => Self::V1_1_0,
            "" | "0.1.0" | "0.2.0" => {
                return Err(Error::Version {
                    version: if s.is_empty() { "0.1.0 (absent)" } else { s }.to_string(),
                    reason: "is too old".into(),
                })
            }
            other => {
                return Err(Error::Version {
                    version: other.to_string(),
                    reason: "is not supported".into(),
                })
            }
        })
    }

    /// Results before 1.0.0 carry `ips[].version`.
    pub fn ips_have_version(self) -> bool {
        self < Self::V1_0_0
    }

    /// CHECK exists from 0.4.0 on.
    pub fn has_check(self) -> bool {
        self >= Self::V0_4_0
    }

    /// STATUS and GC exist from 1.1.0 on.
    pub fn has_status_gc(self) -> bool {
        self >= Self::V1_1_0
    }

    pub fn supported_list() -> String {
        Self::ALL
            .iter()
            .map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The VERSION command's answer.
    pub fn version_info_json() -> String {
        let list: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
        serde_json::json!({ "cniVersion": Self::LATEST.as_str(), "supportedVersions": list })
            .to_string()
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_and_refuses_old() {
        for v in Version::ALL {
            assert_eq!(Version::parse(v.as_str()).ok(), Some(v));
        }
        for bad in ["", "0.1.0", "0.2.0", "2.0.0", "abc", "1.0"] {
            let e = Version::parse(bad).expect_err(bad);
            assert!(matches!(e, Error::Version { .. }), "{bad}: {e}");
        }
    }
}
