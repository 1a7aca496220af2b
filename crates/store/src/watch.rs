//! Change events: the in-memory history ring of the last N events and the live fan-out,
//! and [`Watch`], which replays the history after a resourceVersion and then follows live
//! events with no gap and no duplicate.
//!
//! Every successful write has exactly one event, and resourceVersions are dense, so the
//! ring always holds the events `floor + 1 ..= current`: a watch from `since ≥ floor` can
//! be served, an older one is [`Error::Gone`]. The writer publishes (ring and fan-out) and
//! a watch takes its replay and subscribes under one lock, so nothing falls between the
//! two. A watcher that falls further behind than the fan-out buffers resumes from the ring
//! on its own, and gets `Gone` only once the ring has moved past it too.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use crate::{Error, Object, Result};

/// What a write did to its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

impl EventKind {
    /// Kubernetes' watch event type: `ADDED`, `MODIFIED`, `DELETED`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Added => "ADDED",
            EventKind::Modified => "MODIFIED",
            EventKind::Deleted => "DELETED",
        }
    }
}

/// One write: its kind and the object after it (for a delete: the last state, carrying
/// the delete's resourceVersion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub object: Object,
}

impl Event {
    pub fn resource_version(&self) -> u64 {
        self.object.resource_version
    }
}

/// A watch's subscription to the live fan-out.
type Live = broadcast::Receiver<Arc<Event>>;

/// The history ring and the live fan-out, shared by the writer and every watch.
pub(crate) struct Hub {
    state: Mutex<HubState>,
    /// The newest published resourceVersion (read without the lock).
    current: AtomicU64,
}

struct HubState {
    ring: VecDeque<Arc<Event>>,
    capacity: usize,
    /// The oldest `since` a watch can start from: the version of the last event dropped
    /// from the ring, or the revision at open.
    floor: u64,
    /// `None` once the store is closed: watches end after what they buffered.
    live: Option<broadcast::Sender<Arc<Event>>>,
}

impl Hub {
    pub(crate) fn new(revision: u64, history: usize, buffer: usize) -> Hub {
        let (live, _) = broadcast::channel(buffer.max(1));
        Hub {
            state: Mutex::new(HubState {
                ring: VecDeque::with_capacity(history.min(1 << 16)),
                capacity: history,
                floor: revision,
                live: Some(live),
            }),
            current: AtomicU64::new(revision),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // The state stays consistent at every await-free step; a panicking holder (none
        // is expected) leaves nothing half-done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn current(&self) -> u64 {
        self.current.load(Ordering::Acquire)
    }

    /// Records the events of one committed batch, in order, and `revision` as current.
    pub(crate) fn publish(&self, events: Vec<Event>, revision: u64) {
        let mut state = self.lock();
        for event in events {
            let event = Arc::new(event);
            state.ring.push_back(Arc::clone(&event));
            while state.ring.len() > state.capacity {
                if let Some(old) = state.ring.pop_front() {
                    state.floor = old.resource_version();
                }
            }
            if let Some(live) = &state.live {
                // An error only means nobody is watching.
                let _ = live.send(event);
            }
        }
        self.current.store(revision, Ordering::Release);
    }

    /// Ends the live fan-out: watches return what they hold, then `None`.
    pub(crate) fn close(&self) {
        self.lock().live = None;
    }

    /// The events after `since` and a subscription to every later one.
    fn subscribe(&self, since: u64) -> Result<(VecDeque<Arc<Event>>, Option<Live>)> {
        let state = self.lock();
        if since < state.floor {
            return Err(Error::Gone {
                requested: since,
                oldest: state.floor,
            });
        }
        let start = state
            .ring
            .partition_point(|e| e.resource_version() <= since);
        let replay = state.ring.range(start..).cloned().collect();
        Ok((
            replay,
            state.live.as_ref().map(broadcast::Sender::subscribe),
        ))
    }
}

/// A watch on one resource (in one namespace, or all): every event after its starting
/// resourceVersion, in order. Ends (`None`) when the store is closed; after an error
/// (`Gone` when it fell too far behind) it ends too.
pub struct Watch {
    hub: Arc<Hub>,
    resource: String,
    namespace: Option<String>,
    replay: VecDeque<Arc<Event>>,
    live: Option<Live>,
    /// The version of the last event taken from the stream, matching or not.
    last: u64,
    done: bool,
}

/// What one receive gave, for the blocking, async and polling variants alike.
enum Got {
    Event(Arc<Event>),
    Lagged,
    Closed,
    Empty,
}

impl From<std::result::Result<Arc<Event>, RecvError>> for Got {
    fn from(r: std::result::Result<Arc<Event>, RecvError>) -> Self {
        match r {
            Ok(event) => Got::Event(event),
            Err(RecvError::Lagged(_)) => Got::Lagged,
            Err(RecvError::Closed) => Got::Closed,
        }
    }
}

impl Watch {
    pub(crate) fn new(
        hub: Arc<Hub>,
        resource: &str,
        namespace: Option<&str>,
        since: u64,
    ) -> Result<Watch> {
        let (replay, live) = hub.subscribe(since)?;
        Ok(Watch {
            hub,
            resource: resource.to_string(),
            namespace: namespace.map(str::to_string),
            replay,
            live,
            last: since,
            done: false,
        })
    }

