//! The `host-local` IPAM plugin's logic: config, ADD, DEL, CHECK, GC, STATUS.

use crate::node::NodePolicy;
use crate::range::{RangeConf, RangeSet};
use crate::store::Store;
use crate::Error;
use oxivirt_cni_spec::{parse_json, CniArgs, CniResult, Dns, IpConfig, NetConf, Route};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;

pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct IpamSection {
    #[serde(rename = "type")]
    _type: String,
    subnet: Option<ipnet::IpNet>,
    range_start: Option<IpAddr>,
    range_end: Option<IpAddr>,
    gateway: Option<IpAddr>,
    ranges: Vec<Vec<RangeConf>>,
    routes: Vec<Route>,
    data_dir: Option<PathBuf>,
    resolv_conf: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
struct Outer {
    ipam: Option<IpamSection>,
}

/// A validated host-local configuration.
#[derive(Debug, Clone)]
pub struct HostLocal {
    pub name: String,
    pub range_sets: Vec<RangeSet>,
    pub routes: Vec<Route>,
    pub data_dir: PathBuf,
    pub resolv_conf: Option<PathBuf>,
    /// Where the store's index lives (tmpfs); see [`crate::store::index_root`].
    pub index_root: PathBuf,
}

impl HostLocal {
    /// Parses the `ipam` section of a network config.
    pub fn from_config(bytes: &[u8], name: &str, policy: &NodePolicy) -> Result<Self, Error> {
        let outer: Outer = parse_json(bytes, "network config")?;
        let ipam = outer
            .ipam
            .ok_or_else(|| Error::config("network config: field `ipam` is missing"))?;
        let mut confs = Vec::new();
        if let Some(subnet) = ipam.subnet {
            confs.push((
                "ipam".to_string(),
                vec![RangeConf {
                    subnet,
                    range_start: ipam.range_start,
                    range_end: ipam.range_end,
                    gateway: ipam.gateway,
                }],
            ));
        } else if ipam.range_start.is_some() || ipam.range_end.is_some() || ipam.gateway.is_some() {
            return Err(Error::config(
                "ipam: rangeStart/rangeEnd/gateway given without `subnet` (use `ranges` or add `subnet`)",
            ));
        }
        for (i, set) in ipam.ranges.iter().enumerate() {
            confs.push((format!("ipam.ranges[{i}]"), set.clone()));
        }
        if confs.is_empty() {
            return Err(Error::config(
                "ipam: no IP ranges specified (`subnet` or `ranges`)",
            ));
        }
        let mut range_sets: Vec<RangeSet> = Vec::new();
        for (field, set) in &confs {
            let rs = RangeSet::from_conf(set, field)?;
            for (j, other) in range_sets.iter().enumerate() {
                if rs.overlaps(other) {
                    return Err(Error::config(format!(
                        "{field}: range set overlaps with {}",
                        confs
                            .get(j)
                            .map(|c| c.0.as_str())
                            .unwrap_or("another range set")
                    )));
                }
            }
            range_sets.push(rs);
        }
        let data_dir = ipam
            .data_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        policy.check_data_dir(&data_dir)?;
        Ok(Self {
            index_root: crate::store::index_root(&data_dir),
            name: name.to_string(),
            range_sets,
            routes: ipam.routes,
            data_dir,
            resolv_conf: ipam.resolv_conf,
        })
    }

    fn open(&self) -> Result<Store, Error> {
        Store::open(&self.data_dir, &self.name, &self.index_root)
    }

    /// Allocates one address from each range set (honouring requested ones).
    pub fn add(&self, id: &str, ifname: &str, requested: &[IpAddr]) -> Result<CniResult, Error> {
        let dns = match &self.resolv_conf {
            Some(p) => crate::resolv::load(p)?,
            None => Dns::default(),
        };
        let mut store = self.open()?;
        let mut taken: Vec<IpAddr> = Vec::new();
        let result = self.allocate(&mut store, id, ifname, requested, &mut taken);
        let ips = match result {
            Ok(ips) => {
                store.close()?;
                ips
            }
            Err(error) => {
                let mut cleanup: Vec<Error> = taken
                    .iter()
                    .filter_map(|ip| store.release(*ip).err())
                    .collect();
                cleanup.extend(store.close().err());
                return Err(Error::with_cleanup(error, cleanup));
            }
        };
        Ok(CniResult {
            interfaces: vec![],
            ips,
            routes: self.routes.clone(),
            dns,
        })
    }

    fn allocate(
        &self,
        store: &mut Store,
        id: &str,
        ifname: &str,
        requested: &[IpAddr],
        taken: &mut Vec<IpAddr>,
    ) -> Result<Vec<IpConfig>, Error> {
        let mut left: Vec<IpAddr> = requested.to_vec();
        let existing = store.get_by_id(id, ifname)?;
        let mut out = Vec::new();
        for (i, set) in self.range_sets.iter().enumerate() {
            if let Some(ip) = existing.iter().find(|ip| set.range_for(**ip).is_some()) {
                return Err(Error::Allocation(format!(
                    "{ip} has been allocated to {id}, duplicate allocation is not allowed"
                )));
            }
            let want = left
                .iter()
                .position(|ip| set.range_for(*ip).is_some())
                .map(|p| left.remove(p));
            let ip = match want {
                Some(ip) => {
                    let range = set
                        .range_for(ip)
                        .ok_or_else(|| Error::Allocation(format!("{ip} not in range set")))?;
                    if Some(ip) == range.gateway {
                        return Err(Error::Allocation(format!(
                            "requested ip {ip} is subnet's gateway"
                        )));
                    }
                    if !store.reserve(id, ifname, ip, i)? {
                        return Err(Error::Allocation(format!(
                            "requested IP address {ip} is not available in range set {}",
                            set.describe()
                        )));
                    }
                    ip
                }
                None => {
                    let mut got = None;
                    for (_, cand) in set.candidates(store.last_reserved(i)) {
                        if store.reserve(id, ifname, cand, i)? {
                            got = Some(cand);
                            break;
                        }
                    }
                    got.ok_or_else(|| {
                        Error::Allocation(format!(
                            "no IP addresses available in range set: {}",
                            set.describe()
                        ))
                    })?
                }
            };
            taken.push(ip);
            let range = set
                .range_for(ip)
                .ok_or_else(|| Error::Allocation(format!("{ip} not in range set")))?;
            out.push(IpConfig {
                address: range.with_prefix(ip),
                gateway: range.gateway,
                interface: None,
            });
        }
        if !left.is_empty() {
            return Err(Error::Allocation(format!(
                "failed to allocate all requested IPs: {} not in any range set",
                left.iter()
                    .map(|ip| ip.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(out)
    }

    /// Releases everything the attachment holds. Nothing held is success.
    pub fn del(&self, id: &str, ifname: &str) -> Result<Vec<IpAddr>, Error> {
        let mut store = self.open()?;
        let freed = store.release_by_id(id, ifname)?;
        store.close()?;
        Ok(freed)
    }

    /// Checks that every address of `prev` in our ranges is held by the attachment.
    pub fn check(&self, id: &str, ifname: &str, prev: &CniResult) -> Result<(), Error> {
        let mut store = self.open()?;
        let held = store.get_by_id(id, ifname)?;
        store.close()?;
        for ip in &prev.ips {
            let a = ip.address.addr();
            if self.range_sets.iter().any(|s| s.range_for(a).is_some()) && !held.contains(&a) {
                return Err(Error::NotAllocated {
                    ip: a,
                    container_id: id.to_string(),
                    ifname: ifname.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Releases every allocation not in `valid` (container ID, ifname).
    pub fn gc(&self, valid: &HashSet<(String, String)>) -> Result<Vec<IpAddr>, Error> {
        let mut store = self.open()?;
        let mut freed = Vec::new();
        for (id, ifname, ips) in store.attachments()? {
            let keep = valid.contains(&(id.clone(), ifname.clone()))
                || (ifname.is_empty() && valid.iter().any(|(v, _)| *v == id));
            if !keep {
                for ip in ips {
                    store.release(ip)?;
                    freed.push(ip);
                }
            }
        }
        store.close()?;
        Ok(freed)
    }

    /// Reports an exhausted pool as "not available" (code 50).
    pub fn status(&self) -> Result<(), Error> {
        let dir = self.data_dir.join(&self.name);
        if !dir.exists() {
            return Ok(());
        }
        let store = self.open()?;
        for (i, set) in self.range_sets.iter().enumerate() {
            let free = set
                .candidates(None)
                .any(|(_, ip)| !store.dir().join(ip.to_string()).exists());
            if !free {
                return Err(Error::Exhausted {
                    index: i,
                    ranges: set.describe(),
                });
            }
        }
        Ok(())
    }
}

/// Addresses requested for an attachment: `CNI_ARGS` `IP=` (comma-separated),
/// `args.cni.ips` and `runtimeConfig.ips`. A prefix length, if given, is dropped.
pub fn requested_ips(conf: &NetConf, args: &CniArgs) -> Result<Vec<IpAddr>, Error> {
    let mut out = Vec::new();
    let mut push = |raw: &str, from: &str| -> Result<(), Error> {
        let bare = raw.split('/').next().unwrap_or("").trim();
        let ip: IpAddr = bare
            .parse()
            .map_err(|_| Error::config(format!("{from}: {raw:?} is not a valid IP address")))?;
        if !out.contains(&ip) {
            out.push(ip);
        }
        Ok(())
    };
    if let Some(v) = args.get("IP") {
        for part in v.split(',').filter(|s| !s.is_empty()) {
            push(part, "CNI_ARGS IP")?;
        }
    }
    for (val, from) in [
        (conf.args_cni("ips"), "args.cni.ips"),
        (conf.runtime("ips"), "runtimeConfig.ips"),
    ] {
        match val {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let s = item
                        .as_str()
                        .ok_or_else(|| Error::config(format!("{from}[{i}] must be a string")))?;
                    push(s, &format!("{from}[{i}]"))?;
                }
            }
            Some(_) => return Err(Error::config(format!("{from} must be a list of strings"))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hl(dir: &std::path::Path, ipam: &str) -> HostLocal {
        let conf = format!(
            r#"{{"cniVersion":"1.0.0","name":"net1","type":"bridge","ipam":{{"type":"host-local","dataDir":"{}",{ipam}}}}}"#,
            dir.display()
        );
        let mut h = HostLocal::from_config(conf.as_bytes(), "net1", &NodePolicy::default())
            .expect("config");
        h.index_root = dir.join("index");
        h
    }

    #[test]
    fn allocates_round_robin_and_releases() {
        let tmp = tempfile::tempdir().expect("tmp");
        let h = hl(tmp.path(), r#""subnet":"10.1.2.0/29""#);
        let a = h.add("c1", "eth0", &[]).expect("add");
        assert_eq!(a.ips[0].address.to_string(), "10.1.2.2/29");
        assert_eq!(
            a.ips[0].gateway.map(|g| g.to_string()).as_deref(),
            Some("10.1.2.1")
        );
        let f = std::fs::read(tmp.path().join("net1/10.1.2.2")).expect("file");
        assert_eq!(f, b"c1\r\neth0");
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("net1/last_reserved_ip.0")).expect("last"),
            "10.1.2.2"
        );
        assert!(h.add("c1", "eth0", &[]).is_err(), "duplicate allocation");
        let b = h.add("c2", "eth0", &[]).expect("add");
        assert_eq!(b.ips[0].address.to_string(), "10.1.2.3/29");
        h.del("c1", "eth0").expect("del");
        assert!(!tmp.path().join("net1/10.1.2.2").exists());
        // Round robin continues after the last reserved address.
        let c = h.add("c3", "eth0", &[]).expect("add");
        assert_eq!(c.ips[0].address.to_string(), "10.1.2.4/29");
        for i in 4..6 {
            h.add(&format!("c{i}"), "eth0", &[]).expect("fill");
        }
        // .2 was freed and is the only one left.
        let d = h.add("c9", "eth0", &[]).expect("wrap");
        assert_eq!(d.ips[0].address.to_string(), "10.1.2.2/29");
        let e = h.add("c10", "eth0", &[]).expect_err("full");
        assert!(
            matches!(&e, Error::Allocation(m) if m.contains("no IP addresses available")),
            "{e}"
        );
        assert!(matches!(
            h.status().expect_err("exhausted"),
            Error::Exhausted { index: 0, .. }
        ));
    }

    #[test]
    fn index_survives_foreign_changes() {
        let tmp = tempfile::tempdir().expect("tmp");
        let h = hl(tmp.path(), r#""subnet":"10.1.2.0/24""#);
        h.add("c1", "eth0", &[]).expect("add");
        // Another implementation allocates and releases behind our back.
        std::fs::write(tmp.path().join("net1/10.1.2.50"), "other\r\neth1").expect("write");
        std::fs::remove_file(tmp.path().join("net1/10.1.2.2")).expect("rm");
        assert_eq!(
            h.del("other", "eth1").expect("del"),
            vec!["10.1.2.50".parse::<IpAddr>().expect("ip")]
        );
        assert!(h.del("c1", "eth0").expect("del").is_empty());
        // Legacy files holding only the container id.
        std::fs::write(tmp.path().join("net1/10.1.2.60"), "legacy").expect("write");
        assert_eq!(h.del("legacy", "eth0").expect("del").len(), 1);
    }

    #[test]
    fn requested_and_gc() {
        let tmp = tempfile::tempdir().expect("tmp");
        let h = hl(
            tmp.path(),
            r#""ranges":[[{"subnet":"10.1.2.0/24"}],[{"subnet":"fd00::/64"}]]"#,
        );
        let r = h
            .add("c1", "eth0", &["10.1.2.77".parse().expect("ip")])
            .expect("add");
        assert_eq!(r.ips.len(), 2);
        assert_eq!(r.ips[0].address.to_string(), "10.1.2.77/24");
        assert_eq!(r.ips[1].address.to_string(), "fd00::2/64");
        assert!(h
            .add("c2", "eth0", &["10.1.2.77".parse().expect("ip")])
            .is_err());
        assert!(h
            .add("c2", "eth0", &["10.9.9.9".parse().expect("ip")])
            .is_err());
        // Nothing leaked by the failures.
        assert_eq!(
            Store::open(tmp.path(), "net1", &tmp.path().join("index"))
                .expect("open")
                .allocated_count()
                .expect("count"),
            2
        );
        h.add("c3", "eth0", &[]).expect("add");
        let valid: HashSet<_> = [("c3".to_string(), "eth0".to_string())]
            .into_iter()
            .collect();
        let freed = h.gc(&valid).expect("gc");
        assert_eq!(freed.len(), 2);
        assert_eq!(
            Store::open(tmp.path(), "net1", &tmp.path().join("index"))
                .expect("open")
                .allocated_count()
                .expect("count"),
            2
        );
    }
}
