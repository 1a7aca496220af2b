//! Shared interface work for `bridge` and `macvlan`: applying a result's addresses and
//! routes to the container interface, and checking them for CHECK.

use crate::error::{Error, Result};
use oxivirt_cni_spec::plugin::Call;
use oxivirt_cni_spec::{CniResult, Interface, NetConf};
use oxivirt_netlink::{parse_mac, sysctl, Handle, Link, NetNs, RouteSpec};
use serde_json::Value;
use std::net::IpAddr;

/// The container's namespace; one that cannot be opened is an unknown container.
pub fn open_netns(call: &Call<'_>) -> Result<NetNs> {
    let path = call.env.netns.as_ref().ok_or_else(|| {
        Error::Spec(oxivirt_cni_spec::Error::Env {
            var: "CNI_NETNS".into(),
            reason: "is required".into(),
        })
    })?;
    NetNs::open(path).map_err(|source| Error::UnknownContainer {
        path: path.display().to_string(),
        source,
    })
}

/// The container's interface as a result lists it.
pub fn container_interface(link: &Link, ns: &NetNs) -> Interface {
    Interface {
        name: link.name.clone(),
        mac: link.mac_string(),
        mtu: Some(link.mtu),
        sandbox: ns.path().display().to_string(),
        ..Default::default()
    }
}

/// The network config's `dns`, when it has any, replaces what IPAM returned (as the
/// reference plugins do).
pub fn apply_conf_dns(result: &mut CniResult, conf: &NetConf) {
    if let Some(dns) = conf.dns.as_ref().filter(|d| !d.is_empty()) {
        result.dns = dns.clone();
    }
}

/// The result of the IPAM an ADD delegated to, which must have given addresses.
pub fn ipam_addresses(result: Option<CniResult>) -> Result<CniResult> {
    let r = result.ok_or_else(|| Error::IpamResult("IPAM plugin returned no result".into()))?;
    if r.ips.is_empty() {
        return Err(Error::IpamResult(
            "IPAM plugin returned missing IP config".into(),
        ));
    }
    Ok(r)
}

/// CHECK: `what`'s MAC is the one the previous result recorded (if it recorded one).
pub fn check_mac(what: &str, link: &Link, recorded: &str) -> Result<()> {
    let mac = link.mac_string();
    if recorded.is_empty() || recorded == mac {
        return Ok(());
    }
    Err(Error::CheckMismatch(format!(
        "{what} MAC {mac} does not match prevResult {recorded}"
    )))
}

/// Whether the config asks for IPAM (an empty `ipam` means layer 2 only).
pub fn layer3(conf: &NetConf) -> bool {
    conf.ipam
        .as_ref()
        .is_some_and(|i| !i.plugin_type.is_empty())
}

/// The MAC the runtime asks for: `CNI_ARGS` `MAC=`, then `args.cni.mac`, then
/// `runtimeConfig.mac`, later ones winning (as in the reference).
pub fn requested_mac(call: &Call<'_>, conf: &NetConf) -> Result<Option<[u8; 6]>> {
    let from_args = call
        .env
        .args
        .get("MAC")
        .map(|s| Value::String(s.to_string()));
    let sources = [
        (from_args.as_ref(), "CNI_ARGS MAC"),
        (conf.args_cni("mac"), "args.cni.mac"),
        (conf.runtime("mac"), "runtimeConfig.mac"),
    ];
    let mut mac = None;
    for (v, from) in sources {
        match v {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(Value::String(s)) => {
                mac =
                    Some(parse_mac(s).ok_or_else(|| {
                        Error::config(format!("{from}: {s:?} is not a MAC address"))
                    })?)
            }
            Some(_) => return Err(Error::config(format!("{from} must be a string"))),
        }
    }
    Ok(mac)
}

