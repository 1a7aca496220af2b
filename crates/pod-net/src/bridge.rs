//! The `bridge` plugin: a veth pair from the container to a Linux bridge on the host,
//! with every option of the reference plugin.

use crate::bridge_firewall as fw;
use crate::error::{Error, Result};
use crate::iface;
use ipnet::IpNet;
use oxivirt_cni_spec::env::validate_ifname;
use oxivirt_cni_spec::plugin::{require_check_support, Call};
use oxivirt_cni_spec::trace::mark;
use oxivirt_cni_spec::{parse_json, CniResult, Command, Interface, NetConf, Route};
use oxivirt_firewall::{Firewall, NftCli, Owner};
use oxivirt_ipam::plugin as ipam;
use oxivirt_netlink::{
    format_mac, sysctl, BridgeOptions, BridgePortOptions, BridgeVlan, Handle, IfInfo, Link, NetNs,
    VethOptions,
};
use serde::Deserialize;
use std::net::IpAddr;
use std::sync::mpsc;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct VlanTrunk {
    #[serde(rename = "minID", default)]
    min_id: Option<i64>,
    #[serde(rename = "maxID", default)]
    max_id: Option<i64>,
    #[serde(rename = "id", default)]
    id: Option<i64>,
}

fn default_bridge() -> String {
    "cni0".into()
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BridgeConf {
    #[serde(default = "default_bridge")]
    bridge: String,
    #[serde(default)]
    is_gateway: bool,
    #[serde(default)]
    is_default_gateway: bool,
    #[serde(default)]
    force_address: bool,
    #[serde(default)]
    ip_masq: bool,
    #[serde(default)]
    ip_masq_backend: Option<String>,
    #[serde(default)]
    mtu: i64,
    #[serde(default)]
    hairpin_mode: bool,
    #[serde(default)]
    promisc_mode: bool,
    #[serde(default)]
    vlan: i64,
    #[serde(default)]
    vlan_trunk: Option<Vec<VlanTrunk>>,
    #[serde(default = "yes")]
    preserve_default_vlan: bool,
    #[serde(default)]
    macspoofchk: bool,
    #[serde(default)]
    enabledad: bool,
    #[serde(default)]
    disable_container_interface: bool,
    #[serde(default)]
    port_isolation: bool,
}

/// A parsed and validated configuration.
struct Config {
    conf: NetConf,
    br: BridgeConf,
    mtu: Option<u32>,
    vlans: Vec<u16>,
    mac: Option<[u8; 6]>,
    layer3: bool,
}

fn collect_trunk(trunk: &[VlanTrunk]) -> Result<Vec<u16>> {
    let mut set = std::collections::BTreeSet::new();
    let ok = |v: i64| (1..=4094).contains(&v);
    for (i, t) in trunk.iter().enumerate() {
        let at = format!("network config: field `vlanTrunk[{i}]`");
        match (t.min_id, t.max_id) {
            (Some(lo), Some(hi)) => {
                if !ok(lo) {
                    return Err(Error::config(format!("{at}.minID {lo} is not in 1..4094")));
                }
                if !ok(hi) {
                    return Err(Error::config(format!("{at}.maxID {hi} is not in 1..4094")));
                }
                if hi < lo {
                    return Err(Error::config(format!(
                        "{at}: minID {lo} is greater than maxID {hi}"
                    )));
                }
                set.extend(lo..=hi);
            }
            (None, Some(_)) => return Err(Error::config(format!("{at}: maxID without minID"))),
            (Some(_), None) => return Err(Error::config(format!("{at}: minID without maxID"))),
            (None, None) => {}
        }
        if let Some(id) = t.id {
            if !ok(id) {
                return Err(Error::config(format!("{at}.id {id} is not in 1..4094")));
            }
            set.insert(id);
        }
    }
    Ok(set.into_iter().map(|v| v as u16).collect())
}

fn load(call: &Call<'_>) -> Result<(Config, oxivirt_cni_spec::Version)> {
    let (conf, version) = NetConf::load(call.stdin)?;
    let br: BridgeConf = parse_json(call.stdin, "network config")?;
    validate_ifname(&br.bridge).map_err(|e| match e {
        oxivirt_cni_spec::Error::Env { reason, .. } => {
            Error::config(format!("network config: field `bridge`: {reason}"))
        }
        other => other.context("network config: field `bridge`").into(),
    })?;
    if !(0..=4094).contains(&br.vlan) {
        return Err(Error::config(format!(
            "network config: field `vlan`: invalid VLAN ID {} (must be between 0 and 4094)",
            br.vlan
        )));
    }
    let vlans = collect_trunk(br.vlan_trunk.as_deref().unwrap_or(&[]))?;
    if br.vlan > 0 && !vlans.is_empty() {
        return Err(Error::config(
            "network config: cannot set `vlan` and `vlanTrunk` at the same time",
        ));
    }
    if !(0..=65535).contains(&br.mtu) {
        return Err(Error::config(format!(
            "network config: field `mtu`: {} is not a valid MTU",
            br.mtu
        )));
    }
    match br.ip_masq_backend.as_deref() {
        None | Some("nftables") | Some("iptables") => {}
        Some(other) => {
            return Err(Error::config(format!(
            "network config: field `ipMasqBackend`: {other:?} is not \"iptables\" or \"nftables\""
        )))
        }
    }
    if br.hairpin_mode && br.promisc_mode {
        return Err(Error::config(
            "cannot set hairpin mode and promiscuous mode at the same time",
        ));
    }
    let layer3 = iface::layer3(&conf);
    if br.disable_container_interface && layer3 {
        return Err(Error::config(
            "network config: `disableContainerInterface` cannot be used with IPAM (the interface would be down)",
        ));
    }
    if call.env.command == Command::Add {
        call.env.args.check_known(&ipam::KNOWN_ARGS)?;
    }
    // Later sources win, as in the reference: CNI_ARGS, args.cni, runtimeConfig.
    let mac = iface::requested_mac(call, &conf)?;
    let mtu = (br.mtu > 0).then_some(br.mtu as u32);
    Ok((
        Config {
            conf,
            br,
            mtu,
            vlans,
            mac,
            layer3,
        },
        version,
    ))
}

pub fn handle(call: Call<'_>) -> Result<Option<String>> {
    let (cfg, version) = load(&call)?;
    // The one place the firewall driver is picked.
    let firewall = NftCli;
    match call.env.command {
        Command::Add => add(&call, &cfg, &firewall).map(|r| Some(r.to_json(version))),
        Command::Del => del(&call, &cfg, &firewall).map(|_| None),
        Command::Check => {
            require_check_support(version)?;
            check(&call, &cfg).map(|_| None)
        }
        Command::Gc => gc(&call, &cfg, &firewall).map(|_| None),
        Command::Status => status(&call, &cfg).map(|_| None),
        Command::Version => Ok(None),
    }
}

/// The rules an attachment of this config gets.
fn firewall_rules(cfg: &Config) -> fw::Wanted {
    fw::Wanted::new(cfg.layer3, cfg.br.ip_masq, cfg.br.macspoofchk)
}

fn owner(call: &Call<'_>, cfg: &Config) -> Owner {
    Owner {
        network: cfg.conf.name.clone(),
        container_id: call.env.container_id.clone(),
        ifname: call.env.ifname.clone(),
    }
}

fn random_veth_name() -> String {
    format!("veth{}", random_hex8())
}

/// The name a retired container link carries until the kernel has deleted it.
fn grave_name() -> String {
    format!("oxdel{}", random_hex8())
}

fn random_hex8() -> String {
    let mut b = [0u8; 4];
    // SAFETY: getrandom writes at most b.len() bytes into a valid buffer.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        b = (t ^ std::process::id()).to_ne_bytes();
    }
    format!("{:02x}{:02x}{:02x}{:02x}", b[0], b[1], b[2], b[3])
}

