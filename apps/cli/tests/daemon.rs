//! `oxivirt` against a real `oxivirtd` (TLS, client certificates, its own kubeconfig found
//! through `OXIVIRT_DATA_DIR`): the seed story — apply, get, describe, delete.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use oxivirt_testkit::cleanup::{OwnedChild, TempDir};
use serde_json::Value;

/// `oxivirtd` is built beside `oxivirt` by a workspace build; built here when it is not.
fn daemon_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_oxivirt")).with_file_name("oxivirtd");
    if !bin.is_file() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "oxivirt-app-daemon"])
            .status()
            .expect("cargo build oxivirtd");
        assert!(status.success(), "building oxivirtd failed");
    }
    bin
}

struct Daemon {
    _child: OwnedChild,
    data: PathBuf,
}

impl Daemon {
    fn start(data: &Path) -> Daemon {
        let d = oxivirt_testkit::oxivirtd::Oxivirtd::start(&daemon_bin(), data, "127.0.0.1:0", &[]);
        Daemon {
            _child: d.child,
            data: d.data,
        }
    }

    /// `oxivirt ARGS`, finding the daemon's kubeconfig by itself.
    fn oxivirt(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_oxivirt"))
            .args(args)
            .env_remove("KUBECONFIG")
            .env("OXIVIRT_DATA_DIR", &self.data)
            .env("HOME", "/nonexistent")
            .output()
            .expect("run oxivirt")
    }
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn seed(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/seed")
        .join(name)
}

#[test]
fn the_seed_story_against_oxivirtd() {
    let tmp = TempDir::new("cli-daemon").expect("tmp");
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).expect("data dir");
    let d = Daemon::start(&data);
    let nad_text = std::fs::read_to_string(seed("multus-bridge.yaml")).expect("seed");
    let nad = tmp.path().join("multus-bridge.yaml");
    std::fs::write(&nad, format!("{}'\n", nad_text.trim_end())).expect("nad");
    let vm = tmp.path().join("vm-2.yaml");
    std::fs::copy(seed("vm-2.yaml"), &vm).expect("vm");
    let (nad, vm) = (nad.display().to_string(), vm.display().to_string());

    // The seed's own NAD: refused where its quote opens, and nothing stored.
    let broken = seed("multus-bridge.yaml").display().to_string();
    let o = d.oxivirt(&["apply", "-f", &vm, "-f", &broken]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        err(&o),
        format!("error: error parsing {broken}: line 6, column 11: unclosed quote\n")
    );
    let o = d.oxivirt(&["get", "vm", "-A"]);
    assert_eq!(
        (out(&o).as_str(), err(&o).as_str()),
        ("", "No resources found\n")
    );

    let o = d.oxivirt(&["apply", "-f", &nad, "-f", &vm]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(
        out(&o),
        "networkattachmentdefinition.k8s.cni.cncf.io/multus-br created\nvirtualmachine.kubevirt.io/testvm-2 created\n"
    );
    let o = d.oxivirt(&["apply", "-f", &nad, "-f", &vm]);
    assert_eq!(
        out(&o),
        "networkattachmentdefinition.k8s.cni.cncf.io/multus-br unchanged\nvirtualmachine.kubevirt.io/testvm-2 unchanged\n"
    );
    let edited = std::fs::read_to_string(&vm)
        .expect("vm")
        .replace("memory: 64M", "memory: 128M");
    std::fs::write(&vm, edited).expect("edit");
    let o = d.oxivirt(&["apply", "-f", &vm]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o), "virtualmachine.kubevirt.io/testvm-2 configured\n");

