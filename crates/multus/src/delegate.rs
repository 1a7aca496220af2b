//! Delegates: one network a pod is attached to, its config (a conf or a conflist) with
//! the runtime parameters the plugin declared capabilities for, and running it.

use crate::annotation::NetworkSelection;
use crate::error::{self, Error, Result};
use oxivirt_cni_spec::exec::{exec_plugin, find_plugin, ExecArgs};
use oxivirt_cni_spec::{CniResult, Command};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// One network of the pod, ready to run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Delegate {
    /// `namespace/name` for a NetworkAttachmentDefinition, the config name otherwise.
    pub network: String,
    pub ifname: String,
    /// The network config or config list (with `name` set).
    pub conf: Value,
    /// The pod's cluster (default) network: its result is the one returned.
    pub cluster: bool,
    /// What the pod asked for this network (runtime parameters).
    #[serde(default)]
    pub ips: Vec<String>,
    pub mac: Option<String>,
    pub cni_args: Option<Map<String, Value>>,
    #[serde(default)]
    pub runtime: Map<String, Value>,
    /// Gateways this network's interface should carry the pod's default routes through.
    #[serde(default)]
    pub default_route: Vec<std::net::IpAddr>,
}

impl Delegate {
    pub fn new(
        network: String,
        ifname: String,
        conf: Value,
        cluster: bool,
        sel: Option<&NetworkSelection>,
    ) -> Self {
        let mut runtime = Map::new();
        if let Some(s) = sel {
            if let Some(p) = &s.port_mappings {
                runtime.insert("portMappings".into(), p.clone());
            }
            if let Some(b) = &s.bandwidth {
                runtime.insert("bandwidth".into(), b.clone());
            }
            if let Some(g) = &s.infiniband_guid {
                runtime.insert("infinibandGUID".into(), json!(g));
            }
            if let Some(d) = &s.device_id {
                runtime.insert("deviceID".into(), json!(d));
            }
        }
        Self {
            network,
            ifname,
            conf,
            cluster,
            ips: sel.map(|s| s.ips.clone()).unwrap_or_default(),
            mac: sel.and_then(|s| s.mac.clone()),
            cni_args: sel.and_then(|s| s.cni_args.clone()),
            runtime,
            default_route: sel.map(|s| s.default_route.clone()).unwrap_or_default(),
        }
    }

    fn is_list(&self) -> bool {
        self.conf.get("plugins").is_some_and(Value::is_array)
    }

