//! Named network namespaces as `ip netns` makes them: a bind mount of a namespace on
//! `/run/netns/<name>`, so it lives on without any process in it (the launcher and the CNI
//! plugins enter it by path).

use crate::error::{Error, Result};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

pub const NETNS_DIR: &str = "/run/netns";
/// The prefix of the namespaces this runtime makes (`oxv-<12 of the pod uid>`).
pub const PREFIX: &str = "oxv-";

/// The namespace of the pod with `uid`.
pub fn path_for(uid: &str) -> PathBuf {
    let short: String = uid.chars().filter(|c| *c != '-').take(12).collect();
    Path::new(NETNS_DIR).join(format!("{PREFIX}{short}"))
}

fn cstr(p: &Path) -> std::io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other)
}

fn check(rc: libc::c_int) -> std::io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Makes `/run/netns` a shared mount point, as iproute2 does, so a namespace mounted there
/// is seen by every mount namespace that has the directory.
fn prepare_dir() -> std::io::Result<()> {
    let dir = Path::new(NETNS_DIR);
    std::fs::create_dir_all(dir)?;
    let c = cstr(dir)?;
    let shared = |c: &CString| {
        // SAFETY: a valid C string; null source, type and data are allowed for a
        // propagation change.
        check(unsafe {
            libc::mount(
                std::ptr::null(),
                c.as_ptr(),
                std::ptr::null(),
                libc::MS_SHARED | libc::MS_REC,
                std::ptr::null(),
            )
        })
    };
    match shared(&c) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            // Not a mount point yet: bind it on itself first.
            // SAFETY: valid C strings for source and target; null type and data.
            check(unsafe {
                libc::mount(
                    c.as_ptr(),
                    c.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                )
            })?;
            shared(&c)
        }
        Err(e) => Err(e),
    }
}

/// Creates the named namespace at `path` with loopback up; an existing one is kept (a
/// retry after a crash finds it).
pub fn create(path: &Path) -> Result<()> {
    let err = |what: &'static str| {
        let path = path.to_path_buf();
        move |source| Error::Netns { path, what, source }
    };
    if is_mounted_ns(path) {
        return Ok(());
    }
    prepare_dir().map_err(err("prepare /run/netns"))?;
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(err("create the mount point"))?;
    let target = cstr(path).map_err(err("path"))?;
    // unshare changes the calling thread only: a thread of its own does it and ends, so no
    // thread of the daemon's runtime ever moves.
    let made = std::thread::scope(|s| {
        s.spawn(
            || -> std::result::Result<(), (&'static str, std::io::Error)> {
                // SAFETY: unshare of the network namespace affects only this thread, which ends
                // right after.
                check(unsafe { libc::unshare(libc::CLONE_NEWNET) }).map_err(|e| ("unshare", e))?;
                let me = cstr(Path::new("/proc/thread-self/ns/net")).map_err(|e| ("path", e))?;
                // SAFETY: valid C strings for source and target; null type and data.
                check(unsafe {
                    libc::mount(
                        me.as_ptr(),
                        target.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    )
                })
                .map_err(|e| ("bind-mount", e))?;
                loopback_up().map_err(|e| ("loopback up", std::io::Error::other(e)))
            },
        )
        .join()
    });
    let result = match made {
        Ok(r) => r,
        Err(_) => Err((
            "thread",
            std::io::Error::other("the namespace thread panicked"),
        )),
    };
    if let Err((what, source)) = result {
        let _ = delete(path);
        return Err(Error::Netns {
            path: path.to_path_buf(),
            what,
            source,
        });
    }
    Ok(())
}

fn loopback_up() -> Result<(), oxivirt_netlink::Error> {
    let mut h = oxivirt_netlink::Handle::new()?;
    let lo = h.require_link("lo")?;
    h.set_up(lo.index, true)
}

/// Whether `path` is a namespace bind mount (a network namespace file system's inode).
fn is_mounted_ns(path: &Path) -> bool {
    let Ok(c) = cstr(path) else { return false };
    // SAFETY: statfs into a zeroed struct the call fills; a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    // NSFS_MAGIC: the file is a namespace, i.e. the bind mount is in place.
    rc == 0 && st.f_type as i64 == 0x6e73_6673
}

/// Removes the namespace as `ip netns del` does (lazy unmount, then the file); none is fine.
pub fn delete(path: &Path) -> Result<()> {
    let err = |what: &'static str| {
        let path = path.to_path_buf();
        move |source| Error::Netns { path, what, source }
    };
    let c = cstr(path).map_err(err("path"))?;
    // SAFETY: a valid C string; EINVAL (not mounted) and ENOENT are expected and ignored.
    let _ = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(err("remove")(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_take_twelve_of_the_uid() {
        assert_eq!(
            path_for("6f2c1a4e-9d7b-4c1e-8a2b-123456789abc"),
            PathBuf::from("/run/netns/oxv-6f2c1a4e9d7b")
        );
    }
}
