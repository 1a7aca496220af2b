//! Nothing left behind. Every network namespace, directory and child process group that a
//! test or the bench makes is registered here for as long as it exists; SIGINT, SIGTERM and
//! SIGHUP remove all of it before the process exits with 128 + signo. What a process killed
//! outright (SIGKILL) left behind is removed by the next process's [`sweep`].
//!
//! Names carry their owner: `<prefix>_<pid in base 36>_<counter in base 36>` (see
//! [`unique`]), which keeps link names within 15 bytes for a prefix of up to 5. A pid alone
//! cannot tell a dead owner from a new process that got the same pid, so every owner also
//! holds an exclusive `flock` on `<owner dir>/<pid>` (`/run/oxivirt-testkit` as root) for
//! its whole life: the kernel drops the lock however the process ends, pid reuse or not,
//! and a sweep that can take the lock knows the owner is gone. A sweep never touches a name
//! without our tag, and a process counts as alive whenever in doubt.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError, RwLock, RwLockReadGuard, TryLockError};
use std::time::{Duration, Instant};

/// Where named network namespaces live.
pub const NETNS_DIR: &str = "/run/netns";
/// Only tagged names with these prefixes are ever swept: ours, never a stranger's.
const NETNS_PREFIX: &str = "ox";
const PATH_PREFIX: &str = "oxivirt-";

static COUNTER: AtomicU32 = AtomicU32::new(0);
static INIT: OnceLock<()> = OnceLock::new();
static OWNER_LOCK: OnceLock<Option<(File, PathBuf)>> = OnceLock::new();
static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

/// What a process has made and not yet removed, by registration number (oldest first).
static REGISTRY: Mutex<BTreeMap<u64, Entry>> = Mutex::new(BTreeMap::new());
static NEXT_ID: AtomicU32 = AtomicU32::new(0);
/// Held shared while something is made and registered, and exclusively (for good) once a
/// signal arrived: cleanup waits for creations in flight, and none can start after it.
static GATE: RwLock<()> = RwLock::new(());

#[derive(Debug)]
enum Entry {
    Netns(String),
    Path(PathBuf),
    /// A child spawned in its own process group; the pidfd (where the kernel has them)
    /// makes sure a signal meant for it never reaches a later process with its pid.
    Group {
        pidfd: Option<OwnedFd>,
        pgid: i32,
    },
}

/// What [`hold`] registers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Held {
    /// A named network namespace in [`NETNS_DIR`].
    Netns(String),
    /// A file or directory tree.
    Path(PathBuf),
}

/// Keeps an item registered; dropping it deregisters (after the owner removed the item).
#[derive(Debug)]
#[must_use = "the item is deregistered when this is dropped"]
pub struct Registration {
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        registry().remove(&self.id);
    }
}

fn registry() -> MutexGuard<'static, BTreeMap<u64, Entry>> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

fn register(entry: Entry) -> Registration {
    let id = u64::from(NEXT_ID.fetch_add(1, Ordering::Relaxed));
    registry().insert(id, entry);
    Registration { id }
}

/// Blocks for good once cleanup has begun (the process is about to exit).
fn gate() -> RwLockReadGuard<'static, ()> {
    GATE.read().unwrap_or_else(PoisonError::into_inner)
}

/// A name unique across threads and live processes, tagged with this process as its owner:
/// `<prefix>_<pid>_<n>`, pid and n in base 36 (at most 10 bytes after the prefix for any
/// pid up to 2^22 and the first 46,656 names).
pub fn unique(prefix: &str) -> String {
    init();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{}_{}", base36(std::process::id()), base36(n))
}

fn base36(mut v: u32) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(char::from_digit(v % 36, 36).unwrap_or('0'));
        v /= 36;
        if v == 0 {
            break;
        }
    }
    digits.iter().rev().collect()
}

/// The owner pid of a name made by [`unique`], `None` for any other name.
pub fn owner_of(name: &str) -> Option<u32> {
    let mut fields = name.rsplitn(3, '_');
    let (n, pid, prefix) = (fields.next()?, fields.next()?, fields.next()?);
    let base36 = |s: &str| {
        !s.is_empty()
            && s.len() <= 7
            && s.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    };
    if prefix.is_empty() || !base36(n) || !base36(pid) {
        return None;
    }
    u32::from_str_radix(pid, 36).ok().filter(|&p| p > 0)
}

