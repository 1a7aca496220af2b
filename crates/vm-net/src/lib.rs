//! Turns the interfaces the CNI chain put into a pod's namespace into NICs for the VM, as
//! KubeVirt's virt-handler/virt-launcher do: the bridge binding (the pod interface's
//! address and MAC move to the VM behind a bridge and a tap) and the masquerade binding
//! (the VM behind NAT on the pod network).

pub mod bridge;
mod links;
pub mod masquerade;
pub mod naming;
pub mod tap;

/// What setting up or tearing down a binding reports; the launcher maps it to its own
/// boundary (the VMI's conditions, an exit code).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A kernel operation (netlink, namespaces, sysctls) failed.
    #[error(transparent)]
    Netlink(#[from] oxivirt_netlink::Error),
    /// The pod interface a bridge binding takes over is missing or unusable.
    #[error("pod interface {name} {reason}")]
    PodInterface { name: String, reason: &'static str },
    /// A binding's record on disk (what it found before changing anything) could not be
    /// written or removed.
    #[error("binding state {}", path.display())]
    State {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A network of the spec that cannot hold the addresses the binding gives out.
    #[error("{field}: cannot hold the binding's addresses")]
    Network {
        field: &'static str,
        #[source]
        source: ipnet::PrefixLenError,
    },
    /// A tap name the kernel cannot take.
    #[error("tap name {0:?} must be 1-15 bytes")]
    TapName(String),
    /// Creating a tap device failed.
    #[error("tap {name}: {op}")]
    Tap {
        name: String,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The masquerade binding's ruleset could not be loaded or removed.
    #[error("could not load or remove the masquerade binding's ruleset")]
    Firewall(#[from] oxivirt_firewall::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Tears down a VM's bindings together: the pod interfaces are put back at once; the
/// links the bindings made are set down and renamed out of the way (`oxdel…`), and a
/// detached process deletes them in one kernel batch and then removes the masquerade
/// rules, so the caller does not wait out the kernel's slow link teardown. `masquerade`
/// is the masquerade binding's firewall, `None` without that binding. Safe to run twice.
pub fn teardown_all(
    nl: &mut oxivirt_netlink::Handle,
    masquerade: Option<&dyn oxivirt_firewall::Firewall>,
    bridges: &[naming::Names],
    state_dir: &std::path::Path,
) -> Result<()> {
    let mut doomed = Vec::new();
    for names in bridges {
        doomed.extend(bridge::restore(nl, names, state_dir)?);
    }
    if masquerade.is_some() {
        masquerade::restore_bridge_nf(state_dir)?;
        doomed.extend(masquerade::links_to_delete(nl)?);
    }
    let graves: Vec<(u32, String)> = doomed.into_iter().map(|i| (i, grave_name())).collect();
    // The rules go after the links, by the detached process if the firewall has a command
    // for it, else here.
    let deferred = masquerade.and_then(masquerade::deferred_rules_removal);
    nl.retire_links(&graves, deferred.as_ref())?;
    match masquerade {
        Some(fw) if deferred.is_none() => masquerade::remove_rules(fw),
        _ => Ok(()),
    }
}

fn grave_name() -> String {
    let mut b = [0u8; 4];
    // SAFETY: getrandom writes at most b.len() bytes into a valid buffer.
    let _ = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    format!("oxdel{:08x}", u32::from_ne_bytes(b))
}
