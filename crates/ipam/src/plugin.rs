//! IPAM for the interface plugins, and the standalone `host-local` and `static` plugins.
//!
//! `host-local` and `static` run in-process when a plugin delegates to them (their state
//! on disk is the reference's, so the result is the same as exec'ing either
//! implementation, minus a process start); any other IPAM type is exec'd from `CNI_PATH`.

use crate::node::NodePolicy;
use crate::Error;
use crate::{static_ipam, HostLocal};
use oxivirt_cni_spec::exec::{exec_plugin, find_plugin, ExecArgs};
use oxivirt_cni_spec::plugin::{require_check_support, Call};
use oxivirt_cni_spec::{parse_json, CniResult, Command, NetConf};
use serde::Deserialize;
use std::collections::HashSet;

/// `CNI_ARGS` keys accepted without `IgnoreUnknown`: the ones our plugins read and the
/// ones every Kubernetes runtime sends.
pub const KNOWN_ARGS: [&str; 7] = [
    "IP",
    "MAC",
    "GATEWAY",
    "K8S_POD_NAMESPACE",
    "K8S_POD_NAME",
    "K8S_POD_INFRA_CONTAINER_ID",
    "K8S_POD_UID",
];

/// `cni.dev/valid-attachments` of a GC request.
pub fn valid_attachments(stdin: &[u8]) -> Result<HashSet<(String, String)>, Error> {
    #[derive(Deserialize)]
    struct Attachment {
        #[serde(rename = "containerID")]
        container_id: String,
        ifname: String,
    }
    #[derive(Deserialize)]
    struct Gc {
        #[serde(rename = "cni.dev/valid-attachments", default)]
        valid: Vec<Attachment>,
    }
    let gc: Gc = parse_json(stdin, "GC config")?;
    Ok(gc
        .valid
        .into_iter()
        .map(|a| (a.container_id, a.ifname))
        .collect())
}

fn host_local(call: &Call<'_>, conf: &NetConf) -> Result<HostLocal, Error> {
    HostLocal::from_config(call.stdin, &conf.name, &NodePolicy::load()?)
}

/// Whether the config's IPAM runs inside this process (no plugin is exec'd).
pub fn in_process(conf: &NetConf) -> bool {
    matches!(
        conf.ipam.as_ref().map(|i| i.plugin_type.as_str()),
        Some("host-local" | "static")
    )
}

/// Runs the config's IPAM for `command`; returns the result for ADD.
pub fn delegate(
    call: &Call<'_>,
    conf: &NetConf,
    command: Command,
) -> Result<Option<CniResult>, Error> {
    let ipam_type = conf
        .ipam
        .as_ref()
        .map(|i| i.plugin_type.as_str())
        .unwrap_or("");
    match ipam_type {
        "host-local" => host_local_command(call, conf, command),
        "static" => static_command(call, conf, command),
        other => {
            let path = find_plugin(other, &call.env.path)?;
            let netns = call.env.netns.as_deref();
            let joined = Some(
                call.env
                    .path
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":"),
            );
            let args = ExecArgs {
                container_id: Some(&call.env.container_id),
                netns,
                ifname: Some(&call.env.ifname),
                args: None,
                path: joined.as_deref(),
            };
            let out = exec_plugin(&path, command, &args, call.stdin)?;
            if command == Command::Add {
                Ok(Some(
                    CniResult::from_slice(&out)
                        .map_err(|e| e.context(format!("IPAM plugin {other}")))?,
                ))
            } else {
                Ok(None)
            }
        }
    }
}

fn host_local_command(
    call: &Call<'_>,
    conf: &NetConf,
    command: Command,
) -> Result<Option<CniResult>, Error> {
    let hl = host_local(call, conf)?;
    let env = call.env;
    match command {
        Command::Add => {
            env.args.check_known(&KNOWN_ARGS)?;
            let requested = crate::host_local::requested_ips(conf, &env.args)?;
            Ok(Some(hl.add(&env.container_id, &env.ifname, &requested)?))
        }
        Command::Del => {
            hl.del(&env.container_id, &env.ifname)?;
            Ok(None)
        }
        Command::Check => {
            hl.check(
                &env.container_id,
                &env.ifname,
                &oxivirt_cni_spec::plugin::prev_result(conf)?,
            )?;
            Ok(None)
        }
        Command::Gc => {
            hl.gc(&valid_attachments(call.stdin)?)?;
            Ok(None)
        }
        Command::Status => {
            hl.status()?;
            Ok(None)
        }
        Command::Version => Ok(None),
    }
}

fn static_command(
    call: &Call<'_>,
    conf: &NetConf,
    command: Command,
) -> Result<Option<CniResult>, Error> {
    // Validate on every command so a broken config is reported, as the reference does.
    let result = static_ipam::result(call.stdin, conf, &call.env.args)?;
    Ok((command == Command::Add).then_some(result))
}

fn standalone(
    call: Call<'_>,
    run: fn(&Call<'_>, &NetConf, Command) -> Result<Option<CniResult>, Error>,
) -> Result<Option<String>, Error> {
    let (conf, version) = NetConf::load(call.stdin)?;
    if call.env.command == Command::Check {
        require_check_support(version)?;
    }
    let out = run(&call, &conf, call.env.command)?;
    Ok(out.map(|r| r.to_json(version)))
}

pub fn host_local_handle(call: Call<'_>) -> Result<Option<String>, Error> {
    standalone(call, host_local_command)
}

pub fn static_handle(call: Call<'_>) -> Result<Option<String>, Error> {
    standalone(call, static_command)
}
