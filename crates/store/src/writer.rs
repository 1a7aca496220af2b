//! The single writer thread and group commit. Callers queue [`Op`]s; the writer takes
//! every op waiting, applies them in order in one redb transaction (each successful op
//! taking the next resourceVersion), commits once with immediate durability (one fsync
//! for the whole batch), publishes the events and only then answers each caller. An op
//! whose precondition fails is answered with its error and takes no version; a failed
//! commit fails the whole batch and advances nothing.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableTable, Table};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::error::DbContext;
use crate::object;
use crate::watch::{Event, EventKind, Hub};
use crate::{Error, Key, Object, Result, META, OBJECTS, REVISION_KEY};

/// A write.
#[derive(Debug, Clone)]
pub enum Op {
    /// Stores a new object; [`Error::AlreadyExists`] when the key is taken.
    Create { key: Key, value: Value },
    /// Replaces an object; [`Error::NotFound`] when it is not there, [`Error::Conflict`]
    /// when `precondition` names another resourceVersion than the stored one.
    Update {
        key: Key,
        value: Value,
        precondition: Option<u64>,
    },
    /// Removes an object, under the same rules as an update. A record whose JSON no longer
    /// parses cannot be deleted this way ([`Error::Corrupt`]): the delete must hand back
    /// the last state.
    Delete { key: Key, precondition: Option<u64> },
}

impl Op {
    pub fn key(&self) -> &Key {
        match self {
            Op::Create { key, .. } | Op::Update { key, .. } | Op::Delete { key, .. } => key,
        }
    }
}

pub(crate) struct Request {
    pub(crate) op: Op,
    pub(crate) reply: oneshot::Sender<Result<Object>>,
}

/// A queued write. Await it in async code, or [`wait`](PendingWrite::wait) for it on a
/// plain thread. It answers once the write is durable: the object as stored (for a
/// delete, its last state with the delete's resourceVersion), or why the write failed.
/// Dropping it does not cancel the write.
#[derive(Debug)]
pub struct PendingWrite {
    reply: oneshot::Receiver<Result<Object>>,
}

impl PendingWrite {
    pub(crate) fn new(reply: oneshot::Receiver<Result<Object>>) -> PendingWrite {
        PendingWrite { reply }
    }

    /// Blocks until the write is committed (not for use inside an async runtime, where
    /// it panics: await the `PendingWrite` there).
    pub fn wait(self) -> Result<Object> {
        self.reply.blocking_recv().unwrap_or(Err(Error::Closed))
    }
}

impl Future for PendingWrite {
    type Output = Result<Object>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Object>> {
        Pin::new(&mut self.reply)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::Closed)))
    }
}

/// What the writer has done since open, for metrics and the throughput check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Committed transactions (each one fsync).
    pub commits: u64,
    /// Writes answered, failed ones included.
    pub writes: u64,
    /// Writes that took a resourceVersion.
    pub applied: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    commits: AtomicU64,
    writes: AtomicU64,
    applied: AtomicU64,
    /// Requests sent and not yet taken by the writer.
    queued: AtomicUsize,
}

impl Counters {
    pub(crate) fn get(&self) -> WriteStats {
        WriteStats {
            commits: self.commits.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            applied: self.applied.load(Ordering::Relaxed),
        }
    }

    /// Before a request is sent.
    pub(crate) fn enqueue(&self) {
        self.queued.fetch_add(1, Ordering::Relaxed);
    }

