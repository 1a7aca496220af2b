//! `host-local` and `static` as standalone plugins: results against the reference, the
//! on-disk store under concurrency, and mixed use.

use oxivirt_testkit::cni_env as common;

use oxivirt_testkit::{parallel, reference_plugins_or_skip, Cni, CniOutput};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;

/// Runs an IPAM plugin on its own, as a main plugin would exec it (no namespace involved).
fn call(
    dir: &Path,
    plugin: &str,
    cmd: &str,
    id: &str,
    ifname: &str,
    args: &str,
    conf: &Value,
) -> CniOutput {
    let data = conf["ipam"]["dataDir"].as_str().unwrap_or("/tmp");
    Cni::new(dir, plugin)
        .netns("/var/run/netns/unused-by-ipam")
        .container(id)
        .ifname(ifname)
        .args(args)
        // Keep our index beside the test's data (removed with it), not in /run.
        .env("OXIVIRT_IPAM_INDEX_DIR", format!("{data}/.index"))
        .run(cmd, conf)
}

fn conf(version: &str, data: &Path, ipam: Value) -> Value {
    let mut ipam = ipam;
    ipam["type"] = json!("host-local");
    ipam["dataDir"] = json!(data.display().to_string());
    json!({"cniVersion": version, "name": "multus-br", "type": "bridge", "ipam": ipam})
}

#[test]
fn results_match_reference_in_every_version() {
    let Some(reference) = reference_plugins_or_skip("results_match_reference_in_every_version")
    else {
        return;
    };
    let resolv = tempfile::NamedTempFile::new().expect("resolv");
    std::fs::write(resolv.path(), "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local\noptions ndots:5\n")
        .expect("write");
    let ipams = [
        json!({"subnet": "192.168.100.0/24"}),
        json!({"ranges": [[{"subnet": "10.10.0.0/29", "rangeStart": "10.10.0.3"}, {"subnet": "10.10.1.0/29"}], [{"subnet": "fd00:10::/120", "gateway": "fd00:10::fe"}]],
               "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.99.0.0/16", "gw": "10.10.0.1"}],
               "resolvConf": resolv.path().display().to_string()}),
    ];
    for v in ["0.3.0", "0.3.1", "0.4.0", "1.0.0"] {
        for ipam in &ipams {
            let mut outs = Vec::new();
            for dir in [reference.clone(), common::our_dir()] {
                let data = oxivirt_testkit::cleanup::TempDir::new("cni").expect("tmp");
                let c = conf(v, data.path(), ipam.clone());
                let mut results = Vec::new();
                for (id, args) in [("a", ""), ("b", "IgnoreUnknown=1;IP=10.10.1.5"), ("c", "")] {
                    let out = call(&dir, "host-local", "ADD", id, "eth0", args, &c);
                    // Errors compare by failing (our codes are the spec's, the reference's 999).
                    let r = if out.ok { out.json() } else { json!("error") };
                    results.push(r);
                }
                let mut files: Vec<(String, Vec<u8>)> =
                    std::fs::read_dir(data.path().join("multus-br"))
                        .expect("store")
                        .flatten()
                        .filter(|e| e.file_name() != "lock")
                        .map(|e| {
                            (
                                e.file_name().to_string_lossy().into_owned(),
                                std::fs::read(e.path()).unwrap_or_default(),
                            )
                        })
                        .collect();
                files.sort();
                let del = call(&dir, "host-local", "DEL", "a", "eth0", "", &c);
                outs.push((results, files, del.ok));
            }
            assert_eq!(outs[1].0, outs[0].0, "{v} {ipam}: results differ");
            assert_eq!(outs[1].1, outs[0].1, "{v} {ipam}: store files differ");
            assert_eq!(outs[1].2, outs[0].2, "{v} {ipam}: DEL differs");
        }
    }
}

