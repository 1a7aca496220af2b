//! The `static` IPAM plugin: addresses, routes and DNS straight from the config or the
//! runtime (`CNI_ARGS` `IP=`/`GATEWAY=`, `args.cni.ips`, `runtimeConfig.ips`).

use crate::Error;
use ipnet::IpNet;
use oxivirt_cni_spec::{parse_json, CniArgs, CniResult, Dns, IpConfig, NetConf, Route};
use serde::Deserialize;
use serde_json::Value;
use std::net::IpAddr;

#[derive(Debug, Clone, Deserialize)]
struct AddressConf {
    address: IpNet,
    gateway: Option<IpAddr>,
}

impl AddressConf {
    /// An address the runtime asked for (no gateway); `from` says where it came from.
    fn parse(s: &str, from: &str) -> Result<Self, Error> {
        let address = s.parse().map_err(|_| {
            Error::config(format!(
                "{from}: {s:?} is not an address with a prefix (CIDR)"
            ))
        })?;
        Ok(Self {
            address,
            gateway: None,
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct IpamSection {
    addresses: Vec<AddressConf>,
    routes: Vec<Route>,
    dns: Option<Dns>,
}

#[derive(Debug, Clone, Deserialize)]
struct Outer {
    ipam: Option<IpamSection>,
}

/// Builds the static result for `conf`.
pub fn result(bytes: &[u8], conf: &NetConf, args: &CniArgs) -> Result<CniResult, Error> {
    let outer: Outer = parse_json(bytes, "network config")?;
    let ipam = outer
        .ipam
        .ok_or_else(|| Error::config("network config: field `ipam` is missing"))?;
    let mut addrs: Vec<AddressConf> = ipam.addresses;
    // As the reference: CNI_ARGS IP= appends, GATEWAY= applies to every address whose
    // subnet holds it; args.cni.ips and then runtimeConfig.ips replace the whole list.
    if let Some(ips) = args.get("IP") {
        for s in ips.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            addrs.push(AddressConf::parse(s, "CNI_ARGS IP")?);
        }
    }
    if let Some(gws) = args.get("GATEWAY") {
        for g in gws.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let gw: IpAddr = g.parse().map_err(|_| {
                Error::config(format!("CNI_ARGS GATEWAY: {g:?} is not an IP address"))
            })?;
            for a in addrs.iter_mut().filter(|a| a.address.contains(&gw)) {
                a.gateway = Some(gw);
            }
        }
    }
    for (val, from) in [
        (conf.args_cni("ips"), "args.cni.ips"),
        (conf.runtime("ips"), "runtimeConfig.ips"),
    ] {
        if let Some(Value::Array(items)) = val {
            if items.is_empty() {
                continue;
            }
            addrs = items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    AddressConf::parse(item.as_str().unwrap_or_default(), &format!("{from}[{i}]"))
                })
                .collect::<Result<_, _>>()?;
        }
    }
    for (i, a) in addrs.iter().enumerate() {
        if let Some(gw) = a.gateway {
            if gw.is_ipv4() != a.address.addr().is_ipv4() {
                return Err(Error::config(format!(
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
