//! The QMP client against a scripted fake server: replies matched by id, events between a
//! command and its reply, errors, malformed lines and a server that goes away.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::mpsc::RecvTimeoutError;
use std::thread::JoinHandle;
use std::time::Duration;

use oxivirt_qemu::qmp::{CloseReason, EventKind, Qmp, QmpError, RunState};
use oxivirt_testkit::cleanup::TempDir;
use serde_json::Value;

const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": "Debian 1:10.0.2"}, "capabilities": ["oob"]}}"#;
const T: Duration = Duration::from_secs(5);

/// One accepted connection, from the server's side.
struct Conn {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Conn {
    fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .expect("send");
    }

    /// The next command; returns its name and id.
    fn recv(&mut self) -> (String, Value) {
        let mut line = String::new();
        assert!(
            self.reader.read_line(&mut line).expect("recv") > 0,
            "client closed"
        );
        let v: Value = serde_json::from_str(&line).expect("client sent JSON");
        (
            v["execute"].as_str().expect("execute").to_owned(),
            v.get("id").cloned().expect("every command has an id"),
        )
    }

    /// The greeting and the capabilities exchange.
    fn handshake(&mut self) {
        self.send(GREETING);
        let (cmd, id) = self.recv();
        assert_eq!(cmd, "qmp_capabilities");
        self.send(&format!(r#"{{"return": {{}}, "id": {id}}}"#));
    }
}

/// A fake QMP server in a temp dir running `script` on its one connection.
struct Fake {
    _dir: TempDir,
    path: PathBuf,
    server: Option<JoinHandle<()>>,
}

impl Fake {
    fn new(script: impl FnOnce(Conn) + Send + 'static) -> Self {
        let dir = TempDir::new("qmp").expect("temp dir");
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().expect("accept");
            let reader = BufReader::new(s.try_clone().expect("clone"));
            script(Conn { reader, writer: s });
        });
        Self {
            _dir: dir,
            path,
            server: Some(server),
        }
    }

    fn connect(&self) -> Result<Qmp, QmpError> {
        Qmp::connect(&self.path, T)
    }

    /// Joins the server, so its assertions count.
    fn finish(mut self) {
        if let Some(s) = self.server.take() {
            s.join().expect("the fake server's script passed");
        }
    }
}

