//! DHCPv6 (IA_NA and DNS) for the masquerade network's one VM, and the router
//! advertisements that give the guest its default route without cloud-init.

use crate::error::socket;
use dhcproto::v6::{
    DhcpOption, IAAddr, Message, MessageType, OptionCode, Status, StatusCode, IANA,
};
use dhcproto::{Decodable, Decoder, Encodable};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::{Ipv6Addr, SocketAddrV6};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What the VM gets over DHCPv6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease6 {
    pub address: Ipv6Addr,
    pub dns: Vec<Ipv6Addr>,
    /// The bridge's MAC: the server's DUID-LL.
    pub server_mac: [u8; 6],
    pub valid_secs: u32,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counters6 {
    pub malformed: u64,
    pub replies: u64,
    pub ignored: u64,
}

#[derive(Debug)]
pub struct Server6 {
    lease: Lease6,
    duid: Vec<u8>,
    pub counters: Counters6,
}

impl Server6 {
    pub fn new(lease: Lease6) -> Self {
        // DUID-LL: type 3, hardware type 1 (Ethernet), the MAC.
        let mut duid = vec![0, 3, 0, 1];
        duid.extend_from_slice(&lease.server_mac);
        Self {
            lease,
            duid,
            counters: Counters6::default(),
        }
    }

    /// Handles one datagram from port 546; returns the reply, if any.
    pub fn handle(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        if !message_sane(bytes, 0) {
            self.counters.malformed += 1;
            return None;
        }
        let Ok(msg) = Message::decode(&mut Decoder::new(bytes)) else {
            self.counters.malformed += 1;
            return None;
        };
        let client = match msg.opts().get(OptionCode::ClientId) {
            Some(DhcpOption::ClientId(id)) if !id.is_empty() => Some(id.clone()),
            _ => None,
        };
        if let Some(DhcpOption::ServerId(id)) = msg.opts().get(OptionCode::ServerId) {
            if *id != self.duid {
                self.counters.ignored += 1;
                return None;
            }
        }
        let kind = msg.msg_type();
        let reply_type = match kind {
            MessageType::Solicit if msg.opts().get(OptionCode::RapidCommit).is_some() => {
                MessageType::Reply
            }
            MessageType::Solicit => MessageType::Advertise,
            MessageType::Request
            | MessageType::Renew
            | MessageType::Rebind
            | MessageType::Confirm
            | MessageType::Release
            | MessageType::Decline
            | MessageType::InformationRequest => MessageType::Reply,
            _ => {
                self.counters.ignored += 1;
                return None;
            }
        };
        if client.is_none() && kind != MessageType::InformationRequest {
            self.counters.malformed += 1;
            return None;
        }
        let mut r = Message::new_with_id(reply_type, msg.xid());
        let o = r.opts_mut();
        if let Some(c) = client {
            o.insert(DhcpOption::ClientId(c));
        }
        o.insert(DhcpOption::ServerId(self.duid.clone()));
        if kind == MessageType::Solicit && reply_type == MessageType::Reply {
            o.insert(DhcpOption::RapidCommit);
        }
        match kind {
            MessageType::Release | MessageType::Decline => {
                o.insert(DhcpOption::StatusCode(StatusCode {
                    status: Status::Success,
                    msg: String::new(),
                }));
            }
            MessageType::Confirm => {
                let ours = ia_addrs(&msg).iter().all(|a| *a == self.lease.address);
                let status = if ours {
                    Status::Success
                } else {
                    Status::NotOnLink
                };
                o.insert(DhcpOption::StatusCode(StatusCode {
                    status,
                    msg: String::new(),
                }));
            }
            MessageType::InformationRequest => {}
            _ => {
                for id in ia_ids(&msg) {
                    let mut ia = IANA {
                        id,
                        t1: self.lease.valid_secs / 2,
                        t2: self.lease.valid_secs * 4 / 5,
                        opts: Default::default(),
                    };
                    ia.opts.insert(DhcpOption::IAAddr(IAAddr {
                        addr: self.lease.address,
                        preferred_life: self.lease.valid_secs,
                        valid_life: self.lease.valid_secs,
                        opts: Default::default(),
                    }));
                    o.insert(DhcpOption::IANA(ia));
                }
            }
        }
        if !self.lease.dns.is_empty() {
            o.insert(DhcpOption::DomainNameServers(self.lease.dns.clone()));
        }
        self.counters.replies += 1;
        r.to_vec().ok()
    }
}

/// How deep relay messages and IA options may nest before a packet counts as malformed.
const MAX_NESTING: u8 = 4;

/// Walks a message's options (and the options nested in IAs, vendor options and relay
/// messages) before the decoder sees them: the decoder subtracts fixed header sizes from
/// declared lengths without checking them, and reads fixed-size options at their size
/// whatever the length says, so a length that does not fit its option makes the packet
/// malformed.
fn message_sane(bytes: &[u8], depth: u8) -> bool {
    // Type and a three-byte transaction id, whatever the type says (as the decoder reads it).
    bytes.get(4..).is_some_and(|opts| options_sane(opts, depth))
}

fn options_sane(mut bytes: &[u8], depth: u8) -> bool {
    if depth > MAX_NESTING {
        return false;
    }
    while !bytes.is_empty() {
        let (Some(code), Some(len)) = (bytes.get(0..2), bytes.get(2..4)) else {
            return false;
        };
        let code = u16::from_be_bytes([code[0], code[1]]);
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let Some(body) = bytes.get(4..4 + len) else {
            return false;
        };
        let nested = |header: usize| {
            body.get(header..)
                .is_some_and(|rest| options_sane(rest, depth + 1))
        };
        let fits = match code {
            // IA_NA and IA_PD: IAID, T1, T2; IA_TA: IAID; IAADDR: address and lifetimes;
            // IAPREFIX: lifetimes, prefix length and prefix; vendor options: enterprise.
            3 | 25 => nested(12),
            4 | 17 => nested(4),
            5 => nested(24),
            26 => nested(25),
            // A relayed message: type, hop count, link and peer addresses.
            9 => nested(34),
            // Fixed sizes the decoder reads whatever the length says: a longer option
            // would leave its rest to be read as the next option.
            6 => len % 2 == 0,
            7 | 19 => len == 1,
            8 => len == 2,
            12 => len == 16,
            14 | 20 => len == 0,
            11 => len >= 11,
            13 => len >= 2,
            16 => len >= 4,
            _ => true,
        };
        if !fits {
            return false;
        }
        bytes = &bytes[4 + len..];
    }
    true
}

fn ia_ids(msg: &Message) -> Vec<u32> {
    msg.opts()
        .iter()
        .filter_map(|o| match o {
            DhcpOption::IANA(ia) => Some(ia.id),
            _ => None,
        })
        .collect()
}

fn ia_addrs(msg: &Message) -> Vec<Ipv6Addr> {
    msg.opts()
        .iter()
        .filter_map(|o| match o {
            DhcpOption::IANA(ia) => Some(ia.opts.iter().filter_map(|x| match x {
                DhcpOption::IAAddr(a) => Some(a.addr),
                _ => None,
            })),
            _ => None,
        })
        .flatten()
        .collect()
}

fn ifindex(name: &str) -> std::io::Result<u32> {
    let c =
        std::ffi::CString::new(name).map_err(|_| std::io::Error::other("bad interface name"))?;
    // SAFETY: a valid NUL-terminated name.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(i)
}

/// Serves DHCPv6 on `bridge` until `stop` (from a thread in the pod's namespace).
pub fn serve6(bridge: &str, server: &mut Server6, stop: &AtomicBool) -> crate::Result<()> {
    let sock = crate::socket::bridge_socket(
        bridge,
        SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 547, 0, 0).into(),
    )?;
    let index = ifindex(bridge).map_err(socket(bridge, "look up the bridge"))?;
    // All_DHCP_Relay_Agents_and_Servers.
    sock.join_multicast_v6(&Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2), index)
        .map_err(socket(bridge, "join the DHCPv6 servers' group"))?;
    crate::socket::serve_datagrams(&sock, stop, |data, from| {
        server.handle(data).map(|r| (r, from))
    })
    .map_err(socket(bridge, "receive"))
}

