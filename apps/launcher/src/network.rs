//! The pod's side of the VM: the bindings that turn the pod's CNI interfaces into taps for
//! QEMU (masquerade on the pod network, bridge on Multus networks), the DHCP servers that
//! hand the guest its addresses for its whole life, and the teardown that puts the pod's
//! interfaces back as CNI left them. Everything here runs inside the pod's namespace.

use oxivirt_dhcp::v6::{Lease6, Server6};
use oxivirt_dhcp::{Lease, Server};
use oxivirt_firewall::NftCli;
use oxivirt_netlink::{Handle, NetNs};
use oxivirt_vm_net::bridge::{self as bridge_binding, BridgeSpec};
use oxivirt_vm_net::masquerade::{self, MasqueradeSpec, Port};
use oxivirt_vm_net::naming::{self, Names};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// How one VMI interface reaches its network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// The pod network behind NAT (`k6t-eth0`, `tap0`); `v6` is used only when the pod
    /// has IPv6.
    Masquerade {
        v4: ipnet::Ipv4Net,
        v6: Option<ipnet::Ipv6Net>,
        ports: Vec<Port>,
    },
    /// A Multus network bridged to the guest (`k6t-<hash>`, `tap<hash>`); `ordinal` is the
    /// network's 1-based place among the Multus networks (older pods name it `net<n>`).
    Bridge { ordinal: usize },
}

/// One VMI interface to wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicPlan {
    /// The interface's (and its network's) name in the VMI.
    pub name: String,
    pub binding: Binding,
    /// `macAddress` from the VMI; the bridge binding otherwise gives the guest the pod
    /// interface's MAC, masquerade a generated one.
    pub mac: Option<[u8; 6]>,
    pub multiqueue: bool,
}

/// What QEMU needs of a wired interface, and what the VMI status reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestNic {
    pub name: String,
    pub tap: String,
    pub mac: [u8; 6],
    /// The address the guest gets by DHCP (with its prefix), if any.
    pub address: Option<String>,
    /// Its name in the guest, by order (`eth0`, `eth1`, …).
    pub interface_name: String,
}

