//! SIGTERM and SIGINT mean "stop the VM gracefully": they are blocked in every thread and
//! taken by one thread with `sigwait`, which hands them to the launcher as plain calls (no
//! work in a signal handler).

use std::io;

/// Blocks SIGTERM and SIGINT in the calling thread, which every thread spawned after this
/// inherits; call it first thing in `main`.
pub fn block() -> io::Result<()> {
    let set = termination_set()?;
    // SAFETY: `set` is a valid, initialised signal set; the old mask is not wanted.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

fn termination_set() -> io::Result<libc::sigset_t> {
    // SAFETY: sigemptyset initialises the set it is given; sigaddset adds valid signals.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        if libc::sigemptyset(&mut set) != 0
            || libc::sigaddset(&mut set, libc::SIGTERM) != 0
            || libc::sigaddset(&mut set, libc::SIGINT) != 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(set)
    }
}

/// Calls `on_signal` with the signal number each time SIGTERM or SIGINT arrives (after
/// [`block`]).
pub fn watch(mut on_signal: impl FnMut(i32) + Send + 'static) -> io::Result<()> {
    let set = termination_set()?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: `set` is valid and `sig` is a valid place for the result.
            if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
                on_signal(sig);
            }
        })?;
    Ok(())
}
