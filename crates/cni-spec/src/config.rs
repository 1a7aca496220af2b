//! Network configurations (`.conf`) and configuration lists (`.conflist`).
//!
//! Every plugin reads its own typed config from stdin; the fields every plugin shares
//! live in [`NetConf`]. Parse errors name the offending field path and the position.

use crate::decode::parse_json;
use crate::error::Error;
use crate::result::Dns;
use crate::version::Version;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The `ipam` section as far as the calling plugin needs to know it.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct IpamConf {
    #[serde(rename = "type", default)]
    pub plugin_type: String,
}

/// Fields common to every plugin's network configuration.
/// Every field may be missing: [`NetConf::load`] says which missing ones are errors.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    #[serde(rename = "type")]
    pub plugin_type: String,
    pub capabilities: BTreeMap<String, bool>,
    pub ipam: Option<IpamConf>,
    pub dns: Option<Dns>,
    pub runtime_config: Option<Value>,
    pub prev_result: Option<Value>,
    pub args: Option<Value>,
}

impl NetConf {
    /// Parses and validates the common fields; returns the requested spec version too.
    pub fn load(bytes: &[u8]) -> Result<(Self, Version), Error> {
        let conf: NetConf = parse_json(bytes, "network config")?;
        let version = version_and_name("network config", &conf.cni_version, &conf.name)?;
        Ok((conf, version))
    }

    /// A runtime-config value, either from `runtimeConfig.<key>`.
    pub fn runtime(&self, key: &str) -> Option<&Value> {
        self.runtime_config.as_ref()?.get(key)
    }

    /// `args.cni.<key>` (the conventions document's per-attachment arguments).
    pub fn args_cni(&self, key: &str) -> Option<&Value> {
        self.args.as_ref()?.get("cni")?.get(key)
    }
}

/// The checks a config and a config list share: a supported `cniVersion` and a valid
/// `name`. `what` names the document in the error.
fn version_and_name(what: &str, cni_version: &str, name: &str) -> Result<Version, Error> {
    let version = Version::parse(cni_version)
        .map_err(|e| e.context(format!("{what}: field `cniVersion`")))?;
    validate_network_name(name)?;
    Ok(version)
}

/// A network name becomes a directory name (host-local's `dataDir/<name>`) and the plugin
/// runs as root, so it is restricted to the spec's character set.
pub fn validate_network_name(name: &str) -> Result<(), Error> {
    let refuse = |reason: String| Error::Field {
        what: "network config".into(),
        field: "name".into(),
        reason,
    };
    if name.is_empty() {
        return Err(refuse("is missing or empty".into()));
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !first_ok || !rest_ok || name.contains("..") {
        return Err(refuse(format!(
            "{name:?} is invalid: it must start with a letter or digit and contain only \
             letters, digits, '_', '.', '-' (no path separators or '..')"
        )));
    }
    Ok(())
}

/// A configuration list.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConfList {
    #[serde(default)]
    pub cni_version: String,
    #[serde(default)]
    pub cni_versions: Vec<String>,
    pub name: String,
    #[serde(default)]
    pub disable_check: bool,
    #[serde(default, rename = "disableGC")]
    pub disable_gc: bool,
    pub plugins: Vec<Value>,
}

impl NetConfList {
    pub fn load(bytes: &[u8]) -> Result<(Self, Version), Error> {
        let list: NetConfList = parse_json(bytes, "network config list")?;
        let version = version_and_name("network config list", &list.cni_version, &list.name)?;
        if list.plugins.is_empty() {
            return Err(Error::Field {
                what: "network config list".into(),
                field: "plugins".into(),
                reason: "is empty".into(),
            });
        }
        Ok((list, version))
    }

    /// The config handed to plugin `i`: the plugin's own object plus the list's name and version.
    pub fn plugin_config(&self, i: usize, prev_result: Option<&Value>) -> Option<Value> {
        let mut obj = self.plugins.get(i)?.as_object()?.clone();
        obj.insert("name".into(), Value::String(self.name.clone()));
        obj.insert("cniVersion".into(), Value::String(self.cni_version.clone()));
        if let Some(prev) = prev_result {
            obj.insert("prevResult".into(), prev.clone());
        }
        Some(Value::Object(obj))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_field_and_code() {
        let e = parse_json::<NetConf>(br#"{"name": 5}"#, "network config").expect_err("type");
        assert!(!e.is_malformed_json());
        let msg = crate::error::chain(&e);
        assert!(msg.contains("field `name`"), "{msg}");
        let e = parse_json::<NetConf>(br#"{"name": "x""#, "network config").expect_err("eof");
        assert!(e.is_malformed_json());
        let msg = crate::error::chain(&e);
        assert!(msg.contains("line 1"), "{msg}");
    }

    #[test]
    fn names_with_paths_refused() {
        for bad in ["", "../x", "a/b", "..", "-x", "a..b", "a b"] {
            assert!(validate_network_name(bad).is_err(), "{bad}");
        }
        for good in ["multus-br", "net_1", "a.b", "0net"] {
            assert!(validate_network_name(good).is_ok(), "{good}");
        }
    }
}
