//! Create/get/list/update/delete semantics, preconditions, persistence of the counter,
//! and refusal of bad keys, values and records.

mod common;

use common::{open, rv_field, temp, vm, vm_key, VMS};
use oxivirt_store::{Error, Key, Object, Op, Store};
use serde_json::json;

fn names(objects: &[Object]) -> Vec<String> {
    objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o.key.namespace.as_deref().unwrap_or("-"),
                o.key.name
            )
        })
        .collect()
}

#[test]
fn create_get_list_update_delete() {
    let (_dir, store) = open("st-crud");
    assert_eq!(store.current_revision(), 0);

    let created = store
        .create(vm_key("b", "vm2"), vm("b", "vm2"))
        .wait()
        .expect("create");
    assert_eq!(created.resource_version, 1);
    let value = created.value().expect("parses");
    assert_eq!(rv_field(&value), "1");
    assert_eq!(value["spec"]["runStrategy"], "Always");
    for (ns, name) in [("a", "vm3"), ("a", "vm1")] {
        store
            .create(vm_key(ns, name), vm(ns, name))
            .wait()
            .expect("create");
    }
    store
        .create(
            Key::namespaced("/pods", "a", "virt-launcher-vm1"),
            json!({"kind": "Pod"}),
        )
        .wait()
        .expect("create pod");
    store
        .create(Key::cluster("/nodes", "node1"), json!({"kind": "Node"}))
        .wait()
        .expect("create node");
    assert_eq!(store.current_revision(), 5);

    // get
    let got = store
        .get(&vm_key("b", "vm2"))
        .expect("get")
        .expect("present");
    assert_eq!(got, created);
    assert_eq!(store.get(&vm_key("b", "nope")).expect("get"), None);

    // list: one resource, ordered by namespace then name; the snapshot's revision
    let (all, rv) = store.list(VMS, None).expect("list");
    assert_eq!(names(&all), ["a/vm1", "a/vm3", "b/vm2"]);
    assert_eq!(rv, 5);
    let (in_a, _) = store.list(VMS, Some("a")).expect("list a");
    assert_eq!(names(&in_a), ["a/vm1", "a/vm3"]);
    let (nodes, _) = store.list("/nodes", None).expect("list nodes");
    assert_eq!(names(&nodes), ["-/node1"]);
    assert!(store.list("/pods", Some("b")).expect("list").0.is_empty());
    for object in &all {
        assert_eq!(
            rv_field(&object.value().expect("parses")),
            object.resource_version.to_string()
        );
    }

    // update: with the right precondition, without one, and a stale one
    let mut changed = vm("b", "vm2");
    changed["spec"]["runStrategy"] = json!("Halted");
    let updated = store
        .update(vm_key("b", "vm2"), changed.clone(), Some(1))
        .wait()
        .expect("update");
    assert_eq!(updated.resource_version, 6);
    assert_eq!(
        updated.value().expect("parses")["spec"]["runStrategy"],
        "Halted"
    );
    match store
        .update(vm_key("b", "vm2"), changed.clone(), Some(1))
        .wait()
    {
        Err(Error::Conflict {
            current: 6,
            expected: 1,
            ..
        }) => {}
        other => panic!("stale update gave {other:?}"),
    }
    let updated = store
        .update(vm_key("b", "vm2"), changed, None)
        .wait()
        .expect("unconditional update");
    assert_eq!(updated.resource_version, 7);
    match store
        .update(vm_key("b", "nope"), vm("b", "nope"), None)
        .wait()
    {
        Err(Error::NotFound { key }) => assert_eq!(key, vm_key("b", "nope")),
        other => panic!("update of a missing object gave {other:?}"),
    }

    // create of an existing key
    match store.create(vm_key("a", "vm1"), vm("a", "vm1")).wait() {
        Err(Error::AlreadyExists { key }) => assert_eq!(key, vm_key("a", "vm1")),
        other => panic!("second create gave {other:?}"),
    }

    // delete: stale precondition, then for real (last state, new version), then again
    match store.delete(vm_key("b", "vm2"), Some(6)).wait() {
        Err(Error::Conflict { current: 7, .. }) => {}
        other => panic!("stale delete gave {other:?}"),
    }
    // Failed ops took no version.
    assert_eq!(store.current_revision(), 7);
    let deleted = store
        .delete(vm_key("b", "vm2"), Some(7))
        .wait()
        .expect("delete");
    assert_eq!(deleted.resource_version, 8);
    let last = deleted.value().expect("parses");
    assert_eq!(rv_field(&last), "8");
    assert_eq!(last["spec"]["runStrategy"], "Halted");
    assert_eq!(store.get(&vm_key("b", "vm2")).expect("get"), None);
    assert!(matches!(
        store.delete(vm_key("b", "vm2"), None).wait(),
        Err(Error::NotFound { .. })
    ));
    let (all, rv) = store.list(VMS, None).expect("list");
    assert_eq!(names(&all), ["a/vm1", "a/vm3"]);
    assert_eq!(rv, 8);
}

