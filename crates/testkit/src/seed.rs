//! The seed's network definitions, shared by the tests and the bench so they measure and
//! check the same thing.

use serde_json::{json, Value};
use std::path::Path;

/// The seed's `multus-br` network (bridge `multus-bridge`, host-local in 192.168.100.0/24)
/// at CNI `version`, with its IPAM store in `data_dir`.
pub fn multus_br_conf(version: &str, data_dir: impl AsRef<Path>) -> Value {
    let data_dir = data_dir.as_ref().display().to_string();
    json!({"cniVersion": version, "name": "multus-br", "type": "bridge", "bridge": "multus-bridge",
           "ipam": {"type": "host-local", "subnet": "192.168.100.0/24", "dataDir": data_dir}})
}
