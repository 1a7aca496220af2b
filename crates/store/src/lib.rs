//! oxivirtd's object store, its etcd: Kubernetes objects (JSON) in one redb file, with
//! one global resourceVersion counter, durable group-committed writes and watches.
//!
//! - Every write acknowledged to a caller has been committed with an fsync: it survives a
//!   `kill -9` (or a power cut) at any moment after.
//! - resourceVersions come from one counter, persisted with the writes, so they only ever
//!   grow, across restarts and crashes too; each successful write takes the next one.
//! - Writes go through one writer thread that commits everything waiting as one
//!   transaction (see [`writer`]), so concurrent clients share each fsync.
//! - Reads are redb snapshots: they never wait for the writer.
//! - Watches replay an in-memory history of recent events, then follow live ones (see
//!   [`watch`]); the history starts empty at each open.
//!
//! ```no_run
//! # fn main() -> oxivirt_store::Result<()> {
//! use oxivirt_store::{Key, Op, Store};
//! let store = Store::open("/var/lib/oxivirt/store.redb".as_ref())?;
//! let key = Key::namespaced("kubevirt.io/virtualmachines", "default", "vm1");
//! let value = serde_json::json!({"metadata": {"name": "vm1", "namespace": "default"}});
//! let created = store.write(Op::Create { key: key.clone(), value }).wait()?;
//! let (vms, rv) = store.list("kubevirt.io/virtualmachines", Some("default"))?;
//! let mut watch = store.watch("kubevirt.io/virtualmachines", None, rv)?;
//! # let _ = (created, vms, watch.try_next()); Ok(()) }
//! ```
//!
//! On disk: table `meta` (`&str → u64`: `schema_version`, `revision`) and table `objects`
//! (key encoding in [`key`], record format in [`object`]).

pub mod error;
pub mod key;
pub mod object;
pub mod watch;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use tokio::sync::oneshot;

use error::DbContext;
pub use error::{Error, Result};
pub use key::Key;
pub use object::Object;
pub use watch::{Event, EventKind, Watch};
pub use writer::{Op, PendingWrite, WriteStats};

/// The layout this build reads and writes. A database with another (or none, but other
/// tables) is refused rather than guessed at.
pub const SCHEMA_VERSION: u64 = 1;

pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("objects");
pub(crate) const SCHEMA_KEY: &str = "schema_version";
pub(crate) const REVISION_KEY: &str = "revision";

/// Tuning of a [`Store`]; [`Default`] suits the API server.
#[derive(Debug, Clone)]
pub struct Options {
    /// How many recent events watches can replay (older starting points are `Gone`).
    pub history: usize,
    /// How many live events a watcher may fall behind before it resumes from the
    /// history (which costs a copy of what it missed, under the hub's lock).
    pub watch_buffer: usize,
    /// The most writes one commit takes (bounds a batch's latency and memory).
    pub max_batch: usize,
    /// How long the writer waits for callers it expects back (those it just answered,
    /// and those queued meanwhile) before committing without them. Small against an
    /// fsync, it keeps concurrent callers in one commit instead of two half-full ones.
    pub batch_linger: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            history: 10_000,
            watch_buffer: 1_024,
            max_batch: 1_024,
            batch_linger: Duration::from_micros(300),
        }
    }
}

/// A handle on an open store. Cheap to clone; the store closes (the writer finishes what
/// is queued, watches end) when the last handle goes.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .field("revision", &self.current_revision())
            .finish()
    }
}

struct Inner {
    path: PathBuf,
    db: Arc<Database>,
    hub: Arc<watch::Hub>,
    counters: Arc<writer::Counters>,
    queue: Option<mpsc::Sender<writer::Request>>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The writer drains the queue and stops once its sender is gone; joining it
        // releases its database handle, so the file can be opened again at once.
        drop(self.queue.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        self.hub.close();
    }
}

impl Store {
    /// Opens (or creates) the store at `path` with default [`Options`].
    pub fn open(path: &Path) -> Result<Store> {
        Store::open_with(path, Options::default())
    }

