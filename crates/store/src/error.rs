//! The crate's errors. The per-object ones (`NotFound`, `AlreadyExists`, `Conflict`,
//! `Gone`) map one to one onto the API's HTTP answers (404, 409, 409, 410); the rest mean
//! the store itself is in trouble (500).

use std::path::PathBuf;
use std::sync::Arc;

use crate::Key;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Get, update or delete of an object that is not there.
    #[error("{key} not found")]
    NotFound { key: Key },

    /// Create of an object that is already there.
    #[error("{key} already exists")]
    AlreadyExists { key: Key },

    /// An update or delete whose precondition names another resourceVersion than the
    /// stored one.
    #[error(
        "conflict on {key}: the object has been modified (resourceVersion {current}, \
         expected {expected})"
    )]
    Conflict {
        key: Key,
        current: u64,
        expected: u64,
    },

    /// A watch from a resourceVersion older than the history still holds, or a watcher so
    /// slow that the history moved past what it had read (Kubernetes: 410, "too old
    /// resource version"; the client lists again and watches from the list's version).
    #[error("too old resource version: {requested} (oldest watchable: {oldest})")]
    Gone { requested: u64, oldest: u64 },

    /// A key the store cannot take (empty name, NUL byte, empty namespace string).
    #[error("invalid key {key}: {reason}")]
    InvalidKey { key: Key, reason: &'static str },

    /// A value the store cannot take (not a JSON object, `metadata` not an object).
    #[error("invalid object for {key}: {reason}")]
    InvalidObject { key: Key, reason: &'static str },

    /// The database was written with another schema than this build knows.
    #[error(
        "store {}: schema version {}, this build supports {supported}",
        .path.display(),
        .found.map_or_else(|| "missing".to_string(), |v| v.to_string())
    )]
    Schema {
        path: PathBuf,
        found: Option<u64>,
        supported: u64,
    },

    /// A record on disk that does not decode. `key` is the stored key as far as it is
    /// readable.
    #[error("corrupt record {key}: {reason}")]
    Corrupt { key: String, reason: String },

    /// redb failed (I/O, a corrupt file, a lock held by another process). Shared, since
    /// one failed commit fails every write of its batch.
    #[error("store database: {context}")]
    Database {
        context: &'static str,
        #[source]
        source: Arc<redb::Error>,
    },

    /// The writer thread is gone (the store is shutting down, or it failed).
    #[error("store writer stopped")]
    Closed,
}

impl Error {
    /// The error for a failed redb call while doing `context`.
    pub(crate) fn db(context: &'static str) -> impl FnOnce(redb::Error) -> Error {
        move |e| Error::Database {
            context,
            source: Arc::new(e),
        }
    }
}

/// `?` on a redb call: every redb error type converts into `redb::Error`.
pub(crate) trait DbContext<T> {
    fn ctx(self, context: &'static str) -> Result<T>;
}

impl<T, E: Into<redb::Error>> DbContext<T> for std::result::Result<T, E> {
    fn ctx(self, context: &'static str) -> Result<T> {
        self.map_err(|e| Error::db(context)(e.into()))
    }
}