    /// A request that could not be sent after all.
    pub(crate) fn unqueue(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How the writer forms batches.
pub(crate) struct Batching {
    pub(crate) max: usize,
    pub(crate) linger: Duration,
}

/// The writer thread's loop: runs until every sender is gone.
///
/// Batches are formed so that concurrent callers share commits instead of alternating
/// between a small batch (the first caller back after an answer) and a large one (the
/// rest, queued during that small batch's fsync): after a commit, the callers just
/// answered plus those already queued are the ones expected in the next batch, and the
/// writer waits for them up to `linger` (callers that do not come back cost one linger).
pub(crate) fn run(
    db: Arc<Database>,
    hub: Arc<Hub>,
    counters: Arc<Counters>,
    queue: mpsc::Receiver<Request>,
    mut revision: u64,
    batching: Batching,
) {
    let mut batch: Vec<Request> = Vec::new();
    let mut expected = 1;
    let take = |batch: &mut Vec<Request>, request| {
        counters.queued.fetch_sub(1, Ordering::Relaxed);
        batch.push(request);
    };
    while let Ok(first) = queue.recv() {
        take(&mut batch, first);
        let deadline = Instant::now() + batching.linger;
        while batch.len() < batching.max {
            // Everything that queued up during the last commit goes into this one.
            if let Ok(request) = queue.try_recv() {
                take(&mut batch, request);
                continue;
            }
            let now = Instant::now();
            if batch.len() >= expected || now >= deadline {
                break;
            }
            match queue.recv_timeout(deadline - now) {
                Ok(request) => take(&mut batch, request),
                Err(_) => break,
            }
        }
        let (ops, replies): (Vec<Op>, Vec<_>) = batch.drain(..).map(|r| (r.op, r.reply)).unzip();
        counters
            .writes
            .fetch_add(replies.len() as u64, Ordering::Relaxed);
        let answered = replies.len();
        match apply(&db, revision, ops) {
            Ok((outcomes, new_revision)) => {
                let events: Vec<Event> = outcomes
                    .iter()
                    .filter_map(|o| o.as_ref().ok())
                    .map(|(kind, object)| Event {
                        kind: *kind,
                        object: object.clone(),
                    })
                    .collect();
                if !events.is_empty() {
                    counters.commits.fetch_add(1, Ordering::Relaxed);
                    counters
                        .applied
                        .fetch_add(events.len() as u64, Ordering::Relaxed);
                    hub.publish(events, new_revision);
                }
                revision = new_revision;
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    // A caller that dropped its PendingWrite does not want the answer.
                    let _ = reply.send(outcome.map(|(_, object)| object));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
        expected = (answered + counters.queued.load(Ordering::Relaxed)).clamp(1, batching.max);
    }
}

type Outcome = Result<(EventKind, Object)>;

/// Applies `ops` after `revision` in one transaction and commits it; the outer error is
/// the batch's (nothing was written), the inner ones each op's.
fn apply(db: &Database, revision: u64, ops: Vec<Op>) -> Result<(Vec<Outcome>, u64)> {
    let mut txn = db.begin_write().ctx("begin write transaction")?;
    // The default, but the acknowledgement promise rests on it.
    txn.set_durability(Durability::Immediate)
        .ctx("set durability")?;
    let mut next = revision;
    let mut outcomes = Vec::with_capacity(ops.len());
    {
        let mut objects = txn.open_table(OBJECTS).ctx("open objects table")?;
        for op in ops {
            let outcome = apply_one(&mut objects, op, next + 1)?;
            if outcome.is_ok() {
                next += 1;
            }
            outcomes.push(outcome);
        }
    }
    if next == revision {
        // Only failed preconditions: nothing to make durable.
        txn.abort().ctx("abort write transaction")?;
        return Ok((outcomes, revision));
    }
    {
        let mut meta = txn.open_table(META).ctx("open meta table")?;
        meta.insert(REVISION_KEY, next).ctx("store revision")?;
    }
    txn.commit().ctx("commit")?;
    Ok((outcomes, next))
}

/// One op at version `rv`; `Err` only for a storage failure that fails the batch.
fn apply_one(objects: &mut Table<&[u8], &[u8]>, op: Op, rv: u64) -> Result<Outcome> {
    let key = op.key().clone();
    let key = &key;
    let encoded = match key.encode() {
        Ok(k) => k,
        Err(e) => return Ok(Err(e)),
    };
    let stored = objects
        .get(encoded.as_slice())
        .ctx("read object")?
        .map(|guard| guard.value().to_vec());
    let outcome = match (op, stored) {
        (Op::Create { .. }, Some(_)) => Err(Error::AlreadyExists { key: key.clone() }),
        (Op::Update { .. } | Op::Delete { .. }, None) => Err(Error::NotFound { key: key.clone() }),
        (Op::Create { value, .. }, None) => {
            object::encode(key, value, rv).map(|r| (EventKind::Added, r))
        }
        (
            Op::Update {
                value,
                precondition,
                ..
            },
            Some(stored),
        ) => check(key, &stored, precondition)
            .and_then(|()| object::encode(key, value, rv))
            .map(|r| (EventKind::Modified, r)),
        (Op::Delete { precondition, .. }, Some(stored)) => check(key, &stored, precondition)
            .and_then(|()| object::decode(key.clone(), &stored))
            .and_then(|last| last.value())
            .and_then(|value| object::encode(key, value, rv))
            .map(|r| (EventKind::Deleted, r)),
    };
    match outcome {
        Ok((kind, (record, object))) => {
            if kind == EventKind::Deleted {
                objects.remove(encoded.as_slice()).ctx("delete object")?;
            } else {
                objects
                    .insert(encoded.as_slice(), record.as_slice())
                    .ctx("write object")?;
            }
            Ok(Ok((kind, object)))
        }
        Err(e) => Ok(Err(e)),
    }
}

/// The precondition against the stored record's version.
fn check(key: &Key, stored: &[u8], precondition: Option<u64>) -> Result<()> {
    let Some(expected) = precondition else {
        return Ok(());
    };
    let current = object::record_version(key, stored)?;
    if current == expected {
        Ok(())
    } else {
        Err(Error::Conflict {
            key: key.clone(),
            current,
            expected,
        })
    }
}
