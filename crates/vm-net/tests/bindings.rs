//! The VM network bindings on a pod namespace built by the CNI suite (the seed's multus-br
//! for `ext-net` through our bridge + host-local, and a pod network on `eth0`), with a
//! namespace standing in for the VM on both `k6t-*` bridges and busybox's real `udhcpc`
//! asking our DHCP server for its addresses.

use oxivirt_testkit::cni_env as common;

use common::{must, Env, Impl};
use oxivirt_dhcp::{Lease, Server};
use oxivirt_firewall::NftCli;
use oxivirt_netlink::{format_mac, Handle, NetNs};
use oxivirt_testkit::{require_root, TestNs};
use oxivirt_vm_net::bridge::{self as bridge_binding, BridgeSpec};
use oxivirt_vm_net::masquerade::{self, MasqueradeSpec};
use oxivirt_vm_net::naming::Names;
use serde_json::json;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn udhcpc(
    vm: &TestNs,
    dev: &str,
    out: &std::path::Path,
) -> std::collections::HashMap<String, String> {
    let script = out.with_extension("sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = bound ] && env > {}\nexit 0\n",
            out.display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let o = vm.exec(&[
        "busybox",
        "udhcpc",
        "-i",
        dev,
        "-n",
        "-q",
        "-f",
        "-t",
        "5",
        "-T",
        "1",
        "-s",
        &script.display().to_string(),
        "-O",
        "mtu",
        "-O",
        "staticroutes",
        "-O",
        "search",
    ]);
    assert!(
        o.status.success(),
        "udhcpc on {dev}: {} {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::read_to_string(out)
        .expect("lease env")
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// The namespace's br_netfilter switch for IPv4, if the kernel has br_netfilter.
fn bridge_nf_call_iptables(ns: &TestNs) -> Option<String> {
    let path = "/proc/sys/net/bridge/bridge-nf-call-iptables";
    ns.exec(&["test", "-e", path])
        .status
        .success()
        .then(|| ns.sh(&["cat", path]).trim().to_string())
}

#[test]
fn bridge_and_masquerade_bindings_with_a_real_dhcp_client() {
    if !require_root("bridge_and_masquerade_bindings_with_a_real_dhcp_client") {
        return;
    }
    if oxivirt_testkit::which("busybox").is_none() || oxivirt_testkit::which("nft").is_none() {
        eprintln!("SKIP bridge_and_masquerade_bindings_with_a_real_dhcp_client: busybox (udhcpc) or nft missing");
        return;
    }
    let env = Env::new();
    let outside = TestNs::new("oxo");
    let vm = TestNs::new("oxv");
    // The node: multus-bridge with an uplink to an outside host (the article's gateway).
    env.node
        .sh(&["ip", "link", "add", "multus-bridge", "type", "bridge"]);
    env.node.sh(&["ip", "link", "set", "multus-bridge", "up"]);
    env.node.sh(&[
        "ip",
        "link",
        "add",
        "enp8s0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &outside.name,
    ]);
    env.node.sh(&[
        "ip",
        "link",
        "set",
        "enp8s0",
        "master",
        "multus-bridge",
        "up",
    ]);
    outside.sh(&["ip", "addr", "add", "192.168.100.1/24", "dev", "eth0"]);
    outside.sh(&["ip", "link", "set", "eth0", "up"]);
    // CNI: the pod network on eth0, the seed's multus-br as KubeVirt names it for ext-net.
    let names = Names::secondary("ext-net");
    let pod_net = json!({"cniVersion": "1.0.0", "name": "pod-net", "type": "bridge", "bridge": "cni0", "isDefaultGateway": true,
        "ipam": {"type": "host-local", "subnet": "10.244.0.0/24", "dataDir": env.data_dir()}});
    must(
        env.run(Impl::Ours, "bridge", "ADD", "launcher", "eth0", &pod_net),
        "pod network",
    );
    let seed = env.seed_conf("0.3.1", json!({}));
    let added = must(
        env.run(Impl::Ours, "bridge", "ADD", "launcher", &names.pod, &seed),
        "multus-br",
    );
    let pod_mac = added.json()["interfaces"][2]["mac"]
        .as_str()
        .expect("mac")
        .to_string();

    // The bindings, inside the pod's namespace.
    let ns = NetNs::open(env.pod.path()).expect("pod netns");
    // The pod uses the hashed scheme; an ordinal `net1` pod would be recognised too.
    let found = ns
        .run(|| {
            oxivirt_vm_net::naming::for_pod(&mut Handle::new().expect("netlink"), "ext-net", 1)
                .expect("names")
        })
        .expect("thread");
    assert_eq!(found, names);
    let state_dir = env.data.path().join("bindings");
    let spec = BridgeSpec {
        names: names.clone(),
        index: 1,
        mac: None,
        multiqueue: false,
    };
    let (state, again) = ns
        .run(|| {
            let mut nl = Handle::new().expect("netlink");
            // As a launcher does: the bridge binding while nft loads the masquerade rules.
            let rules = masquerade::begin(&mut nl, &NftCli, &MasqueradeSpec::default(), &state_dir)
                .expect("masquerade binding");
            let s = bridge_binding::setup(&mut nl, &spec, &state_dir).expect("bridge binding");
            rules.finish().expect("masquerade rules");
            // Re-running (a launcher restart) must not double-configure.
            let again =
                bridge_binding::setup(&mut nl, &spec, &state_dir).expect("bridge binding again");
            masquerade::setup(&mut nl, &NftCli, &MasqueradeSpec::default(), &state_dir)
                .expect("masquerade binding again");
            (s, again)
        })
        .expect("thread");
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
    assert!(
        br["addr_info"]
            .as_array()
            .expect("addrs")
            .iter()
            .any(|a| a["local"] == "169.254.75.11" && a["prefixlen"] == 32),
        "{br}"
    );
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
        assert!(
            d["addr_info"]
                .as_array()
                .expect("addrs")
                .iter()
                .any(|a| a["local"] == "192.168.100.2" && a["prefixlen"] == 24),
            "{d}"
        );
    } else {
        eprintln!("SKIP (part): this kernel has neither dummy nor ifb links: pod2df796c6902 is kept in the binding state only");
    }
    let k6t0 = link("k6t-eth0");
    assert_eq!(k6t0["address"], "02:00:00:00:00:00");
    assert!(k6t0["addr_info"]
        .as_array()
        .expect("addrs")
        .iter()
        .any(|a| a["local"] == "10.0.2.1"));
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
        env.pod.sh(&[
            "ip", "link", "add", port, "type", "veth", "peer", "name", dev, "netns", &vm.name,
        ]);
        env.pod
            .sh(&["ip", "link", "set", port, "master", bridge, "up"]);
        vm.sh(&["ip", "link", "set", dev, "address", &mac, "up"]);
    }
    let stop = Arc::new(AtomicBool::new(false));
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
    let mut servers = Vec::new();
    for (bridge, lease) in [("k6t-eth0", masq_lease), ("k6t-2df796c6902", bridge_lease)] {
        let (stop, pod_path) = (stop.clone(), env.pod.path());
        servers.push(std::thread::spawn(move || {
            NetNs::open(&pod_path)
                .expect("ns")
                .enter_current_thread()
                .expect("setns");
            let mut server = Server::new(lease);
            oxivirt_dhcp::serve(bridge, &mut server, &stop).expect("dhcp server");
            server.counters
        }));
    }
    let l1 = udhcpc(&vm, "eth1", &env.data.path().join("eth1.env"));
    let l0 = udhcpc(&vm, "eth0", &env.data.path().join("eth0.env"));
    stop.store(true, Ordering::Relaxed);
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
    ns.run(|| {
        let mut nl = Handle::new().expect("netlink");
        for _ in 0..2 {
            bridge_binding::teardown(&mut nl, &names, &state_dir).expect("bridge teardown");
            masquerade::teardown(&mut nl, &NftCli, &state_dir).expect("masquerade teardown");
        }
    })
    .expect("thread");
    if let Some(v) = bridge_nf_call_iptables(&env.pod) {
        assert_eq!(v, "1", "teardown puts br_netfilter back as it found it");
    }
    let restored = link("pod2df796c6902");
    assert_eq!(restored["address"], pod_mac.as_str());
    assert!(restored["addr_info"]
        .as_array()
        .expect("addrs")
        .iter()
        .any(|a| a["local"] == "192.168.100.2"));
    // What the bindings made is deleted by a detached process, shortly after.
    assert!(
        oxivirt_testkit::eventually(std::time::Duration::from_secs(5), || common::links(
            &env.pod
        ) == [
            "eth0",
            "lo",
            "pod2df796c6902"
        ]),
        "{:?}",
        common::links(&env.pod)
    );
    assert!(
        oxivirt_testkit::eventually(std::time::Duration::from_secs(5), || !env
            .pod
            .sh(&["nft", "list", "tables"])
            .contains("nat")),
        "masquerade rules left behind"
    );
    must(
        env.run(Impl::Ours, "bridge", "DEL", "launcher", &names.pod, &seed),
        "DEL multus-br",
    );
    must(
        env.run(Impl::Ours, "bridge", "DEL", "launcher", "eth0", &pod_net),
        "DEL pod network",
    );
}

/// The masquerade network's IPv6 side: router advertisements give the VM stand-in its
/// default route (the kernel is the client), and ISC dhclient gets fd10:0:2::2 from our
/// DHCPv6 server.
#[test]
fn masquerade_ipv6_router_advertisements_and_dhcpv6() {
    if !require_root("masquerade_ipv6_router_advertisements_and_dhcpv6") {
        return;
    }
    if oxivirt_testkit::which("dhclient").is_none() || oxivirt_testkit::which("nft").is_none() {
        eprintln!("SKIP masquerade_ipv6_router_advertisements_and_dhcpv6: dhclient (isc-dhcp-client) or nft missing");
        return;
    }
    let env = Env::new();
    let vm = TestNs::new("oxv6");
    let pod_net = json!({"cniVersion": "1.0.0", "name": "pod-net", "type": "bridge", "bridge": "cni0", "isDefaultGateway": true,
        "ipam": {"type": "host-local", "dataDir": env.data_dir(),
            "ranges": [[{"subnet": "10.244.0.0/24"}], [{"subnet": "fd00:10:244::/64"}]]}});
    must(
        env.run(Impl::Ours, "bridge", "ADD", "launcher", "eth0", &pod_net),
        "pod network",
    );
    let ns = NetNs::open(env.pod.path()).expect("pod netns");
    let spec = MasqueradeSpec {
        v6: Some(MasqueradeSpec::default_v6()),
        ..Default::default()
    };
    let state_dir = env.data.path().join("bindings");
    ns.run(|| {
        masquerade::setup(
            &mut Handle::new().expect("netlink"),
            &NftCli,
            &spec,
            &state_dir,
        )
        .expect("masquerade")
    })
    .expect("thread");
    env.pod.sh(&[
        "ip", "link", "add", "vmport0", "type", "veth", "peer", "name", "eth0", "netns", &vm.name,
    ]);
    env.pod
        .sh(&["ip", "link", "set", "vmport0", "master", "k6t-eth0", "up"]);
    vm.sh(&["sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0"]);
    vm.sh(&["sysctl", "-qw", "net.ipv6.conf.eth0.accept_ra=2"]);
    vm.sh(&[
        "ip",
        "link",
        "set",
        "eth0",
        "address",
        "02:00:00:aa:bb:01",
        "up",
    ]);

    let stop = Arc::new(AtomicBool::new(false));
    let pod_path = env.pod.path();
    let (s1, p1) = (stop.clone(), pod_path.clone());
    let ra = std::thread::spawn(move || {
        NetNs::open(&p1)
            .expect("ns")
            .enter_current_thread()
            .expect("setns");
        oxivirt_dhcp::v6::serve_ra(
            "k6t-eth0",
            [2, 0, 0, 0, 0, 0],
            1500,
            std::time::Duration::from_secs(2),
            &s1,
        )
        .expect("ra");
    });
    let (s2, p2) = (stop.clone(), pod_path);
    let dhcp6 = std::thread::spawn(move || {
        NetNs::open(&p2)
            .expect("ns")
            .enter_current_thread()
            .expect("setns");
        let mut server = oxivirt_dhcp::v6::Server6::new(oxivirt_dhcp::v6::Lease6 {
            address: "fd10:0:2::2".parse().expect("ip"),
            dns: vec!["fd00::a".parse().expect("ip")],
            server_mac: [2, 0, 0, 0, 0, 0],
            valid_secs: 3600,
        });
        oxivirt_dhcp::v6::serve6("k6t-eth0", &mut server, &s2).expect("dhcpv6");
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
    let got_route = oxivirt_testkit::eventually(std::time::Duration::from_secs(10), has_default);
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
    stop.store(true, Ordering::Relaxed);
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
    ns.run(|| {
        masquerade::teardown(&mut Handle::new().expect("netlink"), &NftCli, &state_dir)
            .expect("teardown")
    })
    .expect("thread");
    must(
        env.run(Impl::Ours, "bridge", "DEL", "launcher", "eth0", &pod_net),
        "DEL",
    );
}

/// An L2-only secondary network (no IPAM): the binding works and there is nothing to
/// serve over DHCP.
#[test]
fn l2_only_bridge_binding() {
    if !require_root("l2_only_bridge_binding") {
        return;
    }
    let env = Env::new();
    let names = Names::secondary("l2-net");
    let conf = env.seed_conf("1.0.0", json!({"ipam": {}}));
    must(
        env.run(Impl::Ours, "bridge", "ADD", "launcher", &names.pod, &conf),
        "L2 ADD",
    );
    let ns = NetNs::open(env.pod.path()).expect("pod netns");
    let state_dir = env.data.path().join("bindings");
    let spec = BridgeSpec {
        names: names.clone(),
        index: 2,
        mac: Some([2, 0, 0, 0, 0, 0x42]),
        multiqueue: true,
    };
    let state = ns
        .run(|| {
            bridge_binding::setup(&mut Handle::new().expect("netlink"), &spec, &state_dir)
                .expect("binding")
        })
        .expect("thread");
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
    assert!(
        br["addr_info"]
            .as_array()
            .expect("addrs")
            .iter()
            .any(|a| a["local"] == "169.254.75.12"),
        "{br}"
    );
    assert_eq!(
        env.pod.ip_json(&["link", "show", "dev", &names.tap])[0]["master"],
        names.bridge.as_str()
    );
    ns.run(|| {
        bridge_binding::teardown(&mut Handle::new().expect("netlink"), &names, &state_dir)
            .expect("teardown")
    })
    .expect("thread");
    assert!(oxivirt_testkit::eventually(
        std::time::Duration::from_secs(5),
        || common::links(&env.pod) == ["lo", names.pod.as_str()]
    ));
    must(
        env.run(Impl::Ours, "bridge", "DEL", "launcher", &names.pod, &conf),
        "DEL",
    );
}

/// A launcher that died half-way through the bridge binding: the pod interface is already
/// the bridge's port, but the tap and the pod's view are missing. Setup run again finishes
/// the job from the recorded state (the MAC and address the pod link no longer shows), and
/// teardown then gives the pod interface back as it was.
#[test]
fn bridge_binding_finishes_a_half_done_setup() {
    if !require_root("bridge_binding_finishes_a_half_done_setup") {
        return;
    }
    let env = Env::new();
    let names = Names::secondary("ext-net");
    let seed = env.seed_conf("1.0.0", json!({}));
    let added = must(
        env.run(Impl::Ours, "bridge", "ADD", "launcher", &names.pod, &seed),
        "ADD",
    );
    let pod_mac = added.json()["interfaces"][2]["mac"]
        .as_str()
        .expect("mac")
        .to_string();
    let ns = NetNs::open(env.pod.path()).expect("pod netns");
    let state_dir = env.data.path().join("bindings");
    let spec = BridgeSpec {
        names: names.clone(),
        index: 1,
        mac: None,
        multiqueue: false,
    };
    let setup = || {
        ns.run(|| {
            bridge_binding::setup(&mut Handle::new().expect("netlink"), &spec, &state_dir)
                .expect("binding")
        })
        .expect("thread")
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
    assert_eq!(
        env.pod.ip_json(&["link", "show", "dev", &names.tap])[0]["master"],
        names.bridge.as_str()
    );
    assert_eq!(
        env.pod.ip_json(&["link", "show", "dev", &names.nic])[0]["master"],
        names.bridge.as_str()
    );
    if again.dummy {
        assert_eq!(
            env.pod.ip_json(&["link", "show", "dev", &names.pod])[0]["address"],
            pod_mac.as_str()
        );
    }
    ns.run(|| {
        bridge_binding::teardown(&mut Handle::new().expect("netlink"), &names, &state_dir)
            .expect("teardown")
    })
    .expect("thread");
    let back = &env.pod.ip_json(&["addr", "show", "dev", &names.pod])[0];
    assert_eq!(back["address"], pod_mac.as_str());
    assert!(
        back["addr_info"]
            .as_array()
            .expect("addrs")
            .iter()
            .any(|a| a["local"] == "192.168.100.2"),
        "{back}"
    );
    must(
        env.run(Impl::Ours, "bridge", "DEL", "launcher", &names.pod, &seed),
        "DEL",
    );
}
