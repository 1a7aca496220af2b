//! Typed link, address and route operations on a [`Handle`].

use crate::error::{Error, Result};
use crate::handle::Handle;
use ipnet::IpNet;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_ECHO, NLM_F_EXCL, NLM_F_REPLACE,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    AfSpecBridge, AfSpecInet, AfSpecUnspec, BridgeVlanInfo, BridgeVlanInfoFlags, InetDevConf,
    InfoBridge, InfoBridgePort, InfoData, InfoKind, InfoMacVlan, InfoPortData, InfoPortKind,
    InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, MacVlanMode,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteProtocol,
    RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::net::IpAddr;
use std::os::fd::RawFd;

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
        self.mac.map(|m| format_mac(&m)).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacvlanMode {
    Private,
    Vepa,
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrInfo {
    pub index: u32,
    pub addr: IpNet,
    pub nodad: bool,
}

/// A route to install.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteSpec {
    pub dst: Option<IpNet>,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub table: Option<u32>,
    pub metric: Option<u32>,
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    pub scope_link: bool,
    pub src: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub table: u32,
}

pub fn format_mac(m: &[u8]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for slot in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *slot = u8::from_str_radix(p, 16).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(out)
}

fn parse_link(msg: LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        up: msg.header.flags.contains(LinkFlags::Up),
        promisc: msg.header.flags.contains(LinkFlags::Promisc),
        ..Default::default()
    };
    for attr in msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::Address(a) if a.len() == 6 => {
                let mut m = [0u8; 6];
                m.copy_from_slice(&a);
                link.mac = Some(m);
            }
            LinkAttribute::Mtu(m) => link.mtu = m,
            LinkAttribute::Controller(m) => link.master = Some(m),
            LinkAttribute::Link(l) => link.peer_index = Some(l),
            LinkAttribute::LinkNetNsId(id) => link.link_netnsid = Some(id),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
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
                                    link.macvlan_mode = match m {
                                        MacVlanMode::Private => Some(MacvlanMode::Private),
                                        MacVlanMode::Vepa => Some(MacvlanMode::Vepa),
                                        MacVlanMode::Bridge => Some(MacvlanMode::Bridge),
                                        MacVlanMode::Passthrough => Some(MacvlanMode::Passthru),
                                        _ => None,
                                    }
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
            }
            _ => {}
        }
    }
    link
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

fn family_of(ip: &IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

const CREATE: u16 = NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;

/// What the interface ioctls tell about a link, without a netlink round trip through the
/// rtnl lock (much cheaper when the kernel is busy with link events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfInfo {
    pub index: u32,
    pub up: bool,
    pub promisc: bool,
    pub mac: [u8; 6],
    pub mtu: u32,
}

const SIOCGIFFLAGS: libc::c_ulong = 0x8913;
const SIOCGIFMTU: libc::c_ulong = 0x8921;
const SIOCGIFHWADDR: libc::c_ulong = 0x8927;
const SIOCGIFINDEX: libc::c_ulong = 0x8933;

/// A program a detached clean-up process runs (see [`Handle::retire_links`]).
#[derive(Debug, Clone)]
pub struct Detached {
    pub path: std::ffi::CString,
    pub argv: Vec<std::ffi::CString>,
}

impl Detached {
    /// `program` found in PATH now (not after fork), with `args`.
    pub fn program(program: &str, args: &[&str]) -> Option<Self> {
        let path = std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(program))
                .find(|p| p.is_file())
        })?;
        let path = std::ffi::CString::new(path.into_os_string().into_encoded_bytes()).ok()?;
        let mut argv = vec![std::ffi::CString::new(program).ok()?];
        for a in args {
            argv.push(std::ffi::CString::new(*a).ok()?);
        }
        Some(Self { path, argv })
    }
}

