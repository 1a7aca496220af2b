//! `oxivirt-bench` interrupted with SIGINT or SIGTERM leaves no namespace, directory or
//! plugin process behind.

use oxivirt_testkit::cleanup::{owner_of, NETNS_DIR};
use oxivirt_testkit::{eventually, root_test};
use std::collections::HashSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn bench() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oxivirt-bench"));
    cmd.args(["--only", "multus", "--samples", "20", "--skip-idle-wait"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    // SAFETY: runs between fork and exec and calls only signal(2), which is
    // async-signal-safe. A child inherits ignored signals (a background job's SIGINT); the
    // bench must see them as a foreground process does.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
            Ok(())
        });
    }
    cmd
}

/// The namespaces (by name) and the files or directories (by path) tagged with `pid`.
fn owned_by(pid: u32) -> (Vec<String>, Vec<PathBuf>) {
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| owner_of(n) == Some(pid))
                    .collect()
            })
            .unwrap_or_default()
    };
    let paths = [std::env::temp_dir(), "/run".into(), "/dev/shm".into()]
        .iter()
        .flat_map(|d| names(d).into_iter().map(move |n| d.join(n)))
        .collect();
    (names(Path::new(NETNS_DIR)), paths)
}

/// (pid, ppid, pgrp) of every process that has not exited.
fn processes() -> Vec<(i32, i32, i32)> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|p| {
            let pid = p.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(p.path().join("stat")).ok()?;
            let mut f = stat.rsplit_once(')')?.1.split_whitespace();
            let state = f.next()?;
            let ppid = f.next()?.parse().ok()?;
            let pgrp = f.next()?.parse().ok()?;
            (state != "Z" && state != "X").then_some((pid, ppid, pgrp))
        })
        .collect()
}

/// The process groups of the plugins the bench runs now (each in a group of its own).
fn plugin_groups(bench: u32) -> HashSet<i32> {
    let bench = i32::try_from(bench).unwrap_or(-1);
    processes()
        .into_iter()
        .filter(|&(pid, ppid, pgrp)| ppid == bench && pgrp == pid)
        .map(|(_, _, pgrp)| pgrp)
        .collect()
}

fn signal(child: &Child, sig: libc::c_int) {
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

/// Starts the bench, waits until it has made `at_least` namespaces (and then `after` more
/// time), signals it and checks that it exits with 128 + signo, having removed everything.
fn interrupt(sig: libc::c_int, at_least: usize, after: Duration) {
    let mut child = bench().spawn().expect("spawn oxivirt-bench");
    let pid = child.id();
    let grew = eventually(Duration::from_secs(60), || {
        owned_by(pid).0.len() >= at_least || matches!(child.try_wait(), Ok(Some(_)))
    });
    if !grew || matches!(child.try_wait(), Ok(Some(_))) {
        let _ = child.kill();
        let st = child.wait();
        panic!("the bench made fewer than {at_least} namespaces before stopping: {st:?}");
    }
    // Sampled for a while: between two plugin runs there is none to see.
    let mut groups = plugin_groups(pid);
    let until = std::time::Instant::now() + after;
    while std::time::Instant::now() < until {
        groups.extend(plugin_groups(pid));
        std::thread::sleep(Duration::from_millis(1));
    }
    let (netns, paths) = owned_by(pid);
    assert!(!paths.is_empty(), "the bench's directories not found");
    signal(&child, sig);
    let exited = eventually(Duration::from_secs(30), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = child.kill();
    }
    let st = child.wait().expect("wait");
    assert!(exited, "the bench did not exit within 30 s of the signal");
    assert_eq!(st.code(), Some(128 + sig), "{st:?}");
    let (left_ns, left_paths) = owned_by(pid);
    assert!(
        left_ns.is_empty() && left_paths.is_empty(),
        "left behind: {left_ns:?} {left_paths:?} (of {} namespaces, {paths:?})",
        netns.len()
    );
    assert!(
        eventually(Duration::from_secs(2), || processes()
            .iter()
            .all(|p| !groups.contains(&p.2))),
        "plugin processes of the bench still running (groups {groups:?})"
    );
}

/// Interrupted while it makes its pod namespaces.
#[root_test(reference)]
fn sigint_while_making_namespaces_leaves_nothing() {
    interrupt(libc::SIGINT, 20, Duration::ZERO);
}

/// Interrupted while plugins run: their process groups go first, then what they write in.
#[root_test(reference)]
fn sigterm_while_plugins_run_leaves_nothing() {
    // The plugins the bench runs, built beside it (as `cargo build --workspace` does).
    oxivirt_testkit::built_binary("oxivirt-cni", "oxivirt-app-cni");
    oxivirt_testkit::built_binary("oxivirt-multus", "oxivirt-app-multus");
    // The node and its 22 rounds of three pods, then into the ADDs.
    interrupt(libc::SIGTERM, 67, Duration::from_millis(500));
}
