//! `oxivirt-cni`: one binary for every plugin, chosen by the name it is called by
//! (`bridge`, `macvlan`, `host-local`, `static` links to it) or by its first argument.
//! One binary keeps the page cache warm across plugins and the install to one file.

// The unit-test build keeps the test harness's own `main`; without ours, nothing there
// calls the dispatch below.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code))]

mod bridge;
mod firewall;
mod iface;
mod ipam;
mod macvlan;
mod multus;

use oxivirt_cni::plugin;

/// A plugin's command handler.
type Handler = fn(plugin::Call<'_>) -> Result<Option<String>, oxivirt_cni::CniError>;

/// The plugin handler for `name`, if this binary has it.
fn handler(name: &str) -> Option<Handler> {
    Some(match name {
        "bridge" => bridge::handle,
        "macvlan" => macvlan::handle,
        "host-local" => ipam::host_local_handle,
        "static" => ipam::static_handle,
        "multus" => multus::handle,
        _ => return None,
    })
}

/// Runs a delegate inside this process when the file the meta plugin found is this binary
/// (a link to it): the same code as exec'ing it, one process start less per delegate.
fn in_process(
    plugin_path: &std::path::Path,
    cmd: oxivirt_cni::Command,
    args: &oxivirt_cni::exec::ExecArgs<'_>,
    stdin: &[u8],
) -> Option<Result<Vec<u8>, oxivirt_cni::CniError>> {
    let me = std::fs::canonicalize("/proc/self/exe").ok()?;
    if std::fs::canonicalize(plugin_path).ok()? != me {
        return None;
    }
    let name = plugin_path.file_name()?.to_str()?;
    let handle = handler(name).filter(|_| name != "multus")?;
    let netns = args.netns.map(|p| p.display().to_string());
    let lookup = |k: &str| -> Option<String> {
        match k {
            "CNI_COMMAND" => Some(cmd.as_str().to_string()),
            "CNI_CONTAINERID" => args.container_id.map(str::to_string),
            "CNI_NETNS" => netns.clone(),
            "CNI_IFNAME" => args.ifname.map(str::to_string),
            "CNI_ARGS" => args.args.map(str::to_string),
            "CNI_PATH" => args.path.map(str::to_string),
            _ => None,
        }
    };
    let env = match oxivirt_cni::Environment::from_lookup(lookup) {
        Ok(e) => e,
        Err(e) => return Some(Err(e)),
    };
    Some(handle(plugin::Call { env: &env, stdin }).map(|out| out.unwrap_or_default().into_bytes()))
}

/// Start-up for a process that lives for one CNI call, most of it spent in the kernel.
///
/// SIGPIPE is ignored (as Rust's runtime, skipped here, would do) so that a delegate that
/// exits without reading its stdin makes a write fail instead of killing us.
fn start_up() {
    // SAFETY: setting a signal's disposition to ignore, before any other thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // The helper threads of one short call share the main heap: a per-thread arena costs a
    // 64 MiB reservation, its trimming and its unmapping at exit, for a few small allocations.
    // SAFETY: mallopt only tunes the allocator; no other thread exists yet.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
}

/// The C entry point: Rust's runtime start (stack-guard discovery through
/// /proc/self/maps, an alternate signal stack) cost about 70 µs a call here, so this
/// binary does without it (`no_main`); glibc still hands std the arguments.
#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    start_up();
    oxivirt_cni::trace::mark("start");
    let mut args = std::env::args();
    let argv0 = args.next().unwrap_or_default();
    let called = std::path::Path::new(&argv0)
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    let name = if called == "oxivirt-cni" {
        args.next().unwrap_or_default()
    } else {
        called
    };
    let code = match (name.as_str(), handler(&name)) {
        (_, Some(h)) => plugin::run(h),
        ("multus-autoconf", None) => multus::autoconf_command(args.collect()),
        (other, None) => {
            eprintln!(
                "oxivirt-cni: unknown plugin {other:?}: call as bridge, macvlan, host-local, static or multus \
                 (a link with that name, or `oxivirt-cni <plugin>`)"
            );
            2
        }
    };
    oxivirt_cni::trace::mark("done");
    // Returning runs C's exit, which knows nothing of Rust's buffered stdout.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    code
}
