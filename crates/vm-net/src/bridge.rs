//! The bridge binding: the pod interface becomes a port of `k6t-<hash>` (renamed
//! `<hash>-nic`), a tap for the VM joins the bridge, and the VM takes over the pod
//! interface's MAC and address (served to it by DHCP). A dummy (an ifb link where the
//! kernel has no dummy driver) keeps the pod's CNI view: name, MAC, MTU, address.
//!
//! All functions run on a thread inside the pod's namespace with a handle opened there.
//! Setup records what it found before changing anything, so a run after a crash half-way
//! picks up where it stopped; teardown puts the pod interface back and is safe twice.

use crate::naming::Names;
use crate::{links, Error, Result};
use ipnet::{IpNet, Ipv4Net};
use oxivirt_netlink::{sysctl, BridgePortOptions, Handle, RouteSpec};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct BridgeSpec {
    pub names: Names,
    /// 1-based position among the VM's bridge-bound interfaces: the bridge gets
    /// 169.254.75.1<index>/32.
    pub index: u32,
    /// `macAddress` of the VM interface, if set.
    pub mac: Option<[u8; 6]>,
    pub multiqueue: bool,
}

/// What the pod interface had, and what the VM gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeState {
    pub pod_mac: [u8; 6],
    pub vm_mac: [u8; 6],
    pub mtu: u32,
    pub address: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    pub routes: Vec<(Ipv4Net, Ipv4Addr)>,
    /// Whether the placeholder with the pod's CNI view exists (a dummy, or an ifb link on
    /// kernels without the dummy driver; neither where the kernel has neither).
    pub dummy: bool,
}

fn state_path(dir: &Path, names: &Names) -> PathBuf {
    dir.join(format!("{}.json", names.bridge))
}

fn state_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::State {
        path: path.to_path_buf(),
        source,
    }
}

/// Records the pod interface, once.
fn record(nl: &mut Handle, spec: &BridgeSpec, dir: &Path) -> Result<BridgeState> {
    let path = state_path(dir, &spec.names);
    if let Ok(bytes) = std::fs::read(&path) {
        if let Ok(s) = serde_json::from_slice(&bytes) {
            return Ok(s);
        }
    }
    let pod = nl
        .link_by_name(&spec.names.pod)?
        .ok_or_else(|| Error::PodInterface {
            name: spec.names.pod.clone(),
            reason: "does not exist",
        })?;
    let pod_mac = pod.mac.ok_or_else(|| Error::PodInterface {
        name: spec.names.pod.clone(),
        reason: "has no MAC address",
    })?;
    let address = nl
        .addresses(Some(pod.index))?
        .into_iter()
        .find_map(|a| match a.addr {
            IpNet::V4(v4) if !v4.addr().is_link_local() => Some(v4),
            _ => None,
        });
    let mut gateway = None;
    let mut routes = Vec::new();
    for r in nl.routes()? {
        if r.oif != Some(pod.index) || r.table != 254 {
            continue;
        }
        match (r.dst, r.gateway) {
            (IpNet::V4(d), Some(IpAddr::V4(gw))) if d.prefix_len() == 0 => gateway = Some(gw),
            (IpNet::V4(d), Some(IpAddr::V4(gw))) => routes.push((d, gw)),
            _ => {}
        }
    }
    let state = BridgeState {
        pod_mac,
        vm_mac: spec.mac.unwrap_or(pod_mac),
        mtu: pod.mtu,
        address,
        gateway,
        routes,
        dummy: false,
    };
    save(dir, &spec.names, &state)?;
    Ok(state)
}

fn save(dir: &Path, names: &Names, state: &BridgeState) -> Result<()> {
    let path = state_path(dir, names);
    std::fs::create_dir_all(dir).map_err(state_err(dir))?;
    let bytes = serde_json::to_vec(state).map_err(|e| state_err(&path)(e.into()))?;
    std::fs::write(&path, bytes).map_err(state_err(&path))
}

