//! The pod runtime in a real `oxivirtd`, run inside a test "node" network namespace with a
//! real registry there (the seed's containerDisk through the `quay.io` mirror, a disk that
//! does not boot: the guest sits in the BIOS), our CNI plugins and `oxivirt-multus` from
//! this build, and the seed's NAD. A VMI and its launcher Pod are created as the
//! controller does (docs/lifecycle.md); the daemon does the rest.

mod common;

use common::node::*;

use oxivirt_testkit::{eventually, root_test};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The seed's VM as its VMI (grace 1 s: the BIOS ignores ACPI power-down), with `image`.
fn vmi(name: &str, image: &str) -> Value {
    let seed = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/seed/vm-2.yaml");
    let mut v = oxivirt_api::read_instance(Path::new(seed)).expect("seed");
    v.spec.termination_grace_period_seconds = Some(1);
    for vol in v.spec.volumes.iter_mut() {
        if let Some(cd) = vol.container_disk.as_mut() {
            cd.image = image.into();
        }
    }
    let mut j = serde_json::to_value(&v).expect("json");
    j["metadata"] = json!({"name": name, "namespace": "default"});
    j
}

/// The launcher Pod as the controller makes it (docs/lifecycle.md).
fn launcher_pod(name: &str, vmi: &str, vmi_uid: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "default",
            "labels": {"kubevirt.io": "virt-launcher", "kubevirt.io/created-by": vmi_uid,
                       "vm.kubevirt.io/name": vmi},
            "annotations": {
                "kubevirt.io/domain": vmi,
                "k8s.v1.cni.cncf.io/networks":
                    r#"[{"name":"multus-br","namespace":"default","interface":"pod2df796c6902"}]"#,
            },
            "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                "name": vmi, "uid": vmi_uid, "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": {
            "nodeName": NODE, "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "compute", "image": "oxivirt-launcher"}],
        },
    })
}

