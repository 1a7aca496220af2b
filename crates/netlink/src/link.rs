//! Links: what the kernel says about one ([`Link`]), creating them (bridge, veth, macvlan,
//! dummy, ifb), changing them (up/down, promiscuity, master, MTU, MAC, name, namespace) and
//! deleting them: one, a batch, or in the background ([`Handle::retire_links`]).
//!
//! Each request is built by a pure function below the `Handle` methods, so the messages are
//! tested without a kernel.

use crate::detach::{self, Detached};
use crate::error::{Error, Result};
use crate::handle::{Handle, Request, CREATE};
use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_ECHO};
use netlink_packet_route::link::{
    AfSpecInet, AfSpecUnspec, InetDevConf, InfoBridge, InfoBridgePort, InfoData, InfoKind,
    InfoMacVlan, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute, LinkExtentMask, LinkFlags,
    LinkInfo, LinkMessage, MacVlanMode,
};
use netlink_packet_route::RouteNetlinkMessage;
use std::os::fd::{AsRawFd, BorrowedFd};

/// What oxivirt needs to know about a link.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    pub master: Option<u32>,
    pub kind: Option<String>,
    pub up: bool,
    pub promisc: bool,
    /// For veths: the peer's index (in the peer's namespace).
    pub peer_index: Option<u32>,
    /// The namespace id of the peer, if it is elsewhere.
    pub link_netnsid: Option<i32>,
    /// The kind of the master this link is a port of (`bridge`, `bond`, …).
    pub port_kind: Option<String>,
    pub hairpin: Option<bool>,
    pub isolated: Option<bool>,
    pub learning: Option<bool>,
    pub vlan_filtering: Option<bool>,
    pub macvlan_mode: Option<MacvlanMode>,
}

impl Link {
    pub fn mac_string(&self) -> String {
        self.mac.map(|m| crate::format_mac(&m)).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MacvlanMode {
    Private,
    Vepa,
    /// The kernel's and the CNI plugin's default.
    #[default]
    Bridge,
    Passthru,
}

impl MacvlanMode {
    fn to_nl(self) -> MacVlanMode {
        match self {
            Self::Private => MacVlanMode::Private,
            Self::Vepa => MacVlanMode::Vepa,
            Self::Bridge => MacVlanMode::Bridge,
            Self::Passthru => MacVlanMode::Passthrough,
        }
    }

    fn from_nl(m: MacVlanMode) -> Option<Self> {
        match m {
            MacVlanMode::Private => Some(Self::Private),
            MacVlanMode::Vepa => Some(Self::Vepa),
            MacVlanMode::Bridge => Some(Self::Bridge),
            MacVlanMode::Passthrough => Some(Self::Passthru),
            _ => None,
        }
    }
}

/// A bridge for [`Handle::add_bridge`].
#[derive(Debug, Clone, Copy, Default)]
pub struct BridgeOptions<'a> {
    pub name: &'a str,
    /// The kernel's default (1500) if `None`.
    pub mtu: Option<u32>,
    /// Ports carry VLANs (`bridge vlan`); off, the bridge ignores VLAN tags.
    pub vlan_filtering: bool,
}

/// A veth pair for [`Handle::add_veth`]: `name` is made in this handle's namespace and
/// `peer_name` in `peer_netns`, by one request.
#[derive(Debug, Clone, Copy, Default)]
pub struct VethOptions<'a> {
    /// The end that stays in this namespace.
    pub name: &'a str,
    /// The other end.
    pub peer_name: &'a str,
    /// MTU of both ends; the kernel's default (1500) if `None`.
    pub mtu: Option<u32>,
    /// MAC of the peer; random if `None`.
    pub peer_mac: Option<[u8; 6]>,
    /// Namespace the peer is made in; this one if `None`.
    pub peer_netns: Option<BorrowedFd<'a>>,
    /// Index of the bridge `name` becomes a port of, in the same request (the port never
    /// exists outside its bridge).
    pub master: Option<u32>,
    /// Bring `name` up in the same request.
    pub up: bool,
}

