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

/// Tears down a VM's bindings together: the pod interfaces are put back at once; the
/// links the bindings made are set down and renamed out of the way (`oxdel…`), and a
/// detached process deletes them in one kernel batch and then removes the masquerade
/// rules, so the caller does not wait out the kernel's slow link teardown. Safe to run
/// twice.
pub fn teardown_all(
    nl: &mut oxivirt_netlink::Handle,
    masquerade: bool,
    bridges: &[naming::Names],
    state_dir: &std::path::Path,
) -> Result<()> {
    let mut doomed = Vec::new();
    for names in bridges {
        doomed.extend(bridge::restore(nl, names, state_dir)?);
    }
    if masquerade {
        masquerade::restore_bridge_nf(state_dir)?;
        doomed.extend(masquerade::links_to_delete(nl)?);
    }
    let graves: Vec<(u32, String)> = doomed.into_iter().map(|i| (i, grave_name())).collect();
    let rules = if masquerade {
        oxivirt_netlink::Detached::program(
            "nft",
            &["table ip nat; delete table ip nat; table ip6 nat; delete table ip6 nat"],
        )
    } else {
        None
    };
    nl.retire_links(&graves, rules.as_ref())?;
    Ok(())
}

fn grave_name() -> String {
    let mut b = [0u8; 4];
    // SAFETY: getrandom writes at most b.len() bytes into a valid buffer.
    let _ = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    format!("oxdel{:08x}", u32::from_ne_bytes(b))
}
