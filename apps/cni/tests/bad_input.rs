//! A corpus of malformed configs and environments: each must be answered with the spec's
//! error code and a message naming what is wrong, never a panic and never a half-built
//! state. Runs inside a throwaway "node" namespace so a case that wrongly got far could
//! not touch the machine's own interfaces.

use oxivirt_testkit::cni_env as common;

use oxivirt_testkit::{root_test, Cni, TestNs};
use serde_json::{json, Value};

struct Case {
    name: &'static str,
    plugin: &'static str,
    stdin: String,
    env: Vec<(&'static str, &'static str)>,
    code: u64,
    says: &'static str,
}

/// Stands for the test's own host-local data directory in the corpus; replaced before a
/// case runs, so a case that wrongly got as far as IPAM writes nowhere shared.
const DATA_DIR: &str = "/@data-dir@";

fn seed(extra: Value) -> String {
    let mut c = json!({
        "cniVersion": "1.0.0", "name": "multus-br", "type": "bridge", "bridge": "multus-bridge",
        "ipam": {"type": "host-local", "subnet": "192.168.100.0/24", "dataDir": DATA_DIR}
    });
    common::merge(&mut c, extra);
    c.to_string()
}

fn ipam(extra: Value) -> String {
    seed(json!({"ipam": extra}))
}

fn case(name: &'static str, stdin: String, code: u64, says: &'static str) -> Case {
    Case {
        name,
        plugin: "bridge",
        stdin,
        env: vec![],
        code,
        says,
    }
}