/// A macvlan for [`Handle::add_macvlan`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MacvlanOptions<'a> {
    pub name: &'a str,
    /// Index of the link the macvlan sits on, in this handle's namespace.
    pub parent: u32,
    pub mode: MacvlanMode,
    /// The parent's MTU if `None`.
    pub mtu: Option<u32>,
    /// Random if `None`.
    pub mac: Option<[u8; 6]>,
    /// Namespace the macvlan is made in; this one if `None`.
    pub netns: Option<BorrowedFd<'a>>,
}

impl Handle {
    /// The link called `name`, or `None` if there is none.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>> {
        self.get_link(get_link_by_name(name))
    }

    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>> {
        self.get_link(get_link_by_index(index))
    }

    fn get_link(&mut self, req: Request) -> Result<Option<Link>> {
        match self.request(req) {
            Ok(msgs) => Ok(msgs.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(parse_link(l)),
                _ => None,
            })),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Like [`Self::link_by_name`], but a missing link is an error.
    pub fn require_link(&mut self, name: &str) -> Result<Link> {
        self.link_by_name(name)?.ok_or_else(|| {
            Error::kernel(
                format!("find link {name}"),
                std::io::Error::from_raw_os_error(libc::ENODEV),
            )
        })
    }

    pub fn links(&mut self) -> Result<Vec<Link>> {
        let msgs = self.request(dump_links())?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(parse_link(l)),
                _ => None,
            })
            .collect())
    }

    pub fn add_bridge(&mut self, opts: &BridgeOptions<'_>) -> Result<()> {
        self.ack(new_bridge(opts))
    }

    /// Creates a veth pair (see [`VethOptions`]) and returns the end in this namespace.
    pub fn add_veth(&mut self, opts: &VethOptions<'_>) -> Result<Link> {
        let echoed = self.request(new_veth(opts))?;
        match echoed_link(echoed, opts.name) {
            Some(l) => Ok(l),
            None => self.require_link(opts.name),
        }
    }

    pub fn add_macvlan(&mut self, opts: &MacvlanOptions<'_>) -> Result<()> {
        self.ack(new_macvlan(opts))
    }

    /// A dummy link with `mac` and `mtu` from the start.
    pub fn add_dummy(&mut self, name: &str, mac: [u8; 6], mtu: u32) -> Result<()> {
        self.ack(new_plain_link(name, InfoKind::Dummy, mac, mtu))
    }

    /// An `ifb` link: like a dummy while it is down (no ARP, no traffic), for kernels built
    /// without the dummy driver. Its MAC cannot be changed later, so it is given here.
    pub fn add_ifb(&mut self, name: &str, mac: [u8; 6], mtu: u32) -> Result<()> {
        self.ack(new_plain_link(name, InfoKind::Ifb, mac, mtu))
    }

    pub fn set_up(&mut self, index: u32, up: bool) -> Result<()> {
        self.ack(set_up(index, up))
    }

    /// Brings a link up and sets its IPv4 `arp_notify` in the same request (one round trip
    /// less than the sysctl file, which also costs a walk of /proc/sys shared by every
    /// namespace). A link without IPv4 state (MTU below 68) is just brought up.
    pub fn set_up_arp_notify(&mut self, index: u32) -> Result<()> {
        match self.ack(set_up_arp_notify(index)) {
            Err(e) if e.errno() == Some(libc::EAFNOSUPPORT) => self.set_up(index, true),
            other => other,
        }
    }

    pub fn set_promisc(&mut self, index: u32, on: bool) -> Result<()> {
        self.ack(set_promisc(index, on))
    }

    pub fn set_master(&mut self, index: u32, master: u32) -> Result<()> {
        self.ack(set_attr(index, "master", LinkAttribute::Controller(master)))
    }

    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<()> {
        self.ack(set_attr(index, "mtu", LinkAttribute::Mtu(mtu)))
    }

    pub fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<()> {
        self.ack(set_attr(index, "mac", LinkAttribute::Address(mac.to_vec())))
    }

    pub fn set_name(&mut self, index: u32, name: &str) -> Result<()> {
        self.ack(set_attr(index, "name", LinkAttribute::IfName(name.into())))
    }

    /// Moves a link into the namespace `ns` refers to.
    pub fn set_netns(&mut self, index: u32, ns: BorrowedFd<'_>) -> Result<()> {
        self.ack(set_attr(
            index,
            "namespace",
            LinkAttribute::NetNsFd(ns.as_raw_fd()),
        ))
    }

    /// Deletes several links in one kernel batch: they are put in a link group of their
    /// own and the group is deleted, so the kernel's RCU wait (the slow part of deleting
    /// a link, 15–25 ms here) is paid once instead of once per link.
    pub fn del_links(&mut self, indices: &[u32]) -> Result<()> {
        match indices {
            [] => return Ok(()),
            [one] => return self.del_link(*one),
            _ => {}
        }
        let group = self.group_links(indices)?;
        self.ack(del_link_group(group))
    }

    pub fn del_link(&mut self, index: u32) -> Result<()> {
        self.ack(del_link(index))
    }

    /// Puts `indices` in a fresh link group and returns it.
    fn group_links(&mut self, indices: &[u32]) -> Result<u32> {
        let mut rnd = [0u8; 4];
        // SAFETY: getrandom writes at most rnd.len() bytes into a valid buffer.
        let _ = unsafe { libc::getrandom(rnd.as_mut_ptr().cast(), rnd.len(), 0) };
        // Group 0 is every link's default; stay clear of it and of small admin groups.
        let group = u32::from_ne_bytes(rnd) | 0x8000_0000;
        for i in indices {
            self.ack(set_attr(*i, "group", LinkAttribute::Group(group)))?;
        }
        Ok(group)
    }

    /// Takes link `index` out of use at once and leaves its deletion to a detached process.
    ///
    /// Deleting a veth waits in the kernel for RCU grace periods (15–25 ms here) although
    /// the device is unusable long before. So: set it down, rename it to `grave` (its
    /// name is free again immediately), and let a double-forked child send the delete and
    /// wait for it (see [`Detached`]). If the rename fails, deletes in place instead.
    pub fn retire_link(&mut self, index: u32, grave: &str) -> Result<()> {
        self.set_up(index, false)?;
        if self.set_name(index, grave).is_err() {
            return self.del_link(index);
        }
        self.delete_detached(&[index], None)
    }

    /// [`Self::retire_link`] for several links (one kernel batch in the background), and
    /// optionally a program the detached process runs afterwards (e.g. `nft` removing
    /// rules), so the caller waits for neither.
    pub fn retire_links(&mut self, links: &[(u32, String)], then: Option<&Detached>) -> Result<()> {
        let mut indices = Vec::with_capacity(links.len());
        for (index, grave) in links {
            self.set_up(*index, false)?;
            // A link that cannot be renamed keeps its name until the delete lands.
            let _ = self.set_name(*index, grave);
            indices.push(*index);
        }
        self.delete_detached(&indices, then)
    }

    fn delete_detached(&mut self, indices: &[u32], then: Option<&Detached>) -> Result<()> {
        let req = match indices {
            [] if then.is_none() => return Ok(()),
            [] => None,
            [one] => Some(del_link(*one)),
            _ => Some(del_link_group(self.group_links(indices)?)),
        };
        let buf = req.map_or_else(Vec::new, |r| self.encode(r.msg, r.flags));
        if detach::spawn(self.raw_fd(), &buf, then).is_err() {
            return self.del_links(indices);
        }
        Ok(())
    }
}

