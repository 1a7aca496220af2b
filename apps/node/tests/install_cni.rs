//! `oxivirt-node install-cni` end to end. No Kubernetes cluster runs on these machines:
//! temporary dirs stand in for a node's host paths (`/opt/cni/bin`, `/etc/cni/net.d`, as the
//! DaemonSet mounts them under `/host`), a fake service-account dir for the pod's projected
//! token and `ca.crt`, the `KUBERNETES_SERVICE_*` variables for the ones the kubelet sets,
//! and two small files for the image's `oxivirt-cni` and `oxivirt-multus`.

mod common;

use oxivirt_testkit::cleanup::{self, TempDir};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use common::BIN;
const DEFAULT_NET: &str = r#"{"cniVersion":"0.3.1","name":"cbr0","plugins":[{"type":"flannel","delegate":{"isDefaultGateway":true}},{"type":"portmap","capabilities":{"portMappings":true}}]}"#;
/// Where the kubeconfig is as the host sees it (the config names this).
const HOST_KUBECONFIG: &str = "/etc/cni/net.d/oxivirt.d/oxivirt.kubeconfig";

struct Node {
    _root: TempDir,
    bin: PathBuf,
    conf: PathBuf,
    sa: PathBuf,
    src: PathBuf,
    ca_pem: String,
}

impl Node {
    fn new() -> Self {
        let root = TempDir::new("node").expect("tmp");
        let d = |n: &str| {
            let p = root.path().join(n);
            std::fs::create_dir_all(&p).expect("mkdir");
            p
        };
        let (bin, conf, sa, src) = (d("opt/cni/bin"), d("etc/cni/net.d"), d("sa"), d("src"));
        std::fs::write(
            src.join("oxivirt-cni"),
            b"#!/bin/sh\n# stands in for oxivirt-cni\n",
        )
        .expect("w");
        std::fs::write(
            src.join("oxivirt-multus"),
            b"#!/bin/sh\n# stands in for oxivirt-multus\n",
        )
        .expect("w");
        let ca_pem = oxivirt_testkit::mock_kube::TlsMaterial::generate().ca_pem;
        std::fs::write(sa.join("ca.crt"), &ca_pem).expect("w");
        std::fs::write(sa.join("token"), "token-one\n").expect("w");
        Self {
            _root: root,
            bin,
            conf,
            sa,
            src,
            ca_pem,
        }
    }

    fn command(&self, extra: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("install-cni")
            .arg("--bin-dir")
            .arg(&self.bin)
            .arg("--conf-dir")
            .arg(&self.conf)
            .arg("--source-dir")
            .arg(&self.src)
            .arg("--service-account-dir")
            .arg(&self.sa)
            .args(["--poll-ms", "100"])
            .args(extra)
            .env("KUBERNETES_SERVICE_HOST", "10.96.0.1")
            .env("KUBERNETES_SERVICE_PORT", "443");
        c
    }

    fn once(&self) -> Output {
        self.command(&["--once"]).output().expect("run")
    }

    fn spawn(&self) -> (Child, cleanup::Registration) {
        cleanup::spawn(&mut self.command(&[])).expect("spawn")
    }

    fn multus_conf(&self) -> PathBuf {
        self.conf.join("00-multus.conf")
    }

    fn kubeconfig(&self) -> PathBuf {
        self.conf.join("oxivirt.d/oxivirt.kubeconfig")
    }