#[test]
fn counter_survives_reopen_and_never_goes_back() {
    let (_dir, path) = temp("st-reopen");
    let last = {
        let store = Store::open(&path).expect("open");
        for i in 0..5 {
            let name = format!("vm{i}");
            store
                .create(vm_key("a", &name), vm("a", &name))
                .wait()
                .expect("create");
        }
        // Deleting everything must not let the counter fall back with the data.
        for i in 0..5 {
            store
                .delete(vm_key("a", &format!("vm{i}")), None)
                .wait()
                .expect("delete");
        }
        store.current_revision()
    };
    assert_eq!(last, 10);
    for round in 0..3 {
        let store = Store::open(&path).expect("reopen");
        let expected = last + round;
        assert_eq!(store.current_revision(), expected);
        assert_eq!(store.list(VMS, None).expect("list").1, expected);
        let created = store
            .create(vm_key("a", &format!("again{round}")), vm("a", "again"))
            .wait()
            .expect("create after reopen");
        assert_eq!(created.resource_version, expected + 1);
    }
}

#[test]
fn batch_with_failures_fails_only_those() {
    let (_dir, store) = open("st-mixed");
    store
        .create(vm_key("a", "taken"), vm("a", "taken"))
        .wait()
        .expect("create");
    // Queued together, so they very likely share a commit; the outcome must not depend
    // on it either way.
    let pending: Vec<_> = (0..20)
        .map(|i| {
            if i % 4 == 0 {
                store.create(vm_key("a", "taken"), vm("a", "taken"))
            } else {
                let name = format!("vm{i}");
                store.create(vm_key("a", &name), vm("a", &name))
            }
        })
        .collect();
    let mut rvs = Vec::new();
    for (i, p) in pending.into_iter().enumerate() {
        match p.wait() {
            Ok(o) => {
                assert_ne!(i % 4, 0, "duplicate create {i} succeeded");
                rvs.push(o.resource_version);
            }
            Err(Error::AlreadyExists { .. }) => assert_eq!(i % 4, 0, "create {i} refused"),
            Err(e) => panic!("create {i}: {e}"),
        }
    }
    assert_eq!(rvs, (2..=16).collect::<Vec<u64>>());
    assert_eq!(store.list(VMS, None).expect("list").0.len(), 16);
}

#[test]
fn bad_keys_and_values_are_refused() {
    let (_dir, store) = open("st-bad");
    let cases = [
        (Key::namespaced(VMS, "a", "x\0y"), json!({})),
        (Key::namespaced(VMS, "", "x"), json!({})),
        (Key::cluster(VMS, ""), json!({})),
    ];
    for (key, value) in cases {
        match store.create(key.clone(), value).wait() {
            Err(Error::InvalidKey { .. }) => {}
            other => panic!("{key:?} gave {other:?}"),
        }
    }
    assert!(matches!(
        store.get(&Key::namespaced(VMS, "", "x")),
        Err(Error::InvalidKey { .. })
    ));
    for value in [json!([1, 2]), json!("vm"), json!({"metadata": 3})] {
        match store.create(vm_key("a", "x"), value.clone()).wait() {
            Err(Error::InvalidObject { .. }) => {}
            other => panic!("{value} gave {other:?}"),
        }
    }
    // An object without metadata gets one.
    let o = store
        .create(vm_key("a", "bare"), json!({"spec": {}}))
        .wait()
        .expect("create");
    assert_eq!(rv_field(&o.value().expect("parses")), "1");
}

