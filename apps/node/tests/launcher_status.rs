//! `oxivirt-node launcher-status` against oxivirtd's API (`--api-only`: the Kubernetes API
//! semantics without its controllers; no cluster runs on these machines): two launcher
//! pods, one on this node and one on another, each with a launcher `status.json` in a
//! temporary stand-in for the host's `/var/run/oxivirt/launchers/<pod uid>/`. Only this
//! node's VMI gets the launcher's status, and follows it (running, paused, failed).

mod common;

use oxivirt_testkit::cleanup::{OwnedChild, TempDir};
use oxivirt_testkit::oxivirtd::Oxivirtd;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

struct Api(Oxivirtd);

impl Api {
    fn start(data: &Path) -> Self {
        Self(Oxivirtd::start(
            &oxivirt_testkit::built_binary("oxivirtd", "oxivirt-app-daemon"),
            data,
            "127.0.0.1:0",
            &["--api-only"],
        ))
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        self.0.ok(method, path, body)
    }
}

const VMIS: &str = "/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances";

fn vmi(name: &str) -> Value {
    json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"domain": {"devices": {}, "resources": {"requests": {"memory": "64M"}}}}})
}

fn launcher_pod(vmi: &str, node: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("virt-launcher-{vmi}-abcde"), "namespace": "default",
            "labels": {"kubevirt.io": "virt-launcher"}, "annotations": {"kubevirt.io/domain": vmi}},
        "spec": {"nodeName": node, "containers": [{"name": "compute", "image": "oxivirt:test"}]}})
}

fn write_status(root: &Path, uid: &str, status: &Value) {
    let dir = root.join(uid);
    std::fs::create_dir_all(&dir).expect("state dir");
    let tmp = dir.join(".status.json.tmp");
    std::fs::write(&tmp, status.to_string()).expect("status");
    std::fs::rename(&tmp, dir.join("status.json")).expect("status");
}

fn launcher_status(phase: &str, paused: bool, reason: Option<&str>) -> Value {
    let mut s = json!({"phase": phase, "paused": paused, "accelerator": "tcg", "interfaces": [
        {"name": "default", "mac": "02:00:00:00:00:01", "ipAddress": "10.0.2.2",
         "ipAddresses": ["10.0.2.2"], "interfaceName": "eth0", "infoSource": "domain",
         "leaseAcknowledgedAt": "2026-12-01T00:00:00.000Z"}]});
    if let Some(r) = reason {
        s["reason"] = json!(r);
    }
    s
}

fn condition<'a>(v: &'a Value, kind: &str) -> Option<&'a Value> {
    v["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

#[test]
fn this_nodes_launchers_are_reported_into_their_vmis() {
    if oxivirt_testkit::which("curl").is_none() {
        oxivirt_testkit::skip(
            "this_nodes_launchers_are_reported_into_their_vmis",
            "curl is not installed (scripts/deps.sh installs it)",
        );
        return;
    }
    let tmp = TempDir::new("launcher-status").expect("tmp");
    let data = tmp.path().join("data");
    let root = tmp.path().join("launchers");
    std::fs::create_dir_all(&root).expect("root");
    let api = Api::start(&data);
    api.call("POST", VMIS, Some(&vmi("here")));
    api.call("POST", VMIS, Some(&vmi("there")));
    let pods = "/api/v1/namespaces/default/pods";
    let here = api.call("POST", pods, Some(&launcher_pod("here", "node-1")));
    let there = api.call("POST", pods, Some(&launcher_pod("there", "node-2")));
    let uid = |p: &Value| p["metadata"]["uid"].as_str().expect("uid").to_string();
    let (here_uid, there_uid) = (uid(&here), uid(&there));
    write_status(&root, &here_uid, &launcher_status("Running", false, None));
    write_status(&root, &there_uid, &launcher_status("Running", false, None));

    let mut agent = OwnedChild::spawn(
        Command::new(common::BIN)
            .args([
                "launcher-status",
                "--node-name",
                "node-1",
                "--poll-ms",
                "50",
            ])
            .arg("--state-root")
            .arg(&root)
            .arg("--kubeconfig")
            .arg(data.join("kubeconfig")),
    )
    .expect("oxivirt-node launcher-status");
    let get = |name: &str| api.call("GET", &format!("{VMIS}/{name}"), None);
    let wait = |what: &str, ok: &dyn Fn(&Value) -> bool| {
        assert!(
            oxivirt_testkit::eventually(Duration::from_secs(10), || ok(&get("here"))),
            "{what}: {}",
            get("here")
        );
    };
    wait("Running", &|v| v["status"]["phase"] == "Running");
    let v = get("here");
    assert_eq!(v["status"]["nodeName"], "node-1");
    assert_eq!(v["status"]["interfaces"][0]["ipAddress"], "10.0.2.2");
    assert_eq!(v["status"]["interfaces"][0]["interfaceName"], "eth0");
    assert!(v["status"]["interfaces"][0]
        .get("leaseAcknowledgedAt")
        .is_none());
    assert_eq!(condition(&v, "Ready").expect("Ready")["status"], "True");

    write_status(&root, &here_uid, &launcher_status("Running", true, None));
    wait("Paused", &|v| {
        condition(v, "Paused").is_some_and(|c| c["status"] == "True")
            && condition(v, "Ready").is_some_and(|c| c["status"] == "False")
    });
    write_status(
        &root,
        &here_uid,
        &launcher_status(
            "Failed",
            false,
            Some("QEMU ended unexpectedly (signal: 9 (SIGKILL))"),
        ),
    );
    wait("Failed", &|v| v["status"]["phase"] == "Failed");
    let ready = condition(&get("here"), "Ready").expect("Ready").clone();
    assert_eq!(ready["status"], "False");
    assert!(
        ready["message"]
            .as_str()
            .is_some_and(|m| m.contains("SIGKILL")),
        "{ready}"
    );
    // The other node's launcher is not this agent's to report.
    assert!(
        get("there")["status"]["phase"].is_null(),
        "{}",
        get("there")
    );

    // SAFETY: kill on our own live child.
    unsafe { libc::kill(agent.child.id() as i32, libc::SIGTERM) };
    let status = agent.child.wait().expect("wait");
    assert!(status.success(), "{status}");
}

/// The DaemonSet's `launcher-status` container: its command line parses, it is told its
/// node, and it reads the launchers' host dir where the launcher pods keep their state.
#[test]
fn the_daemonset_launcher_status_command_line_is_accepted() {
    let (c, args) = common::daemonset_container("launcher-status", "launcher-status");
    assert_eq!(c["env"][0]["name"], "NODE_NAME");
    assert_eq!(
        c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    let root = args
        .windows(2)
        .find(|w| w[0] == "--state-root")
        .map(|w| w[1].clone())
        .expect("--state-root");
    assert_eq!(root, oxivirt_controller::plan::LAUNCHERS_HOST_DIR);
    assert_eq!(c["volumeMounts"][0]["mountPath"], root.as_str());
    assert_eq!(c["volumeMounts"][0]["readOnly"], true);
}