/// Undo actions for a failed ADD, run in reverse.
#[derive(Default)]
struct Undo {
    bridge: Option<u32>,
    host_veth: Option<u32>,
    ipam: bool,
    firewall: bool,
}

/// Where the IPAM allocation of an ADD runs: in-process types on the namespace thread,
/// exec'd plugins on a thread of their own that stays in the host's namespace (a plugin
/// started from the container's namespace would inherit it).
enum IpamJob<'s> {
    Thread(std::thread::ScopedJoinHandle<'s, IpamOutcome>),
    Worker(mpsc::Receiver<IpamOutcome>),
}

type IpamOutcome = Result<Option<CniResult>>;

/// What the namespace thread hands over.
struct WorkerReport {
    /// A netlink socket in the container's namespace.
    cont: Result<Handle, oxivirt_netlink::Error>,
    /// The host's namespace, for the main thread's visits to the container's.
    host_ns: Option<NetNs>,
    /// The bridge's `accept_ra`, opened in the host's namespace (a sysctl file belongs to
    /// the namespace it was opened in), to be set to 0 once the bridge is confirmed: we own
    /// its routes, router advertisements do not.
    accept_ra: Option<sysctl::Sysctl>,
}

/// Work running beside the main thread during ADD: one thread runs an in-process IPAM
/// allocation, opens what the main thread needs from the host's namespace, enters the
/// container's and opens the netlink socket there. It asks nothing of the kernel's rtnl
/// lock, which the main thread's veth creation holds, so it is normally done before the
/// main thread needs its results; the main thread hands it nothing back (a cross-CPU
/// wake-up costs tens of microseconds in a virtual machine).
struct Helpers<'s> {
    ipam: Option<IpamJob<'s>>,
    cont: mpsc::Receiver<WorkerReport>,
}

