//! Ranges and range sets: validation and the round-robin candidate order.

use crate::Error;
use ipnet::IpNet;
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One range as written in the config.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RangeConf {
    pub subnet: IpNet,
    pub range_start: Option<IpAddr>,
    pub range_end: Option<IpAddr>,
    pub gateway: Option<IpAddr>,
}

/// A validated range: every address in `start..=end` may be handed out except `gateway`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub subnet: IpNet,
    pub start: IpAddr,
    pub end: IpAddr,
    pub gateway: Option<IpAddr>,
}

pub(crate) fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v) => u32::from(v) as u128,
        IpAddr::V6(v) => u128::from(v),
    }
}

pub(crate) fn from_u128(v: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

impl Range {
    /// Validates like the reference (`Range.Canonicalize`), and also refuses a gateway
    /// outside the subnet, which the reference accepts and then hands out unusable configs.
    pub fn from_conf(c: &RangeConf, field: &str) -> Result<Self, Error> {
        let subnet = c.subnet;
        let v4 = subnet.addr().is_ipv4();
        let bits = if v4 { 32 } else { 128 };
        if subnet.prefix_len() > bits - 2 {
            return Err(Error::config(format!(
                "{field}.subnet: network {subnet} is too small to allocate from"
            )));
        }
        if subnet.addr() != subnet.network() {
            return Err(Error::config(format!(
                "{field}.subnet: {subnet} has host bits set: for a /{} the network address is {}",
                subnet.prefix_len(),
                subnet.network()
            )));
        }
        let check = |ip: IpAddr, what: &str| -> Result<IpAddr, Error> {
            if ip.is_ipv4() != v4 {
                return Err(Error::config(format!(
                    "{field}.{what}: {ip} is not of the same IP family as subnet {subnet}"
                )));
            }
            if !subnet.contains(&ip) {
                return Err(Error::config(format!(
                    "{field}.{what}: {ip} is not in network {subnet}"
                )));
            }
            Ok(ip)
        };
        let net = to_u128(subnet.network());
        let gateway = match c.gateway {
            Some(g) => Some(check(g, "gateway")?),
            None => Some(from_u128(net + 1, v4)),
        };
        let start = match c.range_start {
            Some(s) => check(s, "rangeStart")?,
            None => from_u128(net + 1, v4),
        };
        let end = match c.range_end {
            Some(e) => check(e, "rangeEnd")?,
            None => {
                let last = to_u128(subnet.broadcast());
                from_u128(if v4 { last - 1 } else { last }, v4)
            }
        };
        if to_u128(start) > to_u128(end) {
            return Err(Error::config(format!(
                "{field}: rangeStart {start} is after rangeEnd {end}"
            )));
        }
        Ok(Self {
            subnet,
            start,
            end,
            gateway,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.start.is_ipv4()
            && to_u128(ip) >= to_u128(self.start)
            && to_u128(ip) <= to_u128(self.end)
    }

    pub fn overlaps(&self, other: &Range) -> bool {
        self.start.is_ipv4() == other.start.is_ipv4()
            && to_u128(self.start) <= to_u128(other.end)
            && to_u128(other.start) <= to_u128(self.end)
    }

    pub fn size(&self) -> u128 {
        to_u128(self.end) - to_u128(self.start) + 1
    }

    pub fn is_v4(&self) -> bool {
        self.start.is_ipv4()
    }

    /// The address as the result reports it: with the subnet's prefix length.
    pub fn with_prefix(&self, ip: IpAddr) -> IpNet {
        IpNet::new(ip, self.subnet.prefix_len()).unwrap_or(self.subnet)
    }
}

/// A range set: ranges of one family; one address is allocated from each set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet {
    pub ranges: Vec<Range>,
}

impl RangeSet {
    pub fn from_conf(confs: &[RangeConf], field: &str) -> Result<Self, Error> {
        if confs.is_empty() {
            return Err(Error::config(format!("{field}: empty range set")));
        }
        let mut ranges: Vec<Range> = Vec::with_capacity(confs.len());
        for (i, c) in confs.iter().enumerate() {
            let f = format!("{field}[{i}]");
            let r = Range::from_conf(c, &f)?;
            if let Some(first) = ranges.first() {
                if first.is_v4() != r.is_v4() {
                    return Err(Error::config(format!(
                        "{f}: mixed address families in one range set"
                    )));
                }
            }
            for (j, other) in ranges.iter().enumerate() {
                if r.overlaps(other) {
                    return Err(Error::config(format!(
                        "{f}: range {}-{} overlaps with {field}[{j}] {}-{}",
                        r.start, r.end, other.start, other.end
                    )));
                }
            }
            ranges.push(r);
        }
        Ok(Self { ranges })
    }

    pub fn range_for(&self, ip: IpAddr) -> Option<&Range> {
        self.ranges.iter().find(|r| r.contains(ip))
    }

    pub fn overlaps(&self, other: &RangeSet) -> bool {
        self.ranges
            .iter()
            .any(|a| other.ranges.iter().any(|b| a.overlaps(b)))
    }

    pub fn size(&self) -> u128 {
        self.ranges.iter().map(Range::size).sum()
    }

    pub fn describe(&self) -> String {
        self.ranges
            .iter()
            .map(|r| format!("{}-{}", r.start, r.end))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Candidates in the reference's round-robin order: the address after `last` (if it is
    /// in this set), through the end of its range, then the following ranges, wrapping
    /// around; gateways skipped.
    pub fn candidates(&self, last: Option<IpAddr>) -> impl Iterator<Item = (usize, IpAddr)> + '_ {
        let (start_range, start_off) = match last.and_then(|l| {
            self.ranges
                .iter()
                .position(|r| r.contains(l))
                .map(|i| (i, l))
        }) {
            Some((i, l)) => {
                let r = &self.ranges[i];
                let next = to_u128(l) + 1;
                if next > to_u128(r.end) {
                    ((i + 1) % self.ranges.len(), 0u128)
                } else {
                    (i, next - to_u128(r.start))
                }
            }
            None => (0, 0),
        };
        let n = self.ranges.len();
        // Visit: start range from offset, the others fully, then the start range's head.
        let mut segments: Vec<(usize, u128, u128)> = Vec::with_capacity(n + 1);
        let first = &self.ranges[start_range];
        segments.push((
            start_range,
            to_u128(first.start) + start_off,
            to_u128(first.end),
        ));
        for k in 1..n {
            let i = (start_range + k) % n;
            let r = &self.ranges[i];
            segments.push((i, to_u128(r.start), to_u128(r.end)));
        }
        if start_off > 0 {
            segments.push((
                start_range,
                to_u128(first.start),
                to_u128(first.start) + start_off - 1,
            ));
        }
        segments.into_iter().flat_map(move |(i, a, b)| {
            let r = &self.ranges[i];
            let v4 = r.is_v4();
            let gw = r.gateway;
            (a..=b)
                .map(move |v| (i, from_u128(v, v4)))
                .filter(move |(_, ip)| Some(*ip) != gw && Some(*ip) != last)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rc(subnet: &str) -> RangeConf {
        RangeConf {
            subnet: subnet.parse().expect("net"),
            range_start: None,
            range_end: None,
            gateway: None,
        }
    }

    #[test]
    fn defaults_like_reference() {
        let r = Range::from_conf(&rc("192.168.100.0/24"), "r").expect("range");
        assert_eq!(r.start.to_string(), "192.168.100.1");
        assert_eq!(r.end.to_string(), "192.168.100.254");
        assert_eq!(
            r.gateway.map(|g| g.to_string()).as_deref(),
            Some("192.168.100.1")
        );
        let r6 = Range::from_conf(&rc("fd00::/120"), "r").expect("range");
        assert_eq!(r6.end.to_string(), "fd00::ff");
    }

    #[test]
    fn refuses_bad_ranges() {
        assert!(Range::from_conf(&rc("10.0.0.0/31"), "r").is_err());
        assert!(Range::from_conf(&rc("10.0.0.0/32"), "r").is_err());
        assert!(Range::from_conf(&rc("10.0.0.5/24"), "r").is_err());
        let mut c = rc("10.0.0.0/24");
        c.gateway = Some("10.0.1.1".parse().expect("ip"));
        assert!(Range::from_conf(&c, "r")
            .expect_err("gw")
            .to_string()
            .contains("gateway"));
        let mut c = rc("10.0.0.0/24");
        c.range_start = Some("10.0.0.100".parse().expect("ip"));
        c.range_end = Some("10.0.0.50".parse().expect("ip"));
        assert!(Range::from_conf(&c, "r").is_err());
        assert!(RangeSet::from_conf(&[rc("10.0.0.0/24"), rc("10.0.0.0/25")], "s").is_err());
        assert!(RangeSet::from_conf(&[rc("10.0.0.0/24"), rc("fd00::/64")], "s").is_err());
    }

    #[test]
    fn round_robin_order() {
        let set = RangeSet::from_conf(&[rc("10.0.0.0/29"), rc("10.0.1.0/29")], "s").expect("set");
        let all: Vec<String> = set
            .candidates(Some("10.0.0.5".parse().expect("ip")))
            .map(|(_, i)| i.to_string())
            .collect();
        assert_eq!(
            all,
            [
                "10.0.0.6", "10.0.1.2", "10.0.1.3", "10.0.1.4", "10.0.1.5", "10.0.1.6", "10.0.0.2",
                "10.0.0.3", "10.0.0.4"
            ]
        );
    }

    proptest! {
        #[test]
        fn candidates_cover_each_address_once(prefix in 24u8..30, last in 0u32..256) {
            let set = RangeSet::from_conf(&[rc(&format!("10.1.0.0/{prefix}"))], "s").expect("set");
            let last_ip = IpAddr::V4(Ipv4Addr::from(0x0a01_0000 + last));
            let mut seen: Vec<u128> = set.candidates(Some(last_ip)).map(|(_, i)| to_u128(i)).collect();
            let n = seen.len() as u128;
            seen.sort_unstable();
            seen.dedup();
            prop_assert_eq!(seen.len() as u128, n);
            let gw = set.ranges[0].gateway;
            let skipped = if set.range_for(last_ip).is_some() && Some(last_ip) != gw { 2 } else { 1 };
            prop_assert_eq!(n, set.size() - skipped);
        }
    }
}
