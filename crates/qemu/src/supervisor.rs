//! Starting QEMU for a [`LaunchConfig`]: spawn it as our child (never `-daemonize`),
//! keep its stderr, wait for the QMP socket and hand back the child and a connected
//! [`Qmp`]. A QEMU that dies during start is reported with what it wrote on stderr.

use std::io::{self, Read};
use std::os::fd::RawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{Console, LaunchConfig, ValidationError};
use crate::qmp::{Qmp, QmpError};

/// How much of QEMU's stderr is kept (the end of it).
const STDERR_KEEP: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the launch config is invalid")]
    Invalid(#[from] ValidationError),
    #[error("cannot remove the stale socket {}", path.display())]
    StaleSocket {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start QEMU")]
    Spawn(#[source] io::Error),
    /// QEMU exited before its QMP socket answered; `stderr` is what it said.
    #[error("QEMU exited during start ({status}): {}", stderr.trim_end())]
    Exited { status: ExitStatus, stderr: String },
    #[error("QEMU's QMP socket did not answer within {after:?}; QEMU said: {}", stderr.trim_end())]
    Timeout { after: Duration, stderr: String },
    #[error("QMP handshake with QEMU failed")]
    Qmp(#[source] QmpError),
    #[error("cannot watch QEMU")]
    Wait(#[source] io::Error),
}

/// The end of QEMU's stderr, filled by a thread for as long as QEMU runs (a pipe nobody
/// reads would stall QEMU once full).
#[derive(Debug, Clone, Default)]
pub struct StderrTail(Arc<Mutex<Vec<u8>>>);

impl StderrTail {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }

    fn drain(&self, mut from: impl Read + Send + 'static) -> io::Result<JoinHandle<()>> {
        let buf = Arc::clone(&self.0);
        std::thread::Builder::new()
            .name("qemu-stderr".into())
            .spawn(move || {
                let mut chunk = [0u8; 4096];
                loop {
                    match from.read(&mut chunk) {
                        Ok(0) => return,
                        Ok(n) => {
                            let mut b = buf.lock().unwrap_or_else(PoisonError::into_inner);
                            b.extend_from_slice(&chunk[..n]);
                            let excess = b.len().saturating_sub(STDERR_KEEP);
                            b.drain(..excess);
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => return,
                    }
                }
            })
    }
}

/// A QEMU that answers QMP (paused: the argv has `-S`; `cont` starts the guest).
#[derive(Debug)]
pub struct Started {
    pub child: Child,
    pub qmp: Qmp,
    pub stderr: StderrTail,
}

/// Starts `cmd` (QEMU, or a wrapper such as `ip netns exec <ns> qemu-system-x86_64`
/// that execs it) with the config's argv appended, through `spawn` (so a caller can
/// register the child for cleanup), and waits up to `timeout` for QMP.
pub fn start(
    mut cmd: Command,
    cfg: &LaunchConfig,
    timeout: Duration,
    spawn: impl FnOnce(&mut Command) -> io::Result<Child>,
) -> Result<Started, StartError> {
    let args = cfg.command_line()?;
    let deadline = Instant::now() + timeout;
    let mut stale = vec![cfg.qmp_socket.clone()];
    if let Console::Socket(p) = &cfg.console {
        stale.push(p.clone());
    }
    for path in stale {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(StartError::StaleSocket { path, source: e })
            }
            _ => {}
        }
    }
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Console::Fd(fd) = cfg.console {
        keep_open_across_exec(&mut cmd, fd);
    }
    let mut child = spawn(&mut cmd).map_err(StartError::Spawn)?;
    let stderr = StderrTail::default();
    let drainer = match child.stderr.take().map(|e| stderr.drain(e)).transpose() {
        Ok(d) => d,
        Err(e) => {
            kill(&mut child);
            return Err(StartError::Spawn(e));
        }
    };
    let stream = loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                // QEMU is gone, so its stderr reaches EOF: all of it is in.
                if let Some(d) = drainer {
                    let _ = d.join();
                }
                return Err(StartError::Exited {
                    status,
                    stderr: stderr.text(),
                });
            }
            Ok(None) => {}
            Err(e) => {
                kill(&mut child);
                return Err(StartError::Wait(e));
            }
        }
        // Refused or missing until QEMU has bound it (a stale file was removed above).
        if let Ok(s) = UnixStream::connect(&cfg.qmp_socket) {
            break s;
        }
        if Instant::now() >= deadline {
            kill(&mut child);
            return Err(StartError::Timeout {
                after: timeout,
                stderr: stderr.text(),
            });
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100));
    match Qmp::handshake(stream, left) {
        Ok(qmp) => Ok(Started { child, qmp, stderr }),
        Err(e) => {
            // QEMU binds the QMP socket before it opens disks and taps: a handshake cut
            // short usually means QEMU is exiting over one of those. Say why if it does.
            let until = Instant::now() + Duration::from_secs(1);
            while Instant::now() < until {
                if let Ok(Some(status)) = child.try_wait() {
                    if let Some(d) = drainer {
                        let _ = d.join();
                    }
                    return Err(StartError::Exited {
                        status,
                        stderr: stderr.text(),
                    });
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            kill(&mut child);
            Err(StartError::Qmp(e))
        }
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Clears close-on-exec on `fd` in the child only, so QEMU inherits the console socket.
fn keep_open_across_exec(cmd: &mut Command, fd: RawFd) {
    // SAFETY: between fork and exec the closure makes only fcntl calls, which are
    // async-signal-safe and allocate nothing; it touches only the given descriptor.
    unsafe {
        cmd.pre_exec(move || {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