    fn read_conf(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.multus_conf()).expect("read conf"))
            .expect("json")
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(5);
    while !ok() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn terminate(mut child: Child) {
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "exit on SIGTERM: {status:?}");
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "install-cni failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn installs_plugins_kubeconfig_and_multus_conf() {
    let node = Node::new();
    std::fs::write(node.conf.join("10-flannel.conflist"), DEFAULT_NET).expect("w");
    // The cluster's own reference plugins, which must stay as they are.
    std::fs::write(node.bin.join("bridge"), b"host bridge").expect("w");
    ok(&node.once());
    for name in ["oxivirt-cni", "oxivirt-multus"] {
        let p = node.bin.join(name);
        assert_eq!(
            std::fs::read(&p).expect("installed"),
            std::fs::read(node.src.join(name)).expect("src")
        );
        assert_eq!(mode(&p), 0o755, "{name}");
    }
    assert_eq!(
        std::fs::read_link(node.bin.join("multus")).expect("multus link"),
        Path::new("oxivirt-multus")
    );
    assert_eq!(
        std::fs::read(node.bin.join("bridge")).expect("r"),
        b"host bridge"
    );
    assert!(!node.bin.join("host-local").exists());

    // The kubeconfig: 0600, the service account's token and CA, loadable by the meta plugin.
    let kc = node.kubeconfig();
    assert_eq!(mode(&kc), 0o600);
    let text = std::fs::read_to_string(&kc).expect("kubeconfig");
    assert!(text.contains("token: \"token-one\""), "{text}");
    assert!(text.contains("server: \"https://10.96.0.1:443\""), "{text}");
    oxivirt_multus_core::kube::KubeSource::from_kubeconfig(&kc, Duration::from_secs(1))
        .expect("the meta plugin loads the kubeconfig");
    assert!(!node.ca_pem.is_empty());

    // The multus config wraps the default network and names the kubeconfig as the host sees
    // it (the agent's /host/etc/cni/net.d is the runtime's /etc/cni/net.d).
    let conf = node.read_conf();
    let default: Value = serde_json::from_str(DEFAULT_NET).expect("json");
    assert_eq!(conf["type"], "multus");
    assert_eq!(conf["cniVersion"], "0.3.1");
    assert_eq!(conf["delegates"], json!([default]));
    assert_eq!(conf["delegates"][0]["name"], "cbr0");
    assert_eq!(conf["kubeconfig"], HOST_KUBECONFIG);
    assert_eq!(conf["confDir"], "/etc/cni/net.d");
    assert_eq!(conf["binDir"], "/opt/cni/bin");
    assert_eq!(conf["capabilities"], json!({"portMappings": true}));
    oxivirt_multus_core::config::Config::load(&std::fs::read(node.multus_conf()).expect("r"))
        .expect("the meta plugin loads its config");

    // Again (a restarted agent): nothing changes; a new image's plugin replaces the old.
    ok(&node.once());
    assert_eq!(node.read_conf(), conf);
    std::fs::write(node.src.join("oxivirt-cni"), b"#!/bin/sh\n# version two\n").expect("w");
    ok(&node.once());
    assert_eq!(
        std::fs::read(node.bin.join("oxivirt-cni")).expect("r"),
        b"#!/bin/sh\n# version two\n"
    );
    let stray: Vec<_> = std::fs::read_dir(&node.bin)
        .expect("ls")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("tmp"))
        .collect();
    assert!(stray.is_empty(), "temporary files left: {stray:?}");
}

