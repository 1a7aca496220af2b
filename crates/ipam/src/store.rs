//! The host-local store: `<dataDir>/<network>/<ip>` files holding `<containerID>\r\n<ifname>`,
//! `last_reserved_ip.<rangeset>` and a `lock` file taken with `flock`, exactly as the
//! reference plugin keeps them, so the two can take turns on one node.
//!
//! The reference finds a container's addresses by reading every file. We keep an index
//! (one small hint file per attachment) on tmpfs, under `/run/oxivirt/ipam-index/` (see
//! [`index_root`]), and trust it only while the store directory's mtime is the value we
//! stamped on it after our last change: any create or unlink by anyone else moves the
//! mtime, and the next call then rebuilds the index from the files (the reference's cost,
//! once). A reboot empties /run, which just means one rebuild.

use crate::Error;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const LINE_BREAK: &str = "\r\n";
const LAST_RESERVED_PREFIX: &str = "last_reserved_ip.";
/// Where indexes live unless `OXIVIRT_IPAM_INDEX_DIR` says otherwise.
pub const DEFAULT_INDEX_ROOT: &str = "/run/oxivirt/ipam-index";

/// The index directory for the stores under `data_dir`: a tmpfs path keyed by a hash of
/// `data_dir`, so several data directories never share one.
pub fn index_root(data_dir: &Path) -> PathBuf {
    let root = std::env::var_os("OXIVIRT_IPAM_INDEX_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_INDEX_ROOT));
    // FNV-1a: stable across releases, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data_dir.as_os_str().as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    root.join(format!("{h:016x}"))
}

fn io_err(op: &'static str, path: &Path, e: std::io::Error) -> Error {
    Error::store(op, path, e)
}

/// An allocation as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub ip: IpAddr,
    pub container_id: String,
    pub ifname: String,
}

/// The store of one network, locked for the lifetime of the value.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    index_dir: PathBuf,
    _lock: File,
    /// Whether the index under `index_dir` describes the store completely.
    trusted: bool,
    dirty: bool,
}

fn hint_name(id: &str, ifname: &str) -> String {
    // Container IDs never contain '@' (validated), so the split is unambiguous.
    format!("{id}@{ifname}")
}

fn parse_owner(content: &str) -> (String, String) {
    let content = content.trim();
    match content.split_once(LINE_BREAK) {
        Some((id, ifname)) => (id.trim().to_string(), ifname.trim().to_string()),
        None => (content.to_string(), String::new()),
    }
}

/// Replaces a small file's content in place: a write over the old bytes and a truncate
/// only when the new content is shorter, instead of truncating to zero first (which frees
/// and reallocates the block, the costly part on a journaling filesystem).
fn rewrite_small(path: &Path, content: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)?;
    f.write_all_at(content, 0)?;
    if f.metadata()?.len() > content.len() as u64 {
        f.set_len(content.len() as u64)?;
    }
    Ok(())
}

fn mtime_of(path: &Path) -> Result<(i64, i64), Error> {
    let md = fs::metadata(path).map_err(|e| io_err("stat", path, e))?;
    Ok((md.mtime(), md.mtime_nsec()))
}

impl Store {
    /// Opens (creating if needed) and locks the store of `network` under `data_dir`, with
    /// its index under `index_root` (see [`index_root`]).
    pub fn open(data_dir: &Path, network: &str, index_root: &Path) -> Result<Self, Error> {
        let dir = data_dir.join(network);
        fs::create_dir_all(&dir).map_err(|e| io_err("create directory", &dir, e))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&lock_path)
            .map_err(|e| io_err("open", &lock_path, e))?;
        loop {
            // SAFETY: flock on an fd owned by `lock`, which outlives the call.
            let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                break;
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != ErrorKind::Interrupted {
                return Err(io_err("lock", &lock_path, e));
            }
        }
        let index_dir = index_root.join(network);
        let mut store = Self {
            dir,
            index_dir,
            _lock: lock,
            trusted: false,
            dirty: false,
        };
        store.trusted = store.stamp_matches();
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn stamp_path(&self) -> PathBuf {
        self.index_dir.join("stamp")
    }

    fn hints_dir(&self) -> PathBuf {
        self.index_dir.join("by-id")
    }

