//! Packet in, packet (or nothing) out: the protocol logic, free of sockets.

use dhcproto::v4::{
    DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode, UnknownOption,
};
use dhcproto::{Decodable, Decoder, Encodable, Name};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// What the one client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub client_mac: [u8; 6],
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub hostname: Option<String>,
    pub domain: Option<String>,
    pub search: Vec<String>,
    pub mtu: Option<u16>,
    /// Classless static routes (option 121), without the default route, which is added
    /// last from `router`.
    pub routes: Vec<(Ipv4Net, Ipv4Addr)>,
    /// Option 54, and the address the server answers from.
    pub server_id: Ipv4Addr,
    pub lease_secs: u32,
    /// Further options (`dhcpOptions`: 66 TFTP server, 67 bootfile, 42 NTP, 224–254
    /// private), as raw option payloads.
    pub extra: Vec<(u8, Vec<u8>)>,
}

/// KubeVirt's `dhcpOptions` of an interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DhcpOptionsSpec {
    /// Option 67.
    pub boot_file_name: Option<String>,
    /// Option 66.
    pub tftp_server_name: Option<String>,
    /// Option 42.
    pub ntp_servers: Vec<Ipv4Addr>,
    /// Private options 224–254, with string values.
    pub private_options: Vec<(u8, String)>,
}

impl DhcpOptionsSpec {
    /// The raw options for [`Lease::extra`]; a private option outside 224–254 is an error,
    /// as KubeVirt's validation has it.
    pub fn to_extra(&self) -> crate::Result<Vec<(u8, Vec<u8>)>> {
        let mut out = Vec::new();
        if let Some(t) = &self.tftp_server_name {
            out.push((66, t.as_bytes().to_vec()));
        }
        if let Some(b) = &self.boot_file_name {
            out.push((67, b.as_bytes().to_vec()));
        }
        if !self.ntp_servers.is_empty() {
            out.push((
                42,
                self.ntp_servers.iter().flat_map(|ip| ip.octets()).collect(),
            ));
        }
        for (code, value) in &self.private_options {
            if !(224..=254).contains(code) {
                return Err(crate::Error::PrivateOption(*code));
            }
            out.push((*code, value.as_bytes().to_vec()));
        }
        Ok(out)
    }
}

/// What the server saw; malformed and foreign packets are only counted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counters {
    pub malformed: u64,
    pub other_client: u64,
    pub offers: u64,
    pub acks: u64,
    pub naks: u64,
    pub releases: u64,
    pub declines: u64,
    pub ignored: u64,
}

#[derive(Debug)]
pub struct Server {
    lease: Lease,
    search: Vec<Name>,
    pub counters: Counters,
    /// Search domains that could not be encoded (skipped, reported once).
    pub skipped_search: Vec<String>,
}