/// A router advertisement: managed and other-config flags set (addresses and DNS come from
/// DHCPv6), the router's lifetime for the default route, its link-layer address and MTU.
pub fn router_advertisement(mac: [u8; 6], lifetime_secs: u16, mtu: u32) -> Vec<u8> {
    let mut p = vec![134, 0, 0, 0, 64, 0xc0];
    p.extend_from_slice(&lifetime_secs.to_be_bytes());
    p.extend_from_slice(&[0; 8]); // reachable time, retrans timer: unspecified
    p.extend_from_slice(&[1, 1]); // source link-layer address, 8 bytes
    p.extend_from_slice(&mac);
    p.extend_from_slice(&[5, 1, 0, 0]); // MTU, 8 bytes
    p.extend_from_slice(&mtu.to_be_bytes());
    p
}

/// Sends router advertisements on `bridge` (to all nodes, every `interval`, and at once
/// when a router solicitation arrives) until `stop`. The kernel fills in the checksum and
/// the bridge's link-local source; until that address is usable, sending is retried.
pub fn serve_ra(
    bridge: &str,
    mac: [u8; 6],
    mtu: u32,
    interval: Duration,
    stop: &AtomicBool,
) -> crate::Result<()> {
    let sock = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
        .map_err(socket(bridge, "open an ICMPv6 socket"))?;
    sock.bind_device(Some(bridge.as_bytes()))
        .map_err(socket(bridge, "bind to the bridge"))?;
    let index = ifindex(bridge).map_err(socket(bridge, "look up the bridge"))?;
    sock.set_multicast_hops_v6(255)
        .and_then(|()| sock.set_unicast_hops_v6(255))
        .and_then(|()| sock.set_multicast_if_v6(index))
        .and_then(|()| sock.set_read_timeout(Some(Duration::from_millis(200))))
        .map_err(socket(bridge, "set socket options"))?;
    // All-routers, where solicitations go.
    sock.join_multicast_v6(&Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2), index)
        .map_err(socket(bridge, "join the all-routers group"))?;
    let ra = router_advertisement(mac, 1800, mtu);
    let all_nodes = SockAddr::from(SocketAddrV6::new(
        Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
        0,
        0,
        index,
    ));
    let mut next = Instant::now();
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next {
            next = match sock.send_to(&ra, &all_nodes) {
                Ok(_) => Instant::now() + interval,
                // No usable link-local source yet (DAD): try again shortly.
                Err(_) => Instant::now() + Duration::from_millis(200),
            };
        }
        match sock.recv(&mut buf) {
            // SAFETY: recv initialised the first n bytes; byte 0 is the ICMPv6 type.
            Ok(n) if n > 0 && unsafe { buf[0].assume_init() } == 133 => next = Instant::now(),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fixture::{seed_lease6 as lease, Mutator};

    fn req(kind: MessageType, opts: Vec<DhcpOption>) -> Vec<u8> {
        let mut m = Message::new_with_id(kind, [1, 2, 3]);
        m.opts_mut().insert(DhcpOption::ClientId(vec![
            0, 3, 0, 1, 2, 0, 0, 0xaa, 0xbb, 1,
        ]));
        for o in opts {
            m.opts_mut().insert(o);
        }
        m.to_vec().expect("encode")
    }

    #[test]
    fn solicit_request_reply() {
        let mut s = Server6::new(lease());
        let ia = DhcpOption::IANA(IANA {
            id: 7,
            t1: 0,
            t2: 0,
            opts: Default::default(),
        });
        let adv = Message::decode(&mut Decoder::new(
            &s.handle(&req(MessageType::Solicit, vec![ia.clone()]))
                .expect("advertise"),
        ))
        .expect("decode");
        assert_eq!(adv.msg_type(), MessageType::Advertise);
        assert_eq!(
            ia_addrs(&adv),
            vec!["fd10:0:2::2".parse::<Ipv6Addr>().expect("ip")]
        );
        let server_id = adv
            .opts()
            .get(OptionCode::ServerId)
            .cloned()
            .expect("server id");
        let rep = Message::decode(&mut Decoder::new(
            &s.handle(&req(MessageType::Request, vec![ia, server_id]))
                .expect("reply"),
        ))
        .expect("decode");
        assert_eq!(rep.msg_type(), MessageType::Reply);
        assert_eq!(ia_ids(&rep), vec![7]);
        assert!(rep.opts().get(OptionCode::DomainNameServers).is_some());
        // Another server's request is not ours.
        assert!(s
            .handle(&req(
                MessageType::Request,
                vec![DhcpOption::ServerId(vec![9, 9])]
            ))
            .is_none());
        for junk in [&b""[..], &[1u8][..], &[3u8; 40][..]] {
            assert!(s.handle(junk).is_none());
        }
        assert!(s.counters.malformed >= 1);
    }

    /// Found by the libFuzzer target: vendor options (17) with length 0. The decoder reads
    /// the enterprise number past the option and then subtracts 4 from its length.
    #[test]
    fn option_lengths_the_decoder_trusts_are_checked() {
        let p = [
            11, 171, 0, 205, 0, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 51, 68, 85, 0, 6, 0, 2, 0, 23,
        ];
        let mut s = Server6::new(lease());
        assert_eq!(s.handle(&p), None);
        assert_eq!(s.counters.malformed, 1);
        // The same lengths nested in an IA_NA, and a status code shorter than its code.
        let status = |len: u8| {
            let mut m = vec![3, 1, 2, 3, 0, 3, 0, 16 + len, 0, 0, 0, 1];
            m.extend([0; 8]);
            m.extend([0, 13, 0, len]);
            m.extend(std::iter::repeat_n(0, usize::from(len)));
            m
        };
        assert!(!message_sane(&status(1), 0));
        assert!(message_sane(&status(2), 0));
        // Found next: a reconfigure-message option (19) twelve bytes long, of which the
        // decoder reads one and takes the rest for a status code of length 0.
        let reconf = [
            239, 171, 205, 1, 0, 19, 0, 12, 0, 0, 13, 0, 0, 0, 1, 0, 0, 0, 0, 0,
        ];
        assert_eq!(s.handle(&reconf), None);
        assert_eq!(s.counters.malformed, 2);
        // And a relay-reply type at the top: the decoder still reads a plain message
        // header there, so a short vendor class (16) right after it counts.
        let relay_typed = [13, 0, 239, 0, 0, 16, 0, 0, 0, 0, 0, 0];
        assert_eq!(s.handle(&relay_typed), None);
        assert_eq!(s.counters.malformed, 3);
        assert!(!message_sane(&[], 0));
    }

    /// Mutated DHCPv6 messages (20,000): never a panic, and every reply decodes.
    #[test]
    fn mutation_fuzz_v6() {
        let seeds: Vec<Vec<u8>> = [
            MessageType::Solicit,
            MessageType::Request,
            MessageType::Renew,
            MessageType::InformationRequest,
        ]
        .into_iter()
        .map(|k| {
            req(
                k,
                vec![DhcpOption::IANA(IANA {
                    id: 1,
                    t1: 0,
                    t2: 0,
                    opts: Default::default(),
                })],
            )
        })
        .collect();
        let mut packets = Mutator::new(seeds, 0x2545_f491_4f6c_dd1d, 6);
        let mut s = Server6::new(lease());
        for _ in 0..20_000 {
            let p = packets.packet();
            if let Some(reply) = s.handle(&p) {
                assert!(Message::decode(&mut Decoder::new(&reply)).is_ok());
            }
        }
        assert!(s.counters.replies > 0);
    }

    #[test]
    fn router_advertisement_layout() {
        let ra = router_advertisement([2, 0, 0, 0, 0, 0], 1800, 1500);
        assert_eq!(ra[0], 134);
        assert_eq!(ra[5], 0xc0, "managed and other flags");
        assert_eq!(u16::from_be_bytes([ra[6], ra[7]]), 1800);
        assert_eq!(&ra[16..18], &[1, 1]);
        assert_eq!(&ra[18..24], &[2, 0, 0, 0, 0, 0]);
        assert_eq!(u32::from_be_bytes([ra[28], ra[29], ra[30], ra[31]]), 1500);
    }
}
