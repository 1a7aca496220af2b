//! Where pods and NetworkAttachmentDefinitions come from. The plugin sees only the
//! [`ClusterSource`] trait; [`DirSource`] is the embedded store's stand-in (a directory
//! of YAML/JSON objects, `<root>/<resource>/<namespace>/<name>.yaml|json`), and the
//! Kubernetes API backend implements the same trait.

use crate::error::{Error, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub annotations: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

impl Pod {
    /// The fields we use from a Pod object (API or store), whatever else it holds.
    pub fn from_object(namespace: &str, name: &str, v: &Value) -> Self {
        let strings = |m: &Value| -> BTreeMap<String, String> {
            m.as_object()
                .map(|a| {
                    a.iter()
                        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                        .collect()
                })
                .unwrap_or_default()
        };
        Self {
            namespace: namespace.into(),
            name: name.into(),
            uid: v["metadata"]["uid"].as_str().unwrap_or_default().into(),
            annotations: strings(&v["metadata"]["annotations"]),
            labels: strings(&v["metadata"]["labels"]),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkAttachmentDefinition {
    pub namespace: String,
    pub name: String,
    /// `spec.config`; empty means "the config in confDir with this name".
    pub config: String,
}

/// `Sync`: ADD asks it from more than one thread (the cluster network is resolved while
/// the pod is read).
pub trait ClusterSource: Sync {
    fn pod(&self, namespace: &str, name: &str) -> Result<Pod>;
    /// The NetworkAttachmentDefinition, `None` when there is none.
    fn network_attachment(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<NetworkAttachmentDefinition>>;
    /// Writes `k8s.v1.cni.cncf.io/network-status` on the pod.
    fn set_network_status(&self, namespace: &str, name: &str, status: &str) -> Result<()>;
    /// Every NetworkAttachmentDefinition of `namespace` in one request, where that is
    /// cheaper than one request each (`None`: ask for each by name). A shortcut only:
    /// callers ask by name after any error, so errors read as they always did.
    fn network_attachments(
        &self,
        _namespace: &str,
    ) -> Result<Option<Vec<NetworkAttachmentDefinition>>> {
        Ok(None)
    }
}

/// Stands in where no backend is configured: every lookup fails with
/// [`Error::NoClusterSource`], so ADD fails with "try again later" and DEL/GC work from the
/// cache alone.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unconfigured;

impl ClusterSource for Unconfigured {
    fn pod(&self, _: &str, _: &str) -> Result<Pod> {
        Err(Error::NoClusterSource)
    }
    fn network_attachment(&self, _: &str, _: &str) -> Result<Option<NetworkAttachmentDefinition>> {
        Err(Error::NoClusterSource)
    }
    fn set_network_status(&self, _: &str, _: &str, _: &str) -> Result<()> {
        Err(Error::NoClusterSource)
    }
}

/// Whether `e` says the source could not be asked at all (as opposed to answering that
/// something is wrong): lookups that have a fallback use it then.
pub fn is_unreachable(e: &Error) -> bool {
    match e {
        Error::StoreUnreachable { .. }
        | Error::NoClusterSource
        | Error::NotInCluster
        | Error::ApiUnreachable { .. }
        | Error::ApiClient(_) => true,
        // The server's own trouble, not an answer about the object (access refused is).
        Error::ApiStatus { status, .. } => !matches!(status, 401 | 403),
        _ => false,
    }
}

pub const PODS: &str = "pods";
pub const NADS: &str = "network-attachment-definitions";

/// The directory-of-objects store.
#[derive(Debug, Clone)]
pub struct DirSource {
    root: PathBuf,
}

/// Parses one object (YAML or JSON); errors carry the file and the parser's position.
pub fn parse_object(path: &Path, text: &str) -> Result<Value> {
    serde_saphyr::from_str::<Value>(text).map_err(|e| Error::ObjectParse {
        path: path.to_path_buf(),
        source: Box::new(e),
    })
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

impl DirSource {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn find(&self, resource: &str, namespace: &str, name: &str) -> Result<Option<PathBuf>> {
        if !self.root.is_dir() {
            return Err(Error::StoreUnreachable {
                root: self.root.clone(),
            });
        }
        let dir = self.root.join(resource).join(namespace);
        for ext in ["yaml", "yml", "json"] {
            let p = dir.join(format!("{name}.{ext}"));
            if p.is_file() {
                return Ok(Some(p));
            }
        }
        Ok(None)
    }

    fn read(&self, path: &Path) -> Result<Value> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ObjectRead {
            path: path.to_path_buf(),
            source,
        })?;
        parse_object(path, &text)
    }

    fn pod_path(&self, namespace: &str, name: &str) -> Result<PathBuf> {
        self.find(PODS, namespace, name)?
            .ok_or_else(|| Error::PodNotFound {
                namespace: namespace.into(),
                name: name.into(),
            })
    }

    /// Stores an object (for tests and the embedded control plane): `kind` decides where.
    pub fn put(&self, object: &Value) -> Result<PathBuf> {
        let invalid = |reason: String| Error::ObjectInvalid {
            what: "object".into(),
            reason,
        };
        let kind = str_at(object, &["kind"]).ok_or_else(|| invalid("no kind".into()))?;
        let resource = match kind {
            "Pod" => PODS,
            "NetworkAttachmentDefinition" => NADS,
            other => return Err(invalid(format!("unsupported kind {other}"))),
        };
        let name = str_at(object, &["metadata", "name"])
            .ok_or_else(|| invalid("no metadata.name".into()))?;
        let ns = str_at(object, &["metadata", "namespace"]).unwrap_or("default");
        let dir = self.root.join(resource).join(ns);
        std::fs::create_dir_all(&dir).map_err(|source| Error::ObjectWrite {
            path: dir.clone(),
            op: "create",
            source,
        })?;
        let path = dir.join(format!("{name}.json"));
        write_atomic(&path, format!("{object:#}").as_bytes()).map_err(|source| {
            Error::ObjectWrite {
                path: path.clone(),
                op: "write",
                source,
            }
        })?;
        Ok(path)
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    // Atomic by rename; not fsynced: what is written here (objects, network-status) is
    // regenerated by the next reconcile, and fsync costs milliseconds on every ADD.
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    std::fs::rename(&tmp, path)
}

impl ClusterSource for DirSource {
    fn pod(&self, namespace: &str, name: &str) -> Result<Pod> {
        let path = self.pod_path(namespace, name)?;
        Ok(Pod::from_object(namespace, name, &self.read(&path)?))
    }

    fn network_attachment(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<NetworkAttachmentDefinition>> {
        let Some(path) = self.find(NADS, namespace, name)? else {
            return Ok(None);
        };
        let v = self.read(&path)?;
        if let Some(api) = str_at(&v, &["apiVersion"]) {
            if api != "k8s.cni.cncf.io/v1" {
                return Err(Error::ObjectInvalid {
                    what: path.display().to_string(),
                    reason: format!("apiVersion {api:?} is not k8s.cni.cncf.io/v1"),
                });
            }
        }
        Ok(Some(NetworkAttachmentDefinition {
            namespace: namespace.into(),
            name: name.into(),
            config: str_at(&v, &["spec", "config"]).unwrap_or_default().into(),
        }))
    }

    fn set_network_status(&self, namespace: &str, name: &str, status: &str) -> Result<()> {
        let path = self.pod_path(namespace, name)?;
        let io = |path: &Path, op: &'static str| {
            let path = path.to_path_buf();
            move |source| Error::ObjectWrite { path, op, source }
        };
        // The object is rewritten whole: hold its lock so concurrent writers do not lose
        // each other's update (the embedded store's answer to a conflict).
        let lock_path = path.with_extension("lock");
        let lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io(&lock_path, "open the lock"))?;
        // SAFETY: flock on an fd owned by `lock`, which outlives the call.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io(&lock_path, "lock")(std::io::Error::last_os_error()));
        }
        let mut v = self.read(&path)?;
        let meta = v
            .as_object_mut()
            .map(|o| {
                o.entry("metadata")
                    .or_insert_with(|| Value::Object(Default::default()))
            })
            .and_then(|m| m.as_object_mut())
            .ok_or_else(|| Error::ObjectInvalid {
                what: path.display().to_string(),
                reason: "not an object".into(),
            })?;
        let ann = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(a) = ann.as_object_mut() {
            a.insert(
                crate::annotation::NETWORK_STATUS.into(),
                Value::String(status.into()),
            );
        }
        // Written back as JSON (valid YAML too) next to, or instead of, the original.
        let out = path.with_extension("json");
        write_atomic(&out, format!("{v:#}").as_bytes()).map_err(io(&out, "write"))?;
        if out != path {
            std::fs::remove_file(&path).map_err(io(&path, "remove"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_nad_with_unclosed_quote_points_at_the_line() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/seed/multus-bridge.yaml"
        ));
        let text = std::fs::read_to_string(path).expect("seed file");
        let e = parse_object(path, &text).expect_err("the seed's quote is never closed");
        assert!(
            matches!(&e, Error::ObjectParse { path: p, .. } if p == path),
            "{e:?}"
        );
        let msg = oxivirt_cni_spec::error::chain(&e);
        assert!(msg.contains("multus-bridge.yaml"), "{msg}");
        assert!(msg.contains("line 6"), "{msg}");
        // Closing the quote makes it a valid NAD whose config is the seed network.
        let fixed = text.trim_end().to_string() + "'\n";
        let v = parse_object(path, &fixed).expect("fixed");
        let config = str_at(&v, &["spec", "config"]).expect("config");
        let conf: Value = serde_json::from_str(config).expect("json config");
        assert_eq!(conf["name"], "multus-br");
        assert_eq!(conf["ipam"]["subnet"], "192.168.100.0/24");
    }
}
