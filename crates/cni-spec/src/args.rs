//! `CNI_ARGS`: `KEY=VALUE` pairs separated by `;`.

use crate::error::Error;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pairs: Vec<(String, String)>,
}

impl CniArgs {
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let mut pairs = Vec::new();
        for item in raw.split(';').filter(|s| !s.is_empty()) {
            let Some((k, v)) = item.split_once('=') else {
                return Err(Error::Env {
                    var: "CNI_ARGS".into(),
                    reason: format!("has an invalid pair {item:?}: expected KEY=VALUE"),
                });
            };
            if k.is_empty() {
                return Err(Error::Env {
                    var: "CNI_ARGS".into(),
                    reason: format!("has an empty key in {item:?}"),
                });
            }
            pairs.push((k.to_string(), v.to_string()));
        }
        Ok(Self { pairs })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    pub fn ignore_unknown(&self) -> bool {
        self.get("IgnoreUnknown")
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "t"))
    }

    /// Refuses keys outside `known` unless `IgnoreUnknown` is set, like the reference plugins.
    pub fn check_known(&self, known: &[&str]) -> Result<(), Error> {
        if self.ignore_unknown() {
            return Ok(());
        }
        for (k, _) in &self.pairs {
            if k != "IgnoreUnknown" && !known.contains(&k.as_str()) {
                return Err(Error::Env {
                    var: "CNI_ARGS".into(),
                    reason: format!(
                        "has an unknown argument {k:?} (known: {}; set IgnoreUnknown=1 to allow)",
                        known.join(", ")
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Arguments Kubernetes runtimes pass.
pub const K8S_KEYS: [&str; 4] = [
    "K8S_POD_NAMESPACE",
    "K8S_POD_NAME",
    "K8S_POD_INFRA_CONTAINER_ID",
    "K8S_POD_UID",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks() {
        let a = CniArgs::parse("IgnoreUnknown=1;IP=10.0.0.5;K8S_POD_NAME=p").expect("parse");
        assert_eq!(a.get("IP"), Some("10.0.0.5"));
        assert!(a.ignore_unknown());
        assert!(a.check_known(&["IP"]).is_ok());
        let b = CniArgs::parse("FOO=1").expect("parse");
        assert!(b.check_known(&["IP"]).is_err());
        assert!(CniArgs::parse("novalue").is_err());
        assert!(CniArgs::parse("=x").is_err());
        assert_eq!(CniArgs::parse("").expect("empty").pairs().len(), 0);
        assert_eq!(CniArgs::parse("A=b=c").expect("eq").get("A"), Some("b=c"));
    }
}
