//! What the DHCP servers report: the socket step that failed on which bridge, and the
//! options KubeVirt's validation refuses. Malformed packets are not errors: they are
//! dropped and counted.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Setting up or using a server's socket on a bridge failed.
    #[error("DHCP on {bridge}: failed to {step}")]
    Socket {
        bridge: String,
        step: &'static str,
        #[source]
        source: io::Error,
    },
    /// `dhcpOptions.privateOptions` holds an option outside 224–254.
    #[error("dhcpOptions.privateOptions: option {0} is not in the private range 224-254")]
    PrivateOption(u8),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A `map_err` for the socket step `step` on `bridge`.
pub(crate) fn socket(bridge: &str, step: &'static str) -> impl FnOnce(io::Error) -> Error {
    let bridge = bridge.to_string();
    move |source| Error::Socket {
        bridge,
        step,
        source,
    }
}
