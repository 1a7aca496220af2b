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
    /// The port's options as the kernel reports them (a bridge port's only).
    pub port: crate::BridgePortOptions,
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
        if !detach::outlives_us() {
            // Nothing detached survives this process: the same work, here and now.
            self.del_links(indices)?;
            if let Some(t) = then {
                let program = || t.path.to_string_lossy().into_owned();
                let status = t.run_here().map_err(|source| Error::Program {
                    program: program(),
                    source,
                })?;
                if !status.success() {
                    return Err(Error::Program {
                        program: program(),
                        source: std::io::Error::other(format!("ended with {status}")),
                    });
                }
            }
            return Ok(());
        }
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

/// The attributes for those of a new link's MTU, MAC and target namespace that are set,
/// in that order.
fn mtu_mac_netns(
    mtu: Option<u32>,
    mac: Option<[u8; 6]>,
    netns: Option<BorrowedFd<'_>>,
) -> impl Iterator<Item = LinkAttribute> {
    let mtu = mtu.map(LinkAttribute::Mtu);
    let mac = mac.map(|m| LinkAttribute::Address(m.to_vec()));
    let netns = netns.map(|fd| LinkAttribute::NetNsFd(fd.as_raw_fd()));
    [mtu, mac, netns].into_iter().flatten()
}

fn new_veth(opts: &VethOptions<'_>) -> Request {
    let mut peer = LinkMessage::default();
    peer.attributes
        .push(LinkAttribute::IfName(opts.peer_name.into()));
    peer.attributes
        .extend(mtu_mac_netns(opts.mtu, opts.peer_mac, opts.peer_netns));
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
    msg.attributes
        .extend(mtu_mac_netns(opts.mtu, opts.mac, opts.netns));
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

/// A message that turns `flag` of link `index` on or off; the change mask leaves the
/// link's other flags as they are.
fn flag_change(index: u32, flag: LinkFlags, on: bool) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    if on {
        msg.header.flags |= flag;
    }
    msg.header.change_mask |= flag;
    msg
}

fn set_up(index: u32, up: bool) -> Request {
    set_link(
        format!("set link #{index} {}", if up { "up" } else { "down" }),
        flag_change(index, LinkFlags::Up, up),
    )
}

fn set_up_arp_notify(index: u32) -> Request {
    let mut msg = flag_change(index, LinkFlags::Up, true);
    let mut conf = InetDevConf::default();
    conf.arp_notify = 1;
    msg.attributes
        .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet(vec![
            AfSpecInet::DevConfRequest(conf),
        ])]));
    set_link(format!("set link #{index} up with arp_notify"), msg)
}

