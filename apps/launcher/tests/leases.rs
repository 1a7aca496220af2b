//! The launcher learns when its DHCP servers acknowledged the guest's leases: the pod of
//! the seed's virt-launcher (as in `network.rs`), a namespace standing in for the guest,
//! busybox's `udhcpc` taking one lease and then the other; each interface is reported
//! once, at the time of its ACK, and the reporter ends with the teardown.

use oxivirt_app_launcher::network::{Binding, GuestIdentity, NicPlan, PodNetwork};
use oxivirt_netlink::format_mac;
use oxivirt_testkit::cni_env::{plug_vm, udhcpc, Env};
use oxivirt_testkit::{root_test, TestNs};
use serde_json::json;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

fn seed_plan() -> Vec<NicPlan> {
    let nic = |name: &str, binding| NicPlan {
        name: name.into(),
        binding,
        mac: None,
        multiqueue: false,
    };
    vec![
        nic(
            "default",
            Binding::Masquerade {
                v4: "10.0.2.0/24".parse().expect("cidr"),
                v6: None,
                ports: Vec::new(),
            },
        ),
        nic("ext-net", Binding::Bridge { ordinal: 1 }),
    ]
}

#[root_test("busybox", "nft")]
fn each_lease_is_reported_once_when_acknowledged() {
    let env = Env::new();
    let pod_net = env.attach("eth0", env.pod_network_conf(false));
    let ext = env.attach("pod2df796c6902", env.seed_conf("0.3.1", json!({})));
    let state = env.data.path().join("launcher");
    let who = GuestIdentity {
        hostname: "testvm-2".into(),
        ..Default::default()
    };
    let mut net = PodNetwork::setup(&env.pod.path(), &state, &seed_plan(), &who).expect("setup");
    let nics = net.nics().to_vec();
    let vm = TestNs::new("oxvl");
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

    // The bridge lease is taken before the reporter is wired: it is reported all the same.
    let before = SystemTime::now();
    let l1 = udhcpc(&vm, "eth1", &env.data.path().join("eth1.env"));
    let after = SystemTime::now();
    assert_eq!(l1.get("ip").map(String::as_str), Some("192.168.100.2"));
    let (tx, rx) = mpsc::channel();
    net.on_lease(move |name, at| {
        let _ = tx.send((name.to_string(), at));
    });
    let (name, at) = rx.recv_timeout(Duration::from_secs(5)).expect("ext-net");
    assert_eq!(name, "ext-net");
    assert!(
        before <= at && at <= after,
        "{before:?} <= {at:?} <= {after:?}"
    );
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "nothing for an interface without a lease"
    );

    let before = SystemTime::now();
    let l0 = udhcpc(&vm, "eth0", &env.data.path().join("eth0.env"));
    let after = SystemTime::now();
    assert_eq!(l0.get("ip").map(String::as_str), Some("10.0.2.2"));
    let (name, at) = rx.recv_timeout(Duration::from_secs(5)).expect("default");
    assert_eq!(name, "default");
    assert!(
        before <= at && at <= after,
        "{before:?} <= {at:?} <= {after:?}"
    );

    // A second lease on eth1: the first time stands.
    udhcpc(&vm, "eth1", &env.data.path().join("eth1b.env"));
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());

    for port in ["vmport0", "vmport1"] {
        env.pod.sh(&["ip", "link", "del", port]);
    }
    net.teardown().expect("teardown");
    // The reporter (holding the sender) is gone with the teardown.
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(1)),
        Err(mpsc::RecvTimeoutError::Disconnected)
    );
    env.detach(&ext);
    env.detach(&pod_net);
}
