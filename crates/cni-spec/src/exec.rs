//! Running delegate plugins found in `CNI_PATH` (IPAM for `bridge`, every network for the
//! meta plugin).

use crate::env::Command;
use crate::error::{CniError, Error};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Finds plugin `name` in `paths`. A name is a file name, never a path.
pub fn find_plugin(name: &str, paths: &[PathBuf]) -> Result<PathBuf, Error> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(Error::PluginName(name.to_string()));
    }
    for dir in paths {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(Error::PluginNotFound {
        name: name.to_string(),
        path: paths.iter().map(|p| p.display().to_string()).collect(),
    })
}

/// What a delegate is called with beyond the inherited environment.
#[derive(Debug, Clone, Default)]
pub struct ExecArgs<'a> {
    pub container_id: Option<&'a str>,
    pub netns: Option<&'a Path>,
    pub ifname: Option<&'a str>,
    pub args: Option<&'a str>,
    pub path: Option<&'a str>,
}

/// Runs `plugin` with `command` and `stdin`; returns its stdout, or the error it reported.
pub fn exec_plugin(
    plugin: &Path,
    command: Command,
    args: &ExecArgs<'_>,
    stdin: &[u8],
) -> Result<Vec<u8>, Error> {
    let mut cmd = std::process::Command::new(plugin);
    cmd.env("CNI_COMMAND", command.as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(v) = args.container_id {
        cmd.env("CNI_CONTAINERID", v);
    }
    if let Some(v) = args.netns {
        cmd.env("CNI_NETNS", v);
    }
    if let Some(v) = args.ifname {
        cmd.env("CNI_IFNAME", v);
    }
    if let Some(v) = args.args {
        cmd.env("CNI_ARGS", v);
    }
    if let Some(v) = args.path {
        cmd.env("CNI_PATH", v);
    }
    let name = plugin.display().to_string();
    let io = |step: &'static str| {
        let plugin = name.clone();
        move |source| Error::Exec {
            plugin,
            step,
            source,
        }
    };
    let mut child = cmd.spawn().map_err(io("run"))?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin).map_err(io("write the config to"))?;
    }
    let out = child.wait_with_output().map_err(io("wait for"))?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    Err(match CniError::from_json(&out.stdout) {
        Some(source) => Error::Delegate {
            plugin: name,
            source,
        },
        None => Error::DelegateCrashed {
            plugin: name,
            status: out.status.to_string(),
            stdout: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        },
    })
}
