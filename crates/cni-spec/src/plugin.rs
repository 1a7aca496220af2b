//! The skeleton every plugin binary runs: environment, stdin, VERSION, output and errors.

use crate::env::{Command, Environment};
use crate::error::{CniError, Error};
use crate::version::Version;
use std::io::{Read, Write};

/// What a plugin's command handler gets.
#[derive(Debug)]
pub struct Call<'a> {
    pub env: &'a Environment,
    pub stdin: &'a [u8],
}

/// Runs one plugin invocation and returns the process exit code. `handle` answers every
/// command but VERSION; it returns the JSON to print, if any. `to_cni` is the binary's
/// one mapping of its errors (this crate's among them) to the spec's error codes.
pub fn run<E: From<Error>>(
    handle: impl FnOnce(Call<'_>) -> Result<Option<String>, E>,
    to_cni: impl Fn(&E) -> CniError,
) -> i32 {
    let env = match Environment::from_process() {
        Ok(env) => env,
        Err(e) => return fail(&to_cni(&E::from(e)), &[]),
    };
    if env.command == Command::Version {
        return emit(&Version::version_info_json());
    }
    let mut stdin = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
        return fail(&to_cni(&E::from(Error::Stdin(e))), &[]);
    }
    match handle(Call {
        env: &env,
        stdin: &stdin,
    }) {
        Ok(Some(out)) => emit(&out),
        Ok(None) => 0,
        Err(e) => fail(&to_cni(&e), &stdin),
    }
}

/// Refuses CHECK for configs older than 0.4.0, as the spec requires.
pub fn require_check_support(version: Version) -> Result<(), Error> {
    if version.has_check() {
        Ok(())
    } else {
        Err(Error::CheckNotAllowed(version))
    }
}

fn emit(out: &str) -> i32 {
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(out.as_bytes())
        .and_then(|_| stdout.flush())
        .is_err()
    {
        return 1;
    }
    0
}

fn fail(e: &CniError, stdin: &[u8]) -> i32 {
    #[derive(serde::Deserialize)]
    struct V {
        #[serde(rename = "cniVersion", default)]
        v: String,
    }
    let version = serde_json::from_slice::<V>(stdin)
        .ok()
        .and_then(|v| Version::parse(&v.v).ok())
        .unwrap_or(Version::LATEST);
    let _ = emit(&e.to_json(version.as_str()));
    1
}

/// `prevResult`, required by CHECK.
pub fn prev_result(conf: &crate::NetConf) -> Result<crate::CniResult, Error> {
    let prev = conf.prev_result.as_ref().ok_or_else(|| Error::Field {
        what: "network config".into(),
        field: "prevResult".into(),
        reason: "is required for CHECK".into(),
    })?;
    crate::CniResult::from_value(prev).map_err(|e| e.context("network config: field `prevResult`"))
}
