//! Test and fuzzing fixtures (the `fixture` feature; always on in this crate's own unit
//! tests): the leases the seed's VM gets, and a cheap packet mutator. Not for production
//! use: the values are the seed's, not anyone's configuration.

use crate::v6::Lease6;
use crate::Lease;
use std::net::Ipv4Addr;

/// The client of [`seed_lease`]; the packets in `fuzz/seeds/dhcp4` come from it.
pub const SEED_MAC: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];

/// The seed VM's DHCPv4 lease on multus-br, with every kind of option the server writes:
/// a router, DNS, hostname, domain, a search list with one entry that is no valid domain
/// (to be skipped), MTU, a classless route and extra raw options (TFTP, a private one).
pub fn seed_lease() -> Lease {
    Lease {
        client_mac: SEED_MAC,
        address: Ipv4Addr::new(192, 168, 100, 2),
        prefix: 24,
        router: Some(Ipv4Addr::new(192, 168, 100, 1)),
        dns: vec![Ipv4Addr::new(10, 96, 0, 10)],
        hostname: Some("testvm-2".into()),
        domain: Some("cluster.local".into()),
        search: vec!["default.svc.cluster.local".into(), "bad domain!".into()],
        mtu: Some(1500),
        routes: vec![(
            ipnet::Ipv4Net::new(Ipv4Addr::new(10, 20, 0, 0), 16).expect("a /16 is a valid prefix"),
            Ipv4Addr::new(192, 168, 100, 254),
        )],
        server_id: Ipv4Addr::new(169, 254, 75, 11),
        lease_secs: 86400,
        extra: vec![(66, b"tftp.example".to_vec()), (224, vec![1, 2, 3])],
    }
}

/// The masquerade network's DHCPv6 lease: the VM's fd10:0:2::2, one DNS server, served
/// from the k6t bridge's MAC.
pub fn seed_lease6() -> Lease6 {
    Lease6 {
        address: std::net::Ipv6Addr::new(0xfd10, 0, 2, 0, 0, 0, 0, 2),
        dns: vec![std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0xa)],
        server_mac: [2, 0, 0, 0, 0, 0],
        valid_secs: 3600,
    }
}

/// A cheap, deterministic mutation fuzzer for unit tests (the libFuzzer targets go
/// further): each packet is one of the seeds with a few bytes changed, sometimes cut short.
#[derive(Debug, Clone)]
pub struct Mutator {
    seeds: Vec<Vec<u8>>,
    state: u64,
    max_changes: u64,
    /// One packet in this many is truncated (0: none).
    truncate_every: u64,
}

impl Mutator {
    /// Mutates `seeds` (none may be empty) from the xorshift state `seed` (non-zero),
    /// changing 1 to `max_changes` bytes a packet.
    pub fn new(seeds: Vec<Vec<u8>>, seed: u64, max_changes: u64) -> Self {
        assert!(
            !seeds.is_empty() && seeds.iter().all(|s| !s.is_empty()) && seed != 0,
            "a mutator needs non-empty seeds and a non-zero state"
        );
        Self {
            seeds,
            state: seed,
            max_changes: max_changes.max(1),
            truncate_every: 0,
        }
    }

    /// Also cuts one packet in `every` short at a random length.
    pub fn truncating(mut self, every: u64) -> Self {
        self.truncate_every = every;
        self
    }

    fn next(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    /// An index below `n` (> 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// The next mutated packet.
    pub fn packet(&mut self) -> Vec<u8> {
        let pick = self.below(self.seeds.len());
        let mut p = self.seeds[pick].clone();
        for _ in 0..=(self.next() % self.max_changes) {
            let i = self.below(p.len());
            p[i] = self.next() as u8;
        }
        if self.truncate_every > 0 && self.next().is_multiple_of(self.truncate_every) {
            let len = self.below(p.len());
            p.truncate(len);
        }
        p
    }
}
