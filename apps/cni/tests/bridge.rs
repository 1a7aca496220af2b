//! `bridge` (+ `host-local`) in real namespaces, and side by side with the reference.

use oxivirt_testkit::cni_env as common;

use common::{bridge_state, normalise, Env, Impl};
use oxivirt_testkit::Cni;
use oxivirt_testkit::{eventually, parallel, reference_plugins, root_test, TestNs};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

const DIFF_VERSIONS: [&str; 4] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"];
const ALL_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

#[root_test]
fn seed_network_add_check_del_in_every_version() {
    for (i, v) in ALL_VERSIONS.iter().enumerate() {
        let env = Env::new();
        let conf = env.seed_conf(v, json!({}));
        let id = format!("ctr{i}");
        let out = env.run(Impl::Ours, "bridge", "ADD", &id, "net1", &conf);
        assert!(out.ok, "{v}: {} {}", out.stdout, out.stderr);
        let r = out.json();
        assert_eq!(r["cniVersion"], *v);
        let ifs = r["interfaces"].as_array().expect("interfaces");
        assert_eq!(ifs.len(), 3, "{v}: {r}");
        assert_eq!(ifs[0]["name"], "multus-bridge");
        assert!(ifs[1]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("veth")));
        assert_eq!(ifs[2]["name"], "net1");
        assert_eq!(ifs[2]["sandbox"], common::path_str(&env.pod.path()));
        let ip = &r["ips"][0];
        assert_eq!(ip["address"], "192.168.100.2/24");
        assert_eq!(ip["gateway"], "192.168.100.1");
        assert_eq!(ip["interface"], 2);
        assert_eq!(
            ip.get("version").is_some(),
            v.starts_with('0'),
            "{v}: ips[].version"
        );
        // The container side carries the address and the MAC the result reports.
        let link = &env.pod.ip_json(&["addr", "show", "dev", "net1"])[0];
        assert_eq!(link["address"], ifs[2]["mac"]);
        assert!(common::has_addr(link, "192.168.100.2"));
        // The host side is a port of the bridge.
        let port = &env.node.ip_json(&[
            "link",
            "show",
            "dev",
            ifs[1]["name"].as_str().expect("veth"),
        ])[0];
        assert_eq!(port["master"], "multus-bridge");
        assert_eq!(env.allocations("multus-br"), vec!["192.168.100.2"]);
        let stored =
            std::fs::read(env.data.path().join("multus-br/192.168.100.2")).expect("ip file");
        assert_eq!(stored, format!("{id}\r\nnet1").as_bytes());

        if *v >= "0.4.0" {
            let mut check = conf.clone();
            check["prevResult"] = r.clone();
            let c = env.run(Impl::Ours, "bridge", "CHECK", &id, "net1", &check);
            assert!(c.ok, "{v} CHECK: {}", c.stdout);
            // Remove the address: CHECK must notice.
            env.pod
                .sh(&["ip", "addr", "del", "192.168.100.2/24", "dev", "net1"]);
            env.run(Impl::Ours, "bridge", "CHECK", &id, "net1", &check)
                .must_fail("192.168.100.2");
        } else {
            let mut check = conf.clone();
            check["prevResult"] = r.clone();
            let c = env.run(Impl::Ours, "bridge", "CHECK", &id, "net1", &check);
            assert_eq!(c.code(), 1, "{v}: CHECK must be refused before 0.4.0");
        }

        let d = env.run(Impl::Ours, "bridge", "DEL", &id, "net1", &conf);
        assert!(d.ok, "{v} DEL: {}", d.stdout);
        // The name is free at once; the kernel's teardown of the pair finishes shortly after.
        assert!(!env.pod.has_link("net1"));
        assert!(env.allocations("multus-br").is_empty());
        assert!(
            eventually(Duration::from_secs(5), || env.node_links()
                == ["lo", "multus-bridge"]
                && common::links(&env.pod) == ["lo"]),
            "{v}: veth pair left behind: {:?} / {:?}",
            env.node_links(),
            common::links(&env.pod)
        );
        // DEL again: idempotent.
        let d = env.run(Impl::Ours, "bridge", "DEL", &id, "net1", &conf);
        assert!(d.ok, "{v} second DEL: {}", d.stdout);
    }
}

