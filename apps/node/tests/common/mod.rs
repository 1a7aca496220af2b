//! What the node agent's tests share: the DaemonSet's containers as the manifests have them.

use serde_json::Value;
use std::process::Command;

pub const BIN: &str = env!("CARGO_BIN_EXE_oxivirt-node");

/// The DaemonSet's container `name`, checked to run `oxivirt-node <subcommand> …` with a
/// command line this binary accepts (clap rejects an unknown argument before it reaches
/// the trailing `--help`); with its arguments.
pub fn daemonset_container(name: &str, subcommand: &str) -> (Value, Vec<String>) {
    let ds = oxivirt_deploy::manifests::node();
    let c = ds["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("the {name} container"))
        .clone();
    assert_eq!(c["command"], serde_json::json!(["/usr/bin/oxivirt-node"]));
    let args: Vec<String> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("a string").to_string())
        .collect();
    assert_eq!(args.first().map(String::as_str), Some(subcommand));
    let out = Command::new(BIN)
        .args(&args)
        .arg("--help")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (c, args)
}

/// Where a container mounts its volumes.
#[allow(dead_code)] // Not every test binary of this directory asks.
pub fn mount_paths(c: &Value) -> Vec<String> {
    c["volumeMounts"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|m| m["mountPath"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
