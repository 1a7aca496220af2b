//! `oxivirt-multus`: the Multus-compatible meta plugin (called as `multus`, a link to
//! this binary, or `oxivirt-multus multus`), the thick plugin's two halves (`multus-shim`
//! and `oxivirt-multus multus-daemon`) and `oxivirt-multus multus-autoconf`.

#![no_main]

mod multus;
mod thick;

use oxivirt_app_multus::error;
use oxivirt_cni_spec::plugin;
use oxivirt_cni_spec::process::{called_as, finish, start_up};

/// Runs a delegate inside this process when the file the meta plugin found is one of our
/// plugins: a link to `oxivirt-cni` installed beside this binary (the two come from one
/// build and are installed together). The same code as exec'ing it, one process start less
/// per delegate.
fn in_process(
    plugin_path: &std::path::Path,
    cmd: oxivirt_cni_spec::Command,
    args: &oxivirt_cni_spec::exec::ExecArgs<'_>,
    stdin: &[u8],
) -> Option<Result<Vec<u8>, oxivirt_cni_spec::Error>> {
    let me = std::fs::canonicalize("/proc/self/exe").ok()?;
    let sibling = me.parent()?.join("oxivirt-cni");
    if std::fs::canonicalize(plugin_path).ok()? != sibling {
        return None;
    }
    let name = plugin_path.file_name()?.to_str()?;
    let handle = oxivirt_app_cni::plugin(name)?;
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
    let env = match oxivirt_cni_spec::Environment::from_lookup(lookup) {
        Ok(e) => e,
        Err(e) => return Some(Err(e)),
    };
    // Failing exactly as the exec'd plugin would: its own mapping chooses the code.
    let out = oxivirt_app_cni::call(handle, plugin::Call { env: &env, stdin });
    Some(
        out.map(|out| out.unwrap_or_default().into_bytes())
            .map_err(|source| oxivirt_cni_spec::Error::Delegate {
                plugin: plugin_path.display().to_string(),
                source,
            }),
    )
}

/// The C entry point (see [`start_up`]).
#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    start_up();
    let (name, args) = called_as("oxivirt-multus");
    let code = match name.as_str() {
        "multus" => plugin::run(multus::handle, error::to_cni),
        "multus-shim" => plugin::run(thick::shim, error::to_cni),
        "multus-daemon" => thick::daemon_command(args.collect()),
        "multus-autoconf" => multus::autoconf_command(args.collect()),
        other => {
            eprintln!(
                "oxivirt-multus: unknown command {other:?}: call as multus or multus-shim (a link \
                 with that name, or `oxivirt-multus multus`), `oxivirt-multus multus-daemon` or \
                 `oxivirt-multus multus-autoconf`"
            );
            2
        }
    };
    finish(code)
}
