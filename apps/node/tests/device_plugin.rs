//! `oxivirt-node device-plugin` against the kubelet's side of the device plugin API played
//! by gRPC's own implementation (`fake_kubelet.py`, Debian's python3-grpcio; no kubelet
//! runs on these machines): both devices registered, listed, allocated, a foreign id
//! refused; SIGTERM takes the sockets away. The device files are the test's own.

mod common;

use common::BIN;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PYTHON: &str = "/usr/bin/python3";

fn have_grpcio() -> bool {
    Command::new(PYTHON)
        .args(["-c", "import grpc"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn both_devices_are_served_to_a_kubelet_and_go_on_sigterm() {
    if !have_grpcio() {
        oxivirt_testkit::skip(
            "both_devices_are_served_to_a_kubelet_and_go_on_sigterm",
            "Debian's python3-grpcio (the stand-in kubelet's gRPC) is not installed",
        );
        return;
    }
    let tmp = oxivirt_testkit::cleanup::TempDir::new("devplug").expect("tmp");
    let dir = tmp.path();
    let (kvm, tun) = (dir.join("dev-kvm"), dir.join("dev-tun"));
    std::fs::write(&kvm, "").expect("kvm");
    std::fs::write(&tun, "").expect("tun");
    let mut kubelet = oxivirt_testkit::cleanup::OwnedChild::spawn(
        Command::new(PYTHON)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fake_kubelet.py"
            ))
            .arg(dir)
            .arg("5")
            .stdout(Stdio::piped()),
    )
    .expect("the stand-in kubelet");
    let mut plugin = oxivirt_testkit::cleanup::OwnedChild::spawn(
        Command::new(BIN)
            .args(["device-plugin", "--count", "5", "--poll-ms", "50"])
            .arg("--dir")
            .arg(dir)
            .arg("--kvm")
            .arg(&kvm)
            .arg("--tun")
            .arg(&tun),
    )
    .expect("oxivirt-node device-plugin");
    // The stand-in prints its JSON when it is done (it gives up after 30 s on its own).
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut kubelet.child.stdout.take().expect("stdout"), &mut out)
        .expect("the kubelet's output");
    let seen: Value = serde_json::from_slice(&out).expect("the kubelet's JSON");
    let mut registered: Vec<(String, String, String)> = seen["registered"]
        .as_array()
        .expect("registered")
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (s("resourceName"), s("endpoint"), s("version"))
        })
        .collect();
    registered.sort();
    assert_eq!(
        registered,
        [
            (
                "devices.kubevirt.io/kvm".into(),
                "oxivirt-kvm.sock".into(),
                "v1beta1".into()
            ),
            (
                "devices.kubevirt.io/tun".into(),
                "oxivirt-tun.sock".into(),
                "v1beta1".into()
            ),
        ],
        "{seen}"
    );
    for (resource, file, perms) in [
        ("devices.kubevirt.io/kvm", &kvm, "rw"),
        ("devices.kubevirt.io/tun", &tun, "rwm"),
    ] {
        let p = &seen["plugins"][resource];
        assert_eq!(p["count"], 5, "{seen}");
        assert_eq!(p["health"], serde_json::json!(["Healthy"]), "{seen}");
        let path = file.display().to_string();
        assert_eq!(
            p["allocate"],
            serde_json::json!([{"containerPath": path, "hostPath": path, "permissions": perms}]),
            "{seen}"
        );
        assert_eq!(p["refused"]["code"], "INVALID_ARGUMENT", "{seen}");
        assert!(
            p["refused"]["details"]
                .as_str()
                .is_some_and(|d| d.contains("nvidia0")),
            "{seen}"
        );
    }

    // SIGTERM: the sockets go, so the kubelet stops offering the devices.
    // SAFETY: kill on our own live child.
    unsafe { libc::kill(plugin.child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = plugin.child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit 10 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(!dir.join("oxivirt-kvm.sock").exists());
    assert!(!dir.join("oxivirt-tun.sock").exists());
}

/// The DaemonSet's `device-plugin` container: its arguments parse, and it mounts the
/// kubelet's device plugin dir where it is told to serve and the host's `/dev` under the
/// root it is told to look in.
#[test]
fn the_daemonset_device_plugin_command_line_is_accepted() {
    let (c, args) = common::daemonset_container("device-plugin", "device-plugin");
    let value_of = |flag: &str| {
        args.windows(2)
            .find(|w| w[0] == flag)
            .map(|w| w[1].to_string())
            .expect(flag)
    };
    let mounts: Vec<(String, bool)> = c["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .map(|m| {
            (
                m["mountPath"].as_str().unwrap_or_default().to_string(),
                m["readOnly"] == true,
            )
        })
        .collect();
    assert!(mounts.contains(&(value_of("--dir"), false)), "{mounts:?}");
    assert!(
        mounts.contains(&(format!("{}/dev", value_of("--host-root")), true)),
        "{mounts:?}"
    );
}
