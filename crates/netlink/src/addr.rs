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
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if index.is_none_or(|i| i == a.header.index) => {
                    parse_address(&a)
                }
                _ => None,
            })
            .collect())
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
