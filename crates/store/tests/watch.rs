//! Watches: replay then live, filtering, Gone for too old, resuming after lag, ordering
//! under concurrent writers, and the race between replay and subscription.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{open, open_with, rv_field, temp, vm, vm_key, VMS};
use oxivirt_store::{Error, Event, EventKind, Key, Options, Store, Watch};
use serde_json::json;

fn next(watch: &mut Watch) -> Arc<Event> {
    watch
        .try_next()
        .expect("an event is ready")
        .expect("no error")
}

fn create(store: &Store, ns: &str, name: &str) -> u64 {
    store
        .create(vm_key(ns, name), vm(ns, name))
        .wait()
        .expect("create")
        .resource_version
}

#[test]
fn replays_after_since_then_follows_live() {
    let (_dir, store) = open("wt-replay");
    for i in 0..5 {
        create(&store, "a", &format!("vm{i}"));
    }
    let mut watch = store.watch(VMS, None, 2).expect("watch");
    for rv in 3..=5 {
        let event = next(&mut watch);
        assert_eq!(event.resource_version(), rv);
        assert_eq!(event.kind, EventKind::Added);
        assert_eq!(
            rv_field(&event.object.value().expect("parses")),
            rv.to_string()
        );
    }
    assert!(watch.try_next().is_none(), "nothing more yet");

    store
        .update(vm_key("a", "vm0"), vm("a", "vm0"), Some(1))
        .wait()
        .expect("update");
    let deleted = store
        .delete(vm_key("a", "vm1"), None)
        .wait()
        .expect("delete");
    let event = next(&mut watch);
    assert_eq!(
        (event.kind, event.resource_version()),
        (EventKind::Modified, 6)
    );
    let event = next(&mut watch);
    assert_eq!(
        (event.kind, event.resource_version()),
        (EventKind::Deleted, 7)
    );
    assert_eq!(event.object, deleted);
    assert_eq!(watch.position(), 7);
}

#[test]
fn filters_by_resource_and_namespace() {
    let (_dir, store) = open("wt-filter");
    let mut in_a = store.watch(VMS, Some("a"), 0).expect("watch a");
    let mut all_vms = store.watch(VMS, None, 0).expect("watch vms");
    let mut pods = store.watch("/pods", None, 0).expect("watch pods");
    create(&store, "a", "vm1");
    create(&store, "b", "vm2");
    store
        .create(Key::namespaced("/pods", "a", "p"), json!({}))
        .wait()
        .expect("pod");
    create(&store, "a", "vm3");

    let rvs = |w: &mut Watch| {
        std::iter::from_fn(|| w.try_next())
            .map(|e| e.expect("event").resource_version())
            .collect::<Vec<_>>()
    };
    assert_eq!(rvs(&mut in_a), [1, 4]);
    assert_eq!(rvs(&mut all_vms), [1, 2, 4]);
    assert_eq!(rvs(&mut pods), [3]);
    // Filtered-out events still move the position on.
    assert_eq!(pods.position(), 4);
}

#[test]
fn too_old_is_gone() {
    let (_dir, store) = open_with(
        "wt-gone",
        Options {
            history: 4,
            ..Options::default()
        },
    );
    for i in 0..10 {
        create(&store, "a", &format!("vm{i}"));
    }
    match store.watch(VMS, None, 5) {
        Err(Error::Gone {
            requested: 5,
            oldest: 6,
        }) => {}
        Err(e) => panic!("watch from 5: {e}"),
        Ok(_) => panic!("watch from 5 accepted with 7..=10 held"),
    }
    let mut watch = store.watch(VMS, None, 6).expect("oldest watchable");
    let got: Vec<u64> = std::iter::from_fn(|| watch.try_next())
        .map(|e| e.expect("event").resource_version())
        .collect();
    assert_eq!(got, [7, 8, 9, 10]);
}

#[test]
fn after_reopen_only_the_current_revision_is_watchable() {
    let (_dir, path) = temp("wt-reopen");
    {
        let store = Store::open(&path).expect("open");
        for i in 0..3 {
            create(&store, "a", &format!("vm{i}"));
        }
    }
    let store = Store::open(&path).expect("reopen");
    assert!(matches!(
        store.watch(VMS, None, 2),
        Err(Error::Gone {
            requested: 2,
            oldest: 3
        })
    ));
    let mut watch = store.watch(VMS, None, 3).expect("from current");
    assert!(watch.try_next().is_none());
    create(&store, "a", "late");
    assert_eq!(next(&mut watch).resource_version(), 4);
    // A version ahead of the store: nothing up to it is delivered.
    let mut ahead = store.watch(VMS, None, 6).expect("from the future");
    for i in 0..3 {
        create(&store, "a", &format!("more{i}"));
    }
    assert_eq!(next(&mut ahead).resource_version(), 7);
}

