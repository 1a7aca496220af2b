//! What the interface plugins report. The binaries choose the CNI code for each variant
//! (`oxivirt-cni`'s boundary), so nothing here knows the spec's numbers.

use oxivirt_cni_spec::error::Cleanup;

/// An error of the `bridge` or `macvlan` plugin, with everything under it as sources.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config, the `CNI_*` environment or a delegate, as the spec layer read them.
    #[error(transparent)]
    Spec(#[from] oxivirt_cni_spec::Error),
    /// Address management (in-process `host-local`/`static`).
    #[error(transparent)]
    Ipam(#[from] oxivirt_ipam::Error),
    /// A kernel operation (netlink, namespaces, sysctls) failed.
    #[error(transparent)]
    Netlink(#[from] oxivirt_netlink::Error),
    /// Programming nftables failed.
    #[error(transparent)]
    Firewall(#[from] oxivirt_firewall::Error),
    /// A config value the plugin refuses; the message names the field.
    #[error("{0}")]
    Config(String),
    /// The container's network namespace cannot be opened: the container is unknown.
    /// (The netlink error names the path.)
    #[error("failed to open the container's netns")]
    UnknownContainer {
        path: String,
        #[source]
        source: oxivirt_netlink::Error,
    },
    /// The container already has an interface with the name asked for.
    #[error("container already has an interface named {0:?}")]
    IfnameTaken(String),
    /// The delegated IPAM gave no usable result.
    #[error("{0}")]
    IpamResult(String),
    /// CHECK: the interface differs from the previous result.
    #[error("{0}")]
    CheckMismatch(String),
    /// A helper thread of the plugin could not be started or ended without a result.
    #[error("{what}")]
    Thread {
        what: &'static str,
        #[source]
        source: Option<std::io::Error>,
    },
    /// Where an error happened, around it.
    #[error("{context}")]
    Context {
        context: String,
        #[source]
        source: Box<Error>,
    },
    /// A failed ADD or DEL that could not undo or finish everything.
    #[error(transparent)]
    Cleanup(Cleanup<Error>),
}

impl Error {
    pub(crate) fn config(msg: impl Into<String>) -> Self {
        Self::Config(msg.into())
    }

    /// Wraps the error with where it happened.
    pub fn context(self, context: impl Into<String>) -> Self {
        Self::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// `error`, plus the cleanup failures if there were any.
    pub fn with_cleanup(error: Error, cleanup: Vec<Error>) -> Self {
        Cleanup::or_alone(error, cleanup, Self::Cleanup)
    }

    /// Every failure of steps that all ran (see [`Cleanup::collect`]).
    pub fn collect(errors: Vec<Error>) -> Result<()> {
        Cleanup::collect(errors, Self::Cleanup)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
