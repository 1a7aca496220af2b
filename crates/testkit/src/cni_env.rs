//! Shared set-up for the CNI integration tests: a "node" namespace standing in for the
//! host, a "pod" namespace, a private IPAM data directory, and runners for our plugins
//! and the reference ones.

use crate::{run_cni, CniCall, CniOutput, TestNs};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The `oxivirt-cni` binary of this build.
pub fn our_bin() -> PathBuf {
    crate::built_binary("oxivirt-cni", "oxivirt-app-cni")
}

/// The meta plugin's binary of this build.
pub fn our_multus_bin() -> PathBuf {
    crate::built_binary("oxivirt-multus", "oxivirt-app-multus")
}

/// Our plugins under their CNI names (see [`crate::our_plugins_dir`]).
pub fn our_dir() -> PathBuf {
    crate::our_plugins_dir(&our_bin())
}

/// Which implementation to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    Ours,
    Reference,
}

impl Impl {
    pub fn dir(self) -> PathBuf {
        match self {
            Impl::Ours => our_dir(),
            Impl::Reference => crate::reference_plugins().expect("reference plugins"),
        }
    }
}

pub struct Env {
    pub node: TestNs,
    pub pod: TestNs,
    pub data: tempfile::TempDir,
}

#[allow(clippy::new_without_default)]
impl Env {
    pub fn new() -> Self {
        Self {
            node: TestNs::new("oxn"),
            pod: TestNs::new("oxp"),
            data: tempfile::tempdir().expect("tmp"),
        }
    }

    pub fn data_dir(&self) -> String {
        self.data.path().display().to_string()
    }

    /// The seed's `multus-br` network, at `version`, with `extra` fields merged in.
    pub fn seed_conf(&self, version: &str, extra: Value) -> Value {
        let mut c = json!({
            "cniVersion": version,
            "name": "multus-br",
            "type": "bridge",
            "bridge": "multus-bridge",
            "ipam": {"type": "host-local", "subnet": "192.168.100.0/24", "dataDir": self.data_dir()}
        });
        merge(&mut c, extra);
        c
    }

    /// Runs `plugin` of `imp` from the node namespace against the pod namespace.
    pub fn run(
        &self,
        imp: Impl,
        plugin: &str,
        cmd: &str,
        id: &str,
        ifname: &str,
        conf: &Value,
    ) -> CniOutput {
        let dir = imp.dir();
        let bin = dir.join(plugin);
        let netns = self.pod.path();
        let cni_path = dir.display().to_string();
        run_cni(
            &CniCall {
                plugin: &bin,
                command: cmd,
                container_id: id,
                netns: Some(&netns),
                ifname,
                args: "",
                cni_path: &cni_path,
                node: Some(&self.node),
                extra_env: vec![("OXIVIRT_IPAM_INDEX_DIR", self.index_dir())],
            },
            &conf.to_string(),
        )
    }

    /// Our host-local index for this test (instead of /run), removed with the data dir.
    pub fn index_dir(&self) -> String {
        self.data.path().join(".index").display().to_string()
    }

    /// IP files in the host-local store of `network`.
    pub fn allocations(&self, network: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.data.path().join(network))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Names of links in the node namespace.
    pub fn node_links(&self) -> Vec<String> {
        links(&self.node)
    }
}

pub fn links(ns: &TestNs) -> Vec<String> {
    let v = ns.ip_json(&["link", "show"]);
    let mut names: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l["ifname"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

pub fn merge(base: &mut Value, extra: Value) {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        for (k, v) in e {
            if v.is_null() {
                b.remove(&k);
            } else if let (Some(inner), Value::Object(o)) = (b.get_mut(&k), &v) {
                // An empty object replaces (e.g. `"ipam": {}` for L2-only).
                if inner.is_object() && !o.is_empty() {
                    merge(inner, v);
                    continue;
                }
                b.insert(k, v);
            } else {
                b.insert(k, v);
            }
        }
    }
}

/// Replaces what differs run to run (MACs, veth names) so results compare.
pub fn normalise(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        ("mac", Value::String(_)) => json!("<mac>"),
                        ("name", Value::String(s)) if s.starts_with("veth") => json!("<veth>"),
                        ("sandbox", Value::String(_)) => json!("<netns>"),
                        _ => normalise(v),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalise).collect()),
        other => other.clone(),
    }
}

/// The state a bridge attachment leaves: links, masters, MTUs, flags, addresses, routes,
/// bridge port options and sysctls, without the random parts.
pub fn bridge_state(env: &Env, bridge: &str, ifname: &str) -> Value {
    let addrs = |ns: &TestNs, dev: &str| -> Value {
        let v = ns.ip_json(&["-d", "addr", "show", "dev", dev]);
        let l = &v[0];
        let mut a: Vec<String> = l["addr_info"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|x| x["scope"] != "link")
                    .map(|x| format!("{}/{}", x["local"].as_str().unwrap_or(""), x["prefixlen"]))
                    .collect()
            })
            .unwrap_or_default();
        a.sort();
        json!({
            "mtu": l["mtu"],
            "up": l["flags"].as_array().is_some_and(|f| f.iter().any(|x| x == "UP")),
            "operstate": l["operstate"],
            "promiscuity": l["promiscuity"],
            "kind": l["linkinfo"]["info_kind"],
            "addrs": a,
        })
    };
    let ports = env.node.ip_json(&["-d", "link", "show", "master", bridge]);
    let ports: Vec<Value> = ports
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    let s = &p["linkinfo"]["info_slave_data"];
                    json!({
                        "kind": p["linkinfo"]["info_kind"],
                        "mtu": p["mtu"],
                        "up": p["flags"].as_array().is_some_and(|f| f.iter().any(|x| x == "UP")),
                        "hairpin": s["hairpin"],
                        "isolated": s["isolated"],
                        "learning": s["learning"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let routes = |ns: &TestNs, fam: &str| -> Vec<String> {
        let v = ns.ip_json(&[fam, "route", "show"]);
        let mut r: Vec<String> = v
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|r| r["dst"] != "fe80::/64" && r["protocol"] != "kernel" || fam == "-4")
                    .map(|r| format!("{} via {} dev {}", r["dst"], r["gateway"], r["dev"]))
                    .collect()
            })
            .unwrap_or_default();
        r.sort();
        r
    };
    let sysctl = |ns: &TestNs, key: &str| -> String {
        ns.sh(&["cat", &format!("/proc/sys/{}", key.replace('.', "/"))])
            .trim()
            .to_string()
    };
    json!({
        "bridge": addrs(&env.node, bridge),
        "ports": ports,
        "container": addrs(&env.pod, ifname),
        "routes4": routes(&env.pod, "-4"),
        "routes6": routes(&env.pod, "-6"),
        "node_ip_forward": sysctl(&env.node, "net.ipv4.ip_forward"),
        "container_accept_dad": sysctl(&env.pod, &format!("net.ipv6.conf.{ifname}.accept_dad")),
        "container_arp_notify": sysctl(&env.pod, &format!("net.ipv4.conf.{ifname}.arp_notify")),
    })
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// Asserts a plugin call succeeded, showing what it printed if not.
#[track_caller]
pub fn must(out: CniOutput, what: &str) -> CniOutput {
    assert!(
        out.ok,
        "{what} failed: stdout={} stderr={}",
        out.stdout, out.stderr
    );
    out
}