#[test]
fn sixty_four_parallel_adds_never_share_an_address() {
    let data = oxivirt_testkit::cleanup::TempDir::new("cni").expect("tmp");
    let c = conf("1.0.0", data.path(), json!({"subnet": "10.40.0.0/24"}));
    let dir = common::our_dir();
    let add = |i: usize| {
        call(
            &dir,
            "host-local",
            "ADD",
            &format!("ctr{i}"),
            "eth0",
            "",
            &c,
        )
    };
    let ips: BTreeSet<String> = parallel(64, |i| add(i).address()).into_iter().collect();
    assert_eq!(ips.len(), 64, "an address was handed out twice");
    // The store agrees: 64 files, each naming a distinct container.
    let mut owners: Vec<String> = std::fs::read_dir(data.path().join("multus-br"))
        .expect("store")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("10.40."))
        .map(|e| std::fs::read_to_string(e.path()).expect("file"))
        .collect();
    assert_eq!(owners.len(), 64);
    owners.sort();
    owners.dedup();
    assert_eq!(owners.len(), 64);
    // And parallel DELs free everything.
    parallel(64, |i| {
        call(
            &dir,
            "host-local",
            "DEL",
            &format!("ctr{i}"),
            "eth0",
            "",
            &c,
        )
        .must("DEL")
    });
    let left = std::fs::read_dir(data.path().join("multus-br"))
        .expect("store")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("10.40."))
        .count();
    assert_eq!(left, 0);
}

#[test]
fn mixed_allocation_and_release_with_reference() {
    let Some(reference) = reference_plugins_or_skip("mixed_allocation_and_release_with_reference")
    else {
        return;
    };
    let ours = common::our_dir();
    let data = oxivirt_testkit::cleanup::TempDir::new("cni").expect("tmp");
    let c = conf("1.0.0", data.path(), json!({"subnet": "10.50.0.0/28"}));
    for i in 0..6 {
        let (alloc, release) = if i % 2 == 0 {
            (&reference, &ours)
        } else {
            (&ours, &reference)
        };
        let out = call(alloc, "host-local", "ADD", &format!("m{i}"), "eth0", "", &c);
        assert_eq!(
            out.json()["ips"][0]["address"],
            format!("10.50.0.{}/28", i + 2),
            "step {i}"
        );
        if i > 0 {
            assert!(
                call(
                    release,
                    "host-local",
                    "DEL",
                    &format!("m{}", i - 1),
                    "eth0",
                    "",
                    &c
                )
                .ok
            );
        }
    }
    assert!(call(&ours, "host-local", "DEL", "m5", "eth0", "", &c).ok);
    let left: Vec<_> = std::fs::read_dir(data.path().join("multus-br"))
        .expect("store")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("10.50."))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn static_matches_reference() {
    let Some(reference) = reference_plugins_or_skip("static_matches_reference") else {
        return;
    };
    let ipam = json!({"type": "static",
        "addresses": [{"address": "192.168.100.99/24", "gateway": "192.168.100.1"}, {"address": "fd00::99/64"}],
        "routes": [{"dst": "0.0.0.0/0"}], "dns": {"nameservers": ["192.168.100.1"], "search": ["example"]}});
    for v in ["0.3.1", "0.4.0", "1.0.0"] {
        let c = json!({"cniVersion": v, "name": "st", "type": "bridge", "ipam": ipam});
        let theirs = call(&reference, "static", "ADD", "s1", "eth0", "", &c).json();
        let ours = call(&common::our_dir(), "static", "ADD", "s1", "eth0", "", &c).json();
        assert_eq!(ours, theirs, "{v}");
        // Runtime-provided addresses replace the configured ones.
        let args = "IgnoreUnknown=1;IP=10.1.1.5/24;GATEWAY=10.1.1.1";
        let theirs = call(&reference, "static", "ADD", "s1", "eth0", args, &c).json();
        let ours = call(&common::our_dir(), "static", "ADD", "s1", "eth0", args, &c).json();
        assert_eq!(ours, theirs, "{v} with CNI_ARGS");
    }
}

#[test]
fn version_command_lists_every_supported_version() {
    let out = call(
        &common::our_dir(),
        "bridge",
        "VERSION",
        "",
        "",
        "",
        &json!({}),
    );
    assert!(out.ok);
    let v = out.json();
    assert_eq!(
        v["supportedVersions"],
        json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
}
