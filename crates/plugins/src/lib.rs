//! Drop-in CNI plugins (`bridge`, `macvlan`, `host-local`, `static`) and what their
//! binaries share: the plugin table, the start-up of a process that lives for one call,
//! and the name it was called by.
//!
//! Two binaries are built from it: `oxivirt-cni` with the plugins above, and
//! `oxivirt-multus` with the Multus-compatible meta plugin, which runs these plugins
//! in-process when they are its delegates. The meta plugin's Kubernetes client and TLS
//! stack stay out of `oxivirt-cni`: a binary less than half the size starts and exits
//! about a tenth faster, and every pod ADD and DEL pays that.

pub mod bridge;
pub mod firewall;
pub mod iface;
pub mod ipam;
pub mod macvlan;

use oxivirt_cni::plugin;

/// A plugin's command handler.
pub type Handler = fn(plugin::Call<'_>) -> Result<Option<String>, oxivirt_cni::CniError>;

/// The handler of the interface or IPAM plugin called `name`.
pub fn plugin(name: &str) -> Option<Handler> {
    Some(match name {
        "bridge" => bridge::handle,
        "macvlan" => macvlan::handle,
        "host-local" => ipam::host_local_handle,
        "static" => ipam::static_handle,
        _ => return None,
    })
}

/// Start-up for a process that lives for one CNI call, most of it spent in the kernel.
/// The binaries have C entry points: Rust's runtime start (stack-guard discovery through
/// /proc/self/maps, an alternate signal stack) cost about 70 µs a call here; glibc still
/// hands std the arguments.
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
    oxivirt_cni::trace::mark("start");
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
    oxivirt_cni::trace::mark("done");
    let _ = std::io::Write::flush(&mut std::io::stdout());
    code
}