impl Handle {
    /// Index, flags, MAC and MTU of `name` in this handle's namespace, by ioctl on the
    /// netlink socket; `None` if there is no such link.
    pub fn if_info(&self, name: &str) -> Result<Option<IfInfo>> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Ok(None);
        }
        // SAFETY: ifreq is plain data; all-zero is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        let fd = self.raw_fd();
        let call = |cmd: libc::c_ulong, req: &mut libc::ifreq| -> Result<bool> {
            // SAFETY: a valid socket fd and a properly sized, initialised ifreq.
            let rc = unsafe { libc::ioctl(fd, cmd as _, req as *mut libc::ifreq) };
            if rc == 0 {
                return Ok(true);
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENODEV) {
                return Ok(false);
            }
            Err(Error::Kernel {
                op: format!("query link {name}"),
                source: e,
            })
        };
        if !call(SIOCGIFINDEX, &mut req)? {
            return Ok(None);
        }
        // SAFETY: the kernel filled the union member this request returns.
        let index = unsafe { req.ifr_ifru.ifru_ifindex } as u32;
        if !call(SIOCGIFFLAGS, &mut req)? {
            return Ok(None);
        }
        // SAFETY: as above.
        let flags = unsafe { req.ifr_ifru.ifru_flags } as i32;
        if !call(SIOCGIFHWADDR, &mut req)? {
            return Ok(None);
        }
        let mut mac = [0u8; 6];
        // SAFETY: as above; sa_data holds at least 6 bytes of hardware address.
        let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
        for (d, s) in mac.iter_mut().zip(data.iter()) {
            *d = *s as u8;
        }
        if !call(SIOCGIFMTU, &mut req)? {
            return Ok(None);
        }
        // SAFETY: as above.
        let mtu = unsafe { req.ifr_ifru.ifru_mtu } as u32;
        Ok(Some(IfInfo {
            index,
            up: flags & libc::IFF_UP != 0,
            promisc: flags & libc::IFF_PROMISC != 0,
            mac,
            mtu,
        }))
    }

    fn new_link(&mut self, op: &str, msg: LinkMessage) -> Result<()> {
        self.request(op, RouteNetlinkMessage::NewLink(msg), CREATE)
            .map(|_| ())
    }

    fn set_link(&mut self, op: &str, msg: LinkMessage) -> Result<()> {
        self.request(op, RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)
            .map(|_| ())
    }

    /// The link called `name`, or `None` if there is none.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.get_link(&format!("get link {name}"), msg)
    }

    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.get_link(&format!("get link #{index}"), msg)
    }

    fn get_link(&mut self, op: &str, mut msg: LinkMessage) -> Result<Option<Link>> {
        // Stats are most of a link's reply and we never read them.
        msg.attributes.push(LinkAttribute::ExtMask(vec![
            netlink_packet_route::link::LinkExtentMask::SkipStats,
        ]));
        match self.request(op, RouteNetlinkMessage::GetLink(msg), 0) {
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
        self.link_by_name(name)?.ok_or_else(|| Error::Kernel {
            op: format!("find link {name}"),
            source: std::io::Error::from_raw_os_error(libc::ENODEV),
        })
    }

    pub fn links(&mut self) -> Result<Vec<Link>> {
        let msgs = self.request(
            "list links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(parse_link(l)),
                _ => None,
            })
            .collect())
    }

    pub fn add_bridge(&mut self, name: &str, mtu: Option<u32>, vlan_filtering: bool) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        if let Some(mtu) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        let mut info = vec![LinkInfo::Kind(InfoKind::Bridge)];
        if vlan_filtering {
            info.push(LinkInfo::Data(InfoData::Bridge(vec![
                InfoBridge::VlanFiltering(true),
            ])));
        }
        msg.attributes.push(LinkAttribute::LinkInfo(info));
        self.new_link(&format!("create bridge {name}"), msg)
    }

    /// Creates a veth pair: `name` here, `peer` moved into `peer_ns` (if given) atomically.
    /// `master` and `up` apply to `name` in the same request (one round trip, and the port
    /// never exists outside its bridge).
    #[allow(clippy::too_many_arguments)]
    pub fn add_veth(
        &mut self,
        name: &str,
        peer: &str,
        mtu: Option<u32>,
        peer_mac: Option<[u8; 6]>,
        peer_ns: Option<RawFd>,
        master: Option<u32>,
        up: bool,
    ) -> Result<Link> {
        let mut peer_msg = LinkMessage::default();
        peer_msg.attributes.push(LinkAttribute::IfName(peer.into()));
        if let Some(mtu) = mtu {
            peer_msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(mac) = peer_mac {
            peer_msg
                .attributes
                .push(LinkAttribute::Address(mac.to_vec()));
        }
        if let Some(fd) = peer_ns {
            peer_msg.attributes.push(LinkAttribute::NetNsFd(fd));
        }
        // One queue each way, which is what a veth uses unless told otherwise. Left unset,
        // the kernel sizes both ends for every possible CPU, registers a sysfs directory
        // per queue and then removes all but one: a tenth of the ADD on two CPUs, more on
        // bigger nodes. (The one thing given up: raising the channel count later for XDP.)
        let one_queue = [LinkAttribute::NumTxQueues(1), LinkAttribute::NumRxQueues(1)];
        peer_msg.attributes.extend(one_queue.clone());
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        msg.attributes.extend(one_queue);
        if let Some(mtu) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(m) = master {
            msg.attributes.push(LinkAttribute::Controller(m));
        }
        if up {
            msg.header.flags |= LinkFlags::Up;
            msg.header.change_mask |= LinkFlags::Up;
        }
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        // NLM_F_ECHO hands the new link back in the same round trip (kernels from 6.3);
        // older kernels send nothing and we look it up.
        let echoed = self.request(
            &format!("create veth {name} (peer {peer})"),
            RouteNetlinkMessage::NewLink(msg),
            CREATE | NLM_F_ECHO,
        )?;
        let link = echoed.into_iter().find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(parse_link(l)).filter(|l| l.name == name),
            _ => None,
        });
        match link {
            Some(l) => Ok(l),
            None => self.require_link(name),
        }
    }

    /// Creates a macvlan on `master` (by index in this namespace) and moves it into `ns`.
    pub fn add_macvlan(
        &mut self,
        name: &str,
        master: u32,
        mode: MacvlanMode,
        mtu: Option<u32>,
        mac: Option<[u8; 6]>,
        ns: Option<RawFd>,
    ) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        msg.attributes.push(LinkAttribute::Link(master));
        if let Some(mtu) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(mac) = mac {
            msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        if let Some(fd) = ns {
            msg.attributes.push(LinkAttribute::NetNsFd(fd));
        }
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::MacVlan),
            LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(mode.to_nl())])),
        ]));
        self.new_link(&format!("create macvlan {name}"), msg)
    }

    /// A dummy link with `mac` and `mtu` from the start.
    pub fn add_dummy(&mut self, name: &str, mac: [u8; 6], mtu: u32) -> Result<()> {
        self.add_plain_link(name, InfoKind::Dummy, mac, mtu)
    }

    /// An `ifb` link: like a dummy while it is down (no ARP, no traffic), for kernels built
    /// without the dummy driver. Its MAC cannot be changed later, so it is given here.
    pub fn add_ifb(&mut self, name: &str, mac: [u8; 6], mtu: u32) -> Result<()> {
        self.add_plain_link(name, InfoKind::Ifb, mac, mtu)
    }

    fn add_plain_link(&mut self, name: &str, kind: InfoKind, mac: [u8; 6], mtu: u32) -> Result<()> {
        let op = format!("create {} {name}", kind_name(&kind));
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(kind)]));
        self.new_link(&op, msg)
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
        let mut rnd = [0u8; 4];
        // SAFETY: getrandom writes at most rnd.len() bytes into a valid buffer.
        let _ = unsafe { libc::getrandom(rnd.as_mut_ptr().cast(), rnd.len(), 0) };
        // Group 0 is every link's default; stay clear of it and of small admin groups.
        let group = u32::from_ne_bytes(rnd) | 0x8000_0000;
        for i in indices {
            self.set_attr(*i, "group", LinkAttribute::Group(group))?;
        }
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::Group(group));
        self.request(
            &format!("delete link group {group}"),
            RouteNetlinkMessage::DelLink(msg),
            NLM_F_ACK,
        )
        .map(|_| ())
    }

    pub fn del_link(&mut self, index: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.request(
            &format!("delete link #{index}"),
            RouteNetlinkMessage::DelLink(msg),
            NLM_F_ACK,
        )
        .map(|_| ())
    }

    /// Takes link `index` out of use at once and leaves its deletion to a detached process.
    ///
    /// Deleting a veth waits in the kernel for RCU grace periods (15–25 ms here) although
    /// the device is unusable long before. So: set it down, rename it to `grave` (its
    /// name is free again immediately), and let a double-forked child send the delete and
    /// wait for it. If the rename fails, deletes in place instead.
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
        let mut msg = LinkMessage::default();
        match indices {
            [] if then.is_none() => return Ok(()),
            [] => {}
            [one] => msg.header.index = *one,
            _ => {
                let mut rnd = [0u8; 4];
                // SAFETY: getrandom writes at most rnd.len() bytes into a valid buffer.
                let _ = unsafe { libc::getrandom(rnd.as_mut_ptr().cast(), rnd.len(), 0) };
                let group = u32::from_ne_bytes(rnd) | 0x8000_0000;
                for i in indices {
                    self.set_attr(*i, "group", LinkAttribute::Group(group))?;
                }
                msg.attributes.push(LinkAttribute::Group(group));
            }
        }
        let buf = if indices.is_empty() {
            Vec::new()
        } else {
            self.encode(RouteNetlinkMessage::DelLink(msg), NLM_F_ACK)
        };
        let fd = self.raw_fd();
        let argv: Vec<*const libc::c_char> = then
            .map(|d| {
                d.argv
                    .iter()
                    .map(|a| a.as_ptr())
                    .chain(std::iter::once(std::ptr::null()))
                    .collect()
            })
            .unwrap_or_default();
        // SAFETY: after fork only async-signal-safe calls run in the children (setsid,
        // fork, close, send, recv, execv, _exit) on memory prepared before the fork.
        unsafe {
            let pid = libc::fork();
            if pid == 0 {
                libc::setsid();
                if libc::fork() == 0 {
                    for std_fd in 0..3 {
                        libc::close(std_fd);
                    }
                    if !buf.is_empty() {
                        libc::send(fd, buf.as_ptr().cast(), buf.len(), 0);
                        let mut ack = [0u8; 256];
                        libc::recv(fd, ack.as_mut_ptr().cast(), ack.len(), 0);
                    }
                    if let Some(d) = then {
                        libc::execv(d.path.as_ptr(), argv.as_ptr());
                    }
                }
                libc::_exit(0);
            }
            if pid < 0 {
                return self.del_links(indices);
            }
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
        }
        Ok(())
    }

    pub fn set_up(&mut self, index: u32, up: bool) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        if up {
            msg.header.flags |= LinkFlags::Up;
        }
        msg.header.change_mask |= LinkFlags::Up;
        self.set_link(
            &format!("set link #{index} {}", if up { "up" } else { "down" }),
            msg,
        )
    }

    /// Brings a link up and sets its IPv4 `arp_notify` in the same request (one round trip
    /// less than the sysctl file, which also costs a walk of /proc/sys shared by every
    /// namespace). A link without IPv4 state (MTU below 68) is just brought up.
    pub fn set_up_arp_notify(&mut self, index: u32) -> Result<()> {
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
        match self.set_link(&format!("set link #{index} up with arp_notify"), msg) {
            Err(e) if e.errno() == Some(libc::EAFNOSUPPORT) => self.set_up(index, true),
            other => other,
        }
    }

    pub fn set_promisc(&mut self, index: u32, on: bool) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        if on {
            msg.header.flags |= LinkFlags::Promisc;
        }
        msg.header.change_mask |= LinkFlags::Promisc;
        self.set_link(&format!("set link #{index} promisc"), msg)
    }

    fn set_attr(&mut self, index: u32, what: &str, attr: LinkAttribute) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(attr);
        self.set_link(&format!("set {what} of link #{index}"), msg)
    }

    pub fn set_master(&mut self, index: u32, master: u32) -> Result<()> {
        self.set_attr(index, "master", LinkAttribute::Controller(master))
    }

    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<()> {
        self.set_attr(index, "mtu", LinkAttribute::Mtu(mtu))
    }

    pub fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<()> {
        self.set_attr(index, "mac", LinkAttribute::Address(mac.to_vec()))
    }

    pub fn set_name(&mut self, index: u32, name: &str) -> Result<()> {
        self.set_attr(index, "name", LinkAttribute::IfName(name.into()))
    }

    pub fn set_netns(&mut self, index: u32, ns: RawFd) -> Result<()> {
        self.set_attr(index, "namespace", LinkAttribute::NetNsFd(ns))
    }

    /// Sets bridge-port options (hairpin, learning, isolated, …) on an enslaved link.
    pub fn set_port_options(&mut self, index: u32, opts: Vec<InfoBridgePort>) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(opts)),
        ]));
        self.request(
            &format!("set bridge port options of link #{index}"),
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_ACK,
        )
        .map(|_| ())
    }

    pub fn set_hairpin(&mut self, index: u32, on: bool) -> Result<()> {
        self.set_port_options(index, vec![InfoBridgePort::HairpinMode(on)])
    }

    /// Adds (or removes) VLAN `vid` on a bridge port (or on the bridge itself with `self_`).
    pub fn bridge_vlan(
        &mut self,
        index: u32,
        vid: u16,
        pvid_untagged: bool,
        self_: bool,
        add: bool,
    ) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.interface_family = AddressFamily::Bridge;
        msg.header.index = index;
        let mut flags = BridgeVlanInfoFlags::empty();
        if pvid_untagged {
            flags |= BridgeVlanInfoFlags::Pvid | BridgeVlanInfoFlags::Untagged;
        }
        let mut spec = vec![AfSpecBridge::VlanInfo(BridgeVlanInfo { flags, vid })];
        if self_ {
            spec.insert(
                0,
                AfSpecBridge::Flags(netlink_packet_route::link::BridgeFlag::LowerDev),
            );
        }
        msg.attributes.push(LinkAttribute::AfSpecBridge(spec));
        let op = format!(
            "{} vlan {vid} on link #{index}",
            if add { "add" } else { "delete" }
        );
        let req = if add {
            RouteNetlinkMessage::SetLink(msg)
        } else {
            RouteNetlinkMessage::DelLink(msg)
        };
        self.request(&op, req, NLM_F_ACK).map(|_| ())
    }

    /// VLANs configured on `index` (AF_BRIDGE dump with the VLAN filter).
    pub fn bridge_vlans(&mut self, index: u32) -> Result<Vec<(u16, bool)>> {
        let mut msg = LinkMessage::default();
        msg.header.interface_family = AddressFamily::Bridge;
        msg.attributes.push(LinkAttribute::ExtMask(vec![
            netlink_packet_route::link::LinkExtentMask::Brvlan,
        ]));
        let msgs = self.request(
            "list bridge vlans",
            RouteNetlinkMessage::GetLink(msg),
            NLM_F_DUMP,
        )?;
        let mut out = Vec::new();
        for m in msgs {
            if let RouteNetlinkMessage::NewLink(l) = m {
                if l.header.index != index {
                    continue;
                }
                for a in l.attributes {
                    if let LinkAttribute::AfSpecBridge(spec) = a {
                        for s in spec {
                            if let AfSpecBridge::VlanInfo(v) = s {
                                out.push((v.vid, v.flags.contains(BridgeVlanInfoFlags::Pvid)));
                            }
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    pub fn add_address(&mut self, index: u32, addr: IpNet, nodad: bool) -> Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = family_of(&addr.addr());
        msg.header.prefix_len = addr.prefix_len();
        msg.header.index = index;
        msg.header.scope = AddressScope::Universe;
        msg.attributes.push(AddressAttribute::Local(addr.addr()));
        msg.attributes.push(AddressAttribute::Address(addr.addr()));
        if let IpNet::V4(v4) = addr {
            if v4.prefix_len() < 31 {
                msg.attributes
                    .push(AddressAttribute::Broadcast(v4.broadcast()));
            }
        }
        if nodad {
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        self.request(
            &format!("add address {addr} to link #{index}"),
            RouteNetlinkMessage::NewAddress(msg),
            CREATE,
        )
        .map(|_| ())
    }

    pub fn del_address(&mut self, index: u32, addr: IpNet) -> Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = family_of(&addr.addr());
        msg.header.prefix_len = addr.prefix_len();
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(addr.addr()));
        msg.attributes.push(AddressAttribute::Address(addr.addr()));
        self.request(
            &format!("delete address {addr} from link #{index}"),
            RouteNetlinkMessage::DelAddress(msg),
            NLM_F_ACK,
        )
        .map(|_| ())
    }

    /// Addresses, optionally only those on link `index`.
    pub fn addresses(&mut self, index: Option<u32>) -> Result<Vec<AddrInfo>> {
        let msgs = self.request(
            "list addresses",
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
        )?;
        let mut out = Vec::new();
        for m in msgs {
            let RouteNetlinkMessage::NewAddress(a) = m else {
                continue;
            };
            if index.is_some_and(|i| i != a.header.index) {
                continue;
            }
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
            if let Some(ip) = local.or(address) {
                if let Ok(net) = IpNet::new(ip, a.header.prefix_len) {
                    out.push(AddrInfo {
                        index: a.header.index,
                        addr: net,
                        nodad,
                    });
                }
            }
        }
        Ok(out)
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
        let table = spec.table.unwrap_or(RouteHeader::RT_TABLE_MAIN as u32);
        if table < 256 {
            msg.header.table = table as u8;
        } else {
            msg.header.table = RouteHeader::RT_TABLE_UNSPEC;
            msg.attributes.push(RouteAttribute::Table(table));
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

    pub fn add_route(&mut self, spec: &RouteSpec) -> Result<()> {
        let msg = Self::route_message(spec);
        let what = match spec.dst {
            Some(d) => d.to_string(),
            None => "default".into(),
        };
        self.request(
            &format!("add route {what}"),
            RouteNetlinkMessage::NewRoute(msg),
            CREATE,
        )
        .map(|_| ())
    }

    pub fn replace_route(&mut self, spec: &RouteSpec) -> Result<()> {
        let msg = Self::route_message(spec);
        self.request(
            "replace route",
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map(|_| ())
    }

    pub fn del_route(&mut self, spec: &RouteSpec) -> Result<()> {
        let msg = Self::route_message(spec);
        self.request(
            "delete route",
            RouteNetlinkMessage::DelRoute(msg),
            NLM_F_ACK,
        )
        .map(|_| ())
    }

    /// Routes of the main table (and others), both families.
    pub fn routes(&mut self) -> Result<Vec<RouteInfo>> {
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut q = RouteMessage::default();
            q.header.address_family = family;
            let msgs = self.request("list routes", RouteNetlinkMessage::GetRoute(q), NLM_F_DUMP)?;
            for m in msgs {
                let RouteNetlinkMessage::NewRoute(r) = m else {
                    continue;
                };
                let v4 = r.header.address_family == AddressFamily::Inet;
                let mut dst = None;
                let mut gateway = None;
                let mut oif = None;
                let mut table = r.header.table as u32;
                for a in &r.attributes {
                    match a {
                        RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
                            dst = Some(IpAddr::V4(*ip))
                        }
                        RouteAttribute::Destination(RouteAddress::Inet6(ip)) => {
                            dst = Some(IpAddr::V6(*ip))
                        }
                        RouteAttribute::Gateway(RouteAddress::Inet(ip)) => {
                            gateway = Some(IpAddr::V4(*ip))
                        }
                        RouteAttribute::Gateway(RouteAddress::Inet6(ip)) => {
                            gateway = Some(IpAddr::V6(*ip))
                        }
                        RouteAttribute::Oif(i) => oif = Some(*i),
                        RouteAttribute::Table(t) => table = *t,
                        _ => {}
                    }
                }
                let base: IpAddr = if v4 {
                    IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
                } else {
                    IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
                };
                let Ok(dst) = IpNet::new(dst.unwrap_or(base), r.header.destination_prefix_length)
                else {
                    continue;
                };
                out.push(RouteInfo {
                    dst,
                    gateway,
                    oif,
                    table,
                });
            }
        }
        Ok(out)
    }
}
