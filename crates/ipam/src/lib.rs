//! IP address management: the `host-local` allocator with its on-disk store (byte for byte
//! the reference plugin's layout, plus an index of our own beside it) and `static`.

mod error;
pub mod host_local;
pub mod node;
pub mod plugin;
pub mod range;
pub mod resolv;
pub mod static_ipam;
pub mod store;

pub use error::{Error, Result};
pub use host_local::HostLocal;
