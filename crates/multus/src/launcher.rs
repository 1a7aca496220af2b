//! What the meta plugin does for KubeVirt's launcher pods besides attaching networks: the
//! sysctls of the pod's network namespace that the launcher's bindings need (forwarding
//! for masquerade, inherited defaults for the bridges the launcher makes, bridged frames
//! kept out of netfilter). A container runtime mounts `/proc/sys` read-only in an
//! unprivileged pod, so the launcher cannot set them itself on a cluster; the plugin runs
//! as root in the pod's namespace at ADD, before the pod's containers start. KubeVirt's
//! node agent sets the same from the node.

use std::path::Path;

use oxivirt_netlink::{sysctl, NetNs};

use crate::error::{Error, Result};

/// The label that marks a launcher pod (KubeVirt's, set by the controller).
pub const LABEL: (&str, &str) = ("kubevirt.io", "virt-launcher");

/// One key and the value the launcher's bindings need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub key: &'static [&'static str],
    pub value: &'static str,
    /// Set only when the kernel has it (br_netfilter's keys exist with its module).
    pub if_present: bool,
}

const fn set(key: &'static [&'static str], value: &'static str) -> Setting {
    Setting {
        key,
        value,
        if_present: false,
    }
}

/// The settings, IPv6's only when the pod has an IPv6 address.
pub fn settings(v6: bool) -> Vec<Setting> {
    let mut out = vec![
        // Masquerade routes between its bridge and the pod's interface.
        set(&["net", "ipv4", "ip_forward"], "1"),
        // The masquerade bridge (made later, it inherits the default) takes the guest's
        // traffic to the pod's own addresses.
        set(&["net", "ipv4", "conf", "default", "route_localnet"], "1"),
        // The bridge binding's bridges answer ARP only for their own link-local address.
        set(&["net", "ipv4", "conf", "default", "arp_ignore"], "1"),
    ];
    if v6 {
        out.push(set(&["net", "ipv6", "conf", "all", "forwarding"], "1"));
        // Only the VM is on the masquerade bridge: nothing to detect a duplicate of, and
        // router advertisements need its link-local address at once.
        out.push(set(&["net", "ipv6", "conf", "default", "accept_dad"], "0"));
    }
    // Bridged frames stay out of the pod's netfilter (br_netfilter, when loaded).
    const BRIDGE_NF: [&[&str]; 3] = [
        &["net", "bridge", "bridge-nf-call-iptables"],
        &["net", "bridge", "bridge-nf-call-ip6tables"],
        &["net", "bridge", "bridge-nf-call-arptables"],
    ];
    out.extend(BRIDGE_NF.iter().map(|key| Setting {
        key,
        value: "0",
        if_present: true,
    }));
    out
}

/// Applies [`settings`] in the network namespace at `netns`.
pub fn prepare(netns: &Path, v6: bool) -> Result<()> {
    let ns = NetNs::open(netns).map_err(|source| Error::LauncherPod {
        netns: netns.display().to_string(),
        source,
    })?;
    let applied = ns.run(|| -> std::result::Result<(), oxivirt_netlink::Error> {
        for s in settings(v6) {
            match sysctl::ensure(s.key, s.value) {
                Err(e) if s.if_present && e.is_not_found() => {}
                other => other?,
            }
        }
        Ok(())
    });
    applied
        .and_then(|r| r)
        .map_err(|source| Error::LauncherPod {
            netns: netns.display().to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_settings_only_for_a_dual_stack_pod() {
        let v4: Vec<String> = settings(false).iter().map(|s| s.key.join(".")).collect();
        assert!(v4.contains(&"net.ipv4.ip_forward".to_string()));
        assert!(!v4.iter().any(|k| k.starts_with("net.ipv6")));
        let v6: Vec<String> = settings(true).iter().map(|s| s.key.join(".")).collect();
        assert!(v6.contains(&"net.ipv6.conf.all.forwarding".to_string()));
        assert!(settings(true)
            .iter()
            .filter(|s| s.if_present)
            .all(|s| s.key[1] == "bridge"));
    }
}