    fn stamp_matches(&self) -> bool {
        let Ok(now) = mtime_of(&self.dir) else {
            return false;
        };
        let Ok(stamp) = fs::read_to_string(self.stamp_path()) else {
            return false;
        };
        stamp.trim() == format!("{} {}", now.0, now.1)
    }

    /// Makes the index complete, rebuilding it from the files if it is not.
    fn ensure_index(&mut self) -> Result<(), Error> {
        if self.trusted {
            return Ok(());
        }
        let all = self.scan()?;
        let hints = self.hints_dir();
        match fs::remove_dir_all(&hints) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("clear index", &hints, e)),
        }
        fs::create_dir_all(&hints).map_err(|e| io_err("create index", &hints, e))?;
        let mut grouped: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
        for a in all {
            grouped
                .entry(hint_name(&a.container_id, &a.ifname))
                .or_default()
                .push(a.ip);
        }
        for (name, ips) in grouped {
            self.write_hint(&name, &ips)?;
        }
        self.trusted = true;
        self.dirty = true;
        Ok(())
    }

    /// Reads every allocation file (what the reference does on each call).
    pub fn scan(&self) -> Result<Vec<Allocation>, Error> {
        let mut out = Vec::new();
        let rd = fs::read_dir(&self.dir).map_err(|e| io_err("read", &self.dir, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| io_err("read", &self.dir, e))?;
            let name = entry.file_name();
            let Some(ip) = name.to_str().and_then(|n| n.parse::<IpAddr>().ok()) else {
                continue;
            };
            let Ok(content) = fs::read_to_string(entry.path()) else {
                continue;
            };
            let (container_id, ifname) = parse_owner(&content);
            out.push(Allocation {
                ip,
                container_id,
                ifname,
            });
        }
        Ok(out)
    }

    fn write_hint(&self, name: &str, ips: &[IpAddr]) -> Result<(), Error> {
        let path = self.hints_dir().join(name);
        if ips.is_empty() {
            return match fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_err("remove", &path, e)),
            };
        }
        let body: String = ips.iter().map(|ip| format!("{ip}\n")).collect();
        fs::write(&path, body).map_err(|e| io_err("write", &path, e))
    }

    fn read_hint(&self, name: &str) -> Vec<IpAddr> {
        fs::read_to_string(self.hints_dir().join(name))
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    fn owner_of(&self, ip: IpAddr) -> Option<(String, String)> {
        fs::read_to_string(self.dir.join(ip.to_string()))
            .ok()
            .map(|c| parse_owner(&c))
    }

    /// Addresses held by `(id, ifname)`.
    pub fn get_by_id(&mut self, id: &str, ifname: &str) -> Result<Vec<IpAddr>, Error> {
        self.ensure_index()?;
        let mut ips = self.read_hint(&hint_name(id, ifname));
        // A hint is advice: keep only what the files confirm.
        ips.retain(|ip| {
            self.owner_of(*ip)
                .is_some_and(|(i, f)| i == id && f == ifname)
        });
        Ok(ips)
    }

    pub fn last_reserved(&self, rangeset: usize) -> Option<IpAddr> {
        fs::read_to_string(self.dir.join(format!("{LAST_RESERVED_PREFIX}{rangeset}")))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Claims `ip` for `(id, ifname)`; `false` if someone holds it.
    pub fn reserve(
        &mut self,
        id: &str,
        ifname: &str,
        ip: IpAddr,
        rangeset: usize,
    ) -> Result<bool, Error> {
        self.ensure_index()?;
        let path = self.dir.join(ip.to_string());
        let mut f = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(io_err("create", &path, e)),
        };
        self.dirty = true;
        if let Err(e) = f.write_all(format!("{}{LINE_BREAK}{ifname}", id.trim()).as_bytes()) {
            // A half-written reservation must not stay behind as a taken address.
            let cleanup = fs::remove_file(&path)
                .err()
                .map(|r| io_err("remove", &path, r));
            return Err(Error::with_cleanup(
                io_err("write", &path, e),
                cleanup.into_iter().collect(),
            ));
        }
        let last = self.dir.join(format!("{LAST_RESERVED_PREFIX}{rangeset}"));
        rewrite_small(&last, ip.to_string().as_bytes()).map_err(|e| io_err("write", &last, e))?;
        let name = hint_name(id, ifname);
        let mut ips = self.read_hint(&name);
        if !ips.contains(&ip) {
            ips.push(ip);
        }
        self.write_hint(&name, &ips)?;
        Ok(true)
    }

    /// Releases one address, whoever holds it.
    pub fn release(&mut self, ip: IpAddr) -> Result<(), Error> {
        self.ensure_index()?;
        let owner = self.owner_of(ip);
        let path = self.dir.join(ip.to_string());
        match fs::remove_file(&path) {
            Ok(()) => self.dirty = true,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("remove", &path, e)),
        }
        if let Some((id, ifname)) = owner {
            let name = hint_name(&id, &ifname);
            let mut ips = self.read_hint(&name);
            ips.retain(|x| *x != ip);
            self.write_hint(&name, &ips)?;
        }
        Ok(())
    }

    /// Releases everything `(id, ifname)` holds; as the reference, falls back to files that
    /// hold only the container ID (written by old plugin versions). Returns what was freed.
    pub fn release_by_id(&mut self, id: &str, ifname: &str) -> Result<Vec<IpAddr>, Error> {
        let mut ips = self.get_by_id(id, ifname)?;
        if ips.is_empty() {
            ips = self.get_by_id(id, "")?;
        }
        for ip in &ips {
            self.release(*ip)?;
        }
        Ok(ips)
    }

    /// Every attachment that holds addresses, from the index.
    pub fn attachments(&mut self) -> Result<Vec<(String, String, Vec<IpAddr>)>, Error> {
        self.ensure_index()?;
        let hints = self.hints_dir();
        let mut out = Vec::new();
        let rd = match fs::read_dir(&hints) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err("read", &hints, e)),
        };
        for entry in rd.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((id, ifname)) = name.split_once('@') else {
                continue;
            };
            let ips = self.read_hint(&name);
            out.push((id.to_string(), ifname.to_string(), ips));
        }
        Ok(out)
    }

    /// Number of address files (allocated addresses) in the store.
    pub fn allocated_count(&self) -> Result<usize, Error> {
        let rd = fs::read_dir(&self.dir).map_err(|e| io_err("read", &self.dir, e))?;
        Ok(rd
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.parse::<IpAddr>().is_ok())
            })
            .count())
    }

    /// Stamps the directory so the next call can trust the index; runs on drop too.
    fn seal(&mut self) -> Result<(), Error> {
        if !self.dirty {
            return Ok(());
        }
        self.dirty = false;
        fs::create_dir_all(&self.index_dir).map_err(|e| io_err("create", &self.index_dir, e))?;
        let mut rnd = [0u8; 4];
        // SAFETY: getrandom writes at most rnd.len() bytes into a valid buffer.
        let _ = unsafe { libc::getrandom(rnd.as_mut_ptr().cast(), rnd.len(), 0) };
        let nsec = (u32::from_ne_bytes(rnd) % 1_000_000_000) as i64;
        let (sec, _) = mtime_of(&self.dir)?;
        let times = [
            libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_OMIT,
            },
            libc::timespec {
                tv_sec: sec as libc::time_t,
                tv_nsec: nsec as _,
            },
        ];
        let c = CString::new(self.dir.as_os_str().as_bytes()).map_err(|_| {
            io_err(
                "stamp",
                &self.dir,
                std::io::Error::from(std::io::ErrorKind::InvalidInput),
            )
        })?;
        // SAFETY: valid NUL-terminated path and a two-element timespec array.
        let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) };
        if rc != 0 {
            return Err(io_err("stamp", &self.dir, std::io::Error::last_os_error()));
        }
        let now = mtime_of(&self.dir)?;
        let stamp = self.stamp_path();
        fs::write(&stamp, format!("{} {}", now.0, now.1)).map_err(|e| io_err("write", &stamp, e))
    }

    /// Ends the session: stamps the index. (Drop does the same, ignoring errors.)
    pub fn close(mut self) -> Result<(), Error> {
        self.seal()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Only on early returns, which already carry an error; `close` reports its own.
        let _ = self.seal();
    }
}
