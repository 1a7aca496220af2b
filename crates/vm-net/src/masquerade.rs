//! The masquerade binding (pod network only): the VM sits at 10.0.2.2 behind `k6t-eth0`
//! (10.0.2.1/24, MAC 02:00:00:00:00:00) and `tap0`; nftables NATs it out through the pod
//! address and forwards inbound traffic (all ports, or the interface's `ports`) to it,
//! with KubeVirt's table and chain layout. The ruleset is generated here (it is this
//! binding's); the firewall that loads it is handed in.

use crate::naming::Names;
use crate::{links, Error, Result};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use oxivirt_firewall::{Family, Firewall, Loading, Ruleset, Table};
use oxivirt_netlink::{sysctl, Detached, Handle};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

pub const BRIDGE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port {
    pub protocol: Protocol,
    pub port: u16,
}

#[derive(Debug, Clone)]
pub struct MasqueradeSpec {
    /// `vmNetworkCIDR`, default 10.0.2.0/24: gateway .1, VM .2.
    pub v4: Ipv4Net,
    /// `vmIPv6NetworkCIDR`, default fd10:0:2::/120, when the pod has IPv6.
    pub v6: Option<Ipv6Net>,
    /// Only these ports are forwarded inbound; empty means all.
    pub ports: Vec<Port>,
    pub multiqueue: bool,
}

impl Default for MasqueradeSpec {
    fn default() -> Self {
        Self {
            v4: Ipv4Net::new(Ipv4Addr::new(10, 0, 2, 0), 24).unwrap_or_default(),
            v6: None,
            ports: Vec::new(),
            multiqueue: false,
        }
    }
}

fn nth4(net: Ipv4Net, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + n)
}

fn nth6(net: Ipv6Net, n: u128) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(net.network()) + n)
}

impl MasqueradeSpec {
    pub fn gateway4(&self) -> Ipv4Addr {
        nth4(self.v4, 1)
    }
    pub fn vm4(&self) -> Ipv4Addr {
        nth4(self.v4, 2)
    }
    pub fn default_v6() -> Ipv6Net {
        Ipv6Net::new(Ipv6Addr::new(0xfd10, 0, 2, 0, 0, 0, 0, 0), 120).unwrap_or_default()
    }
}

fn inbound_rules(fam: &str, vm: &str, ports: &[Port]) -> String {
    if ports.is_empty() {
        return format!("  chain KUBEVIRT_PREINBOUND {{\n    counter dnat {fam} to {vm}\n  }}\n");
    }
    let mut s = String::from("  chain KUBEVIRT_PREINBOUND {\n");
    for p in ports {
        let proto = match p.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        s.push_str(&format!(
            "    {proto} dport {} counter dnat {fam} to {vm}\n",
            p.port
        ));
    }
    s.push_str("  }\n");
    s
}

/// The tables the ruleset owns: `ip nat`, and `ip6 nat` with IPv6.
fn nat_tables(v6: bool) -> Vec<Table> {
    let mut t = vec![Table::new(Family::Ip, "nat")];
    if v6 {
        t.push(Table::new(Family::Ip6, "nat"));
    }
    t
}

/// The ruleset: one `nat` table per family, KubeVirt's chains. `pod_ips` are the pod's
/// own addresses on eth0 (for hairpin: the VM reaching its own pod address).
pub fn ruleset(spec: &MasqueradeSpec, pod_ips: &[IpAddr]) -> String {
    // The gateway and the VM of each family in use, IPv4's table first.
    let v4: (IpAddr, IpAddr) = (spec.gateway4().into(), spec.vm4().into());
    let v6 = spec.v6.map(|v6| (nth6(v6, 1).into(), nth6(v6, 2).into()));
    [Some(v4), v6]
        .into_iter()
        .flatten()
        .map(|(gw, vm)| nat_table(gw, vm, pod_ips, &spec.ports))
        .collect()
}