fn corpus() -> Vec<Case> {
    let mut v = vec![
        case(
            "truncated json",
            r#"{"cniVersion": "1.0.0", "name": "x""#.into(),
            6,
            "EOF",
        ),
        case("empty stdin", String::new(), 6, "EOF"),
        case("not an object", "[1,2]".into(), 7, "network config"),
        case("name wrong type", seed(json!({"name": 5})), 7, "`name`"),
        case("name missing", seed(json!({"name": null})), 7, "`name`"),
        case("name with slash", seed(json!({"name": "a/b"})), 7, "`name`"),
        case("name is dot-dot", seed(json!({"name": ".."})), 7, "`name`"),
        case(
            "old cniVersion",
            seed(json!({"cniVersion": "0.2.0"})),
            1,
            "cniVersion",
        ),
        case(
            "unknown cniVersion",
            seed(json!({"cniVersion": "9.9.9"})),
            1,
            "cniVersion",
        ),
        case(
            "missing cniVersion",
            seed(json!({"cniVersion": null})),
            1,
            "cniVersion",
        ),
        case(
            "subnet prefix 33",
            ipam(json!({"subnet": "192.168.100.0/33"})),
            7,
            "ipam.subnet",
        ),
        case(
            "subnet not a cidr",
            ipam(json!({"subnet": "not-a-cidr"})),
            7,
            "ipam.subnet",
        ),
        case(
            "subnet /32",
            ipam(json!({"subnet": "192.168.100.7/32"})),
            7,
            "too small",
        ),
        case(
            "subnet /31",
            ipam(json!({"subnet": "192.168.100.0/31"})),
            7,
            "too small",
        ),
        case(
            "subnet host bits",
            ipam(json!({"subnet": "192.168.100.5/24"})),
            7,
            "host bits",
        ),
        case(
            "gateway outside subnet",
            ipam(json!({"gateway": "10.0.0.1"})),
            7,
            "gateway",
        ),
        case(
            "rangeStart outside subnet",
            ipam(json!({"rangeStart": "192.168.101.5"})),
            7,
            "rangeStart",
        ),
        case(
            "rangeStart after rangeEnd",
            ipam(json!({"rangeStart": "192.168.100.50", "rangeEnd": "192.168.100.10"})),
            7,
            "after rangeEnd",
        ),
        case(
            "overlapping ranges",
            ipam(
                json!({"subnet": null, "ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "10.1.0.0/25"}]]}),
            ),
            7,
            "overlaps",
        ),
        case(
            "overlapping range sets",
            ipam(
                json!({"subnet": null, "ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.1.0.128/25"}]]}),
            ),
            7,
            "overlaps",
        ),
        case(
            "mixed families in a range set",
            ipam(
                json!({"subnet": null, "ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "fd00::/64"}]]}),
            ),
            7,
            "mixed",
        ),
        case(
            "no ranges",
            seed(json!({"ipam": {"subnet": null}})),
            7,
            "no IP ranges",
        ),
        case(
            "ranges wrong type",
            ipam(json!({"subnet": null, "ranges": "10.0.0.0/8"})),
            7,
            "ipam.ranges",
        ),
        case(
            "dataDir relative",
            ipam(json!({"dataDir": "var/lib/cni"})),
            7,
            "dataDir",
        ),
        case(
            "dataDir with dot-dot",
            ipam(json!({"dataDir": "/var/lib/cni/../../etc"})),
            7,
            "dataDir",
        ),
        case("vlan out of range", seed(json!({"vlan": 5000})), 7, "vlan"),
        case(
            "vlanTrunk min above max",
            seed(json!({"vlanTrunk": [{"minID": 20, "maxID": 10}]})),
            7,
            "vlanTrunk[0]",
        ),
        case(
            "vlanTrunk id zero",
            seed(json!({"vlanTrunk": [{"id": 0}]})),
            7,
            "vlanTrunk[0]",
        ),
        case(
            "vlan and vlanTrunk",
            seed(json!({"vlan": 5, "vlanTrunk": [{"id": 6}]})),
            7,
            "vlanTrunk",
        ),
        case("negative mtu", seed(json!({"mtu": -1})), 7, "mtu"),
        case("mtu wrong type", seed(json!({"mtu": "big"})), 7, "`mtu`"),
        case(
            "hairpin with promisc",
            seed(json!({"hairpinMode": true, "promiscMode": true})),
            7,
            "hairpin",
        ),
        case(
            "bridge name too long",
            seed(json!({"bridge": "a-very-long-bridge-name"})),
            7,
            "`bridge`",
        ),
        case(
            "isGateway wrong type",
            seed(json!({"isGateway": "yes"})),
            7,
            "`isGateway`",
        ),
        case(
            "ipMasqBackend unknown",
            seed(json!({"ipMasqBackend": "pf"})),
            7,
            "ipMasqBackend",
        ),
        case(
            "args.cni.mac invalid",
            seed(json!({"args": {"cni": {"mac": "zz:zz"}}})),
            7,
            "args.cni.mac",
        ),
        case(
            "runtimeConfig.mac invalid",
            seed(json!({"runtimeConfig": {"mac": "01:02"}})),
            7,
            "runtimeConfig.mac",
        ),
        case(
            "ipam type is a path",
            ipam(json!({"type": "../../bin/sh"})),
            7,
            "not a valid plugin name",
        ),
        case(
            "routes with bad dst",
            ipam(json!({"routes": [{"dst": "nowhere"}]})),
            7,
            "ipam.routes[0].dst",
        ),
        case(
            "requested IP not an address",
            seed(json!({"args": {"cni": {"ips": ["banana"]}}})),
            7,
            "args.cni.ips[0]",
        ),
        case(
            "disableContainerInterface with IPAM",
            seed(json!({"disableContainerInterface": true})),
            7,
            "disableContainerInterface",
        ),
    ];
    let macvlan = |extra: Value| {
        let mut c = json!({"cniVersion": "1.0.0", "name": "mv", "type": "macvlan", "master": "uplink0", "ipam": {}});
        common::merge(&mut c, extra);
        c.to_string()
    };
    v.push(Case {
        plugin: "macvlan",
        ..case(
            "macvlan bad mode",
            macvlan(json!({"mode": "bogus"})),
            7,
            "mode",
        )
    });
    v.push(Case {
        plugin: "macvlan",
        ..case(
            "macvlan missing master",
            macvlan(json!({"master": "nosuchlink0"})),
            7,
            "master",
        )
    });
    v.push(Case {
        plugin: "macvlan",
        ..case(
            "macvlan mac in passthru",
            macvlan(json!({"mode": "passthru", "args": {"cni": {"mac": "0a:00:00:00:00:01"}}})),
            7,
            "passthru",
        )
    });
    let stat = |ipam: Value| {
        json!({"cniVersion": "1.0.0", "name": "st", "type": "bridge", "ipam": ipam}).to_string()
    };
    v.push(Case {
        plugin: "static",
        ..case(
            "static address not cidr",
            stat(json!({"type": "static", "addresses": [{"address": "10.0.0.1"}]})),
            7,
            "ipam.addresses[0].address",
        )
    });
    v.push(Case {
        plugin: "static",
        ..case("static gateway family", stat(json!({"type": "static", "addresses": [{"address": "10.0.0.1/24", "gateway": "fd00::1"}]})), 7, "gateway")
    });
    let env = |name, env: Vec<(&'static str, &'static str)>, code, says| Case {
        env,
        ..case(name, seed(json!({})), code, says)
    };
    v.push(env(
        "missing CNI_COMMAND",
        vec![("CNI_COMMAND", "")],
        4,
        "CNI_COMMAND",
    ));
    v.push(env(
        "unknown CNI_COMMAND",
        vec![("CNI_COMMAND", "FROB")],
        4,
        "CNI_COMMAND",
    ));
    v.push(env(
        "missing CNI_CONTAINERID",
        vec![("CNI_CONTAINERID", "")],
        4,
        "CNI_CONTAINERID",
    ));
    v.push(env(
        "bad CNI_CONTAINERID",
        vec![("CNI_CONTAINERID", "../etc")],
        4,
        "CNI_CONTAINERID",
    ));
    v.push(env(
        "missing CNI_NETNS",
        vec![("CNI_NETNS", "")],
        4,
        "CNI_NETNS",
    ));
    v.push(env(
        "missing CNI_IFNAME",
        vec![("CNI_IFNAME", "")],
        4,
        "CNI_IFNAME",
    ));
    v.push(env(
        "CNI_IFNAME over 15 bytes",
        vec![("CNI_IFNAME", "averyveryverylongifname")],
        4,
        "longer than 15",
    ));
    v.push(env(
        "CNI_IFNAME with slash",
        vec![("CNI_IFNAME", "a/b")],
        4,
        "CNI_IFNAME",
    ));
    v.push(env(
        "netns does not exist",
        vec![("CNI_NETNS", "/run/netns/oxivirt-no-such-ns")],
        3,
        "netns",
    ));
    v.push(env(
        "netns is not a namespace",
        vec![("CNI_NETNS", "/etc/hostname")],
        3,
        "not a network namespace",
    ));
    v.push(env(
        "malformed CNI_ARGS",
        vec![("CNI_ARGS", "novalue")],
        4,
        "CNI_ARGS",
    ));
    v.push(env(
        "unknown CNI_ARGS key",
        vec![("CNI_ARGS", "FOO=bar")],
        4,
        "FOO",
    ));
    v.push(env(
        "CNI_ARGS IP not an address",
        vec![("CNI_ARGS", "IP=300.1.1.1")],
        7,
        "CNI_ARGS IP",
    ));
    v.push(Case {
        env: vec![("CNI_COMMAND", "CHECK")],
        ..case("CHECK without prevResult", seed(json!({})), 7, "prevResult")
    });
    v.push(Case {
        env: vec![("OXIVIRT_CNI_NODE_CONFIG", "@policy")],
        ..case(
            "dataDir outside the allowed root",
            ipam(json!({"dataDir": "/etc/cni-steal"})),
            7,
            "outside the directories",
        )
    });
    v.push(Case {
        plugin: "host-local",
        ..case(
            "host-local missing ipam",
            json!({"cniVersion": "1.0.0", "name": "n", "type": "x"}).to_string(),
            7,
            "ipam",
        )
    });
    v
}

#[root_test]
fn malformed_input_is_answered_with_the_right_code() {
    let node = TestNs::new("oxb");
    let pod = TestNs::new("oxq");
    let dir = common::our_dir();
    let policy = tempfile::NamedTempFile::new().expect("policy");
    std::fs::write(
        policy.path(),
        r#"{"hostLocalDataDirRoots": ["/var/lib/cni/networks", "/tmp"]}"#,
    )
    .expect("write");
    let policy_path = policy.path().display().to_string();
    let cases = corpus();
    assert!(cases.len() >= 30, "corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let data = oxivirt_testkit::cleanup::TempDir::new("cni").expect("data dir");
        let index = data.path().join(".index");
        // A case's variables are set last: they override (or blank) the good defaults.
        let cni = c.env.iter().fold(
            Cni::new(&dir, c.plugin)
                .in_node(&node)
                .netns(pod.path())
                .container("ctr-bad")
                .ifname("net1")
                .env("OXIVIRT_IPAM_INDEX_DIR", index.display().to_string()),
            |cni, (k, v)| match *k {
                "OXIVIRT_CNI_NODE_CONFIG" => cni.env(k, policy_path.clone()),
                _ => cni.env(k, *v),
            },
        );
        let data_dir = data.path().display().to_string();
        let out = cni.run_stdin("ADD", &c.stdin.replace(DATA_DIR, &data_dir));
        let parsed: Option<Value> = serde_json::from_str(&out.stdout).ok();
        let code = parsed
            .as_ref()
            .and_then(|p| p["code"].as_u64())
            .unwrap_or(0);
        let msg = parsed
            .as_ref()
            .and_then(|p| p["msg"].as_str())
            .unwrap_or("")
            .to_string();
        if out.ok || code != c.code || !msg.contains(c.says) || out.stderr.contains("panicked") {
            failures.push(format!(
                "{}: expected code {} mentioning {:?}, got ok={} {}{}",
                c.name, c.code, c.says, out.ok, out.stdout, out.stderr
            ));
        }
    }
    // Nothing was built by any of them.
    assert_eq!(
        common::links(&node),
        vec!["lo"],
        "a bad-input case created links on the node"
    );
    assert_eq!(
        common::links(&pod),
        vec!["lo"],
        "a bad-input case created links in the pod"
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// A delegate IPAM plugin that does not exist fails after the veth was made: rollback.
#[root_test]
fn missing_ipam_plugin_rolls_back() {
    let env = common::Env::new();
    let conf = env.seed_conf("1.0.0", json!({"ipam": {"type": "no-such-ipam"}}));
    let out = env.run(common::Impl::Ours, "bridge", "ADD", "c1", "net1", &conf);
    assert_eq!(out.code(), 7, "{}", out.stdout);
    assert!(out.json()["msg"]
        .as_str()
        .unwrap_or("")
        .contains("no-such-ipam"));
    assert_eq!(
        env.node_links(),
        vec!["lo"],
        "veth and new bridge must be rolled back"
    );
    assert_eq!(common::links(&env.pod), vec!["lo"]);
}
