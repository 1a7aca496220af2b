//! Durability under `kill -9`: a child process (this test binary again, running only
//! [`crash_child_helper`]) writes from several threads and prints every acknowledged
//! write; the test SIGKILLs it mid-burst, reopens the store and checks that every
//! acknowledged write is there and the counter did not fall back. Several rounds on one
//! file, so each round also recovers from the previous crash.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{temp, vm, vm_key, VMS};
use oxivirt_store::{Error, Store};
use oxivirt_testkit::cleanup::OwnedChild;
use serde_json::json;

const STORE_ENV: &str = "OXIVIRT_STORE_CRASH_CHILD";
const ROUND_ENV: &str = "OXIVIRT_STORE_CRASH_ROUND";

/// The child's work (a no-op unless the crash test started it): four threads create
/// objects, and every third write updates the thread's counter object under a
/// precondition. Prints `ACK <name> <rv>` once a write is acknowledged; never ends.
#[test]
fn crash_child_helper() {
    let (Ok(path), Ok(round)) = (std::env::var(STORE_ENV), std::env::var(ROUND_ENV)) else {
        return;
    };
    let store = Store::open(Path::new(&path)).expect("child: open");
    std::thread::scope(|s| {
        for t in 0..4 {
            let (store, round) = (&store, &round);
            s.spawn(move || {
                let counter = format!("r{round}-t{t}-counter");
                let mut counter_rv = store
                    .create(vm_key("a", &counter), json!({"count": 0}))
                    .wait()
                    .expect("child: create counter")
                    .resource_version;
                println!("ACK {counter} {counter_rv}");
                for i in 0u64.. {
                    let (name, rv) = if i % 3 == 2 {
                        let o = store
                            .update(vm_key("a", &counter), json!({"count": i}), Some(counter_rv))
                            .wait()
                            .expect("child: update counter");
                        counter_rv = o.resource_version;
                        (counter.clone(), o.resource_version)
                    } else {
                        let name = format!("r{round}-t{t}-{i}");
                        let o = store
                            .create(vm_key("a", &name), vm("a", &name))
                            .wait()
                            .expect("child: create");
                        (name, o.resource_version)
                    };
                    println!("ACK {name} {rv}");
                }
            });
        }
    });
}

/// Runs one child until it has acknowledged `kill_after` writes, kills it, and returns
/// every write it acknowledged (name → newest version).
fn crash_round(path: &Path, round: u32, kill_after: usize) -> HashMap<String, u64> {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = OwnedChild::spawn(
        Command::new(exe)
            .args([
                "--exact",
                "crash_child_helper",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(STORE_ENV, path)
            .env(ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    )
    .expect("spawn child");
    let stdout = child.child.stdout.take().expect("piped stdout");
    let mut acked = HashMap::new();
    let mut count = 0;
    let mut killed = false;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read child output");
        let Some(ack) = line.strip_prefix("ACK ") else {
            continue;
        };
        let (name, rv) = ack.split_once(' ').expect("ACK name rv");
        let rv: u64 = rv.parse().expect("rv");
        let newest = acked.entry(name.to_string()).or_insert(rv);
        *newest = (*newest).max(rv);
        count += 1;
        if count == kill_after && !killed {
            // A little later each round, so the kill lands in varying places of a commit.
            std::thread::sleep(Duration::from_micros(u64::from(round) * 300));
            child.child.kill().expect("SIGKILL child");
            killed = true;
        }
        // Lines still in the pipe after the kill were acknowledged before it: keep them.
    }
    let status = child.child.wait().expect("reap child");
    assert!(
        killed,
        "child ended after {count} acks without being killed: {status}"
    );
    assert_eq!(status.signal(), Some(libc::SIGKILL), "child {status}");
    acked
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let (_dir, path) = temp("crash");
    let mut all: HashMap<String, u64> = HashMap::new();
    let mut last_revision = 0;
    for round in 0..4 {
        let acked = crash_round(&path, round, 40 + 150 * round as usize);
        assert!(!acked.is_empty());
        all.extend(acked);
        let store = Store::open(&path).expect("reopen after kill");
        let max_acked = all.values().copied().max().unwrap_or(0);
        let revision = store.current_revision();
        assert!(
            revision >= max_acked,
            "round {round}: counter {revision} below acknowledged {max_acked}"
        );
        assert!(
            revision >= last_revision,
            "round {round}: counter went back"
        );
        let (listed, listed_rv) = store.list(VMS, Some("a")).expect("list");
        assert_eq!(listed_rv, revision);
        let stored: HashMap<&str, u64> = listed
            .iter()
            .map(|o| (o.key.name.as_str(), o.resource_version))
            .collect();
        for (name, rv) in &all {
            let Some(&have) = stored.get(name.as_str()) else {
                panic!("round {round}: acknowledged {name} (rv {rv}) lost");
            };
            // A counter may have a newer, committed but unprinted, version.
            if name.ends_with("-counter") {
                assert!(have >= *rv, "round {round}: {name} at {have}, acked {rv}");
            } else {
                assert_eq!(have, *rv, "round {round}: {name}");
            }
        }
        // Every stored object is intact and carries its version.
        for object in &listed {
            let value = object.value().expect("stored JSON parses");
            assert_eq!(
                value["metadata"]["resourceVersion"],
                object.resource_version.to_string()
            );
        }
        // New versions continue above everything ever handed out.
        let o = store
            .create(vm_key("b", &format!("after{round}")), vm("b", "after"))
            .wait()
            .expect("write after recovery");
        assert_eq!(o.resource_version, revision + 1);
        last_revision = o.resource_version;
        // A watch can start where the recovered store stands, not before.
        assert!(matches!(
            store.watch(VMS, None, revision - 1),
            Err(Error::Gone { .. })
        ));
        eprintln!(
            "round {round}: {} keys acknowledged so far, revision {revision}",
            all.len()
        );
    }
}