/// Once per process, before the first tagged name: takes the owner lock, sweeps what dead
/// owners left, and installs the signal handling.
pub fn init() {
    INIT.get_or_init(|| {
        OWNER_LOCK.get_or_init(|| match lock_owner() {
            Ok(held) => Some(held),
            Err(e) => {
                // Sweeps then fall back to /proc/<pid>: live names are still kept.
                eprintln!("oxivirt-testkit: no owner lock: {e}");
                None
            }
        });
        sweep_now();
        if let Err(e) = install_signal_handling() {
            eprintln!("oxivirt-testkit: cleanup on signals not installed: {e}");
        }
    });
}

fn owner_dir() -> PathBuf {
    match sys::euid() {
        0 => PathBuf::from("/run/oxivirt-testkit"),
        uid => std::env::temp_dir().join(format!("oxivirt-testkit-{uid}")),
    }
}

fn lock_owner() -> io::Result<(File, PathBuf)> {
    let dir = owner_dir();
    fs::create_dir_all(&dir)?;
    let path = dir.join(std::process::id().to_string());
    loop {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        sys::flock(&file, libc::LOCK_EX)?;
        // A sweep that found an earlier owner with our pid dead unlinks its file while
        // holding its lock; the lock that counts is on the file at the path.
        if same_file(&file, &path) {
            return Ok((file, path));
        }
    }
}

fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Makes something with `create` and keeps it registered until the returned
/// [`Registration`] is dropped. It is registered before it exists, so a signal in between
/// still removes it; if `create` fails, whatever part of it exists is removed.
pub fn hold<T>(
    what: Held,
    create: impl FnOnce() -> io::Result<T>,
) -> io::Result<(T, Registration)> {
    init();
    let _gate = gate();
    let reg = register(match &what {
        Held::Netns(name) => Entry::Netns(name.clone()),
        Held::Path(path) => Entry::Path(path.clone()),
    });
    match create() {
        Ok(v) => Ok((v, reg)),
        Err(e) => {
            let _ = remove(&what);
            Err(e)
        }
    }
}

fn remove(what: &Held) -> io::Result<()> {
    match what {
        Held::Netns(name) => delete_netns(name),
        Held::Path(path) => remove_path(path),
    }
}

fn remove_path(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    }
}

/// Deletes a named network namespace as `ip netns del` does: detach its bind mount, then
/// remove the file. Processes still inside keep the namespace itself until they exit.
pub fn delete_netns(name: &str) -> io::Result<()> {
    let path = Path::new(NETNS_DIR).join(name);
    // EINVAL: not mounted (a half-made namespace); the file goes all the same.
    let _ = sys::umount_detach(&path);
    fs::remove_file(&path)
}

/// Spawns `cmd` in a process group of its own, registered: on a signal the whole group
/// (the plugin and anything it runs) is killed before the files it writes are removed.
pub fn spawn(cmd: &mut Command) -> io::Result<(Child, Registration)> {
    init();
    let _gate = gate();
    let child = cmd.process_group(0).spawn()?;
    let pid = i32::try_from(child.id()).map_err(io::Error::other)?;
    // Not reaped yet (only the caller waits), so the pid is still this child's.
    let pidfd = sys::pidfd_open(pid).ok();
    Ok((child, register(Entry::Group { pidfd, pgid: pid })))
}

/// Registers the process group led by `pgid`, a live process this one did not spawn (a
/// launcher that `oxivirtd` started in a session of its own): killed on a signal like the
/// groups of [`spawn`]. The pidfd is taken here, so a leader that already ended (and whose
/// pid may be reused) is never signalled.
pub fn adopt_group(pgid: i32) -> io::Result<Registration> {
    init();
    let _gate = gate();
    let pidfd = sys::pidfd_open(pgid)?;
    Ok(register(Entry::Group {
        pidfd: Some(pidfd),
        pgid,
    }))
}

/// A directory `<base>/oxivirt-<what>_<pid>_<n>`, registered, removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
    _held: Registration,
}

impl TempDir {
    /// In [`std::env::temp_dir`].
    pub fn new(what: &str) -> io::Result<Self> {
        Self::new_in(&std::env::temp_dir(), what)
    }

