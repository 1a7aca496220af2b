//! `default-route` in a network selection: the pod's default route of that family goes
//! through the named gateway on that network's interface, and the other networks' default
//! routes of the family are removed (from the pod and from their results), as Multus does.

use oxivirt_cni_spec::error::codes;
use oxivirt_cni_spec::{CniError, CniResult, Route};
use oxivirt_netlink::{Handle, NetNs, RouteSpec};
use std::net::IpAddr;
use std::path::Path;

fn nl(e: oxivirt_netlink::Error) -> CniError {
    // The netlink error's Display names the step; the errno is its source.
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    CniError::plugin(codes::NETLINK, msg)
}

fn default_dst(v4: bool) -> ipnet::IpNet {
    if v4 {
        ipnet::IpNet::V4(ipnet::Ipv4Net::default())
    } else {
        ipnet::IpNet::V6(ipnet::Ipv6Net::default())
    }
}

/// Removes the default routes of the families in `families` (true = IPv4) from `ifname`
/// and from `result`.
pub fn drop_defaults(
    netns: &Path,
    ifname: &str,
    families: &[bool],
    result: &mut CniResult,
) -> Result<(), CniError> {
    if families.is_empty() {
        return Ok(());
    }
    result
        .routes
        .retain(|r| !(r.dst.prefix_len() == 0 && families.contains(&r.dst.addr().is_ipv4())));
    let ns = NetNs::open(netns).map_err(nl)?;
    ns.run(|| -> Result<(), CniError> {
        let mut h = Handle::new().map_err(nl)?;
        let Some(link) = h.if_info(ifname).map_err(nl)? else {
            return Ok(());
        };
        for r in h.routes().map_err(nl)? {
            let v4 = r.dst.addr().is_ipv4();
            if r.dst.prefix_len() == 0
                && r.oif == Some(link.index)
                && r.table == 254
                && families.contains(&v4)
            {
                let spec = RouteSpec {
                    dst: None,
                    gateway: r.gateway,
                    oif: Some(link.index),
                    ..Default::default()
                };
                match h.del_route(&spec) {
                    Err(e) if !e.is_not_found() => return Err(nl(e)),
                    _ => {}
                }
            }
        }
        Ok(())
    })
    .map_err(nl)?
}

/// Makes `gateways` the default routes through `ifname` and records them in `result`.
pub fn set_defaults(
    netns: &Path,
    ifname: &str,
    gateways: &[IpAddr],
    result: &mut CniResult,
) -> Result<(), CniError> {
    if gateways.is_empty() {
        return Ok(());
    }
    let ns = NetNs::open(netns).map_err(nl)?;
    ns.run(|| -> Result<(), CniError> {
        let mut h = Handle::new().map_err(nl)?;
        let link = h.if_info(ifname).map_err(nl)?.ok_or_else(|| {
            CniError::plugin(
                codes::NETLINK,
                format!("default-route: interface {ifname} not found"),
            )
        })?;
        for gw in gateways {
            let spec = RouteSpec {
                dst: None,
                gateway: Some(*gw),
                oif: Some(link.index),
                ..Default::default()
            };
            h.replace_route(&spec)
                .map_err(|e| nl(e).context(format!("default-route via {gw} on {ifname}")))?;
        }
        Ok(())
    })
    .map_err(nl)??;
    for gw in gateways {
        result
            .routes
            .retain(|r| !(r.dst.prefix_len() == 0 && r.dst.addr().is_ipv4() == gw.is_ipv4()));
        result
            .routes
            .push(Route::new(default_dst(gw.is_ipv4()), Some(*gw)));
    }
    Ok(())
}
