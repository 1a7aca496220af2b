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
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    /// When our DHCP server first acknowledged this interface's lease to the guest (RFC
    /// 3339, UTC, milliseconds). Ours, not KubeVirt's: `infoSource` stays KubeVirt-true.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub lease_acknowledged_at: Option<String>,
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

    /// Replaces `status.json` atomically (a temp file renamed over it). Callers hold the
    /// lock of the status they write, which keeps writers (the launcher's threads) in turn.
    pub fn write_status(&self, status: &Status) -> std::io::Result<()> {
        self.writer().write(status)
    }

    /// The same writer, for a thread that outlives a borrow of this directory.
    pub fn writer(&self) -> StatusWriter {
        StatusWriter {
            dir: self.path.clone(),
        }
    }

    /// Reads `status.json` (for tests and tools).
    pub fn read_status(dir: &Path) -> std::io::Result<Status> {
        let bytes = std::fs::read(dir.join("status.json"))?;
        Ok(serde_json::from_slice(&bytes)?)
    }
}

/// Writes `status.json` of one state directory; see [`StateDir::write_status`].
#[derive(Debug, Clone)]
pub struct StatusWriter {
    dir: PathBuf,
}

impl StatusWriter {
    /// Replaces `status.json` atomically (a temp file renamed over it).
    pub fn write(&self, status: &Status) -> std::io::Result<()> {
        let tmp = self.dir.join(".status.json.tmp");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(status)?)?;
        f.sync_data()?;
        std::fs::rename(&tmp, self.dir.join("status.json"))
    }
}

/// What the launcher wires to [`crate::network::PodNetwork::on_lease`]: each interface's
/// first DHCP acknowledgement goes into the shared status and `status.json`, under the
/// status lock like every other write.
pub fn lease_reporter(
    status: Arc<Mutex<Status>>,
    writer: StatusWriter,
) -> impl FnMut(&str, SystemTime) + Send + 'static {
    move |name, at| {
        let mut s = status.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(i) = s.interfaces.iter_mut().find(|i| i.name == name) else {
            return;
        };
        if i.lease_acknowledged_at.is_some() {
            return;
        }
        i.lease_acknowledged_at = Some(rfc3339_ms(at));
        // Nobody to tell but the log: the next write carries the field again.
        if let Err(e) = writer.write(&s) {
            eprintln!("oxivirt-launcher: write status.json: {e}");
        }
    }
}

/// `at` as RFC 3339 in UTC with milliseconds (`2024-05-01T12:34:56.789Z`).
pub fn rfc3339_ms(at: SystemTime) -> String {
    oxivirt_api::time::rfc3339_millis(at)
}

/// Reads an RFC 3339 time (what [`rfc3339_ms`] writes); `None` for anything else or a
/// time before the epoch.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let (secs, nanos) = oxivirt_api::time::parse_rfc3339_precise(text)?;
    Some(UNIX_EPOCH + Duration::new(u64::try_from(secs).ok()?, nanos))
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
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        let at = UNIX_EPOCH + Duration::from_millis(1_709_251_199_007);
        assert_eq!(rfc3339_ms(at), "2024-02-29T23:59:59.007Z");
        assert_eq!(rfc3339_ms(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(parse_rfc3339("2024-02-29T23:59:59.007Z"), Some(at));
        assert_eq!(
            parse_rfc3339("2024-03-01T00:00:00Z"),
            Some(UNIX_EPOCH + Duration::from_secs(1_709_251_200))
        );
        assert_eq!(
            parse_rfc3339("2024-03-01T00:59:59.007+01:00"),
            Some(at),
            "an offset is taken into account"
        );
        for bad in [
            "",
            "2024-02-29",
            "2024-13-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        // Every day of four years round-trips.
        for day in 19_000..20_461u64 {
            let t = UNIX_EPOCH + Duration::from_millis(day * 86_400_000 + 45_296_789);
            assert_eq!(parse_rfc3339(&rfc3339_ms(t)), Some(t));
        }
    }

    #[test]
    fn a_lease_is_recorded_once_on_its_interface_and_written() {
        let tmp = TempDir::new("launcher").expect("tmp");
        let dir = StateDir::claim(tmp.path()).expect("claim");
        let iface = |name: &str| InterfaceStatus {
            name: name.into(),
            info_source: "domain".into(),
            ..Default::default()
        };
        let status = Arc::new(Mutex::new(Status {
            phase: Phase::Running,
            interfaces: vec![iface("default"), iface("ext-net")],
            ..Default::default()
        }));
        let mut report = lease_reporter(status.clone(), dir.writer());
        let first = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        report("ext-net", first);
        report("ext-net", first + Duration::from_secs(5));
        report("no-such-interface", first);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.status_path()).expect("read")).expect("json");
        assert_eq!(
            json["interfaces"][1]["leaseAcknowledgedAt"],
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(json["interfaces"][1]["infoSource"], "domain");
        assert!(json["interfaces"][0].get("leaseAcknowledgedAt").is_none());
        assert_eq!(
            StateDir::read_status(dir.path()).expect("read back"),
            *status.lock().expect("lock")
        );
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
                ..Default::default()
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
