//! `macvlan` in real namespaces: the master is a veth in the node namespace (this kernel
//! cannot make macvlans on loopback), compared with the reference plugin.

use oxivirt_testkit::cni_env as common;

use common::{normalise, Env, Impl};
use oxivirt_testkit::root_test;
use serde_json::{json, Value};

fn macvlan_env() -> Env {
    let env = Env::new();
    env.node.sh(&[
        "ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p",
    ]);
    env.node.sh(&["ip", "link", "set", "uplink0", "up"]);
    env.node.sh(&["ip", "link", "set", "uplink0p", "up"]);
    env
}

fn conf(env: &Env, version: &str, extra: Value) -> Value {
    let mut c = json!({
        "cniVersion": version, "name": "mvnet", "type": "macvlan", "master": "uplink0",
        "ipam": {"type": "host-local", "subnet": "192.168.100.0/24", "dataDir": env.data_dir()}
    });
    common::merge(&mut c, extra);
    c
}

fn state(env: &Env) -> Value {
    let l = &env.pod.ip_json(&["-d", "addr", "show", "dev", "net1"])[0];
    let addrs: Vec<String> = l["addr_info"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|x| x["scope"] != "link")
                .map(|x| format!("{}/{}", x["local"], x["prefixlen"]))
                .collect()
        })
        .unwrap_or_default();
    let routes = env.pod.ip_json(&["route", "show"]);
    json!({
        "kind": l["linkinfo"]["info_kind"],
        "mode": l["linkinfo"]["info_data"]["mode"],
        "mtu": l["mtu"],
        "operstate": l["operstate"],
        "addrs": addrs,
        "routes": routes,
    })
}

#[root_test(reference)]
fn macvlan_matches_reference() {
    let variants = [
        ("bridge", json!({})),
        ("private-mtu", json!({"mode": "private", "mtu": 1400})),
        (
            "vepa-routes",
            json!({"mode": "vepa", "ipam": {"routes": [{"dst": "0.0.0.0/0"}]}}),
        ),
        ("l2", json!({"ipam": {}})),
    ];
    for v in ["0.3.1", "0.4.0", "1.0.0"] {
        for (name, extra) in &variants {
            let mut seen = Vec::new();
            for imp in [Impl::Reference, Impl::Ours] {
                let env = macvlan_env();
                let c = conf(&env, v, extra.clone());
                let out = env
                    .run(imp, "macvlan", "ADD", "m1", "net1", &c)
                    .must(&format!("{imp:?} {v} {name}"));
                let result = normalise(&out.json());
                let st = state(&env);
                if v != "0.3.1" {
                    let mut chk = c.clone();
                    chk["prevResult"] = out.json();
                    env.run(imp, "macvlan", "CHECK", "m1", "net1", &chk)
                        .must("CHECK");
                }
                env.run(imp, "macvlan", "DEL", "m1", "net1", &c).must("DEL");
                seen.push((
                    result,
                    st,
                    env.allocations("mvnet"),
                    env.pod.has_link("net1"),
                ));
            }
            assert_eq!(
                seen[1], seen[0],
                "{v} {name}: ours differs from the reference"
            );
        }
    }
}

#[root_test]
fn macvlan_passthru_mac_and_failures() {
    let env = macvlan_env();
    let c = conf(
        &env,
        "1.0.0",
        json!({"args": {"cni": {"mac": "0a:58:00:00:00:42"}}}),
    );
    let out = env
        .run(Impl::Ours, "macvlan", "ADD", "m1", "net1", &c)
        .must("ADD with MAC");
    assert_eq!(out.json()["interfaces"][0]["mac"], "0a:58:00:00:00:42");
    env.run(Impl::Ours, "macvlan", "DEL", "m1", "net1", &c)
        .must("DEL");
    // MTU above the master's is refused before anything is made.
    let c = conf(&env, "1.0.0", json!({"mtu": 9000}));
    let out = env.run(Impl::Ours, "macvlan", "ADD", "m2", "net1", &c);
    assert_eq!(out.code(), 7, "{}", out.stdout);
    assert!(!env.pod.has_link("net1"));
    assert!(env.allocations("mvnet").is_empty());
    // IPAM exhaustion after the link was made: the link goes again.
    let c = conf(
        &env,
        "1.0.0",
        json!({"ipam": {"rangeStart": "192.168.100.9", "rangeEnd": "192.168.100.9"}}),
    );
    env.run(Impl::Ours, "macvlan", "ADD", "m3", "net1", &c)
        .must("first");
    let out = env.run(Impl::Ours, "macvlan", "ADD", "m4", "net2", &c);
    assert!(!out.ok);
    assert!(
        !env.pod.has_link("net2"),
        "macvlan left behind after IPAM failure"
    );
    assert_eq!(env.allocations("mvnet"), vec!["192.168.100.9"]);
    // passthru takes the master's MAC.
    let env = macvlan_env();
    let c = conf(&env, "1.0.0", json!({"mode": "passthru", "ipam": {}}));
    env.run(Impl::Ours, "macvlan", "ADD", "p1", "net1", &c)
        .must("passthru");
    let l = &env.pod.ip_json(&["-d", "link", "show", "dev", "net1"])[0];
    assert_eq!(l["linkinfo"]["info_data"]["mode"], "passthru");
}