/// Runs the same configs through the reference and ours in twin namespaces and compares
/// results and the state left behind.
#[root_test(reference)]
fn same_results_and_state_as_reference() {
    let variants: Vec<(&str, Value)> = vec![
        ("seed", json!({})),
        ("gateway", json!({"isGateway": true})),
        ("default-gateway", json!({"isDefaultGateway": true})),
        ("hairpin", json!({"hairpinMode": true, "mtu": 1400})),
        ("promisc", json!({"promiscMode": true})),
        (
            "routes",
            json!({"ipam": {"routes": [{"dst": "10.20.0.0/16"}, {"dst": "10.30.0.0/16", "gw": "192.168.100.254"}]}}),
        ),
        (
            "dual-stack",
            json!({"isGateway": true, "ipam": {"subnet": null, "ranges": [[{"subnet": "192.168.100.0/24"}], [{"subnet": "fd00:100::/64"}]]}}),
        ),
        (
            "range",
            json!({"ipam": {"rangeStart": "192.168.100.50", "rangeEnd": "192.168.100.60", "gateway": "192.168.100.254"}}),
        ),
        ("l2-only", json!({"ipam": {}})),
        (
            "mac",
            json!({"args": {"cni": {"mac": "0a:58:c0:a8:64:99"}}}),
        ),
    ];
    for v in DIFF_VERSIONS {
        for (name, extra) in &variants {
            let mut seen = Vec::new();
            for imp in [Impl::Reference, Impl::Ours] {
                let env = Env::new();
                let conf = env.seed_conf(v, extra.clone());
                let out = env.run(imp, "bridge", "ADD", "ctr1", "net1", &conf);
                assert!(out.ok, "{imp:?} {v} {name}: {} {}", out.stdout, out.stderr);
                let result = normalise(&out.json());
                let state = bridge_state(&env, "multus-bridge", "net1");
                let files = env.allocations("multus-br");
                let d = env.run(imp, "bridge", "DEL", "ctr1", "net1", &conf);
                assert!(d.ok, "{imp:?} {v} {name} DEL: {}", d.stdout);
                let gone = eventually(Duration::from_secs(5), || {
                    env.node_links() == ["lo", "multus-bridge"]
                });
                let after = (gone, env.allocations("multus-br"), env.pod.has_link("net1"));
                seen.push((result, state, files, after));
            }
            let (theirs, ours) = (&seen[0], &seen[1]);
            assert_eq!(ours.0, theirs.0, "{v} {name}: result differs");
            assert_eq!(ours.1, theirs.1, "{v} {name}: state differs");
            assert_eq!(ours.2, theirs.2, "{v} {name}: host-local files differ");
            assert_eq!(ours.3, theirs.3, "{v} {name}: state after DEL differs");
        }
    }
}

#[root_test(reference)]
fn mixed_use_with_reference_host_local() {
    let env = Env::new();
    let conf = env.seed_conf("1.0.0", json!({}));
    // Reference allocates, ours continues round-robin, then each releases the other's.
    // (who, command, container, ifname, the address ADD must hand out)
    let steps = [
        (Impl::Reference, "ADD", "ref1", "net1", "192.168.100.2/24"),
        (Impl::Ours, "ADD", "our1", "net2", "192.168.100.3/24"),
        (Impl::Reference, "ADD", "ref2", "net3", "192.168.100.4/24"),
        (Impl::Ours, "DEL", "ref1", "net1", ""),
        (Impl::Reference, "DEL", "our1", "net2", ""),
        (Impl::Ours, "ADD", "our2", "net4", "192.168.100.5/24"),
        (Impl::Ours, "DEL", "ref2", "net3", ""),
        (Impl::Reference, "DEL", "our2", "net4", ""),
    ];
    for (i, (imp, cmd, id, ifname, want)) in steps.into_iter().enumerate() {
        let out = env
            .run(imp, "bridge", cmd, id, ifname, &conf)
            .must(&format!("step {i}: {imp:?} {cmd} {id}"));
        if cmd == "ADD" {
            assert_eq!(out.address(), want, "step {i}");
        }
        if i == 4 {
            assert_eq!(env.allocations("multus-br"), vec!["192.168.100.4"]);
        }
    }
    assert!(env.allocations("multus-br").is_empty());
}

