//! Nothing left behind: a "holder" process (this test binary run again, see
//! [`holder_process`]) makes namespaces, a directory and a child process group through
//! testkit, and is then interrupted or killed.

use oxivirt_testkit::cleanup::{self, TempDir};
use oxivirt_testkit::{root_test, TestNs};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const HOLDER_ENV: &str = "OXIVIRT_TEST_CLEANUP_HOLDER";

/// Not a test of its own: the body of the holder process when [`HOLDER_ENV`] is set, a
/// no-op otherwise. Prints what it made on one `READY` line, then waits to be stopped.
#[test]
fn holder_process() {
    if std::env::var_os(HOLDER_ENV).is_none() {
        return;
    }
    let nss: Vec<TestNs> = (0..3).map(|_| TestNs::new("oxh")).collect();
    let dir = TempDir::new("holder").expect("temp dir");
    std::fs::create_dir(dir.path().join("sub")).expect("subdir");
    std::fs::write(dir.path().join("sub/file"), "x").expect("file");
    // Not holding our stdout: the test reads it until the READY line.
    let (child, _running) = cleanup::spawn(
        Command::new("sleep")
            .arg("3600")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .expect("spawn sleep");
    let ready = json!({
        "netns": nss.iter().map(|n| n.name.clone()).collect::<Vec<_>>(),
        "dirs": [dir.path()],
        "child": child.id(),
    });
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "READY {ready}");
    let _ = out.flush();
    drop(out);
    std::thread::sleep(Duration::from_secs(120));
    panic!("the holder was not stopped");
}

struct Holder {
    proc: Child,
    netns: Vec<String>,
    dirs: Vec<PathBuf>,
    child: u32,
}

impl Drop for Holder {
    fn drop(&mut self) {
        // A failed assertion must not leave the holder running (it cleans up on SIGTERM).
        if matches!(self.proc.try_wait(), Ok(None)) {
            signal(&self.proc, libc::SIGTERM);
            let _ = self.proc.wait();
        }
    }
}

fn start_holder() -> Holder {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        "holder_process",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(HOLDER_ENV, "1")
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    reset_signals(&mut cmd);
    let mut proc = cmd.spawn().expect("spawn holder");
    let stdout = proc.stdout.take().expect("holder stdout");
    let mut ready = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("holder output");
        // libtest may have started the line ("test holder_process ... ").
        if let Some((_, j)) = line.split_once("READY ") {
            ready = Some(serde_json::from_str::<Value>(j).expect("READY json"));
            break;
        }
    }
    let ready = ready.unwrap_or_else(|| panic!("holder exited early: {:?}", proc.wait()));
    let strings = |k: &str| -> Vec<String> {
        ready[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let child = ready["child"]
        .as_u64()
        .and_then(|c| u32::try_from(c).ok())
        .expect("child pid");
    Holder {
        netns: strings("netns"),
        dirs: strings("dirs").into_iter().map(PathBuf::from).collect(),
        child,
        proc,
    }
}

/// A child inherits ignored signals (a shell's background job ignores SIGINT); the holder
/// must see them as a foreground process would.
fn reset_signals(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec and calls only signal(2), which is
    // async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
            Ok(())
        });
    }
}

fn netns_exists(name: &str) -> bool {
    Path::new(cleanup::NETNS_DIR).join(name).exists()
}

/// Whether `pid` is still a `sleep` (the holder's child), not a later process with its pid.
fn sleep_alive(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep\0"))
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim().starts_with('Z'))
        })
}

fn signal(proc: &Child, sig: libc::c_int) {
    let pid = i32::try_from(proc.id()).expect("pid");
    // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill {pid}");
}

