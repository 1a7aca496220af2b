//! The pod's side of the data path: the `bridge` and `macvlan` CNI plugins that put a
//! pod's interface on a node bridge (veth) or an uplink (macvlan). The `oxivirt-cni`
//! binary serves them by name, beside `host-local` and `static` from `oxivirt-ipam`.

pub mod bridge;
mod bridge_firewall;
mod error;
pub mod iface;
pub mod macvlan;

pub use error::{Error, Result};