#[root_test]
fn failed_add_leaves_nothing_behind() {
    // 1. Pool exhausted: the only address is taken.
    let env = Env::new();
    let conf = env.seed_conf(
        "1.0.0",
        json!({"ipam": {"rangeStart": "192.168.100.10", "rangeEnd": "192.168.100.10"}}),
    );
    env.run(Impl::Ours, "bridge", "ADD", "first", "net1", &conf)
        .must("call");
    let before = env.node_links();
    env.run(Impl::Ours, "bridge", "ADD", "second", "net2", &conf)
        .must_fail("no IP addresses available");
    assert_eq!(
        env.node_links(),
        before,
        "veth left behind after IPAM failure"
    );
    assert!(!env.pod.has_link("net2"));
    assert_eq!(env.allocations("multus-br"), vec!["192.168.100.10"]);

    // 2. Interface name taken in the container.
    let env = Env::new();
    env.pod.sh(&[
        "ip", "link", "add", "net1", "type", "veth", "peer", "name", "other",
    ]);
    let conf = env.seed_conf("1.0.0", json!({}));
    env.run(Impl::Ours, "bridge", "ADD", "c1", "net1", &conf)
        .must_fail("net1");
    assert_eq!(env.node_links(), vec!["lo"], "nothing may be created");
    assert!(env.allocations("multus-br").is_empty());

    // 3. Netns gone: code 3, nothing created.
    let env = Env::new();
    let conf = env.seed_conf("1.0.0", json!({}));
    let out = env
        .cni(Impl::Ours, "bridge")
        .netns("/run/netns/oxivirt-does-not-exist")
        .container("c1")
        .ifname("net1")
        .run("ADD", &conf);
    assert_eq!(out.code(), 3, "{}", out.stdout);
    assert_eq!(env.node_links(), vec!["lo"]);
    assert!(env.allocations("multus-br").is_empty());

    // 4. Gateway address conflict on the bridge (after IPAM ran): IP released, veth gone.
    let env = Env::new();
    env.node
        .sh(&["ip", "link", "add", "multus-bridge", "type", "bridge"]);
    env.node
        .sh(&["ip", "addr", "add", "10.9.9.1/24", "dev", "multus-bridge"]);
    let conf = env.seed_conf("1.0.0", json!({"isGateway": true}));
    env.run(Impl::Ours, "bridge", "ADD", "c1", "net1", &conf)
        .must_fail("already has an IP address");
    assert_eq!(env.node_links(), vec!["lo", "multus-bridge"]);
    assert!(!env.pod.has_link("net1"));
    assert!(env.allocations("multus-br").is_empty());
    // forceAddress replaces it.
    let conf = env.seed_conf("1.0.0", json!({"isGateway": true, "forceAddress": true}));
    env.run(Impl::Ours, "bridge", "ADD", "c1", "net1", &conf)
        .must("call");
    let br = &env.node.ip_json(&["addr", "show", "dev", "multus-bridge"])[0];
    let addrs: Vec<&str> = br["addr_info"]
        .as_array()
        .expect("a")
        .iter()
        .filter_map(|a| a["local"].as_str())
        .collect();
    assert!(
        addrs.contains(&"192.168.100.1") && !addrs.contains(&"10.9.9.1"),
        "{addrs:?}"
    );
}