#[test]
fn an_event_between_a_command_and_its_reply_goes_to_the_event_channel() {
    let fake = Fake::new(|mut c| {
        c.handshake();
        let (cmd, id) = c.recv();
        assert_eq!(cmd, "stop");
        c.send(
            r#"{"timestamp": {"seconds": 1796109497, "microseconds": 173595}, "event": "STOP"}"#,
        );
        c.send(&format!(r#"{{"return": {{}}, "id": {id}}}"#));
        let (cmd, id) = c.recv();
        assert_eq!(cmd, "query-status");
        c.send(&format!(
            r#"{{"return": {{"status": "paused", "singlestep": false, "running": false}}, "id": {id}}}"#
        ));
        // The reader drops a tray event and delivers one it does not know as Other.
        c.send(r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "DEVICE_TRAY_MOVED", "data": {"device": "ide0-cd0", "tray-open": true, "id": "x"}}"#);
        c.send(r#"{"timestamp": {"seconds": 1, "microseconds": 3}, "event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}}"#);
        c.send(r#"{"timestamp": {"seconds": 1, "microseconds": 4}, "event": "NIC_RX_FILTER_CHANGED", "data": {"path": "/machine/peripheral/net0"}}"#);
    });
    let qmp = fake.connect().expect("connect");
    assert_eq!(qmp.greeting().version, (10, 0, 2));
    assert_eq!(qmp.greeting().capabilities, vec!["oob".to_owned()]);
    let events = qmp.events().expect("events");
    assert!(matches!(qmp.events(), Err(QmpError::EventsTaken)));
    qmp.stop().expect("stop");
    // Queued before `stop` returned.
    let e = events.try_recv().expect("STOP is already there");
    assert_eq!(e.kind, EventKind::Stop);
    assert_eq!(e.timestamp, Some((1796109497, 173595)));
    let status = qmp.query_status().expect("status");
    assert_eq!(status.status, RunState::Paused);
    assert!(!status.running);
    let e = events.recv_timeout(T).expect("SHUTDOWN");
    assert_eq!(
        e.kind,
        EventKind::Shutdown {
            guest: true,
            reason: "guest-shutdown".into()
        }
    );
    let e = events.recv_timeout(T).expect("the unknown event");
    assert!(matches!(e.kind, EventKind::Other { ref name, .. } if name == "NIC_RX_FILTER_CHANGED"));
    // The server's script ended: the connection closes and so does the channel.
    assert_eq!(events.recv_timeout(T), Err(RecvTimeoutError::Disconnected));
    fake.finish();
}

#[test]
fn replies_are_matched_by_id_not_by_order() {
    let fake = Fake::new(|mut c| {
        c.handshake();
        let (a, ida) = c.recv();
        let (b, idb) = c.recv();
        assert_ne!(ida, idb);
        // Answer the second first; each caller must get its own answer.
        for (cmd, id) in [(b, idb), (a, ida)] {
            let status = if cmd == "query-status" {
                "running"
            } else {
                "x"
            };
            c.send(&format!(
                r#"{{"return": {{"status": "{status}", "running": true, "echo": "{cmd}"}}, "id": {id}}}"#
            ));
        }
        // Wait for the client to hang up.
        let mut rest = String::new();
        let _ = c.reader.read_line(&mut rest);
    });
    let qmp = std::sync::Arc::new(fake.connect().expect("connect"));
    let q2 = std::sync::Arc::clone(&qmp);
    let other = std::thread::spawn(move || q2.execute("query-name", None));
    // The two commands reach the server in either order; the server answers them in the
    // reverse order, and each caller must still get its own answer.
    let status = qmp.query_status();
    let name = other.join().expect("thread").expect("query-name");
    assert_eq!(status.expect("status").status, RunState::Running);
    assert_eq!(name["echo"], "query-name");
    drop(qmp);
    fake.finish();
}

#[test]
fn an_error_reply_is_a_typed_error_and_the_connection_stays_up() {
    let fake = Fake::new(|mut c| {
        c.handshake();
        let (_, id) = c.recv();
        c.send(&format!(
            r#"{{"id": {id}, "error": {{"class": "CommandNotFound", "desc": "The command nosuch has not been found"}}}}"#
        ));
        let (cmd, id) = c.recv();
        assert_eq!(cmd, "cont");
        c.send(&format!(r#"{{"return": {{}}, "id": {id}}}"#));
    });
    let qmp = fake.connect().expect("connect");
    match qmp.execute("nosuch", None) {
        Err(QmpError::Command {
            command,
            class,
            desc,
        }) => {
            assert_eq!(command, "nosuch");
            assert_eq!(class, "CommandNotFound");
            assert_eq!(desc, "The command nosuch has not been found");
        }
        other => panic!("expected a command error, got {other:?}"),
    }
    qmp.cont().expect("cont after an error");
    fake.finish();
}

#[test]
fn a_malformed_line_ends_the_connection_with_a_protocol_error() {
    let fake = Fake::new(|mut c| {
        c.handshake();
        let _ = c.recv();
        c.send("this is not json");
        // Hold the connection: the client must give up on its own.
        let mut rest = String::new();
        let _ = c.reader.read_line(&mut rest);
    });
    let qmp = fake.connect().expect("connect");
    let events = qmp.events().expect("events");
    match qmp.query_status() {
        Err(QmpError::Disconnected {
            reason: CloseReason::Protocol(why),
            ..
        }) => assert!(why.contains("this is not json"), "{why}"),
        other => panic!("expected a protocol error, got {other:?}"),
    }
    // Later commands fail at once with the same reason, and the events end.
    assert!(matches!(
        qmp.cont(),
        Err(QmpError::Disconnected {
            reason: CloseReason::Protocol(_),
            ..
        })
    ));
    assert_eq!(events.recv_timeout(T), Err(RecvTimeoutError::Disconnected));
    drop(qmp);
    fake.finish();
}

#[test]
fn a_reply_to_an_id_never_sent_is_a_protocol_violation() {
    let fake = Fake::new(|mut c| {
        c.handshake();
        let _ = c.recv();
        c.send(r#"{"return": {}, "id": 9999}"#);
        let mut rest = String::new();
        let _ = c.reader.read_line(&mut rest);
    });
    let qmp = fake.connect().expect("connect");
    assert!(matches!(
        qmp.cont(),
        Err(QmpError::Disconnected {
            reason: CloseReason::Protocol(_),
            ..
        })
    ));
    drop(qmp);
    fake.finish();
}

#[test]
fn a_server_that_closes_fails_the_waiting_command() {
    let fake = Fake::new(|mut c| {
        c.handshake();
        let _ = c.recv();
        // Gone without a reply (QEMU killed).
    });
    let qmp = fake.connect().expect("connect");
    assert!(matches!(
        qmp.system_powerdown(),
        Err(QmpError::Disconnected {
            reason: CloseReason::Eof,
            ..
        })
    ));
    assert_eq!(qmp.closed(), Some(CloseReason::Eof));
    fake.finish();
}

#[test]
fn quit_succeeds_when_qemu_exits_before_replying() {
    let fake = Fake::new(|mut c| {
        c.handshake();
        let (cmd, _) = c.recv();
        assert_eq!(cmd, "quit");
        c.send(r#"{"timestamp": {"seconds": 1, "microseconds": 1}, "event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}}"#);
    });
    let qmp = fake.connect().expect("connect");
    let events = qmp.events().expect("events");
    qmp.quit().expect("quit");
    assert_eq!(
        events.recv_timeout(T).expect("SHUTDOWN").kind,
        EventKind::Shutdown {
            guest: false,
            reason: "host-qmp-quit".into()
        }
    );
    fake.finish();
}

#[test]
fn a_silent_server_times_out_and_a_late_reply_is_dropped() {
    let fake = Fake::new(|mut c| {
        c.handshake();
        let (_, late) = c.recv();
        let (_, id) = c.recv();
        // The first command's reply comes after its caller gave up: dropped quietly.
        c.send(&format!(r#"{{"return": {{}}, "id": {late}}}"#));
        c.send(&format!(r#"{{"return": {{}}, "id": {id}}}"#));
    });
    let mut qmp = fake.connect().expect("connect");
    qmp.set_timeout(Duration::from_millis(100));
    assert!(matches!(
        qmp.execute("query-name", None),
        Err(QmpError::Timeout { .. })
    ));
    qmp.set_timeout(T);
    qmp.cont().expect("the connection is still good");
    fake.finish();
}

#[test]
fn a_bad_greeting_is_refused() {
    let fake = Fake::new(|mut c| {
        c.send(r#"{"hello": "world"}"#);
    });
    assert!(matches!(fake.connect(), Err(QmpError::Protocol(_))));
    fake.finish();
}
