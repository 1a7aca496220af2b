//! A DHCPv4 server for exactly one client: the VM behind a binding's bridge. It answers
//! only that MAC, only with that address, and treats every packet as hostile input:
//! anything malformed is dropped and counted, never answered.

mod error;
#[cfg(any(test, feature = "fixture"))]
pub mod fixture;
mod server;
mod socket;
pub mod v6;

pub use error::{Error, Result};
pub use server::{Counters, DhcpOptionsSpec, Lease, Server};
pub use socket::{serve, serve_observed};
