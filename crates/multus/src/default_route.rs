//! `default-route` in a network selection: the pod's default route of that family goes
//! through the named gateway on that network's interface, and the other networks' default
//! routes of the family are removed (from the pod and from their results), as Multus does.

use crate::error::{Error, Result};
use oxivirt_cni_spec::{CniResult, Route};
use oxivirt_netlink::{Handle, IfInfo, NetNs, RouteSpec};
use std::net::IpAddr;
use std::path::Path;

/// Wraps a netlink error with the step and the interface.
fn nl(op: impl Into<String>, ifname: &str) -> impl FnOnce(oxivirt_netlink::Error) -> Error {
    let op = op.into();
    let ifname = ifname.to_string();
    move |source| Error::Netlink { op, ifname, source }
}

fn default_dst(v4: bool) -> ipnet::IpNet {
    if v4 {
        ipnet::IpNet::V4(ipnet::Ipv4Net::default())
    } else {
        ipnet::IpNet::V6(ipnet::Ipv6Net::default())
    }
}

/// A delegate's interface in the pod, whose default routes are adjusted.
#[derive(Debug, Clone, Copy)]
pub struct PodLink<'a> {
    pub netns: &'a Path,
    pub ifname: &'a str,
}

impl PodLink<'_> {
    /// Runs `f` in the pod's namespace with a netlink socket there and the interface's
    /// link, if it exists.
    fn on_link(
        &self,
        f: impl FnOnce(&mut Handle, Option<IfInfo>) -> Result<()> + Send,
    ) -> Result<()> {
        let ifname = self.ifname;
        let ns = NetNs::open(self.netns).map_err(nl("enter the pod's netns", ifname))?;
        ns.run(|| -> Result<()> {
            let mut h = Handle::new().map_err(nl("open netlink", ifname))?;
            let link = h.if_info(ifname).map_err(nl("look up", ifname))?;
            f(&mut h, link)
        })
        .map_err(nl("enter the pod's netns", ifname))?
    }

    /// Removes the default routes of the families in `families` (true = IPv4) from the
    /// interface and from `result`.
    pub fn drop_defaults(&self, families: &[bool], result: &mut CniResult) -> Result<()> {
        let ifname = self.ifname;
        if families.is_empty() {
            return Ok(());
        }
        result
            .routes
            .retain(|r| !(r.dst.prefix_len() == 0 && families.contains(&r.dst.addr().is_ipv4())));
        self.on_link(|h, link| {
            // An interface that is gone has no routes left to drop.
            let Some(link) = link else {
                return Ok(());
            };
            for r in h.routes().map_err(nl("list routes", ifname))? {
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
                        Err(e) if !e.is_not_found() => {
                            return Err(nl("delete the default route", ifname)(e))
                        }
                        _ => {}
                    }
                }
            }
            Ok(())
        })
    }

    /// Makes `gateways` the default routes through the interface and records them in
    /// `result`.
    pub fn set_defaults(&self, gateways: &[IpAddr], result: &mut CniResult) -> Result<()> {
        let ifname = self.ifname;
        if gateways.is_empty() {
            return Ok(());
        }
        self.on_link(|h, link| {
            let link = link.ok_or_else(|| Error::NoInterface {
                ifname: ifname.to_string(),
            })?;
            for gw in gateways {
                let spec = RouteSpec {
                    dst: None,
                    gateway: Some(*gw),
                    oif: Some(link.index),
                    ..Default::default()
                };
                h.replace_route(&spec)
                    .map_err(nl(format!("set the default route via {gw}"), ifname))?;
            }
            Ok(())
        })?;
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
}
