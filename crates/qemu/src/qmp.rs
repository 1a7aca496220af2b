//! A small QMP client (QEMU Machine Protocol, one JSON object per line over a unix socket):
//! the greeting, `qmp_capabilities`, commands whose replies are matched by `id`, and events
//! delivered on their own channel, never mixed with replies.
//!
//! One reader thread owns the read side: replies go to the caller waiting for that id,
//! events to the channel from [`Qmp::events`]. Anything QEMU sends that is not QMP (a line
//! that is not a JSON object, a reply without our id) ends the connection: after a
//! protocol violation no later reply can be trusted to belong to the command it seems to,
//! so every waiting and later command fails with the reason instead of hanging or
//! receiving someone else's answer.
//!
//! An event QEMU sends before a reply is in the channel before that command returns
//! (`stop` returns after its `STOP` is queued).

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Map, Value};

/// How long a command waits for its reply unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the connection ended (shared by every command that was or will be refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// QEMU closed it (it exited, or `quit`).
    Eof,
    /// Reading failed.
    Io(String),
    /// QEMU sent something that is not QMP.
    Protocol(String),
    /// This side closed it.
    Local,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::Eof => f.write_str("QEMU closed the connection"),
            CloseReason::Io(e) => write!(f, "reading failed: {e}"),
            CloseReason::Protocol(e) => write!(f, "protocol violation: {e}"),
            CloseReason::Local => f.write_str("the client was closed"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("cannot connect to QMP socket {}", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("QMP {op}")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// QEMU answered the command with `{"error": {"class": …, "desc": …}}`.
    #[error("{command}: {class}: {desc}")]
    Command {
        command: String,
        class: String,
        desc: String,
    },
    /// QEMU sent something that is not QMP (during the handshake; later ones close the
    /// connection and show up as [`QmpError::Disconnected`]).
    #[error("QMP protocol violation: {0}")]
    Protocol(String),
    #[error("{command}: the QMP connection is gone: {reason}")]
    Disconnected {
        command: String,
        reason: CloseReason,
    },
    #[error("{command}: no reply within {after:?}")]
    Timeout { command: String, after: Duration },
    #[error("the event channel was already taken")]
    EventsTaken,
    #[error("{command}: unexpected reply {reply}")]
    UnexpectedReply { command: String, reply: String },
}

/// What QEMU says about itself in the greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// `(major, minor, micro)`.
    pub version: (u64, u64, u64),
    pub package: String,
    pub capabilities: Vec<String>,
}

/// QEMU's `RunState` (`query-status`'s `status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    Prelaunch,
    Running,
    Paused,
    Shutdown,
    GuestPanicked,
    InternalError,
    IoError,
    Suspended,
    Watchdog,
    Debug,
    /// Any other state (migration and snapshot states), by its QMP name.
    Other(String),
}

