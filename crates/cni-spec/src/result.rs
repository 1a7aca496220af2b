//! CNI results, read in any supported version and written in the version asked for.

use crate::decode::parse_json;
use crate::error::Error;
use crate::version::Version;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::net::IpAddr;

// Missing `Option` fields read as `None` without `#[serde(default)]`; the other optional
// fields carry it.

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub name: String,
    #[serde(default)]
    pub mac: String,
    pub mtu: Option<u32>,
    #[serde(default)]
    pub sandbox: String,
    pub socket_path: Option<String>,
    #[serde(rename = "pciID")]
    pub pci_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IpConfig {
    pub address: IpNet,
    pub gateway: Option<IpAddr>,
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
    // The route attributes below came with spec 1.1.0 and are dropped for older versions.
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    pub priority: Option<u32>,
    pub table: Option<u32>,
    pub scope: Option<u32>,
}

impl Route {
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Self {
        Self {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

/// Adds `key` to `m` when there is a value: the spec leaves out what is not set.
fn put(m: &mut Map<String, Value>, key: &str, value: Option<impl Into<Value>>) {
    if let Some(v) = value {
        m.insert(key.into(), v.into());
    }
}

impl Interface {
    fn json(&self, version: Version) -> Value {
        let full = version >= Version::V1_1_0;
        let mut m = Map::new();
        m.insert("name".into(), json!(self.name));
        put(
            &mut m,
            "mac",
            Some(&self.mac).filter(|s| !s.is_empty()).cloned(),
        );
        put(&mut m, "mtu", self.mtu.filter(|m| full && *m > 0));
        put(
            &mut m,
            "sandbox",
            Some(&self.sandbox).filter(|s| !s.is_empty()).cloned(),
        );
        put(
            &mut m,
            "socketPath",
            self.socket_path.clone().filter(|_| full),
        );
        put(&mut m, "pciID", self.pci_id.clone().filter(|_| full));
        Value::Object(m)
    }
}

impl IpConfig {
    fn json(&self, version: Version) -> Value {
        let family = if self.address.addr().is_ipv4() {
            "4"
        } else {
            "6"
        };
        let mut m = Map::new();
        put(
            &mut m,
            "version",
            Some(family).filter(|_| version.ips_have_version()),
        );
        put(&mut m, "interface", self.interface);
        m.insert("address".into(), json!(self.address.to_string()));
        put(&mut m, "gateway", self.gateway.map(|gw| gw.to_string()));
        Value::Object(m)
    }
}

impl Route {
    fn json(&self, version: Version) -> Value {
        // The route attributes came with 1.1.0.
        let full = version >= Version::V1_1_0;
        let mut m = Map::new();
        m.insert("dst".into(), json!(self.dst.to_string()));
        put(&mut m, "gw", self.gw.map(|gw| gw.to_string()));
        let attrs = [
            ("mtu", self.mtu),
            ("advmss", self.advmss),
            ("priority", self.priority),
            ("table", self.table),
            ("scope", self.scope),
        ];
        for (key, value) in attrs {
            put(&mut m, key, value.filter(|_| full));
        }
        Value::Object(m)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self == &Dns::default()
    }
}

/// A result in version-neutral form (the 1.1.0 model). Every field may be missing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

impl CniResult {
    /// Reads a result of any supported version (`prevResult`, a delegate's stdout).
    pub fn from_value(v: &Value) -> Result<Self, Error> {
        let bytes = serde_json::to_vec(v).map_err(|source| Error::Json {
            what: "result".into(),
            path: String::new(),
            source,
        })?;
        Self::from_slice(&bytes)
    }

    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        parse_json(bytes, "result")
    }

    /// The result as the spec's JSON for `version`: `ips[].version` before 1.0.0, and the
    /// 1.1.0-only fields dropped before 1.1.0.
    pub fn to_value(&self, version: Version) -> Value {
        let mut out = Map::new();
        out.insert("cniVersion".into(), json!(version.as_str()));
        let lists = [
            (
                "interfaces",
                self.interfaces.iter().map(|i| i.json(version)).collect(),
            ),
            ("ips", self.ips.iter().map(|ip| ip.json(version)).collect()),
            (
                "routes",
                self.routes.iter().map(|r| r.json(version)).collect(),
            ),
        ];
        for (key, list) in lists {
            put(
                &mut out,
                key,
                Some(list).filter(|l: &Vec<Value>| !l.is_empty()),
            );
        }
        out.insert(
            "dns".into(),
            serde_json::to_value(&self.dns).unwrap_or_else(|_| json!({})),
        );
        Value::Object(out)
    }

    pub fn to_json(&self, version: Version) -> String {
        self.to_value(version).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "br0".into(),
                    mac: "aa:bb:cc:dd:ee:01".into(),
                    ..Default::default()
                },
                Interface {
                    name: "eth0".into(),
                    mac: "aa:bb:cc:dd:ee:02".into(),
                    mtu: Some(1500),
                    sandbox: "/run/netns/x".into(),
                    ..Default::default()
                },
            ],
            ips: vec![
                IpConfig {
                    address: "192.168.100.2/24".parse().expect("net"),
                    gateway: Some("192.168.100.1".parse().expect("ip")),
                    interface: Some(1),
                },
                IpConfig {
                    address: "fd00::2/64".parse().expect("net"),
                    gateway: None,
                    interface: Some(1),
                },
            ],
            routes: vec![Route {
                mtu: Some(1400),
                ..Route::new("0.0.0.0/0".parse().expect("net"), None)
            }],
            dns: Dns {
                nameservers: vec!["10.0.0.10".into()],
                ..Default::default()
            },
        }
    }

    #[test]
    fn converts_to_every_version() {
        let r = sample();
        for v in Version::ALL {
            insta::assert_json_snapshot!(format!("result_{}", v.as_str()), r.to_value(v));
        }
    }

    #[test]
    fn round_trips_through_every_version() {
        let r = sample();
        let back = CniResult::from_value(&r.to_value(Version::V1_1_0)).expect("parse");
        assert_eq!(back, r);
        let old = CniResult::from_value(&r.to_value(Version::V0_3_1)).expect("parse");
        assert_eq!(old.ips, r.ips);
        assert_eq!(old.interfaces[1].mtu, None);
    }
}
