//! The crate's one use of `fork`: a detached process that sends one prepared netlink request
//! on an inherited socket, waits for the kernel's answer, and then may exec a program.
//!
//! It exists because deleting links (veths above all) waits in the kernel for RCU grace
//! periods, 15–25 ms per batch, long after the links stopped mattering. A CNI DEL or a VM
//! teardown hands that wait to a grandchild in its own session (reparented to init, so
//! nobody has to reap it) and returns at once; see [`crate::Handle::retire_links`].
//!
//! Why forking is sound even from a multi-threaded caller: everything the children touch
//! (the encoded request, the program's path and argv and the pointer array) is built
//! before the fork, and after it the children make only async-signal-safe calls (`setsid`,
//! `fork`, `close`, `send`, `recv`, `execv`, `_exit`) and never return into Rust code, so
//! no lock another thread held at fork time (the allocator's, stdio's) is ever needed.

use std::ffi::CString;
use std::os::fd::RawFd;

/// Whether a detached process would outlive this one. Not when this is the first process
/// of its PID namespace (a container's init, as the launcher is in its pod): when it
/// exits, the kernel kills everything else in the namespace, a grandchild mid-way too.
pub fn outlives_us() -> bool {
    std::process::id() != 1
}

/// A program the detached process runs after its request (see
/// [`crate::Handle::retire_links`]), resolved up front because the child may not allocate.
#[derive(Debug, Clone)]
pub struct Detached {
    pub path: CString,
    pub argv: Vec<CString>,
}

impl Detached {
    /// Runs the program here and waits for it (where nothing detached outlives us).
    pub fn run_here(&self) -> std::io::Result<std::process::ExitStatus> {
        use std::os::unix::ffi::OsStrExt as _;
        let path = std::ffi::OsStr::from_bytes(self.path.as_bytes());
        let args = self
            .argv
            .iter()
            .skip(1)
            .map(|a| std::ffi::OsStr::from_bytes(a.as_bytes()));
        std::process::Command::new(path).args(args).status()
    }

    /// `program` found in PATH now (not after fork), with `args`.
    pub fn program(program: &str, args: &[&str]) -> Option<Self> {
        let path = std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(program))
                .find(|p| p.is_file())
        })?;
        let path = CString::new(path.into_os_string().into_encoded_bytes()).ok()?;
        let mut argv = vec![CString::new(program).ok()?];
        for a in args {
            argv.push(CString::new(*a).ok()?);
        }
        Some(Self { path, argv })
    }
}

/// Starts the detached grandchild: it sends `request` (if not empty) on `socket`, reads the
/// acknowledgement, then execs `then` (if any). Waits only for the intermediate child, which
/// exits at once. An error means the first fork failed and nothing was sent.
pub(crate) fn spawn(socket: RawFd, request: &[u8], then: Option<&Detached>) -> std::io::Result<()> {
    let argv: Vec<*const libc::c_char> = then
        .map(|d| {
            d.argv
                .iter()
                .map(|a| a.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect()
        })
        .unwrap_or_default();
    // SAFETY: after fork only async-signal-safe calls run in the children (setsid, fork,
    // close, send, recv, execv, _exit), on memory prepared before the fork (`request`,
    // `then`'s C strings, `argv`, which ends in a null pointer), and both children end in
    // execv or _exit without returning.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            libc::setsid();
            if libc::fork() == 0 {
                for std_fd in 0..3 {
                    libc::close(std_fd);
                }
                if !request.is_empty() {
                    libc::send(socket, request.as_ptr().cast(), request.len(), 0);
                    let mut ack = [0u8; 256];
                    libc::recv(socket, ack.as_mut_ptr().cast(), ack.len(), 0);
                }
                if let Some(d) = then {
                    libc::execv(d.path.as_ptr(), argv.as_ptr());
                }
            }
            libc::_exit(0);
        }
        if pid < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixDatagram;
    use std::time::{Duration, Instant};

    #[test]
    fn program_is_resolved_in_path_with_its_name_as_argv0() {
        let d = Detached::program("sh", &["-c", "true"]).expect("sh in PATH");
        assert!(d.path.to_bytes().ends_with(b"/sh"), "{:?}", d.path);
        let argv: Vec<&[u8]> = d.argv.iter().map(|a| a.to_bytes()).collect();
        assert_eq!(argv, [&b"sh"[..], b"-c", b"true"]);
        assert!(Detached::program("no-such-program-oxivirt", &[]).is_none());
        assert!(Detached::program("sh", &["nul\0inside"]).is_none());
    }

    /// The grandchild sends the request, waits for the answer, and only then runs the
    /// program: a socketpair stands in for the kernel.
    #[test]
    fn sends_waits_for_the_answer_then_runs_the_program() {
        let dir = std::env::temp_dir().join(format!("oxivirt-detach-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let marker = dir.join("ran");
        let script = format!("touch {}", marker.display());
        let then = Detached::program("sh", &["-c", &script]).expect("sh in PATH");
        let (ours, kernel) = UnixDatagram::pair().expect("socketpair");

        spawn(ours.as_raw_fd(), b"request", Some(&then)).expect("fork");
        let mut buf = [0u8; 64];
        kernel
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let n = kernel.recv(&mut buf).expect("the request arrives");
        assert_eq!(&buf[..n], b"request");
        std::thread::sleep(Duration::from_millis(50));
        assert!(!marker.exists(), "ran before the answer");

        kernel.send(b"ack").expect("answer");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !marker.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let ran = marker.exists();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(ran, "the program did not run");
    }
}