/// Removes the container interface named in the call. A netns or an interface that is
/// gone is already removed. With `retire`, the link is taken out of use and renamed at
/// once and the kernel's slow deletion finishes in a detached process (see
/// [`Handle::retire_link`]).
pub fn remove_container_link(call: &Call<'_>, retire: Option<&str>) -> Result<()> {
    let Some(path) = &call.env.netns else {
        return Ok(());
    };
    let Ok(ns) = NetNs::open(path) else {
        return Ok(());
    };
    let ifname = call.env.ifname.as_str();
    ns.run(|| -> Result<()> {
        let mut cont = Handle::new()?;
        let Some(link) = cont.link_by_name(ifname)? else {
            return Ok(());
        };
        let r = match retire {
            Some(grave) => cont.retire_link(link.index, grave),
            None => cont.del_link(link.index),
        };
        match r {
            Err(e) if !e.is_not_found() => Err(e.into()),
            _ => Ok(()),
        }
    })?
}

/// Sets the per-interface sysctls the reference sets before addressing: DAD (`arp_notify`
/// goes with the link-up request, see [`configure`]). Failures are ignored (IPv6 may be
/// disabled), as the reference does.
pub fn container_sysctls(ns: &NetNs, ifname: &str, enable_dad: bool) -> Result<()> {
    Ok(ns.run(|| write_container_sysctls(ifname, enable_dad))?)
}

/// [`container_sysctls`] for a thread that is already in the container's namespace.
pub fn write_container_sysctls(ifname: &str, enable_dad: bool) {
    if enable_dad {
        let _ = sysctl::write(&["net", "ipv6", "conf", ifname, "enhanced_dad"], "1");
        let _ = sysctl::write(&["net", "ipv6", "conf", ifname, "accept_dad"], "1");
    } else {
        let _ = sysctl::write(&["net", "ipv6", "conf", ifname, "accept_dad"], "0");
    }
}

/// Applies the addresses (those for interface `if_index` in the result, or without an
/// index), brings the link up with IPv4 `arp_notify` set and adds every route, with the
/// family's first gateway for routes that have none. Addresses go on before the link is
/// up, as the reference does: the link coming up wakes the kernel's link watcher, which
/// holds the rtnl lock for a while, and nothing of ours waits behind it but the routes.
pub fn configure(
    nl: &mut Handle,
    link_index: u32,
    result: &CniResult,
    result_if: usize,
    nodad: bool,
) -> Result<()> {
    let mut gw4: Option<IpAddr> = None;
    let mut gw6: Option<IpAddr> = None;
    for ip in &result.ips {
        if ip.interface.is_some_and(|i| i != result_if) {
            continue;
        }
        nl.add_address(link_index, ip.address, nodad)?;
        if let Some(gw) = ip.gateway {
            match gw {
                IpAddr::V4(_) if gw4.is_none() => gw4 = Some(gw),
                IpAddr::V6(_) if gw6.is_none() => gw6 = Some(gw),
                _ => {}
            }
        }
    }
    nl.set_up_arp_notify(link_index)?;
    for r in &result.routes {
        let gw = r.gw.or(if r.dst.addr().is_ipv4() { gw4 } else { gw6 });
        let spec = RouteSpec {
            dst: Some(r.dst),
            gateway: gw,
            oif: Some(link_index),
            table: r.table,
            metric: r.priority,
            mtu: r.mtu,
            advmss: r.advmss,
            scope_link: r.scope == Some(253),
            src: None,
        };
        match nl.add_route(&spec) {
            Ok(()) => {}
            Err(e) if e.is_exists() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// CHECK: every address of the result is on the link and every route is present.
pub fn validate(
    nl: &mut Handle,
    link_index: u32,
    ifname: &str,
    result: &CniResult,
    result_if: usize,
) -> Result<()> {
    let addrs = nl.addresses(Some(link_index))?;
    for ip in &result.ips {
        if ip.interface.is_some_and(|i| i != result_if) {
            continue;
        }
        if !addrs.iter().any(|a| a.addr == ip.address) {
            return Err(Error::CheckMismatch(format!(
                "{ifname}: address {} from prevResult is not configured",
                ip.address
            )));
        }
    }
    let routes = nl.routes()?;
    for r in &result.routes {
        let dst = r.dst.trunc();
        if !routes
            .iter()
            .any(|x| x.dst == dst && (r.gw.is_none() || x.gateway == r.gw))
        {
            return Err(Error::CheckMismatch(format!(
                "route {} via {:?} from prevResult is not installed",
                r.dst, r.gw
            )));
        }
    }
    Ok(())
}
