//! What address management reports. The binaries choose the CNI code for each variant.

use oxivirt_cni_spec::error::Cleanup;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config, `CNI_ARGS` or the environment, as the spec layer read them.
    #[error(transparent)]
    Spec(#[from] oxivirt_cni_spec::Error),
    /// A config value host-local or static refuses; the message names the field.
    #[error("{0}")]
    Config(String),
    /// `ipam.resolvConf` could not be read.
    #[error("ipam.resolvConf: cannot read {path}")]
    ResolvConf {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The node's policy file could not be read.
    #[error("node policy {path}")]
    NodePolicy {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The on-disk store failed.
    #[error("host-local store: {op} {path}")]
    Store {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// No address could be allocated (pool exhausted, address taken, duplicate).
    #[error("{0}")]
    Allocation(String),
    /// CHECK: an address of the previous result is not held by the attachment.
    #[error("host-local: {ip} is not allocated to {container_id}/{ifname}")]
    NotAllocated {
        ip: IpAddr,
        container_id: String,
        ifname: String,
    },
    /// STATUS: a range set has no free address left.
    #[error("host-local: range set {index} ({ranges}) has no free addresses")]
    Exhausted { index: usize, ranges: String },
    /// A failed ADD whose rollback failed too.
    #[error(transparent)]
    Cleanup(Cleanup<Error>),
}

impl Error {
    pub(crate) fn config(msg: impl Into<String>) -> Self {
        Self::Config(msg.into())
    }

    pub(crate) fn store(op: &'static str, path: &std::path::Path, source: io::Error) -> Self {
        Self::Store {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// `error`, plus the cleanup failures if there were any.
    pub fn with_cleanup(error: Error, cleanup: Vec<Error>) -> Self {
        Cleanup::or_alone(error, cleanup, Self::Cleanup)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
