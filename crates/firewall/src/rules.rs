//! The nft scripts the drivers send and the listings they read back, as pure functions
//! (snapshot-tested; no process runs here).

use crate::{Family, Owner, Table, TABLE};
use ipnet::IpNet;
use serde::Deserialize;

/// Every comment of ours starts with this; GC leaves other rules alone.
pub const COMMENT_PREFIX: &str = "oxivirt:";

/// The bridge plugin's table for `ipMasq`.
pub fn masquerade_table() -> Table {
    Table::new(Family::Inet, TABLE)
}

/// The bridge plugin's table for `macspoofchk`.
pub fn spoofcheck_table() -> Table {
    Table::new(Family::Bridge, TABLE)
}

/// The masquerade rules for `addrs`: traffic from each address to anywhere but its own
/// subnet and multicast leaves with the host's address.
pub fn masquerade_script(owner: &Owner, addrs: &[IpNet]) -> String {
    let c = owner.comment();
    let mut s = format!(
        "add table inet {TABLE}\n\
         add chain inet {TABLE} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}\n"
    );
    for a in addrs {
        let (fam, mcast) = if a.addr().is_ipv4() {
            ("ip", "224.0.0.0/4")
        } else {
            ("ip6", "ff00::/8")
        };
        s.push_str(&format!(
            "add rule inet {TABLE} postrouting {fam} saddr {} {fam} daddr != {} {fam} daddr != {mcast} masquerade comment \"{c}\"\n",
            a.addr(),
            a.trunc()
        ));
    }
    s
}

/// The MAC spoof-check rule: frames from `host_if` (the container's veth peer) must carry
/// the container's `mac`.
pub fn spoofcheck_script(owner: &Owner, host_if: &str, mac: &str) -> String {
    let c = owner.comment();
    format!(
        "add table bridge {TABLE}\n\
         add chain bridge {TABLE} prerouting {{ type filter hook prerouting priority -300; policy accept; }}\n\
         add rule bridge {TABLE} prerouting iifname \"{host_if}\" ether saddr != {mac} drop comment \"{c}\"\n"
    )
}

/// One rule found in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedRule {
    pub table: Table,
    pub chain: String,
    pub handle: u64,
    /// Empty when the rule has none.
    pub comment: String,
}

#[derive(Deserialize)]
struct Listing {
    #[serde(default)]
    nftables: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    rule: Option<RuleJson>,
}

#[derive(Deserialize)]
struct RuleJson {
    chain: String,
    handle: u64,
    #[serde(default)]
    comment: String,
}

/// The rules in `nft -j list table <table>` output.
pub fn parse_listing(table: &Table, json: &str) -> Result<Vec<ListedRule>, serde_json::Error> {
    let listing: Listing = serde_json::from_str(json)?;
    Ok(listing
        .nftables
        .into_iter()
        .filter_map(|i| i.rule)
        .map(|r| ListedRule {
            table: table.clone(),
            chain: r.chain,
            handle: r.handle,
            comment: r.comment,
        })
        .collect())
}

/// Deletes `rules` by handle; empty when there is nothing to delete.
pub fn delete_rules_script(rules: &[ListedRule]) -> String {
    rules
        .iter()
        .map(|r| format!("delete rule {} {} handle {}\n", r.table, r.chain, r.handle))
        .collect()
}

/// Removes `tables`; declaring each first makes a missing table no error.
pub fn delete_tables_script(tables: &[Table]) -> String {
    tables
        .iter()
        .map(|t| format!("table {t}; delete table {t}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `ruleset` as one script: its tables emptied and deleted, then declared anew (nft runs
/// a script as one transaction, so nothing sees them half-loaded).
pub fn load_script(ruleset: &crate::Ruleset) -> String {
    let mut s = String::new();
    for t in &ruleset.tables {
        s.push_str(&format!("table {t}\ndelete table {t}\n"));
    }
    s.push_str(&ruleset.body);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Ruleset;

    fn owner() -> Owner {
        Owner {
            network: "multus-br".into(),
            container_id: "c0ffee".into(),
            ifname: "net1".into(),
        }
    }

    #[test]
    fn masquerade_rules() {
        let addrs: Vec<IpNet> = vec![
            "192.168.100.2/24".parse().expect("v4"),
            "fd00::2/64".parse().expect("v6"),
        ];
        insta::assert_snapshot!(masquerade_script(&owner(), &addrs));
    }

    #[test]
    fn spoofcheck_rule() {
        insta::assert_snapshot!(spoofcheck_script(
            &owner(),
            "veth12345678",
            "0a:58:c0:a8:64:02"
        ));
    }

    #[test]
    fn comments_are_sanitised() {
        let o = Owner {
            network: "n".into(),
            container_id: "c".into(),
            ifname: "a\"b\\c\n".into(),
        };
        assert_eq!(o.comment(), "oxivirt:n:c:a_b_c_");
    }

    #[test]
    fn listing_gives_rules_with_their_comments() {
        let json = r#"{"nftables": [
            {"metainfo": {"version": "1.0.9", "json_schema_version": 1}},
            {"table": {"family": "inet", "name": "oxivirt-cni", "handle": 3}},
            {"chain": {"family": "inet", "table": "oxivirt-cni", "name": "postrouting", "handle": 1}},
            {"rule": {"family": "inet", "table": "oxivirt-cni", "chain": "postrouting", "handle": 4,
                      "comment": "oxivirt:n:c:eth0", "expr": []}},
            {"rule": {"family": "inet", "table": "oxivirt-cni", "chain": "postrouting", "handle": 5, "expr": []}}
        ]}"#;
        let rules = parse_listing(&masquerade_table(), json).expect("listing");
        assert_eq!(
            rules,
            vec![
                ListedRule {
                    table: masquerade_table(),
                    chain: "postrouting".into(),
                    handle: 4,
                    comment: "oxivirt:n:c:eth0".into(),
                },
                ListedRule {
                    table: masquerade_table(),
                    chain: "postrouting".into(),
                    handle: 5,
                    comment: String::new(),
                },
            ]
        );
        assert_eq!(
            delete_rules_script(&rules),
            "delete rule inet oxivirt-cni postrouting handle 4\n\
             delete rule inet oxivirt-cni postrouting handle 5\n"
        );
    }

    #[test]
    fn a_listing_that_is_not_json_is_an_error() {
        assert!(parse_listing(&masquerade_table(), "table inet oxivirt-cni {").is_err());
        assert!(parse_listing(&masquerade_table(), r#"{"nftables": [{"rule": {}}]}"#).is_err());
    }

    #[test]
    fn loading_replaces_the_tables_it_owns() {
        let rs = Ruleset {
            tables: vec![
                Table::new(Family::Ip, "nat"),
                Table::new(Family::Ip6, "nat"),
            ],
            body: "table ip nat {\n}\n".into(),
        };
        assert_eq!(
            load_script(&rs),
            "table ip nat\ndelete table ip nat\ntable ip6 nat\ndelete table ip6 nat\ntable ip nat {\n}\n"
        );
        assert_eq!(
            delete_tables_script(&rs.tables),
            "table ip nat; delete table ip nat; table ip6 nat; delete table ip6 nat"
        );
    }
}
