//! Shared interface work for `bridge` and `macvlan`: applying a result's addresses and
//! routes to the container interface, and checking them for CHECK.

use oxivirt_cni_spec::error::codes;
use oxivirt_cni_spec::plugin::Call;
use oxivirt_cni_spec::{CniError, CniResult, ErrorCode, NetConf};
use oxivirt_netlink::{parse_mac, sysctl, Handle, NetNs, RouteSpec};
use serde_json::Value;
use std::net::IpAddr;

pub fn nl_err(e: oxivirt_netlink::Error) -> CniError {
    CniError::plugin(codes::NETLINK, with_sources(&e))
}

/// `e` and its sources: a netlink error's Display names the step, its source the errno.
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// The container's namespace; one that cannot be opened is an unknown container (3).
pub fn open_netns(call: &Call<'_>) -> Result<NetNs, CniError> {
    let path = call
        .env
        .netns
        .as_ref()
        .ok_or_else(|| CniError::env("CNI_NETNS is required"))?;
    NetNs::open(path).map_err(|e| {
        CniError::new(
            ErrorCode::UnknownContainer,
            format!("failed to open netns: {}", with_sources(&e)),
        )
    })
}

/// Whether the config asks for IPAM (an empty `ipam` means layer 2 only).
pub fn layer3(conf: &NetConf) -> bool {
    conf.ipam
        .as_ref()
        .is_some_and(|i| !i.plugin_type.is_empty())
}

/// The MAC the runtime asks for: `CNI_ARGS` `MAC=`, then `args.cni.mac`, then
/// `runtimeConfig.mac`, later ones winning (as in the reference).
pub fn requested_mac(call: &Call<'_>, conf: &NetConf) -> Result<Option<[u8; 6]>, CniError> {
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
                mac = Some(parse_mac(s).ok_or_else(|| {
                    CniError::config(format!("{from}: {s:?} is not a MAC address"))
                })?)
            }
            Some(_) => return Err(CniError::config(format!("{from} must be a string"))),
        }
    }
    Ok(mac)
}

/// Removes the container interface named in the call. A netns or an interface that is
/// gone is already removed. With `retire`, the link is taken out of use and renamed at
/// once and the kernel's slow deletion finishes in a detached process (see
/// [`Handle::retire_link`]).
pub fn remove_container_link(call: &Call<'_>, retire: Option<&str>) -> Result<(), CniError> {
    let Some(path) = &call.env.netns else {
        return Ok(());
    };
    let Ok(ns) = NetNs::open(path) else {
        return Ok(());
    };
    let ifname = call.env.ifname.as_str();
    ns.run(|| -> Result<(), CniError> {
        let mut cont = Handle::new().map_err(nl_err)?;
        let Some(link) = cont.link_by_name(ifname).map_err(nl_err)? else {
            return Ok(());
        };
        let r = match retire {
            Some(grave) => cont.retire_link(link.index, grave),
            None => cont.del_link(link.index),
        };
        match r {
            Err(e) if !e.is_not_found() => Err(nl_err(e)),
            _ => Ok(()),
        }
    })
    .map_err(nl_err)?
}

/// Sets the per-interface sysctls the reference sets before addressing: DAD (`arp_notify`
/// goes with the link-up request, see [`configure`]). Failures are ignored (IPv6 may be
/// disabled), as the reference does.
pub fn container_sysctls(ns: &NetNs, ifname: &str, enable_dad: bool) -> Result<(), CniError> {
    ns.run(|| write_container_sysctls(ifname, enable_dad))
        .map_err(nl_err)
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
) -> Result<(), CniError> {
    let mut gw4: Option<IpAddr> = None;
    let mut gw6: Option<IpAddr> = None;
    for ip in &result.ips {
        if ip.interface.is_some_and(|i| i != result_if) {
            continue;
        }
        nl.add_address(link_index, ip.address, nodad)
            .map_err(nl_err)?;
        if let Some(gw) = ip.gateway {
            match gw {
                IpAddr::V4(_) if gw4.is_none() => gw4 = Some(gw),
                IpAddr::V6(_) if gw6.is_none() => gw6 = Some(gw),
                _ => {}
            }
        }
    }
    nl.set_up_arp_notify(link_index).map_err(nl_err)?;
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
            Err(e) => return Err(nl_err(e)),
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
) -> Result<(), CniError> {
    let addrs = nl.addresses(Some(link_index)).map_err(nl_err)?;
    for ip in &result.ips {
        if ip.interface.is_some_and(|i| i != result_if) {
            continue;
        }
        if !addrs.iter().any(|a| a.addr == ip.address) {
            return Err(CniError::plugin(
                codes::CHECK_MISMATCH,
                format!(
                    "{ifname}: address {} from prevResult is not configured",
                    ip.address
                ),
            ));
        }
    }
    let routes = nl.routes().map_err(nl_err)?;
    for r in &result.routes {
        let dst = r.dst.trunc();
        if !routes
            .iter()
            .any(|x| x.dst == dst && (r.gw.is_none() || x.gateway == r.gw))
        {
            return Err(CniError::plugin(
                codes::CHECK_MISMATCH,
                format!(
                    "route {} via {:?} from prevResult is not installed",
                    r.dst, r.gw
                ),
            ));
        }
    }
    Ok(())
}