/// Errors of the pod side.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("pod network namespace")]
    Netns(#[source] oxivirt_netlink::Error),
    #[error("interface {name}")]
    Binding {
        name: String,
        #[source]
        source: oxivirt_vm_net::Error,
    },
    #[error("interface {0}: the pod interface has no IPv4 address to hand to the guest")]
    NoAddress(String),
    #[error("failed to start a DHCP server thread")]
    Thread(#[source] std::io::Error),
    #[error("tearing down the pod's interfaces")]
    Teardown(#[source] oxivirt_vm_net::Error),
    /// Setting up failed and so did undoing it.
    #[error("{error}; undoing it failed too: {}", oxivirt_cni_spec::error::chain(&**cleanup))]
    Rollback {
        #[source]
        error: Box<Error>,
        cleanup: Box<Error>,
    },
}

/// The VM's interfaces in the pod, set up and served; [`PodNetwork::teardown`] puts the
/// pod back.
#[derive(Debug)]
pub struct PodNetwork {
    netns: PathBuf,
    state_dir: PathBuf,
    nics: Vec<GuestNic>,
    masquerade: bool,
    bridges: Vec<Names>,
    stop: Arc<AtomicBool>,
    servers: Vec<JoinHandle<Result<(), oxivirt_dhcp::Error>>>,
    leases: Leases,
}

/// When the guest first took its DHCPv4 lease on each interface. The DHCP threads only
/// note the time and wake the reporter (a status write must not hold up the ACK); the
/// reporter hands the times on, including those noted before it was wired.
#[derive(Debug, Default)]
struct Leases {
    /// Per entry of `nics`.
    at: Arc<Mutex<Vec<Option<SystemTime>>>>,
    /// Cloned into each DHCP thread; dropped at teardown so the reporter ends.
    wake: Option<Sender<()>>,
    woken: Option<Receiver<()>>,
    reporter: Option<JoinHandle<()>>,
}

impl Leases {
    fn new(nics: usize) -> Self {
        let (wake, woken) = mpsc::channel();
        Self {
            at: Arc::new(Mutex::new(vec![None; nics])),
            wake: Some(wake),
            woken: Some(woken),
            reporter: None,
        }
    }

    /// Stops the reporter once the DHCP threads (the other senders) are gone.
    fn finish(&mut self) {
        self.wake = None;
        self.woken = None;
        if let Some(r) = self.reporter.take() {
            let _ = r.join();
        }
    }
}

/// A MAC as libvirt generates one for a guest (`52:54:00:xx:xx:xx`).
pub fn generated_mac() -> [u8; 6] {
    let mut b = [0u8; 3];
    // SAFETY: getrandom writes at most b.len() bytes into a valid buffer.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
            ^ std::process::id();
        b.copy_from_slice(&t.to_ne_bytes()[..3]);
    }
    [0x52, 0x54, 0x00, b[0], b[1], b[2]]
}

/// What the guest learns about its name and resolvers.
#[derive(Debug, Clone, Default)]
pub struct GuestIdentity {
    pub hostname: String,
    pub dns4: Vec<Ipv4Addr>,
    pub dns6: Vec<Ipv6Addr>,
    pub search: Vec<String>,
}

impl PodNetwork {
    /// Wires every planned interface in the pod at `netns` (the masquerade ruleset loads
    /// while the bridge bindings are made) and starts the DHCP servers.
    pub fn setup(
        netns: &Path,
        state_dir: &Path,
        plan: &[NicPlan],
        who: &GuestIdentity,
    ) -> Result<Self, Error> {
        let ns = NetNs::open(netns).map_err(Error::Netns)?;
        let wired = match ns
            .run(|| wire(plan, state_dir, who))
            .map_err(Error::Netns)?
        {
            Ok(w) => w,
            Err(error) => {
                // Whatever got made goes: every planned binding is taken down (teardown
                // leaves alone what was never set up).
                let mut undo = Self {
                    netns: netns.to_path_buf(),
                    state_dir: state_dir.to_path_buf(),
                    nics: Vec::new(),
                    masquerade: plan
                        .iter()
                        .any(|n| matches!(n.binding, Binding::Masquerade { .. })),
                    bridges: plan
                        .iter()
                        .filter(|n| matches!(n.binding, Binding::Bridge { .. }))
                        .map(|n| Names::secondary(&n.name))
                        .collect(),
                    stop: Arc::new(AtomicBool::new(false)),
                    servers: Vec::new(),
                    leases: Leases::default(),
                };
                return Err(match undo.teardown() {
                    Ok(()) => error,
                    Err(cleanup) => Error::Rollback {
                        error: Box::new(error),
                        cleanup: Box::new(cleanup),
                    },
                });
            }
        };
        let mut net = Self {
            netns: netns.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            leases: Leases::new(wired.nics.len()),
            nics: wired.nics,
            masquerade: wired.masquerade,
            bridges: wired.bridges,
            stop: Arc::new(AtomicBool::new(false)),
            servers: Vec::new(),
        };
        for serve in wired.servers {
            if let Err(error) = net.spawn(serve) {
                return Err(match net.teardown() {
                    Ok(()) => error,
                    Err(cleanup) => Error::Rollback {
                        error: Box::new(error),
                        cleanup: Box::new(cleanup),
                    },
                });
            }
        }
        Ok(net)
    }

    pub fn nics(&self) -> &[GuestNic] {
        &self.nics
    }

    /// Calls `report(interface name, time)` once per interface, on a thread of its own,
    /// when the guest's DHCPv4 lease on it is first acknowledged (also for what was
    /// acknowledged before this was called). Only the first call wires anything; the
    /// thread ends at [`PodNetwork::teardown`]. The launcher passes
    /// [`crate::state::lease_reporter`].
    pub fn on_lease(&mut self, mut report: impl FnMut(&str, SystemTime) + Send + 'static) {
        let Some(woken) = self.leases.woken.take() else {
            return;
        };
        let at = self.leases.at.clone();
        let names: Vec<String> = self.nics.iter().map(|n| n.name.clone()).collect();
        let handle = std::thread::Builder::new()
            .name("dhcp-leases".into())
            .spawn(move || {
                let mut told = vec![false; names.len()];
                loop {
                    let now: Vec<Option<SystemTime>> =
                        at.lock().unwrap_or_else(PoisonError::into_inner).clone();
                    for ((name, t), told) in names.iter().zip(now).zip(&mut told) {
                        if let (Some(t), false) = (t, *told) {
                            *told = true;
                            report(name, t);
                        }
                    }
                    if woken.recv().is_err() {
                        return;
                    }
                }
            });
        match handle {
            Ok(h) => self.leases.reporter = Some(h),
            // The VM runs on without the lease times; nothing else depends on them.
            Err(e) => eprintln!("oxivirt-launcher: no DHCP lease reporter: {e}"),
        }
    }

    fn spawn(&mut self, serve: Serve) -> Result<(), Error> {
        let (netns, stop) = (self.netns.clone(), self.stop.clone());
        let (at, wake) = (self.leases.at.clone(), self.leases.wake.clone());
        let handle = std::thread::Builder::new()
            .name("dhcp".into())
            .spawn(move || -> Result<(), oxivirt_dhcp::Error> {
                // A thread that cannot enter the pod serves nothing; the guest then has no
                // lease, which its status shows.
                let Ok(ns) = NetNs::open(&netns) else {
                    return Ok(());
                };
                if ns.enter_current_thread().is_err() {
                    return Ok(());
                }
                match serve {
                    Serve::V4(bridge, lease, nic) => {
                        let mut acks = 0;
                        let observe = |c: &oxivirt_dhcp::Counters| {
                            if c.acks > acks {
                                acks = c.acks;
                                let mut at = at.lock().unwrap_or_else(PoisonError::into_inner);
                                if let Some(slot @ None) = at.get_mut(nic) {
                                    *slot = Some(SystemTime::now());
                                    if let Some(w) = &wake {
                                        let _ = w.send(());
                                    }
                                }
                            }
                        };
                        oxivirt_dhcp::serve_observed(
                            &bridge,
                            &mut Server::new(lease),
                            &stop,
                            observe,
                        )
                    }
                    Serve::V6(bridge, lease) => {
                        oxivirt_dhcp::v6::serve6(&bridge, &mut Server6::new(lease), &stop)
                    }
                    Serve::Ra(bridge, mac, mtu) => oxivirt_dhcp::v6::serve_ra(
                        &bridge,
                        mac,
                        mtu,
                        Duration::from_secs(30),
                        &stop,
                    ),
                }
            })
            .map_err(Error::Thread)?;
        self.servers.push(handle);
        Ok(())
    }

    /// Stops the DHCP servers and puts the pod's interfaces back. Safe to run twice.
    pub fn teardown(&mut self) -> Result<(), Error> {
        self.stop.store(true, Ordering::SeqCst);
        for s in self.servers.drain(..) {
            // A server's own failure ended its service already; what matters now is
            // that it has stopped.
            let _ = s.join();
        }
        self.leases.finish();
        let ns = NetNs::open(&self.netns).map_err(Error::Netns)?;
        let (masquerade, bridges, state_dir) = (self.masquerade, &self.bridges, &self.state_dir);
        ns.run(|| -> Result<(), Error> {
            let mut nl = Handle::new().map_err(Error::Netns)?;
            let fw = NftCli;
            let fw: Option<&dyn oxivirt_firewall::Firewall> = masquerade.then_some(&fw);
            oxivirt_vm_net::teardown_all(&mut nl, fw, bridges, state_dir).map_err(Error::Teardown)
        })
        .map_err(Error::Netns)?
    }
}

/// A DHCP service to run for the guest's lifetime.
enum Serve {
    /// On a bridge, for the interface at this index of `nics`.
    V4(String, Lease, usize),
    V6(String, Lease6),
    Ra(String, [u8; 6], u32),
}

struct Wired {
    nics: Vec<GuestNic>,
    masquerade: bool,
    bridges: Vec<Names>,
    servers: Vec<Serve>,
}

/// The bindings, on a thread in the pod's namespace.
fn wire(plan: &[NicPlan], state_dir: &Path, who: &GuestIdentity) -> Result<Wired, Error> {
    let mut nl = Handle::new().map_err(Error::Netns)?;
    let binding = |name: &str| {
        let name = name.to_string();
        move |source| Error::Binding { name, source }
    };
    let mut out = Wired {
        nics: Vec::new(),
        masquerade: false,
        bridges: Vec::new(),
        servers: Vec::new(),
    };
    // The masquerade ruleset loads while the bridge bindings are made.
    let mut loading = None;
    for nic in plan {
        if let Binding::Masquerade { v4, v6, ports } = &nic.binding {
            // The guest gets IPv6 only where the pod has it, as in KubeVirt.
            let eth0 = nl
                .require_link(&Names::primary().pod)
                .map_err(|e| binding(&nic.name)(e.into()))?;
            let pod_has_v6 = nl
                .addresses(Some(eth0.index))
                .map_err(Error::Netns)?
                .iter()
                .any(
                    |a| matches!(a.addr, ipnet::IpNet::V6(n) if !n.addr().is_unicast_link_local()),
                );
            let spec = MasqueradeSpec {
                v4: *v4,
                v6: v6.filter(|_| pod_has_v6),
                ports: ports.clone(),
                multiqueue: nic.multiqueue,
            };
            loading = Some((
                nic,
                spec.clone(),
                masquerade::begin(&mut nl, &NftCli, &spec, state_dir)
                    .map_err(binding(&nic.name))?,
            ));
            out.masquerade = true;
        }
    }
    for (i, nic) in plan.iter().enumerate() {
        let interface_name = format!("eth{i}");
        match &nic.binding {
            Binding::Masquerade { .. } => {
                let Some((_, spec, _)) = &loading else {
                    continue;
                };
                let mac = nic.mac.unwrap_or_else(generated_mac);
                let mtu = nl
                    .require_link("eth0")
                    .map(|l| l.mtu)
                    .map_err(Error::Netns)?;
                out.servers.push(Serve::V4(
                    Names::primary().bridge,
                    Lease {
                        client_mac: mac,
                        address: spec.vm4(),
                        prefix: spec.v4.prefix_len(),
                        router: Some(spec.gateway4()),
                        dns: who.dns4.clone(),
                        hostname: Some(who.hostname.clone()),
                        domain: None,
                        search: who.search.clone(),
                        mtu: u16::try_from(mtu).ok(),
                        routes: Vec::new(),
                        server_id: spec.gateway4(),
                        lease_secs: 86_400 * 365,
                        extra: Vec::new(),
                    },
                    out.nics.len(),
                ));
                if let Some(v6) = spec.v6 {
                    let vm6 = Ipv6Addr::from(u128::from(v6.network()) + 2);
                    out.servers.push(Serve::V6(
                        Names::primary().bridge,
                        Lease6 {
                            address: vm6,
                            dns: who.dns6.clone(),
                            server_mac: masquerade::BRIDGE_MAC,
                            valid_secs: 86_400,
                        },
                    ));
                    out.servers.push(Serve::Ra(
                        Names::primary().bridge,
                        masquerade::BRIDGE_MAC,
                        mtu,
                    ));
                }
                out.nics.push(GuestNic {
                    name: nic.name.clone(),
                    tap: Names::primary().tap,
                    mac,
                    address: Some(format!("{}/{}", spec.vm4(), spec.v4.prefix_len())),
                    interface_name,
                });
            }
            Binding::Bridge { ordinal } => {
                let names =
                    naming::for_pod(&mut nl, &nic.name, *ordinal).map_err(binding(&nic.name))?;
                let spec = BridgeSpec {
                    names: names.clone(),
                    index: u32::try_from(i).unwrap_or(u32::MAX),
                    mac: nic.mac,
                    multiqueue: nic.multiqueue,
                };
                let state =
                    bridge_binding::setup(&mut nl, &spec, state_dir).map_err(binding(&nic.name))?;
                out.bridges.push(names.clone());
                let link_local = Ipv4Addr::new(169, 254, 75, 10 + spec.index.min(200) as u8);
                if let Some(lease) = state.lease(
                    link_local,
                    who.dns4.clone(),
                    who.search.clone(),
                    Some(who.hostname.clone()),
                ) {
                    out.servers
                        .push(Serve::V4(names.bridge.clone(), lease, out.nics.len()));
                }
                out.nics.push(GuestNic {
                    name: nic.name.clone(),
                    tap: names.tap,
                    mac: state.vm_mac,
                    address: state.address.map(|a| a.to_string()),
                    interface_name,
                });
            }
        }
    }
    if let Some((nic, _, rules)) = loading {
        rules.finish().map_err(binding(&nic.name))?;
    }
    Ok(out)
}
