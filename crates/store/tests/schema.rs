//! The schema version stored in the database is checked on open.

mod common;

use common::{temp, vm, vm_key};
use oxivirt_store::{Error, Store, SCHEMA_VERSION};

const META: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");

fn set_schema(path: &std::path::Path, version: u64) {
    let db = redb::Database::create(path).expect("raw open");
    let txn = db.begin_write().expect("begin");
    txn.open_table(META)
        .expect("meta")
        .insert("schema_version", version)
        .expect("insert");
    txn.commit().expect("commit");
}

#[test]
fn newer_schema_is_refused_and_left_alone() {
    let (_dir, path) = temp("sc-newer");
    {
        let store = Store::open(&path).expect("create");
        store
            .create(vm_key("a", "vm"), vm("a", "vm"))
            .wait()
            .expect("create");
    }
    set_schema(&path, SCHEMA_VERSION + 1);
    match Store::open(&path) {
        Err(e @ Error::Schema { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(&format!("schema version {}", SCHEMA_VERSION + 1)),
                "{text}"
            );
            assert!(text.contains(&path.display().to_string()), "{text}");
        }
        other => panic!("newer schema opened: {other:?}"),
    }
    // Refusing did not rewrite it.
    assert!(
        matches!(Store::open(&path), Err(Error::Schema { found: Some(v), .. }) if v == SCHEMA_VERSION + 1)
    );
    set_schema(&path, SCHEMA_VERSION);
    let store = Store::open(&path).expect("the supported version opens");
    assert_eq!(store.current_revision(), 1);
}

#[test]
fn foreign_database_is_refused() {
    let (_dir, path) = temp("sc-foreign");
    {
        let db = redb::Database::create(&path).expect("raw create");
        let txn = db.begin_write().expect("begin");
        let other: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("other");
        txn.open_table(other)
            .expect("table")
            .insert("k", "v")
            .expect("insert");
        txn.commit().expect("commit");
    }
    match Store::open(&path) {
        Err(Error::Schema { found: None, .. }) => {}
        other => panic!("a database without our schema opened: {other:?}"),
    }
}
