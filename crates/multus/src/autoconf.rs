//! Auto-configuration, like Multus's `--multus-conf-file=auto`: wrap the runtime's first
//! network config in a `00-multus.conf` that makes it the cluster network, and remove it
//! again on request.

use crate::error::{Error, Result};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "00-multus.conf";

/// Where the generated config gets its pods and NetworkAttachmentDefinitions.
#[derive(Debug, Clone)]
pub enum Backend {
    Kubeconfig(PathBuf),
    Store(PathBuf),
}

/// The first config in `dir` (lexical order, as the runtime picks it), ours excluded.
pub fn first_config(dir: &Path) -> Result<(PathBuf, Value)> {
    let files = crate::delegate::config_files(dir).map_err(|source| Error::ConfDir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let ours = Some(FILE_NAME);
    for f in files
        .into_iter()
        .filter(|f| f.file_name().and_then(|n| n.to_str()) != ours)
    {
        let bytes = std::fs::read(&f).map_err(|source| Error::ConfRead {
            path: f.clone(),
            source,
        })?;
        let v: Value =
            oxivirt_cni_spec::parse_json(&bytes, &f.display().to_string()).map_err(Error::Spec)?;
        if matches!(
            v.get("type").and_then(Value::as_str),
            Some("multus" | "multus-shim")
        ) {
            continue;
        }
        return Ok((f, v));
    }
    Err(Error::NoNetworkConfig {
        dir: dir.to_path_buf(),
    })
}

/// The capabilities the wrapped network's plugins declare, so the runtime passes them on.
fn capabilities(conf: &Value) -> Map<String, Value> {
    let mut caps = Map::new();
    let plugins: Vec<&Value> = match conf.get("plugins").and_then(Value::as_array) {
        Some(list) => list.iter().collect(),
        None => vec![conf],
    };
    for p in plugins {
        if let Some(c) = p.get("capabilities").and_then(Value::as_object) {
            for (k, v) in c {
                if v.as_bool() == Some(true) {
                    caps.insert(k.clone(), Value::Bool(true));
                }
            }
        }
    }
    caps
}

/// Writes `<dir>/00-multus.conf` around the first config; returns its path.
pub fn generate(dir: &Path, backend: &Backend, cni_dir: &Path, bin_dir: &Path) -> Result<PathBuf> {
    let (_, conf) = first_config(dir)?;
    write(dir, &wrap(&conf, backend, dir, cni_dir, bin_dir))
}

/// The meta plugin's config around `conf` (the cluster network). The paths are as the
/// runtime sees them: a node agent in a container writes into `/host/etc/cni/net.d` a config
/// that names `/etc/cni/net.d`.
pub fn wrap(
    conf: &Value,
    backend: &Backend,
    conf_dir: &Path,
    cni_dir: &Path,
    bin_dir: &Path,
) -> Value {
    let version = conf
        .get("cniVersion")
        .cloned()
        .unwrap_or_else(|| json!("1.0.0"));
    let mut out = json!({
        "cniVersion": version,
        "name": "multus-cni-network",
        "type": "multus",
        "confDir": conf_dir.display().to_string(),
        "cniDir": cni_dir.display().to_string(),
        "binDir": bin_dir.display().to_string(),
        "delegates": [conf.clone()],
    });
    let caps = capabilities(conf);
    if let Some(o) = out.as_object_mut() {
        if !caps.is_empty() {
            o.insert("capabilities".into(), Value::Object(caps));
        }
        match backend {
            Backend::Kubeconfig(k) => o.insert("kubeconfig".into(), json!(k.display().to_string())),
            Backend::Store(s) => o.insert("oxivirtStore".into(), json!(s.display().to_string())),
        };
    }
    out
}

/// Makes a generated config the thick plugin's: the runtime runs `multus-shim`, which hands
/// the call (this whole config) to the daemon serving `<socket_dir>/multus.sock`.
pub fn thick(out: &mut Value, socket_dir: &Path) {
    if let Some(o) = out.as_object_mut() {
        o.insert("type".into(), json!("multus-shim"));
        o.insert("socketDir".into(), json!(socket_dir.display().to_string()));
    }
}

/// Writes `out` as `<dir>/00-multus.conf` (a temporary file renamed into place, so the
/// runtime never reads half of it); returns its path.
pub fn write(dir: &Path, out: &Value) -> Result<PathBuf> {
    let path = dir.join(FILE_NAME);
    let tmp = dir.join(format!(".{FILE_NAME}.tmp"));
    // `{:#}` is a `Value`'s pretty JSON, which cannot fail.
    let text = format!("{out:#}");
    let io = |path: &Path, op: &'static str| {
        let path = path.to_path_buf();
        move |source| Error::ConfWrite { path, op, source }
    };
    std::fs::write(&tmp, text).map_err(io(&tmp, "write"))?;
    std::fs::rename(&tmp, &path).map_err(io(&path, "rename into place"))?;
    Ok(path)
}