/// The `nat` table of the family of `gw` and `vm` (the VM network's gateway and the VM);
/// of `pod_ips`, only those of the same family go in it.
fn nat_table(gw: IpAddr, vm: IpAddr, pod_ips: &[IpAddr], ports: &[Port]) -> String {
    let (fam, localhost) = match gw {
        IpAddr::V4(_) => ("ip", IpAddr::V4(Ipv4Addr::LOCALHOST)),
        IpAddr::V6(_) => ("ip6", IpAddr::V6(Ipv6Addr::LOCALHOST)),
    };
    let hairpin: String = pod_ips
        .iter()
        .filter(|ip| ip.is_ipv4() == gw.is_ipv4())
        .map(|ip| {
            format!("    iifname \"k6t-eth0\" {fam} daddr {ip} counter jump KUBEVIRT_PREINBOUND\n")
        })
        .collect();
    format!(
        "table {fam} nat {{\n\
         \x20 chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n    iifname \"eth0\" counter jump KUBEVIRT_PREINBOUND\n{hairpin}  }}\n\
         \x20 chain input {{\n    type nat hook input priority 100; policy accept;\n  }}\n\
         \x20 chain output {{\n    type nat hook output priority -100; policy accept;\n    {fam} daddr {localhost} counter jump KUBEVIRT_PREINBOUND\n  }}\n\
         \x20 chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    {fam} saddr {vm} oifname != \"k6t-eth0\" counter masquerade\n    oifname \"k6t-eth0\" counter jump KUBEVIRT_POSTINBOUND\n  }}\n\
         {}\
         \x20 chain KUBEVIRT_POSTINBOUND {{\n    {fam} saddr {localhost} counter snat {fam} to {gw}\n    {fam} saddr {vm} counter snat {fam} to {gw}\n  }}\n\
         }}\n",
        inbound_rules(fam, &vm.to_string(), ports),
    )
}

/// The pod namespace's br_netfilter switches, per family.
///
/// With br_netfilter in the kernel, frames crossing a bridge go through the IP hooks of the
/// namespace. A VM's packet to its own pod address is then DNAT'ed on the bridge and
/// bridged back out of the port it came in on, which a bridge never does: hairpin breaks
/// (KubeVirt #10772). In the VM's pod nothing needs bridged frames to meet IP netfilter
/// (they would also be tracked by conntrack for nothing), so the binding turns these off
/// in the pod's namespace, where they are its own, and teardown puts them back.
const BRIDGE_NF: [(&str, bool); 2] = [
    ("bridge-nf-call-iptables", false),
    ("bridge-nf-call-ip6tables", true),
];

/// Where setup records the br_netfilter switches it turned off, for teardown.
fn sysctl_state(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join("masquerade-sysctls")
}

