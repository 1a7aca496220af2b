//! The CNI side of a pod sandbox, called exactly as a container runtime calls it: the
//! first network config of the config directory (by name), its plugin from the bin
//! directory, the pod's identity in `CNI_ARGS`, the config on stdin. And the node's default
//! network, written when the directory has none.

use crate::error::{Error, Result};
use serde_json::{json, Value};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;

/// The default network's file, written when the directory has no config.
pub const DEFAULT_FILE: &str = "10-oxivirt.conflist";
/// The default network's bridge (the pods' gateway on the node).
pub const DEFAULT_BRIDGE: &str = "oxv0";
/// One CNI call may take this long (an IPAM lock, a slow netlink) before it is given up.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// What a pod is, for `CNI_ARGS`.
#[derive(Debug, Clone)]
pub struct PodRef<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
}

/// The config files of `dir` a runtime considers, by name (the meta plugin's own rule).
fn config_files(dir: &Path) -> Result<Vec<PathBuf>> {
    oxivirt_multus_core::delegate::config_files(dir).map_err(|source| Error::Io {
        what: "read the CNI config dir",
        path: dir.to_path_buf(),
        source,
    })
}

/// The network config a runtime would use: the first file by name.
pub fn first_config(dir: &Path) -> Result<(PathBuf, Value)> {
    let path = config_files(dir)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::NoCniConfig {
            dir: dir.to_path_buf(),
        })?;
    let bytes = std::fs::read(&path).map_err(|source| Error::Io {
        what: "read",
        path: path.clone(),
        source,
    })?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| Error::BadCniConfig {
        path: path.clone(),
        why: e.to_string(),
    })?;
    Ok((path, v))
}

/// An IPv4 network in use on this machine, from the routing table (`/proc/net/route`).
fn routes_in_use() -> Vec<(Ipv4Addr, Ipv4Addr)> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // The kernel prints the address as a native-endian number in hex.
            let hex = |s: &str| {
                u32::from_str_radix(s, 16)
                    .ok()
                    .map(|v| Ipv4Addr::from(v.to_ne_bytes()))
            };
            Some((hex(f.get(1)?)?, hex(f.get(7)?)?))
        })
        .filter(|(_, mask)| u32::from(*mask) != 0)
        .collect()
}

/// The first of the usual pod subnets that overlaps no route of this machine.
pub fn pick_subnet(in_use: &[(Ipv4Addr, Ipv4Addr)]) -> String {
    // Podman's 10.88/16 first (what a user expects), then its neighbours.
    let candidates = [(10u8, 88u8), (10, 89), (10, 90), (10, 91), (172, 30)];
    for (a, b) in candidates {
        let net = u32::from(Ipv4Addr::new(a, b, 0, 0));
        let mask = 0xffff_0000u32;
        let overlaps = in_use.iter().any(|(dst, m)| {
            let (d, m) = (u32::from(*dst), u32::from(*m));
            let common = m & mask;
            d & common == net & common
        });
        if !overlaps {
            return format!("{a}.{b}.0.0/16");
        }
    }
    "10.88.0.0/16".into()
}