impl Server {
    pub fn new(lease: Lease) -> Self {
        let mut search = Vec::new();
        let mut skipped = Vec::new();
        for s in &lease.search {
            // RFC 3397 names: labels of letters, digits and '-', at most 63 bytes each.
            let ok = !s.is_empty()
                && s.trim_end_matches('.').split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                });
            match Name::from_str(s) {
                Ok(n) if ok => search.push(n),
                _ => skipped.push(s.clone()),
            }
        }
        Self {
            lease,
            search,
            counters: Counters::default(),
            skipped_search: skipped,
        }
    }

    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Handles one datagram from port 68; returns the reply to broadcast, if any.
    pub fn handle(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        if !options_sane(bytes) {
            self.counters.malformed += 1;
            return None;
        }
        let Ok(msg) = Message::decode(&mut Decoder::new(bytes)) else {
            self.counters.malformed += 1;
            return None;
        };
        // hlen is the client's word: dhcproto's chaddr() slices by it and panics past 16,
        // so anything but Ethernet's 6 is refused before chaddr() is touched.
        if msg.opcode() != Opcode::BootRequest || msg.htype() != HType::Eth || msg.hlen() != 6 {
            self.counters.malformed += 1;
            return None;
        }
        if msg.chaddr()[..6] != self.lease.client_mac {
            self.counters.other_client += 1;
            return None;
        }
        let Some(kind) = msg.opts().msg_type() else {
            self.counters.malformed += 1;
            return None;
        };
        match kind {
            MessageType::Discover => {
                self.counters.offers += 1;
                self.reply(&msg, MessageType::Offer)
            }
            MessageType::Request => {
                if let Some(DhcpOption::ServerIdentifier(id)) =
                    msg.opts().get(OptionCode::ServerIdentifier)
                {
                    if *id != self.lease.server_id {
                        // The client chose another server.
                        self.counters.ignored += 1;
                        return None;
                    }
                }
                let requested = match msg.opts().get(OptionCode::RequestedIpAddress) {
                    Some(DhcpOption::RequestedIpAddress(ip)) => *ip,
                    _ => msg.ciaddr(),
                };
                if requested == self.lease.address {
                    self.counters.acks += 1;
                    self.reply(&msg, MessageType::Ack)
                } else {
                    self.counters.naks += 1;
                    self.reply(&msg, MessageType::Nak)
                }
            }
            MessageType::Inform => {
                self.counters.acks += 1;
                self.reply(&msg, MessageType::Ack)
            }
            MessageType::Release => {
                self.counters.releases += 1;
                None
            }
            MessageType::Decline => {
                self.counters.declines += 1;
                None
            }
            _ => {
                self.counters.ignored += 1;
                None
            }
        }
    }

    fn reply(&self, req: &Message, kind: MessageType) -> Option<Vec<u8>> {
        let l = &self.lease;
        let inform = req.opts().msg_type() == Some(MessageType::Inform);
        let mut m = Message::default();
        m.set_opcode(Opcode::BootReply)
            .set_htype(HType::Eth)
            .set_xid(req.xid())
            .set_flags(req.flags())
            .set_chaddr(&l.client_mac)
            .set_giaddr(req.giaddr())
            .set_siaddr(l.server_id);
        if inform {
            m.set_ciaddr(req.ciaddr());
        } else if kind != MessageType::Nak {
            m.set_yiaddr(l.address);
        }
        // Replies go out as broadcast: the client has no address yet.
        m.set_flags(Flags::default().set_broadcast());
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(kind));
        o.insert(DhcpOption::ServerIdentifier(l.server_id));
        if kind == MessageType::Nak {
            return m.to_vec().ok();
        }
        if !inform {
            o.insert(DhcpOption::AddressLeaseTime(l.lease_secs));
        }
        let mask = Ipv4Net::new(l.address, l.prefix)
            .map(|n| n.netmask())
            .unwrap_or(Ipv4Addr::BROADCAST);
        o.insert(DhcpOption::SubnetMask(mask));
        if let Some(r) = l.router {
            o.insert(DhcpOption::Router(vec![r]));
        }
        if !l.dns.is_empty() {
            o.insert(DhcpOption::DomainNameServer(l.dns.clone()));
        }
        if let Some(h) = &l.hostname {
            o.insert(DhcpOption::Hostname(h.clone()));
        }
        if let Some(d) = &l.domain {
            o.insert(DhcpOption::DomainName(d.clone()));
        }
        if let Some(mtu) = l.mtu {
            o.insert(DhcpOption::InterfaceMtu(mtu));
        }
        if !self.search.is_empty() {
            o.insert(DhcpOption::DomainSearch(self.search.clone()));
        }
        if !l.routes.is_empty() {
            // A client that gets option 121 ignores option 3: the default route goes last.
            let mut routes = l.routes.clone();
            if let Some(r) = l.router {
                routes.push((Ipv4Net::default(), r));
            }
            o.insert(DhcpOption::ClasslessStaticRoute(routes));
        }
        for (code, data) in &l.extra {
            o.insert(DhcpOption::Unknown(UnknownOption::new(
                OptionCode::from(*code),
                data.clone(),
            )));
        }
        m.to_vec().ok()
    }
}

