//! What a bridge does with its ports: per-port options (learning, hairpin, isolation) and
//! the VLANs a port carries on a VLAN-filtering bridge. Creating the bridge itself is a
//! link operation ([`Handle::add_bridge`]).

use crate::error::Result;
use crate::handle::{Handle, Request};
use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP};
use netlink_packet_route::link::{
    AfSpecBridge, BridgeVlanInfo, BridgeVlanInfoFlags, InfoBridgePort, InfoPortData, InfoPortKind,
    LinkAttribute, LinkExtentMask, LinkInfo, LinkMessage,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

/// Options of a bridge port: what [`Handle::set_port_options`] changes (`None` leaves one
/// as it is) and what a port's [`crate::Link`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BridgePortOptions {
    /// The bridge learns source MACs seen on this port.
    pub learning: Option<bool>,
    /// Frames may be sent back out of the port they came in on.
    pub hairpin: Option<bool>,
    /// The port talks only to ports that are not isolated.
    pub isolated: Option<bool>,
}

impl BridgePortOptions {
    /// Whether there is nothing to set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A VLAN on a bridge port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BridgeVlan {
    /// The VLAN id (1–4094).
    pub vid: u16,
    /// Untagged frames entering the port belong to this VLAN.
    pub pvid: bool,
    /// Frames of this VLAN leave the port without a tag.
    pub untagged: bool,
}

impl Handle {
    /// Sets options of a bridge port (a link enslaved to a bridge). Empty options send
    /// nothing.
    pub fn set_port_options(&mut self, index: u32, opts: &BridgePortOptions) -> Result<()> {
        if opts.is_empty() {
            return Ok(());
        }
        self.ack(set_port_options(index, opts))
    }

    pub fn set_hairpin(&mut self, index: u32, on: bool) -> Result<()> {
        self.set_port_options(
            index,
            &BridgePortOptions {
                hairpin: Some(on),
                ..Default::default()
            },
        )
    }

    /// Adds VLAN `vlan.vid` to bridge port `index`.
    pub fn add_bridge_vlan(&mut self, index: u32, vlan: &BridgeVlan) -> Result<()> {
        self.ack(add_bridge_vlan(index, vlan))
    }

    /// Removes VLAN `vid` from bridge port `index`.
    pub fn del_bridge_vlan(&mut self, index: u32, vid: u16) -> Result<()> {
        self.ack(del_bridge_vlan(index, vid))
    }

    /// VLANs configured on `index` (AF_BRIDGE dump with the VLAN filter).
    pub fn bridge_vlans(&mut self, index: u32) -> Result<Vec<BridgeVlan>> {
        let msgs = self.request(dump_bridge_vlans())?;
        Ok(parse_bridge_vlans(msgs, index))
    }
}

fn set_port_options(index: u32, opts: &BridgePortOptions) -> Request {
    let mut port = Vec::with_capacity(3);
    if let Some(v) = opts.learning {
        port.push(InfoBridgePort::Learning(v));
    }
    if let Some(v) = opts.hairpin {
        port.push(InfoBridgePort::HairpinMode(v));
    }
    if let Some(v) = opts.isolated {
        port.push(InfoBridgePort::Isolated(v));
    }
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::PortKind(InfoPortKind::Bridge),
        LinkInfo::PortData(InfoPortData::BridgePort(port)),
    ]));
    // RTM_NEWLINK without NLM_F_CREATE changes an existing link; it is the one message
    // that carries IFLA_INFO_SLAVE_DATA through to the master's driver.
    Request::new(
        format!("set bridge port options of link #{index}"),
        RouteNetlinkMessage::NewLink(msg),
        NLM_F_ACK,
    )
}

fn bridge_vlan_message(index: u32, vid: u16, flags: BridgeVlanInfoFlags) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.interface_family = AddressFamily::Bridge;
    msg.header.index = index;
    msg.attributes
        .push(LinkAttribute::AfSpecBridge(vec![AfSpecBridge::VlanInfo(
            BridgeVlanInfo { flags, vid },
        )]));
    msg
}

fn add_bridge_vlan(index: u32, vlan: &BridgeVlan) -> Request {
    let mut flags = BridgeVlanInfoFlags::empty();
    if vlan.pvid {
        flags |= BridgeVlanInfoFlags::Pvid;
    }
    if vlan.untagged {
        flags |= BridgeVlanInfoFlags::Untagged;
    }
    Request::new(
        format!("add vlan {} on link #{index}", vlan.vid),
        RouteNetlinkMessage::SetLink(bridge_vlan_message(index, vlan.vid, flags)),
        NLM_F_ACK,
    )
}

fn del_bridge_vlan(index: u32, vid: u16) -> Request {
    Request::new(
        format!("delete vlan {vid} on link #{index}"),
        RouteNetlinkMessage::DelLink(bridge_vlan_message(
            index,
            vid,
            BridgeVlanInfoFlags::empty(),
        )),
        NLM_F_ACK,
    )
}

fn dump_bridge_vlans() -> Request {
    let mut msg = LinkMessage::default();
    msg.header.interface_family = AddressFamily::Bridge;
    msg.attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::Brvlan]));
    Request::new(
        "list bridge vlans",
        RouteNetlinkMessage::GetLink(msg),
        NLM_F_DUMP,
    )
}

