//! Concurrent writers through the single group-committing writer: distinct, dense,
//! increasing versions, nothing lost, and optimistic concurrency that holds.

mod common;

use common::{open, vm, vm_key, VMS};
use oxivirt_store::{Error, Store};
use serde_json::json;

#[test]
fn concurrent_creates_get_distinct_increasing_versions_and_all_land() {
    let (_dir, store) = open("gc-creates");
    let per_thread: Vec<Vec<(String, u64)>> = oxivirt_testkit::parallel(8, |t| {
        (0..100)
            .map(|i| {
                let name = format!("t{t}-{i}");
                let o = store
                    .create(vm_key("a", &name), vm("a", &name))
                    .wait()
                    .expect("create");
                (name, o.resource_version)
            })
            .collect()
    });
    for acked in &per_thread {
        assert!(
            acked.windows(2).all(|w| w[0].1 < w[1].1),
            "one client's writes in its order"
        );
    }
    let mut all: Vec<(String, u64)> = per_thread.into_iter().flatten().collect();
    all.sort_by_key(|(_, rv)| *rv);
    let rvs: Vec<u64> = all.iter().map(|(_, rv)| *rv).collect();
    assert_eq!(rvs, (1..=800).collect::<Vec<_>>(), "distinct and dense");
    assert_eq!(store.current_revision(), 800);
    let (listed, rv) = store.list(VMS, Some("a")).expect("list");
    assert_eq!(rv, 800);
    assert_eq!(listed.len(), 800);
    for (name, rv) in all {
        let o = store
            .get(&vm_key("a", &name))
            .expect("get")
            .expect("landed");
        assert_eq!(o.resource_version, rv, "{name}");
    }
}

/// Read-modify-write with the version as precondition, retried on conflict: no
/// increment may be lost, whatever batches the writes fall into.
fn increment(store: &Store) -> u32 {
    let key = vm_key("a", "counter");
    let mut conflicts = 0;
    loop {
        let current = store.get(&key).expect("get").expect("present");
        let mut value = current.value().expect("parses");
        let n = value["count"].as_u64().expect("count");
        value["count"] = json!(n + 1);
        match store
            .update(key.clone(), value, Some(current.resource_version))
            .wait()
        {
            Ok(_) => return conflicts,
            Err(Error::Conflict { .. }) => conflicts += 1,
            Err(e) => panic!("update: {e}"),
        }
    }
}

#[test]
fn preconditions_serialise_concurrent_read_modify_write() {
    let (_dir, store) = open("gc-counter");
    store
        .create(vm_key("a", "counter"), json!({"count": 0}))
        .wait()
        .expect("create");
    let conflicts: u32 =
        oxivirt_testkit::parallel(4, |_| (0..25).map(|_| increment(&store)).sum::<u32>())
            .into_iter()
            .sum();
    let o = store
        .get(&vm_key("a", "counter"))
        .expect("get")
        .expect("present");
    assert_eq!(o.value().expect("parses")["count"], 100);
    // Every successful update took one version, every conflict none.
    assert_eq!(o.resource_version, 101);
    assert_eq!(store.current_revision(), 101);
    eprintln!("{conflicts} conflicts retried");
}

#[test]
fn racing_creates_of_one_key_have_one_winner() {
    let (_dir, store) = open("gc-race");
    let results: Vec<Vec<bool>> = oxivirt_testkit::parallel(8, |_| {
        (0..20)
            .map(|i| {
                let name = format!("k{i}");
                match store.create(vm_key("a", &name), vm("a", &name)).wait() {
                    Ok(_) => true,
                    Err(Error::AlreadyExists { .. }) => false,
                    Err(e) => panic!("create: {e}"),
                }
            })
            .collect()
    });
    for i in 0..20 {
        let winners = results.iter().filter(|r| r[i]).count();
        assert_eq!(winners, 1, "key k{i}");
    }
    assert_eq!(store.current_revision(), 20);
}

#[test]
fn concurrent_writers_share_commits() {
    // A generous linger, so the check does not depend on how fast this machine schedules
    // the callers back.
    let (_dir, store) = common::open_with(
        "gc-share",
        oxivirt_store::Options {
            batch_linger: std::time::Duration::from_millis(20),
            ..oxivirt_store::Options::default()
        },
    );
    oxivirt_testkit::parallel(8, |t| {
        for i in 0..25 {
            let name = format!("t{t}-{i}");
            store
                .create(vm_key("a", &name), vm("a", &name))
                .wait()
                .expect("create");
        }
    });
    let stats = store.stats();
    assert_eq!((stats.writes, stats.applied), (200, 200));
    assert!(
        stats.commits * 3 <= stats.writes,
        "200 writes from 8 threads took {} commits",
        stats.commits
    );
    // A failed write is answered without a commit.
    assert!(store
        .create(vm_key("a", "t0-0"), vm("a", "x"))
        .wait()
        .is_err());
    let after = store.stats();
    assert_eq!(
        (after.writes, after.applied, after.commits),
        (201, 200, stats.commits)
    );
}
