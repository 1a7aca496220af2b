//! `oxivirt-cni`: one binary for every plugin, chosen by the name it is called by
//! (`bridge`, `macvlan`, `host-local`, `static` links to it) or by its first argument.
//! One binary keeps the page cache warm across plugins and the install to one file.

mod bridge;
mod firewall;
mod iface;
mod ipam;
mod macvlan;
mod multus;

use oxivirt_cni::plugin;

fn main() {
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
    let code = match name.as_str() {
        "bridge" => plugin::run(bridge::handle),
        "macvlan" => plugin::run(macvlan::handle),
        "host-local" => plugin::run(ipam::host_local_handle),
        "static" => plugin::run(ipam::static_handle),
        "multus" => plugin::run(multus::handle),
        "multus-autoconf" => multus::autoconf_command(args.collect()),
        other => {
            eprintln!(
                "oxivirt-cni: unknown plugin {other:?}: call as bridge, macvlan, host-local, static or multus \
                 (a link with that name, or `oxivirt-cni <plugin>`)"
            );
            2
        }
    };
    oxivirt_cni::trace::mark("done");
    std::process::exit(code);
}
