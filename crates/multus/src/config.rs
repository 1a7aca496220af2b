//! The meta plugin's own network config (`"type": "multus"`), with Multus's fields.

use crate::error::{Error, Result};
use oxivirt_cni_spec::{parse_json, NetConf, Version};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::PathBuf;

/// Every field may be missing; the defaults are Multus's.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct MultusConf {
    pub kubeconfig: Option<PathBuf>,
    /// Full delegate configs; the first is the cluster network (Multus's older form).
    pub delegates: Vec<Value>,
    pub cluster_network: Option<String>,
    pub default_networks: Vec<String>,
    pub multus_namespace: String,
    pub system_namespaces: Vec<String>,
    pub conf_dir: PathBuf,
    pub cni_dir: PathBuf,
    pub bin_dir: PathBuf,
    #[serde(rename = "readinessindicatorfile")]
    pub readiness_indicator_file: Option<PathBuf>,
    pub namespace_isolation: bool,
    /// Comma-separated namespaces any pod may reference (with namespaceIsolation).
    pub global_namespaces: String,
    pub log_file: Option<PathBuf>,
    pub log_level: Option<String>,
    pub log_to_stderr: Option<bool>,
    pub capabilities: Map<String, Value>,
    pub runtime_config: Map<String, Value>,
    /// Where the embedded store's objects are (oxivirt's own field; see `source`).
    #[serde(rename = "oxivirtStore")]
    pub store: Option<PathBuf>,
}

impl Default for MultusConf {
    fn default() -> Self {
        Self {
            kubeconfig: None,
            delegates: Vec::new(),
            cluster_network: None,
            default_networks: Vec::new(),
            multus_namespace: "kube-system".into(),
            system_namespaces: vec!["kube-system".into()],
            conf_dir: "/etc/cni/net.d".into(),
            cni_dir: "/var/lib/cni/multus".into(),
            bin_dir: "/opt/cni/bin".into(),
            readiness_indicator_file: None,
            namespace_isolation: false,
            global_namespaces: String::new(),
            log_file: None,
            log_level: None,
            log_to_stderr: None,
            capabilities: Map::new(),
            runtime_config: Map::new(),
            store: None,
        }
    }
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