/// Writes the default network (when the directory has no config) and the
/// Multus-compatible config around the first network (when no multus config is there), so
/// a fresh machine runs VMs. Returns what was written.
pub fn ensure_default_network(
    conf_dir: &Path,
    bin_dir: &Path,
    data_dir: &Path,
) -> Result<Vec<PathBuf>> {
    let io = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { what, path, source }
    };
    std::fs::create_dir_all(conf_dir).map_err(io("create", conf_dir))?;
    let mut written = Vec::new();
    if config_files(conf_dir)?.is_empty() {
        let subnet = pick_subnet(&routes_in_use());
        let conf = json!({
            "cniVersion": "1.0.0",
            "name": "oxivirt",
            "plugins": [{
                "type": "bridge",
                "bridge": DEFAULT_BRIDGE,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": data_dir.join("cni/networks").display().to_string(),
                }
            }]
        });
        let path = conf_dir.join(DEFAULT_FILE);
        std::fs::write(&path, format!("{conf:#}\n")).map_err(io("write", &path))?;
        written.push(path);
    }
    let has_multus = config_files(conf_dir)?.iter().any(|p| {
        std::fs::read(p)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .is_some_and(|v| v.get("type").and_then(Value::as_str) == Some("multus"))
    });
    if !has_multus {
        let backend =
            oxivirt_multus_core::autoconf::Backend::Kubeconfig(data_dir.join("kubeconfig"));
        let path = oxivirt_multus_core::autoconf::generate(
            conf_dir,
            &backend,
            &data_dir.join("cni/multus"),
            bin_dir,
        )
        .map_err(|e| Error::DefaultNetwork(Box::new(e)))?;
        written.push(path);
    }
    Ok(written)
}

/// One CNI call's inputs.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub bin_dir: &'a Path,
    pub netns: &'a Path,
    pub ifname: &'a str,
    pub pod: PodRef<'a>,
}

