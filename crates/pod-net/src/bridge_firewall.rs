//! The bridge plugin's firewall decisions: which rules ADD puts in (`ipMasq`,
//! `macspoofchk`), what a failed ADD and DEL take out, what GC finds stale. Functions of
//! the config and the attachment over a `&dyn Firewall`, so they are tested with the
//! recording fake; `bridge.rs` picks the driver.

use ipnet::IpNet;
use oxivirt_firewall::{Firewall, Owner, Result};
use std::collections::HashSet;

/// The rules an attachment of this network gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Wanted {
    /// `ipMasq` with addresses to masquerade (layer-3 configs only).
    pub masquerade: bool,
    pub spoofcheck: bool,
}

impl Wanted {
    /// From the config: `ipMasq` needs addresses (IPAM, `layer3`) to masquerade;
    /// `macspoofchk` applies to any attachment.
    pub fn new(layer3: bool, ip_masq: bool, macspoofchk: bool) -> Self {
        Self {
            masquerade: layer3 && ip_masq,
            spoofcheck: macspoofchk,
        }
    }

    pub fn any(self) -> bool {
        self.masquerade || self.spoofcheck
    }
}

/// The container's side of an ADD, as the rules need it.
pub(crate) struct Attachment<'a> {
    pub owner: &'a Owner,
    pub addrs: &'a [IpNet],
    /// The host end of the veth.
    pub host_if: &'a str,
    pub mac: &'a str,
}

/// Puts in the rules `wanted` for `at`. `added` is set before the first call, so that a
/// failure of this or any later step of ADD rolls back whatever got in.
pub(crate) fn add(
    fw: &dyn Firewall,
    wanted: Wanted,
    at: &Attachment<'_>,
    added: &mut bool,
) -> Result<()> {
    if wanted.masquerade {
        *added = true;
        fw.add_masquerade(at.owner, at.addrs)?;
    }
    if wanted.spoofcheck {
        *added = true;
        fw.add_spoofcheck(at.owner, at.host_if, at.mac)?;
    }
    Ok(())
}

/// Takes out what a failed ADD put in; a failure here is reported beside the ADD's own.
pub(crate) fn rollback(fw: &dyn Firewall, owner: &Owner, added: bool) -> Result<()> {
    if added {
        fw.remove(owner)?;
    }
    Ok(())
}

/// DEL: removes the attachment's rules if the config can have made any.
pub(crate) fn del(fw: &dyn Firewall, wanted: Wanted, owner: &Owner) -> Result<()> {
    if wanted.any() {
        fw.remove(owner)?;
    }
    Ok(())
}

