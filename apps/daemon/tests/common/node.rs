//! A real `oxivirtd` run inside a test "node" network namespace, with a registry there
//! serving the seed's containerDisk through the `quay.io` mirror, our CNI plugins and
//! `oxivirt-multus` from this build, and the launcher from this build.

#![allow(dead_code)]

use super::{daemon_bin, split_status};
use oxivirt_testkit::cleanup::{OwnedChild, TempDir};
use oxivirt_testkit::cni_env::{our_dir, Env};
use oxivirt_testkit::registry::{small_qcow2, Layout, Registry, PORT};
use oxivirt_testkit::{built_binary, eventually};
use serde_json::Value;
use std::io::{BufRead as _, BufReader};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const NODE: &str = "node-1";

/// A daemon in the node namespace, with the pod runtime's flags for this test.
pub struct Node {
    pub child: OwnedChild,
    pub url: String,
    pub data: PathBuf,
    pub ns: PathBuf,
}

pub struct Setup {
    /// First, so dropped first: the launchers (which outlive any one daemon, by design)
    /// go before the namespaces and the dir they use.
    _launchers: Launchers,
    pub env: Env,
    pub tmp: TempDir,
    _reg: Registry,
    /// Run the controllers in the daemon (else the test makes their objects).
    pub controllers: bool,
}

impl Setup {
    pub fn data(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    pub fn start(&self) -> Node {
        self.start_as(NODE)
    }

    pub fn start_as(&self, node_name: &str) -> Node {
        let mut child = OwnedChild::spawn(
            Command::new("nsenter")
                .arg(format!("--net={}", self.env.node.path().display()))
                .arg(daemon_bin())
                .arg("--data-dir")
                .arg(self.data())
                .args(["--listen", "127.0.0.1:0", "--node-name", node_name])
                .arg("--cni-conf-dir")
                .arg(self.tmp.path().join("net.d"))
                .arg("--cni-bin-dir")
                .arg(our_dir())
                .arg("--launcher")
                .arg(built_binary("oxivirt-launcher", "oxivirt-app-launcher"))
                .args([
                    "--registry-mirror",
                    &format!("quay.io=http://127.0.0.1:{PORT}"),
                ])
                .args(["--accel", "tcg"])
                .args((!self.controllers).then_some("--no-controllers"))
                // Our host-local's index beside the test's other IPAM state.
                .env("OXIVIRT_IPAM_INDEX_DIR", self.env.index_dir())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        )
        .expect("start oxivirtd");
        let stdout = child.child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line).expect("ready line");
        let url = oxivirt_testkit::oxivirtd::served_url(&line);
        // The rest of its log goes to the test's output.
        std::thread::spawn(move || {
            for l in reader.lines().map_while(Result::ok) {
                eprintln!("{l}");
            }
        });
        Node {
            child,
            url,
            data: self.data(),
            ns: self.env.node.path(),
        }
    }
}

impl Node {
    /// `curl` in the node namespace as the admin: (HTTP status, JSON body).
    pub fn api(&self, method: &str, path: &str, body: Option<&Value>, ctype: &str) -> (u16, Value) {
        let pki = |f: &str| self.data.join("pki").join(f).display().to_string();
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.ns.display()))
            .args([
                "curl",
                "-sS",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                "-X",
                method,
            ])
            .args(["--cacert", &pki("ca.crt"), "--cert", &pki("admin.crt")])
            .args(["--key", &pki("admin.key")])
            .args(["-H", &format!("Content-Type: {ctype}")]);
        if let Some(b) = body {
            cmd.args(["--data-binary", &b.to_string()]);
        }
        cmd.arg(format!("{}{path}", self.url));
        let (code, text) = split_status(cmd.output().expect("curl"));
        (code, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.api("GET", path, None, "application/json")
    }

    pub fn create(&self, path: &str, obj: &Value) -> Value {
        let (code, v) = self.api("POST", path, Some(obj), "application/json");
        assert_eq!(code, 201, "create {path}: {v}");
        v
    }

    pub fn pod(&self, name: &str) -> (u16, Value) {
        self.get(&format!("/api/v1/namespaces/default/pods/{name}"))
    }

    pub fn kill9(&mut self) {
        let _ = self.child.child.kill();
        let _ = self.child.child.wait();
    }
}

/// Kills whatever launchers the daemon's records name and removes their namespaces, also
/// when the test fails half-way (the launchers are not the daemon's process group).
pub struct Launchers(pub PathBuf);

impl Drop for Launchers {
    fn drop(&mut self) {
        let records = std::fs::read_dir(self.0.join("pods"))
            .map(|rd| rd.flatten().map(|e| e.path()).collect::<Vec<_>>())
            .unwrap_or_default();
        for r in records {
            let Ok(v) = std::fs::read(&r).map(|b| serde_json::from_slice::<Value>(&b)) else {
                continue;
            };
            let Ok(v) = v else { continue };
            if let Some(pid) = v["launcherPid"].as_i64().filter(|p| *p > 0) {
                // SAFETY: kill has no memory effects; the group is the launcher's session.
                unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
            }
            if let Some(dir) = v["stateDir"].as_str() {
                if let Some(q) = read_json(&Path::new(dir).join("status.json"))["qemuPid"].as_i64()
                {
                    // SAFETY: as above, the VM's QEMU.
                    unsafe { libc::kill(q as libc::pid_t, libc::SIGKILL) };
                }
            }
            if let Some(ns) = v["netns"].as_str().and_then(|p| p.rsplit('/').next()) {
                let _ = oxivirt_testkit::cleanup::delete_netns(ns);
            }
        }
    }
}

