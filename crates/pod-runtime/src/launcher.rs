//! `oxivirt-launcher` as the pod's container: started in a session of its own (so it
//! outlives the daemon), found again by pid and start time, driven through its control
//! socket, read through its `status.json`.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;

/// How one launcher is started.
#[derive(Debug, Clone)]
pub struct Spawn<'a> {
    pub binary: &'a Path,
    pub netns: &'a Path,
    pub state_dir: &'a Path,
    pub image_cache: &'a Path,
    pub mirrors: &'a [String],
    pub accel: Option<&'a str>,
    /// The VMI, handed over on stdin (`--vmi -`).
    pub vmi: &'a Value,
}

/// A launcher process: our child (its exit status is ours to reap) or one adopted from an
/// earlier daemon (known by pid and start time only).
#[derive(Debug)]
pub struct Process {
    pub pid: u32,
    pub start_time: u64,
    child: Option<tokio::process::Child>,
}

/// How a launcher ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// An adopted launcher: its parent (not us) reaped it.
    Unknown,
}

impl Process {
    pub async fn spawn(s: &Spawn<'_>) -> Result<Self> {
        let fail = |source| Error::Launcher {
            path: s.binary.to_path_buf(),
            source,
        };
        let log_path = s.state_dir.join("launcher.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| Error::Io {
                what: "open the launcher's log",
                path: log_path.clone(),
                source,
            })?;
        let log2 = log.try_clone().map_err(fail)?;
        let mut cmd = tokio::process::Command::new(s.binary);
        cmd.arg("--netns")
            .arg(s.netns)
            .args(["--vmi", "-"])
            .arg("--state-dir")
            .arg(s.state_dir)
            .arg("--image-cache")
            .arg(s.image_cache);
        for m in s.mirrors {
            cmd.args(["--registry-mirror", m]);
        }
        if let Some(a) = s.accel {
            cmd.args(["--accel", a]);
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .kill_on_drop(false);
        // SAFETY: setsid is async-signal-safe and touches no memory of the parent. A
        // session of its own keeps the launcher (and its QEMU) out of the daemon's process
        // group and terminal: a signal or a kill of the daemon's group does not reach it.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(fail)?;
        let pid = child.id().unwrap_or(0);
        if let Some(mut stdin) = child.stdin.take() {
            let bytes = serde_json::to_vec(s.vmi).map_err(|e| fail(std::io::Error::other(e)))?;
            // A launcher that dies before reading says why in its log and exit status.
            let _ = stdin.write_all(&bytes).await;
        }
        Ok(Self {
            pid,
            start_time: start_time(pid).unwrap_or(0),
            child: Some(child),
        })
    }

    /// An earlier daemon's launcher, if that process still runs.
    pub fn adopt(pid: u32, start: u64) -> Option<Self> {
        alive(pid, start).then_some(Self {
            pid,
            start_time: start,
            child: None,
        })
    }

    /// `Some` once the launcher has ended.
    pub fn try_exit(&mut self) -> Option<Exit> {
        use std::os::unix::process::ExitStatusExt as _;
        match &mut self.child {
            Some(c) => match c.try_wait() {
                Ok(Some(st)) => Some(match (st.code(), st.signal()) {
                    (Some(c), _) => Exit::Code(c),
                    (None, Some(s)) => Exit::Signal(s),
                    _ => Exit::Unknown,
                }),
                Ok(None) => None,
                Err(_) => (!alive(self.pid, self.start_time)).then_some(Exit::Unknown),
            },
            None => (!alive(self.pid, self.start_time)).then_some(Exit::Unknown),
        }
    }

    /// SIGKILL to the launcher's session (its process group: the launcher and what it
    /// started there) and to QEMU, whose pid `status.json` names.
    pub fn kill(&self, qemu_pid: Option<u32>) {
        if alive(self.pid, self.start_time) {
            if let Ok(pg) = libc::pid_t::try_from(self.pid) {
                // SAFETY: kill has no memory effects; the group is the launcher's own session
                // (setsid at spawn), checked alive by pid and start time just above.
                unsafe { libc::kill(-pg, libc::SIGKILL) };
            }
        }
        if let Some(q) = qemu_pid.and_then(|q| libc::pid_t::try_from(q).ok()) {
            if cmdline_has(q, "qemu") {
                // SAFETY: as above, a QEMU process (checked by its command line).
                unsafe { libc::kill(q, libc::SIGKILL) };
            }
        }
    }
}