fn wait_timeout(proc: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = proc.try_wait().expect("try_wait") {
            return st;
        }
        if Instant::now() > deadline {
            let _ = proc.kill();
            panic!("process {} did not exit within {timeout:?}", proc.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn assert_present(h: &Holder) {
    for n in &h.netns {
        assert!(netns_exists(n), "namespace {n} missing");
    }
    for d in &h.dirs {
        assert!(d.join("sub/file").is_file(), "{} missing", d.display());
    }
    // Spawned just before READY: it may still be on its way to exec.
    assert!(
        oxivirt_testkit::eventually(Duration::from_secs(2), || sleep_alive(h.child)),
        "child {} not running",
        h.child
    );
}

fn assert_gone(h: &Holder) {
    for n in &h.netns {
        assert!(!netns_exists(n), "namespace {n} left behind");
    }
    for d in &h.dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

fn interrupted_holder_removes_everything(sig: libc::c_int) {
    let mut h = start_holder();
    assert_present(&h);
    signal(&h.proc, sig);
    let st = wait_timeout(&mut h.proc, Duration::from_secs(20));
    assert_eq!(st.code(), Some(128 + sig), "{st:?}");
    assert_gone(&h);
    assert!(
        oxivirt_testkit::eventually(Duration::from_secs(2), || !sleep_alive(h.child)),
        "child process group of the holder still running"
    );
}

#[root_test]
fn sigint_removes_namespaces_dirs_and_child_processes() {
    interrupted_holder_removes_everything(libc::SIGINT);
}

#[root_test]
fn sigterm_removes_namespaces_dirs_and_child_processes() {
    interrupted_holder_removes_everything(libc::SIGTERM);
}

#[root_test]
fn sweep_removes_what_a_killed_process_left_and_keeps_live_ones() {
    let mut dead = start_holder();
    let mut live = start_holder();
    assert_present(&dead);
    assert_present(&live);
    signal(&dead.proc, libc::SIGKILL);
    let st = wait_timeout(&mut dead.proc, Duration::from_secs(10));
    assert_eq!(st.code(), None, "{st:?}");
    // A killed process's children live on (sweeps remove names and files, not processes).
    if let Ok(pid) = i32::try_from(dead.child) {
        if sleep_alive(dead.child) {
            // SAFETY: kill has no memory-safety preconditions; the pid is checked above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    // Another test process starting now may sweep first; either way it must be gone.
    cleanup::sweep();
    assert_gone(&dead);
    assert_present(&live);
    signal(&live.proc, libc::SIGTERM);
    let st = wait_timeout(&mut live.proc, Duration::from_secs(20));
    assert_eq!(st.code(), Some(128 + libc::SIGTERM), "{st:?}");
    assert_gone(&live);
}

#[root_test]
fn sweep_removes_own_pid_leftovers_but_not_registered_names() {
    let kept = TestNs::new("oxs");
    // As an earlier process with this pid would have left it: tagged with us, unregistered.
    let stale = oxivirt_testkit::unique("oxs");
    oxivirt_testkit::sh(&["ip", "netns", "add", &stale]);
    let stale_dir = std::env::temp_dir().join(oxivirt_testkit::unique("oxivirt-stale"));
    std::fs::create_dir(&stale_dir).expect("stale dir");
    let kept_dir = TempDir::new("kept").expect("temp dir");
    let swept = cleanup::sweep();
    assert!(!netns_exists(&stale), "{stale} not swept: {swept:?}");
    assert!(!stale_dir.exists(), "{} not swept", stale_dir.display());
    assert!(netns_exists(&kept.name), "{} swept", kept.name);
    assert!(
        kept_dir.path().is_dir(),
        "{} swept",
        kept_dir.path().display()
    );
}

/// A live process with the pid of a dead owner (pid reuse): the owner lock, not the pid,
/// tells. Pid 1 is alive; the name below claims it as its owner with an unlocked owner
/// file, as a dead owner whose pid went to init would leave.
#[root_test]
fn sweep_tells_a_dead_owner_from_a_live_process_with_its_pid() {
    // Unique to this process (the prefix), owned by pid 1 (the tag).
    let name = format!("oxr{}_1_0", std::process::id());
    assert_eq!(cleanup::owner_of(&name), Some(1));
    cleanup::init();
    oxivirt_testkit::sh(&["ip", "netns", "add", &name]);
    let owner_file = Path::new("/run/oxivirt-testkit/1");
    // Without an owner file a live pid keeps its names: in doubt, nothing is removed.
    if !owner_file.exists() {
        cleanup::sweep();
        assert!(netns_exists(&name), "{name} swept while pid 1 lives");
    }
    // With an unlocked owner file the owner is known dead. Another process's sweep may take
    // the file away first, so it is put back until a sweep has seen it.
    let gone = (0..20).any(|_| {
        let _ = std::fs::write(owner_file, "");
        cleanup::sweep();
        !netns_exists(&name)
    });
    if !gone {
        let _ = cleanup::delete_netns(&name);
    }
    assert!(gone, "{name} kept though its owner's lock was free");
}
