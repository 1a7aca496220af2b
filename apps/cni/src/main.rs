//! `oxivirt-cni`: one binary for the interface and IPAM plugins, chosen by the name it is
//! called by (`bridge`, `macvlan`, `host-local`, `static` links to it) or by its first
//! argument. One binary keeps the page cache warm across plugins and the install small.

#![no_main]

use oxivirt_app_cni::{error::to_cni, plugin as handler};
use oxivirt_cni_spec::plugin;
use oxivirt_cni_spec::process::{called_as, finish, start_up};

/// The C entry point (see [`start_up`]).
#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    start_up();
    let (name, _) = called_as("oxivirt-cni");
    let code = match handler(&name) {
        Some(h) => plugin::run(h, to_cni),
        None => {
            eprintln!(
                "oxivirt-cni: unknown plugin {name:?}: call as bridge, macvlan, host-local or static \
                 (a link with that name, or `oxivirt-cni <plugin>`); the meta plugin is oxivirt-multus"
            );
            2
        }
    };
    finish(code)
}