/// Turns br_netfilter off for the families in use. The values found are recorded first,
/// unless a record is already there: a re-run after a crash must not record its own zeros.
fn disable_bridge_nf(spec: &MasqueradeSpec, state_dir: &Path) -> Result<()> {
    let mut found = Vec::new();
    for (key, v6) in BRIDGE_NF {
        if v6 && spec.v6.is_none() {
            continue;
        }
        // Absent without br_netfilter: nothing to do.
        if let Ok(value) = sysctl::read(&["net", "bridge", key]) {
            if value != "0" {
                found.push((key, value));
            }
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    let record = sysctl_state(state_dir);
    if !record.exists() {
        let text: String = found.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::create_dir_all(state_dir)
            .and_then(|()| std::fs::write(&record, text))
            .map_err(|source| Error::State {
                path: record.clone(),
                source,
            })?;
    }
    for (key, _) in found {
        sysctl::ensure(&["net", "bridge", key], "0")?;
    }
    Ok(())
}

/// Puts back what [`disable_bridge_nf`] recorded; nothing recorded, nothing to do.
pub(crate) fn restore_bridge_nf(state_dir: &Path) -> Result<()> {
    let record = sysctl_state(state_dir);
    let Ok(text) = std::fs::read_to_string(&record) else {
        return Ok(());
    };
    for line in text.lines() {
        if let Some((key, value)) = line.split_once('=') {
            if BRIDGE_NF.iter().any(|(k, _)| *k == key) {
                sysctl::write(&["net", "bridge", key], value)?;
            }
        }
    }
    match std::fs::remove_file(&record) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::State {
            path: record,
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Builds `k6t-eth0` + `tap0` with addresses and sysctls and loads the ruleset. Runs on a
/// thread inside the pod's namespace. Re-running replaces the ruleset and keeps the links.
/// `state_dir` keeps what teardown must put back; `fw` loads the ruleset.
pub fn setup(
    nl: &mut Handle,
    fw: &dyn Firewall,
    spec: &MasqueradeSpec,
    state_dir: &Path,
) -> Result<()> {
    begin(nl, fw, spec, state_dir)?.finish()
}

/// The ruleset still loading when [`begin`] returns: a launcher sets up its other bindings
/// meanwhile (loading it is the slowest part of the bindings) and then calls
/// [`RulesLoading::finish`]. Dropped unfinished, it waits for the load and ignores errors.
pub struct RulesLoading(Box<dyn Loading>);

impl RulesLoading {
    /// Waits for the ruleset and reports what the firewall refused.
    pub fn finish(self) -> Result<()> {
        Ok(self.0.finish()?)
    }
}

/// Starts loading the ruleset for a pod with `pod_ips`, replacing any earlier one.
fn load_rules(
    fw: &dyn Firewall,
    spec: &MasqueradeSpec,
    pod_ips: &[IpAddr],
) -> Result<RulesLoading> {
    let rules = Ruleset {
        tables: nat_tables(spec.v6.is_some()),
        body: ruleset(spec, pod_ips),
    };
    Ok(RulesLoading(fw.load(rules)?))
}

/// [`setup`] up to the ruleset, which keeps loading after it returns.
pub fn begin(
    nl: &mut Handle,
    fw: &dyn Firewall,
    spec: &MasqueradeSpec,
    state_dir: &Path,
) -> Result<RulesLoading> {
    let n = Names::primary();
    let eth0 = nl.require_link(&n.pod)?;
    let pod_ips: Vec<IpAddr> = nl
        .addresses(Some(eth0.index))?
        .into_iter()
        .map(|a| a.addr.addr())
        .filter(|ip| !matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80))
        .collect();
    // The rules name interfaces, they do not need them: the firewall loads them (the
    // slowest part) while the links are made.
    let rules = load_rules(fw, spec, &pod_ips)?;
    let br = links::bridge(nl, &n.bridge, eth0.mtu)?;
    nl.set_mac(br.index, BRIDGE_MAC)?;
    if spec.v6.is_some() {
        // Only the VM is on this bridge: no duplicate to detect, and router
        // advertisements need the link-local address usable at once.
        sysctl::ensure(&["net", "ipv6", "conf", &n.bridge, "accept_dad"], "0")?;
    }
    let mut addrs = vec![IpNet::V4(
        Ipv4Net::new(spec.gateway4(), spec.v4.prefix_len()).map_err(|source| Error::Network {
            field: "vmNetworkCIDR",
            source,
        })?,
    )];
    if let Some(v6) = spec.v6 {
        addrs.push(IpNet::V6(
            Ipv6Net::new(nth6(v6, 1), v6.prefix_len()).map_err(|source| Error::Network {
                field: "vmIPv6NetworkCIDR",
                source,
            })?,
        ));
    }
    for a in addrs {
        links::add_address(nl, br.index, a)?;
    }
    nl.set_up(br.index, true)?;
    links::tap_on_bridge(nl, &n.tap, spec.multiqueue, eth0.mtu, br.index)?;
    sysctl::ensure(&["net", "ipv4", "ip_forward"], "1")?;
    sysctl::ensure(&["net", "ipv4", "conf", &n.bridge, "route_localnet"], "1")?;
    if spec.v6.is_some() {
        sysctl::ensure(&["net", "ipv6", "conf", "all", "forwarding"], "1")?;
    }
    disable_bridge_nf(spec, state_dir)?;
    Ok(rules)
}

/// Removes the ruleset and the links and puts back the sysctls setup changed (see
/// [`crate::teardown_all`]); safe to run twice. `fw` is the firewall setup loaded it with.
pub fn teardown(nl: &mut Handle, fw: &dyn Firewall, state_dir: &Path) -> Result<()> {
    crate::teardown_all(nl, Some(fw), &[], state_dir)
}

/// The command that removes the ruleset, for the detached clean-up process; `None` if
/// `fw` has none (or its program is not installed).
pub(crate) fn deferred_rules_removal(fw: &dyn Firewall) -> Option<Detached> {
    // Both families: teardown does not know whether setup had IPv6.
    let d = fw.deferred_table_removal(&nat_tables(true))?;
    let args: Vec<&str> = d.args.iter().map(String::as_str).collect();
    Detached::program(d.program, &args)
}

/// Removes the ruleset now.
pub(crate) fn remove_rules(fw: &dyn Firewall) -> Result<()> {
    Ok(fw.remove_tables(&nat_tables(true))?)
}

/// The masquerade binding's links, for a batched deletion.
pub fn links_to_delete(nl: &mut Handle) -> Result<Vec<u32>> {
    let n = Names::primary();
    let mut doomed = Vec::new();
    for name in [&n.tap, &n.bridge] {
        if let Some(l) = nl.link_by_name(name)? {
            doomed.push(l.index);
        }
    }
    Ok(doomed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxivirt_firewall::fake::{Call, RecordingFirewall};

    fn pod() -> Vec<IpAddr> {
        vec![
            "10.244.0.7".parse().expect("v4"),
            "fd00:10:244::7".parse().expect("v6"),
        ]
    }

    #[test]
    fn ruleset_all_ports() {
        insta::assert_snapshot!(ruleset(&MasqueradeSpec::default(), &pod()));
    }

    #[test]
    fn ruleset_port_list() {
        let spec = MasqueradeSpec {
            ports: vec![
                Port {
                    protocol: Protocol::Tcp,
                    port: 22,
                },
                Port {
                    protocol: Protocol::Udp,
                    port: 53,
                },
            ],
            ..Default::default()
        };
        insta::assert_snapshot!(ruleset(&spec, &pod()));
    }

    #[test]
    fn the_firewall_loads_the_ruleset_replacing_the_nat_tables() {
        let fw = RecordingFirewall::new();
        let spec = MasqueradeSpec {
            v6: Some(MasqueradeSpec::default_v6()),
            ..Default::default()
        };
        load_rules(&fw, &spec, &pod())
            .expect("load starts")
            .finish()
            .expect("load finishes");
        let tables = vec![
            Table::new(Family::Ip, "nat"),
            Table::new(Family::Ip6, "nat"),
        ];
        let calls = fw.calls();
        let [Call::Load(loaded), Call::Finish(finished)] = calls.as_slice() else {
            panic!("one load, then its finish: {calls:?}");
        };
        assert_eq!(loaded.tables, tables);
        assert_eq!(finished, &tables);
        // What the firewall gets is the snapshot'd ruleset itself.
        insta::assert_snapshot!("ruleset_dual_stack", loaded.body);
    }

    #[test]
    fn v4_only_owns_only_ip_nat() {
        let fw = RecordingFirewall::new();
        drop(load_rules(&fw, &MasqueradeSpec::default(), &pod()).expect("load starts"));
        let calls = fw.calls();
        let [Call::Load(loaded)] = calls.as_slice() else {
            panic!("one load: {calls:?}");
        };
        assert_eq!(loaded.tables, [Table::new(Family::Ip, "nat")]);
        insta::assert_snapshot!("ruleset_all_ports", loaded.body);
    }

    #[test]
    fn a_refused_ruleset_is_a_firewall_error_with_its_source() {
        let fw = RecordingFirewall::new().failing(|c| matches!(c, Call::Finish(_)));
        let e = load_rules(&fw, &MasqueradeSpec::default(), &pod())
            .expect("load starts")
            .finish()
            .expect_err("refused");
        assert!(matches!(e, Error::Firewall(_)), "{e:?}");
        let source = std::error::Error::source(&e).map(|s| s.to_string());
        assert_eq!(
            source.as_deref(),
            Some("nft refused to load table ip nat (exit status: 1): refused by the test")
        );
    }

    #[test]
    fn teardown_removes_both_nat_tables() {
        let fw = RecordingFirewall::new();
        // The fake has no command for a detached process: the tables go at once.
        assert!(deferred_rules_removal(&fw).is_none());
        remove_rules(&fw).expect("remove");
        assert_eq!(
            fw.calls(),
            [Call::RemoveTables(vec![
                Table::new(Family::Ip, "nat"),
                Table::new(Family::Ip6, "nat")
            ])]
        );
    }

    #[test]
    fn nft_removes_the_tables_from_the_detached_process() {
        // `None` only when nft is not in PATH.
        let Some(d) = deferred_rules_removal(&oxivirt_firewall::NftCli) else {
            eprintln!("SKIP nft_removes_the_tables_from_the_detached_process: nft not installed");
            return;
        };
        let argv: Vec<String> = d
            .argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            argv,
            [
                "nft",
                "table ip nat; delete table ip nat; table ip6 nat; delete table ip6 nat"
            ]
        );
    }

    #[test]
    fn ruleset_dual_stack() {
        let spec = MasqueradeSpec {
            v6: Some(MasqueradeSpec::default_v6()),
            ..Default::default()
        };
        insta::assert_snapshot!(ruleset(&spec, &pod()));
    }
}
