//! The VM network bindings on a pod namespace built by the CNI suite (the seed's multus-br
//! for `ext-net` through our bridge + host-local, and a pod network on `eth0`), with a
//! namespace standing in for the VM on both `k6t-*` bridges and busybox's real `udhcpc`
//! asking our DHCP server for its addresses.

use oxivirt_testkit::cni_env as common;

use common::{plug_vm, udhcpc, Env};
use oxivirt_dhcp::{Lease, Server};
use oxivirt_firewall::NftCli;
use oxivirt_netlink::{format_mac, Handle, NetNs};
use oxivirt_testkit::{eventually, root_test, TestNs};
use oxivirt_vm_net::bridge::{self as bridge_binding, BridgeSpec};
use oxivirt_vm_net::masquerade::{self, MasqueradeSpec};
use oxivirt_vm_net::naming::Names;
use serde_json::json;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The pod's namespace as a launcher sees it: where the bindings run and keep their state.
struct Launcher {
    ns: NetNs,
    state_dir: PathBuf,
}

impl Launcher {
    fn new(env: &Env) -> Self {
        Self {
            ns: NetNs::open(env.pod.path()).expect("pod netns"),
            state_dir: env.data.path().join("bindings"),
        }
    }

    /// Runs `f` on a thread in the pod's namespace, with a netlink handle there and the
    /// state directory.
    fn run<T: Send>(&self, f: impl FnOnce(&mut Handle, &Path) -> T + Send) -> T {
        self.ns
            .run(|| f(&mut Handle::new().expect("netlink"), &self.state_dir))
            .expect("thread")
    }
}

/// Servers the test runs in the pod's namespace (DHCP, router advertisements). They stop
/// when the test is done with them, and also when it fails half-way (on drop).
struct PodServers {
    pod: PathBuf,
    stop: Arc<AtomicBool>,
}