#[root_test]
fn del_is_idempotent_and_releases_without_netns() {
    let env = Env::new();
    let conf = env.seed_conf("1.0.0", json!({}));
    env.run(Impl::Ours, "bridge", "ADD", "c1", "net1", &conf)
        .must("call");
    // The interface vanished (the runtime tore the netns down) : DEL still frees the IP.
    env.pod.sh(&["ip", "link", "del", "net1"]);
    env.run(Impl::Ours, "bridge", "DEL", "c1", "net1", &conf)
        .must("call");
    assert!(env.allocations("multus-br").is_empty());
    // DEL of something never added.
    env.run(Impl::Ours, "bridge", "DEL", "never", "net1", &conf)
        .must("call");
}

#[root_test("nft")]
fn ip_masq_and_macspoofchk_rules_come_and_go() {
    let env = Env::new();
    let conf = env.seed_conf(
        "1.0.0",
        json!({"isGateway": true, "ipMasq": true, "macspoofchk": true}),
    );
    let out = env.run(Impl::Ours, "bridge", "ADD", "c1", "net1", &conf);
    assert!(out.ok, "{}", out.stdout);
    let mac = out.json()["interfaces"][2]["mac"]
        .as_str()
        .expect("mac")
        .to_string();
    let rules = env.node.sh(&["nft", "list", "ruleset"]);
    assert!(
        rules.contains("ip saddr 192.168.100.2 ip daddr != 192.168.100.0/24"),
        "{rules}"
    );
    assert!(
        rules.contains("masquerade comment \"oxivirt:multus-br:c1:net1\""),
        "{rules}"
    );
    assert!(
        rules.contains(&format!("ether saddr != {mac} drop")),
        "{rules}"
    );
    env.run(Impl::Ours, "bridge", "DEL", "c1", "net1", &conf)
        .must("call");
    let rules = env.node.sh(&["nft", "list", "ruleset"]);
    assert!(!rules.contains("oxivirt:multus-br:c1:net1"), "{rules}");
}

#[root_test("nft")]
fn gc_and_status() {
    let env = Env::new();
    let conf = env.seed_conf("1.1.0", json!({"ipMasq": true, "ipam": {"rangeStart": "192.168.100.10", "rangeEnd": "192.168.100.12"}}));
    for (id, ifn) in [("a", "net1"), ("b", "net2"), ("c", "net3")] {
        env.run(Impl::Ours, "bridge", "ADD", id, ifn, &conf)
            .must("call");
    }
    // Pool full: STATUS says not available (50).
    let st = env.run(Impl::Ours, "bridge", "STATUS", "", "", &conf);
    assert_eq!(st.code(), 50, "{}", st.stdout);
    // GC with only "b" valid releases a and c (addresses and masquerade rules).
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "b", "ifname": "net2"}]);
    let out = env.run(Impl::Ours, "bridge", "GC", "", "", &gc);
    assert!(out.ok, "{}", out.stdout);
    assert_eq!(env.allocations("multus-br"), vec!["192.168.100.11"]);
    let rules = env.node.sh(&["nft", "list", "ruleset"]);
    assert!(
        rules.contains("oxivirt:multus-br:b:net2") && !rules.contains("oxivirt:multus-br:a:net1"),
        "{rules}"
    );
    env.run(Impl::Ours, "bridge", "STATUS", "", "", &conf)
        .must("call");
}