impl Helpers<'_> {
    fn ipam_result(&mut self, undo: &mut Undo) -> IpamOutcome {
        let lost = || Error::IpamResult("IPAM thread ended without a result".into());
        let r = match self.ipam.take() {
            None => return Ok(None),
            Some(IpamJob::Thread(job)) => job.join().unwrap_or_else(|_| Err(lost())),
            Some(IpamJob::Worker(rx)) => rx.recv().unwrap_or_else(|_| Err(lost())),
        };
        if r.is_ok() {
            undo.ipam = true;
        }
        r
    }
}

fn add(call: &Call<'_>, cfg: &Config, firewall: &dyn Firewall) -> Result<CniResult> {
    let ns = iface::open_netns(call)?;
    let mut host = Handle::new()?;
    std::thread::scope(|s| {
        let in_process = ipam::in_process(&cfg.conf);
        let (ipam_tx, ipam_rx) = mpsc::channel();
        let ipam = match (cfg.layer3, in_process) {
            (false, _) => None,
            (true, true) => Some(IpamJob::Worker(ipam_rx)),
            (true, false) => {
                Some(IpamJob::Thread(s.spawn(|| {
                    Ok(ipam::delegate(call, &cfg.conf, Command::Add)?)
                })))
            }
        };
        let ipam_here = cfg.layer3 && in_process;
        let (cont_tx, cont_rx) = mpsc::channel();
        let (nsref, bridge, layer3) = (&ns, cfg.br.bridge.as_str(), cfg.layer3);
        std::thread::Builder::new()
            .stack_size(oxivirt_netlink::netns::NS_THREAD_STACK)
            .spawn_scoped(s, move || {
                if ipam_here {
                    let ipam = ipam::delegate(call, &cfg.conf, Command::Add).map_err(Error::from);
                    // The receiver is gone only if the main thread already failed.
                    let _ = ipam_tx.send(ipam);
                }
                let accept_ra = sysctl::open_for_write(&accept_ra_key(bridge)).ok();
                // Only layer-3 configs visit the container's namespace (for its sysctls).
                let host_ns = layer3.then(NetNs::current).and_then(Result::ok);
                let cont = nsref.enter_current_thread().and_then(|()| Handle::new());
                let _ = cont_tx.send(WorkerReport {
                    cont,
                    host_ns,
                    accept_ra,
                });
            })
            .map_err(|e| Error::Thread {
                what: "failed to start the namespace thread",
                source: Some(e),
            })?;
        let mut helpers = Helpers {
            ipam,
            cont: cont_rx,
        };
        let mut undo = Undo::default();
        match add_inner(call, cfg, firewall, &ns, &mut host, &mut helpers, &mut undo) {
            Ok(r) => Ok(r),
            Err(error) => {
                // The allocation may have succeeded while the links failed; its own failure
                // is the error already reported, or a consequence of it.
                let _ = helpers.ipam_result(&mut undo);
                let mut cleanup: Vec<Error> = Vec::new();
                cleanup.extend(
                    fw::rollback(firewall, &owner(call, cfg), undo.firewall)
                        .err()
                        .map(Error::from),
                );
                if undo.ipam {
                    cleanup.extend(
                        ipam::delegate(call, &cfg.conf, Command::Del)
                            .err()
                            .map(Error::from),
                    );
                }
                for link in [undo.host_veth, undo.bridge].into_iter().flatten() {
                    cleanup.extend(host.del_link(link).err().map(Error::from));
                }
                Err(Error::with_cleanup(error, cleanup))
            }
        }
    })
}