impl PodServers {
    fn new(env: &Env) -> Self {
        Self {
            pod: env.pod.path(),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Starts `serve` on a thread in the pod's namespace; it gets the stop flag.
    fn spawn<T: Send + 'static>(
        &self,
        serve: impl FnOnce(&AtomicBool) -> T + Send + 'static,
    ) -> JoinHandle<T> {
        let (pod, stop) = (self.pod.clone(), self.stop.clone());
        std::thread::spawn(move || {
            NetNs::open(&pod)
                .expect("pod netns")
                .enter_current_thread()
                .expect("setns");
            serve(&stop)
        })
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for PodServers {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The namespace's br_netfilter switch for IPv4, if the kernel has br_netfilter.
fn bridge_nf_call_iptables(ns: &TestNs) -> Option<String> {
    let path = "/proc/sys/net/bridge/bridge-nf-call-iptables";
    ns.exec(&["test", "-e", path])
        .status
        .success()
        .then(|| ns.sh(&["cat", path]).trim().to_string())
}

#[root_test("busybox", "nft")]
fn bridge_and_masquerade_bindings_with_a_real_dhcp_client() {
    let env = Env::new();
    let outside = common::outside_world(&env);
    let vm = TestNs::new("oxv");
    // CNI: the pod network on eth0, the seed's multus-br as KubeVirt names it for ext-net.
    let names = Names::secondary("ext-net");
    let pod_net = env.attach("eth0", env.pod_network_conf(false));
    let ext = env.attach(&names.pod, env.seed_conf("0.3.1", json!({})));
    let pod_mac = ext.mac();

    // The bindings, inside the pod's namespace.
    let launcher = Launcher::new(&env);
    // The pod uses the hashed scheme; an ordinal `net1` pod would be recognised too.
    let found =
        launcher.run(|nl, _| oxivirt_vm_net::naming::for_pod(nl, "ext-net", 1).expect("names"));
    assert_eq!(found, names);
    let spec = BridgeSpec {
        names: names.clone(),
        index: 1,
        mac: None,
        multiqueue: false,
    };
    let (state, again) = launcher.run(|nl, state_dir| {
        // As a launcher does: the bridge binding while nft loads the masquerade rules.
        let rules = masquerade::begin(nl, &NftCli, &MasqueradeSpec::default(), state_dir)
            .expect("masquerade binding");
        let s = bridge_binding::setup(nl, &spec, state_dir).expect("bridge binding");
        rules.finish().expect("masquerade rules");
        // Re-running (a launcher restart) must not double-configure.
        let again = bridge_binding::setup(nl, &spec, state_dir).expect("bridge binding again");
        masquerade::setup(nl, &NftCli, &MasqueradeSpec::default(), state_dir)
            .expect("masquerade binding again");
        (s, again)
    });
    assert_eq!(state, again);
    assert_eq!(
        format_mac(&state.vm_mac),
        pod_mac,
        "the VM takes the pod interface's MAC"
    );
    assert_eq!(
        state.address.map(|a| a.to_string()).as_deref(),
        Some("192.168.100.2/24")
    );

    // KubeVirt's layout, as in the article's listing.
    let link = |name: &str| env.pod.ip_json(&["-d", "addr", "show", "dev", name])[0].clone();
    let br = link("k6t-2df796c6902");
    assert!(common::has_addr(&br, "169.254.75.11/32"), "{br}");
    assert_eq!(link("2df796c6902-nic")["master"], "k6t-2df796c6902");
    assert_eq!(
        link("2df796c6902-nic")["linkinfo"]["info_slave_data"]["learning"],
        false
    );
    assert_eq!(link("tap2df796c6902")["master"], "k6t-2df796c6902");
    assert_eq!(link("tap2df796c6902")["linkinfo"]["info_kind"], "tun");
    // The pod's CNI view, as in the article's listing: `pod2df796c6902: <BROADCAST,NOARP>
    // ... state DOWN` with the pod's MAC and address.
    if state.dummy {
        let d = link("pod2df796c6902");
        let kind = d["linkinfo"]["info_kind"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(kind == "dummy" || kind == "ifb", "{d}");
        if kind == "ifb" {
            eprintln!("NOTE: this kernel has no dummy driver: the pod's view is an ifb link");
        }
        assert_eq!(d["address"], pod_mac.as_str());
        assert_eq!(d["mtu"], 1500);
        assert_eq!(d["operstate"], "DOWN");
        assert!(
            d["flags"]
                .as_array()
                .expect("flags")
                .iter()
                .any(|f| f == "NOARP"),
            "{d}"
        );
        assert!(common::has_addr(&d, "192.168.100.2/24"), "{d}");
    } else {
        eprintln!("SKIP (part): this kernel has neither dummy nor ifb links: pod2df796c6902 is kept in the binding state only");
    }
    let k6t0 = link("k6t-eth0");
    assert_eq!(k6t0["address"], "02:00:00:00:00:00");
    assert!(common::has_addr(&k6t0, "10.0.2.1"));
    assert_eq!(link("tap0")["master"], "k6t-eth0");
    let rules = env.pod.sh(&["nft", "list", "table", "ip", "nat"]);
    assert!(
        rules.contains("KUBEVIRT_PREINBOUND") && rules.contains("masquerade"),
        "{rules}"
    );
    let sys = |k: &str| {
        env.pod
            .sh(&["cat", &format!("/proc/sys/{k}")])
            .trim()
            .to_string()
    };
    assert_eq!(sys("net/ipv4/ip_forward"), "1");
    assert_eq!(sys("net/ipv4/conf/k6t-eth0/route_localnet"), "1");
    assert_eq!(sys("net/ipv4/conf/k6t-2df796c6902/arp_ignore"), "1");

    // The VM stand-in: eth0 on k6t-eth0, eth1 (the VM's MAC) on k6t-2df796c6902.
    for (dev, port, bridge, mac) in [
        (
            "eth0",
            "vmport0",
            "k6t-eth0",
            "02:00:00:aa:bb:01".to_string(),
        ),
        ("eth1", "vmport1", "k6t-2df796c6902", pod_mac.clone()),
    ] {
        plug_vm(&env, &vm, (port, bridge), (dev, &mac), &[]);
    }
    let masq_lease = Lease {
        client_mac: [2, 0, 0, 0xaa, 0xbb, 1],
        address: Ipv4Addr::new(10, 0, 2, 2),
        prefix: 24,
        router: Some(Ipv4Addr::new(10, 0, 2, 1)),
        dns: vec![Ipv4Addr::new(10, 96, 0, 10)],
        hostname: Some("testvm-2".into()),
        domain: None,
        search: vec!["default.svc.cluster.local".into()],
        mtu: Some(1500),
        routes: vec![],
        server_id: Ipv4Addr::new(10, 0, 2, 1),
        lease_secs: 86400,
        extra: vec![],
    };
    let bridge_lease = state
        .lease(
            Ipv4Addr::new(169, 254, 75, 11),
            vec![],
            vec![],
            Some("testvm-2".into()),
        )
        .expect("lease");
    let pod_servers = PodServers::new(&env);
    let servers: Vec<_> = [("k6t-eth0", masq_lease), ("k6t-2df796c6902", bridge_lease)]
        .into_iter()
        .map(|(bridge, lease)| {
            pod_servers.spawn(move |stop| {
                let mut server = Server::new(lease);
                oxivirt_dhcp::serve(bridge, &mut server, stop).expect("dhcp server");
                server.counters
            })
        })
        .collect();
    let l1 = udhcpc(&vm, "eth1", &env.data.path().join("eth1.env"));
    let l0 = udhcpc(&vm, "eth0", &env.data.path().join("eth0.env"));
    pod_servers.stop();
    let counters: Vec<_> = servers
        .into_iter()
        .map(|h| h.join().expect("server"))
        .collect();
    assert_eq!(
        l1.get("ip").map(String::as_str),
        Some("192.168.100.2"),
        "{l1:?}"
    );
    assert_eq!(l1.get("subnet").map(String::as_str), Some("255.255.255.0"));
    assert_eq!(l1.get("mtu").map(String::as_str), Some("1500"));
    assert_eq!(l1.get("hostname").map(String::as_str), Some("testvm-2"));
    assert_eq!(l0.get("ip").map(String::as_str), Some("10.0.2.2"), "{l0:?}");
    assert_eq!(l0.get("router").map(String::as_str), Some("10.0.2.1"));
    assert_eq!(l0.get("dns").map(|s| s.trim()), Some("10.96.0.10"));
    assert_eq!(
        l0.get("search").map(|s| s.trim()),
        Some("default.svc.cluster.local")
    );
    assert!(
        counters.iter().all(|c| c.acks >= 1 && c.malformed == 0),
        "{counters:?}"
    );

    // Traffic: the VM's eth1 is on the outside segment; eth0 leaves through NAT.
    vm.sh(&["ip", "addr", "add", "192.168.100.2/24", "dev", "eth1"]);
    vm.sh(&["ip", "addr", "add", "10.0.2.2/24", "dev", "eth0"]);
    vm.sh(&["ip", "route", "add", "default", "via", "10.0.2.1"]);
    vm.sh(&["ping", "-c", "1", "-W", "2", "192.168.100.1"]);
    outside.sh(&["ping", "-c", "1", "-W", "2", "192.168.100.2"]);
    // The node knows no route to 10.0.2.0/24: this answer only comes back through NAT.
    vm.sh(&["ping", "-c", "1", "-W", "2", "10.244.0.1"]);
    // Hairpin: the VM reaches its own pod address and lands on itself (with br_netfilter
    // in the kernel, only because the binding turned it off in the pod's namespace).
    if let Some(v) = bridge_nf_call_iptables(&env.pod) {
        assert_eq!(v, "0");
    }
    let hp = vm.exec(&["ping", "-c", "1", "-W", "2", "10.244.0.2"]);
    assert!(
        hp.status.success(),
        "hairpin: {}\n{}",
        String::from_utf8_lossy(&hp.stdout),
        env.pod.sh(&["nft", "list", "ruleset"])
    );

    // Teardown (twice) gives the pod its interface back; CNI DEL then works as usual.
    env.pod.sh(&["ip", "link", "del", "vmport0"]);
    env.pod.sh(&["ip", "link", "del", "vmport1"]);
    launcher.run(|nl, state_dir| {
        for _ in 0..2 {
            bridge_binding::teardown(nl, &names, state_dir).expect("bridge teardown");
            masquerade::teardown(nl, &NftCli, state_dir).expect("masquerade teardown");
        }
    });
    if let Some(v) = bridge_nf_call_iptables(&env.pod) {
        assert_eq!(v, "1", "teardown puts br_netfilter back as it found it");
    }
    let restored = link("pod2df796c6902");
    assert_eq!(restored["address"], pod_mac.as_str());
    assert!(common::has_addr(&restored, "192.168.100.2"));
    // What the bindings made is deleted by a detached process, shortly after.
    assert!(
        eventually(Duration::from_secs(5), || common::links(&env.pod)
            == ["eth0", "lo", "pod2df796c6902"]),
        "{:?}",
        common::links(&env.pod)
    );
    assert!(
        eventually(Duration::from_secs(5), || !env
            .pod
            .sh(&["nft", "list", "tables"])
            .contains("nat")),
        "masquerade rules left behind"
    );
    env.detach(&ext);
    env.detach(&pod_net);
}

/// The masquerade network's IPv6 side: router advertisements give the VM stand-in its
/// default route (the kernel is the client), and ISC dhclient gets fd10:0:2::2 from our
/// DHCPv6 server.
#[root_test("dhclient", "nft")]
fn masquerade_ipv6_router_advertisements_and_dhcpv6() {
    let env = Env::new();
    let vm = TestNs::new("oxv6");
    let pod_net = env.attach("eth0", env.pod_network_conf(true));
    let launcher = Launcher::new(&env);
    let spec = MasqueradeSpec {
        v6: Some(MasqueradeSpec::default_v6()),
        ..Default::default()
    };
    launcher
        .run(|nl, state_dir| masquerade::setup(nl, &NftCli, &spec, state_dir).expect("masquerade"));
    // The kernel is the VM's IPv6 client: no DAD delay, routes from advertisements.
    plug_vm(
        &env,
        &vm,
        ("vmport0", "k6t-eth0"),
        ("eth0", "02:00:00:aa:bb:01"),
        &[
            "net.ipv6.conf.eth0.accept_dad=0",
            "net.ipv6.conf.eth0.accept_ra=2",
        ],
    );

    let pod_servers = PodServers::new(&env);
    let ra = pod_servers.spawn(|stop| {
        oxivirt_dhcp::v6::serve_ra(
            "k6t-eth0",
            [2, 0, 0, 0, 0, 0],
            1500,
            Duration::from_secs(2),
            stop,
        )
        .expect("ra");
    });
    let dhcp6 = pod_servers.spawn(|stop| {
        let mut server = oxivirt_dhcp::v6::Server6::new(oxivirt_dhcp::fixture::seed_lease6());
        oxivirt_dhcp::v6::serve6("k6t-eth0", &mut server, stop).expect("dhcpv6");
        server.counters
    });
    // The kernel takes the default route from the advertisement.
    let has_default = || {
        vm.ip_json(&["-6", "route", "show", "default"])
            .as_array()
            .is_some_and(|a| {
                a.iter().any(|r| {
                    r["dev"] == "eth0"
                        && r["gateway"]
                            .as_str()
                            .is_some_and(|g| g.starts_with("fe80::"))
                })
            })
    };
    let got_route = eventually(Duration::from_secs(10), has_default);
    let lease = env.data.path().join("dhclient6.leases");
    let out = vm.exec(&[
        "dhclient",
        "-6",
        "-1",
        "-v",
        "-sf",
        "/bin/true",
        "-lf",
        &lease.display().to_string(),
        "-pf",
        &env.data.path().join("dhclient6.pid").display().to_string(),
        "eth0",
    ]);
    let _ = vm.exec(&[
        "dhclient",
        "-6",
        "-x",
        "-pf",
        &env.data.path().join("dhclient6.pid").display().to_string(),
    ]);
    pod_servers.stop();
    ra.join().expect("ra thread");
    let counters = dhcp6.join().expect("dhcpv6 thread");
    assert!(
        got_route,
        "no default route from the router advertisement: {}",
        vm.sh(&["ip", "-6", "route"])
    );
    let leases = std::fs::read_to_string(&lease).unwrap_or_default();
    assert!(
        leases.contains("iaaddr fd10:0:2::2"),
        "dhclient: {} {}\nleases: {leases}\ncounters: {counters:?}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(leases.contains("fd00::a"), "{leases}");
    // IPv6 hairpin: the VM reaches its own pod address (the pod's IPv6 one on eth0).
    vm.sh(&[
        "ip",
        "-6",
        "addr",
        "add",
        "fd10:0:2::2/120",
        "dev",
        "eth0",
        "nodad",
    ]);
    let hp = vm.exec(&["ping", "-6", "-c", "1", "-W", "2", "fd00:10:244::2"]);
    assert!(
        hp.status.success(),
        "IPv6 hairpin: {}\n{}",
        String::from_utf8_lossy(&hp.stdout),
        env.pod.sh(&["nft", "list", "ruleset"])
    );
    launcher.run(|nl, state_dir| masquerade::teardown(nl, &NftCli, state_dir).expect("teardown"));
    env.detach(&pod_net);
}

/// An L2-only secondary network (no IPAM): the binding works and there is nothing to
/// serve over DHCP.
#[root_test]
fn l2_only_bridge_binding() {
    let env = Env::new();
    let names = Names::secondary("l2-net");
    let l2 = env.attach(&names.pod, env.seed_conf("1.0.0", json!({"ipam": {}})));
    let launcher = Launcher::new(&env);
    let spec = BridgeSpec {
        names: names.clone(),
        index: 2,
        mac: Some([2, 0, 0, 0, 0, 0x42]),
        multiqueue: true,
    };
    let state =
        launcher.run(|nl, state_dir| bridge_binding::setup(nl, &spec, state_dir).expect("binding"));
    assert_eq!(state.address, None);
    assert!(
        state
            .lease(Ipv4Addr::new(169, 254, 75, 12), vec![], vec![], None)
            .is_none(),
        "no address, no DHCP"
    );
    assert_eq!(
        format_mac(&state.vm_mac),
        "02:00:00:00:00:42",
        "macAddress wins"
    );
    let br = &env.pod.ip_json(&["addr", "show", "dev", &names.bridge])[0];
    assert!(common::has_addr(br, "169.254.75.12"), "{br}");
    assert_eq!(master(&env, &names.tap), names.bridge.as_str());
    launcher
        .run(|nl, state_dir| bridge_binding::teardown(nl, &names, state_dir).expect("teardown"));
    assert!(eventually(Duration::from_secs(5), || common::links(
        &env.pod
    ) == [
        "lo",
        names.pod.as_str()
    ]));
    env.detach(&l2);
}

/// A launcher that died half-way through the bridge binding: the pod interface is already
/// the bridge's port, but the tap and the pod's view are missing. Setup run again finishes
/// the job from the recorded state (the MAC and address the pod link no longer shows), and
/// teardown then gives the pod interface back as it was.
#[root_test]
fn bridge_binding_finishes_a_half_done_setup() {
    let env = Env::new();
    let names = Names::secondary("ext-net");
    let ext = env.attach(&names.pod, env.seed_conf("1.0.0", json!({})));
    let pod_mac = ext.mac();
    let launcher = Launcher::new(&env);
    let spec = BridgeSpec {
        names: names.clone(),
        index: 1,
        mac: None,
        multiqueue: false,
    };
    let setup = || {
        launcher.run(|nl, state_dir| bridge_binding::setup(nl, &spec, state_dir).expect("binding"))
    };
    let first = setup();
    // The crash: only the rename and the bridge port happened.
    env.pod.sh(&["ip", "link", "del", &names.tap]);
    if env.pod.has_link(&names.pod) {
        env.pod.sh(&["ip", "link", "del", &names.pod]);
    }
    assert!(env.pod.has_link(&names.nic));
    let again = setup();
    assert_eq!(first, again, "the state recorded before the crash is kept");
    assert_eq!(format_mac(&again.vm_mac), pod_mac);
    assert_eq!(
        again.address.map(|a| a.to_string()).as_deref(),
        Some("192.168.100.2/24")
    );
    assert_eq!(master(&env, &names.tap), names.bridge.as_str());
    assert_eq!(master(&env, &names.nic), names.bridge.as_str());
    if again.dummy {
        assert_eq!(
            env.pod.ip_json(&["link", "show", "dev", &names.pod])[0]["address"],
            pod_mac.as_str()
        );
    }
    launcher
        .run(|nl, state_dir| bridge_binding::teardown(nl, &names, state_dir).expect("teardown"));
    let back = &env.pod.ip_json(&["addr", "show", "dev", &names.pod])[0];
    assert_eq!(back["address"], pod_mac.as_str());
    assert!(common::has_addr(back, "192.168.100.2"), "{back}");
    env.detach(&ext);
}

/// The bridge `dev` in the pod is a port of.
fn master(env: &Env, dev: &str) -> serde_json::Value {
    env.pod.ip_json(&["link", "show", "dev", dev])[0]["master"].clone()
}