#[root_test]
fn port_options_and_l2() {
    let env = Env::new();
    let conf = env.seed_conf(
        "1.0.0",
        json!({"portIsolation": true, "hairpinMode": true, "ipam": {}}),
    );
    let out = env.run(Impl::Ours, "bridge", "ADD", "c1", "net1", &conf);
    assert!(out.ok, "{}", out.stdout);
    assert!(out.json().get("ips").is_none());
    let ports = env
        .node
        .ip_json(&["-d", "link", "show", "master", "multus-bridge"]);
    let s = &ports[0]["linkinfo"]["info_slave_data"];
    assert_eq!(s["isolated"], true, "{ports}");
    assert_eq!(s["hairpin"], true, "{ports}");
    let l = &env.pod.ip_json(&["link", "show", "dev", "net1"])[0];
    assert_eq!(l["operstate"], "UP");
    // disableContainerInterface leaves it down, and refuses IPAM.
    let conf = env.seed_conf(
        "1.0.0",
        json!({"disableContainerInterface": true, "ipam": {}}),
    );
    env.run(Impl::Ours, "bridge", "ADD", "c2", "net2", &conf)
        .must("call");
    let l = &env.pod.ip_json(&["link", "show", "dev", "net2"])[0];
    assert!(
        !l["flags"]
            .as_array()
            .expect("flags")
            .iter()
            .any(|f| f == "UP"),
        "{l}"
    );
    let conf = env.seed_conf("1.0.0", json!({"disableContainerInterface": true}));
    assert_eq!(
        env.run(Impl::Ours, "bridge", "ADD", "c3", "net3", &conf)
            .code(),
        7
    );
}

/// Bridge VLAN filtering is implemented; whether this kernel has it decides if it runs.
#[root_test]
fn vlan_access_and_trunk() {
    let probe = TestNs::new("oxv");
    let ok = probe
        .exec(&[
            "ip",
            "link",
            "add",
            "b0",
            "type",
            "bridge",
            "vlan_filtering",
            "1",
        ])
        .status
        .success();
    if !ok {
        return oxivirt_testkit::skip(
            "vlan_access_and_trunk",
            "this kernel has no bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)",
        );
    }
    let env = Env::new();
    let conf = env.seed_conf("1.0.0", json!({"vlan": 100, "preserveDefaultVlan": false}));
    let out = env.run(Impl::Ours, "bridge", "ADD", "c1", "net1", &conf);
    assert!(out.ok, "{}", out.stdout);
    let vlans = env.node.sh(&["bridge", "vlan", "show"]);
    assert!(vlans.contains("100 PVID Egress Untagged"), "{vlans}");
    let conf = env.seed_conf(
        "1.0.0",
        json!({"vlanTrunk": [{"id": 5}, {"minID": 10, "maxID": 12}]}),
    );
    env.run(Impl::Ours, "bridge", "ADD", "c2", "net2", &conf)
        .must("call");
    let vlans = env.node.sh(&["bridge", "vlan", "show"]);
    for v in ["5", "10", "11", "12"] {
        assert!(
            vlans.lines().any(|l| l.split_whitespace().any(|w| w == v)),
            "{v}: {vlans}"
        );
    }
}

/// DEL frees the interface name at once and the kernel deletes the pair in the background;
/// an immediate re-ADD with the same name works.
#[root_test]
fn del_frees_the_name_at_once_and_the_pair_goes() {
    let env = Env::new();
    let conf = env.seed_conf("1.0.0", json!({}));
    for round in 0..3 {
        let out = env
            .run(Impl::Ours, "bridge", "ADD", "c1", "net1", &conf)
            .must("ADD");
        let veth = out.json()["interfaces"][1]["name"]
            .as_str()
            .expect("veth")
            .to_string();
        env.run(Impl::Ours, "bridge", "DEL", "c1", "net1", &conf)
            .must("DEL");
        assert!(
            !env.pod.has_link("net1"),
            "round {round}: net1 still there after DEL"
        );
        assert!(
            eventually(Duration::from_secs(5), || !env.node.has_link(&veth)
                && common::links(&env.pod) == ["lo"]),
            "round {round}: retired pair not deleted: {:?}",
            common::links(&env.pod)
        );
    }
    // Back to back, without waiting for the kernel: the name is free.
    env.run(Impl::Ours, "bridge", "ADD", "c2", "net1", &conf)
        .must("ADD");
    env.run(Impl::Ours, "bridge", "DEL", "c2", "net1", &conf)
        .must("DEL");
    env.run(Impl::Ours, "bridge", "ADD", "c3", "net1", &conf)
        .must("re-ADD right after DEL");
    assert_eq!(env.allocations("multus-br").len(), 1);
}