pub fn read_json(p: &Path) -> Value {
    std::fs::read(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

/// A node with the seed's containerDisk: a small disk that does not boot (the guest
/// sits in the BIOS).
pub fn setup() -> Setup {
    let tmp = TempDir::new("node").expect("tmp");
    let layout = Layout::new(tmp.path().join("oci"));
    let disk = small_qcow2(tmp.path());
    let image = layout.image(&[("disk/disk.img", &disk)]);
    layout.tag(&image);
    setup_with(tmp, &layout.dir)
}

/// A node whose registry serves the OCI layout `image` as the seed's containerDisk.
pub fn setup_with(tmp: TempDir, image: &Path) -> Setup {
    let env = Env::new();
    let reg = Registry::start_in(&env.node.path());
    reg.push(image, "kubevirt/cirros-container-disk-demo", "latest", None);
    std::fs::create_dir_all(tmp.path().join("net.d")).expect("net.d");
    Setup {
        _launchers: Launchers(tmp.path().join("data")),
        env,
        tmp,
        _reg: reg,
        controllers: false,
    }
}

/// A boot of the test guest under TCG on a busy machine, to its login prompt.
pub const BOOT: Duration = Duration::from_secs(150);

pub fn cli() -> PathBuf {
    super::daemon_bin().with_file_name("oxivirt")
}

pub fn run_in(node: &Node, program: &Path, args: &[&str]) -> Output {
    Command::new("nsenter")
        .arg(format!("--net={}", node.ns.display()))
        .arg(program)
        .args(args)
        .env("KUBECONFIG", node.data.join("kubeconfig"))
        .output()
        .expect("run in the node")
}

pub fn kubectl(node: &Node, args: &[&str]) -> Output {
    run_in(node, &super::kubectl().expect("kubectl"), args)
}

pub fn oxivirt(node: &Node, args: &[&str]) -> Output {
    run_in(node, &cli(), args)
}

pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `kubectl get vm NAME`'s STATUS and READY.
pub fn vm_row(node: &Node, name: &str) -> (String, String) {
    let o = kubectl(node, &["get", "vm", name, "--no-headers"]);
    let row = out(&o);
    let cols: Vec<&str> = row.split_whitespace().collect();
    (
        cols.get(2).unwrap_or(&"").to_string(),
        cols.get(3).unwrap_or(&"").to_string(),
    )
}

/// `oxivirt console NAME` driven through pipes.
pub struct Console {
    pub child: OwnedChild,
    pub seen: Arc<Mutex<String>>,
}

impl Console {
    pub fn open(node: &Node, vm: &str) -> Console {
        let mut child = OwnedChild::spawn(
            Command::new("nsenter")
                .arg(format!("--net={}", node.ns.display()))
                .arg(cli())
                .args(["console", vm])
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
        let c = Console { child, seen };
        c.expect(
            0,
            &format!("Successfully connected to {vm} console"),
            Duration::from_secs(15),
        );
        c
    }

    pub fn text(&self) -> String {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.seen.lock().map(|s| s.len()).unwrap_or(0)
    }

    pub fn expect(&self, from: usize, what: &str, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.text();
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

    pub fn send(&mut self, line: &str) {
        let stdin = self.child.child.stdin.as_mut().expect("stdin");
        stdin
            .write_all(format!("{line}\r").as_bytes())
            .expect("console write");
        stdin.flush().expect("flush");
    }

    /// Runs `cmd` in the logged-in shell and returns what the console showed until it
    /// finished.
    pub fn run(&mut self, cmd: &str) -> String {
        let at = self.len();
        self.send(&format!("{cmd}; echo END-OF-$((6*7))"));
        let end = self.expect(at, "END-OF-42", Duration::from_secs(30));
        self.text()[at..end].to_string()
    }

    /// Logs in at the guest's prompt (from the start of what this client saw).
    pub fn login(&mut self) {
        let at = self.expect(0, "login:", BOOT);
        self.send("cirros");
        let at = self.expect(at, "Password:", Duration::from_secs(30));
        self.send("gocubsgo");
        self.expect(at, "$ ", Duration::from_secs(30));
    }

    /// Runs `echo` of a value computed by the guest's shell, so the answer cannot be the
    /// echo of the input: proves a live session.
    pub fn answers(&mut self, a: u32, b: u32) {
        let at = self.len();
        self.send(&format!("echo ANS-$(({a}*{b}))"));
        self.expect(at, &format!("ANS-{}", a * b), Duration::from_secs(30));
    }

    pub fn exited(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut st = None;
        eventually(within, || {
            st = self.child.child.try_wait().ok().flatten();
            st.is_some()
        });
        st
    }
}