/// Walks the option TLVs before the decoder sees them. The decoder trusts some declared
/// lengths (it subtracts from them, or asserts them in debug builds), so lengths that do
/// not fit their option, options running past the packet, and option overload (which a
/// VM's client has no use for) make the packet malformed. Consecutive parts with the same
/// code are one option split in parts (RFC 3396): the decoder joins them, so the length
/// that must fit is that of the run.
fn options_sane(bytes: &[u8]) -> bool {
    const START: usize = 240;
    if bytes.len() < START || bytes[236..240] != [99, 130, 83, 99] {
        return false;
    }
    // The run of same-code parts being read: its code and joined length.
    let mut run: Option<(u8, usize)> = None;
    let mut i = START;
    while i < bytes.len() {
        let code = bytes[i];
        if code == 0 || code == 255 {
            // Pad and End close a run.
            if let Some((c, len)) = run.take() {
                if !option_length_fits(c, len) {
                    return false;
                }
            }
            if code == 255 {
                return true;
            }
            i += 1;
            continue;
        }
        let Some(&len) = bytes.get(i + 1) else {
            return false;
        };
        let len = len as usize;
        if i + 2 + len > bytes.len() {
            return false;
        }
        run = match run {
            Some((c, joined)) if c == code => Some((c, joined + len)),
            Some((c, joined)) => {
                if !option_length_fits(c, joined) {
                    return false;
                }
                Some((code, len))
            }
            None => Some((code, len)),
        };
        i += 2 + len;
    }
    run.is_none_or(|(c, len)| option_length_fits(c, len))
}