impl RunState {
    fn parse(s: &str) -> Self {
        match s {
            "prelaunch" => RunState::Prelaunch,
            "running" => RunState::Running,
            "paused" => RunState::Paused,
            "shutdown" => RunState::Shutdown,
            "guest-panicked" => RunState::GuestPanicked,
            "internal-error" => RunState::InternalError,
            "io-error" => RunState::IoError,
            "suspended" => RunState::Suspended,
            "watchdog" => RunState::Watchdog,
            "debug" => RunState::Debug,
            other => RunState::Other(other.into()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub running: bool,
    pub status: RunState,
}

/// An asynchronous message from QEMU.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    /// Seconds and microseconds since the epoch, as QEMU stamped it.
    pub timestamp: Option<(i64, i64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// QEMU is shutting down; `guest` is whether the guest asked, `reason` QEMU's
    /// `ShutdownCause` (`guest-shutdown`, `host-qmp-quit`, `guest-panic`, …).
    Shutdown {
        guest: bool,
        reason: String,
    },
    Reset {
        guest: bool,
        reason: String,
    },
    Stop,
    Resume,
    /// `system_powerdown` was delivered (the ACPI power button).
    Powerdown,
    /// `action` is what QEMU does about it (`pause`, `poweroff`, `run`).
    GuestPanicked {
        action: String,
        info: Option<Value>,
    },
    /// Any other event, by name, with its data.
    Other {
        name: String,
        data: Value,
    },
}

/// Events that carry nothing the launcher acts on and are not delivered.
const IGNORED_EVENTS: &[&str] = &["DEVICE_TRAY_MOVED"];

struct Shared {
    state: Mutex<State>,
}

struct State {
    waiting: HashMap<u64, SyncSender<Reply>>,
    closed: Option<CloseReason>,
}

enum Reply {
    Return(Value),
    Error { class: String, desc: String },
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the first reason and lets every waiter go (their senders drop).
    fn close(&self, reason: CloseReason) {
        let mut st = self.lock();
        st.closed.get_or_insert(reason);
        st.waiting.clear();
    }
}

/// A QMP connection past the handshake.
pub struct Qmp {
    writer: Mutex<UnixStream>,
    shared: Arc<Shared>,
    next_id: Arc<AtomicU64>,
    events: Mutex<Option<Receiver<Event>>>,
    reader: Option<JoinHandle<()>>,
    greeting: Greeting,
    timeout: Duration,
}

impl std::fmt::Debug for Qmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qmp")
            .field("greeting", &self.greeting)
            .finish_non_exhaustive()
    }
}

fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> QmpError {
    move |source| QmpError::Io { op, source }
}

impl Qmp {
    /// Connects to QEMU's QMP socket, reads the greeting and negotiates capabilities
    /// (none), each step within `timeout`.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, QmpError> {
        let stream = UnixStream::connect(path).map_err(|source| QmpError::Connect {
            path: path.to_owned(),
            source,
        })?;
        Self::handshake(stream, timeout)
    }