    /// In `base`; the sweep looks in the temp dir, /dev/shm and /run.
    pub fn new_in(base: &Path, what: &str) -> io::Result<Self> {
        let path = base.join(unique(&format!("{PATH_PREFIX}{what}")));
        let ((), held) = hold(Held::Path(path.clone()), || fs::create_dir(&path))?;
        Ok(Self { path, _held: held })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// What a sweep removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    pub netns: Vec<String>,
    pub paths: Vec<PathBuf>,
}

/// Removes the tagged namespaces and files whose owner is gone: another process whose
/// owner lock can be taken (or, without an owner file, whose pid does not exist), or this
/// process for what it no longer has registered (an earlier process with the same pid).
pub fn sweep() -> Swept {
    init();
    sweep_now()
}

fn path_roots() -> [PathBuf; 3] {
    [
        std::env::temp_dir(),
        PathBuf::from("/dev/shm"),
        PathBuf::from("/run"),
    ]
}

fn sweep_now() -> Swept {
    let names_in = |dir: &Path, prefix: &str| -> Vec<String> {
        fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| n.starts_with(prefix) && owner_of(n).is_some())
                    .collect()
            })
            .unwrap_or_default()
    };
    // Listed first, compared with the registry after: what exists was registered before
    // it was made, so a listed name of ours missing from the registry is stale.
    let netns = names_in(Path::new(NETNS_DIR), NETNS_PREFIX);
    let paths: Vec<PathBuf> = path_roots()
        .iter()
        .flat_map(|root| {
            names_in(root, PATH_PREFIX)
                .into_iter()
                .map(move |n| root.join(n))
        })
        .collect();
    let owner_files: Vec<u32> = fs::read_dir(owner_dir())
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let mine: HashSet<Held> = registry()
        .values()
        .filter_map(|e| match e {
            Entry::Netns(n) => Some(Held::Netns(n.clone())),
            Entry::Path(p) => Some(Held::Path(p.clone())),
            Entry::Group { .. } => None,
        })
        .collect();
    let me = std::process::id();
    let mut owners: HashMap<u32, Owner> = HashMap::new();
    let mut dead = |pid: u32| owners.entry(pid).or_insert_with(|| probe(pid)).is_dead();
    let mut swept = Swept::default();
    let found = netns
        .into_iter()
        .map(Held::Netns)
        .chain(paths.into_iter().map(Held::Path));
    for held in found {
        let name = match &held {
            Held::Netns(n) => n.clone(),
            Held::Path(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let Some(pid) = owner_of(&name) else { continue };
        let stale = if pid == me {
            !mine.contains(&held)
        } else {
            dead(pid)
        };
        if stale && remove(&held).is_ok() {
            match held {
                Held::Netns(n) => swept.netns.push(n),
                Held::Path(p) => swept.paths.push(p),
            }
        }
    }
    for pid in owner_files {
        if pid != me {
            dead(pid);
        }
    }
    // The dead owners' files go last, while their locks are still held by us: a new process
    // with the same pid waits for them and then makes a fresh file.
    for owner in owners.into_values() {
        if let Owner::Dead(Some((file, path))) = owner {
            if same_file(&file, &path) {
                let _ = fs::remove_file(&path);
            }
        }
    }
    swept
}

enum Owner {
    Alive,
    /// With the dead owner's file and its lock, when it had one.
    Dead(Option<(File, PathBuf)>),
}

impl Owner {
    fn is_dead(&self) -> bool {
        matches!(self, Owner::Dead(_))
    }
}

fn probe(pid: u32) -> Owner {
    let path = owner_dir().join(pid.to_string());
    loop {
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // No owner file (it could not be made, or its owner ran as another user):
                // only a pid that does not exist is surely gone.
                return if Path::new(&format!("/proc/{pid}")).exists() {
                    Owner::Alive
                } else {
                    Owner::Dead(None)
                };
            }
            Err(_) => return Owner::Alive,
        };
        match sys::try_lock(&file) {
            // Taken while still at the path: the owner is gone.
            Ok(true) if same_file(&file, &path) => return Owner::Dead(Some((file, path))),
            // Replaced meanwhile: look at the new one.
            Ok(true) => continue,
            Ok(false) | Err(_) => return Owner::Alive,
        }
    }
}

/// Whether a signal has started the cleanup (the process is about to exit).
pub fn interrupted() -> bool {
    SHUTTING_DOWN.load(Ordering::SeqCst)
}

/// Waits for the signal thread to finish cleaning up and end the process; for a main
/// thread whose work failed because the cleanup removed things under it.
pub fn await_exit() -> ! {
    loop {
        std::thread::park();
    }
}

