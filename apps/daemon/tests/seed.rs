//! The seed article end to end on one machine, as a user lives it: `oxivirtd` (API,
//! controllers, pod runtime) in a "node" namespace whose `multus-bridge` has an uplink to
//! an "outside" namespace holding the gateway 192.168.100.1; the test guest served as
//! `quay.io/kubevirt/cirros-container-disk-demo` by a registry in the node; the seed's NAD
//! and `vm-2.yaml` applied with the real `kubectl`; `oxivirt start`; the console session
//! over the API's websocket (`oxivirt console`): login, the guest's addresses, a ping out;
//! the outside pinging the guest and fetching its page; the pod namespace's topology as
//! in the article; then `oxivirt stop` and `kubectl delete`, after which nothing is left.

mod common;

use common::node::*;
use oxivirt_testkit::cleanup::TempDir;
use oxivirt_testkit::cni_env::outside_world;
use oxivirt_testkit::registry::guest_image;
use oxivirt_testkit::{eventually, root_test};
use serde_json::{json, Value};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

#[root_test(vm, "curl", "busybox")]
fn the_seed_article_on_one_machine() {
    if common::kubectl().is_none() {
        eprintln!(
            "SKIP the_seed_article_on_one_machine: no kubectl under /usr/lib/google-cloud-sdk/bin"
        );
        return;
    }
    let image = guest_image();
    let mut s = setup_with(TempDir::new("seed").expect("tmp"), &image);
    s.controllers = true;
    let outside = outside_world(&s.env);
    let node = s.start();

    // The seed's NAD (its quote closed; IPAM kept in the test's dir) and vm-2.yaml verbatim.
    let nad = s.tmp.path().join("multus-bridge.yaml");
    let config = s.env.seed_conf("0.3.1", json!({})).to_string();
    std::fs::write(
        &nad,
        format!("apiVersion: \"k8s.cni.cncf.io/v1\"\nkind: NetworkAttachmentDefinition\nmetadata:\n  name: multus-br\nspec:\n  config: '{config}'\n"),
    )
    .expect("nad");
    let o = kubectl(&node, &["apply", "-f", nad.to_str().expect("path")]);
    assert_eq!(
        out(&o),
        "networkattachmentdefinition.k8s.cni.cncf.io/multus-br created\n"
    );
    let vm_yaml = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/seed/vm-2.yaml");
    let o = kubectl(&node, &["apply", "-f", vm_yaml]);
    assert_eq!(out(&o), "virtualmachine.kubevirt.io/testvm-2 created\n");
    assert!(
        eventually(Duration::from_secs(10), || vm_row(&node, "testvm-2")
            == ("Stopped".into(), "False".into())),
        "kubectl get vm: {:?}",
        vm_row(&node, "testvm-2")
    );

    // virtctl start, as the article.
    let o = oxivirt(&node, &["start", "testvm-2"]);
    assert_eq!(out(&o), "VM testvm-2 was scheduled to start\n", "{o:?}");
    let mut row = (String::new(), String::new());
    assert!(
        eventually(Duration::from_secs(120), || {
            row = vm_row(&node, "testvm-2");
            row == ("Running".into(), "True".into())
        }),
        "kubectl get vm: {row:?}; pods: {}",
        out(&kubectl(&node, &["get", "pods", "-o", "yaml"]))
    );
    let (_, vmi) =
        node.get("/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances/testvm-2");
    let guest_ip = vmi["status"]["interfaces"][1]["ipAddress"]
        .as_str()
        .unwrap_or_else(|| panic!("the guest's bridged address: {vmi}"))
        .to_string();
    assert!(guest_ip.starts_with("192.168.100."), "{guest_ip}");
    let o = kubectl(&node, &["get", "pods", "--no-headers"]);
    let pods = out(&o);
    assert!(pods.starts_with("virt-launcher-testvm-2-"), "{pods}");
    let pod_name = pods.split_whitespace().next().unwrap_or("").to_string();
    let (_, pod) = node.pod(&pod_name);
    let uid = pod["metadata"]["uid"].as_str().expect("uid").to_string();
    let status: Value = serde_json::from_str(
        pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"]
            .as_str()
            .expect("network-status"),
    )
    .expect("json");
    assert_eq!(status[1]["name"], "default/multus-br");
    assert_eq!(status[1]["interface"], "pod2df796c6902");

    // The pod's namespace as in the article.
    let netns = format!(
        "oxv-{}",
        uid.chars()
            .filter(|c| *c != '-')
            .take(12)
            .collect::<String>()
    );
    let links = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-n", &netns, "-o", "link", "show"])
            .output()
            .expect("ip link")
            .stdout,
    )
    .into_owned();
    for l in [
        "k6t-eth0",
        "tap0",
        "k6t-2df796c6902",
        "tap2df796c6902",
        "2df796c6902-nic",
    ] {
        assert!(
            links.contains(&format!(" {l}")),
            "{l} not in the pod's namespace:\n{links}"
        );
    }

    // The console session.
    let mut con = Console::open(&node, "testvm-2");
    con.expect(
        0,
        "Successfully connected to testvm-2 console. The escape sequence is ^]",
        Duration::from_secs(10),
    );
    con.login();
    let mut addrs = String::new();
    assert!(
        eventually(Duration::from_secs(60), || {
            addrs = con.run("ip -4 -o addr show");
            addrs.contains("10.0.2.2/24") && addrs.contains(&format!("{guest_ip}/24"))
        }),
        "the guest's addresses: {addrs}"
    );
    let ping = con.run("ping -c 1 -W 3 192.168.100.1 && echo PING-OK");
    assert!(ping.contains("PING-OK"), "guest → gateway: {ping}");
    // ^] leaves.
    con.child
        .child
        .stdin
        .as_mut()
        .expect("stdin")
        .write_all(&[0x1d])
        .expect("escape");
    assert!(
        eventually(Duration::from_secs(10), || con
            .child
            .child
            .try_wait()
            .ok()
            .flatten()
            .is_some()),
        "^] did not end the console"
    );

    // From outside, over the bridged NIC.
    let p = outside.exec(&["ping", "-c", "1", "-W", "3", &guest_ip]);
    assert!(p.status.success(), "outside → guest ping failed");
    let mut page = String::new();
    assert!(
        eventually(Duration::from_secs(30), || {
            let o = outside.exec(&["curl", "-sS", "-m", "5", &format!("http://{guest_ip}/")]);
            page = String::from_utf8_lossy(&o.stdout).into_owned();
            o.status.success() && page.contains("testvm-2")
        }),
        "HTTP from outside: {page}"
    );

    // Stop, then delete: nothing is left.
    let o = oxivirt(&node, &["stop", "testvm-2"]);
    assert_eq!(out(&o), "VM testvm-2 was scheduled to stop\n", "{o:?}");
    assert!(
        eventually(Duration::from_secs(120), || vm_row(&node, "testvm-2")
            == ("Stopped".into(), "False".into())
            && node.pod(&pod_name).0 == 404),
        "after stop: {:?}, pod {}",
        vm_row(&node, "testvm-2"),
        node.pod(&pod_name).1
    );
    assert!(
        !Command::new("ip")
            .args(["netns", "list"])
            .output()
            .map(|o| out(&o))
            .unwrap_or_default()
            .contains(&netns),
        "the pod's namespace is gone"
    );
    let o = kubectl(&node, &["delete", "-f", vm_yaml]);
    assert_eq!(out(&o), "virtualmachine.kubevirt.io \"testvm-2\" deleted\n");
    let o = kubectl(&node, &["get", "vm,vmi,pods", "--no-headers"]);
    assert_eq!(out(&o), "", "left: {}", String::from_utf8_lossy(&o.stderr));
    let multus_br = PathBuf::from(s.env.data_dir()).join("multus-br");
    let ips: Vec<String> = oxivirt_testkit::dir_names(&multus_br)
        .into_iter()
        .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
        .collect();
    assert!(ips.is_empty(), "IPs left in multus-br: {ips:?}");
    let launchers = s.data().join("launchers/default");
    assert!(
        oxivirt_testkit::dir_names(&launchers).is_empty(),
        "launcher state left: {:?}",
        oxivirt_testkit::dir_names(&launchers)
    );
}