    /// The handshake on an already connected stream (a socket the caller made).
    pub fn handshake(stream: UnixStream, timeout: Duration) -> Result<Self, QmpError> {
        stream
            .set_read_timeout(Some(timeout))
            .map_err(io_err("set read timeout"))?;
        let mut reader = BufReader::new(stream.try_clone().map_err(io_err("clone socket"))?);
        let greeting = parse_greeting(&read_message(&mut reader, "greeting")?)?;
        let mut writer = stream;
        writer
            .write_all(b"{\"execute\":\"qmp_capabilities\",\"id\":0}\n")
            .map_err(io_err("send qmp_capabilities"))?;
        let reply = read_message(&mut reader, "qmp_capabilities reply")?;
        match (reply.get("id"), reply.get("return"), reply.get("error")) {
            (Some(id), Some(_), None) if id == 0 => {}
            (_, _, Some(e)) => {
                let (class, desc) = error_fields(e);
                return Err(QmpError::Command {
                    command: "qmp_capabilities".into(),
                    class,
                    desc,
                });
            }
            _ => {
                return Err(QmpError::Protocol(format!(
                    "expected the qmp_capabilities reply, got {reply}"
                )))
            }
        }
        reader
            .get_ref()
            .set_read_timeout(None)
            .map_err(io_err("set read timeout"))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                waiting: HashMap::new(),
                closed: None,
            }),
        });
        let next_id = Arc::new(AtomicU64::new(1));
        let (tx, rx) = mpsc::channel();
        let reader = {
            let shared = Arc::clone(&shared);
            let issued = Arc::clone(&next_id);
            std::thread::Builder::new()
                .name("qmp-reader".into())
                .spawn(move || read_loop(reader, &shared, &issued, &tx))
                .map_err(io_err("start the reader thread"))?
        };
        Ok(Self {
            writer: Mutex::new(writer),
            shared,
            next_id,
            events: Mutex::new(Some(rx)),
            reader: Some(reader),
            greeting,
            timeout,
        })
    }

    pub fn greeting(&self) -> &Greeting {
        &self.greeting
    }

    /// The timeout of later commands.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Every event since the handshake, in order; the channel ends when the connection
    /// does. There is one such channel: a second call is an error.
    pub fn events(&self) -> Result<Receiver<Event>, QmpError> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or(QmpError::EventsTaken)
    }

    /// Why the connection ended, `None` while it is up.
    pub fn closed(&self) -> Option<CloseReason> {
        self.shared.lock().closed.clone()
    }

    /// Runs `command` with `arguments` and returns its `return` value.
    pub fn execute(&self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = mpsc::sync_channel(1);
        {
            let mut st = self.shared.lock();
            if let Some(reason) = &st.closed {
                return Err(QmpError::Disconnected {
                    command: command.into(),
                    reason: reason.clone(),
                });
            }
            st.waiting.insert(id, tx);
        }
        let mut msg = Map::new();
        msg.insert("execute".into(), command.into());
        if let Some(args) = arguments {
            msg.insert("arguments".into(), args);
        }
        msg.insert("id".into(), id.into());
        let mut line = Value::Object(msg).to_string();
        line.push('\n');
        let sent = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write_all(line.as_bytes());
        if let Err(source) = sent {
            self.shared.lock().waiting.remove(&id);
            // A write that fails because QEMU is gone says less than why it is gone.
            if let Some(reason) = self.closed() {
                return Err(QmpError::Disconnected {
                    command: command.into(),
                    reason,
                });
            }
            return Err(QmpError::Io {
                op: "send a command",
                source,
            });
        }
        match rx.recv_timeout(self.timeout) {
            Ok(Reply::Return(v)) => Ok(v),
            Ok(Reply::Error { class, desc }) => Err(QmpError::Command {
                command: command.into(),
                class,
                desc,
            }),
            Err(RecvTimeoutError::Timeout) => {
                self.shared.lock().waiting.remove(&id);
                Err(QmpError::Timeout {
                    command: command.into(),
                    after: self.timeout,
                })
            }
            Err(RecvTimeoutError::Disconnected) => Err(QmpError::Disconnected {
                command: command.into(),
                reason: self.closed().unwrap_or(CloseReason::Local),
            }),
        }
    }

    fn execute_unit(&self, command: &str) -> Result<(), QmpError> {
        self.execute(command, None).map(drop)
    }

    pub fn query_status(&self) -> Result<Status, QmpError> {
        let v = self.execute("query-status", None)?;
        match (
            v.get("running").and_then(Value::as_bool),
            v.get("status").and_then(Value::as_str),
        ) {
            (Some(running), Some(status)) => Ok(Status {
                running,
                status: RunState::parse(status),
            }),
            _ => Err(QmpError::UnexpectedReply {
                command: "query-status".into(),
                reply: v.to_string(),
            }),
        }
    }

    /// Starts or resumes the guest.
    pub fn cont(&self) -> Result<(), QmpError> {
        self.execute_unit("cont")
    }

    /// Pauses the guest.
    pub fn stop(&self) -> Result<(), QmpError> {
        self.execute_unit("stop")
    }

    /// Presses the ACPI power button (the guest decides whether to power off).
    pub fn system_powerdown(&self) -> Result<(), QmpError> {
        self.execute_unit("system_powerdown")
    }

    pub fn system_reset(&self) -> Result<(), QmpError> {
        self.execute_unit("system_reset")
    }

    /// Ends QEMU. Its reply may be lost to the exit it causes, so a connection closed by
    /// QEMU counts as done.
    pub fn quit(&self) -> Result<(), QmpError> {
        match self.execute_unit("quit") {
            Err(QmpError::Disconnected {
                reason: CloseReason::Eof,
                ..
            }) => Ok(()),
            r => r,
        }
    }
}

impl Drop for Qmp {
    fn drop(&mut self) {
        self.shared.close(CloseReason::Local);
        let _ = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .shutdown(Shutdown::Both);
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
    }
}

/// Reads one line for the handshake.
fn read_message(reader: &mut impl BufRead, what: &str) -> Result<Value, QmpError> {
    let mut line = String::new();
    let n = reader
        .read_line(&mut line)
        .map_err(io_err("read during the handshake"))?;
    if n == 0 {
        return Err(QmpError::Protocol(format!(
            "connection closed before the {what}"
        )));
    }
    match serde_json::from_str::<Value>(&line) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(QmpError::Protocol(format!(
            "{what}: not a JSON object: {:?}",
            line.trim_end()
        ))),
    }
}

