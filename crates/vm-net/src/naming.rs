//! Interface names exactly as KubeVirt derives them.

use sha2::{Digest, Sha256};

/// First 11 hex characters of sha256 of the network's name in `spec.networks`.
pub fn network_hash(network: &str) -> String {
    let digest = Sha256::digest(network.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    hex[..11].to_string()
}

/// The links one binding involves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The interface the CNI chain created in the pod.
    pub pod: String,
    /// What the pod interface is renamed to once it is a bridge port.
    pub nic: String,
    pub bridge: String,
    pub tap: String,
}

impl Names {
    /// A secondary (Multus) network: `pod<hash>`, `<hash>-nic`, `k6t-<hash>`, `tap<hash>`.
    pub fn secondary(network: &str) -> Self {
        let h = network_hash(network);
        Self {
            pod: format!("pod{h}"),
            nic: format!("{h}-nic"),
            bridge: format!("k6t-{h}"),
            tap: format!("tap{h}"),
        }
    }

    /// The pod network: `eth0`, `eth0-nic`, `k6t-eth0`, `tap0`.
    pub fn primary() -> Self {
        Self {
            pod: "eth0".into(),
            nic: "eth0-nic".into(),
            bridge: "k6t-eth0".into(),
            tap: "tap0".into(),
        }
    }

    /// Pods made before the hashed scheme name secondary interfaces `net<ordinal>`
    /// (1-based over `spec.networks` entries that are Multus networks).
    pub fn ordinal(network: &str, ordinal: usize) -> Self {
        Self {
            pod: format!("net{ordinal}"),
            ..Self::secondary(network)
        }
    }
}

/// The names for a secondary network on an existing pod: the hashed scheme if the pod has
/// `pod<hash>` (or the binding already renamed it to `<hash>-nic`), else the ordinal
/// scheme (`net<ordinal>`) older pods use.
pub fn for_pod(
    nl: &mut oxivirt_netlink::Handle,
    network: &str,
    ordinal: usize,
) -> crate::Result<Names> {
    let hashed = Names::secondary(network);
    if nl.if_info(&hashed.pod)?.is_some() || nl.if_info(&hashed.nic)?.is_some() {
        return Ok(hashed);
    }
    let old = Names::ordinal(network, ordinal);
    if nl.if_info(&old.pod)?.is_some() {
        return Ok(old);
    }
    Ok(hashed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_names() {
        assert_eq!(network_hash("ext-net"), "2df796c6902");
        let n = Names::secondary("ext-net");
        assert_eq!(n.pod, "pod2df796c6902");
        assert_eq!(n.nic, "2df796c6902-nic");
        assert_eq!(n.bridge, "k6t-2df796c6902");
        assert_eq!(n.tap, "tap2df796c6902");
        assert_eq!(Names::ordinal("ext-net", 1).pod, "net1");
        assert_eq!(Names::primary().bridge, "k6t-eth0");
    }
}