fn get_link_by_name(name: &str) -> Request {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    get_link(format!("get link {name}"), msg)
}

fn get_link_by_index(index: u32) -> Request {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    get_link(format!("get link #{index}"), msg)
}

fn get_link(op: String, mut msg: LinkMessage) -> Request {
    // Stats are most of a link's reply and we never read them.
    msg.attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    Request::new(op, RouteNetlinkMessage::GetLink(msg), 0)
}

fn dump_links() -> Request {
    Request::new(
        "list links",
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
        NLM_F_DUMP,
    )
}

fn new_bridge(opts: &BridgeOptions<'_>) -> Request {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(opts.name.into()));
    if let Some(mtu) = opts.mtu {
        msg.attributes.push(LinkAttribute::Mtu(mtu));
    }
    let mut info = vec![LinkInfo::Kind(InfoKind::Bridge)];
    if opts.vlan_filtering {
        info.push(LinkInfo::Data(InfoData::Bridge(vec![
            InfoBridge::VlanFiltering(true),
        ])));
    }
    msg.attributes.push(LinkAttribute::LinkInfo(info));
    Request::new(
        format!("create bridge {}", opts.name),
        RouteNetlinkMessage::NewLink(msg),
        CREATE,
    )
}

fn new_veth(opts: &VethOptions<'_>) -> Request {
    let mut peer = LinkMessage::default();
    peer.attributes
        .push(LinkAttribute::IfName(opts.peer_name.into()));
    if let Some(mtu) = opts.mtu {
        peer.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(mac) = opts.peer_mac {
        peer.attributes.push(LinkAttribute::Address(mac.to_vec()));
    }
    if let Some(fd) = opts.peer_netns {
        peer.attributes.push(LinkAttribute::NetNsFd(fd.as_raw_fd()));
    }
    // One queue each way, which is what a veth uses unless told otherwise. Left unset,
    // the kernel sizes both ends for every possible CPU, registers a sysfs directory
    // per queue and then removes all but one: a tenth of the ADD on two CPUs, more on
    // bigger nodes. (The one thing given up: raising the channel count later for XDP.)
    let one_queue = [LinkAttribute::NumTxQueues(1), LinkAttribute::NumRxQueues(1)];
    peer.attributes.extend(one_queue.clone());
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(opts.name.into()));
    msg.attributes.extend(one_queue);
    if let Some(mtu) = opts.mtu {
        msg.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(m) = opts.master {
        msg.attributes.push(LinkAttribute::Controller(m));
    }
    if opts.up {
        msg.header.flags |= LinkFlags::Up;
        msg.header.change_mask |= LinkFlags::Up;
    }
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    // NLM_F_ECHO hands the new link back in the same round trip (kernels from 6.3);
    // older kernels send nothing and the caller looks it up.
    Request::new(
        format!("create veth {} (peer {})", opts.name, opts.peer_name),
        RouteNetlinkMessage::NewLink(msg),
        CREATE | NLM_F_ECHO,
    )
}

/// The link called `name` among the messages a veth request echoed.
fn echoed_link(msgs: Vec<RouteNetlinkMessage>, name: &str) -> Option<Link> {
    msgs.into_iter().find_map(|m| match m {
        RouteNetlinkMessage::NewLink(l) => Some(parse_link(l)).filter(|l| l.name == name),
        _ => None,
    })
}

fn new_macvlan(opts: &MacvlanOptions<'_>) -> Request {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(opts.name.into()));
    msg.attributes.push(LinkAttribute::Link(opts.parent));
    if let Some(mtu) = opts.mtu {
        msg.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(mac) = opts.mac {
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
    }
    if let Some(fd) = opts.netns {
        msg.attributes.push(LinkAttribute::NetNsFd(fd.as_raw_fd()));
    }
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::MacVlan),
        LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
            opts.mode.to_nl(),
        )])),
    ]));
    Request::new(
        format!("create macvlan {}", opts.name),
        RouteNetlinkMessage::NewLink(msg),
        CREATE,
    )
}