fn install_signal_handling() -> io::Result<()> {
    let (rx, tx) = sys::pipe()?;
    std::thread::Builder::new()
        .name("oxivirt-cleanup".into())
        .spawn(move || {
            let mut rx = File::from(rx);
            let mut signo = [0u8];
            loop {
                match rx.read(&mut signo) {
                    Ok(1) => shut_down(i32::from(signo[0])),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    _ => return,
                }
            }
        })?;
    sys::install_handlers(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP], tx)
}

/// On the signal thread: removes everything registered, newest first, and exits.
fn shut_down(signo: i32) -> ! {
    SHUTTING_DOWN.store(true, Ordering::SeqCst);
    // Let creations in flight register (a stuck one must not keep the process alive).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match GATE.try_write() {
            Ok(g) => break std::mem::forget(g),
            Err(TryLockError::Poisoned(p)) => break std::mem::forget(p.into_inner()),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(TryLockError::WouldBlock) => break,
        }
    }
    let entries: Vec<Entry> = std::mem::take(&mut *registry())
        .into_values()
        .rev()
        .collect();
    let mut failures = Vec::new();
    // Processes first: a plugin still running would write into what is removed next.
    let groups: Vec<i32> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Group { pidfd, pgid } => {
                let leader_alive = pidfd
                    .as_ref()
                    .is_none_or(|fd| sys::pidfd_kill(fd, libc::SIGKILL).is_ok());
                // The leader unreaped keeps the group id from being reused.
                leader_alive.then(|| {
                    let _ = sys::kill_group(*pgid, libc::SIGKILL);
                    *pgid
                })
            }
            _ => None,
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(2);
    while groups.iter().any(|&g| group_running(g)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    let (mut netns, mut paths) = (0, 0);
    for e in &entries {
        let done = match e {
            Entry::Netns(name) => delete_netns(name).map(|()| netns += 1),
            Entry::Path(path) => remove_path(path).map(|()| paths += 1),
            Entry::Group { .. } => continue,
        };
        match done {
            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                failures.push(format!("{e:?}: {err}"));
            }
            _ => {}
        }
    }
    if let Some(Some((_, path))) = OWNER_LOCK.get() {
        let _ = fs::remove_file(path);
    }
    let name = match signo {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "signal",
    };
    let mut msg = format!(
        "oxivirt-testkit: {name}: removed {netns} namespaces, {paths} files and directories, stopped {} process groups\n",
        groups.len()
    );
    for f in failures {
        msg.push_str(&format!("oxivirt-testkit: not removed: {f}\n"));
    }
    let _ = io::stderr().write_all(msg.as_bytes());
    sys::exit_now(128 + signo)
}

/// Whether any process of group `pgid` still runs. Zombies do not count: a leader nobody
/// reaps (the caller's thread may be gone) stays one until the process exits.
fn group_running(pgid: i32) -> bool {
    let Ok(procs) = fs::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|p| {
        let Ok(stat) = fs::read_to_string(p.path().join("stat")) else {
            return false;
        };
        // After the command name in parentheses: state, ppid, pgrp.
        let mut fields = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .unwrap_or("")
            .split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|g| g.parse::<i32>().ok());
        pgrp == Some(pgid) && state != Some("Z") && state != Some("X")
    })
}

/// Every libc call of the module, each with the reason it is sound.
mod sys {
    use std::fs::File;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

    /// The signal pipe's write end, for the handler (-1 until installed).
    static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
    static SIGNALLED: AtomicBool = AtomicBool::new(false);

    fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    }

    pub fn euid() -> u32 {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() }
    }

    pub fn flock(f: &File, op: libc::c_int) -> io::Result<()> {
        loop {
            // SAFETY: flock on an open descriptor we own.
            match check(unsafe { libc::flock(f.as_raw_fd(), op) }.into()) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r.map(drop),
            }
        }
    }

    /// Takes an exclusive lock without waiting; `false` when someone holds it.
    pub fn try_lock(f: &File) -> io::Result<bool> {
        match flock(f, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn umount_detach(path: &Path) -> io::Result<()> {
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
        // SAFETY: a valid NUL-terminated path; MNT_DETACH has no other requirements.
        check(unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) }.into()).map(drop)
    }

    pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
        let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
        let fd = i32::try_from(fd).map_err(io::Error::other)?;
        // SAFETY: the kernel just returned this descriptor; nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    pub fn pidfd_kill(fd: &OwnedFd, sig: libc::c_int) -> io::Result<()> {
        let none: *const libc::siginfo_t = std::ptr::null();
        // SAFETY: a pidfd we own; a null siginfo means "as kill(2) would send it".
        check(unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), sig, none, 0) })
            .map(drop)
    }

    pub fn kill_group(pgid: i32, sig: libc::c_int) -> io::Result<()> {
        if pgid <= 1 {
            // -1 and -0 would mean "everyone" and "our own group".
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // SAFETY: kill has no memory-safety preconditions.
        check(unsafe { libc::kill(-pgid, sig) }.into()).map(drop)
    }

    /// The signal pipe: a blocking read end for the cleanup thread, a non-blocking write end
    /// so the handler never waits.
    pub fn pipe() -> io::Result<(OwnedFd, i32)> {
        let mut fds = [0; 2];
        // SAFETY: fds has room for the two descriptors pipe2 writes.
        check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }.into())?;
        // SAFETY: both descriptors are new and ours.
        let (rx, tx) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on a descriptor we own.
        check(unsafe { libc::fcntl(tx.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) }.into())?;
        // The write end lives as long as the process: the handler may fire at any time.
        Ok((rx, tx.into_raw_fd()))
    }

    extern "C" fn on_signal(signo: libc::c_int) {
        if SIGNALLED.swap(true, Ordering::SeqCst) {
            // A second signal while cleaning up: stop waiting and die as it says.
            // SAFETY: signal and raise are async-signal-safe.
            unsafe {
                libc::signal(signo, libc::SIG_DFL);
                libc::raise(signo);
            }
            return;
        }
        let byte = signo as u8;
        // SAFETY: only async-signal-safe calls (write); errno is restored for the code the
        // signal interrupted.
        unsafe {
            let errno = libc::__errno_location();
            let saved = *errno;
            libc::write(
                WAKE_FD.load(Ordering::SeqCst),
                std::ptr::from_ref(&byte).cast(),
                1,
            );
            *errno = saved;
        }
    }

    /// Installs the handler for `signals`, except where the signal is ignored (a background
    /// job's SIGINT stays ignored).
    pub fn install_handlers(signals: &[libc::c_int], wake_fd: i32) -> io::Result<()> {
        WAKE_FD.store(wake_fd, Ordering::SeqCst);
        for &sig in signals {
            // SAFETY: zeroed sigaction structs are valid in- and out-parameters; the handler
            // only does async-signal-safe work.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                check(libc::sigaction(sig, std::ptr::null(), &mut old).into())?;
                if old.sa_sigaction == libc::SIG_IGN {
                    continue;
                }
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
                sa.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                check(libc::sigaction(sig, &sa, std::ptr::null_mut()).into())?;
            }
        }
        Ok(())
    }

    pub fn exit_now(code: i32) -> ! {
        // SAFETY: _exit ends the process at once; the other threads are not to run on
        // (they may be blocked for good on the cleanup gate).
        unsafe { libc::_exit(code) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_owner() {
        let name = unique("oxt");
        assert_eq!(owner_of(&name), Some(std::process::id()));
        assert!(name.len() <= 15, "{name}");
        assert_eq!(base36(4_194_304).len(), 5);
        assert_eq!(
            owner_of("oxbm_2ickg_zz"),
            u32::from_str_radix("2ickg", 36).ok()
        );
        // Names of the earlier schemes and strangers' names are never ours.
        for other in [
            "oxn1a2b30",
            "oxbm-1234-0-1",
            "oxivirt-bench-1234-0",
            "_1_2",
            "ox_A_1",
            "ox__1",
        ] {
            assert_eq!(owner_of(other), None, "{other}");
        }
    }
}

/// A child in a process group of its own (see [`spawn`]) that takes its whole group with
/// it when dropped, also when the test fails half-way: what it started (QEMU under a
/// launcher) must not outlive the test.
#[derive(Debug)]
pub struct OwnedChild {
    pub child: Child,
    _reg: Registration,
}

impl OwnedChild {
    pub fn spawn(cmd: &mut Command) -> io::Result<Self> {
        let (child, reg) = spawn(cmd)?;
        Ok(Self { child, _reg: reg })
    }
}

impl Drop for OwnedChild {
    fn drop(&mut self) {
        // Once reaped, the group id may belong to someone else: only a live (or unreaped)
        // leader's group is killed.
        if matches!(self.child.try_wait(), Ok(None)) {
            if let Ok(pgid) = i32::try_from(self.child.id()) {
                // SAFETY: kill on our own child's process group, whose leader is not reaped.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
            }
            let _ = self.child.wait();
        }
    }
}
