//! Test support shared by the integration tests: network namespaces that clean up after
//! themselves (also when a test panics or the process is interrupted), unique names, and
//! running CNI plugins.

pub mod cleanup;
pub mod cni_env;
pub mod mock_kube;
pub mod seed;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A short name unique across parallel tests and live processes, tagged with this process
/// as its owner so a later [`cleanup::sweep`] can tell leftovers from live names (fits in
/// 15 bytes with a prefix of up to 5; see [`cleanup::unique`]).
pub fn unique(prefix: &str) -> String {
    cleanup::unique(prefix)
}

/// Whether privileged tests can run; prints a loud skip line when not.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        eprintln!("SKIP {test}: needs root (network namespaces, links)");
        return false;
    }
    if !Path::new("/usr/sbin/ip").exists()
        && !Path::new("/sbin/ip").exists()
        && which("ip").is_none()
    {
        eprintln!("SKIP {test}: iproute2 `ip` is not installed");
        return false;
    }
    true
}

pub fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(cmd))
            .find(|p| p.is_file())
    })
}

/// Runs a command and returns stdout, panicking with its stderr on failure.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A named network namespace (`/run/netns/<name>`) with loopback up, deleted on drop, on
/// SIGINT/SIGTERM, or by the next process's sweep if this one is killed outright.
#[derive(Debug)]
pub struct TestNs {
    pub name: String,
    _held: cleanup::Registration,
}

impl TestNs {
    pub fn new(prefix: &str) -> Self {
        Self::try_new(prefix).unwrap_or_else(|e| panic!("network namespace {prefix}: {e}"))
    }

    /// Like [`TestNs::new`], for callers that report errors instead of panicking.
    pub fn try_new(prefix: &str) -> std::io::Result<Self> {
        let name = unique(prefix);
        let ((), held) = cleanup::hold(cleanup::Held::Netns(name.clone()), || {
            run_ok(&["ip", "netns", "add", &name])?;
            run_ok(&["ip", "-n", &name, "link", "set", "lo", "up"])
        })?;
        Ok(Self { name, _held: held })
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {}: {e}", self.name))
    }

    /// Runs a command inside the namespace and returns stdout; panics on failure.
    pub fn sh(&self, args: &[&str]) -> String {
        let out = self.exec(args);
        assert!(
            out.status.success(),
            "in {}: {args:?} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ip -j <args>` in the namespace, parsed.
    pub fn ip_json(&self, args: &[&str]) -> serde_json::Value {
        let mut full = vec!["ip", "-j"];
        full.extend_from_slice(args);
        let out = self.sh(&full);
        serde_json::from_str(&out).unwrap_or(serde_json::Value::Null)
    }

    pub fn has_link(&self, name: &str) -> bool {
        self.exec(&["ip", "link", "show", "dev", name])
            .status
            .success()
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = cleanup::delete_netns(&self.name);
    }
}

/// Runs a command; its stderr becomes the error when it fails.
fn run_ok(args: &[&str]) -> std::io::Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    if out.status.success() {
        return Ok(());
    }
    Err(std::io::Error::other(format!(
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// A CNI invocation.
#[derive(Debug, Clone)]
pub struct CniCall<'a> {
    pub plugin: &'a Path,
    pub command: &'a str,
    pub container_id: &'a str,
    pub netns: Option<&'a Path>,
    pub ifname: &'a str,
    pub args: &'a str,
    pub cni_path: &'a str,
    /// The "node": the namespace the plugin runs in (standing in for the host).
    pub node: Option<&'a TestNs>,
    pub extra_env: Vec<(&'a str, String)>,
}

/// The result of running a plugin.
#[derive(Debug)]
pub struct CniOutput {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl CniOutput {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "plugin printed no JSON ({e}): {:?} / {}",
                self.stdout, self.stderr
            )
        })
    }

    pub fn code(&self) -> u64 {
        self.json()
            .get("code")
            .and_then(|c| c.as_u64())
            .unwrap_or(0)
    }
}

pub fn run_cni(call: &CniCall<'_>, stdin: &str) -> CniOutput {
    let mut cmd = match call.node {
        Some(node) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &node.name]).arg(call.plugin);
            c
        }
        None => Command::new(call.plugin),
    };
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CNI_COMMAND", call.command)
        .env("CNI_CONTAINERID", call.container_id)
        .env("CNI_IFNAME", call.ifname)
        .env("CNI_PATH", call.cni_path)
        .env("CNI_ARGS", call.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(ns) = call.netns {
        cmd.env("CNI_NETNS", ns);
    }
    for (k, v) in &call.extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", call.plugin.display()));
    if let Some(mut s) = child.stdin.take() {
        let _ = s.write_all(stdin.as_bytes());
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait: {e}"));
    CniOutput {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Where Debian's reference plugins live, if installed.
pub fn reference_plugins() -> Option<PathBuf> {
    let p = PathBuf::from("/usr/lib/cni");
    p.join("bridge").is_file().then_some(p)
}

/// A binary of this workspace's build, found beside the test binary's `deps/` directory
/// (same target and profile). Integration tests of library crates run the plugins the way a
/// runtime does; `cargo test --workspace` and `scripts/test.sh` build every binary first.
pub fn built_binary(name: &str, package: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} has no profile directory", exe.display()));
    let bin = profile_dir.join(name);
    assert!(
        bin.is_file(),
        "{} is not built: run `cargo build -p {package}` (or the whole workspace) first",
        bin.display()
    );
    bin
}

/// A directory holding our plugins under their names: `oxivirt-cni` (`bin`) as bridge,
/// macvlan, host-local and static, and its sibling `oxivirt-multus` as multus. It sits
/// beside the binaries in the build tree, one for every test process (nothing to clean up
/// in /tmp).
pub fn our_plugins_dir(bin: &Path) -> PathBuf {
    let home = bin.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = home.join("oxivirt-plugins");
    let _ = std::fs::create_dir_all(&dir);
    let multus = home.join("oxivirt-multus");
    for (name, target) in [
        ("bridge", bin),
        ("macvlan", bin),
        ("host-local", bin),
        ("static", bin),
        ("multus", multus.as_path()),
    ] {
        let link = dir.join(name);
        if !link.exists() {
            let _ = std::os::unix::fs::symlink(target, &link);
        }
    }
    dir
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held. For state the
/// kernel finishes asynchronously (a retired veth's deletion), never as a stand-in for a
/// result the code under test should already have produced.
pub fn eventually(timeout: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