/// GC: removes the rules of `network` whose attachment is not in `valid`
/// (container ID, interface name); other networks' rules are left alone.
pub(crate) fn gc(
    fw: &dyn Firewall,
    network: &str,
    valid: &HashSet<(String, String)>,
) -> Result<()> {
    let keep: Vec<String> = valid
        .iter()
        .map(|(id, ifname)| {
            Owner {
                network: network.to_string(),
                container_id: id.clone(),
                ifname: ifname.clone(),
            }
            .comment()
        })
        .collect();
    let prefix = Owner::network_prefix(network);
    let stale: Vec<String> = fw
        .comments()?
        .into_iter()
        .filter(|c| c.starts_with(&prefix) && !keep.contains(c))
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    fw.remove_comments(&stale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxivirt_firewall::fake::{Call, RecordingFirewall};

    fn owner() -> Owner {
        Owner {
            network: "pod-net".into(),
            container_id: "c1".into(),
            ifname: "eth0".into(),
        }
    }

    fn addrs() -> Vec<IpNet> {
        vec![
            "10.244.0.7/16".parse().expect("v4"),
            "fd00::7/64".parse().expect("v6"),
        ]
    }

    const BOTH: Wanted = Wanted {
        masquerade: true,
        spoofcheck: true,
    };

    /// A fake firewall after the rules `wanted` of the test attachment went in: the
    /// fake, the owner, the addresses, and whether ADD marked rules as added.
    fn added(wanted: Wanted) -> (RecordingFirewall, Owner, Vec<IpNet>, bool) {
        let fw = RecordingFirewall::new();
        let (o, a) = (owner(), addrs());
        let mut added = false;
        add(&fw, wanted, &attach(&o, &a), &mut added).expect("add");
        (fw, o, a, added)
    }

    fn attach<'a>(owner: &'a Owner, addrs: &'a [IpNet]) -> Attachment<'a> {
        Attachment {
            owner,
            addrs,
            host_if: "veth0123abcd",
            mac: "0a:58:0a:f4:00:07",
        }
    }

    #[test]
    fn ip_masq_without_ipam_has_nothing_to_masquerade() {
        assert_eq!(
            Wanted::new(false, true, false),
            Wanted::new(false, false, false)
        );
        assert!(!Wanted::new(false, true, false).any());
        assert!(Wanted::new(true, true, false).masquerade);
        assert!(Wanted::new(false, false, true).spoofcheck);
    }

    #[test]
    fn ip_masq_masquerades_the_container_addresses_and_del_removes_them() {
        let wanted = Wanted::new(true, true, false);
        let (fw, o, a, added) = added(wanted);
        assert!(added);
        del(&fw, wanted, &o).expect("del");
        assert_eq!(
            fw.calls(),
            [
                Call::AddMasquerade {
                    owner: o.clone(),
                    addrs: a.clone()
                },
                Call::Remove(o),
            ]
        );
        assert!(fw.rules().is_empty());
    }

    #[test]
    fn macspoofchk_pins_the_container_mac_on_the_host_veth() {
        let (fw, o, _, _) = added(BOTH);
        assert_eq!(
            fw.calls().last(),
            Some(&Call::AddSpoofcheck {
                owner: o,
                host_if: "veth0123abcd".into(),
                mac: "0a:58:0a:f4:00:07".into(),
            })
        );
    }

    #[test]
    fn no_option_no_firewall() {
        let none = Wanted::new(true, false, false);
        let (fw, o, _, added) = added(none);
        del(&fw, none, &o).expect("del");
        rollback(&fw, &o, added).expect("rollback");
        assert!(!added);
        assert!(fw.calls().is_empty());
    }

    #[test]
    fn a_failed_spoofcheck_rolls_back_the_masquerade() {
        let fw = RecordingFirewall::new().failing(|c| matches!(c, Call::AddSpoofcheck { .. }));
        let (o, a) = (owner(), addrs());
        let mut added = false;
        let e = add(&fw, BOTH, &attach(&o, &a), &mut added).expect_err("spoofcheck refused");
        assert_eq!(e.op(), oxivirt_firewall::Op::AddSpoofcheck);
        rollback(&fw, &o, added).expect("rollback");
        assert_eq!(fw.calls().last(), Some(&Call::Remove(o)));
        assert!(fw.rules().is_empty(), "{:?}", fw.rules());
    }

    #[test]
    fn a_step_failing_after_the_rules_rolls_them_back() {
        let (fw, o, _, added) = added(BOTH);
        assert_eq!(fw.rules().len(), 2);
        // A later step of ADD failed: the plugin rolls back with what `add` recorded.
        rollback(&fw, &o, added).expect("rollback");
        assert!(fw.rules().is_empty());
    }

    #[test]
    fn gc_removes_only_stale_rules_of_this_network() {
        let fw = RecordingFirewall::new().with_rules(&[
            "oxivirt:pod-net:c1:eth0",
            "oxivirt:pod-net:gone:eth0",
            "oxivirt:pod-net-2:gone:eth0",
            "oxivirt:other:gone:eth0",
        ]);
        let valid = HashSet::from([("c1".to_string(), "eth0".to_string())]);
        gc(&fw, "pod-net", &valid).expect("gc");
        assert_eq!(
            fw.calls().last(),
            Some(&Call::RemoveComments(vec![
                "oxivirt:pod-net:gone:eth0".into()
            ]))
        );
        assert_eq!(
            fw.rules(),
            [
                "oxivirt:pod-net:c1:eth0",
                "oxivirt:pod-net-2:gone:eth0",
                "oxivirt:other:gone:eth0"
            ]
        );
    }
}
