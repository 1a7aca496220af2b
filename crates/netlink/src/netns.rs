//! Network namespaces, entered on a dedicated OS thread, or by the calling thread for a
//! visit that always ends back home.

use crate::error::{Error, Result};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};

/// Stack for threads that only do namespace work: small, so spawning is cheap.
pub const NS_THREAD_STACK: usize = 256 * 1024;

#[derive(Debug)]
pub struct NetNs {
    file: File,
    path: PathBuf,
}

impl NetNs {
    /// Opens a namespace file (e.g. `/run/netns/x`, `/proc/<pid>/ns/net`) and checks it is one.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let err = |source| Error::Netns {
            path: path.display().to_string(),
            source,
        };
        let file = File::open(&path).map_err(err)?;
        // SAFETY: fstatfs on a valid, owned fd with a zeroed out-struct.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: the fd is valid for the lifetime of `file`; `st` is a valid pointer.
        let rc = unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) };
        if rc != 0 {
            return Err(err(std::io::Error::last_os_error()));
        }
        const NSFS_MAGIC: i64 = 0x6e73_6673;
        const PROC_SUPER_MAGIC: i64 = 0x9fa0;
        #[allow(clippy::unnecessary_cast)]
        let magic = st.f_type as i64;
        if magic != NSFS_MAGIC && magic != PROC_SUPER_MAGIC {
            return Err(err(std::io::Error::other("not a network namespace file")));
        }
        Ok(Self { file, path })
    }

    /// The namespace this process is in.
    pub fn current() -> Result<Self> {
        Self::open("/proc/thread-self/ns/net")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Moves the calling thread into this namespace. Only for a thread made for the purpose
    /// (as [`Self::run`] does): it must run nothing unrelated afterwards.
    ///
    /// A thread already in it stays (no `setns`): a launcher inside its pod on a cluster is
    /// given its own namespace and has no CAP_SYS_ADMIN to enter it again.
    pub fn enter_current_thread(&self) -> Result<()> {
        if self.is_current_thread() {
            return Ok(());
        }
        // SAFETY: setns on a valid namespace fd; it only affects the calling thread.
        let rc = unsafe { libc::setns(self.raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(Error::Netns {
                path: self.path.display().to_string(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// Whether the calling thread is in this namespace (the same namespace file: device
    /// and inode).
    pub fn is_current_thread(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (
            self.file.metadata(),
            std::fs::metadata("/proc/thread-self/ns/net"),
        ) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }

    /// Runs `f` on the calling thread inside this namespace, then moves the thread back to
    /// `home` (the namespace it is in now). For short work, where handing it to another
    /// thread costs more than the work: a wake-up across CPUs is tens of microseconds in a
    /// virtual machine. `f` must not start threads or processes (they would stay behind)
    /// nor panic (an unwinding thread would not come home).
    pub fn visit<T>(&self, home: &NetNs, f: impl FnOnce() -> T) -> Result<T> {
        self.enter_current_thread()?;
        let out = f();
        home.enter_current_thread().map_err(|e| match e {
            Error::Netns { path, source } => Error::NetnsReturn {
                visited: self.path.display().to_string(),
                home: path,
                source,
            },
            other => other,
        })?;
        Ok(out)
    }

    /// Runs `f` on a fresh OS thread that has entered this namespace. The thread ends with
    /// `f`, so no other code ever runs in the wrong namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .stack_size(NS_THREAD_STACK)
                .spawn_scoped(s, move || {
                    self.enter_current_thread()?;
                    Ok(f())
                })
                .map_err(|e| Error::Netns {
                    path: self.path.display().to_string(),
                    source: e,
                })?
                .join()
                .unwrap_or_else(|_| {
                    Err(Error::Netns {
                        path: self.path.display().to_string(),
                        source: std::io::Error::other("thread in namespace panicked"),
                    })
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_namespace_files_open() {
        let e = NetNs::open("/dev/null").expect_err("not a namespace");
        assert!(matches!(e, Error::Netns { .. }), "{e:?}");
        assert_eq!(e.to_string(), "network namespace /dev/null");

        let e = NetNs::open("/run/netns/oxivirt-no-such-namespace").expect_err("missing");
        assert!(e.is_not_found(), "{e:?}");

        let ns = NetNs::current().expect("our own namespace");
        assert_eq!(ns.path(), Path::new("/proc/thread-self/ns/net"));
    }

    #[test]
    fn entering_the_namespace_a_thread_is_in_needs_no_setns() {
        // Unprivileged tests too: no setns happens, so no CAP_SYS_ADMIN is needed.
        let ns = NetNs::open("/proc/self/ns/net").expect("our own namespace");
        assert!(ns.is_current_thread());
        ns.enter_current_thread().expect("already there");
        let v = ns.visit(&ns, || 7).expect("visit");
        assert_eq!(v, 7);
        // A namespace made on another thread is not this thread's (root only).
        let other = std::thread::spawn(|| {
            // SAFETY: unshare on this short-lived thread only, which ends right after.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return None;
            }
            NetNs::current().ok()
        })
        .join()
        .expect("thread");
        match other {
            Some(o) => assert!(!o.is_current_thread()),
            None => eprintln!("SKIP the other half: unshare(CLONE_NEWNET) needs root"),
        }
    }
}
