//! CNI results, read in any supported version and written in the version asked for.

use crate::decode::parse_json;
use crate::error::CniError;
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

/// A route; written out by [`CniResult::to_value`], which knows which fields the
/// requested version has.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
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
    pub fn from_value(v: &Value) -> Result<Self, CniError> {
        let bytes = serde_json::to_vec(v).map_err(|e| CniError::decode(e.to_string()))?;
        Self::from_slice(&bytes)
    }

    pub fn from_slice(bytes: &[u8]) -> Result<Self, CniError> {
        parse_json(bytes, "result")
    }

    /// The result as the spec's JSON for `version`: `ips[].version` before 1.0.0, and the
    /// 1.1.0-only fields dropped before 1.1.0.
    pub fn to_value(&self, version: Version) -> Value {
        let full = version >= Version::V1_1_0;
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let mut m = Map::new();
                m.insert("name".into(), json!(i.name));
                if !i.mac.is_empty() {
                    m.insert("mac".into(), json!(i.mac));
                }
                if full {
                    if let Some(mtu) = i.mtu.filter(|m| *m > 0) {
                        m.insert("mtu".into(), json!(mtu));
                    }
                }
                if !i.sandbox.is_empty() {
                    m.insert("sandbox".into(), json!(i.sandbox));
                }
                if full {
                    if let Some(s) = &i.socket_path {
                        m.insert("socketPath".into(), json!(s));
                    }
                    if let Some(p) = &i.pci_id {
                        m.insert("pciID".into(), json!(p));
                    }
                }
                Value::Object(m)
            })
            .collect();
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut m = Map::new();
                if version.ips_have_version() {
                    let v = if ip.address.addr().is_ipv4() {
                        "4"
                    } else {
                        "6"
                    };
                    m.insert("version".into(), json!(v));
                }
                if let Some(i) = ip.interface {
                    m.insert("interface".into(), json!(i));
                }
                m.insert("address".into(), json!(ip.address.to_string()));
                if let Some(gw) = ip.gateway {
                    m.insert("gateway".into(), json!(gw.to_string()));
                }
                Value::Object(m)
            })
            .collect();
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|r| {
                let mut m = Map::new();
                m.insert("dst".into(), json!(r.dst.to_string()));
                if let Some(gw) = r.gw {
                    m.insert("gw".into(), json!(gw.to_string()));
                }
                // The route attributes came with 1.1.0.
                let attrs = [
                    ("mtu", r.mtu),
                    ("advmss", r.advmss),
                    ("priority", r.priority),
                    ("table", r.table),
                    ("scope", r.scope),
                ];
                for (key, value) in attrs.into_iter().filter(|_| full) {
                    if let Some(v) = value {
                        m.insert(key.into(), json!(v));
                    }
                }
                Value::Object(m)
            })
            .collect();
        let mut out = Map::new();
        out.insert("cniVersion".into(), json!(version.as_str()));
        if !interfaces.is_empty() {
            out.insert("interfaces".into(), Value::Array(interfaces));
        }
        if !ips.is_empty() {
            out.insert("ips".into(), Value::Array(ips));
        }
        if !routes.is_empty() {
            out.insert("routes".into(), Value::Array(routes));
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
