//! Linux networking primitives oxivirt drives directly: an rtnetlink socket bound to a
//! network namespace, the namespaces themselves, and sysctls.
//!
//! Everything is synchronous: a plugin is a short-lived process doing a handful of
//! requests, and a socket opened inside a namespace keeps working there from any thread.
//!
//! The [`Handle`]'s operations are split by what they act on: links ([`Link`], creation,
//! settings, deletion), addresses, routes, bridge ports and their VLANs, and the interface
//! ioctls. The one process helper, which lets a detached child wait out slow link
//! deletion, is a module of its own ([`Detached`]). No type of the netlink packet crates appears in this API.

mod addr;
mod bridge;
mod detach;
mod error;
mod handle;
mod ioctl;
mod link;
mod mac;
pub mod netns;
mod route;
pub mod sysctl;
#[cfg(test)]
mod test_support;

pub use addr::AddrInfo;
pub use bridge::{BridgePortOptions, BridgeVlan};
pub use detach::Detached;
pub use error::{Error, Result};
pub use handle::Handle;
pub use ioctl::IfInfo;
pub use link::{BridgeOptions, Link, MacvlanMode, MacvlanOptions, VethOptions};
pub use mac::{format_mac, parse_mac};
pub use netns::NetNs;
pub use route::{RouteInfo, RouteSpec};
