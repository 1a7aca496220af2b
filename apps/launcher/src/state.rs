//! The launcher's state directory: who owns it (one launcher per VM, held by an flock for
//! the launcher's life, so a second one is refused and a dead one's directory can be
//! taken over), where its sockets live, and `status.json`, replaced atomically on every
//! change so a reader never sees half a status.

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The VMI phase, as KubeVirt names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Phase {
    #[default]
    Pending,
    Scheduling,
    Scheduled,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

/// One guest interface, as KubeVirt reports it in `status.interfaces`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceStatus {
    /// The VMI's interface (and network) name.
    pub name: String,
    pub mac: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub ip_addresses: Vec<String>,
    /// The name inside the guest (`eth0`, `eth1`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface_name: Option<String>,
    /// Where the information came from (`domain`, `guest-agent`, …).
    pub info_source: String,
}

/// What `status.json` holds: the VMI status fields the launcher knows, plus its own.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub phase: Phase,
    pub interfaces: Vec<InterfaceStatus>,
    /// `kvm` or `tcg`, once chosen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accelerator: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qemu_pid: Option<u32>,
    /// The guest is paused (QMP `stop`).
    #[serde(default)]
    pub paused: bool,
    /// Why the VM is not running (or ended), when something says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What can go wrong with the state directory.
#[derive(Debug)]
pub enum StateError {
    /// Another launcher holds the directory.
    Busy(PathBuf),
    Io(String, std::io::Error),
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Busy(p) => write!(f, "another launcher runs on state dir {}", p.display()),
            Self::Io(what, _) => write!(f, "{what}"),
        }
    }
}

impl std::error::Error for StateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Busy(_) => None,
            Self::Io(_, e) => Some(e),
        }
    }
}

/// A claimed state directory; the claim ends when this is dropped (or the process dies).
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    _lock: File,
}

impl StateDir {
    /// Creates (mode 0700) and claims `path`; refuses when another launcher holds it.
    pub fn claim(path: &Path) -> Result<Self, StateError> {
        let io = |what: String| move |e| StateError::Io(what, e);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(io(format!("create state dir {}", path.display())))?;
        let lock_path = path.join("launcher.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io(format!("open {}", lock_path.display())))?;
        // SAFETY: flock on a descriptor this function owns; no memory is involved.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                StateError::Busy(path.to_path_buf())
            } else {
                StateError::Io(format!("lock {}", lock_path.display()), e)
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The guest's serial console.
    pub fn console_sock(&self) -> PathBuf {
        self.path.join("console.sock")
    }

    /// QEMU's monitor.
    pub fn qmp_sock(&self) -> PathBuf {
        self.path.join("qmp.sock")
    }

    /// The daemon's control socket (status, stop, pause, unpause, reset).
    pub fn control_sock(&self) -> PathBuf {
        self.path.join("control.sock")
    }

    pub fn status_path(&self) -> PathBuf {
        self.path.join("status.json")
    }

    /// Replaces `status.json` atomically (a temp file renamed over it).
    pub fn write_status(&self, status: &Status) -> std::io::Result<()> {
        let tmp = self.path.join(".status.json.tmp");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(status)?)?;
        f.sync_data()?;
        std::fs::rename(&tmp, self.status_path())
    }

    /// Reads `status.json` (for tests and tools).
    pub fn read_status(dir: &Path) -> std::io::Result<Status> {
        let bytes = std::fs::read(dir.join("status.json"))?;
        Ok(serde_json::from_slice(&bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxivirt_testkit::cleanup::TempDir;

    #[test]
    fn one_launcher_per_state_dir() {
        let tmp = TempDir::new("launcher").expect("tmp");
        let dir = tmp.path().join("vm");
        let first = StateDir::claim(&dir).expect("first");
        let second = StateDir::claim(&dir).expect_err("second");
        assert!(
            matches!(&second, StateError::Busy(p) if *p == dir),
            "{second}"
        );
        assert!(second.to_string().contains("another launcher"));
        drop(first);
        StateDir::claim(&dir).expect("free again once the first is gone");
    }

    #[test]
    fn status_is_replaced_whole_in_kubevirts_shape() {
        let tmp = TempDir::new("launcher").expect("tmp");
        let dir = StateDir::claim(tmp.path()).expect("claim");
        let mut status = Status {
            phase: Phase::Running,
            interfaces: vec![InterfaceStatus {
                name: "default".into(),
                mac: "02:00:00:00:00:01".into(),
                ip_address: Some("10.244.0.7".into()),
                ip_addresses: vec!["10.244.0.7".into()],
                interface_name: Some("eth0".into()),
                info_source: "domain".into(),
            }],
            accelerator: Some("tcg".into()),
            qemu_pid: Some(42),
            ..Default::default()
        };
        dir.write_status(&status).expect("write");
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.status_path()).expect("read")).expect("json");
        assert_eq!(json["phase"], "Running");
        assert_eq!(json["interfaces"][0]["ipAddress"], "10.244.0.7");
        assert_eq!(json["interfaces"][0]["interfaceName"], "eth0");
        assert_eq!(json["interfaces"][0]["infoSource"], "domain");
        assert_eq!(json["qemuPid"], 42);
        status.phase = Phase::Failed;
        status.reason = Some("QEMU was killed by signal 9".into());
        dir.write_status(&status).expect("rewrite");
        assert_eq!(
            StateDir::read_status(dir.path()).expect("read back"),
            status
        );
        assert!(!dir.path().join(".status.json.tmp").exists());
    }
}
