//! The start-up and end of a process that lives for one CNI call (both plugin binaries).
//!
//! The binaries have C entry points: Rust's runtime start (stack-guard discovery through
//! /proc/self/maps, an alternate signal stack) cost about 70 µs a call here; glibc still
//! hands std the arguments.

/// Start-up for a process that lives for one CNI call, most of it spent in the kernel.
///
/// SIGPIPE is ignored (as Rust's runtime would do) so that a delegate that exits without
/// reading its stdin makes a write fail instead of killing us.
pub fn start_up() {
    // SAFETY: setting a signal's disposition to ignore, before any other thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // The helper threads of one short call share the main heap: a per-thread arena costs a
    // 64 MiB reservation, its trimming and its unmapping at exit, for a few small allocations.
    // SAFETY: mallopt only tunes the allocator; no other thread exists yet.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    crate::trace::mark("start");
}

/// The plugin name the process was called by: the file name of `argv[0]` (a link named
/// after the plugin), or the first argument when called by the binary's own `name`; and
/// the remaining arguments.
pub fn called_as(name: &str) -> (String, std::env::Args) {
    let mut args = std::env::args();
    let argv0 = args.next().unwrap_or_default();
    let called = std::path::Path::new(&argv0)
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    if called == name {
        (args.next().unwrap_or_default(), args)
    } else {
        (called, args)
    }
}

/// The end of a call: returning from a C `main` runs C's exit, which knows nothing of
/// Rust's buffered stdout.
pub fn finish(code: i32) -> i32 {
    crate::trace::mark("done");
    let _ = std::io::Write::flush(&mut std::io::stdout());
    code
}