#[test]
fn async_callers_await_writes() {
    let (_dir, store) = open("st-async");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let a = store.create(vm_key("a", "one"), vm("a", "one"));
        let b = store.create(vm_key("a", "two"), vm("a", "two"));
        let (a, b) = (a.await.expect("one"), b.await.expect("two"));
        assert_eq!((a.resource_version, b.resource_version), (1, 2));
        let deleted = store
            .delete(vm_key("a", "one"), Some(1))
            .await
            .expect("delete");
        assert_eq!(deleted.resource_version, 3);
    });
}

#[test]
fn second_open_of_a_live_store_is_refused() {
    let (_dir, path) = temp("st-twice");
    let _store = Store::open(&path).expect("open");
    let err = Store::open(&path).expect_err("second open");
    assert!(matches!(err, Error::Database { .. }), "{err:?}");
    // The source is reachable, and not repeated in the message.
    let source = std::error::Error::source(&err).expect("has a source");
    assert!(!err.to_string().contains(&source.to_string()), "{err}");
}

/// Raw access to the file, as a damaged disk or another build would leave it.
fn write_raw(path: &std::path::Path, key: &[u8], record: &[u8]) {
    let db = redb::Database::create(path).expect("raw open");
    let txn = db.begin_write().expect("begin");
    {
        let table: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("objects");
        let mut objects = txn.open_table(table).expect("objects");
        objects.insert(key, record).expect("insert");
    }
    txn.commit().expect("commit");
}

#[test]
fn corrupt_records_are_errors_naming_the_key() {
    let (_dir, path) = temp("st-corrupt");
    drop(Store::open(&path).expect("create"));
    write_raw(&path, format!("{VMS}\0a\0short").as_bytes(), b"abc");
    let mut garbage = 7u64.to_be_bytes().to_vec();
    garbage.extend_from_slice(b"{not json");
    write_raw(&path, format!("{VMS}\0b\0garbage").as_bytes(), &garbage);
    write_raw(&path, b"/pods\0nonsep", b"12345678{}");

    let store = Store::open(&path).expect("reopen");
    match store.get(&vm_key("a", "short")) {
        Err(e @ Error::Corrupt { .. }) => {
            assert!(e.to_string().contains("a/short"), "{e}");
        }
        other => panic!("short record gave {other:?}"),
    }
    // Bytes with a header come back; parsing them names the key.
    let object = store
        .get(&vm_key("b", "garbage"))
        .expect("get")
        .expect("present");
    assert_eq!(object.resource_version, 7);
    let err = object.value().expect_err("not JSON");
    assert!(err.to_string().contains("b/garbage"), "{err}");
    assert!(matches!(store.list(VMS, None), Err(Error::Corrupt { .. })));
    match store.list("/pods", None) {
        Err(e @ Error::Corrupt { .. }) => assert!(e.to_string().contains("nonsep"), "{e}"),
        other => panic!("undecodable key gave {other:?}"),
    }
    // A delete that would have to return unparseable JSON fails alone, changing nothing.
    assert!(matches!(
        store.delete(vm_key("b", "garbage"), None).wait(),
        Err(Error::Corrupt { .. })
    ));
    assert_eq!(store.current_revision(), 0);
    // The store still works.
    store
        .create(vm_key("c", "fine"), vm("c", "fine"))
        .wait()
        .expect("create");
}

#[test]
fn write_after_store_closed_ops_are_still_answered() {
    // Writes queued right before the last handle goes are committed, not dropped.
    let (_dir, path) = temp("st-close");
    let pending: Vec<_> = {
        let store = Store::open(&path).expect("open");
        (0..50)
            .map(|i| {
                let name = format!("vm{i}");
                store.write(Op::Create {
                    key: vm_key("a", &name),
                    value: vm("a", &name),
                })
            })
            .collect()
    };
    for p in pending {
        p.wait().expect("committed before close");
    }
    let store = Store::open(&path).expect("reopen");
    assert_eq!(store.list(VMS, None).expect("list").0.len(), 50);
}
