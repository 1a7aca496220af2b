//! IP addresses on links: adding, deleting and listing them.

use crate::error::Result;
use crate::handle::{Handle, Request, CREATE};
use ipnet::IpNet;
use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrInfo {
    pub index: u32,
    pub addr: IpNet,
    /// Exempt from duplicate address detection (IPv6).
    pub nodad: bool,
}

impl Handle {
    /// Adds `addr` (address and prefix) to link `index`; `nodad` skips IPv6 duplicate
    /// address detection, so the address is usable at once.
    pub fn add_address(&mut self, index: u32, addr: IpNet, nodad: bool) -> Result<()> {
        self.ack(add_address(index, addr, nodad))
    }

    pub fn del_address(&mut self, index: u32, addr: IpNet) -> Result<()> {
        self.ack(del_address(index, addr))
    }

    /// Addresses, optionally only those on link `index`.
    pub fn addresses(&mut self, index: Option<u32>) -> Result<Vec<AddrInfo>> {
        let msgs = self.request(dump_addresses())?;
        Ok(parse_addresses(msgs, index))
    }
}

fn family_of(ip: &IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

/// The header and the local/peer address every address request carries.
fn address_message(index: u32, addr: IpNet) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = family_of(&addr.addr());
    msg.header.prefix_len = addr.prefix_len();
    msg.header.index = index;
    msg.attributes.push(AddressAttribute::Local(addr.addr()));
    msg.attributes.push(AddressAttribute::Address(addr.addr()));
    msg
}

fn add_address(index: u32, addr: IpNet, nodad: bool) -> Request {
    let mut msg = address_message(index, addr);
    msg.header.scope = AddressScope::Universe;
    if let IpNet::V4(v4) = addr {
        // /31 and /32 have no broadcast address.
        if v4.prefix_len() < 31 {
            msg.attributes
                .push(AddressAttribute::Broadcast(v4.broadcast()));
        }
    }
    if nodad {
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    Request::new(
        format!("add address {addr} to link #{index}"),
        RouteNetlinkMessage::NewAddress(msg),
        CREATE,
    )
}

fn del_address(index: u32, addr: IpNet) -> Request {
    Request::new(
        format!("delete address {addr} from link #{index}"),
        RouteNetlinkMessage::DelAddress(address_message(index, addr)),
        NLM_F_ACK,
    )
}

fn dump_addresses() -> Request {
    Request::new(
        "list addresses",
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        NLM_F_DUMP,
    )
}

/// The addresses among a dump's messages, only those on link `index` if given.
fn parse_addresses(msgs: Vec<RouteNetlinkMessage>, index: Option<u32>) -> Vec<AddrInfo> {
    msgs.into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewAddress(a) if index.is_none_or(|i| i == a.header.index) => {
                parse_address(&a)
            }
            _ => None,
        })
        .collect()
}

fn parse_address(a: &AddressMessage) -> Option<AddrInfo> {
    let mut local = None;
    let mut address = None;
    let mut nodad = false;
    for attr in &a.attributes {
        match attr {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            AddressAttribute::Flags(f) => nodad = f.contains(AddressFlags::Nodad),
            _ => {}
        }
    }
    // On a point-to-point link IFA_ADDRESS is the peer; IFA_LOCAL is ours when present.
    let ip = local.or(address)?;
    let addr = IpNet::new(ip, a.header.prefix_len).ok()?;
    Some(AddrInfo {
        index: a.header.index,
        addr,
        nodad,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{message_of, net};
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn ipv4_address_with_its_broadcast() {
        let req = add_address(3, net("10.22.0.5/16"), false);
        assert_eq!(req.op, "add address 10.22.0.5/16 to link #3");
        assert_eq!(req.flags, CREATE);
        let msg = message_of!(req, NewAddress);
        assert_eq!(msg.header.family, AddressFamily::Inet);
        assert_eq!(msg.header.prefix_len, 16);
        assert_eq!(msg.header.index, 3);
        assert_eq!(msg.header.scope, AddressScope::Universe);
        let ip = IpAddr::V4(Ipv4Addr::new(10, 22, 0, 5));
        assert_eq!(
            msg.attributes,
            [
                AddressAttribute::Local(ip),
                AddressAttribute::Address(ip),
                AddressAttribute::Broadcast(Ipv4Addr::new(10, 22, 255, 255)),
            ]
        );
    }

    #[test]
    fn point_to_point_prefixes_have_no_broadcast() {
        for p in ["10.0.0.1/31", "10.0.0.1/32"] {
            let req = add_address(3, net(p), false);
            assert!(
                !req.address_message()
                    .attributes
                    .iter()
                    .any(|a| matches!(a, AddressAttribute::Broadcast(_))),
                "{p}"
            );
        }
    }

    #[test]
    fn ipv6_address_without_dad() {
        let req = add_address(4, net("fd00::5/64"), true);
        let msg = req.address_message();
        assert_eq!(msg.header.family, AddressFamily::Inet6);
        assert_eq!(msg.header.prefix_len, 64);
        let ip = IpAddr::V6("fd00::5".parse::<Ipv6Addr>().expect("v6"));
        assert_eq!(
            msg.attributes,
            [
                AddressAttribute::Local(ip),
                AddressAttribute::Address(ip),
                AddressAttribute::Flags(AddressFlags::Nodad),
            ]
        );
    }

    #[test]
    fn delete_names_the_address_and_prefix() {
        let req = del_address(4, net("fd00::5/64"));
        assert_eq!(req.op, "delete address fd00::5/64 from link #4");
        assert_eq!(req.flags, NLM_F_ACK);
        let msg = message_of!(req, DelAddress);
        assert_eq!(
            (msg.header.family, msg.header.prefix_len, msg.header.index),
            (AddressFamily::Inet6, 64, 4)
        );
        assert_eq!(msg.attributes.len(), 2);
        assert_eq!(dump_addresses().flags, NLM_F_DUMP);
    }

    fn reply(index: u32, prefix_len: u8, attributes: Vec<AddressAttribute>) -> RouteNetlinkMessage {
        let mut msg = AddressMessage::default();
        msg.header.index = index;
        msg.header.prefix_len = prefix_len;
        msg.attributes = attributes;
        RouteNetlinkMessage::NewAddress(msg)
    }

    #[test]
    fn parses_a_dump_local_first_and_filtered_by_link() {
        let local = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let peer = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let msgs = vec![
            reply(
                2,
                24,
                vec![
                    AddressAttribute::Address(peer),
                    AddressAttribute::Local(local),
                ],
            ),
            reply(
                3,
                128,
                vec![
                    AddressAttribute::Address(v6),
                    AddressAttribute::Flags(AddressFlags::Nodad | AddressFlags::Permanent),
                ],
            ),
            // A prefix longer than the family allows is skipped, not an error.
            reply(3, 40, vec![AddressAttribute::Local(local)]),
            // Neither local nor peer address: nothing to report.
            reply(3, 24, vec![]),
        ];
        let all = parse_addresses(msgs.clone(), None);
        assert_eq!(
            all,
            [
                AddrInfo {
                    index: 2,
                    addr: net("10.0.0.1/24"),
                    nodad: false,
                },
                AddrInfo {
                    index: 3,
                    addr: net("::1/128"),
                    nodad: true,
                },
            ]
        );
        assert_eq!(parse_addresses(msgs, Some(3)), all[1..]);
    }
}
