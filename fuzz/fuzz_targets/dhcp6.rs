//! Any datagram a guest can send to the DHCPv6 server: it must never panic, and the only
//! address it ever hands out is the lease's.
#![no_main]

use dhcproto::v6::{DhcpOption, Message};
use dhcproto::{Decodable, Decoder};
use libfuzzer_sys::fuzz_target;
use oxivirt_dhcp::fixture::seed_lease6;
use oxivirt_dhcp::v6::Server6;

fuzz_target!(|data: &[u8]| {
    let lease = seed_lease6();
    let address = lease.address;
    let mut server = Server6::new(lease);
    if let Some(reply) = server.handle(data) {
        let m = Message::decode(&mut Decoder::new(&reply)).expect("our reply decodes");
        for opt in m.opts().iter() {
            if let DhcpOption::IANA(ia) = opt {
                for inner in ia.opts.iter() {
                    if let DhcpOption::IAAddr(a) = inner {
                        assert_eq!(a.addr, address, "handed out another address");
                    }
                }
            }
        }
    }
});
