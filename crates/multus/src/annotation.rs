//! `k8s.v1.cni.cncf.io/networks`: the text form `[ns/]name[@ifname], …` and the JSON list,
//! validated, and the interface names Multus gives them.

use oxivirt_cni_spec::env::validate_ifname;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::net::IpAddr;

pub const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
pub const NETWORK_STATUS: &str = "k8s.v1.cni.cncf.io/network-status";
pub const DEFAULT_NETWORK: &str = "v1.multus-cni.io/default-network";

/// An invalid networks or default-network annotation: which one, and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("annotation {annotation}")]
pub struct AnnotationError {
    pub annotation: &'static str,
    #[source]
    pub problem: Problem,
}

/// What is wrong with an annotation; entries are counted from 0 in the order written.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("invalid JSON network list")]
    Json(#[source] serde_json::Error),
    #[error("empty entry in the network list")]
    EmptyEntry,
    #[error("{0:?} is not of the form [namespace/]name[@interface]")]
    Form(String),
    /// A field of one entry: `field` is name, namespace, mac or "ips entry".
    #[error("entry {index} ({name:?}): {field} {value:?} {reason}")]
    Entry {
        index: usize,
        name: String,
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    /// An interface name Linux refuses (`reason` says why, naming it).
    #[error("entry {index} ({name:?}): interface {reason}")]
    Interface {
        index: usize,
        name: String,
        reason: String,
    },
    #[error("more than one IPv4 or IPv6 default-route gateway requested")]
    DefaultRoutes,
    #[error("interface name {0:?} is used twice")]
    InterfaceTwice(String),
    #[error("an interface name cannot be set for the default network")]
    DefaultNetworkInterface,
    #[error("exactly one network must be named")]
    DefaultNetworkCount,
}

fn err(annotation: &'static str, problem: Problem) -> AnnotationError {
    AnnotationError {
        annotation,
        problem,
    }
}

/// One requested network.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSelection {
    pub name: String,
    pub namespace: Option<String>,
    pub interface: Option<String>,
    #[serde(default)]
    pub ips: Vec<String>,
    pub mac: Option<String>,
    #[serde(default, rename = "default-route")]
    pub default_route: Vec<IpAddr>,
    #[serde(rename = "cni-args")]
    pub cni_args: Option<Map<String, Value>>,
    #[serde(rename = "portMappings")]
    pub port_mappings: Option<Value>,
    pub bandwidth: Option<Value>,
    #[serde(rename = "infiniband-guid")]
    pub infiniband_guid: Option<String>,
    #[serde(rename = "deviceID")]
    pub device_id: Option<String>,
}

/// DNS-1123 subdomain: what Kubernetes allows for object names and namespaces.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Parses the networks annotation (either form) and validates every entry.
pub fn parse_networks(value: &str) -> Result<Vec<NetworkSelection>, AnnotationError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    let list = if trimmed.starts_with('[') {
        serde_json::from_str::<Vec<NetworkSelection>>(trimmed)
            .map_err(|e| err(NETWORKS, Problem::Json(e)))?
    } else {
        trimmed
            .split(',')
            .map(|item| parse_text_item(item.trim()))
            .collect::<Result<_, _>>()
            .map_err(|p| err(NETWORKS, p))?
    };
    validate(&list).map_err(|p| err(NETWORKS, p))?;
    Ok(list)
}

fn parse_text_item(item: &str) -> Result<NetworkSelection, Problem> {
    if item.is_empty() {
        return Err(Problem::EmptyEntry);
    }
    let (rest, interface) = match item.split_once('@') {
        Some((r, i)) => (r, Some(i.to_string())),
        None => (item, None),
    };
    let (namespace, name) = match rest.split_once('/') {
        Some((ns, n)) => (Some(ns.to_string()), n.to_string()),
        None => (None, rest.to_string()),
    };
    if name.contains('/') || interface.as_deref().is_some_and(|i| i.contains('@')) {
        return Err(Problem::Form(item.to_string()));
    }
    Ok(NetworkSelection {
        name,
        namespace,
        interface,
        ..Default::default()
    })
}

fn validate(list: &[NetworkSelection]) -> Result<(), Problem> {
    let mut v4_default = 0;
    let mut v6_default = 0;
    for (index, n) in list.iter().enumerate() {
        let bad = |field: &'static str, value: &str, reason: &'static str| Problem::Entry {
            index,
            name: n.name.clone(),
            field,
            value: value.to_string(),
            reason,
        };
        const NOT_DNS1123: &str = "is not a valid DNS-1123 subdomain";
        if !is_dns1123_subdomain(&n.name) {
            return Err(bad("name", &n.name, NOT_DNS1123));
        }
        if let Some(ns) = &n.namespace {
            if !is_dns1123_subdomain(ns) {
                return Err(bad("namespace", ns, NOT_DNS1123));
            }
        }
        if let Some(ifname) = &n.interface {
            validate_ifname(ifname).map_err(|e| Problem::Interface {
                index,
                name: n.name.clone(),
                // The spec layer's reason names the interface; its `CNI_IFNAME` does not
                // apply to an annotation.
                reason: match e {
                    oxivirt_cni_spec::Error::Env { reason, .. } => reason,
                    other => other.to_string(),
                },
            })?;
        }
        if let Some(mac) = &n.mac {
            if !is_mac(mac) {
                return Err(bad("mac", mac, "is not a MAC address"));
            }
        }
        for ip in &n.ips {
            let bare = ip.split('/').next().unwrap_or("");
            if bare.parse::<IpAddr>().is_err() {
                return Err(bad("ips entry", ip, "is not an IP address"));
            }
        }
        for gw in &n.default_route {
            if gw.is_ipv4() {
                v4_default += 1;
            } else {
                v6_default += 1;
            }
        }
    }
    if v4_default > 1 || v6_default > 1 {
        return Err(Problem::DefaultRoutes);
    }
    Ok(())
}

fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && u8::from_str_radix(p, 16).is_ok())
}

/// Interface names as Multus assigns them: the requested name, else `net<i>` where `i`
/// counts every secondary entry from 1. Duplicates (with each other or `cluster_if`) are
/// refused.
pub fn interface_names(
    list: &[NetworkSelection],
    cluster_if: &str,
) -> Result<Vec<String>, AnnotationError> {
    let mut names: Vec<String> = Vec::with_capacity(list.len());
    for (i, n) in list.iter().enumerate() {
        let name = n
            .interface
            .clone()
            .unwrap_or_else(|| format!("net{}", i + 1));
        if name == cluster_if || names.contains(&name) {
            return Err(err(NETWORKS, Problem::InterfaceTwice(name)));
        }
        names.push(name);
    }
    Ok(names)
}

/// `v1.multus-cni.io/default-network`: one network, `[ns/]name` (an interface is not
/// allowed: the cluster network is always `eth0`).
pub fn parse_default_network(value: &str) -> Result<NetworkSelection, AnnotationError> {
    let list = parse_networks(value).map_err(|e| err(DEFAULT_NETWORK, e.problem))?;
    match list.as_slice() {
        [one] if one.interface.is_none() => Ok(one.clone()),
        [_] => Err(err(DEFAULT_NETWORK, Problem::DefaultNetworkInterface)),
        _ => Err(err(DEFAULT_NETWORK, Problem::DefaultNetworkCount)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxivirt_cni_spec::error::chain;

    #[test]
    fn text_form() {
        let l = parse_networks("multus-br, other/macvlan-net@eth5 ,plain").expect("parse");
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].name, "multus-br");
        assert_eq!(l[1].namespace.as_deref(), Some("other"));
        assert_eq!(l[1].interface.as_deref(), Some("eth5"));
        assert_eq!(
            interface_names(&l, "eth0").expect("names"),
            ["net1", "eth5", "net3"]
        );
        assert!(parse_networks("").expect("empty").is_empty());
    }

    #[test]
    fn json_form() {
        let l = parse_networks(
            r#"[{"name":"multus-br","interface":"ext0","ips":["192.168.100.50/24"],"mac":"02:00:00:00:00:01","default-route":["192.168.100.1"],"cni-args":{"foo":"bar"}},{"name":"b","namespace":"ns1"}]"#,
        )
        .expect("parse");
        assert_eq!(l[0].ips, ["192.168.100.50/24"]);
        assert_eq!(l[0].default_route.len(), 1);
        assert_eq!(
            interface_names(&l, "eth0").expect("names"),
            ["ext0", "net2"]
        );
    }

    #[test]
    fn rejects_bad_entries() {
        let bad = [
            ("Upper", "DNS-1123"),
            ("ns/Name", "DNS-1123"),
            ("bad_ns/x", "namespace"),
            ("a/b/c", "form"),
            ("x@averyveryverylongname", "longer than 15"),
            ("x@a/b", "contains"),
            ("a,,b", "empty entry"),
            (r#"[{"name":"x","mac":"zz"}]"#, "mac"),
            (r#"[{"name":"x","ips":["nope"]}]"#, "ips"),
            (
                r#"[{"name":"x","default-route":["10.0.0.1"]},{"name":"y","default-route":["10.0.0.2"]}]"#,
                "default-route",
            ),
            (r#"[{"name":"x","unknown":1}]"#, "unknown field"),
            (r#"[{"name":"x""#, "invalid JSON"),
        ];
        for (input, says) in bad {
            let e = parse_networks(input).expect_err(input);
            let msg = chain(&e);
            assert!(
                msg.contains(says) && msg.contains(NETWORKS),
                "{input}: {msg}"
            );
        }
        let dup = parse_networks("a@net2,b").expect("parse");
        let e = interface_names(&dup, "eth0").expect_err("dup");
        assert!(
            matches!(&e.problem, Problem::InterfaceTwice(n) if n == "net2"),
            "{e:?}"
        );
        let clash = parse_networks("a@eth0").expect("parse");
        assert!(interface_names(&clash, "eth0").is_err());
    }

    #[test]
    fn default_network() {
        assert_eq!(
            parse_default_network("kube-system/other").expect("ok").name,
            "other"
        );
        let e = parse_default_network("a,b").expect_err("two");
        assert!(matches!(e.problem, Problem::DefaultNetworkCount));
        assert_eq!(e.annotation, DEFAULT_NETWORK);
        let e = parse_default_network("a@eth1").expect_err("interface");
        assert!(matches!(e.problem, Problem::DefaultNetworkInterface));
        let e = parse_default_network("Bad").expect_err("invalid");
        assert_eq!(e.annotation, DEFAULT_NETWORK);
        assert!(
            chain(&e).contains("entry 0 (\"Bad\"): name \"Bad\" is not a valid DNS-1123"),
            "{}",
            chain(&e)
        );
    }
}
