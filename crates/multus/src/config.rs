//! The meta plugin's own network config (`"type": "multus"`), with Multus's fields.

use crate::error::{Error, Result};
use oxivirt_cni_spec::{parse_json, NetConf, Version};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::PathBuf;

fn default_conf_dir() -> PathBuf {
    PathBuf::from("/etc/cni/net.d")
}
fn default_cni_dir() -> PathBuf {
    PathBuf::from("/var/lib/cni/multus")
}
fn default_bin_dir() -> PathBuf {
    PathBuf::from("/opt/cni/bin")
}
fn default_multus_namespace() -> String {
    "kube-system".into()
}
fn default_system_namespaces() -> Vec<String> {
    vec!["kube-system".into()]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MultusConf {
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// Full delegate configs; the first is the cluster network (Multus's older form).
    #[serde(default)]
    pub delegates: Vec<Value>,
    #[serde(default)]
    pub cluster_network: Option<String>,
    #[serde(default)]
    pub default_networks: Vec<String>,
    #[serde(default = "default_multus_namespace")]
    pub multus_namespace: String,
    #[serde(default = "default_system_namespaces")]
    pub system_namespaces: Vec<String>,
    #[serde(default = "default_conf_dir")]
    pub conf_dir: PathBuf,
    #[serde(default = "default_cni_dir")]
    pub cni_dir: PathBuf,
    #[serde(default = "default_bin_dir")]
    pub bin_dir: PathBuf,
    #[serde(default, rename = "readinessindicatorfile")]
    pub readiness_indicator_file: Option<PathBuf>,
    #[serde(default)]
    pub namespace_isolation: bool,
    /// Comma-separated namespaces any pod may reference (with namespaceIsolation).
    #[serde(default)]
    pub global_namespaces: String,
    #[serde(default)]
    pub log_file: Option<PathBuf>,
    #[serde(default)]
    pub log_level: Option<String>,
    #[serde(default)]
    pub log_to_stderr: Option<bool>,
    #[serde(default)]
    pub capabilities: Map<String, Value>,
    #[serde(default)]
    pub runtime_config: Map<String, Value>,
    /// Where the embedded store's objects are (oxivirt's own field; see `source`).
    #[serde(default, rename = "oxivirtStore")]
    pub store: Option<PathBuf>,
}

/// A loaded meta-plugin config.
#[derive(Debug, Clone)]
pub struct Config {
    pub net: NetConf,
    pub version: Version,
    pub multus: MultusConf,
}

impl Config {
    pub fn load(bytes: &[u8]) -> Result<Self> {
        let (net, version) = NetConf::load(bytes).map_err(Error::Spec)?;
        let multus: MultusConf = parse_json(bytes, "multus config").map_err(Error::Spec)?;
        if multus.cluster_network.is_none() && multus.delegates.is_empty() {
            return Err(Error::NoClusterNetwork);
        }
        if let Some(level) = multus.log_level.as_deref() {
            if !matches!(level, "" | "debug" | "verbose" | "error" | "panic") {
                return Err(Error::LogLevel(level.to_string()));
            }
        }
        Ok(Self {
            net,
            version,
            multus,
        })
    }

    pub fn global_namespaces(&self) -> Vec<String> {
        self.multus
            .global_namespaces
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }
}
