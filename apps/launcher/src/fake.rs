//! A stand-in launcher for the tests of what talks to launchers (the API's pause, unpause
//! and console, the node relay): the real control server over a fake VM that records what
//! it was asked, and the real console server fed by a socket pair standing in for the
//! guest's serial port. No QEMU: the real launcher is tested on its own.

use std::io::Read as _;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxivirt_console::ConsoleServer;

use crate::control::{ControlServer, Vm};
use crate::state::{Phase, Status};

/// A running VM that pauses and unpauses, and records every request.
#[derive(Debug, Default)]
pub struct FakeVm {
    paused: AtomicBool,
    /// `stop <grace secs>`, `pause`, `unpause`, `reset`, in order.
    pub calls: Mutex<Vec<String>>,
}

impl FakeVm {
    fn record(&self, c: String) -> Result<(), String> {
        self.calls
            .lock()
            .map_err(|_| "poisoned".to_string())?
            .push(c);
        Ok(())
    }

    /// What the VM was asked so far.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl Vm for FakeVm {
    fn status(&self) -> Status {
        Status {
            phase: Phase::Running,
            paused: self.paused.load(Ordering::SeqCst),
            ..Default::default()
        }
    }
    fn stop(&self, grace: Duration) -> Result<(), String> {
        self.record(format!("stop {}", grace.as_secs()))
    }
    fn pause(&self) -> Result<(), String> {
        self.paused.store(true, Ordering::SeqCst);
        self.record("pause".into())
    }
    fn unpause(&self) -> Result<(), String> {
        self.paused.store(false, Ordering::SeqCst);
        self.record("unpause".into())
    }
    fn reset(&self) -> Result<(), String> {
        self.record("reset".into())
    }
}

/// `control.sock` and `console.sock` in a state dir, served until dropped.
pub struct FakeLauncher {
    pub vm: Arc<FakeVm>,
    _control: ControlServer,
    _console: ConsoleServer,
    /// The guest's side of its serial port.
    pub guest: UnixStream,
}

impl FakeLauncher {
    /// Serves in `state` (made if missing).
    pub fn start(state: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(state)?;
        let vm = Arc::new(FakeVm::default());
        let control = ControlServer::start(&state.join("control.sock"), vm.clone())?;
        let (guest, serial) = UnixStream::pair()?;
        let console = ConsoleServer::start(state.join("console.sock"), serial)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        guest.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(FakeLauncher {
            vm,
            _control: control,
            _console: console,
            guest,
        })
    }

    /// Reads the guest's side of the serial port until `want` has come; an error says
    /// what came instead.
    pub fn guest_reads(&mut self, want: &[u8]) -> Result<(), String> {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.windows(want.len()).any(|w| w == want) {
            let n = self.guest.read(&mut buf).map_err(|e| {
                format!(
                    "guest waiting for {:?}, got {:?}: {e}",
                    String::from_utf8_lossy(want),
                    String::from_utf8_lossy(&got)
                )
            })?;
            if n == 0 {
                return Err(format!(
                    "guest stream ended waiting for {:?}",
                    String::from_utf8_lossy(want)
                ));
            }
            got.extend_from_slice(&buf[..n]);
        }
        Ok(())
    }
}
