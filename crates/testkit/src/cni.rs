//! Running a CNI plugin the way a runtime does: a builder for the call (plugin, `CNI_*`
//! environment, the namespace it runs in) and what the plugin answered.

use crate::TestNs;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One CNI call. Starts from `plugin` in `dir` with `CNI_PATH` set to `dir`, no netns,
/// container `ctr`, ifname `eth0` and empty `CNI_ARGS`; the setters change one of them.
/// The builder is cheap to clone, so a test makes one per attachment and runs ADD, CHECK
/// and DEL from it.
#[derive(Debug, Clone)]
pub struct Cni<'a> {
    plugin: PathBuf,
    cni_path: String,
    container_id: String,
    netns: Option<PathBuf>,
    ifname: String,
    args: String,
    node: Option<&'a TestNs>,
    env: Vec<(String, String)>,
}

impl<'a> Cni<'a> {
    pub fn new(dir: &Path, plugin: &str) -> Self {
        Self {
            plugin: dir.join(plugin),
            cni_path: dir.display().to_string(),
            container_id: "ctr".into(),
            netns: None,
            ifname: "eth0".into(),
            args: String::new(),
            node: None,
            env: Vec::new(),
        }
    }

    /// Runs the plugin inside `node` (the namespace standing in for the host).
    pub fn in_node(mut self, node: &'a TestNs) -> Self {
        self.node = Some(node);
        self
    }

    /// `CNI_NETNS`.
    pub fn netns(mut self, path: impl Into<PathBuf>) -> Self {
        self.netns = Some(path.into());
        self
    }

    /// `CNI_CONTAINERID`.
    pub fn container(mut self, id: &str) -> Self {
        self.container_id = id.into();
        self
    }

    /// `CNI_IFNAME`.
    pub fn ifname(mut self, name: &str) -> Self {
        self.ifname = name.into();
        self
    }

    /// `CNI_ARGS`.
    pub fn args(mut self, args: &str) -> Self {
        self.args = args.into();
        self
    }

    /// A further variable. These are set after the `CNI_*` ones, so a test of bad input can
    /// also override (or blank) any of those.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs `command` with `conf` on stdin.
    pub fn run(&self, command: &str, conf: &Value) -> CniOutput {
        self.run_stdin(command, &conf.to_string())
    }

    /// Runs `command` with `stdin` as it is (for malformed input).
    pub fn run_stdin(&self, command: &str, stdin: &str) -> CniOutput {
        let mut cmd = match self.node {
            Some(node) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &node.name]).arg(&self.plugin);
                c
            }
            None => Command::new(&self.plugin),
        };
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &self.container_id)
            .env("CNI_IFNAME", &self.ifname)
            .env("CNI_PATH", &self.cni_path)
            .env("CNI_ARGS", &self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(ns) = &self.netns {
            cmd.env("CNI_NETNS", ns);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.plugin.display()));
        if let Some(mut s) = child.stdin.take() {
            // A plugin that fails before reading closes the pipe; its answer says why.
            let _ = s.write_all(stdin.as_bytes());
        }
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("wait for {}: {e}", self.plugin.display()));
        CniOutput {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// What a plugin answered.
#[derive(Debug)]
pub struct CniOutput {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl CniOutput {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "plugin printed no JSON ({e}): {:?} / {}",
                self.stdout, self.stderr
            )
        })
    }

    /// The error code of a failed call (0 when there is none).
    pub fn code(&self) -> u64 {
        self.json()
            .get("code")
            .and_then(|c| c.as_u64())
            .unwrap_or(0)
    }

    /// The error message of a failed call ("" when there is none).
    pub fn msg(&self) -> String {
        self.json()
            .get("msg")
            .and_then(|m| m.as_str())
            .unwrap_or("")
            .to_string()
    }

    /// The first address of a successful result (`ips[0].address`); panics without one.
    #[track_caller]
    pub fn address(&self) -> String {
        let r = self.json();
        r["ips"][0]["address"]
            .as_str()
            .unwrap_or_else(|| panic!("no address in {r} / {}", self.stderr))
            .to_string()
    }

    /// Asserts the call failed with a message containing `says`.
    #[track_caller]
    pub fn must_fail(self, says: &str) -> Self {
        assert!(
            !self.ok && self.msg().contains(says),
            "expected a failure saying {says:?}: stdout={} stderr={}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts the call succeeded, showing what the plugin printed if not.
    #[track_caller]
    pub fn must(self, what: &str) -> Self {
        assert!(
            self.ok,
            "{what} failed: stdout={} stderr={}",
            self.stdout, self.stderr
        );
        self
    }
}
