//! What DEL needs, kept per container (`<cniDir>/<containerID>`, mode 0600) so DEL and GC
//! work with the API server or the store gone.

use crate::delegate::Delegate;
use oxivirt_cni_spec::CniError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CachedDelegate {
    pub delegate: Delegate,
    /// The result ADD printed, handed back to DEL and CHECK as `prevResult`.
    pub result: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub container_id: String,
    pub ifname: String,
    pub netns: Option<PathBuf>,
    pub cni_args: String,
    pub pod_namespace: String,
    pub pod_name: String,
    pub delegates: Vec<CachedDelegate>,
}

fn path_of(dir: &Path, id: &str) -> PathBuf {
    dir.join(id)
}

pub fn save(dir: &Path, e: &Entry) -> Result<(), CniError> {
    std::fs::create_dir_all(dir)
        .map_err(|err| CniError::io(format!("cache dir {}: {err}", dir.display())))?;
    let path = path_of(dir, &e.container_id);
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec(e).map_err(|err| CniError::io(err.to_string()))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|err| CniError::io(format!("cache {}: {err}", tmp.display())))?;
    f.write_all(&bytes)
        .map_err(|err| CniError::io(format!("cache {}: {err}", tmp.display())))?;
    std::fs::rename(&tmp, &path)
        .map_err(|err| CniError::io(format!("cache {}: {err}", path.display())))
}

pub fn load(dir: &Path, id: &str) -> Option<Entry> {
    let bytes = std::fs::read(path_of(dir, id)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub fn remove(dir: &Path, id: &str) -> Result<(), CniError> {
    match std::fs::remove_file(path_of(dir, id)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CniError::io(format!("cache {id}: {e}"))),
    }
}

/// Every cached container.
pub fn list(dir: &Path) -> Vec<Entry> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| e.path().extension().is_none())
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect()
}
