//! Node policy for tenant-supplied IPAM configs. NetworkAttachmentDefinitions are tenant
//! input on a shared cluster and the plugin runs as root, so the node may restrict where
//! `dataDir` can point. The policy is a JSON file:
//! `{"hostLocalDataDirRoots": ["/var/lib/cni/networks"]}` at `/etc/oxivirt/cni-node.json`
//! (or the path in `OXIVIRT_CNI_NODE_CONFIG`). No file means no restriction, as the
//! reference plugins behave.

use crate::Error;
use oxivirt_cni_spec::parse_json;
use serde::Deserialize;
use std::path::{Component, Path, PathBuf};

pub const DEFAULT_PATH: &str = "/etc/oxivirt/cni-node.json";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePolicy {
    #[serde(default)]
    pub host_local_data_dir_roots: Vec<PathBuf>,
}

impl NodePolicy {
    pub fn load() -> Result<Self, Error> {
        let path = std::env::var_os("OXIVIRT_CNI_NODE_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
        match std::fs::read(&path) {
            Ok(bytes) => Ok(parse_json(
                &bytes,
                &format!("node policy {}", path.display()),
            )?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(Error::NodePolicy { path, source }),
        }
    }

    /// Checks a host-local `dataDir`: absolute, no `..`, and under an allowed root if any.
    pub fn check_data_dir(&self, dir: &Path) -> Result<(), Error> {
        if !dir.is_absolute() {
            return Err(Error::config(format!(
                "ipam.dataDir {:?} must be an absolute path",
                dir.display().to_string()
            )));
        }
        if dir.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(Error::config(format!(
                "ipam.dataDir {:?} must not contain '..'",
                dir.display().to_string()
            )));
        }
        if self.host_local_data_dir_roots.is_empty()
            || self
                .host_local_data_dir_roots
                .iter()
                .any(|root| dir.starts_with(root))
        {
            return Ok(());
        }
        Err(Error::config(format!(
            "ipam.dataDir {:?} is outside the directories this node allows ({})",
            dir.display().to_string(),
            self.host_local_data_dir_roots
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}
