//! Routes: adding, replacing, deleting and listing them, in any table, both families.

use crate::error::Result;
use crate::handle::{Handle, Request, CREATE};
use ipnet::IpNet;
use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteProtocol,
    RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A route to install.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteSpec {
    /// The default route if `None`.
    pub dst: Option<IpNet>,
    pub gateway: Option<IpAddr>,
    /// Index of the outgoing link.
    pub oif: Option<u32>,
    /// The main table if `None`.
    pub table: Option<u32>,
    pub metric: Option<u32>,
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    /// Scope `link` (the destination is on the link, no gateway); `universe` otherwise.
    pub scope_link: bool,
    /// The preferred source address.
    pub src: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub table: u32,
}

impl Handle {
    pub fn add_route(&mut self, spec: &RouteSpec) -> Result<()> {
        self.ack(add_route(spec))
    }

    pub fn replace_route(&mut self, spec: &RouteSpec) -> Result<()> {
        self.ack(replace_route(spec))
    }

    pub fn del_route(&mut self, spec: &RouteSpec) -> Result<()> {
        self.ack(del_route(spec))
    }

    /// Routes of the main table (and others), both families.
    pub fn routes(&mut self) -> Result<Vec<RouteInfo>> {
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            for m in self.request(dump_routes(family))? {
                if let RouteNetlinkMessage::NewRoute(r) = m {
                    out.extend(parse_route(&r));
                }
            }
        }
        Ok(out)
    }
}

fn route_message(spec: &RouteSpec) -> RouteMessage {
    let mut msg = RouteMessage::default();
    let v4 = match (spec.dst, spec.gateway, spec.src) {
        (Some(d), _, _) => d.addr().is_ipv4(),
        (None, Some(g), _) => g.is_ipv4(),
        (None, None, Some(s)) => s.is_ipv4(),
        _ => true,
    };
    msg.header.address_family = if v4 {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    msg.header.destination_prefix_length = spec.dst.map_or(0, |d| d.prefix_len());
    msg.header.protocol = RouteProtocol::Boot;
    msg.header.kind = RouteType::Unicast;
    msg.header.scope = if spec.scope_link {
        RouteScope::Link
    } else {
        RouteScope::Universe
    };
    // The header has room for tables below 256 only; the others go in RTA_TABLE.
    let table = spec.table.unwrap_or(RouteHeader::RT_TABLE_MAIN as u32);
    match u8::try_from(table) {
        Ok(t) => msg.header.table = t,
        Err(_) => {
            msg.header.table = RouteHeader::RT_TABLE_UNSPEC;
            msg.attributes.push(RouteAttribute::Table(table));
        }
    }
    if let Some(dst) = spec.dst {
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(
                dst.network(),
            )));
    }
    if let Some(gw) = spec.gateway {
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
    }
    if let Some(src) = spec.src {
        msg.attributes
            .push(RouteAttribute::PrefSource(RouteAddress::from(src)));
    }
    if let Some(oif) = spec.oif {
        msg.attributes.push(RouteAttribute::Oif(oif));
    }
    if let Some(m) = spec.metric {
        msg.attributes.push(RouteAttribute::Priority(m));
    }
    let mut metrics = Vec::new();
    if let Some(mtu) = spec.mtu {
        metrics.push(RouteMetric::Mtu(mtu));
    }
    if let Some(a) = spec.advmss {
        metrics.push(RouteMetric::Advmss(a));
    }
    if !metrics.is_empty() {
        msg.attributes.push(RouteAttribute::Metrics(metrics));
    }
    msg
}

fn add_route(spec: &RouteSpec) -> Request {
    let what = match spec.dst {
        Some(d) => d.to_string(),
        None => "default".into(),
    };
    Request::new(
        format!("add route {what}"),
        RouteNetlinkMessage::NewRoute(route_message(spec)),
        CREATE,
    )
}

fn replace_route(spec: &RouteSpec) -> Request {
    Request::new(
        "replace route",
        RouteNetlinkMessage::NewRoute(route_message(spec)),
        NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
    )
}

fn del_route(spec: &RouteSpec) -> Request {
    Request::new(
        "delete route",
        RouteNetlinkMessage::DelRoute(route_message(spec)),
        NLM_F_ACK,
    )
}

fn dump_routes(family: AddressFamily) -> Request {
    let mut q = RouteMessage::default();
    q.header.address_family = family;
    Request::new("list routes", RouteNetlinkMessage::GetRoute(q), NLM_F_DUMP)
}

/// A route from the kernel; `None` for one whose prefix does not fit its family.
fn parse_route(r: &RouteMessage) -> Option<RouteInfo> {
    let v4 = r.header.address_family == AddressFamily::Inet;
    let mut dst = None;
    let mut gateway = None;
    let mut oif = None;
    let mut table = r.header.table as u32;
    for a in &r.attributes {
        match a {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = Some(IpAddr::V4(*ip)),
            RouteAttribute::Destination(RouteAddress::Inet6(ip)) => dst = Some(IpAddr::V6(*ip)),
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(IpAddr::V4(*ip)),
            RouteAttribute::Gateway(RouteAddress::Inet6(ip)) => gateway = Some(IpAddr::V6(*ip)),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Table(t) => table = *t,
            _ => {}
        }
    }
    let base = if v4 {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    };
    let dst = IpNet::new(dst.unwrap_or(base), r.header.destination_prefix_length).ok()?;
    Some(RouteInfo {
        dst,
        gateway,
        oif,
        table,
    })
}