/// Sets the binding up (or finishes a setup that stopped half-way).
pub fn setup(nl: &mut Handle, spec: &BridgeSpec, state_dir: &Path) -> Result<BridgeState> {
    let n = &spec.names;
    let mut state = record(nl, spec, state_dir)?;
    let br = links::bridge(nl, &n.bridge, state.mtu)?;
    nl.set_up(br.index, true)?;
    let link_local = IpNet::new(
        IpAddr::V4(Ipv4Addr::new(169, 254, 75, 10 + spec.index as u8)),
        32,
    )
    .map_err(|source| Error::Network {
        field: "the bridge's link-local address",
        source,
    })?;
    links::add_address(nl, br.index, link_local)?;
    sysctl::ensure(&["net", "ipv4", "conf", &n.bridge, "arp_ignore"], "1")?;

    // The pod interface becomes the bridge's uplink port.
    if nl.link_by_name(&n.nic)?.is_none() {
        let pod = nl.require_link(&n.pod)?;
        nl.set_up(pod.index, false)?;
        for a in nl.addresses(Some(pod.index))? {
            match nl.del_address(pod.index, a.addr) {
                Err(e) if !e.is_not_found() => return Err(e.into()),
                _ => {}
            }
        }
        nl.set_name(pod.index, &n.nic)?;
    }
    let nic = nl.require_link(&n.nic)?;
    if let Some(mac) = br.mac {
        nl.set_mac(nic.index, mac)?;
    }
    nl.set_master(nic.index, br.index)?;
    let no_learning = BridgePortOptions {
        learning: Some(false),
        ..Default::default()
    };
    nl.set_port_options(nic.index, &no_learning)?;
    nl.set_up(nic.index, true)?;

    links::tap_on_bridge(nl, &n.tap, spec.multiqueue, state.mtu, br.index)?;

    // The pod keeps its CNI view: a link with the original name, MAC, MTU and address, left
    // down (KubeVirt's dummy). A kernel without the dummy driver gets an ifb link, which is
    // the same while down: no ARP, no traffic. (Where either driver is a module, loading it
    // also makes its default links, dummy0 or ifb0/ifb1, in the host's namespace, as
    // KubeVirt's dummy does.)
    if nl.link_by_name(&n.pod)?.is_none() {
        let unsupported = |e: &oxivirt_netlink::Error| {
            matches!(e.errno(), Some(libc::EOPNOTSUPP) | Some(libc::EINVAL))
        };
        let made = match nl.add_dummy(&n.pod, state.pod_mac, state.mtu) {
            Err(e) if unsupported(&e) => nl.add_ifb(&n.pod, state.pod_mac, state.mtu),
            other => other,
        };
        match made {
            Ok(()) => {
                let d = nl.require_link(&n.pod)?;
                if let Some(a) = state.address {
                    links::add_address(nl, d.index, IpNet::V4(a))?;
                }
                state.dummy = true;
            }
            // Neither driver in this kernel: the address lives on in the state only.
            Err(e) if unsupported(&e) => state.dummy = false,
            Err(e) => return Err(e.into()),
        }
    } else {
        state.dummy = true;
    }
    save(state_dir, n, &state)?;
    Ok(state)
}

/// Removes what setup made (see [`crate::teardown_all`]) and gives the pod interface back
/// its name, MAC and address.
pub fn teardown(nl: &mut Handle, names: &Names, state_dir: &Path) -> Result<()> {
    crate::teardown_all(nl, None, std::slice::from_ref(names), state_dir)
}

/// [`teardown`] without the final deletion: puts the pod interface back and returns the
/// links to delete, so a caller can delete those of several bindings in one batch.
pub fn restore(nl: &mut Handle, names: &Names, state_dir: &Path) -> Result<Vec<u32>> {
    let state: Option<BridgeState> = std::fs::read(state_path(state_dir, names))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let gone = |r: oxivirt_netlink::Result<()>| match r {
        Err(e) if !e.is_not_found() => Err(Error::from(e)),
        _ => Ok(()),
    };
    // The tap, the dummy and the bridge go in one batch, after the pod interface is back.
    let mut doomed = Vec::new();
    if let Some(t) = nl.link_by_name(&names.tap)? {
        doomed.push(t.index);
    }
    if state.as_ref().is_some_and(|s| s.dummy) {
        if let Some(d) = nl.link_by_name(&names.pod)? {
            if matches!(d.kind.as_deref(), Some("dummy" | "ifb")) {
                // Its name must be free before the nic takes it back: renamed at once,
                // deleted with the rest of the batch.
                gone(nl.set_name(d.index, &crate::grave_name()))?;
                doomed.push(d.index);
            }
        }
    }
    if let Some(nic) = nl.link_by_name(&names.nic)? {
        nl.set_up(nic.index, false)?;
        nl.set_name(nic.index, &names.pod)?;
        if let Some(s) = &state {
            nl.set_mac(nic.index, s.pod_mac)?;
            if let Some(a) = s.address {
                links::add_address(nl, nic.index, IpNet::V4(a))?;
            }
        }
        nl.set_up(nic.index, true)?;
        if let Some(gw) = state.as_ref().and_then(|s| s.gateway) {
            let back = nl.add_route(&RouteSpec {
                gateway: Some(IpAddr::V4(gw)),
                oif: Some(nic.index),
                ..Default::default()
            });
            match back {
                Err(e) if !e.is_exists() => return Err(e.into()),
                _ => {}
            }
        }
    }
    if let Some(b) = nl.link_by_name(&names.bridge)? {
        doomed.push(b.index);
    }
    let path = state_path(state_dir, names);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(state_err(&path)(e)),
        _ => Ok(doomed),
    }
}

impl BridgeState {
    /// The DHCP lease the VM gets on this network, if the pod interface had an address.
    pub fn lease(
        &self,
        server_id: Ipv4Addr,
        dns: Vec<Ipv4Addr>,
        search: Vec<String>,
        hostname: Option<String>,
    ) -> Option<oxivirt_dhcp::Lease> {
        let a = self.address?;
        Some(oxivirt_dhcp::Lease {
            client_mac: self.vm_mac,
            address: a.addr(),
            prefix: a.prefix_len(),
            router: self.gateway,
            dns,
            hostname,
            domain: None,
            search,
            mtu: u16::try_from(self.mtu).ok(),
            routes: self.routes.clone(),
            server_id,
            lease_secs: 86_400 * 365,
            extra: Vec::new(),
        })
    }
}