fn waiting_reason(pod: &Value) -> String {
    pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn ns_links(ns: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-j", "-n", ns, "link", "show"])
        .output()
        .expect("ip");
    serde_json::from_slice::<Value>(&out.stdout)
        .ok()
        .and_then(|v| {
            v.as_array().map(|a| {
                a.iter()
                    .filter_map(|l| l["ifname"].as_str().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default()
}

fn ip_files(dir: &Path) -> Vec<String> {
    oxivirt_testkit::dir_names(dir)
        .into_iter()
        .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
        .collect()
}

fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

/// The seed's NAD, with its IPAM store in the test's data dir.
fn apply_nad(s: &Setup, node: &Node) {
    let nad = json!({
        "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "multus-br", "namespace": "default"},
        "spec": {"config": s.env.seed_conf("0.3.1", json!({})).to_string()},
    });
    node.create(
        "/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions",
        &nad,
    );
}

/// A VMI of the seed and its launcher pod; waits for the pod to be Running and ready and
/// returns (pod uid, the pod's network namespace name).
fn run_vm(node: &Node, vm: &str, pod_name: &str) -> (String, String) {
    let v = node.create(
        "/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances",
        &vmi(vm, "quay.io/kubevirt/cirros-container-disk-demo"),
    );
    let vmi_uid = v["metadata"]["uid"].as_str().expect("uid").to_string();
    let p = node.create(
        "/api/v1/namespaces/default/pods",
        &launcher_pod(pod_name, vm, &vmi_uid),
    );
    let uid = p["metadata"]["uid"].as_str().expect("uid").to_string();
    let mut pod = Value::Null;
    let running = eventually(Duration::from_secs(90), || {
        pod = node.pod(pod_name).1;
        pod["status"]["phase"] == "Running"
            && pod["status"]["containerStatuses"][0]["ready"] == true
    });
    assert!(running, "the pod is not Running and ready: {pod:#}");
    let netns = format!(
        "oxv-{}",
        uid.chars()
            .filter(|c| *c != '-')
            .take(12)
            .collect::<String>()
    );
    (uid, netns)
}

#[root_test(vm, "curl")]
fn a_vm_that_ends_finishes_its_pod_and_a_crash_leftover_is_cleaned_up() {
    let s = setup();
    let mut node = s.start();
    apply_nad(&s, &node);

    // QEMU killed: the launcher ends Failed, so do the pod and the VMI; the sandbox goes.
    let (_, netns) = run_vm(&node, "testvm-2", "virt-launcher-testvm-2-aaaaa");
    let state = s.data().join("launchers/default/testvm-2");
    let qemu = read_json(&state.join("status.json"))["qemuPid"]
        .as_i64()
        .expect("QEMU's pid");
    // SAFETY: kill has no memory effects; the pid is the running VM's QEMU.
    unsafe { libc::kill(qemu as libc::pid_t, libc::SIGKILL) };
    let mut pod = Value::Null;
    assert!(
        eventually(Duration::from_secs(30), || {
            pod = node.pod("virt-launcher-testvm-2-aaaaa").1;
            pod["status"]["phase"] == "Failed"
        }),
        "{pod:#}"
    );
    let term = &pod["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_ne!(term["exitCode"], 0, "{pod:#}");
    let vmi = node
        .get("/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances/testvm-2")
        .1;
    assert_eq!(vmi["status"]["phase"], "Failed", "{vmi:#}");
    let why = vmi["status"]["conditions"][0]["message"]
        .as_str()
        .unwrap_or("");
    assert!(why.contains("QEMU"), "{vmi:#}");
    assert!(!Path::new("/run/netns").join(&netns).exists(), "netns left");
    assert!(ip_files(&s.env.data.path().join("multus-br")).is_empty());
    // A finished pod is deleted at once; its state dir goes with it.
    node.api(
        "DELETE",
        "/api/v1/namespaces/default/pods/virt-launcher-testvm-2-aaaaa",
        None,
        "application/json",
    );
    assert!(eventually(Duration::from_secs(10), || !state.exists()));

    // A launcher whose pod this node no longer has (here: the daemon comes back as
    // another node) is stopped and everything of it cleaned up on start.
    let (uid, netns) = run_vm(&node, "testvm-3", "virt-launcher-testvm-3-bbbbb");
    let record = read_json(&s.data().join("pods").join(format!("{uid}.json")));
    let launcher_pid = record["launcherPid"].as_i64().expect("launcher pid");
    node.kill9();
    let _other = s.start_as("another-node");
    assert!(
        eventually(Duration::from_secs(30), || !alive(launcher_pid)),
        "the orphan launcher was not stopped"
    );
    assert!(eventually(Duration::from_secs(10), || !Path::new(
        "/run/netns"
    )
    .join(&netns)
    .exists()));
    assert!(eventually(Duration::from_secs(10), || !s
        .data()
        .join("launchers/default/testvm-3")
        .exists()));
    assert!(ip_files(&s.env.data.path().join("multus-br")).is_empty());
    let record = s.data().join("pods").join(format!("{uid}.json"));
    assert!(eventually(Duration::from_secs(10), || !record.exists()));
}

#[root_test(vm, "curl")]
fn a_launcher_pod_runs_survives_the_daemon_and_is_deleted_gracefully() {
    let s = setup();
    let mut node = s.start();
    // The seed's NAD, with its IPAM store in the test's data dir.
    let nad = json!({
        "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "multus-br", "namespace": "default"},
        "spec": {"config": s.env.seed_conf("0.3.1", json!({})).to_string()},
    });
    node.create(
        "/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions",
        &nad,
    );
    // No pod yet: the machine's CNI config is not touched.
    assert!(oxivirt_testkit::dir_names(&s.tmp.path().join("net.d")).is_empty());

    let v = node.create(
        "/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances",
        &vmi("testvm-2", "quay.io/kubevirt/cirros-container-disk-demo"),
    );
    let vmi_uid = v["metadata"]["uid"].as_str().expect("uid").to_string();
    let pod_name = "virt-launcher-testvm-2-x7k2p";
    let p = node.create(
        "/api/v1/namespaces/default/pods",
        &launcher_pod(pod_name, "testvm-2", &vmi_uid),
    );
    let uid = p["metadata"]["uid"].as_str().expect("uid").to_string();
    let netns: String = format!(
        "oxv-{}",
        uid.chars()
            .filter(|c| *c != '-')
            .take(12)
            .collect::<String>()
    );

    // Running, ready, with an address of the default network.
    let mut pod = Value::Null;
    let running = eventually(Duration::from_secs(90), || {
        pod = node.pod(pod_name).1;
        pod["status"]["phase"] == "Running"
            && pod["status"]["containerStatuses"][0]["ready"] == true
    });
    assert!(running, "the pod is not Running and ready: {pod:#}");
    let pod_ip = pod["status"]["podIP"].as_str().expect("podIP").to_string();
    // The fresh node got a default network and the Multus config around it.
    let confs = oxivirt_testkit::dir_names(&s.tmp.path().join("net.d"));
    assert!(confs.iter().any(|c| c == "00-multus.conf"), "{confs:?}");
    assert!(
        confs.iter().any(|c| c == "10-oxivirt.conflist"),
        "{confs:?}"
    );
    assert_eq!(pod["status"]["podIPs"][0]["ip"], pod_ip.as_str());
    assert!(
        pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"].is_string(),
        "{pod:#}"
    );
    // The meta plugin read the pod and the NAD from this daemon and wrote network-status.
    let ns_text = pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"]
        .as_str()
        .unwrap_or_else(|| panic!("no network-status: {pod:#}"))
        .to_string();
    let status: Value = serde_json::from_str(&ns_text).expect("network-status JSON");
    assert_eq!(status[0]["interface"], "eth0", "{status:#}");
    assert_eq!(status[0]["ips"][0], pod_ip.as_str());
    assert_eq!(status[1]["name"], "default/multus-br", "{status:#}");
    assert_eq!(status[1]["interface"], "pod2df796c6902");
    let links = ns_links(&netns);
    for l in ["eth0", "pod2df796c6902"] {
        assert!(links.iter().any(|n| n == l), "{l} not in {links:?}");
    }
    let state = s.data().join("launchers/default/testvm-2");
    let launcher = read_json(&state.join("status.json"));
    assert_eq!(launcher["phase"], "Running", "{launcher:#}");
    let qemu = launcher["qemuPid"].as_i64().expect("QEMU's pid");

    // The VMI's status, as virt-handler writes it.
    let mut vmi = Value::Null;
    let vmi_running = eventually(Duration::from_secs(10), || {
        vmi = node
            .get("/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances/testvm-2")
            .1;
        vmi["status"]["phase"] == "Running"
    });
    assert!(vmi_running, "{vmi:#}");
    assert_eq!(vmi["status"]["nodeName"], NODE);
    let ifaces = vmi["status"]["interfaces"].as_array().expect("interfaces");
    assert_eq!(ifaces.len(), 2, "{vmi:#}");
    assert_eq!(ifaces[0]["name"], "default");
    assert_eq!(ifaces[1]["name"], "ext-net");
    assert_eq!(ifaces[1]["infoSource"], "domain");
    assert!(vmi["status"]["conditions"].as_array().is_some_and(|c| c
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")));

    // The kubelet's events.
    let events = node.get("/api/v1/namespaces/default/events").1;
    let reasons: Vec<&str> = events["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["reason"].as_str()).collect())
        .unwrap_or_default();
    for r in ["Pulling", "Pulled", "Created", "Started"] {
        assert!(reasons.contains(&r), "{r} not in {reasons:?}");
    }

    // SIGKILL of the daemon: the VM runs on.
    let record = read_json(&s.data().join("pods").join(format!("{uid}.json")));
    let launcher_pid = record["launcherPid"].as_i64().expect("launcher pid");
    node.kill9();
    std::thread::sleep(Duration::from_secs(2));
    assert!(alive(launcher_pid), "the launcher died with the daemon");
    assert!(alive(qemu), "QEMU died with the daemon");
    assert_eq!(read_json(&state.join("status.json"))["phase"], "Running");

    // A new daemon adopts it: the pod stays Running, nothing is restarted.
    let node = s.start();
    std::thread::sleep(Duration::from_secs(3));
    let pod = node.pod(pod_name).1;
    assert_eq!(pod["status"]["phase"], "Running", "{pod:#}");
    assert!(
        alive(launcher_pid) && alive(qemu),
        "the adopted launcher runs on"
    );
    assert_eq!(
        read_json(&s.data().join("pods").join(format!("{uid}.json")))["launcherPid"],
        launcher_pid
    );

    // DELETE: graceful stop, CNI DEL, the namespace and the pod go.
    let (code, _) = node.api(
        "DELETE",
        &format!("/api/v1/namespaces/default/pods/{pod_name}"),
        None,
        "application/json",
    );
    assert_eq!(code, 200);
    let gone = eventually(Duration::from_secs(60), || node.pod(pod_name).0 == 404);
    assert!(gone, "the pod is not gone: {:#}", node.pod(pod_name).1);
    assert!(!alive(launcher_pid), "the launcher ended");
    assert!(!alive(qemu), "QEMU ended");
    assert!(!Path::new("/run/netns").join(&netns).exists(), "netns left");
    assert!(!state.exists(), "the state dir is left");
    assert_eq!(
        ip_files(&s.env.data.path().join("multus-br")),
        Vec::<String>::new()
    );
    assert_eq!(
        ip_files(&s.data().join("cni/networks/oxivirt")),
        Vec::<String>::new()
    );
    let events = node.get("/api/v1/namespaces/default/events").1;
    assert!(events["items"]
        .as_array()
        .is_some_and(|a| a.iter().any(|e| e["reason"] == "Killing")));
}

#[root_test("docker-registry", "skopeo", "qemu-img", "nft", "nsenter", "curl")]
fn an_image_that_does_not_exist_is_err_image_pull_then_back_off() {
    let s = setup();
    let node = s.start();
    let v = node.create(
        "/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances",
        &vmi("badvm", "quay.io/kubevirt/no-such-image:latest"),
    );
    let vmi_uid = v["metadata"]["uid"].as_str().expect("uid").to_string();
    let pod_name = "virt-launcher-badvm-abcde";
    node.create(
        "/api/v1/namespaces/default/pods",
        &launcher_pod(pod_name, "badvm", &vmi_uid),
    );
    let mut pod = Value::Null;
    assert!(
        eventually(Duration::from_secs(30), || {
            pod = node.pod(pod_name).1;
            waiting_reason(&pod) == "ErrImagePull"
        }),
        "no ErrImagePull: {pod:#}"
    );
    let msg = pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(msg.contains("no-such-image"), "{msg}");
    assert!(
        eventually(Duration::from_secs(30), || {
            pod = node.pod(pod_name).1;
            waiting_reason(&pod) == "ImagePullBackOff"
        }),
        "no ImagePullBackOff: {pod:#}"
    );
    assert_eq!(pod["status"]["phase"], "Pending");
    assert!(
        pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"].is_null(),
        "no network for a pod whose image is missing"
    );
    let left = oxivirt_testkit::dir_names(&s.data().join("images/tmp"));
    assert!(left.is_empty(), "left in the cache's tmp: {left:?}");
    let events = node.get("/api/v1/namespaces/default/events").1;
    let reasons: Vec<&str> = events["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["reason"].as_str()).collect())
        .unwrap_or_default();
    for r in ["Pulling", "Failed", "BackOff"] {
        assert!(reasons.contains(&r), "{r} not in {reasons:?}");
    }
    // Deleted while backing off: gone at once, with its namespace.
    node.api(
        "DELETE",
        &format!("/api/v1/namespaces/default/pods/{pod_name}"),
        None,
        "application/json",
    );
    assert!(eventually(Duration::from_secs(20), || node.pod(pod_name).0 == 404));
    let uid = pod["metadata"]["uid"].as_str().expect("uid");
    let netns = format!(
        "oxv-{}",
        uid.chars()
            .filter(|c| *c != '-')
            .take(12)
            .collect::<String>()
    );
    assert!(!Path::new("/run/netns").join(netns).exists());
}
