//! The control socket the daemon (or a test) drives the launcher through: one JSON request
//! per line, one JSON answer per line. `status`, `stop` (with a grace period), `pause`,
//! `unpause`, `reset`. The launcher's VM is behind [`Vm`], so the protocol is tested
//! without QEMU.

use crate::state::Status;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the daemon asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Request {
    Status,
    /// ACPI power-down, then QEMU is ended when the grace period is over.
    Stop {
        #[serde(rename = "gracePeriodSeconds", default = "default_grace")]
        grace_period_seconds: u64,
    },
    Pause,
    Unpause,
    Reset,
}

/// KubeVirt's default `terminationGracePeriodSeconds`.
fn default_grace() -> u64 {
    30
}

/// The launcher's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

/// The VM as the control socket sees it.
pub trait Vm: Send + Sync {
    fn status(&self) -> Status;
    /// Starts a graceful stop; returns once it is under way.
    fn stop(&self, grace: Duration) -> Result<(), String>;
    fn pause(&self) -> Result<(), String>;
    fn unpause(&self) -> Result<(), String>;
    fn reset(&self) -> Result<(), String>;
}

fn answer(vm: &dyn Vm, line: &str) -> Response {
    let done = |r: Result<(), String>| match r {
        Ok(()) => Response {
            ok: true,
            status: Some(vm.status()),
            error: None,
        },
        Err(e) => Response {
            ok: false,
            status: None,
            error: Some(e),
        },
    };
    match serde_json::from_str::<Request>(line) {
        Err(e) => done(Err(format!(
            "bad request {line:?}: {e} (expected {{\"op\": \"status\"|\"stop\"|\"pause\"|\"unpause\"|\"reset\"}})"
        ))),
        Ok(Request::Status) => done(Ok(())),
        Ok(Request::Stop {
            grace_period_seconds,
        }) => done(vm.stop(Duration::from_secs(grace_period_seconds))),
        Ok(Request::Pause) => done(vm.pause()),
        Ok(Request::Unpause) => done(vm.unpause()),
        Ok(Request::Reset) => done(vm.reset()),
    }
}

/// A running control socket; [`ControlServer::stop`] (or drop) closes it and removes the
/// socket file.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    stopping: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ControlServer {
    /// Listens on `path` (mode 0600; a stale socket file is replaced).
    pub fn start(path: &Path, vm: Arc<dyn Vm>) -> std::io::Result<Self> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let stopping = Arc::new(AtomicBool::new(false));
        let flag = stopping.clone();
        let thread = std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if flag.load(Ordering::SeqCst) {
                        break;
                    }
                    // A client that misbehaves only loses its own connection.
                    if let Ok(conn) = conn {
                        let _ = serve(vm.as_ref(), conn);
                    }
                }
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            stopping,
            thread: Some(thread),
        })
    }

    pub fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = UnixStream::connect(&self.path);
        let _ = thread.join();
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(vm: &dyn Vm, conn: UnixStream) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = conn.try_clone()?;
    for line in BufReader::new(conn).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let mut reply = serde_json::to_vec(&answer(vm, &line))?;
        reply.push(b'\n');
        out.write_all(&reply)?;
    }
    Ok(())
}

/// The daemon's side: sends one request and reads the answer.
pub fn request(path: &Path, req: &Request) -> std::io::Result<Response> {
    let mut conn = UnixStream::connect(path)?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    conn.write_all(&line)?;
    let mut answer = String::new();
    BufReader::new(conn).read_line(&mut answer)?;
    Ok(serde_json::from_str(&answer)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Phase;
    use oxivirt_testkit::cleanup::TempDir;
    use std::sync::Mutex;

    #[derive(Default)]
    struct FakeVm {
        calls: Mutex<Vec<String>>,
    }

    impl Vm for FakeVm {
        fn status(&self) -> Status {
            Status {
                phase: Phase::Running,
                ..Default::default()
            }
        }
        fn stop(&self, grace: Duration) -> Result<(), String> {
            self.record(format!("stop {}", grace.as_secs()))
        }
        fn pause(&self) -> Result<(), String> {
            self.record("pause".into())
        }
        fn unpause(&self) -> Result<(), String> {
            Err("the VM is not paused".into())
        }
        fn reset(&self) -> Result<(), String> {
            self.record("reset".into())
        }
    }

    impl FakeVm {
        fn record(&self, call: String) -> Result<(), String> {
            self.calls.lock().expect("calls").push(call);
            Ok(())
        }
    }

    #[test]
    fn requests_reach_the_vm_and_errors_come_back() {
        let tmp = TempDir::new("control").expect("tmp");
        let sock = tmp.path().join("control.sock");
        let vm = Arc::new(FakeVm::default());
        let mut server = ControlServer::start(&sock, vm.clone()).expect("start");
        let status = request(&sock, &Request::Status).expect("status");
        assert!(status.ok);
        assert_eq!(status.status.map(|s| s.phase), Some(Phase::Running));
        let stop: Request =
            serde_json::from_str(r#"{"op":"stop","gracePeriodSeconds":5}"#).expect("parse");
        assert!(request(&sock, &stop).expect("stop").ok);
        assert!(request(&sock, &Request::Pause).expect("pause").ok);
        let refused = request(&sock, &Request::Unpause).expect("unpause");
        assert!(!refused.ok);
        assert_eq!(refused.error.as_deref(), Some("the VM is not paused"));
        assert_eq!(
            *vm.calls.lock().expect("calls"),
            ["stop 5".to_string(), "pause".to_string()]
        );
        server.stop();
        assert!(!sock.exists(), "the socket file goes with the server");
    }

    #[test]
    fn a_bad_request_is_answered_not_dropped() {
        let vm = FakeVm::default();
        let r = answer(&vm, r#"{"op":"explode"}"#);
        assert!(!r.ok);
        assert!(
            r.error.as_deref().is_some_and(|e| e.contains("explode")),
            "{r:?}"
        );
        // The default grace period is KubeVirt's.
        let r = answer(&vm, r#"{"op":"stop"}"#);
        assert!(r.ok);
        assert_eq!(*vm.calls.lock().expect("calls"), ["stop 30".to_string()]);
    }
}
