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
use oxivirt_testkit::cleanup::{OwnedChild, TempDir};
use oxivirt_testkit::cni_env::outside_world;
use oxivirt_testkit::registry::guest_image;
use oxivirt_testkit::{eventually, root_test};
use serde_json::{json, Value};
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn cli() -> PathBuf {
    common::daemon_bin().with_file_name("oxivirt")
}

impl Node {
    /// A command in the node's namespace with this daemon's kubeconfig.
    fn run(&self, program: &std::path::Path, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net={}", self.ns.display()))
            .arg(program)
            .args(args)
            .env("KUBECONFIG", self.data.join("kubeconfig"))
            .output()
            .expect("run in the node")
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        self.run(&common::kubectl().expect("kubectl"), args)
    }

    fn oxivirt(&self, args: &[&str]) -> Output {
        self.run(&cli(), args)
    }
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `kubectl get vm testvm-2`'s STATUS and READY.
fn vm_row(node: &Node) -> (String, String) {
    let o = node.kubectl(&["get", "vm", "testvm-2", "--no-headers"]);
    let row = out(&o);
    let cols: Vec<&str> = row.split_whitespace().collect();
    (
        cols.get(2).unwrap_or(&"").to_string(),
        cols.get(3).unwrap_or(&"").to_string(),
    )
}

/// `oxivirt console testvm-2` driven through pipes.
struct Console {
    child: OwnedChild,
    seen: Arc<Mutex<String>>,
}

impl Console {
    fn open(node: &Node) -> Console {
        let mut child = OwnedChild::spawn(
            Command::new("nsenter")
                .arg(format!("--net={}", node.ns.display()))
                .arg(cli())
                .args(["console", "testvm-2"])
                .env("KUBECONFIG", node.data.join("kubeconfig"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .expect("oxivirt console");
        let seen = Arc::new(Mutex::new(String::new()));
        for mut stream in [
            Box::new(child.child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.child.stderr.take().expect("stderr")),
        ] {
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    if let Ok(mut s) = seen.lock() {
                        s.push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
            });
        }
        Console { child, seen }
    }

    fn len(&self) -> usize {
        self.seen.lock().map(|s| s.len()).unwrap_or(0)
    }

    fn expect(&self, from: usize, what: &str, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.seen.lock().map(|s| s.clone()).unwrap_or_default();
            if let Some(i) = s.get(from..).and_then(|t| t.find(what)) {
                return from + i + what.len();
            }
            assert!(
                Instant::now() < deadline,
                "console: {what:?} did not appear; it said:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.child.child.stdin.as_mut().expect("stdin");
        stdin
            .write_all(format!("{line}\r").as_bytes())
            .expect("console write");
        stdin.flush().expect("flush");
    }

    fn run(&mut self, cmd: &str) -> String {
        let at = self.len();
        self.send(&format!("{cmd}; echo END-OF-$((6*7))"));
        let end = self.expect(at, "END-OF-42", Duration::from_secs(30));
        let s = self.seen.lock().map(|s| s.clone()).unwrap_or_default();
        s[at..end].to_string()
    }
}

#[root_test(
    "docker-registry",
    "skopeo",
    "qemu-system-x86_64",
    "qemu-img",
    "nft",
    "nsenter",
    "curl",
    "busybox"
)]
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
    let _launchers = Launchers(s.data());

    // The seed's NAD (its quote closed; IPAM kept in the test's dir) and vm-2.yaml verbatim.
    let nad = s.tmp.path().join("multus-bridge.yaml");
    let config = s.env.seed_conf("0.3.1", json!({})).to_string();
    std::fs::write(
        &nad,
        format!("apiVersion: \"k8s.cni.cncf.io/v1\"\nkind: NetworkAttachmentDefinition\nmetadata:\n  name: multus-br\nspec:\n  config: '{config}'\n"),
    )
    .expect("nad");
    let o = node.kubectl(&["apply", "-f", nad.to_str().expect("path")]);
    assert_eq!(
        out(&o),
        "networkattachmentdefinition.k8s.cni.cncf.io/multus-br created\n"
    );
    let vm_yaml = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/seed/vm-2.yaml");
    let o = node.kubectl(&["apply", "-f", vm_yaml]);
    assert_eq!(out(&o), "virtualmachine.kubevirt.io/testvm-2 created\n");
    assert!(
        eventually(Duration::from_secs(10), || vm_row(&node)
            == ("Stopped".into(), "False".into())),
        "kubectl get vm: {:?}",
        vm_row(&node)
    );

    // virtctl start, as the article.
    let o = node.oxivirt(&["start", "testvm-2"]);
    assert_eq!(out(&o), "VM testvm-2 was scheduled to start\n", "{o:?}");
    let mut row = (String::new(), String::new());
    assert!(
        eventually(Duration::from_secs(120), || {
            row = vm_row(&node);
            row == ("Running".into(), "True".into())
        }),
        "kubectl get vm: {row:?}; pods: {}",
        out(&node.kubectl(&["get", "pods", "-o", "yaml"]))
    );
    let (_, vmi) =
        node.get("/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances/testvm-2");
    let guest_ip = vmi["status"]["interfaces"][1]["ipAddress"]
        .as_str()
        .unwrap_or_else(|| panic!("the guest's bridged address: {vmi}"))
        .to_string();
    assert!(guest_ip.starts_with("192.168.100."), "{guest_ip}");
    let o = node.kubectl(&["get", "pods", "--no-headers"]);
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
    let mut con = Console::open(&node);
    con.expect(
        0,
        "Successfully connected to testvm-2 console. The escape sequence is ^]",
        Duration::from_secs(10),
    );
    let at = con.expect(0, "login:", Duration::from_secs(180));
    con.send("cirros");
    let at = con.expect(at, "Password:", Duration::from_secs(30));
    con.send("gocubsgo");
    con.expect(at, "$ ", Duration::from_secs(30));
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
    let o = node.oxivirt(&["stop", "testvm-2"]);
    assert_eq!(out(&o), "VM testvm-2 was scheduled to stop\n", "{o:?}");
    assert!(
        eventually(Duration::from_secs(120), || vm_row(&node)
            == ("Stopped".into(), "False".into())
            && node.pod(&pod_name).0 == 404),
        "after stop: {:?}, pod {}",
        vm_row(&node),
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
    let o = node.kubectl(&["delete", "-f", vm_yaml]);
    assert_eq!(out(&o), "virtualmachine.kubevirt.io \"testvm-2\" deleted\n");
    let o = node.kubectl(&["get", "vm,vmi,pods", "--no-headers"]);
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