/// Removes the generated config; none is fine.
pub fn remove(dir: &Path) -> Result<()> {
    let path = dir.join(FILE_NAME);
    crate::cache::remove_if_present(&path).map_err(|source| Error::ConfWrite {
        path,
        op: "remove",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Generates the config in `dir` and reads back what was written.
    fn generated(dir: &Path, backend: Backend) -> (PathBuf, Value) {
        let p = generate(
            dir,
            &backend,
            Path::new("/var/lib/cni/multus"),
            Path::new("/opt/cni/bin"),
        )
        .expect("generate");
        let v = serde_json::from_slice(&std::fs::read(&p).expect("read")).expect("json");
        (p, v)
    }

    #[test]
    fn wraps_the_first_config_and_removes_it() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(
            dir.path().join("20-later.conf"),
            r#"{"cniVersion":"0.4.0","name":"later","type":"bridge"}"#,
        )
        .expect("w");
        std::fs::write(
            dir.path().join("10-flannel.conflist"),
            r#"{"cniVersion":"0.3.1","name":"cbr0","plugins":[{"type":"flannel"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#,
        )
        .expect("w");
        let (p, v) = generated(dir.path(), Backend::Store("/var/lib/oxivirt/store".into()));
        assert_eq!(v["type"], "multus");
        assert_eq!(v["cniVersion"], "0.3.1");
        assert_eq!(v["delegates"][0]["name"], "cbr0");
        assert_eq!(v["capabilities"], json!({"portMappings": true}));
        assert_eq!(v["oxivirtStore"], "/var/lib/oxivirt/store");
        // Ours is not wrapped on a second run.
        let (again, v) = generated(dir.path(), Backend::Kubeconfig("/etc/kube.conf".into()));
        assert_eq!(again, p);
        assert_eq!(v["delegates"][0]["name"], "cbr0");
        assert_eq!(v["kubeconfig"], "/etc/kube.conf");
        // And the result loads as a multus config.
        crate::config::Config::load(&std::fs::read(&p).expect("read")).expect("loads");
        remove(dir.path()).expect("remove");
        assert!(!p.exists());
        remove(dir.path()).expect("remove twice");
        let empty = tempfile::tempdir().expect("tmp");
        let e = generate(
            empty.path(),
            &Backend::Store("/s".into()),
            Path::new("/c"),
            Path::new("/b"),
        )
        .expect_err("nothing to wrap");
        assert!(
            matches!(&e, Error::NoNetworkConfig { dir } if dir == empty.path()),
            "{e:?}"
        );
    }

    #[test]
    fn a_thick_config_names_the_shim_and_its_socket_and_is_never_wrapped() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(
            dir.path().join("10-cluster.conf"),
            r#"{"cniVersion":"1.0.0","name":"cluster","type":"bridge"}"#,
        )
        .expect("w");
        let (_, conf) = first_config(dir.path()).expect("first");
        let mut out = wrap(
            &conf,
            &Backend::Kubeconfig("/etc/kube.conf".into()),
            dir.path(),
            Path::new("/var/lib/cni/multus"),
            Path::new("/opt/cni/bin"),
        );
        thick(&mut out, Path::new("/run/multus"));
        assert_eq!(out["type"], "multus-shim");
        assert_eq!(out["socketDir"], "/run/multus");
        assert_eq!(out["delegates"][0]["name"], "cluster");
        let path = write(dir.path(), &out).expect("write");
        // The shim's config sorts first, and is not taken for the default network.
        let (again, _) = first_config(dir.path()).expect("first");
        assert_ne!(again, path);
        // It is also a meta plugin config the daemon can load.
        crate::config::Config::load(&std::fs::read(&path).expect("read")).expect("loads");
    }
}
