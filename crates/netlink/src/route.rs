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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{ip, message_of};

    #[test]
    fn default_route_via_a_gateway_in_the_main_table() {
        let req = add_route(&RouteSpec {
            gateway: Some(ip("10.1.0.1")),
            ..Default::default()
        });
        assert_eq!(req.op, "add route default");
        assert_eq!(req.flags, CREATE);
        let msg = message_of!(req, NewRoute);
        assert_eq!(msg.header.address_family, AddressFamily::Inet);
        assert_eq!(msg.header.destination_prefix_length, 0);
        assert_eq!(msg.header.table, RouteHeader::RT_TABLE_MAIN);
        assert_eq!(msg.header.protocol, RouteProtocol::Boot);
        assert_eq!(msg.header.kind, RouteType::Unicast);
        assert_eq!(msg.header.scope, RouteScope::Universe);
        assert_eq!(
            msg.attributes,
            [RouteAttribute::Gateway(RouteAddress::from(ip("10.1.0.1")))]
        );
    }

    #[test]
    fn ipv6_on_link_route_with_everything() {
        let req = add_route(&RouteSpec {
            // Host bits are dropped: the kernel refuses a destination that has them.
            dst: Some("fd00:1::5/64".parse().expect("v6 prefix")),
            oif: Some(4),
            metric: Some(100),
            mtu: Some(1400),
            advmss: Some(1340),
            scope_link: true,
            src: Some(ip("fd00:1::1")),
            ..Default::default()
        });
        assert_eq!(req.op, "add route fd00:1::5/64");
        let msg = req.route_message();
        assert_eq!(msg.header.address_family, AddressFamily::Inet6);
        assert_eq!(msg.header.destination_prefix_length, 64);
        assert_eq!(msg.header.scope, RouteScope::Link);
        assert_eq!(
            msg.attributes,
            [
                RouteAttribute::Destination(RouteAddress::from(ip("fd00:1::"))),
                RouteAttribute::PrefSource(RouteAddress::from(ip("fd00:1::1"))),
                RouteAttribute::Oif(4),
                RouteAttribute::Priority(100),
                RouteAttribute::Metrics(vec![RouteMetric::Mtu(1400), RouteMetric::Advmss(1340)]),
            ]
        );
    }

    #[test]
    fn the_family_follows_destination_then_gateway_then_source() {
        let family = |spec: RouteSpec| add_route(&spec).route_message().header.address_family;
        assert_eq!(
            family(RouteSpec {
                src: Some(ip("fd00::1")),
                ..Default::default()
            }),
            AddressFamily::Inet6
        );
        assert_eq!(
            family(RouteSpec {
                gateway: Some(ip("fd00::1")),
                src: Some(ip("10.0.0.1")),
                ..Default::default()
            }),
            AddressFamily::Inet6
        );
        assert_eq!(family(RouteSpec::default()), AddressFamily::Inet);
    }

    #[test]
    fn tables_above_255_go_in_an_attribute() {
        let msg = route_message(&RouteSpec {
            table: Some(100),
            ..Default::default()
        });
        assert_eq!(msg.header.table, 100);
        assert!(msg.attributes.is_empty());

        let msg = route_message(&RouteSpec {
            table: Some(1000),
            ..Default::default()
        });
        assert_eq!(msg.header.table, RouteHeader::RT_TABLE_UNSPEC);
        assert_eq!(msg.attributes, [RouteAttribute::Table(1000)]);
    }

    #[test]
    fn replace_and_delete_send_the_same_route() {
        let spec = RouteSpec {
            dst: Some("10.2.0.0/16".parse().expect("prefix")),
            gateway: Some(ip("10.1.0.1")),
            ..Default::default()
        };
        let replace = replace_route(&spec);
        assert_eq!(replace.flags, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE);
        let delete = del_route(&spec);
        assert_eq!(delete.flags, NLM_F_ACK);
        assert_eq!(
            message_of!(replace, NewRoute),
            message_of!(delete, DelRoute)
        );
        assert_eq!(delete.route_message(), &route_message(&spec));
    }

    #[test]
    fn a_dump_asks_for_one_family() {
        let req = dump_routes(AddressFamily::Inet6);
        assert_eq!(req.flags, NLM_F_DUMP);
        assert_eq!(
            req.route_message().header.address_family,
            AddressFamily::Inet6
        );
    }

    fn reply(
        family: AddressFamily,
        prefix: u8,
        table: u8,
        attrs: Vec<RouteAttribute>,
    ) -> RouteMessage {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family;
        msg.header.destination_prefix_length = prefix;
        msg.header.table = table;
        msg.attributes = attrs;
        msg
    }

    #[test]
    fn parses_routes_of_both_families() {
        let info = |dst: &str, gateway: Option<&str>, oif: Option<u32>, table: u32| RouteInfo {
            dst: crate::test_support::net(dst),
            gateway: gateway.map(ip),
            oif,
            table,
        };
        let cases = [
            (
                "the IPv4 default route through a gateway",
                reply(
                    AddressFamily::Inet,
                    0,
                    254,
                    vec![
                        RouteAttribute::Gateway(RouteAddress::from(ip("10.1.0.1"))),
                        RouteAttribute::Oif(2),
                    ],
                ),
                Some(info("0.0.0.0/0", Some("10.1.0.1"), Some(2), 254)),
            ),
            (
                "an IPv6 route in a table above 255 (an attribute, not the header)",
                reply(
                    AddressFamily::Inet6,
                    64,
                    RouteHeader::RT_TABLE_UNSPEC,
                    vec![
                        RouteAttribute::Destination(RouteAddress::from(ip("fd00:1::"))),
                        RouteAttribute::Table(1000),
                    ],
                ),
                Some(info("fd00:1::/64", None, None, 1000)),
            ),
            (
                "an IPv4 prefix longer than 32 bits",
                reply(AddressFamily::Inet, 40, 254, vec![]),
                None,
            ),
        ];
        for (what, msg, want) in cases {
            assert_eq!(parse_route(&msg), want, "{what}");
        }
    }
}