/// An IPAM type we do not implement in-process is exec'd from CNI_PATH with the CNI
/// environment (here the reference host-local under another name).
#[root_test(reference)]
fn delegates_to_an_exec_ipam_plugin() {
    let reference = reference_plugins().expect("the reference plugins");
    let env = Env::new();
    let bin = oxivirt_testkit::cleanup::TempDir::new("bin").expect("bin");
    std::os::unix::fs::symlink(common::our_bin(), bin.path().join("bridge")).expect("link");
    std::os::unix::fs::symlink(
        reference.join("host-local"),
        bin.path().join("third-party-ipam"),
    )
    .expect("link");
    let conf = env.seed_conf("1.0.0", json!({"ipam": {"type": "third-party-ipam"}}));
    let cni = Cni::new(bin.path(), "bridge")
        .in_node(&env.node)
        .netns(env.pod.path())
        .container("x1")
        .ifname("net1");
    let out = cni.run("ADD", &conf).must("ADD via exec'd IPAM");
    assert_eq!(out.json()["ips"][0]["address"], "192.168.100.2/24");
    assert_eq!(env.allocations("multus-br"), vec!["192.168.100.2"]);
    cni.run("DEL", &conf).must("DEL via exec'd IPAM");
    assert!(env.allocations("multus-br").is_empty());
}

/// The container MAC comes from CNI_ARGS, args.cni or runtimeConfig; later ones win.
#[root_test]
fn mac_sources_and_precedence() {
    let env = Env::new();
    let cases = [
        (
            json!({"runtimeConfig": {"mac": "0a:58:00:00:00:03"}, "args": {"cni": {"mac": "0a:58:00:00:00:02"}}}),
            "0a:58:00:00:00:03",
        ),
        (
            json!({"args": {"cni": {"mac": "0a:58:00:00:00:02"}}}),
            "0a:58:00:00:00:02",
        ),
    ];
    for (i, (extra, want)) in cases.iter().enumerate() {
        let conf = env.seed_conf("1.0.0", extra.clone());
        let ifname = format!("net{i}");
        let out = env
            .run(
                Impl::Ours,
                "bridge",
                "ADD",
                &format!("m{i}"),
                &ifname,
                &conf,
            )
            .must("ADD");
        assert_eq!(out.json()["interfaces"][2]["mac"], *want);
        let link = &env.pod.ip_json(&["link", "show", "dev", &ifname])[0];
        assert_eq!(link["address"], *want);
    }
}

/// A link with the bridge's name that is not a bridge is refused, and nothing is left.
#[root_test]
fn existing_non_bridge_is_refused() {
    let env = Env::new();
    env.node.sh(&[
        "ip",
        "link",
        "add",
        "multus-bridge",
        "type",
        "veth",
        "peer",
        "name",
        "mbpeer",
    ]);
    refused_as_not_a_bridge(&env, &["lo", "mbpeer", "multus-bridge"]);
}

/// A master that takes ports but is no bridge (a bond): the veth joins it in the creating
/// request, the check after it refuses the ADD and rolls everything back.
#[root_test]
fn existing_bond_is_refused_after_the_veth_joined() {
    let env = Env::new();
    let made = env
        .node
        .exec(&["ip", "link", "add", "multus-bridge", "type", "bond"]);
    if !made.status.success() {
        return oxivirt_testkit::skip(
            "existing_bond_is_refused_after_the_veth_joined",
            &format!(
                "this kernel cannot make a bond ({})",
                String::from_utf8_lossy(&made.stderr).trim()
            ),
        );
    }
    refused_as_not_a_bridge(&env, &["lo", "multus-bridge"]);
}