/// What an ioctl look-up tells of a link (its kind and ports are not known from it).
fn link_from(name: &str, i: &IfInfo) -> Link {
    Link {
        index: i.index,
        name: name.to_string(),
        mac: Some(i.mac),
        mtu: i.mtu,
        up: i.up,
        promisc: i.promisc,
        ..Default::default()
    }
}

fn ensure_bridge(host: &mut Handle, cfg: &Config, undo: &mut Undo) -> Result<Link> {
    let name = cfg.br.bridge.as_str();
    let vlan_filtering = cfg.br.vlan != 0 || cfg.br.vlan_trunk.is_some();
    // An existing bridge is looked up by ioctl (cheap); that it really is a bridge is
    // checked once the veth has joined it (see `add_inner`).
    let br = match host.if_info(name)? {
        Some(i) => Link {
            kind: Some("bridge".into()),
            ..link_from(name, &i)
        },
        None => {
            match host.add_bridge(&BridgeOptions {
                name,
                mtu: cfg.mtu,
                vlan_filtering,
            }) {
                Ok(()) => {}
                Err(e) if e.is_exists() => {}
                Err(e) => {
                    return Err(Error::from(e).context(format!("failed to create bridge {name:?}")))
                }
            }
            let l = host.require_link(name)?;
            undo.bridge = Some(l.index);
            if l.kind.as_deref() != Some("bridge") {
                return Err(not_a_bridge(name));
            }
            l
        }
    };
    if cfg.br.promisc_mode && !br.promisc {
        host.set_promisc(br.index, true)?;
    }
    if undo.bridge.is_some() {
        // An existing bridge gets this from the namespace thread, off the critical path.
        // Best effort, as the reference: a node with IPv6 disabled has no such switch.
        let _ = sysctl::write(&accept_ra_key(name), "0");
    }
    if !br.up {
        host.set_up(br.index, true)?;
    }
    Ok(br)
}

/// The bridge's `accept_ra`, set to 0: we own its routes, router advertisements do not.
fn accept_ra_key(bridge: &str) -> [&str; 5] {
    ["net", "ipv6", "conf", bridge, "accept_ra"]
}

fn name_taken_in_container(helpers: &Helpers<'_>, ifname: &str) -> bool {
    let Ok(WorkerReport {
        cont: Ok(mut cont), ..
    }) = helpers.cont.recv()
    else {
        return false;
    };
    cont.link_by_name(ifname).ok().flatten().is_some()
}

fn not_a_bridge(name: &str) -> Error {
    Error::config(format!("{name:?} already exists but is not a bridge"))
}

/// Puts `gw` on the bridge; another IPv4 address (or an overlapping IPv6 one) is an
/// error unless `forceAddress`, as in the reference.
/// Returns the bridge MAC if it pinned it.
fn ensure_addr(host: &mut Handle, br: &Link, gw: IpNet, force: bool) -> Result<Option<[u8; 6]>> {
    let addrs = host.addresses(Some(br.index))?;
    for a in addrs
        .iter()
        .filter(|a| a.addr.addr().is_ipv4() == gw.addr().is_ipv4())
    {
        if a.addr == gw {
            return Ok(None);
        }
        if a.addr.addr().is_link_local_v6() {
            continue;
        }
        if gw.addr().is_ipv4() || a.addr.contains(&gw.addr()) || gw.contains(&a.addr.addr()) {
            if force {
                host.del_address(br.index, a.addr)?;
            } else {
                return Err(Error::config(format!(
                    "{:?} already has an IP address different from {gw}",
                    br.name
                )));
            }
        }
    }
    match host.add_address(br.index, gw, false) {
        Ok(()) => {}
        Err(e) if e.is_exists() => {}
        Err(e) => return Err(e.into()),
    }
    // Pin the bridge MAC so it does not follow the lowest port MAC as ports churn.
    let mac = br.mac.filter(|m| m.iter().any(|b| *b != 0));
    if let Some(mac) = mac {
        host.set_mac(br.index, mac)?;
    }
    Ok(mac)
}

