//! The local terminal's raw mode, restored however the session ends: on drop, on panic
//! (also with `panic = "abort"`, where drop never runs) and on a terminating signal.

use std::cell::UnsafeCell;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, Once};

/// The signals that end a process by default and can reach it with the terminal raw
/// (SIGINT still can: `kill -INT`, even though ^C no longer makes one).
const SIGNALS: [libc::c_int; 4] = [libc::SIGHUP, libc::SIGINT, libc::SIGQUIT, libc::SIGTERM];

/// Terminal settings to put back, readable from a signal handler (no locks there).
struct Saved {
    termios: UnsafeCell<MaybeUninit<libc::termios>>,
    previous: UnsafeCell<MaybeUninit<[libc::sigaction; SIGNALS.len()]>>,
}

// SAFETY: written only while ARMED_FD is -1 (under ENTER, so by one thread), read only
// after ARMED_FD was set with Release and loaded with Acquire.
unsafe impl Sync for Saved {}

static SAVED: Saved = Saved {
    termios: UnsafeCell::new(MaybeUninit::uninit()),
    previous: UnsafeCell::new(MaybeUninit::uninit()),
};
/// The fd in raw mode, or -1.
static ARMED_FD: AtomicI32 = AtomicI32::new(-1);
/// One raw terminal at a time.
static ENTER: Mutex<()> = Mutex::new(());
static PANIC_HOOK: Once = Once::new();

/// Puts the saved settings back if a terminal is in raw mode. Async-signal-safe.
fn restore_armed() {
    let fd = ARMED_FD.swap(-1, Ordering::AcqRel);
    if fd >= 0 {
        // SAFETY: ARMED_FD was set after SAVED.termios was written; tcsetattr is
        // async-signal-safe.
        unsafe {
            libc::tcsetattr(fd, libc::TCSAFLUSH, (*SAVED.termios.get()).as_ptr());
        }
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    restore_armed();
    if let Some(i) = SIGNALS.iter().position(|&s| s == sig) {
        // SAFETY: this handler is installed only after `previous` was written; sigaction
        // and raise are async-signal-safe. The previous action then handles the signal
        // as it would have without us (by default: the process ends).
        unsafe {
            let prev = &(*SAVED.previous.get()).assume_init_ref()[i];
            libc::sigaction(sig, prev, std::ptr::null_mut());
            libc::raise(sig);
        }
    }
}

/// A terminal in raw mode; dropping it restores the settings it found.
#[derive(Debug)]
pub struct RawMode {
    fd: RawFd,
}

impl RawMode {
    /// Raw mode on `fd` if it is a terminal; `None` (and nothing changed) if it is not.
    pub fn enter(fd: RawFd) -> io::Result<Option<Self>> {
        // SAFETY: isatty only inspects the fd.
        if unsafe { libc::isatty(fd) } != 1 {
            return Ok(None);
        }
        let _one = ENTER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if ARMED_FD.load(Ordering::Acquire) >= 0 {
            return Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                "a terminal is already in raw mode",
            ));
        }
        let mut original = MaybeUninit::<libc::termios>::uninit();
        // SAFETY: tcgetattr fills the termios it is given.
        if unsafe { libc::tcgetattr(fd, original.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: initialised by the successful tcgetattr above.
        let original = unsafe { original.assume_init() };

        PANIC_HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore_armed();
                previous(info);
            }));
        });

        // SAFETY: not armed and we hold ENTER, so neither a handler nor another thread
        // reads SAVED now. The sigactions are zeroed then filled by the kernel.
        unsafe {
            (*SAVED.termios.get()).write(original);
            let mut prev: [libc::sigaction; SIGNALS.len()] = std::mem::zeroed();
            let mut ours: libc::sigaction = std::mem::zeroed();
            ours.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut ours.sa_mask);
            for (i, &sig) in SIGNALS.iter().enumerate() {
                libc::sigaction(sig, std::ptr::null(), &mut prev[i]);
            }
            (*SAVED.previous.get()).write(prev);
            for &sig in &SIGNALS {
                libc::sigaction(sig, &ours, std::ptr::null_mut());
            }
        }
        ARMED_FD.store(fd, Ordering::Release);

        let mut raw = original;
        // SAFETY: cfmakeraw edits the struct it is given; tcsetattr reads it.
        let rc = unsafe {
            libc::cfmakeraw(&mut raw);
            libc::tcsetattr(fd, libc::TCSANOW, &raw)
        };
        let this = Self { fd };
        if rc != 0 {
            let e = io::Error::last_os_error();
            drop(this);
            return Err(e);
        }
        Ok(Some(this))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _one = ENTER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Handlers first, so a signal from here on meets the previous action directly.
        // SAFETY: `previous` was written in enter, before this value existed.
        unsafe {
            let prev = (*SAVED.previous.get()).assume_init_ref();
            for (i, &sig) in SIGNALS.iter().enumerate() {
                libc::sigaction(sig, &prev[i], std::ptr::null_mut());
            }
        }
        if ARMED_FD.load(Ordering::Acquire) == self.fd {
            restore_armed();
        }
    }
}