    /// Opens (or creates) the store at `path`. Fails with [`Error::Schema`] on a database
    /// of another schema, and with [`Error::Database`] when another process has it open.
    pub fn open_with(path: &Path, options: Options) -> Result<Store> {
        let db = Database::create(path).ctx("open database")?;
        let revision = init_schema(&db, path)?;
        let db = Arc::new(db);
        let hub = Arc::new(watch::Hub::new(
            revision,
            options.history,
            options.watch_buffer,
        ));
        let counters = Arc::new(writer::Counters::default());
        let (queue, requests) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn({
                let (db, hub, counters) =
                    (Arc::clone(&db), Arc::clone(&hub), Arc::clone(&counters));
                let batching = writer::Batching {
                    max: options.max_batch.max(1),
                    linger: options.batch_linger,
                };
                move || writer::run(db, hub, counters, requests, revision, batching)
            })
            .map_err(|e| Error::Database {
                context: "start writer thread",
                source: Arc::new(e.into()),
            })?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                db,
                hub,
                counters,
                queue: Some(queue),
                writer: Some(writer),
            }),
        })
    }

    /// The object at `key`, if there is one.
    pub fn get(&self, key: &Key) -> Result<Option<Object>> {
        let encoded = key.encode()?;
        let txn = self.inner.db.begin_read().ctx("begin read")?;
        let objects = txn.open_table(OBJECTS).ctx("open objects table")?;
        let record = objects.get(encoded.as_slice()).ctx("read object")?;
        record
            .map(|r| object::decode(key.clone(), r.value()))
            .transpose()
    }

    /// Every object of `resource` (in `namespace` when given), ordered by namespace and
    /// name, with the store's resourceVersion of that same snapshot (to watch from).
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> Result<(Vec<Object>, u64)> {
        let txn = self.inner.db.begin_read().ctx("begin read")?;
        let revision = read_revision(&txn.open_table(META).ctx("open meta table")?)?;
        let objects = txn.open_table(OBJECTS).ctx("open objects table")?;
        let (start, end) = key::range(resource, namespace);
        let mut out = Vec::new();
        for entry in objects
            .range(start.as_slice()..end.as_slice())
            .ctx("list objects")?
        {
            let (k, v) = entry.ctx("list objects")?;
            out.push(object::decode(Key::decode(k.value())?, v.value())?);
        }
        Ok((out, revision))
    }

    /// Queues a write; see [`PendingWrite`] for its answer.
    pub fn write(&self, op: Op) -> PendingWrite {
        let (reply, answer) = oneshot::channel();
        let request = writer::Request { op, reply };
        self.inner.counters.enqueue();
        let sent = match &self.inner.queue {
            Some(queue) => queue.send(request).map_err(|e| e.0),
            None => Err(request),
        };
        if let Err(request) = sent {
            self.inner.counters.unqueue();
            let _ = request.reply.send(Err(Error::Closed));
        }
        PendingWrite::new(answer)
    }

    /// [`Op::Create`].
    pub fn create(&self, key: Key, value: serde_json::Value) -> PendingWrite {
        self.write(Op::Create { key, value })
    }

    /// [`Op::Update`].
    pub fn update(
        &self,
        key: Key,
        value: serde_json::Value,
        precondition: Option<u64>,
    ) -> PendingWrite {
        self.write(Op::Update {
            key,
            value,
            precondition,
        })
    }

    /// [`Op::Delete`].
    pub fn delete(&self, key: Key, precondition: Option<u64>) -> PendingWrite {
        self.write(Op::Delete { key, precondition })
    }

    /// Every event of `resource` (in `namespace` when given) after resourceVersion
    /// `since`, then live ones. [`Error::Gone`] when the history no longer reaches back
    /// to `since` (always so for a version older than the store's at open).
    pub fn watch(&self, resource: &str, namespace: Option<&str>, since: u64) -> Result<Watch> {
        Watch::new(Arc::clone(&self.inner.hub), resource, namespace, since)
    }

    /// The newest committed resourceVersion whose event has been published.
    pub fn current_revision(&self) -> u64 {
        self.inner.hub.current()
    }

    /// Commits and writes since open (writes per commit shows the group commit at work).
    pub fn stats(&self) -> WriteStats {
        self.inner.counters.get()
    }

    /// Where the store lives.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

fn read_revision(meta: &impl ReadableTable<&'static str, u64>) -> Result<u64> {
    meta.get(REVISION_KEY)
        .ctx("read revision")?
        .map(|v| v.value())
        .ok_or_else(|| Error::Corrupt {
            key: format!("meta {REVISION_KEY}"),
            reason: "missing".into(),
        })
}

/// Checks the schema of an existing database or lays it out in a new one; returns the
/// stored revision.
fn init_schema(db: &Database, path: &Path) -> Result<u64> {
    let txn = db.begin_write().ctx("begin write transaction")?;
    let tables: Vec<String> = txn
        .list_tables()
        .ctx("list tables")?
        .map(|t| t.name().to_string())
        .collect();
    if tables.is_empty() {
        {
            let mut meta = txn.open_table(META).ctx("create meta table")?;
            meta.insert(SCHEMA_KEY, SCHEMA_VERSION)
                .ctx("store schema version")?;
            meta.insert(REVISION_KEY, 0).ctx("store revision")?;
            txn.open_table(OBJECTS).ctx("create objects table")?;
        }
        txn.commit().ctx("commit new schema")?;
        return Ok(0);
    }
    let schema_error = |found| Error::Schema {
        path: path.to_path_buf(),
        found,
        supported: SCHEMA_VERSION,
    };
    if !tables.iter().any(|t| t == META.name()) {
        return Err(schema_error(None));
    }
    let revision = {
        let meta = txn.open_table(META).ctx("open meta table")?;
        let found = meta.get(SCHEMA_KEY).ctx("read schema version")?;
        match found.map(|v| v.value()) {
            Some(SCHEMA_VERSION) => {}
            other => return Err(schema_error(other)),
        }
        read_revision(&meta)?
    };
    if !tables.iter().any(|t| t == OBJECTS.name()) {
        return Err(Error::Corrupt {
            key: OBJECTS.name().to_string(),
            reason: "table missing".into(),
        });
    }
    txn.abort().ctx("abort schema check")?;
    Ok(revision)
}

#[cfg(test)]
mod tests {
    #[test]
    fn handles_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<super::Store>();
        send_sync::<super::Object>();
        send_sync::<super::Error>();
        send::<super::Watch>();
        send::<super::PendingWrite>();
    }
}
