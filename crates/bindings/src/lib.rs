//! Turns the interfaces the CNI chain put into a pod's namespace into NICs for the VM, as
//! KubeVirt's virt-handler/virt-launcher do: the bridge binding (the pod interface's
//! address and MAC move to the VM behind a bridge and a tap) and the masquerade binding
//! (the VM behind NAT on the pod network).

pub mod bridge;
pub mod masquerade;
pub mod naming;
pub mod tap;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Netlink(#[from] oxivirt_netlink::Error),
    #[error("{what}: {reason}")]
    Setup { what: String, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