trait LinkLocal {
    fn is_link_local_v6(&self) -> bool;
}

impl LinkLocal for IpAddr {
    fn is_link_local_v6(&self) -> bool {
        matches!(self, IpAddr::V6(v) if (v.segments()[0] & 0xffc0) == 0xfe80)
    }
}

fn add_inner(
    call: &Call<'_>,
    cfg: &Config,
    firewall: &dyn Firewall,
    ns: &NetNs,
    host: &mut Handle,
    helpers: &mut Helpers<'_>,
    undo: &mut Undo,
) -> Result<CniResult> {
    let ifname = call.env.ifname.as_str();
    let br = ensure_bridge(host, cfg, undo)?;
    mark("bridge ready");
    let veth_name = random_veth_name();
    let veth = match host.add_veth(&VethOptions {
        name: &veth_name,
        peer_name: ifname,
        mtu: cfg.mtu,
        peer_mac: cfg.mac,
        peer_netns: Some(ns.fd()),
        master: Some(br.index),
        up: true,
    }) {
        Ok(v) => v,
        // Only now tell the likely cause apart: checking first would cost every ADD.
        Err(e) if e.is_exists() && name_taken_in_container(helpers, ifname) => {
            return Err(Error::IfnameTaken(ifname.to_string()))
        }
        Err(e) => {
            let kind = host
                .link_by_index(br.index)
                .ok()
                .flatten()
                .and_then(|l| l.kind);
            if kind.as_deref() != Some("bridge") {
                return Err(not_a_bridge(&br.name));
            }
            return Err(Error::from(e).context(format!(
                "failed to create veth pair {veth_name}/{ifname} on bridge {:?}",
                br.name
            )));
        }
    };
    undo.host_veth = Some(veth.index);
    // The veth joined its master in the same request. One look at the master tells that it
    // really is a bridge (a bond or a VRF takes ports too) and gives its MAC, which follows
    // the lowest port MAC unless one was set.
    let br_after_port = match host.link_by_index(br.index)? {
        Some(l) if l.kind.as_deref() == Some("bridge") => Link {
            mac: l.mac,
            ..br.clone()
        },
        _ => return Err(not_a_bridge(&br.name)),
    };
    let report = helpers.cont.recv().map_err(|_| Error::Thread {
        what: "the container namespace thread ended without a report",
        source: None,
    })?;
    let mut cont = report.cont?;
    if let (None, Some(f)) = (undo.bridge, report.accept_ra) {
        // A bridge made by this call got it at creation. Best effort, as above.
        let _ = sysctl::write_to(f, "0");
    }
    mark("veth created");
    let port_opts = BridgePortOptions {
        hairpin: cfg.br.hairpin_mode.then_some(true),
        isolated: cfg.br.port_isolation.then_some(true),
        ..Default::default()
    };
    host.set_port_options(veth.index, &port_opts)?;
    if (cfg.br.vlan != 0 || !cfg.vlans.is_empty()) && !cfg.br.preserve_default_vlan {
        for vlan in host.bridge_vlans(veth.index)? {
            host.del_bridge_vlan(veth.index, vlan.vid)?;
        }
    }
    if cfg.br.vlan != 0 {
        let tag = BridgeVlan {
            vid: cfg.br.vlan as u16,
            pvid: true,
            untagged: true,
        };
        host.add_bridge_vlan(veth.index, &tag).map_err(|e| {
            Error::from(e).context(format!("failed to set vlan tag on {veth_name:?}"))
        })?;
    }
    for vid in &cfg.vlans {
        let trunk = BridgeVlan {
            vid: *vid,
            ..Default::default()
        };
        host.add_bridge_vlan(veth.index, &trunk).map_err(|e| {
            Error::from(e).context(format!("failed to set trunk vlan on {veth_name:?}"))
        })?;
    }
    let mut gateway_mac = None;

    let cont_link = match cont.if_info(ifname)? {
        Some(i) => link_from(ifname, &i),
        None => cont.require_link(ifname)?,
    };
    let mut result = CniResult::default();
    if cfg.layer3 {
        let r = iface::ipam_addresses(helpers.ipam_result(undo)?)?;
        mark("IPAM done");
        result.ips = r.ips;
        result.routes = r.routes;
        result.dns = r.dns;
        let is_gw = cfg.br.is_gateway || cfg.br.is_default_gateway;
        let mut gateways: Vec<IpNet> = Vec::new();
        let mut default_v4 = result
            .routes
            .iter()
            .any(|r| r.gw.is_some() && r.dst.prefix_len() == 0 && r.dst.addr().is_ipv4());
        let mut default_v6 = result
            .routes
            .iter()
            .any(|r| r.gw.is_some() && r.dst.prefix_len() == 0 && r.dst.addr().is_ipv6());
        let mut extra_routes = Vec::new();
        for ip in result.ips.iter_mut() {
            ip.interface = Some(2);
            if ip.gateway.is_none() && is_gw {
                let net = ip.address.trunc();
                ip.gateway = net.hosts().next().or(Some(net.addr()));
            }
            let v4 = ip.address.addr().is_ipv4();
            if cfg.br.is_default_gateway {
                let found = if v4 { &mut default_v4 } else { &mut default_v6 };
                if !*found {
                    let dst = if v4 {
                        IpNet::V4(ipnet::Ipv4Net::default())
                    } else {
                        IpNet::V6(ipnet::Ipv6Net::default())
                    };
                    extra_routes.push(Route::new(dst, ip.gateway));
                    *found = true;
                }
            }
            if is_gw {
                if let Some(gw) = ip.gateway {
                    if let Ok(n) = IpNet::new(gw, ip.address.prefix_len()) {
                        gateways.push(n);
                    }
                }
            }
        }
        result.routes.extend(extra_routes);
        // Before the link comes up and gets its link-local address.
        let (ifname, enable_dad) = (call.env.ifname.as_str(), cfg.br.enabledad);
        match &report.host_ns {
            Some(home) => ns.visit(home, || iface::write_container_sysctls(ifname, enable_dad)),
            None => ns.run(|| iface::write_container_sysctls(ifname, enable_dad)),
        }?;
        iface::configure(&mut cont, cont_link.index, &result, 2, !cfg.br.enabledad)?;
        mark("container configured");
        for gw in &gateways {
            gateway_mac = ensure_addr(host, &br_after_port, *gw, cfg.br.force_address)
                .map_err(|e| e.context(format!("failed to set bridge address {gw}")))?;
        }
        if gateways.iter().any(|g| g.addr().is_ipv4()) {
            sysctl::write(&["net", "ipv4", "ip_forward"], "1")?;
        }
        if gateways.iter().any(|g| g.addr().is_ipv6()) {
            sysctl::write(&["net", "ipv6", "conf", "all", "forwarding"], "1")?;
        }
    } else if !cfg.br.disable_container_interface {
        cont.set_up(cont_link.index, true)?;
    }
    let wanted = firewall_rules(cfg);
    if wanted.any() {
        let addrs: Vec<IpNet> = result.ips.iter().map(|i| i.address).collect();
        let attachment = fw::Attachment {
            owner: &owner(call, cfg),
            addrs: &addrs,
            host_if: &veth_name,
            mac: &cont_link.mac_string(),
        };
        fw::add(firewall, wanted, &attachment, &mut undo.firewall)?;
    }

    let br_mac = gateway_mac
        .or(br_after_port.mac)
        .map(|m| format_mac(&m))
        .unwrap_or_default();
    result.interfaces = vec![
        Interface {
            name: br_after_port.name.clone(),
            mac: br_mac,
            ..Default::default()
        },
        Interface {
            name: veth.name.clone(),
            mac: veth.mac_string(),
            ..Default::default()
        },
        iface::container_interface(&cont_link, ns),
    ];
    iface::apply_conf_dns(&mut result, &cfg.conf);
    Ok(result)
}

