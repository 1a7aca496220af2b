//! The Container Network Interface contract, as plugins and runtimes see it.
//!
//! This crate owns the wire formats (network configs, conflists, results, errors),
//! spec-version handling and conversion, the `CNI_*` environment, `CNI_ARGS`, and the
//! exec client that runs delegate plugins. It knows nothing about Linux networking.

pub mod args;
pub mod config;
pub mod decode;
pub mod env;
pub mod error;
pub mod exec;
pub mod plugin;
pub mod process;
pub mod result;
pub mod trace;
pub mod version;

pub use args::CniArgs;
pub use config::{IpamConf, NetConf, NetConfList};
pub use decode::parse_json;
pub use env::{Command, Environment};
pub use error::{CniError, Error, ErrorCode};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use version::Version;