/// `--thick-socket-dir`: the thick plugin's config (the runtime runs `multus-shim`, which
/// hands the call to the daemon on the socket), its link beside `multus`, and a config the
/// shim loads; a foreign `multus-shim` (Multus's binary) is left alone and fatal.
#[test]
fn the_thick_plugins_config_and_shim() {
    let node = Node::new();
    std::fs::write(node.conf.join("10-flannel.conflist"), DEFAULT_NET).expect("w");
    ok(&node
        .command(&["--once", "--thick-socket-dir", "/run/multus"])
        .output()
        .expect("run"));
    for link in ["multus", "multus-shim"] {
        assert_eq!(
            std::fs::read_link(node.bin.join(link)).expect("link"),
            Path::new("oxivirt-multus"),
            "{link}"
        );
    }
    let conf = node.read_conf();
    assert_eq!(conf["type"], "multus-shim");
    assert_eq!(conf["socketDir"], "/run/multus");
    assert_eq!(conf["kubeconfig"], HOST_KUBECONFIG);
    assert_eq!(conf["delegates"][0]["name"], "cbr0");
    let shim = oxivirt_multus_core::thick::ShimConfig::parse(
        &std::fs::read(node.multus_conf()).expect("r"),
    )
    .expect("the shim loads its config");
    assert_eq!(shim.socket_dir.as_deref(), Some(Path::new("/run/multus")));

    // Back to thin: the same agent without the flag rewrites it.
    ok(&node.once());
    assert_eq!(node.read_conf()["type"], "multus");

    let other = Node::new();
    std::fs::write(other.conf.join("10-flannel.conflist"), DEFAULT_NET).expect("w");
    std::fs::write(other.bin.join("multus-shim"), b"Multus's shim").expect("w");
    let out = other
        .command(&["--once", "--thick-socket-dir", "/run/multus"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("multus-shim: not a link to oxivirt-multus"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(other.bin.join("multus-shim")).expect("r"),
        b"Multus's shim"
    );
}

#[test]
fn follows_token_rotation_and_default_network_then_uninstalls_on_sigterm() {
    let node = Node::new();
    std::fs::write(node.conf.join("10-flannel.conflist"), DEFAULT_NET).expect("w");
    let (child, _reg) = node.spawn();
    wait_for("the multus config", || node.multus_conf().exists());
    wait_for("the kubeconfig", || node.kubeconfig().exists());

    // The kubelet rotates the projected token.
    std::fs::write(node.sa.join("token"), "token-two\n").expect("w");
    wait_for("the kubeconfig with the rotated token", || {
        std::fs::read_to_string(node.kubeconfig())
            .is_ok_and(|t| t.contains("\"token-two\"") && !t.contains("token-one"))
    });
    assert_eq!(mode(&node.kubeconfig()), 0o600);

    // The default network's config changes (a CNI upgrade).
    let changed =
        r#"{"cniVersion":"1.0.0","name":"cbr0","plugins":[{"type":"flannel","mtu":1400}]}"#;
    std::fs::write(node.conf.join("10-flannel.conflist"), changed).expect("w");
    wait_for("the regenerated multus config", || {
        std::fs::read(node.multus_conf())
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .is_some_and(|v| v["delegates"][0]["plugins"][0]["mtu"] == 1400)
    });
    assert_eq!(node.read_conf()["cniVersion"], "1.0.0");

    // Uninstall: the config and the kubeconfig go, the plugins stay (for CNI DEL).
    terminate(child);
    assert!(!node.multus_conf().exists());
    assert!(!node.kubeconfig().exists());
    assert!(!node.conf.join("oxivirt.d").exists());
    assert!(node.conf.join("10-flannel.conflist").exists());
    assert!(node.bin.join("oxivirt-multus").exists());
}

#[test]
fn waits_for_a_default_network() {
    let node = Node::new();
    let (child, _reg) = node.spawn();
    wait_for("the kubeconfig", || node.kubeconfig().exists());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !node.multus_conf().exists(),
        "a multus config wrapping nothing"
    );
    std::fs::write(node.conf.join("10-flannel.conflist"), DEFAULT_NET).expect("w");
    wait_for("the multus config", || node.multus_conf().exists());
    assert_eq!(node.read_conf()["delegates"][0]["name"], "cbr0");
    // The default network goes away again: so does the config around it.
    std::fs::remove_file(node.conf.join("10-flannel.conflist")).expect("rm");
    wait_for("the multus config removed", || !node.multus_conf().exists());
    terminate(child);
}

#[test]
fn replaces_its_own_multus_conf_and_leaves_a_foreign_one() {
    let node = Node::new();
    std::fs::write(node.conf.join("10-flannel.conflist"), DEFAULT_NET).expect("w");
    // Ours, left by an agent that was killed outright: replaced.
    let stale =
        json!({"type": "multus", "kubeconfig": HOST_KUBECONFIG, "delegates": [{"name": "old"}]});
    std::fs::write(node.multus_conf(), stale.to_string()).expect("w");
    ok(&node.once());
    assert_eq!(node.read_conf()["delegates"][0]["name"], "cbr0");

    // Multus's own: left alone, with an error naming it, and nothing installed.
    let other = Node::new();
    std::fs::write(other.conf.join("10-flannel.conflist"), DEFAULT_NET).expect("w");
    let foreign = r#"{"type":"multus","kubeconfig":"/etc/cni/net.d/multus.d/multus.kubeconfig"}"#;
    std::fs::write(other.multus_conf(), foreign).expect("w");
    let out = other.once();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&other.multus_conf().display().to_string()) && err.contains("Multus"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(other.multus_conf()).expect("r"),
        foreign
    );
    assert!(!other.bin.join("oxivirt-multus").exists());
    assert!(!other.kubeconfig().exists());

    // Multus's binary where our link would go: the same.
    std::fs::remove_file(other.multus_conf()).expect("rm");
    std::fs::write(other.bin.join("multus"), b"multus binary").expect("w");
    let out = other.once();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&other.bin.join("multus").display().to_string()),
        "{err}"
    );
    assert_eq!(
        std::fs::read(other.bin.join("multus")).expect("r"),
        b"multus binary"
    );
    assert!(!other.multus_conf().exists());
}

#[test]
fn missing_service_account_is_named() {
    let node = Node::new();
    std::fs::write(node.conf.join("10-flannel.conflist"), DEFAULT_NET).expect("w");
    std::fs::remove_file(node.sa.join("token")).expect("rm");
    let out = node.once();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&node.sa.join("token").display().to_string()),
        "{err}"
    );
    assert!(!node.multus_conf().exists());
}

/// The DaemonSet's `install-cni` container runs a command line this binary accepts (clap
/// rejects an unknown argument before it reaches the trailing `--help`).
#[test]
fn the_daemonset_command_line_is_accepted() {
    let (c, _) = common::daemonset_container("install-cni", "install-cni");
    // It mounts what it writes.
    assert_eq!(
        common::mount_paths(&c),
        ["/host/opt/cni/bin", "/host/etc/cni/net.d"]
    );
}

/// An IPv6 service address is bracketed in the server URL; without the service variables
/// (not in a pod) the error names them.
#[test]
fn service_address_in_the_kubeconfig() {
    let node = Node::new();
    let out = node
        .command(&["--once"])
        .env("KUBERNETES_SERVICE_HOST", "fd00:10:96::1")
        .output()
        .expect("run");
    ok(&out);
    let text = std::fs::read_to_string(node.kubeconfig()).expect("kubeconfig");
    assert!(
        text.contains("server: \"https://[fd00:10:96::1]:443\""),
        "{text}"
    );
    oxivirt_multus_core::kube::KubeSource::from_kubeconfig(
        &node.kubeconfig(),
        Duration::from_secs(1),
    )
    .expect("loads");

    let out = node
        .command(&["--once"])
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("KUBERNETES_SERVICE_HOST"), "{err}");
}