    /// The config each plugin of the chain is run with: list name and version, runtime
    /// parameters for declared capabilities only, `cni-args` merged into `args.cni`.
    pub fn plugin_conf(&self, i: usize, prev: Option<&Value>) -> Option<Value> {
        let (mut obj, name, version) = if self.is_list() {
            let p = self
                .conf
                .get("plugins")?
                .as_array()?
                .get(i)?
                .as_object()?
                .clone();
            (
                p,
                self.conf.get("name").cloned(),
                self.conf.get("cniVersion").cloned(),
            )
        } else if i == 0 {
            (self.conf.as_object()?.clone(), None, None)
        } else {
            return None;
        };
        if let Some(n) = name {
            obj.insert("name".into(), n);
        }
        if let Some(v) = version {
            obj.insert("cniVersion".into(), v);
        }
        let caps: Map<String, Value> = obj
            .get("capabilities")
            .and_then(|c| c.as_object())
            .cloned()
            .unwrap_or_default();
        let declared = |k: &str| caps.get(k).and_then(Value::as_bool).unwrap_or(false);
        let mut rc = Map::new();
        if declared("ips") && !self.ips.is_empty() {
            rc.insert("ips".into(), json!(self.ips));
        }
        if declared("mac") {
            if let Some(m) = &self.mac {
                rc.insert("mac".into(), json!(m));
            }
        }
        for (k, v) in &self.runtime {
            if declared(k) {
                rc.insert(k.clone(), v.clone());
            }
        }
        if !rc.is_empty() {
            obj.insert("runtimeConfig".into(), Value::Object(rc));
        }
        if let Some(extra) = &self.cni_args {
            let args = obj.entry("args").or_insert_with(|| json!({}));
            if let Some(a) = args.as_object_mut() {
                let cni = a.entry("cni").or_insert_with(|| json!({}));
                if let Some(c) = cni.as_object_mut() {
                    for (k, v) in extra {
                        c.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        if let Some(p) = prev {
            obj.insert("prevResult".into(), p.clone());
        }
        Some(Value::Object(obj))
    }

    pub fn plugin_count(&self) -> usize {
        if self.is_list() {
            self.conf
                .get("plugins")
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
        } else {
            1
        }
    }
}

/// How delegates are run: the container and the plugin search path.
#[derive(Debug, Clone)]
pub struct Runner {
    pub container_id: String,
    pub netns: Option<PathBuf>,
    pub cni_args: String,
    pub paths: Vec<PathBuf>,
    /// Runs a plugin inside this process when it can (the plugin found in the path is
    /// this very binary): the same code, without a process start per delegate.
    pub in_process: Option<InProcess>,
}

/// See [`Runner::in_process`]: `None` means "exec it". A plugin that fails reports what
/// exec would: its CNI error as [`oxivirt_cni_spec::Error::Delegate`].
pub type InProcess = fn(
    plugin: &Path,
    cmd: Command,
    args: &ExecArgs<'_>,
    stdin: &[u8],
) -> Option<Result<Vec<u8>, oxivirt_cni_spec::Error>>;

impl Runner {
    pub fn path_string(&self) -> String {
        self.paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }

    fn exec(&self, d: &Delegate, cmd: Command, conf: &Value) -> Result<Vec<u8>> {
        let failed = |source| Error::Delegate {
            network: d.network.clone(),
            source,
        };
        let ty = conf.get("type").and_then(Value::as_str).unwrap_or_default();
        let plugin = find_plugin(ty, &self.paths).map_err(failed)?;
        let path = self.path_string();
        let args = ExecArgs {
            container_id: Some(&self.container_id),
            netns: self.netns.as_deref(),
            ifname: Some(&d.ifname),
            args: Some(&self.cni_args),
            path: Some(&path),
        };
        // A `Value` always serializes (its keys are strings).
        let stdin = conf.to_string().into_bytes();
        let out = match self
            .in_process
            .and_then(|run| run(&plugin, cmd, &args, &stdin))
        {
            Some(r) => r,
            None => exec_plugin(&plugin, cmd, &args, &stdin),
        };
        out.map_err(failed)
    }

    /// ADD through the chain; returns the final result as the last plugin printed it.
    pub fn add(&self, d: &Delegate) -> Result<Value> {
        let mut prev: Option<Value> = None;
        for i in 0..d.plugin_count() {
            let conf = d
                .plugin_conf(i, prev.as_ref())
                .ok_or_else(|| Error::DelegateConfig {
                    network: d.network.clone(),
                    reason: "bad plugin list",
                })?;
            let out = self.exec(d, Command::Add, &conf)?;
            let v: Value = oxivirt_cni_spec::parse_json(&out, "result").map_err(|source| {
                Error::DelegateResult {
                    network: d.network.clone(),
                    source,
                }
            })?;
            prev = Some(v);
        }
        prev.ok_or_else(|| Error::DelegateConfig {
            network: d.network.clone(),
            reason: "no plugins",
        })
    }

    /// DEL (reverse order) or CHECK through the chain, with the cached result. DEL goes
    /// on through the chain after a failure, so one failure leaks as little as possible,
    /// and reports every failure.
    pub fn del_or_check(&self, d: &Delegate, cmd: Command, result: Option<&Value>) -> Result<()> {
        let n = d.plugin_count();
        let order: Vec<usize> = if cmd == Command::Del {
            (0..n).rev().collect()
        } else {
            (0..n).collect()
        };
        let mut failed = Vec::new();
        for i in order {
            let Some(conf) = d.plugin_conf(i, result) else {
                continue;
            };
            // CHECK exists from 0.4.0 on; older delegates cannot be checked (as libcni).
            if cmd == Command::Check {
                let v = conf.get("cniVersion").and_then(Value::as_str).unwrap_or("");
                if oxivirt_cni_spec::Version::parse(v)
                    .map(|v| !v.has_check())
                    .unwrap_or(true)
                {
                    continue;
                }
            }
            if let Err(e) = self.exec(d, cmd, &conf) {
                if cmd != Command::Del {
                    return Err(e);
                }
                failed.push(e);
            }
        }
        error::collect(failed)
    }

    /// STATUS or GC for each plugin of the chain (GC gets `cni.dev/valid-attachments`).
    /// STATUS stops at the first plugin that is not available; GC asks every plugin and
    /// reports every failure.
    pub fn status_or_gc(&self, d: &Delegate, cmd: Command, valid: Option<&Value>) -> Result<()> {
        let mut failed = Vec::new();
        for i in 0..d.plugin_count() {
            let Some(mut conf) = d.plugin_conf(i, None) else {
                continue;
            };
            if let (Some(v), Some(o)) = (valid, conf.as_object_mut()) {
                o.insert("cni.dev/valid-attachments".into(), v.clone());
            }
            if let Err(e) = self.exec(d, cmd, &conf) {
                if cmd != Command::Gc {
                    return Err(e);
                }
                failed.push(e);
            }
        }
        error::collect(failed)
    }
}

/// Parses a delegate's result in whatever version it printed.
pub fn parse_result(d: &Delegate, v: &Value) -> Result<CniResult> {
    CniResult::from_value(v).map_err(|source| Error::DelegateResult {
        network: d.network.clone(),
        source,
    })
}

/// The network config files in `dir` (`*.conf`, `*.conflist`, `*.json`), in the lexical
/// order a runtime reads them.
pub fn config_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("conf" | "conflist" | "json")
                )
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Finds the config named `name` in `dir`, as Multus does for `clusterNetwork` and for
/// NADs without a config. Files that cannot be read or parsed are passed over, as Multus
/// does: the directory holds other runtimes' files, and the caller reports the network as
/// not found when none fits.
pub fn config_by_name(dir: &Path, name: &str) -> Option<Value> {
    let files = config_files(dir).ok()?;
    for f in files {
        let Ok(bytes) = std::fs::read(&f) else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        if v.get("name").and_then(Value::as_str) == Some(name)
            && v.get("type").and_then(Value::as_str) != Some("multus")
        {
            return Some(v);
        }
    }
    None
}

/// Reads a config file or the first config in a directory.
pub fn config_from_path(path: &Path) -> Result<Value> {
    let file = if path.is_dir() {
        config_files(path)
            .map_err(|source| Error::ConfDir {
                dir: path.to_path_buf(),
                source,
            })?
            .into_iter()
            .next()
            .ok_or_else(|| Error::NoNetworkConfig {
                dir: path.to_path_buf(),
            })?
    } else {
        path.to_path_buf()
    };
    let bytes = std::fs::read(&file).map_err(|source| Error::ConfRead {
        path: file.clone(),
        source,
    })?;
    oxivirt_cni_spec::parse_json(&bytes, &file.display().to_string()).map_err(Error::Spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotation::parse_networks;

    #[test]
    fn runtime_parameters_only_for_declared_capabilities() {
        let sel = &parse_networks(
            r#"[{"name":"n","ips":["10.1.1.5/24"],"mac":"02:00:00:00:00:01","cni-args":{"foo":"bar"},"portMappings":[{"hostPort":80,"containerPort":8080}]}]"#,
        )
        .expect("sel")[0];
        let list = json!({"cniVersion": "1.0.0", "name": "n", "plugins": [
            {"type": "bridge", "capabilities": {"ips": true, "mac": true}, "args": {"cni": {"keep": 1}}},
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]});
        let d = Delegate::new("default/n".into(), "net1".into(), list, false, Some(sel));
        assert_eq!(d.plugin_count(), 2);
        let first = d.plugin_conf(0, None).expect("first");
        assert_eq!(first["name"], "n");
        assert_eq!(first["cniVersion"], "1.0.0");
        assert_eq!(
            first["runtimeConfig"],
            json!({"ips": ["10.1.1.5/24"], "mac": "02:00:00:00:00:01"})
        );
        assert_eq!(first["args"]["cni"], json!({"keep": 1, "foo": "bar"}));
        let prev = json!({"cniVersion": "1.0.0"});
        let second = d.plugin_conf(1, Some(&prev)).expect("second");
        assert_eq!(
            second["runtimeConfig"],
            json!({"portMappings": [{"hostPort": 80, "containerPort": 8080}]})
        );
        assert_eq!(second["prevResult"], prev);
        assert!(d.plugin_conf(2, None).is_none());
        // Without declared capabilities nothing is injected.
        let plain = Delegate::new(
            "x".into(),
            "net2".into(),
            json!({"cniVersion": "0.3.1", "type": "macvlan"}),
            false,
            Some(sel),
        );
        assert!(plain
            .plugin_conf(0, None)
            .expect("conf")
            .get("runtimeConfig")
            .is_none());
    }
}
