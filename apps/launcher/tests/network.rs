//! The launcher's pod side on a pod the CNI suite built as for the seed's virt-launcher pod
//! (pod network on `eth0`, the seed's `multus-br` as `pod2df796c6902` for `ext-net`), with
//! a namespace standing in for the guest on both `k6t-*` bridges and busybox's real
//! `udhcpc` asking the launcher's DHCP servers; teardown puts the pod back as CNI left it.

use oxivirt_app_launcher::network::{Binding, GuestIdentity, NicPlan, PodNetwork};
use oxivirt_netlink::format_mac;
use oxivirt_testkit::cni_env::{links, plug_vm, udhcpc, Env};
use oxivirt_testkit::{root_test, TestNs};
use serde_json::json;

fn seed_plan() -> Vec<NicPlan> {
    vec![
        NicPlan {
            name: "default".into(),
            binding: Binding::Masquerade {
                v4: "10.0.2.0/24".parse().expect("cidr"),
                v6: None,
                ports: Vec::new(),
            },
            mac: None,
            multiqueue: false,
        },
        NicPlan {
            name: "ext-net".into(),
            binding: Binding::Bridge { ordinal: 1 },
            mac: None,
            multiqueue: false,
        },
    ]
}

#[root_test("busybox", "nft")]
fn seed_interfaces_get_their_leases_and_the_pod_is_put_back() {
    let env = Env::new();
    let pod_net = env.attach("eth0", env.pod_network_conf(false));
    let ext = env.attach("pod2df796c6902", env.seed_conf("0.3.1", json!({})));
    let before = links(&env.pod);
    let state = env.data.path().join("launcher");
    let who = GuestIdentity {
        hostname: "testvm-2".into(),
        ..Default::default()
    };
    let mut net = PodNetwork::setup(&env.pod.path(), &state, &seed_plan(), &who).expect("setup");
    let nics = net.nics().to_vec();
    assert_eq!(nics.len(), 2);
    assert_eq!(
        (nics[0].tap.as_str(), nics[0].interface_name.as_str()),
        ("tap0", "eth0")
    );
    assert_eq!(nics[0].address.as_deref(), Some("10.0.2.2/24"));
    assert_eq!(
        (nics[1].tap.as_str(), nics[1].interface_name.as_str()),
        ("tap2df796c6902", "eth1")
    );
    assert_eq!(
        format_mac(&nics[1].mac),
        ext.mac(),
        "the guest takes the pod interface's MAC"
    );
    assert_eq!(nics[1].address.as_deref(), Some("192.168.100.2/24"));

    // A stand-in for the guest on both bridges, asking for its leases.
    let vm = TestNs::new("oxvm");
    for (nic, port, bridge) in [
        (&nics[0], "vmport0", "k6t-eth0"),
        (&nics[1], "vmport1", "k6t-2df796c6902"),
    ] {
        plug_vm(
            &env,
            &vm,
            (port, bridge),
            (&nic.interface_name, &format_mac(&nic.mac)),
            &[],
        );
    }
    let l0 = udhcpc(&vm, "eth0", &env.data.path().join("eth0.env"));
    assert_eq!(l0.get("ip").map(String::as_str), Some("10.0.2.2"));
    assert_eq!(l0.get("router").map(String::as_str), Some("10.0.2.1"));
    assert_eq!(l0.get("hostname").map(String::as_str), Some("testvm-2"));
    let l1 = udhcpc(&vm, "eth1", &env.data.path().join("eth1.env"));
    assert_eq!(l1.get("ip").map(String::as_str), Some("192.168.100.2"));

    for port in ["vmport0", "vmport1"] {
        env.pod.sh(&["ip", "link", "del", port]);
    }
    net.teardown().expect("teardown");
    let restored = oxivirt_testkit::eventually(std::time::Duration::from_secs(5), || {
        links(&env.pod) == before
    });
    assert!(
        restored,
        "the pod's links are as CNI left them: {:?} != {before:?}",
        links(&env.pod)
    );
    let mac_now = env.pod.ip_json(&["link", "show", "dev", "pod2df796c6902"])[0]["address"].clone();
    assert_eq!(mac_now, ext.mac().as_str());
    // The tables go after the links, in the detached process that deletes them.
    let no_nat = || !env.pod.sh(&["nft", "list", "tables"]).contains("nat");
    assert!(
        oxivirt_testkit::eventually(std::time::Duration::from_secs(5), no_nat),
        "the masquerade tables are gone"
    );
    net.teardown().expect("a second teardown is harmless");
    env.detach(&ext);
    env.detach(&pod_net);
}

#[root_test("nft")]
fn a_failed_setup_leaves_the_pod_as_it_was() {
    let env = Env::new();
    let pod_net = env.attach("eth0", env.pod_network_conf(false));
    let before = links(&env.pod);
    // ext-net was never attached: its bridge binding fails after the masquerade one began.
    let state = env.data.path().join("launcher");
    let err = PodNetwork::setup(
        &env.pod.path(),
        &state,
        &seed_plan(),
        &GuestIdentity::default(),
    )
    .expect_err("no pod interface for ext-net");
    let msg = oxivirt_cni_spec::error::chain(&err);
    assert!(msg.contains("ext-net"), "{msg}");
    let restored = oxivirt_testkit::eventually(std::time::Duration::from_secs(5), || {
        links(&env.pod) == before
    });
    assert!(restored, "{:?} != {before:?}", links(&env.pod));
    let no_nat = || !env.pod.sh(&["nft", "list", "tables"]).contains("nat");
    assert!(
        oxivirt_testkit::eventually(std::time::Duration::from_secs(5), no_nat),
        "no masquerade tables left"
    );
    env.detach(&pod_net);
}