fn parse_greeting(v: &Value) -> Result<Greeting, QmpError> {
    let bad = || QmpError::Protocol(format!("not a QMP greeting: {v}"));
    let qmp = v.get("QMP").ok_or_else(bad)?;
    let version = qmp.get("version").ok_or_else(bad)?;
    let q = version.get("qemu").ok_or_else(bad)?;
    let num = |k: &str| q.get(k).and_then(Value::as_u64).ok_or_else(bad);
    Ok(Greeting {
        version: (num("major")?, num("minor")?, num("micro")?),
        package: version
            .get("package")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        capabilities: qmp
            .get("capabilities")
            .and_then(Value::as_array)
            .ok_or_else(bad)?
            .iter()
            .filter_map(|c| c.as_str().map(str::to_owned))
            .collect(),
    })
}

fn error_fields(e: &Value) -> (String, String) {
    let field = |k: &str| {
        e.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (field("class"), field("desc"))
}

fn read_loop(
    mut reader: BufReader<UnixStream>,
    shared: &Shared,
    issued: &AtomicU64,
    events: &Sender<Event>,
) {
    let mut line = String::new();
    let reason = loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break CloseReason::Eof,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break CloseReason::Io(e.to_string()),
        }
        if line.trim().is_empty() {
            continue;
        }
        if let Err(violation) = dispatch(line.trim_end(), shared, issued, events) {
            break CloseReason::Protocol(violation);
        }
    };
    shared.close(reason);
    let _ = reader.get_ref().shutdown(Shutdown::Both);
}

/// Hands one message to whoever waits for it; `Err` is a protocol violation.
fn dispatch(
    line: &str,
    shared: &Shared,
    issued: &AtomicU64,
    events: &Sender<Event>,
) -> Result<(), String> {
    let msg = match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(m)) => m,
        _ => return Err(format!("not a JSON object: {line:?}")),
    };
    if let Some(name) = msg.get("event").and_then(Value::as_str) {
        if IGNORED_EVENTS.contains(&name) {
            return Ok(());
        }
        // Nobody listening is fine: the events are not needed then.
        let _ = events.send(parse_event(name, &msg));
        return Ok(());
    }
    let reply = match (msg.get("return"), msg.get("error")) {
        (Some(v), None) => Reply::Return(v.clone()),
        (None, Some(e)) => {
            let (class, desc) = error_fields(e);
            Reply::Error { class, desc }
        }
        _ => return Err(format!("neither an event nor a reply: {line}")),
    };
    let Some(id) = msg.get("id").and_then(Value::as_u64) else {
        return Err(format!("a reply without one of our ids: {line}"));
    };
    let waiter = shared.lock().waiting.remove(&id);
    match waiter {
        // The waiter may have timed out just now; its reply goes nowhere.
        Some(tx) => {
            let _ = tx.send(reply);
            Ok(())
        }
        // A reply to a command whose caller gave up waiting.
        None if id < issued.load(Ordering::SeqCst) => Ok(()),
        None => Err(format!("a reply to id {id}, which was never sent: {line}")),
    }
}

fn parse_event(name: &str, msg: &Map<String, Value>) -> Event {
    let data = msg.get("data").cloned().unwrap_or(Value::Null);
    let timestamp = msg.get("timestamp").and_then(|t| {
        Some((
            t.get("seconds")?.as_i64()?,
            t.get("microseconds")?.as_i64()?,
        ))
    });
    let guest = data.get("guest").and_then(Value::as_bool).unwrap_or(false);
    let text = |k: &str| {
        data.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let kind = match name {
        "SHUTDOWN" => EventKind::Shutdown {
            guest,
            reason: text("reason"),
        },
        "RESET" => EventKind::Reset {
            guest,
            reason: text("reason"),
        },
        "STOP" => EventKind::Stop,
        "RESUME" => EventKind::Resume,
        "POWERDOWN" => EventKind::Powerdown,
        "GUEST_PANICKED" => EventKind::GuestPanicked {
            action: text("action"),
            info: data.get("info").cloned(),
        },
        _ => EventKind::Other {
            name: name.to_owned(),
            data,
        },
    };
    Event { kind, timestamp }
}