/// ADD onto a `multus-bridge` that is not a bridge fails with code 7 and leaves the node
/// with just `node_links`, the pod with nothing and the store empty.
fn refused_as_not_a_bridge(env: &Env, node_links: &[&str]) {
    let conf = env.seed_conf("1.0.0", json!({}));
    let out = env.run(Impl::Ours, "bridge", "ADD", "c1", "net1", &conf);
    assert_eq!(out.code(), 7, "{}", out.stdout);
    assert!(out.msg().contains("is not a bridge"), "{}", out.stdout);
    assert!(
        eventually(Duration::from_secs(5), || env.node_links() == node_links),
        "{:?}",
        env.node_links()
    );
    assert_eq!(common::links(&env.pod), vec!["lo"]);
    assert!(env.allocations("multus-br").is_empty());
}

/// 64 bridge ADDs in parallel on one network, each into its own pod namespace: distinct
/// addresses, 64 ports on the bridge, and 64 parallel DELs leave nothing.
#[root_test]
fn sixty_four_parallel_bridge_adds() {
    let env = Env::new();
    let conf = env.seed_conf("1.0.0", json!({}));
    let pods: Vec<TestNs> = (0..64).map(|_| TestNs::new("oxq")).collect();
    let bridge = env.cni(Impl::Ours, "bridge").ifname("net1");
    let call = |cmd: &str, i: usize| {
        bridge
            .clone()
            .netns(pods[i].path())
            .container(&format!("par{i}"))
            .run(cmd, &conf)
    };
    let ips: BTreeSet<String> = parallel(64, |i| call("ADD", i).address())
        .into_iter()
        .collect();
    assert_eq!(ips.len(), 64, "an address was handed out twice");
    assert_eq!(env.allocations("multus-br").len(), 64);
    let ports = env
        .node
        .ip_json(&["link", "show", "master", "multus-bridge"]);
    assert_eq!(ports.as_array().map(Vec::len), Some(64));
    parallel(64, |i| call("DEL", i).must("DEL"));
    assert!(env.allocations("multus-br").is_empty());
    assert!(
        eventually(Duration::from_secs(10), || env.node_links()
            == ["lo", "multus-bridge"]),
        "{:?}",
        env.node_links()
    );
}

/// `enabledad` turns duplicate address detection on for the container interface (off by
/// default, as the reference), and IPv6 addresses then go through DAD.
#[root_test]
fn enabledad_sets_the_container_sysctls() {
    let env = Env::new();
    let sysctl = |ns: &TestNs, k: &str| {
        ns.sh(&["cat", &format!("/proc/sys/{k}")])
            .trim()
            .to_string()
    };
    let v6 = |dad: bool| {
        let ipam = json!({"subnet": null, "ranges": [[{"subnet": "fd00:100::/64"}]]});
        env.seed_conf("1.0.0", json!({"enabledad": dad, "ipam": ipam}))
    };
    env.run(Impl::Ours, "bridge", "ADD", "d0", "net0", &v6(false))
        .must("ADD without DAD");
    env.run(Impl::Ours, "bridge", "ADD", "d1", "net1", &v6(true))
        .must("ADD with DAD");
    assert_eq!(sysctl(&env.pod, "net/ipv6/conf/net0/accept_dad"), "0");
    assert_eq!(sysctl(&env.pod, "net/ipv6/conf/net1/accept_dad"), "1");
    assert_eq!(sysctl(&env.pod, "net/ipv6/conf/net1/enhanced_dad"), "1");
    assert_eq!(sysctl(&env.pod, "net/ipv4/conf/net1/arp_notify"), "1");
    // Without DAD the address is usable at once; with it, it starts tentative.
    let flags = |dev: &str| {
        env.pod
            .sh(&["ip", "-6", "addr", "show", "dev", dev, "scope", "global"])
    };
    assert!(!flags("net0").contains("tentative"), "{}", flags("net0"));
    // DAD takes about a second; the address is checked a few milliseconds after ADD.
    assert!(flags("net1").contains("tentative"), "{}", flags("net1"));
}
