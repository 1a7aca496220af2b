//! Shared interface work for `bridge` and `macvlan`: applying a result's addresses and
//! routes to the container interface, and checking them for CHECK.

use oxivirt_cni::error::codes;
use oxivirt_cni::{CniError, CniResult};
use oxivirt_netlink::{sysctl, Handle, NetNs, RouteSpec};
use std::net::IpAddr;

pub fn nl_err(e: oxivirt_netlink::Error) -> CniError {
    CniError::plugin(codes::NETLINK, e.to_string())
}

/// Sets the per-interface sysctls the reference sets before addressing: DAD and
/// `arp_notify`. Failures are ignored (IPv6 may be disabled), as the reference does.
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
    let _ = sysctl::write(&["net", "ipv4", "conf", ifname, "arp_notify"], "1");
}

/// Brings the link up and applies the addresses (those for interface `if_index` in the
/// result, or without an index) and every route, with the family's first gateway for
/// routes that have none.
pub fn configure(
    nl: &mut Handle,
    link_index: u32,
    result: &CniResult,
    result_if: usize,
    nodad: bool,
) -> Result<(), CniError> {
    nl.set_up(link_index, true).map_err(nl_err)?;
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
