//! Test support shared by the integration tests: network namespaces that clean up after
//! themselves (also when a test panics or the process is interrupted), unique names, and
//! running CNI plugins.

pub mod cleanup;
pub mod cni;
pub mod cni_env;
pub mod mock_kube;
pub mod oxivirtd;
pub mod registry;
pub mod seed;

pub use cni::{Cni, CniOutput};
pub use oxivirt_testkit_macros::root_test;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A short name unique across parallel tests and live processes, tagged with this process
/// as its owner so a later [`cleanup::sweep`] can tell leftovers from live names (fits in
/// 15 bytes with a prefix of up to 5; see [`cleanup::unique`]).
pub fn unique(prefix: &str) -> String {
    cleanup::unique(prefix)
}

/// Whether a privileged test can run: root, iproute2, and the commands in `tools` on
/// `PATH`. Prints `SKIP <test>: <why>` on stderr when not, so a run without them says what
/// it left out. Tests use it through [`root_test`].
pub fn require_root(test: &str, tools: &[&str]) -> bool {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        skip(test, "needs root (network namespaces, links)");
        return false;
    }
    if !Path::new("/usr/sbin/ip").exists()
        && !Path::new("/sbin/ip").exists()
        && which("ip").is_none()
    {
        skip(test, "iproute2 `ip` is not installed");
        return false;
    }
    if let Some(missing) = tools.iter().find(|t| which(t).is_none()) {
        skip(test, &format!("`{missing}` is not installed"));
        return false;
    }
    true
}

/// The loud skip line: a test that cannot run here says so and why.
pub fn skip(test: &str, why: &str) {
    eprintln!("SKIP {test}: {why}");
}

/// Debian's reference plugins, or a skip line for `test` when they are not installed.
pub fn reference_plugins_or_skip(test: &str) -> Option<PathBuf> {
    let found = reference_plugins();
    if found.is_none() {
        skip(
            test,
            "containernetworking-plugins (the reference) not installed",
        );
    }
    found
}

pub fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(cmd))
            .find(|p| p.is_file())
    })
}

/// The names in `dir` (none if it cannot be read), in the order the directory gives them.
pub fn dir_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
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

/// Runs `f(0)` .. `f(n - 1)` on `n` threads at once and returns what they gave, in order
/// (for races: parallel ADDs into one store).
pub fn parallel<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = (0..n).map(|i| s.spawn(move || f(i))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
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
