//! The nft driver against the kernel, each test in a network namespace of its own (needs
//! root and nft; skips loudly without them).

use oxivirt_firewall::{Error, Family, Firewall, NftCli, Op, Owner, Ruleset, Table};
use oxivirt_netlink::NetNs;
use oxivirt_testkit::{root_test, TestNs};

/// Runs `f` on a thread inside `ns`, where the driver's nft runs too.
fn inside<T: Send>(ns: &TestNs, f: impl FnOnce() -> T + Send) -> T {
    NetNs::open(ns.path())
        .expect("open netns")
        .run(f)
        .expect("netns thread")
}

fn owner(id: &str) -> Owner {
    Owner {
        network: "fw-test".into(),
        container_id: id.into(),
        ifname: "eth0".into(),
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[root_test("nft")]
fn bridge_plugin_rules_come_and_go_by_owner() {
    let ns = TestNs::new("oxfw");
    inside(&ns, || {
        let fw = NftCli;
        // No table yet: nothing of ours, and no error.
        assert!(fw.comments().expect("comments").is_empty());
        fw.remove(&owner("a")).expect("removing nothing");
        let addrs = [
            "10.88.0.5/16".parse().expect("v4"),
            "fd88::5/64".parse().expect("v6"),
        ];
        fw.add_masquerade(&owner("a"), &addrs)
            .expect("masquerade a");
        fw.add_spoofcheck(&owner("a"), "lo", "02:00:00:00:00:05")
            .expect("spoofcheck a");
        fw.add_masquerade(&owner("b"), &addrs[..1])
            .expect("masquerade b");
        let (a, b) = (owner("a").comment(), owner("b").comment());
        assert_eq!(
            sorted(fw.comments().expect("comments")),
            [a.clone(), a.clone(), a.clone(), b.clone()]
        );
        fw.remove(&owner("a")).expect("remove a");
        assert_eq!(fw.comments().expect("comments"), std::slice::from_ref(&b));
        fw.remove_comments(&[b]).expect("remove b");
        assert!(fw.comments().expect("comments").is_empty());
    });
}

#[root_test("nft")]
fn a_ruleset_replaces_its_tables_and_goes_with_them() {
    let ns = TestNs::new("oxfw");
    let tables = vec![
        Table::new(Family::Ip, "nat"),
        Table::new(Family::Ip6, "nat"),
    ];
    let ruleset = |chain: &str| {
        Ruleset {
        tables: tables.clone(),
        body: format!(
            "table ip nat {{\n  chain {chain} {{\n    type nat hook postrouting priority srcnat; policy accept;\n  }}\n}}\n\
             table ip6 nat {{\n}}\n"
        ),
    }
    };
    inside(&ns, || {
        let fw = NftCli;
        fw.load(ruleset("first"))
            .expect("load")
            .finish()
            .expect("loaded");
        fw.load(ruleset("second"))
            .expect("reload")
            .finish()
            .expect("reloaded");
    });
    let listed = ns.sh(&["nft", "list", "ruleset"]);
    assert!(listed.contains("chain second"), "{listed}");
    assert!(
        !listed.contains("chain first"),
        "the reload replaces: {listed}"
    );
    inside(&ns, || {
        NftCli.remove_tables(&tables).expect("remove");
        NftCli.remove_tables(&tables).expect("removing again");
    });
    assert_eq!(ns.sh(&["nft", "list", "tables"]).trim(), "");
}

#[root_test("nft")]
fn refusals_carry_the_operation_and_what_nft_said() {
    let ns = TestNs::new("oxfw");
    let table = vec![Table::new(Family::Ip, "nat")];
    let (load, spoof) = inside(&ns, || {
        let bad = Ruleset {
            tables: table.clone(),
            body: "table ip nat {\n  chain c {\n    no such statement\n  }\n}\n".into(),
        };
        let load = NftCli.load(bad).expect("started").finish();
        let spoof = NftCli.add_spoofcheck(&owner("a"), "lo", "not-a-mac");
        (load, spoof)
    });
    match load {
        Err(Error::Refused { op, status, stderr }) => {
            assert_eq!(op, Op::Load(table));
            assert!(!status.success());
            assert!(!stderr.is_empty());
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    match spoof {
        Err(e @ Error::Refused { .. }) => {
            assert_eq!(e.op(), Op::AddSpoofcheck);
            assert!(
                e.to_string().starts_with(
                    "nft refused to add a MAC spoof check to table bridge oxivirt-cni"
                ),
                "{e}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}