fn del(call: &Call<'_>, cfg: &Config, firewall: &dyn Firewall) -> Result<()> {
    std::thread::scope(|s| {
        // The allocation is released while the kernel tears the veth down.
        let ipam = cfg
            .layer3
            .then(|| s.spawn(|| Ok(ipam::delegate(call, &cfg.conf, Command::Del)?)));
        let links = iface::remove_container_link(call, Some(&grave_name()));
        mark("container link deleted");
        let ipam: Result<Option<CniResult>> = ipam
            .map(|j| {
                j.join()
                    .unwrap_or_else(|_| Err(Error::IpamResult("IPAM thread panicked".into())))
            })
            .unwrap_or(Ok(None));
        // Every step runs whatever the others did; all failures are reported.
        let mut failed: Vec<Error> = links.err().into_iter().collect();
        failed.extend(ipam.err());
        failed.extend(
            fw::del(firewall, firewall_rules(cfg), &owner(call, cfg))
                .err()
                .map(Error::from),
        );
        Error::collect(failed)
    })
}

fn mismatch(msg: String) -> Error {
    Error::CheckMismatch(msg)
}

fn check(call: &Call<'_>, cfg: &Config) -> Result<()> {
    let ns = iface::open_netns(call)?;
    if cfg.layer3 {
        ipam::delegate(call, &cfg.conf, Command::Check)?;
    }
    let prev = oxivirt_cni_spec::plugin::prev_result(&cfg.conf)?;
    let netns = ns.path().display().to_string();
    let in_prev = |name: &str, sandbox: Option<&str>, what: String| {
        prev.interfaces
            .iter()
            .find(|i| i.name == name && sandbox.is_none_or(|s| i.sandbox == s))
            .ok_or_else(|| mismatch(format!("{what} is not in prevResult")))
    };
    let br_if = in_prev(&cfg.br.bridge, None, format!("bridge {}", cfg.br.bridge))?;
    let cont_if = in_prev(
        &call.env.ifname,
        Some(&netns),
        format!("interface {} in {netns}", call.env.ifname),
    )?;
    let mut host = Handle::new()?;
    let br = host
        .link_by_name(&cfg.br.bridge)?
        .ok_or_else(|| mismatch(format!("bridge {} not found", cfg.br.bridge)))?;
    if br.kind.as_deref() != Some("bridge") {
        return Err(mismatch(format!("{} is not a bridge", br.name)));
    }
    iface::check_mac(&format!("bridge {}", br.name), &br, &br_if.mac)?;
    if br.promisc != cfg.br.promisc_mode {
        return Err(mismatch(format!(
            "bridge {} promiscuous mode is {}, config says {}",
            br.name, br.promisc, cfg.br.promisc_mode
        )));
    }
    let mut cont = Handle::in_netns(&ns)?;
    let c = cont.link_by_name(&call.env.ifname)?.ok_or_else(|| {
        mismatch(format!(
            "interface {} not found in {netns}",
            call.env.ifname
        ))
    })?;
    if c.kind.as_deref() != Some("veth") {
        return Err(mismatch(format!(
            "container interface {} is not a veth",
            c.name
        )));
    }
    iface::check_mac(&format!("container interface {}", c.name), &c, &cont_if.mac)?;
    let peer = c
        .peer_index
        .ok_or_else(|| mismatch(format!("{} has no veth peer", c.name)))?;
    let veth_ok = prev
        .interfaces
        .iter()
        .filter(|i| i.sandbox.is_empty() && i.name != br.name)
        .filter_map(|i| host.link_by_name(&i.name).ok().flatten())
        .any(|l| l.index == peer && l.master == Some(br.index) && l.peer_index == Some(c.index));
    if !veth_ok {
        return Err(mismatch(format!(
            "the host veth of {} attached to bridge {} was not found",
            c.name, br.name
        )));
    }
    iface::validate(&mut cont, c.index, &c.name, &prev, 2)
}

fn gc(call: &Call<'_>, cfg: &Config, firewall: &dyn Firewall) -> Result<()> {
    if cfg.layer3 {
        ipam::delegate(call, &cfg.conf, Command::Gc)?;
    }
    if cfg.br.macspoofchk || cfg.br.ip_masq {
        let valid = ipam::valid_attachments(call.stdin)?;
        fw::gc(firewall, &cfg.conf.name, &valid)?;
    }
    Ok(())
}

fn status(call: &Call<'_>, cfg: &Config) -> Result<()> {
    if cfg.layer3 {
        ipam::delegate(call, &cfg.conf, Command::Status)?;
    }
    Ok(())
}
