//! Any datagram a guest can send to the DHCPv4 server: it must never panic, and any answer
//! it gives is for the lease's own MAC and address.
#![no_main]

use dhcproto::{v4::Message, Decodable, Decoder};
use libfuzzer_sys::fuzz_target;
use oxivirt_dhcp::{Lease, Server};
use std::net::Ipv4Addr;

const MAC: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];

fn lease() -> Lease {
    Lease {
        client_mac: MAC,
        address: Ipv4Addr::new(192, 168, 100, 2),
        prefix: 24,
        router: Some(Ipv4Addr::new(192, 168, 100, 1)),
        dns: vec![Ipv4Addr::new(10, 96, 0, 10)],
        hostname: Some("testvm-2".into()),
        domain: Some("cluster.local".into()),
        search: vec!["default.svc.cluster.local".into(), "bad domain!".into()],
        mtu: Some(1500),
        routes: vec![(
            "10.20.0.0/16".parse().expect("net"),
            Ipv4Addr::new(192, 168, 100, 254),
        )],
        server_id: Ipv4Addr::new(169, 254, 75, 11),
        lease_secs: 86400,
        extra: vec![(66, b"tftp.example".to_vec()), (224, vec![1, 2, 3])],
    }
}

fuzz_target!(|data: &[u8]| {
    let mut server = Server::new(lease());
    if let Some(reply) = server.handle(data) {
        let m = Message::decode(&mut Decoder::new(&reply)).expect("our reply decodes");
        assert_eq!(&m.chaddr()[..6], &MAC[..], "answered another MAC");
        let yi = m.yiaddr();
        assert!(
            yi == Ipv4Addr::UNSPECIFIED || yi == Ipv4Addr::new(192, 168, 100, 2),
            "offered {yi}"
        );
    }
});