fn cmdline_has(pid: libc::pid_t, word: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).contains(word))
        .unwrap_or(false)
}

/// The process's start time (clock ticks since boot, `/proc/<pid>/stat` field 22) and
/// whether it is a zombie.
fn stat(pid: u32) -> Option<(u64, bool)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields follow the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let zombie = matches!(f.first(), Some(&"Z") | Some(&"X"));
    Some((f.get(19)?.parse().ok()?, zombie))
}

pub fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|(t, _)| t)
}

/// Whether the process `pid` that started at `start` still runs (not a reused pid).
pub fn alive(pid: u32, start: u64) -> bool {
    pid != 0 && matches!(stat(pid), Some((t, false)) if t == start)
}

/// A request on the control socket (one JSON line each way); the launcher's answer.
pub fn control(sock: &Path, request: &Value) -> std::io::Result<Value> {
    let mut conn = UnixStream::connect(sock)?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    conn.write_all(&line)?;
    let mut answer = String::new();
    BufReader::new(conn).read_line(&mut answer)?;
    Ok(serde_json::from_str(&answer)?)
}

/// Asks the launcher for a graceful stop within `grace`.
pub fn request_stop(state_dir: &Path, grace: u64) -> std::io::Result<()> {
    let answer = control(
        &state_dir.join("control.sock"),
        &serde_json::json!({"op": "stop", "gracePeriodSeconds": grace}),
    )?;
    if answer.get("ok").and_then(Value::as_bool) == Some(true) {
        Ok(())
    } else {
        Err(std::io::Error::other(
            answer
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("refused")
                .to_string(),
        ))
    }
}

/// Whether a launcher answers on the state dir's control socket.
pub fn answers(state_dir: &Path) -> bool {
    control(
        &state_dir.join("control.sock"),
        &serde_json::json!({"op": "status"}),
    )
    .is_ok()
}

/// `status.json` of a state dir (see `apps/launcher/src/state.rs`), `None` until written.
pub fn read_status(state_dir: &Path) -> Option<Value> {
    let bytes = std::fs::read(state_dir.join("status.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// What the runtime keeps of a pod on disk (`<data-dir>/pods/<uid>.json`), written before
/// anything is made for it, so a restarted daemon finds and adopts or cleans up every part.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub vmi: String,
    #[serde(default)]
    pub vmi_uid: String,
    pub netns: PathBuf,
    pub state_dir: PathBuf,
    /// CNI ADD was called (so DEL is owed, whatever ADD answered).
    #[serde(default)]
    pub cni_added: bool,
    #[serde(default)]
    pub pod_ips: Vec<String>,
    #[serde(default)]
    pub launcher_pid: u32,
    #[serde(default)]
    pub launcher_start: u64,
    /// RFC 3339, when the launcher started.
    #[serde(default)]
    pub started_at: String,
    /// The pod's termination grace period, for a stop after the pod is gone.
    #[serde(default)]
    pub grace: Option<u64>,
    /// The launcher ended and its network was torn down.
    #[serde(default)]
    pub finished: bool,
}

impl Record {
    pub fn path(dir: &Path, uid: &str) -> PathBuf {
        dir.join(format!("{uid}.json"))
    }

    pub fn load(dir: &Path, uid: &str) -> Option<Self> {
        let bytes = std::fs::read(Self::path(dir, uid)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn all(dir: &Path) -> Vec<Self> {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| std::fs::read(e.path()).ok())
                    .filter_map(|b| serde_json::from_slice(&b).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Replaces the record atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let io = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { what, path, source }
        };
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let path = Self::path(dir, &self.uid);
        let tmp = dir.join(format!(".{}.tmp", self.uid));
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| io("serialise", &path)(std::io::Error::other(e)))?;
        std::fs::write(&tmp, bytes).map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("rename into place", &path))
    }

    pub fn remove(dir: &Path, uid: &str) {
        let _ = std::fs::remove_file(Self::path(dir, uid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = std::process::id();
        let t = start_time(me).expect("own stat");
        assert!(alive(me, t));
        assert!(!alive(me, t + 1));
        assert!(!alive(0, 0));
    }
}
