//! What DEL needs, kept per container (`<cniDir>/<containerID>`, mode 0600) so DEL and GC
//! work with the API server or the store gone.

use crate::delegate::Delegate;
use crate::error::{Error, Result};
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

pub fn save(dir: &Path, e: &Entry) -> Result<()> {
    let io = |path: &Path, op: &'static str| {
        let path = path.to_path_buf();
        move |source| Error::Cache { path, op, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir, "create the directory of"))?;
    let path = path_of(dir, &e.container_id);
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec(e).map_err(|source| Error::CacheJson {
        path: path.clone(),
        source,
    })?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp, "create"))?;
    f.write_all(&bytes).map_err(io(&tmp, "write"))?;
    std::fs::rename(&tmp, &path).map_err(io(&path, "rename into place"))
}

/// The entry of container `id`; `None` when there is none.
pub fn load(dir: &Path, id: &str) -> Result<Option<Entry>> {
    let path = path_of(dir, id);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Cache {
                path,
                op: "read",
                source,
            })
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| Error::CacheJson { path, source })
}

/// Removes `path`; one that is already gone is removed.
pub(crate) fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

pub fn remove(dir: &Path, id: &str) -> Result<()> {
    let path = path_of(dir, id);
    remove_if_present(&path).map_err(|source| Error::Cache {
        path,
        op: "remove",
        source,
    })
}

/// Every cached container. Entries that cannot be read are skipped: GC cannot tear down
/// what it cannot read (DEL of that container falls back to the object store).
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
