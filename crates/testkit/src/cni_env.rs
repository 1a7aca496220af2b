//! Shared set-up for the CNI integration tests: a "node" namespace standing in for the
//! host, a "pod" namespace, a private IPAM data directory, and runners for our plugins
//! and the reference ones.

use crate::{Cni, CniOutput, TestNs};
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
    pub data: crate::cleanup::TempDir,
}

#[allow(clippy::new_without_default)]
impl Env {
    pub fn new() -> Self {
        Self {
            node: TestNs::new("oxn"),
            pod: TestNs::new("oxp"),
            data: crate::cleanup::TempDir::new("cni").expect("tmp"),
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

    /// A call of `plugin` of `imp` from the node namespace against the pod namespace, with
    /// this test's host-local index.
    pub fn cni(&self, imp: Impl, plugin: &str) -> Cni<'_> {
        Cni::new(&imp.dir(), plugin)
            .in_node(&self.node)
            .netns(self.pod.path())
            .env("OXIVIRT_IPAM_INDEX_DIR", self.index_dir())
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
        self.cni(imp, plugin)
            .container(id)
            .ifname(ifname)
            .run(cmd, conf)
    }

    /// The pod network a runtime puts on `eth0` before Multus runs: our bridge on `cni0`
    /// with the default route, IPv4 or dual-stack.
    pub fn pod_network_conf(&self, dual_stack: bool) -> Value {
        let ranges = if dual_stack {
            json!([[{"subnet": "10.244.0.0/24"}], [{"subnet": "fd00:10:244::/64"}]])
        } else {
            json!([[{"subnet": "10.244.0.0/24"}]])
        };
        json!({"cniVersion": "1.0.0", "name": "pod-net", "type": "bridge", "bridge": "cni0",
            "isDefaultGateway": true,
            "ipam": {"type": "host-local", "dataDir": self.data_dir(), "ranges": ranges}})
    }

    /// Adds a network to the pod as its runtime and Multus do for a virt-launcher pod: our
    /// bridge plugin, container `launcher`, interface `ifname`. Panics if ADD fails.
    pub fn attach(&self, ifname: &str, conf: Value) -> Attachment {
        let out = self
            .run(Impl::Ours, "bridge", "ADD", LAUNCHER, ifname, &conf)
            .must(&format!("ADD {ifname}"));
        Attachment {
            ifname: ifname.into(),
            result: out.json(),
            conf,
        }
    }

    /// Takes an attachment away again (CNI DEL); panics if DEL fails.
    pub fn detach(&self, a: &Attachment) {
        self.run(Impl::Ours, "bridge", "DEL", LAUNCHER, &a.ifname, &a.conf)
            .must(&format!("DEL {}", a.ifname));
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

/// The container id [`Env::attach`] uses.
const LAUNCHER: &str = "launcher";

/// A network added to the pod by [`Env::attach`]: its config and the plugin's result.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub ifname: String,
    pub conf: Value,
    pub result: Value,
}

impl Attachment {
    /// The MAC of the pod's interface, as the result reports it.
    pub fn mac(&self) -> String {
        self.result["interfaces"]
            .as_array()
            .and_then(|ifs| ifs.iter().find(|i| i["name"] == self.ifname.as_str()))
            .and_then(|i| i["mac"].as_str())
            .unwrap_or_else(|| panic!("no MAC for {} in {}", self.ifname, self.result))
            .to_string()
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

/// Whether a link of `ip -j addr show` carries `addr` (`"10.0.0.1"`, or with the prefix
/// length, `"10.0.0.1/24"`).
pub fn has_addr(link: &Value, addr: &str) -> bool {
    let (local, prefix) = match addr.split_once('/') {
        Some((l, p)) => (l, p.parse::<u64>().ok()),
        None => (addr, None),
    };
    link["addr_info"].as_array().is_some_and(|a| {
        a.iter().any(|x| {
            x["local"] == local && prefix.is_none_or(|p| x["prefixlen"].as_u64() == Some(p))
        })
    })
}

/// Runs busybox `udhcpc` once on `dev` in `vm` and returns the lease it was bound with
/// (the environment its script saw); `out` is where that goes (a `.sh` beside it is the
/// script).
pub fn udhcpc(
    vm: &TestNs,
    dev: &str,
    out: &std::path::Path,
) -> std::collections::HashMap<String, String> {
    let script = out.with_extension("sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = bound ] && env > {}\nexit 0\n",
            out.display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let o = vm.exec(&[
        "busybox",
        "udhcpc",
        "-i",
        dev,
        "-n",
        "-q",
        "-f",
        "-t",
        "5",
        "-T",
        "1",
        "-s",
        &script.display().to_string(),
        "-O",
        "mtu",
        "-O",
        "staticroutes",
        "-O",
        "search",
    ]);
    assert!(
        o.status.success(),
        "udhcpc on {dev}: {} {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::read_to_string(out)
        .expect("lease env")
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// A VM stand-in's interface: `vm_side` (name, MAC) in `vm`, its veth peer `pod_side`
/// (name, bridge) a port of that bridge in the pod. `sysctls` are set in `vm` before the
/// interface comes up.
pub fn plug_vm(
    env: &Env,
    vm: &TestNs,
    pod_side: (&str, &str),
    vm_side: (&str, &str),
    sysctls: &[&str],
) {
    let ((port, bridge), (dev, mac)) = (pod_side, vm_side);
    env.pod.sh(&[
        "ip", "link", "add", port, "type", "veth", "peer", "name", dev, "netns", &vm.name,
    ]);
    env.pod
        .sh(&["ip", "link", "set", port, "master", bridge, "up"]);
    for s in sysctls {
        vm.sh(&["sysctl", "-qw", s]);
    }
    vm.sh(&["ip", "link", "set", dev, "address", mac, "up"]);
}

/// The seed's node: `multus-bridge` in the node namespace with an uplink `enp8s0` to an
/// "outside" namespace (returned) holding the article's gateway 192.168.100.1/24.
pub fn outside_world(env: &Env) -> TestNs {
    try_outside_world(&env.node, "oxo").expect("the outside world")
}

/// [`outside_world`] for `node`, with the outside namespace named after `prefix`; an
/// error names the command that failed.
pub fn try_outside_world(node: &TestNs, prefix: &str) -> std::io::Result<TestNs> {
    let outside = TestNs::try_new(prefix)?;
    let run = |ns: &TestNs, args: &[&str]| -> std::io::Result<()> {
        let out = ns.exec(args);
        if out.status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "{}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    };
    run(
        node,
        &["ip", "link", "add", "multus-bridge", "type", "bridge"],
    )?;
    run(node, &["ip", "link", "set", "multus-bridge", "up"])?;
    run(
        node,
        &[
            "ip",
            "link",
            "add",
            "enp8s0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &outside.name,
        ],
    )?;
    run(
        node,
        &[
            "ip",
            "link",
            "set",
            "enp8s0",
            "master",
            "multus-bridge",
            "up",
        ],
    )?;
    run(
        &outside,
        &["ip", "addr", "add", "192.168.100.1/24", "dev", "eth0"],
    )?;
    run(&outside, &["ip", "link", "set", "eth0", "up"])?;
    Ok(outside)
}
