//! The VM lifecycle on one machine, as the issue asks: every run strategy when the guest
//! powers itself off and when QEMU is killed (with `CrashLoopBackOff` and its back-off);
//! `pause`/`unpause`, `restart`, a forced stop; `oxivirtd` killed with SIGKILL while VMs
//! run and started again (re-adoption, consoles, nothing lost); ten VMs started and
//! stopped at once (no address twice, nothing left); console clients that go away, take
//! over, or ask for a stopped VM. Each test has its own node namespace and daemon.

mod common;

use common::node::*;
use common::{seed_vm, NADS, PODS, VMS};
use oxivirt_api::time::{now_secs, parse_rfc3339};
use oxivirt_testkit::cleanup::TempDir;
use oxivirt_testkit::registry::guest_image;
use oxivirt_testkit::{eventually, root_test};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const VMIS: &str = "/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances";

/// The seed's VM named `name` with `runStrategy` and the VMI's grace period.
fn vm_spec(name: &str, strategy: &str, grace: Option<i64>) -> Value {
    let mut v = seed_vm(name);
    if let Some(spec) = v["spec"].as_object_mut() {
        spec.remove("running");
        spec.insert("runStrategy".into(), json!(strategy));
    }
    if let Some(g) = grace {
        v["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(g);
    }
    v
}

/// The seed's NAD, its IPAM store in the test's dir.
fn apply_nad(s: &Setup, node: &Node) {
    let nad = json!({
        "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "multus-br", "namespace": "default"},
        "spec": {"config": s.env.seed_conf("0.3.1", json!({})).to_string()},
    });
    node.create(NADS, &nad);
}

fn vm(node: &Node, name: &str) -> Value {
    node.get(&format!("{VMS}/{name}")).1
}

/// The VMI (`Null` when there is none).
fn vmi(node: &Node, name: &str) -> Value {
    match node.get(&format!("{VMIS}/{name}")) {
        (200, v) => v,
        _ => Value::Null,
    }
}

fn uid(o: &Value) -> String {
    o["metadata"]["uid"].as_str().unwrap_or("").to_string()
}

fn phase(o: &Value) -> String {
    o["status"]["phase"].as_str().unwrap_or("").to_string()
}

fn dump(node: &Node, name: &str) -> String {
    format!(
        "VM: {:#}\nVMI: {:#}",
        vm(node, name)["status"],
        vmi(node, name)["status"]
    )
}

/// Waits for `kubectl get vm` to show `status` and `ready`.
fn wait_row(node: &Node, name: &str, status: &str, ready: &str, timeout: Duration) {
    let mut row = (String::new(), String::new());
    assert!(
        eventually(timeout, || {
            row = vm_row(node, name);
            row.0 == status && row.1 == ready
        }),
        "{name}: kubectl get vm shows {row:?}, not ({status}, {ready})\n{}",
        dump(node, name)
    );
}

/// Waits for `kubectl get vm` to show `status` (READY not asserted).
fn wait_status(node: &Node, name: &str, status: &str, timeout: Duration) {
    let mut row = (String::new(), String::new());
    assert!(
        eventually(timeout, || {
            row = vm_row(node, name);
            row.0 == status
        }),
        "{name}: kubectl get vm shows {row:?}, not {status}\n{}",
        dump(node, name)
    );
}

/// Waits for a VMI of `name` in phase Running whose uid is not `old`; returns its uid.
fn wait_running(node: &Node, name: &str, old: Option<&str>, timeout: Duration) -> String {
    let mut v = Value::Null;
    assert!(
        eventually(timeout, || {
            v = vmi(node, name);
            phase(&v) == "Running" && Some(uid(&v).as_str()) != old && !uid(&v).is_empty()
        }),
        "{name}: no Running VMI (other than {old:?}):\n{}",
        dump(node, name)
    );
    uid(&v)
}

/// Asserts `cond` holds all through `d` (the state that must not change).
fn stays(d: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        assert!(cond(), "{what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The QEMU of VMI `name`, from its launcher's `status.json`.
fn qemu_pid(node: &Node, name: &str) -> i32 {
    let f = node
        .data
        .join("launchers/default")
        .join(name)
        .join("status.json");
    let mut pid = 0;
    assert!(
        eventually(Duration::from_secs(30), || {
            pid = read_json(&f)["qemuPid"].as_i64().unwrap_or(0) as i32;
            pid > 0
        }),
        "no qemuPid in {}",
        f.display()
    );
    pid
}

fn kill9(pid: i32) {
    // SAFETY: kill has no memory effects.
    let r = unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(r, 0, "kill -9 {pid}");
}

fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

/// The launcher pod of the VMI `vmi_uid`.
fn launcher_pod(node: &Node, vmi_uid: &str) -> Value {
    let (_, list) = node.get(&format!(
        "{PODS}?labelSelector=kubevirt.io/created-by%3D{vmi_uid}"
    ));
    list["items"][0].clone()
}

fn netns_list() -> String {
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| out(&o))
        .unwrap_or_default()
}

fn netns_of(pod_uid: &str) -> String {
    format!(
        "oxv-{}",
        pod_uid
            .chars()
            .filter(|c| *c != '-')
            .take(12)
            .collect::<String>()
    )
}

/// Files named by an IP address under `dir` (host-local's allocations), recursively one
/// level down (the default network's store has a directory per network).
fn ip_files(dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for n in oxivirt_testkit::dir_names(dir) {
        if n.parse::<std::net::IpAddr>().is_ok() {
            v.push(n);
        } else if dir.join(&n).is_dir() {
            v.extend(
                oxivirt_testkit::dir_names(&dir.join(&n))
                    .into_iter()
                    .filter(|m| m.parse::<std::net::IpAddr>().is_ok()),
            );
        }
    }
    v
}

/// Logs in on `name`'s console and powers the guest off from inside.
fn power_off(node: &Node, name: &str) {
    let mut con = Console::open(node, name);
    con.login();
    con.send("sudo poweroff");
    // The launcher ends with the guest: the console says so and exits.
    assert!(
        con.exited(Duration::from_secs(90)).is_some(),
        "{name}: the console did not end with the guest: {}",
        con.text()
    );
}

fn start(node: &Node, name: &str) {
    let o = oxivirt(node, &["start", name]);
    assert_eq!(
        out(&o),
        format!("VM {name} was scheduled to start\n"),
        "{o:?}"
    );
}

fn stop(node: &Node, name: &str, extra: &[&str]) {
    let mut args = vec!["stop", name];
    args.extend_from_slice(extra);
    let o = oxivirt(node, &args);
    assert_eq!(
        out(&o),
        format!("VM {name} was scheduled to stop\n"),
        "{o:?}"
    );
}

/// After everything was stopped and deleted: no pod, VMI, netns, launcher or address left.
fn nothing_left(s: &Setup, node: &Node, pod_uids: &[String]) {
    let mut left = String::new();
    assert!(
        eventually(Duration::from_secs(60), || {
            left = out(&kubectl(node, &["get", "vmi,pods", "--no-headers"]));
            left.is_empty()
        }),
        "left: {left}"
    );
    let ns = netns_list();
    for u in pod_uids {
        assert!(!ns.contains(&netns_of(u)), "netns of pod {u} left: {ns}");
    }
    let multus_br = PathBuf::from(s.env.data_dir()).join("multus-br");
    assert!(
        ip_files(&multus_br).is_empty(),
        "IPs left in multus-br: {:?}",
        ip_files(&multus_br)
    );
    let default_net = node.data.join("cni/networks");
    assert!(
        ip_files(&default_net).is_empty(),
        "IPs left in the default network: {:?}",
        ip_files(&default_net)
    );
    let launchers = node.data.join("launchers/default");
    assert!(
        oxivirt_testkit::dir_names(&launchers).is_empty(),
        "launcher state left: {:?}",
        oxivirt_testkit::dir_names(&launchers)
    );
    assert!(
        oxivirt_testkit::dir_names(&node.data.join("pods")).is_empty(),
        "pod records left: {:?}",
        oxivirt_testkit::dir_names(&node.data.join("pods"))
    );
}

fn has_kubectl(test: &str) -> bool {
    if common::kubectl().is_none() {
        eprintln!("SKIP {test}: no kubectl under /usr/lib/google-cloud-sdk/bin");
        return false;
    }
    true
}

/// Every run strategy in one daemon, one VM each, booted together.
#[root_test(vm, "curl")]
fn run_strategies_on_power_off_and_on_a_killed_qemu() {
    if !has_kubectl("run_strategies_on_power_off_and_on_a_killed_qemu") {
        return;
    }
    let image = guest_image();
    let mut s = setup_with(TempDir::new("lc-strategies").expect("tmp"), &image);
    s.controllers = true;
    let node = s.start();
    apply_nad(&s, &node);
    for (name, strategy) in [
        ("always", "Always"),
        ("rerun", "RerunOnFailure"),
        ("manual", "Manual"),
        ("halted", "Halted"),
        ("once", "Once"),
    ] {
        node.create(VMS, &vm_spec(name, strategy, Some(5)));
    }
    // Manual and Halted wait for a start.
    wait_row(&node, "manual", "Stopped", "False", Duration::from_secs(10));
    wait_row(&node, "halted", "Stopped", "False", Duration::from_secs(10));
    assert!(vmi(&node, "manual").is_null() && vmi(&node, "halted").is_null());
    start(&node, "manual");
    start(&node, "halted");
    // Halted started by virtctl runs as Always (KubeVirt's virt-api moves it).
    assert_eq!(vm(&node, "halted")["spec"]["runStrategy"], "Always");

    let always1 = wait_running(&node, "always", None, Duration::from_secs(60));
    let rerun1 = wait_running(&node, "rerun", None, Duration::from_secs(60));
    let manual1 = wait_running(&node, "manual", None, Duration::from_secs(60));
    let once1 = wait_running(&node, "once", None, Duration::from_secs(60));
    wait_running(&node, "halted", None, Duration::from_secs(60));

    // QEMU killed, in every VM but Halted's.
    let killed_at = now_secs();
    for name in ["always", "rerun", "manual", "once"] {
        kill9(qemu_pid(&node, name));
    }

    // Always: a failed run, so CrashLoopBackOff for the back-off (10 s), then a new VMI.
    wait_row(
        &node,
        "always",
        "CrashLoopBackOff",
        "False",
        Duration::from_secs(10),
    );
    let failure = vm(&node, "always")["status"]["startFailure"].clone();
    assert_eq!(failure["consecutiveFailCount"], 1, "{failure}");
    assert_eq!(failure["lastFailedVMIUID"], json!(always1), "{failure}");
    let retry = failure["retryAfterTimestamp"]
        .as_i64()
        .unwrap_or_else(|| panic!("no retryAfterTimestamp: {failure}"));
    assert!(
        (killed_at + 9..=killed_at + 13).contains(&retry),
        "the first back-off is 10 s: killed at {killed_at}, retry at {retry}"
    );
    // RerunOnFailure restarts after a failure too, after the same back-off.
    wait_row(
        &node,
        "rerun",
        "CrashLoopBackOff",
        "False",
        Duration::from_secs(10),
    );
    // Manual: stopped, no back-off (KubeVirt keeps no start failures for it).
    wait_row(&node, "manual", "Stopped", "False", Duration::from_secs(10));
    assert_eq!(phase(&vmi(&node, "manual")), "Failed");
    assert!(
        vm(&node, "manual")["status"]["startFailure"].is_null(),
        "{}",
        dump(&node, "manual")
    );
    // Once: ran once; the VM is Halted now, its VMI goes.
    assert!(
        eventually(Duration::from_secs(15), || vm(&node, "once")["spec"]
            ["runStrategy"]
            == "Halted"
            && vmi(&node, "once").is_null()),
        "once: {}",
        dump(&node, "once")
    );
    wait_row(&node, "once", "Stopped", "False", Duration::from_secs(10));

    let always2 = wait_running(&node, "always", Some(&always1), Duration::from_secs(40));
    let created = parse_rfc3339(
        vmi(&node, "always")["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap_or(""),
    )
    .expect("creationTimestamp");
    assert!(
        created >= retry,
        "always: restarted at {created}, before the back-off's end {retry}"
    );
    wait_row(&node, "always", "Running", "True", Duration::from_secs(30));
    let rerun2 = wait_running(&node, "rerun", Some(&rerun1), Duration::from_secs(40));
    wait_row(&node, "rerun", "Running", "True", Duration::from_secs(30));
    // Nothing restarts Manual or Once.
    stays(
        Duration::from_secs(3),
        "manual and once stay stopped",
        || {
            uid(&vmi(&node, "manual")) == manual1
                && vmi(&node, "once").is_null()
                && vm_row(&node, "once").0 == "Stopped"
        },
    );
    assert_ne!(once1, "");

    // Manual started again, for the power-off.
    start(&node, "manual");
    let manual2 = wait_running(&node, "manual", Some(&manual1), Duration::from_secs(30));

    // The guests power themselves off, all three at once.
    std::thread::scope(|sc| {
        for name in ["always", "rerun", "manual"] {
            let node = &node;
            sc.spawn(move || power_off(node, name));
        }
    });
    // Always: a new run, and a clean end is no failure.
    wait_running(&node, "always", Some(&always2), Duration::from_secs(60));
    wait_row(&node, "always", "Running", "True", Duration::from_secs(30));
    assert!(
        vm(&node, "always")["status"]["startFailure"].is_null(),
        "{}",
        dump(&node, "always")
    );
    // RerunOnFailure and Manual: Stopped, the VMI Succeeded and kept.
    for (name, last) in [("rerun", &rerun2), ("manual", &manual2)] {
        wait_row(&node, name, "Stopped", "False", Duration::from_secs(30));
        let v = vmi(&node, name);
        assert_eq!(phase(&v), "Succeeded", "{name}: {}", dump(&node, name));
        assert_eq!(&uid(&v), last);
    }
    stays(
        Duration::from_secs(3),
        "rerun and manual stay stopped",
        || {
            vm_row(&node, "rerun").0 == "Stopped"
                && vm_row(&node, "manual").0 == "Stopped"
                && uid(&vmi(&node, "rerun")) == rerun2
        },
    );

    // Halted's run ends with a stop; then everything goes.
    stop(&node, "halted", &[]);
    wait_row(&node, "halted", "Stopped", "False", Duration::from_secs(30));
    assert_eq!(vm(&node, "halted")["spec"]["runStrategy"], "Halted");
    let o = kubectl(&node, &["delete", "vm", "--all"]);
    assert!(o.status.success(), "{o:?}");
    nothing_left(&s, &node, &[]);
}

/// pause/unpause, restart, and a forced stop, on the small disk that never boots (it
/// ignores ACPI: only the forced stop ends it before its grace period).
#[root_test(vm, "curl")]
fn pause_unpause_restart_and_force_stop() {
    if !has_kubectl("pause_unpause_restart_and_force_stop") {
        return;
    }
    let mut s = setup();
    s.controllers = true;
    let node = s.start();
    apply_nad(&s, &node);
    node.create(VMS, &vm_spec("p", "Always", Some(1)));
    // The default grace period (180 s): a plain stop would wait it out.
    node.create(VMS, &vm_spec("f", "Always", None));
    let p1 = wait_running(&node, "p", None, Duration::from_secs(60));
    let f1 = wait_running(&node, "f", None, Duration::from_secs(60));
    wait_row(&node, "p", "Running", "True", Duration::from_secs(20));

    let o = oxivirt(&node, &["pause", "vmi", "p"]);
    assert_eq!(out(&o), "VMI p was scheduled to pause\n", "{o:?}");
    wait_row(&node, "p", "Paused", "False", Duration::from_secs(10));
    let v = vmi(&node, "p");
    let paused = v["status"]["conditions"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["type"] == "Paused").cloned())
        .unwrap_or_else(|| panic!("no Paused condition: {v}"));
    assert_eq!(paused["status"], "True");
    assert_eq!(paused["reason"], "PausedByUser");
    let o = oxivirt(&node, &["pause", "vmi", "p"]);
    assert_eq!(o.status.code(), Some(1), "pausing twice: {o:?}");
    let o = oxivirt(&node, &["unpause", "vmi", "p"]);
    assert_eq!(out(&o), "VMI p was scheduled to unpause\n", "{o:?}");
    wait_row(&node, "p", "Running", "True", Duration::from_secs(10));
    assert!(
        eventually(Duration::from_secs(5), || !vmi(&node, "p")["status"]
            ["conditions"]
            .as_array()
            .is_some_and(|a| a.iter().any(|c| c["type"] == "Paused"))),
        "the Paused condition stays: {}",
        dump(&node, "p")
    );

    let o = oxivirt(&node, &["restart", "p"]);
    assert_eq!(out(&o), "VM p was scheduled to restart\n", "{o:?}");
    let p2 = wait_running(&node, "p", Some(&p1), Duration::from_secs(40));
    wait_row(&node, "p", "Running", "True", Duration::from_secs(20));
    let pod = launcher_pod(&node, &p2);
    assert_eq!(pod["status"]["phase"], "Running", "{pod}");

    // A forced stop with no grace: gone in seconds, not 180.
    let pod_f = uid(&launcher_pod(&node, &f1));
    let t = Instant::now();
    stop(&node, "f", &["--force", "--grace-period", "0"]);
    wait_row(&node, "f", "Stopped", "False", Duration::from_secs(20));
    assert!(
        eventually(Duration::from_secs(20), || vmi(&node, "f").is_null()),
        "f's VMI stays: {}",
        dump(&node, "f")
    );
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "the forced stop took {:?}",
        t.elapsed()
    );
    let pod_p = uid(&launcher_pod(&node, &p2));
    let o = oxivirt(&node, &["stop", "p", "--force", "--grace-period", "0"]);
    assert!(o.status.success(), "{o:?}");
    wait_row(&node, "p", "Stopped", "False", Duration::from_secs(20));
    // virtctl start --paused of the now Halted VM: it runs from then on, its CPUs stopped
    // until unpaused.
    let o = oxivirt(&node, &["start", "p", "--paused"]);
    assert_eq!(out(&o), "VM p was scheduled to start\n", "{o:?}");
    wait_status(&node, "p", "Paused", Duration::from_secs(20));
    let v = vmi(&node, "p");
    assert_eq!(v["spec"]["startStrategy"], "Paused", "{v:#}");
    assert_eq!(vm(&node, "p")["spec"]["runStrategy"], "Always");
    let o = oxivirt(&node, &["unpause", "vm", "p"]);
    assert!(o.status.success(), "{o:?}");
    wait_row(&node, "p", "Running", "True", Duration::from_secs(20));
    let pod_paused = uid(&launcher_pod(&node, &uid(&vmi(&node, "p"))));
    stop(&node, "p", &["--force", "--grace-period", "0"]);
    wait_row(&node, "p", "Stopped", "False", Duration::from_secs(20));
    let o = kubectl(&node, &["delete", "vm", "--all"]);
    assert!(o.status.success(), "{o:?}");
    nothing_left(&s, &node, &[pod_f, pod_p, pod_paused]);
}

/// `oxivirtd` killed while two VMs run: the launchers and QEMUs go on; the next daemon
/// adopts them, nothing is lost and the consoles work. Then the console's clients: one
/// killed mid-stream, a second taking over from a third, and a console of a stopped VM.
#[root_test(vm, "curl")]
fn daemon_killed_vms_adopted_and_console_clients() {
    if !has_kubectl("daemon_killed_vms_adopted_and_console_clients") {
        return;
    }
    let image = guest_image();
    let mut s = setup_with(TempDir::new("lc-adopt").expect("tmp"), &image);
    s.controllers = true;
    let mut node = s.start();
    apply_nad(&s, &node);
    node.create(VMS, &vm_spec("x", "Always", Some(5)));
    node.create(VMS, &vm_spec("y", "Always", Some(5)));
    let x = wait_running(&node, "x", None, Duration::from_secs(60));
    let y = wait_running(&node, "y", None, Duration::from_secs(60));
    wait_row(&node, "x", "Running", "True", Duration::from_secs(20));
    wait_row(&node, "y", "Running", "True", Duration::from_secs(20));
    let before = |node: &Node| {
        let mut names: Vec<String> = ["virtualmachines", "virtualmachineinstances"]
            .iter()
            .flat_map(|r| {
                node.get(&format!("/apis/kubevirt.io/v1/namespaces/default/{r}"))
                    .1["items"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .chain(
                node.get(PODS).1["items"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            )
            .chain(
                node.get(NADS).1["items"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            )
            .map(|o| format!("{}/{}/{}", o["kind"], o["metadata"]["name"], uid(&o)))
            .collect();
        names.sort();
        names
    };
    let objects = before(&node);
    assert_eq!(objects.len(), 7, "{objects:?}");
    let pods: Vec<Value> = [&x, &y].iter().map(|u| launcher_pod(&node, u)).collect();
    let pod_uids: Vec<String> = pods.iter().map(uid).collect();
    let launcher_pids: Vec<i64> = pod_uids
        .iter()
        .map(|u| {
            read_json(&node.data.join("pods").join(format!("{u}.json")))["launcherPid"]
                .as_i64()
                .unwrap_or(0)
        })
        .collect();
    let qemus = [qemu_pid(&node, "x") as i64, qemu_pid(&node, "y") as i64];
    assert!(launcher_pids.iter().all(|p| *p > 0), "{launcher_pids:?}");

    node.kill9();
    for p in launcher_pids.iter().chain(qemus.iter()) {
        assert!(alive(*p), "pid {p} ended with the daemon");
    }
    let node = s.start();
    // Nothing lost, nothing restarted: the same objects, the same processes.
    assert!(
        eventually(Duration::from_secs(20), || before(&node) == objects),
        "after the restart: {:?}\nbefore: {objects:?}",
        before(&node)
    );
    for (name, u) in [("x", &x), ("y", &y)] {
        wait_row(&node, name, "Running", "True", Duration::from_secs(20));
        let v = vmi(&node, name);
        assert_eq!((phase(&v), &uid(&v)), ("Running".to_string(), u));
    }
    for (i, u) in pod_uids.iter().enumerate() {
        let rec = read_json(&node.data.join("pods").join(format!("{u}.json")));
        assert_eq!(rec["launcherPid"].as_i64(), Some(launcher_pids[i]));
        let (_, p) = node.pod(pods[i]["metadata"]["name"].as_str().unwrap_or(""));
        assert_eq!(p["status"]["phase"], "Running", "{p}");
        assert_eq!(p["status"]["containerStatuses"][0]["ready"], true, "{p}");
    }
    for p in launcher_pids.iter().chain(qemus.iter()) {
        assert!(alive(*p), "pid {p} ended after the new daemon started");
    }

    // The consoles work through the new daemon.
    let cy = Console::open(&node, "y");
    cy.expect(0, "login:", BOOT);
    drop(cy);
    let mut c1 = Console::open(&node, "x");
    c1.login();
    c1.answers(6, 7);
    // A client killed mid-stream (the guest still writing); the next one works.
    c1.send("seq 1 30000; echo SEQ-$((2*3))-DONE");
    c1.expect(0, "\n1000", Duration::from_secs(30));
    let _ = c1.child.child.kill();
    let _ = c1.child.child.wait();
    let mut c2 = Console::open(&node, "x");
    // The rest of the listing may still be coming: wait for the prompt after it.
    c2.expect(0, "SEQ-6-DONE", Duration::from_secs(120));
    c2.answers(6, 8);
    // A third client takes over: the second is told why and ends.
    let mut c3 = Console::open(&node, "x");
    let st = c2.exited(Duration::from_secs(10));
    assert!(st.is_some(), "the old client stays: {}", c2.text());
    assert!(
        c2.text()
            .contains("another user connected to the console of the target vm"),
        "the old client was not told why: {}",
        c2.text()
    );
    c3.answers(7, 9);
    drop(c2);

    // A stopped VM has no console: a clear error.
    stop(&node, "x", &[]);
    assert!(
        c3.exited(Duration::from_secs(60)).is_some(),
        "the console stays after the stop: {}",
        c3.text()
    );
    wait_row(&node, "x", "Stopped", "False", Duration::from_secs(30));
    let o = oxivirt(&node, &["console", "x"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        err.contains("\"x\" not found") || err.contains("instead of Running"),
        "not a clear error: {err}"
    );

    stop(&node, "y", &[]);
    wait_row(&node, "y", "Stopped", "False", Duration::from_secs(30));
    let o = kubectl(&node, &["delete", "vm", "--all"]);
    assert!(o.status.success(), "{o:?}");
    nothing_left(&s, &node, &pod_uids);
    for p in launcher_pids.iter().chain(qemus.iter()) {
        assert!(
            eventually(Duration::from_secs(5), || !alive(*p)),
            "pid {p} outlived its VM"
        );
    }
}

/// Ten VMs at once (the small disk): all run, no address is handed out twice, and all
/// stopped at once leave nothing.
#[root_test(vm, "curl")]
fn ten_vms_started_and_stopped_at_once() {
    if !has_kubectl("ten_vms_started_and_stopped_at_once") {
        return;
    }
    let mut s = setup();
    s.controllers = true;
    let node = s.start();
    apply_nad(&s, &node);
    let names: Vec<String> = (0..10).map(|i| format!("vm-{i}")).collect();
    std::thread::scope(|sc| {
        for n in &names {
            let node = &node;
            sc.spawn(move || node.create(VMS, &vm_spec(n, "Always", Some(1))));
        }
    });
    let uids: Vec<String> = std::thread::scope(|sc| {
        let hs: Vec<_> = names
            .iter()
            .map(|n| {
                let node = &node;
                sc.spawn(move || wait_running(node, n, None, Duration::from_secs(120)))
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("wait")).collect()
    });
    let mut pod_uids = Vec::new();
    let mut eth0 = Vec::new();
    let mut bridge = Vec::new();
    for u in &uids {
        let pod = launcher_pod(&node, u);
        pod_uids.push(uid(&pod));
        let status: Value = serde_json::from_str(
            pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"]
                .as_str()
                .unwrap_or_else(|| panic!("no network-status: {pod}")),
        )
        .expect("network-status");
        for net in status.as_array().expect("a list") {
            let ips: Vec<String> = net["ips"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|i| i.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            assert!(!ips.is_empty(), "no IPs: {net}");
            if net["interface"] == "eth0" {
                eth0.extend(ips);
            } else if net["name"] == "default/multus-br" {
                bridge.extend(ips);
            }
        }
    }
    for (what, ips) in [("eth0", &eth0), ("multus-br", &bridge)] {
        assert_eq!(ips.len(), 10, "{what}: {ips:?}");
        let distinct: HashSet<&String> = ips.iter().collect();
        assert_eq!(distinct.len(), 10, "{what}: an address twice: {ips:?}");
    }

    std::thread::scope(|sc| {
        for n in &names {
            let node = &node;
            sc.spawn(move || stop(node, n, &[]));
        }
    });
    for n in &names {
        wait_row(&node, n, "Stopped", "False", Duration::from_secs(60));
    }
    let o = kubectl(&node, &["delete", "vm", "--all"]);
    assert!(o.status.success(), "{o:?}");
    nothing_left(&s, &node, &pod_uids);
}