    /// The resourceVersion of the last event this watch has passed (delivered or filtered
    /// out): where a new watch would pick up.
    pub fn position(&self) -> u64 {
        self.last
    }

    fn matches(&self, event: &Event) -> bool {
        let key = &event.object.key;
        key.resource == self.resource
            && (self.namespace.is_none() || key.namespace == self.namespace)
    }

    /// Handles one received item; `Some` is the answer for the caller, `None` means
    /// receive again.
    fn handle(&mut self, got: Got) -> Option<Option<Result<Arc<Event>>>> {
        match got {
            Got::Event(event) => {
                // Nothing at or below the position: a watch from a version newer than
                // the store's skips what it asked not to see.
                if event.resource_version() <= self.last {
                    return None;
                }
                self.last = event.resource_version();
                self.matches(&event).then_some(Some(Ok(event)))
            }
            Got::Lagged => match self.hub.subscribe(self.last) {
                Ok((replay, live)) => {
                    self.replay = replay;
                    self.live = live;
                    None
                }
                Err(e) => {
                    self.done = true;
                    Some(Some(Err(e)))
                }
            },
            Got::Closed => {
                self.done = true;
                Some(None)
            }
            Got::Empty => Some(None),
        }
    }

    /// The next replayed event that matches, if the replay holds one.
    fn next_replayed(&mut self) -> Option<Arc<Event>> {
        while let Some(event) = self.replay.pop_front() {
            if let Some(Some(Ok(event))) = self.handle(Got::Event(event)) {
                return Some(event);
            }
        }
        None
    }

    /// What the watch answers before asking the live feed: the end once it is done, then
    /// the replayed history.
    fn before_live(&mut self) -> Option<Option<Result<Arc<Event>>>> {
        if self.done {
            return Some(None);
        }
        self.next_replayed().map(|event| Some(Ok(event)))
    }

    /// The next event, waiting for it.
    pub async fn next(&mut self) -> Option<Result<Arc<Event>>> {
        loop {
            if let Some(answer) = self.before_live() {
                return answer;
            }
            let got = match &mut self.live {
                None => Got::Closed,
                Some(live) => Got::from(live.recv().await),
            };
            if let Some(answer) = self.handle(got) {
                return answer;
            }
        }
    }

    /// The next event, blocking the thread (not for use inside an async runtime).
    pub fn blocking_next(&mut self) -> Option<Result<Arc<Event>>> {
        loop {
            if let Some(answer) = self.before_live() {
                return answer;
            }
            let got = match &mut self.live {
                None => Got::Closed,
                Some(live) => Got::from(live.blocking_recv()),
            };
            if let Some(answer) = self.handle(got) {
                return answer;
            }
        }
    }

    /// The next event if one is there now; `None` when there is none yet (or the watch
    /// ended).
    pub fn try_next(&mut self) -> Option<Result<Arc<Event>>> {
        loop {
            if let Some(answer) = self.before_live() {
                return answer;
            }
            let got = match &mut self.live {
                None => Got::Closed,
                Some(live) => match live.try_recv() {
                    Ok(event) => Got::Event(event),
                    Err(TryRecvError::Lagged(_)) => Got::Lagged,
                    Err(TryRecvError::Closed) => Got::Closed,
                    Err(TryRecvError::Empty) => Got::Empty,
                },
            };
            if let Some(answer) = self.handle(got) {
                return answer;
            }
        }
    }
}
