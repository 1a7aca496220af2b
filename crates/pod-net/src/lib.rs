//! The pod's side of the data path: the `bridge` and `macvlan` CNI plugins that put a
//! pod's interface on a node bridge (veth) or an uplink (macvlan), and the table of the
//! plugins the `oxivirt-cni` binary serves by name (these two plus `host-local` and
//! `static` from `oxivirt-ipam`).
//!
//! The meta plugin (`oxivirt-multus`) runs the same table in-process when a delegate is a
//! link to its sibling `oxivirt-cni`.

pub mod bridge;
mod bridge_firewall;
pub mod iface;
pub mod macvlan;

use oxivirt_cni_spec::plugin;
use oxivirt_ipam::plugin as ipam;

/// A plugin's command handler.
pub type Handler = fn(plugin::Call<'_>) -> Result<Option<String>, oxivirt_cni_spec::CniError>;

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