/// A link of a kind that needs nothing but a name, a MAC and an MTU (dummy, ifb).
fn new_plain_link(name: &str, kind: InfoKind, mac: [u8; 6], mtu: u32) -> Request {
    let op = format!("create {} {name}", kind_name(&kind));
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.into()));
    msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
    msg.attributes.push(LinkAttribute::Mtu(mtu));
    msg.attributes
        .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(kind)]));
    Request::new(op, RouteNetlinkMessage::NewLink(msg), CREATE)
}

fn set_link(op: String, msg: LinkMessage) -> Request {
    Request::new(op, RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)
}

fn set_up(index: u32, up: bool) -> Request {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    if up {
        msg.header.flags |= LinkFlags::Up;
    }
    msg.header.change_mask |= LinkFlags::Up;
    set_link(
        format!("set link #{index} {}", if up { "up" } else { "down" }),
        msg,
    )
}

fn set_up_arp_notify(index: u32) -> Request {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.header.flags |= LinkFlags::Up;
    msg.header.change_mask |= LinkFlags::Up;
    let mut conf = InetDevConf::default();
    conf.arp_notify = 1;
    msg.attributes
        .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet(vec![
            AfSpecInet::DevConfRequest(conf),
        ])]));
    set_link(format!("set link #{index} up with arp_notify"), msg)
}