    // The server's columns, as the server names them.
    let o = d.oxivirt(&["get", "vm"]);
    assert!(o.status.success(), "{}", err(&o));
    let table = out(&o);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(&header[..2], ["NAME", "AGE"], "{table}");
    assert!(
        lines.next().expect("row").starts_with("testvm-2   "),
        "{table}"
    );
    let o = d.oxivirt(&["get", "virtualmachines.kubevirt.io", "-A"]);
    assert!(out(&o).starts_with("NAMESPACE   NAME"), "{}", out(&o));
    assert!(out(&o).contains("\ndefault     testvm-2   "), "{}", out(&o));
    let o = d.oxivirt(&["get", "net-attach-def", "-o", "name"]);
    assert_eq!(
        out(&o),
        "networkattachmentdefinition.k8s.cni.cncf.io/multus-br\n"
    );
    let o = d.oxivirt(&["get", "vm", "testvm-2", "-o", "json"]);
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(
        v["spec"]["template"]["spec"]["domain"]["resources"]["requests"]["memory"],
        "128M"
    );
    let o = d.oxivirt(&["get", "vm", "-o", "yaml"]);
    let list: Value = serde_saphyr::from_str(&out(&o)).expect("yaml");
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"][0]["metadata"]["name"], "testvm-2");
    let o = d.oxivirt(&["get", "vm", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        err(&o),
        "Error from server (NotFound): virtualmachines.kubevirt.io \"nope\" not found\n"
    );

    // Names outside the static table go through discovery.
    let o = d.oxivirt(&["get", "deployments"]);
    assert_eq!(
        err(&o),
        "error: the server doesn't have a resource type \"deployments\"\n"
    );

    let o = d.oxivirt(&["describe", "vm", "testvm-2"]);
    assert!(o.status.success(), "{}", err(&o));
    let s = out(&o);
    assert!(
        s.starts_with("Name:         testvm-2\nNamespace:    default\n"),
        "{s}"
    );
    assert!(s.contains("\nKind:         VirtualMachine\n"), "{s}");
    assert!(s.contains("\n            Memory:  128M\n"), "{s}");
    assert!(s.contains("\nEvents:"), "{s}");

    let o = d.oxivirt(&["delete", "-f", &vm]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o), "virtualmachine.kubevirt.io \"testvm-2\" deleted\n");
    let o = d.oxivirt(&["delete", "nad", "multus-br"]);
    assert_eq!(
        out(&o),
        "networkattachmentdefinition.k8s.cni.cncf.io \"multus-br\" deleted\n"
    );
    let o = d.oxivirt(&["get", "vm"]);
    assert_eq!(err(&o), "No resources found in default namespace.\n");
}

#[test]
fn get_watch_prints_the_table_then_each_change() {
    let tmp = TempDir::new("cli-daemon-watch").expect("tmp");
    let d = Daemon::start(tmp.path());
    let vm = tmp.path().join("vm-2.yaml");
    std::fs::copy(seed("vm-2.yaml"), &vm).expect("vm");
    let vm = vm.display().to_string();
    assert!(d.oxivirt(&["apply", "-f", &vm]).status.success());
    let mut watch = OwnedChild::spawn(
        Command::new(env!("CARGO_BIN_EXE_oxivirt"))
            .args(["get", "vm", "-w"])
            .env_remove("KUBECONFIG")
            .env("OXIVIRT_DATA_DIR", tmp.path())
            .stdout(Stdio::piped()),
    )
    .expect("oxivirt get -w");
    let mut lines = BufReader::new(watch.child.stdout.take().expect("stdout")).lines();
    let mut next = || lines.next().expect("a line").expect("read");
    assert!(next().starts_with("NAME "));
    assert!(next().starts_with("testvm-2 "));
    let edited = std::fs::read_to_string(&vm)
        .expect("vm")
        .replace("running: false", "running: true");
    std::fs::write(&vm, edited).expect("edit");
    let o = d.oxivirt(&["apply", "-f", &vm]);
    assert_eq!(out(&o), "virtualmachine.kubevirt.io/testvm-2 configured\n");
    // The change, as a row in the same columns (no second header).
    assert!(next().starts_with("testvm-2 "));
    let _ = watch.child.kill();
}

#[test]
fn delete_waits_for_finalizers() {
    let tmp = TempDir::new("cli-daemon-finalizers").expect("tmp");
    let d = Daemon::start(tmp.path());
    let vm_text = std::fs::read_to_string(seed("vm-2.yaml")).expect("vm");
    let held = tmp.path().join("held.yaml");
    std::fs::write(
        &held,
        vm_text.replace(
            "  name: testvm-2\n",
            "  name: testvm-2\n  finalizers:\n  - example.com/hold\n",
        ),
    )
    .expect("held");
    let held = held.display().to_string();
    assert!(d.oxivirt(&["apply", "-f", &held]).status.success());

    let o = d.oxivirt(&["delete", "vm", "testvm-2", "--timeout=300ms"]);
    assert_eq!(out(&o), "virtualmachine.kubevirt.io \"testvm-2\" deleted\n");
    assert_eq!(
        err(&o),
        "error: timed out waiting for the condition on virtualmachine.kubevirt.io/testvm-2\n"
    );
    assert_eq!(o.status.code(), Some(1));
    let o = d.oxivirt(&["get", "vm", "testvm-2", "-o", "json"]);
    let v: Value = serde_json::from_slice(&o.stdout).expect("still there");
    assert!(v["metadata"]["deletionTimestamp"].is_string(), "{v}");

    // Applying the manifest without the finalizer removes it (the three-way patch's
    // deletion), and the object goes.
    std::fs::write(&held, &vm_text).expect("release");
    let o = d.oxivirt(&["apply", "-f", &held]);
    assert!(o.status.success(), "{}", err(&o));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let o = d.oxivirt(&["get", "vm", "testvm-2", "-o", "name"]);
        if o.status.code() == Some(1) {
            break;
        }
        assert!(Instant::now() < deadline, "still there: {}", out(&o));
        std::thread::sleep(Duration::from_millis(20));
    }
}