fn set_promisc(index: u32, on: bool) -> Request {
    set_link(
        format!("set link #{index} promisc"),
        flag_change(index, LinkFlags::Promisc, on),
    )
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
                    InfoBridgePort::HairpinMode(v) => link.port.hairpin = Some(v),
                    InfoBridgePort::Isolated(v) => link.port.isolated = Some(v),
                    InfoBridgePort::Learning(v) => link.port.learning = Some(v),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handle::encode;
    use crate::test_support::message_of;
    use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
    use std::fs::File;
    use std::os::fd::AsFd;

    fn link_info(msg: &LinkMessage) -> &[LinkInfo] {
        msg.attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::LinkInfo(i) => Some(i.as_slice()),
                _ => None,
            })
            .unwrap_or_default()
    }

    fn veth_peer(msg: &LinkMessage) -> &LinkMessage {
        link_info(msg)
            .iter()
            .find_map(|i| match i {
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))) => Some(p),
                _ => None,
            })
            .expect("a veth peer")
    }

    fn has(msg: &LinkMessage, attr: &LinkAttribute) -> bool {
        msg.attributes.contains(attr)
    }

    /// The attributes of `msg` with `pred`, to check one kind is absent or single.
    fn count(msg: &LinkMessage, pred: impl Fn(&LinkAttribute) -> bool) -> usize {
        msg.attributes.iter().filter(|a| pred(a)).count()
    }

    #[test]
    fn veth_with_everything_in_one_request() {
        let ns = File::open("/dev/null").expect("an fd to stand for a namespace");
        let req = new_veth(&VethOptions {
            name: "veth1234",
            peer_name: "eth0",
            mtu: Some(1400),
            peer_mac: Some([2, 0, 0, 0, 0, 1]),
            peer_netns: Some(ns.as_fd()),
            master: Some(7),
            up: true,
        });
        assert_eq!(req.op, "create veth veth1234 (peer eth0)");
        assert_eq!(req.flags, CREATE | NLM_F_ECHO);
        let host = message_of!(req, NewLink);
        assert!(has(host, &LinkAttribute::IfName("veth1234".into())));
        assert!(has(host, &LinkAttribute::Mtu(1400)));
        assert!(has(host, &LinkAttribute::Controller(7)));
        assert!(host.header.flags.contains(LinkFlags::Up));
        assert!(host.header.change_mask.contains(LinkFlags::Up));
        assert_eq!(
            link_info(host).first(),
            Some(&LinkInfo::Kind(InfoKind::Veth))
        );
        // The host end stays here with a random MAC.
        assert_eq!(
            count(host, |a| matches!(
                a,
                LinkAttribute::NetNsFd(_) | LinkAttribute::Address(_)
            )),
            0
        );

        let peer = veth_peer(host);
        assert!(has(peer, &LinkAttribute::IfName("eth0".into())));
        assert!(has(peer, &LinkAttribute::Mtu(1400)));
        assert!(has(peer, &LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1])));
        assert!(has(peer, &LinkAttribute::NetNsFd(ns.as_raw_fd())));
        for end in [host, peer] {
            assert!(has(end, &LinkAttribute::NumTxQueues(1)), "{end:?}");
            assert!(has(end, &LinkAttribute::NumRxQueues(1)), "{end:?}");
        }
    }

    #[test]
    fn veth_without_options_leaves_the_kernel_defaults() {
        let req = new_veth(&VethOptions {
            name: "a",
            peer_name: "b",
            ..Default::default()
        });
        let host = req.link_message();
        let peer = veth_peer(host);
        for end in [host, peer] {
            assert_eq!(
                count(end, |a| matches!(
                    a,
                    LinkAttribute::Mtu(_)
                        | LinkAttribute::Address(_)
                        | LinkAttribute::NetNsFd(_)
                        | LinkAttribute::Controller(_)
                )),
                0,
                "{end:?}"
            );
            // The one-queue attributes are not optional: they are most of the speed.
            assert!(has(end, &LinkAttribute::NumTxQueues(1)));
            assert!(has(end, &LinkAttribute::NumRxQueues(1)));
        }
        assert!(host.header.flags.is_empty());
        assert!(host.header.change_mask.is_empty());
    }

    /// A veth with every option but the namespace (which needs an open fd) and this `mtu`.
    fn veth1(mtu: u32) -> VethOptions<'static> {
        VethOptions {
            name: "veth1",
            peer_name: "eth0",
            mtu: Some(mtu),
            peer_mac: Some([2, 0, 0, 0, 0, 9]),
            master: Some(3),
            up: true,
            ..Default::default()
        }
    }

    /// What the kernel receives: the nested peer message survives serialisation.
    #[test]
    fn veth_request_round_trips_on_the_wire() {
        let req = new_veth(&veth1(9000));
        let buf = encode(req.msg.clone(), req.flags, 1);
        let back = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf).expect("parses");
        assert_eq!(back.payload, NetlinkPayload::InnerMessage(req.msg));
    }

    #[test]
    fn veth_request_snapshot() {
        let req = new_veth(&veth1(1450));
        insta::assert_debug_snapshot!(req);
    }

    #[test]
    fn echoed_link_is_the_one_with_our_name() {
        let named = |index, name: &str| {
            let mut m = LinkMessage::default();
            m.header.index = index;
            m.attributes.push(LinkAttribute::IfName(name.into()));
            RouteNetlinkMessage::NewLink(m)
        };
        let msgs = vec![named(4, "eth0"), named(5, "veth1")];
        let link = echoed_link(msgs.clone(), "veth1").expect("found");
        assert_eq!((link.index, link.name.as_str()), (5, "veth1"));
        assert_eq!(echoed_link(msgs, "other"), None);
        assert_eq!(echoed_link(Vec::new(), "veth1"), None);
    }

    #[test]
    fn bridge_with_and_without_vlan_filtering() {
        let req = new_bridge(&BridgeOptions {
            name: "cni0",
            mtu: Some(1500),
            vlan_filtering: true,
        });
        assert_eq!(req.op, "create bridge cni0");
        assert_eq!(req.flags, CREATE);
        let msg = req.link_message();
        assert!(has(msg, &LinkAttribute::IfName("cni0".into())));
        assert!(has(msg, &LinkAttribute::Mtu(1500)));
        assert_eq!(
            link_info(msg),
            [
                LinkInfo::Kind(InfoKind::Bridge),
                LinkInfo::Data(InfoData::Bridge(vec![InfoBridge::VlanFiltering(true)])),
            ]
        );

        let req = new_bridge(&BridgeOptions {
            name: "cni0",
            ..Default::default()
        });
        let msg = req.link_message();
        assert_eq!(count(msg, |a| matches!(a, LinkAttribute::Mtu(_))), 0);
        assert_eq!(link_info(msg), [LinkInfo::Kind(InfoKind::Bridge)]);
    }

    #[test]
    fn macvlan_on_its_parent_in_the_target_namespace() {
        let ns = File::open("/dev/null").expect("an fd to stand for a namespace");
        for (mode, nl) in [
            (MacvlanMode::Private, MacVlanMode::Private),
            (MacvlanMode::Vepa, MacVlanMode::Vepa),
            (MacvlanMode::Bridge, MacVlanMode::Bridge),
            (MacvlanMode::Passthru, MacVlanMode::Passthrough),
        ] {
            let req = new_macvlan(&MacvlanOptions {
                name: "net1",
                parent: 2,
                mode,
                mtu: Some(1400),
                mac: Some([2, 1, 2, 3, 4, 5]),
                netns: Some(ns.as_fd()),
            });
            assert_eq!(req.op, "create macvlan net1");
            assert_eq!(req.flags, CREATE);
            let msg = req.link_message();
            assert!(has(msg, &LinkAttribute::IfName("net1".into())));
            assert!(has(msg, &LinkAttribute::Link(2)));
            assert!(has(msg, &LinkAttribute::Mtu(1400)));
            assert!(has(msg, &LinkAttribute::Address(vec![2, 1, 2, 3, 4, 5])));
            assert!(has(msg, &LinkAttribute::NetNsFd(ns.as_raw_fd())));
            assert_eq!(
                link_info(msg),
                [
                    LinkInfo::Kind(InfoKind::MacVlan),
                    LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(nl)])),
                ]
            );
            assert_eq!(MacvlanMode::from_nl(nl), Some(mode));
        }
        assert_eq!(MacvlanMode::default(), MacvlanMode::Bridge);
    }

    #[test]
    fn dummy_and_ifb_get_their_mac_and_mtu_at_creation() {
        for (kind, req) in [
            (
                "dummy",
                new_plain_link("k6t-eth0", InfoKind::Dummy, [2; 6], 1400),
            ),
            (
                "ifb",
                new_plain_link("k6t-eth0", InfoKind::Ifb, [2; 6], 1400),
            ),
        ] {
            assert_eq!(req.op, format!("create {kind} k6t-eth0"));
            assert_eq!(req.flags, CREATE);
            let msg = req.link_message();
            assert!(has(msg, &LinkAttribute::IfName("k6t-eth0".into())));
            assert!(has(msg, &LinkAttribute::Address(vec![2; 6])));
            assert!(has(msg, &LinkAttribute::Mtu(1400)));
            assert_eq!(link_info(msg).len(), 1);
        }
    }

    #[test]
    fn flag_changes_say_which_flag_they_touch() {
        for (req, flags, mask) in [
            (set_up(3, true), LinkFlags::Up, LinkFlags::Up),
            (set_up(3, false), LinkFlags::empty(), LinkFlags::Up),
            (set_promisc(3, true), LinkFlags::Promisc, LinkFlags::Promisc),
            (
                set_promisc(3, false),
                LinkFlags::empty(),
                LinkFlags::Promisc,
            ),
        ] {
            assert_eq!(req.flags, NLM_F_ACK);
            let msg = message_of!(req, SetLink);
            assert_eq!(msg.header.index, 3);
            assert_eq!(msg.header.flags, flags, "{}", req.op);
            assert_eq!(msg.header.change_mask, mask, "{}", req.op);
            assert!(msg.attributes.is_empty());
        }
        assert_eq!(set_up(3, false).op, "set link #3 down");
    }

    #[test]
    fn up_with_arp_notify_is_one_request() {
        let req = set_up_arp_notify(9);
        let msg = req.link_message();
        assert!(msg.header.flags.contains(LinkFlags::Up));
        assert!(msg.header.change_mask.contains(LinkFlags::Up));
        let conf = msg.attributes.iter().find_map(|a| match a {
            LinkAttribute::AfSpecUnspec(spec) => spec.iter().find_map(|s| match s {
                AfSpecUnspec::Inet(inet) => inet.iter().find_map(|i| match i {
                    AfSpecInet::DevConfRequest(c) => Some(c),
                    _ => None,
                }),
                _ => None,
            }),
            _ => None,
        });
        assert_eq!(conf.map(|c| c.arp_notify), Some(1));
    }

    #[test]
    fn attribute_changes_carry_one_attribute() {
        let ns = File::open("/dev/null").expect("an fd");
        for (req, attr, op) in [
            (
                set_attr(4, "master", LinkAttribute::Controller(2)),
                LinkAttribute::Controller(2),
                "set master of link #4",
            ),
            (
                set_attr(4, "mtu", LinkAttribute::Mtu(1280)),
                LinkAttribute::Mtu(1280),
                "set mtu of link #4",
            ),
            (
                set_attr(4, "name", LinkAttribute::IfName("oxdel1".into())),
                LinkAttribute::IfName("oxdel1".into()),
                "set name of link #4",
            ),
            (
                set_attr(4, "namespace", LinkAttribute::NetNsFd(ns.as_raw_fd())),
                LinkAttribute::NetNsFd(ns.as_raw_fd()),
                "set namespace of link #4",
            ),
        ] {
            assert_eq!(req.op, op);
            assert_eq!(req.flags, NLM_F_ACK);
            let msg = req.link_message();
            assert_eq!(msg.header.index, 4);
            assert_eq!(msg.attributes, [attr]);
        }
    }

    #[test]
    fn deletes_by_index_or_by_group() {
        let req = del_link(6);
        assert_eq!(req.flags, NLM_F_ACK);
        let msg = message_of!(req, DelLink);
        assert_eq!(msg.header.index, 6);
        assert!(msg.attributes.is_empty());

        let req = del_link_group(0x8000_0001);
        let msg = message_of!(req, DelLink);
        assert_eq!(msg.header.index, 0);
        assert_eq!(msg.attributes, [LinkAttribute::Group(0x8000_0001)]);
    }

    #[test]
    fn lookups_skip_the_statistics() {
        for req in [get_link_by_name("eth0"), get_link_by_index(3)] {
            assert_eq!(req.flags, 0);
            let msg = message_of!(req, GetLink);
            assert!(has(
                msg,
                &LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats])
            ));
        }
        assert!(has(
            get_link_by_name("eth0").link_message(),
            &LinkAttribute::IfName("eth0".into())
        ));
        assert_eq!(get_link_by_index(3).link_message().header.index, 3);
        assert_eq!(dump_links().flags, NLM_F_DUMP);
    }

    #[test]
    fn parses_what_the_kernel_says_about_a_bridge_port() {
        let mut msg = LinkMessage::default();
        msg.header.index = 12;
        msg.header.flags = LinkFlags::Up | LinkFlags::Promisc;
        msg.attributes = vec![
            LinkAttribute::IfName("veth1".into()),
            LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1]),
            LinkAttribute::Mtu(1450),
            LinkAttribute::Controller(3),
            LinkAttribute::Link(2),
            LinkAttribute::LinkNetNsId(1),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::PortKind(InfoPortKind::Bridge),
                LinkInfo::PortData(InfoPortData::BridgePort(vec![
                    InfoBridgePort::HairpinMode(true),
                    InfoBridgePort::Isolated(false),
                    InfoBridgePort::Learning(true),
                ])),
            ]),
        ];
        let link = parse_link(msg);
        assert_eq!(
            link,
            Link {
                index: 12,
                name: "veth1".into(),
                mac: Some([2, 0, 0, 0, 0, 1]),
                mtu: 1450,
                master: Some(3),
                kind: Some("veth".into()),
                up: true,
                promisc: true,
                peer_index: Some(2),
                link_netnsid: Some(1),
                port_kind: Some("bridge".into()),
                port: crate::BridgePortOptions {
                    hairpin: Some(true),
                    isolated: Some(false),
                    learning: Some(true),
                },
                vlan_filtering: None,
                macvlan_mode: None,
            }
        );
        assert_eq!(link.mac_string(), "02:00:00:00:00:01");
    }

    #[test]
    fn parses_bridge_and_macvlan_data_and_ignores_odd_addresses() {
        let mut bridge = LinkMessage::default();
        bridge.attributes = vec![
            // Not an Ethernet address (e.g. an IP tunnel's): no MAC.
            LinkAttribute::Address(vec![10, 0, 0, 1]),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Bridge),
                LinkInfo::Data(InfoData::Bridge(vec![InfoBridge::VlanFiltering(true)])),
            ]),
        ];
        let link = parse_link(bridge);
        assert_eq!(link.mac, None);
        assert_eq!(link.mac_string(), "");
        assert_eq!(link.kind.as_deref(), Some("bridge"));
        assert_eq!(link.vlan_filtering, Some(true));
        assert!(!link.up);

        let mut macvlan = LinkMessage::default();
        macvlan.attributes = vec![LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::MacVlan),
            LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                MacVlanMode::Vepa,
            )])),
        ])];
        let link = parse_link(macvlan);
        assert_eq!(link.kind.as_deref(), Some("macvlan"));
        assert_eq!(link.macvlan_mode, Some(MacvlanMode::Vepa));

        let mut other = LinkMessage::default();
        other.attributes = vec![LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
            InfoKind::Other("wireguard".into()),
        )])];
        assert_eq!(parse_link(other).kind.as_deref(), Some("wireguard"));
    }
}
