//! Any datagram a guest can send to the DHCPv4 server: it must never panic, and any answer
//! it gives is for the lease's own MAC and address.
#![no_main]

use dhcproto::{v4::Message, Decodable, Decoder};
use libfuzzer_sys::fuzz_target;
use oxivirt_dhcp::fixture::{seed_lease, SEED_MAC};
use oxivirt_dhcp::Server;
use std::net::Ipv4Addr;

fuzz_target!(|data: &[u8]| {
    let lease = seed_lease();
    let mut server = Server::new(lease.clone());
    if let Some(reply) = server.handle(data) {
        let m = Message::decode(&mut Decoder::new(&reply)).expect("our reply decodes");
        assert_eq!(&m.chaddr()[..6], &SEED_MAC[..], "answered another MAC");
        let yi = m.yiaddr();
        assert!(
            yi == Ipv4Addr::UNSPECIFIED || yi == lease.address,
            "offered {yi}"
        );
    }
});