fn set_promisc(index: u32, on: bool) -> Request {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    if on {
        msg.header.flags |= LinkFlags::Promisc;
    }
    msg.header.change_mask |= LinkFlags::Promisc;
    set_link(format!("set link #{index} promisc"), msg)
}

fn set_attr(index: u32, what: &str, attr: LinkAttribute) -> Request {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes.push(attr);
    set_link(format!("set {what} of link #{index}"), msg)
}

fn del_link(index: u32) -> Request {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    Request::new(
        format!("delete link #{index}"),
        RouteNetlinkMessage::DelLink(msg),
        NLM_F_ACK,
    )
}

fn del_link_group(group: u32) -> Request {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::Group(group));
    Request::new(
        format!("delete link group {group}"),
        RouteNetlinkMessage::DelLink(msg),
        NLM_F_ACK,
    )
}

pub(crate) fn parse_link(msg: LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        up: msg.header.flags.contains(LinkFlags::Up),
        promisc: msg.header.flags.contains(LinkFlags::Promisc),
        ..Default::default()
    };
    for attr in msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::Address(a) => {
                if let Ok(m) = <[u8; 6]>::try_from(a.as_slice()) {
                    link.mac = Some(m);
                }
            }
            LinkAttribute::Mtu(m) => link.mtu = m,
            LinkAttribute::Controller(m) => link.master = Some(m),
            LinkAttribute::Link(l) => link.peer_index = Some(l),
            LinkAttribute::LinkNetNsId(id) => link.link_netnsid = Some(id),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    parse_link_info(&mut link, info);
                }
            }
            _ => {}
        }
    }
    link
}

fn parse_link_info(link: &mut Link, info: LinkInfo) {
    match info {
        LinkInfo::Kind(k) => link.kind = Some(kind_name(&k)),
        LinkInfo::PortKind(k) => {
            link.port_kind = Some(match k {
                InfoPortKind::Bridge => "bridge".into(),
                InfoPortKind::Bond => "bond".into(),
                InfoPortKind::Vrf => "vrf".into(),
                InfoPortKind::Team => "team".into(),
                InfoPortKind::Other(s) => s,
                other => format!("{other:?}").to_lowercase(),
            })
        }
        LinkInfo::Data(InfoData::Bridge(opts)) => {
            for o in opts {
                if let InfoBridge::VlanFiltering(v) = o {
                    link.vlan_filtering = Some(v);
                }
            }
        }
        LinkInfo::Data(InfoData::MacVlan(opts)) => {
            for o in opts {
                if let InfoMacVlan::Mode(m) = o {
                    link.macvlan_mode = MacvlanMode::from_nl(m);
                }
            }
        }
        LinkInfo::PortData(InfoPortData::BridgePort(opts)) => {
            for o in opts {
                match o {
                    InfoBridgePort::HairpinMode(v) => link.hairpin = Some(v),
                    InfoBridgePort::Isolated(v) => link.isolated = Some(v),
                    InfoBridgePort::Learning(v) => link.learning = Some(v),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

fn kind_name(k: &InfoKind) -> String {
    match k {
        InfoKind::Bridge => "bridge".into(),
        InfoKind::Veth => "veth".into(),
        InfoKind::MacVlan => "macvlan".into(),
        InfoKind::Dummy => "dummy".into(),
        InfoKind::Tun => "tun".into(),
        InfoKind::Vlan => "vlan".into(),
        InfoKind::Other(s) => s.clone(),
        other => format!("{other:?}").to_lowercase(),
    }
}