#[test]
fn lagging_watcher_resumes_from_history_or_is_gone() {
    // Falls behind the live buffer but not the history: every event, in order.
    let (_dir, store) = open_with(
        "wt-lag",
        Options {
            history: 100,
            watch_buffer: 4,
            ..Options::default()
        },
    );
    let mut watch = store.watch(VMS, None, 0).expect("watch");
    for i in 0..50 {
        create(&store, "a", &format!("vm{i}"));
    }
    let got: Vec<u64> = std::iter::from_fn(|| watch.try_next())
        .map(|e| e.expect("event").resource_version())
        .collect();
    assert_eq!(got, (1..=50).collect::<Vec<_>>());

    // Falls behind the history too: a clear error, then the end.
    let (_dir2, store) = open_with(
        "wt-lag2",
        Options {
            history: 10,
            watch_buffer: 4,
            ..Options::default()
        },
    );
    let mut watch = store.watch(VMS, None, 0).expect("watch");
    for i in 0..50 {
        create(&store, "a", &format!("vm{i}"));
    }
    match watch.try_next() {
        Some(Err(Error::Gone {
            requested: 0,
            oldest: 40,
        })) => {}
        other => panic!("a watcher 50 behind a history of 10 got {other:?}"),
    }
    assert!(watch.try_next().is_none());
}

#[test]
fn concurrent_writers_are_seen_in_version_order() {
    let (_dir, store) = open("wt-order");
    let mut watch = store.watch(VMS, None, 0).expect("watch");
    let acked = std::sync::Mutex::new(Vec::new());
    let watcher = std::thread::spawn(move || {
        (0..200)
            .map(|_| {
                let e = watch.blocking_next().expect("open").expect("event");
                (e.object.key.name.clone(), e.resource_version())
            })
            .collect::<Vec<_>>()
    });
    oxivirt_testkit::parallel(4, |t| {
        for i in 0..50 {
            let name = format!("t{t}-{i}");
            let rv = create(&store, "a", &name);
            acked.lock().expect("lock").push((name, rv));
        }
    });
    let seen = watcher.join().expect("watcher");
    let rvs: Vec<u64> = seen.iter().map(|(_, rv)| *rv).collect();
    assert_eq!(
        rvs,
        (1..=200).collect::<Vec<_>>(),
        "in order, dense, once each"
    );
    let mut acked = acked.into_inner().expect("lock");
    acked.sort_by_key(|(_, rv)| *rv);
    assert_eq!(
        acked, seen,
        "each event carries the write acknowledged with it"
    );
}

/// Sets the flag when dropped, so writer threads stop also when an assertion failed.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn watch_started_during_writes_has_no_gap_or_duplicate() {
    let (_dir, store) = open("wt-race");
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..4 {
            let (store, stop) = (&store, &stop);
            s.spawn(move || {
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    create(store, "a", &format!("t{t}-{i}"));
                }
            });
        }
        let _stop = StopOnDrop(&stop);
        // Many short watches, each started while writes are being published.
        for round in 0..200u64 {
            // At varying points of the writer's commit cycle.
            std::thread::sleep(std::time::Duration::from_micros(round * 211 % 1700));
            let since = store.current_revision().saturating_sub(round % 7);
            let mut watch = store.watch(VMS, None, since).expect("watch");
            for expect in since + 1..=since + 8 {
                let event = watch.blocking_next().expect("open").expect("event");
                assert_eq!(event.resource_version(), expect, "watch from {since}");
            }
        }
    });
}

#[test]
fn async_watch_and_close() {
    let (_dir, store) = open("wt-async");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut watch = store.watch(VMS, None, 0).expect("watch");
    rt.block_on(async {
        let created = store
            .create(vm_key("a", "x"), vm("a", "x"))
            .await
            .expect("create");
        let event = watch.next().await.expect("open").expect("event");
        assert_eq!(event.object, created);
    });
    create(&store, "a", "y");
    drop(store);
    // What was published before the close is still delivered, then the watch ends.
    assert_eq!(
        watch
            .blocking_next()
            .expect("buffered")
            .expect("event")
            .resource_version(),
        2
    );
    assert!(watch.blocking_next().is_none());
}
