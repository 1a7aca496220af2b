//! Linux networking primitives oxivirt drives directly: an rtnetlink socket bound to a
//! network namespace, the namespaces themselves, and sysctls.
//!
//! Everything is synchronous: a plugin is a short-lived process doing a handful of
//! requests, and a socket opened inside a namespace keeps working there from any thread.

mod error;
mod handle;
mod link;
pub mod netns;
pub mod sysctl;

pub use error::{Error, Result};
pub use handle::Handle;
pub use link::{
    format_mac, parse_mac, AddrInfo, Detached, IfInfo, Link, MacvlanMode, RouteInfo, RouteSpec,
};
/// Bridge-port options for [`Handle::set_port_options`].
pub use netlink_packet_route::link::InfoBridgePort as BridgePortOption;
pub use netns::NetNs;