/// Whether `len` bytes make a well-formed option `code`, as far as the decoder relies on.
fn option_length_fits(code: u8, len: usize) -> bool {
    match code {
        52 => false,
        1 | 16 | 28 | 32 | 50 | 51 | 54 | 58 | 59 | 91 | 118 | 152..=155 => len == 4,
        3..=11 | 41 | 42 | 44 | 45 | 48 | 49 | 65 | 68..=76 | 92 => {
            len.is_multiple_of(4) && len >= 4
        }
        13 | 22 | 26 | 57 | 93 => len == 2,
        53 | 19 | 20 | 23 | 27 | 29..=31 | 34 | 36 | 37 | 39 | 46 | 116 | 156 | 157 => len == 1,
        80 => len == 0,
        81 => len >= 3,
        94 => len == 3,
        151 => len >= 1,
        121 => len >= 5,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::fixture::{seed_lease as lease, Mutator, SEED_MAC as MAC};

    fn request(kind: MessageType, mac: [u8; 6], opts: Vec<DhcpOption>) -> Vec<u8> {
        let mut m = Message::default();
        m.set_opcode(Opcode::BootRequest)
            .set_htype(HType::Eth)
            .set_chaddr(&mac)
            .set_xid(0x1234);
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        for o in opts {
            m.opts_mut().insert(o);
        }
        m.to_vec().expect("encode")
    }

    fn decode(b: &[u8]) -> Message {
        Message::decode(&mut Decoder::new(b)).expect("decode")
    }

    #[test]
    fn discover_request_ack_with_all_options() {
        let mut s = Server::new(lease());
        assert_eq!(s.skipped_search, ["bad domain!"]);
        let offer = decode(
            &s.handle(&request(MessageType::Discover, MAC, vec![]))
                .expect("offer"),
        );
        assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
        assert_eq!(offer.yiaddr(), Ipv4Addr::new(192, 168, 100, 2));
        assert_eq!(offer.xid(), 0x1234);
        let ack = decode(
            &s.handle(&request(
                MessageType::Request,
                MAC,
                vec![
                    DhcpOption::RequestedIpAddress(Ipv4Addr::new(192, 168, 100, 2)),
                    DhcpOption::ServerIdentifier(Ipv4Addr::new(169, 254, 75, 11)),
                ],
            ))
            .expect("ack"),
        );
        assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
        let o = ack.opts();
        assert_eq!(
            o.get(OptionCode::SubnetMask),
            Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
        );
        assert_eq!(
            o.get(OptionCode::Router),
            Some(&DhcpOption::Router(vec![Ipv4Addr::new(192, 168, 100, 1)]))
        );
        assert_eq!(
            o.get(OptionCode::InterfaceMtu),
            Some(&DhcpOption::InterfaceMtu(1500))
        );
        assert_eq!(
            o.get(OptionCode::Hostname),
            Some(&DhcpOption::Hostname("testvm-2".into()))
        );
        match o.get(OptionCode::ClasslessStaticRoute) {
            Some(DhcpOption::ClasslessStaticRoute(r)) => {
                assert_eq!(r.len(), 2);
                assert_eq!(r[1].0.prefix_len(), 0, "default route last");
            }
            other => panic!("no option 121: {other:?}"),
        }
        match o.get(OptionCode::DomainSearch) {
            Some(DhcpOption::DomainSearch(n)) => assert_eq!(n.len(), 1),
            other => panic!("no option 119: {other:?}"),
        }
        assert!(o.get(OptionCode::Unknown(224)).is_some());
        assert_eq!(s.counters.offers, 1);
        assert_eq!(s.counters.acks, 1);
    }

    #[test]
    fn nak_wrong_address_and_silence_for_others() {
        let mut s = Server::new(lease());
        let nak = decode(
            &s.handle(&request(
                MessageType::Request,
                MAC,
                vec![DhcpOption::RequestedIpAddress(Ipv4Addr::new(
                    192, 168, 100, 9,
                ))],
            ))
            .expect("nak"),
        );
        assert_eq!(nak.opts().msg_type(), Some(MessageType::Nak));
        assert_eq!(nak.yiaddr(), Ipv4Addr::UNSPECIFIED);
        // Another MAC: never answered, whatever it asks.
        assert!(s
            .handle(&request(MessageType::Discover, [2, 0, 0, 0, 0, 9], vec![]))
            .is_none());
        // A request for another server.
        assert!(s
            .handle(&request(
                MessageType::Request,
                MAC,
                vec![DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 0, 1))]
            ))
            .is_none());
        assert!(s
            .handle(&request(MessageType::Release, MAC, vec![]))
            .is_none());
        assert!(s
            .handle(&request(MessageType::Decline, MAC, vec![]))
            .is_none());
        // Renewal (ciaddr set, no option 50) is acked.
        let mut m = Message::default();
        m.set_opcode(Opcode::BootRequest)
            .set_htype(HType::Eth)
            .set_chaddr(&MAC)
            .set_ciaddr(Ipv4Addr::new(192, 168, 100, 2));
        m.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Request));
        let ack = decode(&s.handle(&m.to_vec().expect("enc")).expect("renew ack"));
        assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
        // INFORM: options, no lease.
        let inform = decode(
            &s.handle(&request(MessageType::Inform, MAC, vec![]))
                .expect("inform"),
        );
        assert!(inform.opts().get(OptionCode::AddressLeaseTime).is_none());
        assert_eq!(s.counters.other_client, 1);
        assert_eq!(s.counters.releases, 1);
        assert_eq!(s.counters.declines, 1);
        assert_eq!(s.counters.naks, 1);
    }

    #[test]
    fn garbage_is_counted_not_answered() {
        let mut s = Server::new(lease());
        for bad in [&b""[..], &[0u8; 10][..], &[1u8; 300][..]] {
            assert!(s.handle(bad).is_none());
        }
        assert_eq!(s.counters.malformed, 3);
    }

    #[test]
    fn kubevirt_dhcp_options() {
        let spec = DhcpOptionsSpec {
            boot_file_name: Some("pxelinux.0".into()),
            tftp_server_name: Some("tftp.example".into()),
            ntp_servers: vec![Ipv4Addr::new(10, 0, 0, 123)],
            private_options: vec![(240, "extra".into())],
        };
        let mut l = lease();
        l.extra = spec.to_extra().expect("valid");
        let mut s = Server::new(l);
        let ack = decode(
            &s.handle(&request(MessageType::Discover, MAC, vec![]))
                .expect("offer"),
        );
        for code in [66u8, 67, 42, 240] {
            assert!(
                ack.opts().get(OptionCode::from(code)).is_some(),
                "option {code} missing"
            );
        }
        let bad = DhcpOptionsSpec {
            private_options: vec![(100, "x".into())],
            ..Default::default()
        };
        let e = bad.to_extra().expect_err("out of range");
        assert!(matches!(e, crate::Error::PrivateOption(100)), "{e}");
        assert!(e.to_string().contains("224-254"), "{e}");
    }

    /// Found by the libFuzzer target: a fixed-length option (154, four bytes) given twice.
    /// The decoder joins the parts into eight bytes and asserts four in debug builds; the
    /// packet must be dropped as malformed instead. Found next: parts are joined only when
    /// consecutive, so a lone empty client FQDN (81) after longer ones elsewhere is short.
    #[test]
    fn repeated_fixed_length_option_is_malformed() {
        let mut p = request(MessageType::Request, MAC, vec![]);
        let end = p.iter().rposition(|b| *b == 255).expect("end option");
        p.splice(end..end, [154, 4, 0, 0, 0, 1, 154, 4, 0, 0, 0, 2]);
        let mut s = Server::new(lease());
        assert_eq!(s.handle(&p), None);
        assert_eq!(s.counters.malformed, 1);
        // One part alone is fine.
        let mut one = request(MessageType::Request, MAC, vec![]);
        let end = one.iter().rposition(|b| *b == 255).expect("end option");
        one.splice(end..end, [154, 4, 0, 0, 0, 1]);
        assert!(options_sane(&one));
        // Two runs of 81: three bytes, then (after another option) none.
        let mut fqdn = request(MessageType::Request, MAC, vec![]);
        let end = fqdn.iter().rposition(|b| *b == 255).expect("end option");
        fqdn.splice(end..end, [81, 3, 0, 0, 0, 17, 0, 81, 0]);
        assert!(!options_sane(&fqdn));
        assert_eq!(s.handle(&fqdn), None);
    }

    /// A cheap mutation fuzzer over valid requests of every kind: 40,000 packets with 1–8
    /// bytes changed (and truncations); the server must never panic and never answer a MAC
    /// other than the lease's.
    #[test]
    fn mutation_fuzz_40k() {
        let seeds: Vec<Vec<u8>> = [
            MessageType::Discover,
            MessageType::Request,
            MessageType::Inform,
            MessageType::Release,
            MessageType::Decline,
        ]
        .into_iter()
        .map(|k| {
            request(
                k,
                MAC,
                vec![
                    DhcpOption::RequestedIpAddress(Ipv4Addr::new(192, 168, 100, 2)),
                    DhcpOption::ParameterRequestList(vec![
                        OptionCode::SubnetMask,
                        OptionCode::Router,
                    ]),
                    DhcpOption::Hostname("vm".into()),
                ],
            )
        })
        .collect();
        let mut packets = Mutator::new(seeds, 0x9e37_79b9_7f4a_7c15, 8).truncating(10);
        let mut s = Server::new(lease());
        let mut answered = 0;
        for _ in 0..40_000 {
            let p = packets.packet();
            if let Some(reply) = s.handle(&p) {
                answered += 1;
                let m = decode(&reply);
                assert_eq!(&m.chaddr()[..6], &MAC[..]);
            }
        }
        // Most mutations still reach the server logic; the rest are counted as malformed.
        assert!(
            answered > 0 && s.counters.malformed > 0,
            "{answered} {:?}",
            s.counters
        );
    }

    proptest! {
        #[test]
        fn never_panics_never_answers_another_mac(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut s = Server::new(lease());
            if let Some(reply) = s.handle(&bytes) {
                let m = decode(&reply);
                prop_assert_eq!(&m.chaddr()[..6], &MAC[..]);
            }
        }

        #[test]
        fn mutated_requests_never_answer_another_mac(flip in 0usize..300, val in any::<u8>()) {
            let mut bytes = request(MessageType::Discover, MAC, vec![]);
            if flip < bytes.len() {
                bytes[flip] = val;
            }
            let mut s = Server::new(lease());
            if let Some(reply) = s.handle(&bytes) {
                let m = decode(&reply);
                prop_assert_eq!(&m.chaddr()[..6], &MAC[..]);
            }
        }
    }
}