fn parse_bridge_vlans(msgs: Vec<RouteNetlinkMessage>, index: u32) -> Vec<BridgeVlan> {
    let mut out = Vec::new();
    for m in msgs {
        let RouteNetlinkMessage::NewLink(l) = m else {
            continue;
        };
        if l.header.index != index {
            continue;
        }
        for a in l.attributes {
            let LinkAttribute::AfSpecBridge(spec) = a else {
                continue;
            };
            for s in spec {
                if let AfSpecBridge::VlanInfo(v) = s {
                    out.push(BridgeVlan {
                        vid: v.vid,
                        pvid: v.flags.contains(BridgeVlanInfoFlags::Pvid),
                        untagged: v.flags.contains(BridgeVlanInfoFlags::Untagged),
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::message_of;

    #[test]
    fn port_options_go_to_the_bridge_as_port_data() {
        let req = set_port_options(
            8,
            &BridgePortOptions {
                learning: Some(false),
                hairpin: Some(true),
                isolated: Some(true),
            },
        );
        assert_eq!(req.op, "set bridge port options of link #8");
        // Changes an existing port: no NLM_F_CREATE.
        assert_eq!(req.flags, NLM_F_ACK);
        let msg = message_of!(req, NewLink);
        assert_eq!(msg.header.index, 8);
        assert_eq!(
            msg.attributes,
            [LinkAttribute::LinkInfo(vec![
                LinkInfo::PortKind(InfoPortKind::Bridge),
                LinkInfo::PortData(InfoPortData::BridgePort(vec![
                    InfoBridgePort::Learning(false),
                    InfoBridgePort::HairpinMode(true),
                    InfoBridgePort::Isolated(true),
                ])),
            ])]
        );
    }

    #[test]
    fn unset_port_options_are_left_out() {
        let opts = BridgePortOptions {
            hairpin: Some(false),
            ..Default::default()
        };
        assert!(!opts.is_empty());
        assert!(BridgePortOptions::default().is_empty());
        let req = set_port_options(8, &opts);
        let LinkAttribute::LinkInfo(info) = &req.link_message().attributes[0] else {
            panic!("no link info: {req:?}");
        };
        assert_eq!(
            info[1],
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                false
            )]))
        );
    }

    fn vlan_info(req: &Request) -> (AddressFamily, u32, Vec<AfSpecBridge>) {
        let msg = req.link_message();
        let spec = msg
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::AfSpecBridge(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        (msg.header.interface_family, msg.header.index, spec)
    }

    #[test]
    fn an_access_vlan_is_pvid_and_untagged() {
        let req = add_bridge_vlan(
            5,
            &BridgeVlan {
                vid: 100,
                pvid: true,
                untagged: true,
            },
        );
        assert_eq!(req.op, "add vlan 100 on link #5");
        assert_eq!(req.flags, NLM_F_ACK);
        assert!(matches!(req.msg, RouteNetlinkMessage::SetLink(_)));
        assert_eq!(
            vlan_info(&req),
            (
                AddressFamily::Bridge,
                5,
                vec![AfSpecBridge::VlanInfo(BridgeVlanInfo {
                    flags: BridgeVlanInfoFlags::Pvid | BridgeVlanInfoFlags::Untagged,
                    vid: 100,
                })]
            )
        );
    }

    #[test]
    fn a_trunk_vlan_is_tagged_and_deleting_needs_only_the_id() {
        let req = add_bridge_vlan(
            5,
            &BridgeVlan {
                vid: 200,
                ..Default::default()
            },
        );
        let none = vec![AfSpecBridge::VlanInfo(BridgeVlanInfo {
            flags: BridgeVlanInfoFlags::empty(),
            vid: 200,
        })];
        assert_eq!(vlan_info(&req), (AddressFamily::Bridge, 5, none.clone()));

        let req = del_bridge_vlan(5, 200);
        assert_eq!(req.op, "delete vlan 200 on link #5");
        assert!(matches!(req.msg, RouteNetlinkMessage::DelLink(_)));
        assert_eq!(vlan_info(&req), (AddressFamily::Bridge, 5, none));
    }

    #[test]
    fn vlans_of_one_port_from_a_dump() {
        let req = dump_bridge_vlans();
        assert_eq!(req.flags, NLM_F_DUMP);
        let msg = req.link_message();
        assert_eq!(msg.header.interface_family, AddressFamily::Bridge);
        assert_eq!(
            msg.attributes,
            [LinkAttribute::ExtMask(vec![LinkExtentMask::Brvlan])]
        );

        let port = |index, vlans: &[(u16, BridgeVlanInfoFlags)]| {
            let mut m = LinkMessage::default();
            m.header.interface_family = AddressFamily::Bridge;
            m.header.index = index;
            m.attributes.push(LinkAttribute::AfSpecBridge(
                vlans
                    .iter()
                    .map(|&(vid, flags)| AfSpecBridge::VlanInfo(BridgeVlanInfo { flags, vid }))
                    .collect(),
            ));
            RouteNetlinkMessage::NewLink(m)
        };
        let msgs = vec![
            port(4, &[(1, BridgeVlanInfoFlags::Pvid)]),
            port(
                5,
                &[
                    (1, BridgeVlanInfoFlags::Pvid | BridgeVlanInfoFlags::Untagged),
                    (200, BridgeVlanInfoFlags::empty()),
                ],
            ),
        ];
        assert_eq!(
            parse_bridge_vlans(msgs, 5),
            [
                BridgeVlan {
                    vid: 1,
                    pvid: true,
                    untagged: true,
                },
                BridgeVlan {
                    vid: 200,
                    pvid: false,
                    untagged: false,
                },
            ]
        );
    }
}
