//! The `static` IPAM plugin: addresses, routes and DNS straight from the config or the
//! runtime (`CNI_ARGS` `IP=`/`GATEWAY=`, `args.cni.ips`, `runtimeConfig.ips`).

use ipnet::IpNet;
use oxivirt_cni::{parse_json, CniArgs, CniError, CniResult, Dns, IpConfig, NetConf, Route};
use serde::Deserialize;
use serde_json::Value;
use std::net::IpAddr;

#[derive(Debug, Clone, Deserialize)]
struct AddressConf {
    address: IpNet,
    #[serde(default)]
    gateway: Option<IpAddr>,
}

#[derive(Debug, Clone, Deserialize)]
struct IpamSection {
    #[serde(default)]
    addresses: Vec<AddressConf>,
    #[serde(default)]
    routes: Vec<Route>,
    #[serde(default)]
    dns: Option<Dns>,
}

#[derive(Debug, Clone, Deserialize)]
struct Outer {
    ipam: Option<IpamSection>,
}

/// Builds the static result for `conf`.
pub fn result(bytes: &[u8], conf: &NetConf, args: &CniArgs) -> Result<CniResult, CniError> {
    let outer: Outer = parse_json(bytes, "network config")?;
    let ipam = outer
        .ipam
        .ok_or_else(|| CniError::config("network config: field `ipam` is missing"))?;
    let mut addrs: Vec<AddressConf> = ipam.addresses;
    // Runtime-provided addresses replace the configured ones, as the reference does.
    let mut runtime: Vec<AddressConf> = Vec::new();
    if let Some(ips) = args.get("IP") {
        for s in ips.split(',').filter(|s| !s.is_empty()) {
            let address = s.parse().map_err(|_| {
                CniError::config(format!(
                    "CNI_ARGS IP: {s:?} is not an address with a prefix (CIDR)"
                ))
            })?;
            runtime.push(AddressConf {
                address,
                gateway: None,
            });
        }
        if let Some(gws) = args.get("GATEWAY") {
            for (i, g) in gws.split(',').filter(|s| !s.is_empty()).enumerate() {
                let gw: IpAddr = g.parse().map_err(|_| {
                    CniError::config(format!("CNI_ARGS GATEWAY: {g:?} is not an IP address"))
                })?;
                if let Some(a) = runtime.get_mut(i) {
                    a.gateway = Some(gw);
                }
            }
        }
    }
    for (val, from) in [
        (conf.args_cni("ips"), "args.cni.ips"),
        (conf.runtime("ips"), "runtimeConfig.ips"),
    ] {
        if let Some(Value::Array(items)) = val {
            for (i, item) in items.iter().enumerate() {
                let s = item.as_str().unwrap_or_default();
                let address = s.parse().map_err(|_| {
                    CniError::config(format!(
                        "{from}[{i}]: {s:?} is not an address with a prefix (CIDR)"
                    ))
                })?;
                runtime.push(AddressConf {
                    address,
                    gateway: None,
                });
            }
        }
    }
    if !runtime.is_empty() {
        addrs = runtime;
    }
    for (i, a) in addrs.iter().enumerate() {
        if let Some(gw) = a.gateway {
            if gw.is_ipv4() != a.address.addr().is_ipv4() {
                return Err(CniError::config(format!(
                    "ipam.addresses[{i}].gateway: {gw} is not of the same family as {}",
                    a.address
                )));
            }
        }
    }
    let ips = addrs
        .into_iter()
        .map(|a| IpConfig {
            address: a.address,
            gateway: a.gateway,
            interface: None,
        })
        .collect();
    Ok(CniResult {
        interfaces: vec![],
        ips,
        routes: ipam.routes,
        dns: ipam.dns.unwrap_or_default(),
    })
}