impl Call<'_> {
    fn cni_args(&self) -> String {
        format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
            self.pod.namespace, self.pod.name, self.pod.uid, self.pod.uid
        )
    }

    /// The plugin of `type`: the binary of that name, or for `multus`, our meta plugin
    /// installed under its own name.
    fn plugin(&self, kind: &str) -> (PathBuf, Vec<String>) {
        let direct = self.bin_dir.join(kind);
        if kind == "multus" && !direct.exists() {
            let ours = self.bin_dir.join("oxivirt-multus");
            if ours.exists() {
                return (ours, vec!["multus".into()]);
            }
        }
        (direct, Vec::new())
    }

    async fn exec(&self, command: &'static str, network: &str, conf: &Value) -> Result<Value> {
        let kind = conf.get("type").and_then(Value::as_str).unwrap_or("");
        let (plugin, args) = self.plugin(kind);
        let fail = |message: String| Error::Cni {
            command,
            network: network.to_string(),
            plugin: plugin.clone(),
            message,
        };
        let mut child = tokio::process::Command::new(&plugin)
            .args(&args)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", self.pod.uid)
            .env("CNI_NETNS", self.netns)
            .env("CNI_IFNAME", self.ifname)
            .env("CNI_PATH", self.bin_dir)
            .env("CNI_ARGS", self.cni_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(format!("cannot run the plugin: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            let bytes = serde_json::to_vec(conf).map_err(|e| fail(e.to_string()))?;
            // A plugin that exits without reading its config fails on its own; its answer
            // is what counts.
            let _ = stdin.write_all(&bytes).await;
        }
        let out = tokio::time::timeout(CALL_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| fail(format!("no answer in {}s", CALL_TIMEOUT.as_secs())))?
            .map_err(|e| fail(e.to_string()))?;
        if out.status.success() {
            if out.stdout.iter().all(u8::is_ascii_whitespace) {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&out.stdout)
                .map_err(|e| fail(format!("the result is not JSON: {e}")));
        }
        // The CNI error object on stdout; stderr as a fallback.
        let err: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let msg = err.get("msg").and_then(Value::as_str).unwrap_or("");
        let details = err.get("details").and_then(Value::as_str).unwrap_or("");
        let text = match (msg, details) {
            ("", _) => {
                let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
                format!("{}: {stderr}", out.status)
            }
            (m, "") => m.to_string(),
            (m, d) => format!("{m}: {d}"),
        };
        Err(fail(text))
    }

    /// ADD of the network config `conf` (a single config or a list), returning the result.
    pub async fn add(&self, conf: &Value) -> Result<Value> {
        let network = conf.get("name").and_then(Value::as_str).unwrap_or("");
        match conf.get("plugins").and_then(Value::as_array) {
            None => self.exec("ADD", network, conf).await,
            Some(plugins) => {
                let mut prev = Value::Null;
                for p in plugins {
                    let c = list_member(conf, p, &prev);
                    prev = self.exec("ADD", network, &c).await?;
                }
                Ok(prev)
            }
        }
    }

    /// DEL of `conf`; a list's plugins in reverse, every one tried.
    pub async fn del(&self, conf: &Value) -> Result<()> {
        let network = conf.get("name").and_then(Value::as_str).unwrap_or("");
        match conf.get("plugins").and_then(Value::as_array) {
            None => self.exec("DEL", network, conf).await.map(drop),
            Some(plugins) => {
                let mut first_err = None;
                for p in plugins.iter().rev() {
                    let c = list_member(conf, p, &Value::Null);
                    if let Err(e) = self.exec("DEL", network, &c).await {
                        first_err.get_or_insert(e);
                    }
                }
                first_err.map_or(Ok(()), Err)
            }
        }
    }
}

/// A plugin of a list as the runtime hands it over: the list's name and version added,
/// the previous plugin's result as `prevResult`.
fn list_member(list: &Value, plugin: &Value, prev: &Value) -> Value {
    let mut c = plugin.clone();
    if let Some(o) = c.as_object_mut() {
        for k in ["name", "cniVersion"] {
            if let Some(v) = list.get(k) {
                o.insert(k.into(), v.clone());
            }
        }
        if !prev.is_null() {
            o.insert("prevResult".into(), prev.clone());
        }
    }
    c
}

/// The pod's addresses from an ADD result (`ips[].address`, without the prefix length):
/// IPv4 first, as the kubelet orders `podIPs`.
pub fn pod_ips(result: &Value) -> Vec<String> {
    let mut ips: Vec<String> = result
        .get("ips")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|ip| ip.get("address").and_then(Value::as_str))
                .map(|s| s.split('/').next().unwrap_or(s).to_string())
                .collect()
        })
        .unwrap_or_default();
    ips.sort_by_key(|ip| ip.contains(':'));
    ips
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subnet_avoids_the_machines_routes() {
        let r = |d: [u8; 4], m: [u8; 4]| (Ipv4Addr::from(d), Ipv4Addr::from(m));
        assert_eq!(pick_subnet(&[]), "10.88.0.0/16");
        assert_eq!(
            pick_subnet(&[r([10, 0, 0, 0], [255, 0, 0, 0])]),
            "172.30.0.0/16"
        );
        assert_eq!(
            pick_subnet(&[r([10, 88, 3, 0], [255, 255, 255, 0])]),
            "10.89.0.0/16"
        );
    }

    #[test]
    fn pod_ips_come_from_the_result_ipv4_first() {
        let res = json!({"ips": [{"address": "fd00::5/64"}, {"address": "10.88.0.5/16"}]});
        assert_eq!(pod_ips(&res), ["10.88.0.5", "fd00::5"]);
        assert!(pod_ips(&Value::Null).is_empty());
    }

    #[test]
    fn a_fresh_dir_gets_the_default_network_and_multus_around_it() {
        let dir = std::env::temp_dir().join(format!("oxivirt-node-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let data = Path::new("/var/lib/oxivirt");
        let written = ensure_default_network(&dir, Path::new("/opt/cni/bin"), data).expect("w");
        assert_eq!(written.len(), 2);
        let (first, multus) = first_config(&dir).expect("first");
        assert!(first.ends_with("00-multus.conf"));
        assert_eq!(multus["type"], "multus");
        assert_eq!(multus["kubeconfig"], "/var/lib/oxivirt/kubeconfig");
        assert_eq!(
            multus["delegates"][0]["plugins"][0]["bridge"],
            DEFAULT_BRIDGE
        );
        assert_eq!(multus["delegates"][0]["plugins"][0]["ipMasq"], true);
        // A second start writes nothing.
        assert!(
            ensure_default_network(&dir, Path::new("/opt/cni/bin"), data)
                .expect("again")
                .is_empty()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
